//! Calico's workloads on the Kubernetes datastore, built in the charm's own typed code from
//! the documented deployment facts (no upstream manifest is copied).
//!
//! - [`crds`]: every CRD calico-node and calico-kube-controllers need, and the rule that an
//!   existing CRD is never replaced ([`crds::plan_crd`]).
//! - [`rbac`]: ServiceAccounts, least-privilege ClusterRoles and their bindings.
//! - [`pods`]: ConfigMap `calico-config`, DaemonSet `calico-node`, Deployment
//!   `calico-kube-controllers`, the images they pull and the MTU.
//! - The Calico release they are rendered for is [`crate::config::release`]: read from the
//!   `calico-node-image` tag, with the releases at which the rendered objects change
//!   (`docs/workloads-versions.md` lists them with sources).
//!
//! ## Images
//! The charm has two image options. calico-node's `install-cni` init container needs
//! Calico's CNI image, which the charm derives from `calico-node-image`: same registry and
//! path, last path component `cni`, same tag (`registry:5000/calico/node:v3.6.1` →
//! `registry:5000/calico/cni:v3.6.1`); a digest on the node image is not carried over.
//! A private registry must therefore also hold `calico/cni:<tag>`. [`images`] lists every
//! image the charm pulls.

pub mod crds;
pub mod etcd;
pub mod pods;
pub mod rbac;
pub mod typha;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::config::CharmConfig;
use crate::config::release as version;

pub use crate::config::release::{CalicoVersion, node_version};
pub use crate::render::mtu::{effective_mtu, veth_mtu};
pub use crds::{CrdPlan, plan_crd};
pub use pods::{cni_image, images};

/// Namespace of every namespaced workload object.
pub(crate) const NAMESPACE: &str = "kube-system";

/// Label selecting the calico-node pods (`k8s-app`, as upstream names it).
pub(crate) const APP_LABEL: &str = "k8s-app";
/// Name of the DaemonSet, its ServiceAccount, ClusterRole and pods' `k8s-app` label.
pub(crate) const CALICO_NODE: &str = "calico-node";
/// Name of the Deployment, its ServiceAccount, ClusterRole and pods' `k8s-app` label.
pub(crate) const KUBE_CONTROLLERS: &str = "calico-kube-controllers";
/// ServiceAccount whose token the CNI plugin uses (minted by `install-cni`).
pub(crate) const CNI_PLUGIN: &str = "calico-cni-plugin";
/// Name of the ConfigMap.
pub(crate) const CONFIG_MAP: &str = "calico-config";
/// Label selector listing the calico-node pods.
pub(crate) const CALICO_NODE_SELECTOR: &str = "k8s-app=calico-node";

/// Every Kubernetes object the leader applies to run Calico, in apply order.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    /// Created only when absent; never updated or deleted by the charm (see
    /// [`crds::plan_crd`]). They carry the managed-by label, but must never be pruned:
    /// deleting a CRD deletes every object of its kind.
    pub crds: Vec<CustomResourceDefinition>,
    pub service_accounts: Vec<ServiceAccount>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    pub config_maps: Vec<ConfigMap>,
    pub daemon_sets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
    /// calico-typha's Service, when Typha runs ([`typha`]).
    pub services: Vec<Service>,
    /// calico-typha's PodDisruptionBudget, when Typha runs.
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    /// etcd mode: `calico-etcd-secrets`, the etcd client credentials ([`etcd`]).
    pub secrets: Vec<k8s_openapi::api::core::v1::Secret>,
    /// Adopt objects of these names that another manager made (today's Calico charm): the
    /// fields it set and the charm does not are removed, so each object ends exactly as the
    /// charm renders it ([`crate::apply::fields::take_over`]). Set until the leader has done
    /// it once (remembered with `state-set`, [`ADOPTED_STATE_KEY`]); not an object.
    pub adopt: bool,
}

/// `state-get`/`state-set` key: the leader has adopted the workload objects of others.
pub(crate) const ADOPTED_STATE_KEY: &str = "workloads-adopted";

/// Build the workloads for a configuration without Typha (pure, deterministic), for the
/// Calico release of `calico-node-image` ([`node_version`]).
pub fn render(config: &CharmConfig) -> Workloads {
    render_for(config, typha::TyphaPlan::Absent)
}

