//! One holistic reconcile per hook. (Owned by the Juju-runtime work.)
