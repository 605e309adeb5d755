//! Calico's workloads on the Kubernetes datastore, built in the charm's own typed code.
//! (Owned by the Calico-workloads work.)

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::config::CharmConfig;

/// Namespace of every namespaced workload object.
pub const NAMESPACE: &str = "kube-system";

/// Every Kubernetes object the leader applies to run Calico, in apply order.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    /// Created only when absent; never updated or deleted by the charm.
    pub crds: Vec<CustomResourceDefinition>,
    pub service_accounts: Vec<ServiceAccount>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub config_maps: Vec<ConfigMap>,
    pub daemon_sets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
}

/// Build the workloads for a configuration (pure).
pub fn render(config: &CharmConfig) -> Workloads {
    let _ = config;
    Workloads::default()
}

impl Workloads {
    /// Every object as JSON, in apply order (CRDs first).
    pub fn objects(&self) -> Vec<serde_json::Value> {
        Vec::new()
    }
}
