//! The seam between converge and a Calico datastore.
//!
//! [`Datastore`] names the few operations converge needs, in Calico's terms, so that a later
//! etcdv3 datastore can implement the same trait. [`super::kube::KubeDatastore`] (Calico's
//! Kubernetes datastore, KDD) is the only implementation in the binary; tests implement it
//! with an in-memory double.

use std::collections::BTreeMap;
use std::future::Future;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::calico::{BGPConfiguration, BGPPeer, IPAMBlock, IPPool};

/// Why a datastore operation failed, already classified for converge.
///
/// Transient faults have already been retried within the hook's budget by the time an
/// operation returns [`DatastoreError::Unavailable`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatastoreError {
    /// The datastore could not be reached or kept failing (connection refused or reset,
    /// timeouts, 429, 5xx) until the retry budget ran out.
    #[error("{0}")]
    Unavailable(String),
    /// The credentials were refused (401) or lack a permission (403).
    #[error("{0}")]
    Denied(String),
    /// The client cannot work as configured (the server's certificate is not trusted by the
    /// kubeconfig's CA, ...): retrying cannot help, the operator must fix the kubeconfig.
    #[error("{0}")]
    Setup(String),
    /// The kind itself is not served (its CRD is not installed).
    #[error("{kind} is not served")]
    KindMissing { kind: String },
    /// The object does not exist (for operations on one named object).
    #[error("{object} not found")]
    NotFound { object: String },
    /// The object was refused as invalid (422); `reason` is the API's own words.
    #[error("{object} rejected: {reason}")]
    Invalid { object: String, reason: String },
    /// The object changed or was replaced under us (409, failed precondition).
    #[error("{object} conflict: {reason}")]
    Conflict { object: String, reason: String },
    /// Anything else the API refused (400, 405, an unreadable answer, ...).
    #[error("{object}: {reason}")]
    Other { object: String, reason: String },
}

/// The state of this node's calico-node agent, as its pod reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeAgent {
    /// Running and Ready.
    Ready,
    /// There is no calico-node pod on the node (yet).
    Missing,
    /// The pod exists but is not Running and Ready; the reason read from the pod
    /// (`ImagePullBackOff`, `CrashLoopBackOff`, `ContainersNotReady`, `Pending`, ...).
    NotReady(String),
}

/// Kinds of the Kubernetes objects that run Calico (see [`crate::render::workloads::Workloads`]),
/// other than CRDs, which are created only when absent and never pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    ServiceAccount,
    ClusterRole,
    ClusterRoleBinding,
    ConfigMap,
    Service,
    DaemonSet,
    Deployment,
    PodDisruptionBudget,
}

impl WorkloadKind {
    /// Every kind, in apply order.
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::ServiceAccount,
        WorkloadKind::ClusterRole,
        WorkloadKind::ClusterRoleBinding,
        WorkloadKind::ConfigMap,
        WorkloadKind::Service,
        WorkloadKind::DaemonSet,
        WorkloadKind::Deployment,
        WorkloadKind::PodDisruptionBudget,
    ];

    /// The Kubernetes `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::ServiceAccount => "ServiceAccount",
            WorkloadKind::ClusterRole => "ClusterRole",
            WorkloadKind::ClusterRoleBinding => "ClusterRoleBinding",
            WorkloadKind::ConfigMap => "ConfigMap",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::Service => "Service",
            WorkloadKind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            WorkloadKind::ClusterRole | WorkloadKind::ClusterRoleBinding
        )
    }
}

/// One workload object to apply.
#[derive(Clone, Debug)]
pub enum WorkloadObject {
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    ConfigMap(ConfigMap),
    DaemonSet(DaemonSet),
    Deployment(Deployment),
    Service(Service),
    PodDisruptionBudget(PodDisruptionBudget),
}

impl WorkloadObject {
    pub fn kind(&self) -> WorkloadKind {
        match self {
            WorkloadObject::ServiceAccount(_) => WorkloadKind::ServiceAccount,
            WorkloadObject::ClusterRole(_) => WorkloadKind::ClusterRole,
            WorkloadObject::ClusterRoleBinding(_) => WorkloadKind::ClusterRoleBinding,
            WorkloadObject::ConfigMap(_) => WorkloadKind::ConfigMap,
            WorkloadObject::DaemonSet(_) => WorkloadKind::DaemonSet,
            WorkloadObject::Deployment(_) => WorkloadKind::Deployment,
            WorkloadObject::Service(_) => WorkloadKind::Service,
            WorkloadObject::PodDisruptionBudget(_) => WorkloadKind::PodDisruptionBudget,
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            WorkloadObject::ServiceAccount(o) => &o.metadata,
            WorkloadObject::ClusterRole(o) => &o.metadata,
            WorkloadObject::ClusterRoleBinding(o) => &o.metadata,
            WorkloadObject::ConfigMap(o) => &o.metadata,
            WorkloadObject::DaemonSet(o) => &o.metadata,
            WorkloadObject::Deployment(o) => &o.metadata,
            WorkloadObject::Service(o) => &o.metadata,
            WorkloadObject::PodDisruptionBudget(o) => &o.metadata,
        }
    }