/// Build the workloads with Typha as `plan` says ([`typha::decide`]): with Typha, its
/// objects, the ConfigMap's `typha_service_name: calico-typha`, calico-node's
/// `FELIX_TYPHAK8SSERVICENAME` (from the ConfigMap) and its Typha-discovery rule.
pub fn render_for(config: &CharmConfig, plan: typha::TyphaPlan) -> Workloads {
    let v = node_version(config);
    let mut w = Workloads {
        crds: crds::crds(),
        service_accounts: rbac::service_accounts(v),
        cluster_roles: rbac::cluster_roles(v),
        cluster_role_bindings: rbac::cluster_role_bindings(v),
        config_maps: vec![pods::config_map(config)],
        daemon_sets: vec![pods::calico_node(config)],
        deployments: vec![pods::kube_controllers(config)],
        services: Vec::new(),
        pod_disruption_budgets: Vec::new(),
        secrets: Vec::new(),
        adopt: false,
    };
    if let typha::TyphaPlan::Replicas(replicas) = plan {
        let t = typha::objects(config, replicas);
        for cm in &mut w.config_maps {
            cm.data.get_or_insert_with(BTreeMap::new).insert(
                "typha_service_name".to_string(),
                typha::CALICO_TYPHA.to_string(),
            );
        }
        let hash = pods::config_hash(&w.config_maps[0]);
        for ds in &mut w.daemon_sets {
            pods::use_typha(ds, &hash);
        }
        for role in &mut w.cluster_roles {
            if role.metadata.name.as_deref() == Some(CALICO_NODE) {
                role.rules
                    .get_or_insert_with(Vec::new)
                    .push(typha::discovery_rule());
            }
        }
        w.service_accounts.push(t.service_account);
        w.cluster_roles.push(t.cluster_role);
        w.cluster_role_bindings.push(t.cluster_role_binding);
        w.services.push(t.service);
        w.deployments.push(t.deployment);
        w.pod_disruption_budgets.push(t.pod_disruption_budget);
    }
    w
}

/// What the charm should log (at WARNING) about rendering the workloads for this
/// configuration: an image tag that is not a version (the current release is assumed), and
/// options the configured Calico release cannot honour as asked. Empty when all is well.
pub fn warnings(config: &CharmConfig) -> Vec<String> {
    let mut out = Vec::new();
    let (v, tag_warning) = CalicoVersion::of_image(&config.calico_node_image);
    out.extend(tag_warning);
    if let Some(p) = config
        .calico_policy_image
        .tag()
        .and_then(CalicoVersion::parse_tag)
        && (p.major, p.minor) != (v.major, v.minor)
    {
        out.push(format!(
            "calico-policy-image is Calico {p} but calico-node-image is {v}; use the same \
             release for both"
        ));
    }
    let v4 = config.cidrs.iter().any(|c| c.is_ipv4());
    let v6 = config.cidrs.iter().any(|c| c.is_ipv6());
    // vxlan on a release without VXLAN is a validation error (`config::validate`).
    if !v.at_least(version::ROUTER_ID_HASH) && v6 && !v4 {
        out.push(format!(
            "cidr: Calico {v} cannot run IPv6-only (BIRD needs an IPv4 router id; \
             CALICO_ROUTER_ID=hash needs {})",
            version::ROUTER_ID_HASH
        ));
    }
    if !v.at_least(version::K8S_INTERNAL_IP) && v4 && v6 {
        out.push(format!(
            "cidr: with Calico {v} the node's IPv6 address is found with first-found (it may \
             pick a bridge); kubernetes-internal-ip needs {}",
            version::K8S_INTERNAL_IP
        ));
    }
    if !config.manage_pools && !v.at_least(version::POOL_CIDR_NONE) && (v4 != v6) {
        out.push(format!(
            "manage-pools: Calico {v} cannot be told not to create a default pool for the \
             IP family the cidr lacks (CALICO_IPVxPOOL_CIDR=none needs {}); it may create \
             one",
            version::POOL_CIDR_NONE
        ));
    }
    out
}

fn to_json<T: Serialize>(object: &T) -> serde_json::Value {
    // k8s-openapi types always serialize (string map keys only); Null would be caught by
    // the apply layer as an object without kind.
    serde_json::to_value(object).unwrap_or_default()
}

impl Workloads {
    /// Every object as JSON, in apply order (CRDs first), each with `apiVersion` and `kind`.
    pub fn objects(&self) -> Vec<serde_json::Value> {
        let mut out = self.crd_objects();
        out.extend(self.objects_without_crds());
        out
    }

    /// The CRDs as JSON.
    pub(crate) fn crd_objects(&self) -> Vec<serde_json::Value> {
        self.crds.iter().map(to_json).collect()
    }

    /// Every object but the CRDs as JSON, in apply order.
    pub(crate) fn objects_without_crds(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        out.extend(self.service_accounts.iter().map(to_json));
        out.extend(self.cluster_roles.iter().map(to_json));
        out.extend(self.cluster_role_bindings.iter().map(to_json));
        out.extend(self.config_maps.iter().map(to_json));
        out.extend(self.secrets.iter().map(to_json));
        out.extend(self.services.iter().map(to_json));
        out.extend(self.daemon_sets.iter().map(to_json));
        out.extend(self.deployments.iter().map(to_json));
        out.extend(self.pod_disruption_budgets.iter().map(to_json));
        out
    }
}

/// The labels every workload object carries, plus `extra`.
pub(crate) fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l = crate::calico::charm_labels(None);
    for (k, v) in extra {
        l.insert((*k).to_string(), (*v).to_string());
    }
    l
}

/// Metadata of a workload object (namespaced when `namespace` is given).
pub(crate) fn meta(name: &str, namespace: Option<&str>, extra: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels(extra)),
        ..ObjectMeta::default()
    }
}
