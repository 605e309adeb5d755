//! The Kubernetes workloads seam: the objects that run Calico on the cluster, whichever
//! datastore Calico itself uses (CRDs, RBAC, the calico-config ConfigMap, the calico-node
//! DaemonSet, the calico-kube-controllers Deployment), and calico-node's readiness.
//!
//! [`super::kube::KubeDatastore`] implements it on the Kubernetes API.

use std::collections::BTreeMap;
use std::future::Future;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::datastore::{DsResult, Labels};

/// How operator-facing messages name this seam's far end.
pub(crate) const KUBERNETES_API: &str = "Kubernetes API";

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
    /// etcd mode only: `calico-etcd-secrets`.
    Secret,
    Service,
    DaemonSet,
    Deployment,
    PodDisruptionBudget,
}

impl WorkloadKind {
    /// Every kind, in apply order.
    pub(crate) const ALL: [WorkloadKind; 9] = [
        WorkloadKind::ServiceAccount,
        WorkloadKind::ClusterRole,
        WorkloadKind::ClusterRoleBinding,
        WorkloadKind::ConfigMap,
        WorkloadKind::Secret,
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
            WorkloadKind::Secret => "Secret",
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
    Secret(k8s_openapi::api::core::v1::Secret),
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
            WorkloadObject::Secret(_) => WorkloadKind::Secret,
            WorkloadObject::DaemonSet(_) => WorkloadKind::DaemonSet,
            WorkloadObject::Deployment(_) => WorkloadKind::Deployment,
            WorkloadObject::Service(_) => WorkloadKind::Service,
            WorkloadObject::PodDisruptionBudget(_) => WorkloadKind::PodDisruptionBudget,
        }
    }

    /// The object as the charm sends it (JSON), to compare with what is stored.
    pub(crate) fn to_json(&self) -> Option<serde_json::Value> {
        match self {
            WorkloadObject::ServiceAccount(o) => serde_json::to_value(o),
            WorkloadObject::ClusterRole(o) => serde_json::to_value(o),
            WorkloadObject::ClusterRoleBinding(o) => serde_json::to_value(o),
            WorkloadObject::ConfigMap(o) => serde_json::to_value(o),
            WorkloadObject::Secret(o) => serde_json::to_value(o),
            WorkloadObject::DaemonSet(o) => serde_json::to_value(o),
            WorkloadObject::Deployment(o) => serde_json::to_value(o),
            WorkloadObject::Service(o) => serde_json::to_value(o),
            WorkloadObject::PodDisruptionBudget(o) => serde_json::to_value(o),
        }
        .ok()
    }

    /// The object's metadata.
    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            WorkloadObject::ServiceAccount(o) => &o.metadata,
            WorkloadObject::ClusterRole(o) => &o.metadata,
            WorkloadObject::ClusterRoleBinding(o) => &o.metadata,
            WorkloadObject::ConfigMap(o) => &o.metadata,
            WorkloadObject::Secret(o) => &o.metadata,
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
            WorkloadObject::Secret(o) => &mut o.metadata,
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
    /// The whole object as stored (JSON, with `metadata.managedFields`), when it was listed:
    /// what the planner compares the wanted object with. `Null` when not known.
    pub live: serde_json::Value,
}

impl ObjectRef {
    /// `Kind/name` as reported in an [`crate::problems::Outcome`].
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The Kubernetes objects that run Calico, as converge needs them.
pub trait KubeWorkloads: Sync {
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
    /// The objects of a kind carrying every one of `labels` (label-selected; namespaced kinds
    /// only in [`crate::render::workloads::NAMESPACE`]).
    fn list_workloads(
        &self,
        kind: WorkloadKind,
        labels: &Labels,
    ) -> impl Future<Output = DsResult<Vec<ObjectRef>>> + Send;
    /// Delete this workload object (as read: same uid). Already gone is success.
    fn delete_workload(&self, object: &ObjectRef) -> impl Future<Output = DsResult<()>> + Send;

    /// Replace the object's `metadata.managedFields` with `managed_fields` if it is still at
    /// `object`'s resource version (adoption: [`super::fields::take_over`]). The default
    /// does nothing: a seam that keeps no managed fields has nothing to hand over.
    fn set_managed_fields(
        &self,
        object: &ObjectRef,
        managed_fields: Vec<serde_json::Value>,
    ) -> impl Future<Output = DsResult<()>> + Send {
        let _ = (object, managed_fields);
        async { Ok(()) }
    }

    /// The state of calico-node on this node.
    fn node_agent(&self, node: &str) -> impl Future<Output = DsResult<NodeAgent>> + Send;

    /// The API server's Kubernetes version (`major`, `minor` of `/version`); `None` when
    /// the answer cannot be read as one.
    fn kubernetes_version(&self) -> impl Future<Output = DsResult<Option<(u32, u32)>>> + Send;
}