    /// The object's metadata, to edit.
    pub fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            WorkloadObject::ServiceAccount(o) => &mut o.metadata,
            WorkloadObject::ClusterRole(o) => &mut o.metadata,
            WorkloadObject::ClusterRoleBinding(o) => &mut o.metadata,
            WorkloadObject::ConfigMap(o) => &mut o.metadata,
            WorkloadObject::DaemonSet(o) => &mut o.metadata,
            WorkloadObject::Deployment(o) => &mut o.metadata,
            WorkloadObject::Service(o) => &mut o.metadata,
            WorkloadObject::PodDisruptionBudget(o) => &mut o.metadata,
        }
    }

    /// Where the object lives: `(namespace, name)`; the namespace is empty for cluster-scoped
    /// kinds and defaults to [`crate::render::workloads::NAMESPACE`] for namespaced ones.
    pub fn key(&self) -> (String, String) {
        let meta = self.meta();
        let namespace = if self.kind().namespaced() {
            meta.namespace
                .clone()
                .unwrap_or_else(|| crate::render::workloads::NAMESPACE.to_string())
        } else {
            String::new()
        };
        (namespace, meta.name.clone().unwrap_or_default())
    }
}

/// A reference to an existing object: what pruning needs to delete it safely.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectRef {
    /// Kubernetes `kind`.
    pub kind: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    /// Deletes are made conditional on this uid, so a replaced object is never deleted.
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ObjectRef {
    /// `Kind/name` as reported in an [`super::Outcome`].
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A value returned by a [`Datastore`] operation.
pub type DsResult<T> = Result<T, DatastoreError>;

/// The operations converge needs, in Calico's terms.
///
/// Every write is idempotent (server-side apply, conditional deletes), so converge can be
/// re-run from any state a killed hook left. Deletes take the object as last read and must
/// delete nothing but that very object (same uid).
pub trait Datastore: Sync {
    /// How operator-facing messages name this datastore (`Kubernetes API`).
    fn name(&self) -> &'static str;

    /// Every IP pool (pools are few; the leader needs all of them to match by CIDR).
    fn list_pools(&self) -> impl Future<Output = DsResult<Vec<IPPool>>> + Send;
    /// Apply a pool (create or update the fields the charm owns); returns the stored pool.
    fn apply_pool(&self, pool: &IPPool) -> impl Future<Output = DsResult<IPPool>> + Send;
    /// Set `disabled: true` on a pool, leaving every other field as it is.
    fn disable_pool(&self, pool: &IPPool) -> impl Future<Output = DsResult<()>> + Send;
    /// Delete this pool (as read: same uid). Already gone is success.
    fn delete_pool(&self, pool: &IPPool) -> impl Future<Output = DsResult<()>> + Send;
    /// Every IPAM block (read only when a pool is being removed).
    fn list_ipam_blocks(&self) -> impl Future<Output = DsResult<Vec<IPAMBlock>>> + Send;

    /// The BGP peers labelled as owned by `owner` (a unit, `calico-0`) and managed by the
    /// charm: a label-selected list, never every peer in the cluster.
    fn list_owned_peers(&self, owner: &str) -> impl Future<Output = DsResult<Vec<BGPPeer>>> + Send;
    /// One peer by name.
    fn get_peer(&self, name: &str) -> impl Future<Output = DsResult<Option<BGPPeer>>> + Send;
    /// Apply a peer; returns the stored peer.
    fn apply_peer(&self, peer: &BGPPeer) -> impl Future<Output = DsResult<BGPPeer>> + Send;
    /// Delete this peer (as read: same uid). Already gone is success.
    fn delete_peer(&self, peer: &BGPPeer) -> impl Future<Output = DsResult<()>> + Send;

    /// One BGP configuration by name (`default`).
    fn get_bgp_configuration(
        &self,
        name: &str,
    ) -> impl Future<Output = DsResult<Option<BGPConfiguration>>> + Send;
    /// Apply the fields the charm owns on a BGP configuration; returns the stored object.
    fn apply_bgp_configuration(
        &self,
        config: &BGPConfiguration,
    ) -> impl Future<Output = DsResult<BGPConfiguration>> + Send;

    /// The node's Calico BGP settings: every key of [`crate::calico::NODE_ANNOTATIONS`]
    /// present on it; `None` when the node is not registered.
    fn get_node_bgp(
        &self,
        node: &str,
    ) -> impl Future<Output = DsResult<Option<BTreeMap<String, String>>>> + Send;
    /// Apply the node's Calico BGP settings the unit owns (only these keys); a key the charm
    /// owned and no longer applies is dropped. Returns the node's Calico keys afterwards.
    fn apply_node_bgp(
        &self,
        node: &str,
        settings: &BTreeMap<String, String>,
    ) -> impl Future<Output = DsResult<BTreeMap<String, String>>> + Send;
    /// Remove these Calico keys from the node whoever set them.
    fn remove_node_bgp(
        &self,
        node: &str,
        keys: &[String],
    ) -> impl Future<Output = DsResult<()>> + Send;

    /// Names of those CRDs that the cluster does not serve yet.
    fn missing_crds(
        &self,
        crds: &[CustomResourceDefinition],
    ) -> impl Future<Output = DsResult<Vec<String>>> + Send;
    /// Create a CRD; `Ok(false)` if it already existed (it is then left untouched).
    fn create_crd(
        &self,
        crd: &CustomResourceDefinition,
    ) -> impl Future<Output = DsResult<bool>> + Send;
    /// Apply a workload object; returns a reference to the stored object.
    fn apply_workload(
        &self,
        object: &WorkloadObject,
    ) -> impl Future<Output = DsResult<ObjectRef>> + Send;
    /// The objects of a kind labelled as managed by the charm (label-selected; namespaced
    /// kinds only in [`crate::render::workloads::NAMESPACE`]).
    fn list_owned_workloads(
        &self,
        kind: WorkloadKind,
    ) -> impl Future<Output = DsResult<Vec<ObjectRef>>> + Send;
    /// Delete this workload object (as read: same uid). Already gone is success.
    fn delete_workload(&self, object: &ObjectRef) -> impl Future<Output = DsResult<()>> + Send;

    /// The state of calico-node on this node.
    fn node_agent(&self, node: &str) -> impl Future<Output = DsResult<NodeAgent>> + Send;
}
