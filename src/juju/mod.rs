//! Juju's side: the hook environment, hook tools as subprocesses, juju-log.
//! (Owned by the Juju-runtime work.)
