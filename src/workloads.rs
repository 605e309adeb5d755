//! Calico's workloads on the Kubernetes datastore, built in the charm's own typed code.
//! (Owned by the Calico-workloads work.)

/// Every Kubernetes object the leader applies to run Calico.
#[derive(Clone, Debug, Default)]
pub struct Workloads {}
