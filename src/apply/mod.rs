//! Applying a [`crate::render::Desired`] to the datastore. (Owned by the Kubernetes-apply work.)
//!
//! - [`datastore::Datastore`]: the seam, in Calico's terms; [`kube::KubeDatastore`] implements
//!   it on the Kubernetes API (Calico's KDD), the only datastore today.
//! - [`kube::connect`]: a client from the kubeconfig Juju's principal writes.
//! - [`converge()`]: server-side apply of what one unit wants, pruning what it no longer wants.
//! - [`KubeCluster`]: the reconcile's `Cluster` seam (sync, one runtime per hook).
//! - [`retry`]: bounded, jittered retries of transient API faults within a per-hook budget.

pub mod cluster;
pub mod converge;
pub mod datastore;
pub mod kube;
pub mod kubeconfig;
pub mod pools;
pub mod retry;

pub use cluster::KubeCluster;
pub use converge::{ConvergeOptions, check_node_agent, converge, converge_with};
pub use datastore::{Datastore, DatastoreError, NodeAgent};
pub use kube::{ApplyError, KubeDatastore, connect, kubeconfig_path};

/// What a converge did and what is still pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Objects created or changed, as `Kind/name`.
    pub changed: Vec<String>,
    /// Objects deleted, as `Kind/name`.
    pub deleted: Vec<String>,
    /// Something outside the charm is not ready yet; short operator-facing causes.
    pub waiting: Vec<String>,
    /// The operator must act (access denied, an object refused); short causes.
    pub blocked: Vec<String>,
    /// The BGP sessions calico-node reported in this node's `CalicoNodeStatus`, when it has
    /// written a report ([`crate::nodestatus`]; Calico 3.22 or later).
    pub bgp_sessions: Option<Vec<crate::nodestatus::Reported>>,
}

impl Outcome {
    /// Append another outcome's entries to this one.
    pub fn merge(&mut self, other: Outcome) {
        self.changed.extend(other.changed);
        self.deleted.extend(other.deleted);
        for w in other.waiting {
            if !self.waiting.contains(&w) {
                self.waiting.push(w);
            }
        }
        for b in other.blocked {
            if !self.blocked.contains(&b) {
                self.blocked.push(b);
            }
        }
        if other.bgp_sessions.is_some() {
            self.bgp_sessions = other.bgp_sessions;
        }
    }

    /// Nothing pending: no `waiting`, no `blocked`.
    pub fn settled(&self) -> bool {
        self.waiting.is_empty() && self.blocked.is_empty()
    }
}
