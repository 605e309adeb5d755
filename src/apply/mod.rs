//! Applying a [`crate::render::Desired`] to the datastore.
//!
//! - [`datastore::CalicoDatastore`]: the Calico datastore seam (pools, peers, the BGP
//!   configuration, node BGP settings, IPAM blocks), datastore-neutral;
//!   [`workloads::KubeWorkloads`]: the Kubernetes objects that run Calico (CRDs, RBAC, the
//!   DaemonSet, the Deployment, pod readiness). [`kube::KubeDatastore`] implements both on
//!   the Kubernetes API (Calico's KDD).
//! - [`kube::connect_with`]: a client from the kubeconfig Juju's principal writes.
//! - [`converge()`]: server-side apply of what one unit wants, pruning what it no longer wants.
//! - [`Cluster`]: the reconcile's seam, [`KubeCluster`] on the Kubernetes API (sync, one runtime per hook).
//! - [`retry`]: bounded, jittered retries of transient API faults within a per-hook budget.

pub mod checks;
pub mod cluster;
pub mod converge;
pub mod fields;
pub mod kube;
pub mod kubeconfig;
pub mod plan;
pub mod pools;
pub mod readiness;
pub mod retry;
pub mod workloads;

pub use crate::datastore::{self, CalicoDatastore, DatastoreError, Labels};
pub use crate::problems::Outcome;
pub use cluster::{Cluster, KubeCluster};
pub use converge::{ConvergeOptions, check_node_agent, converge_with};
pub use kube::{ApplyError, KubeDatastore};
pub(crate) use kubeconfig::kubeconfig_path;
pub use workloads::{KubeWorkloads, NodeAgent};
