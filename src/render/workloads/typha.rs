//! calico-typha: the fan-out proxy between calico-node (Felix, confd) and the Kubernetes API
//! server that Calico advises above 50 nodes on the Kubernetes datastore. Built here from
//! the documented deployment facts (no upstream manifest copied; sources in
//! `docs/workloads-versions.md`, section "Typha").
//!
//! - The option `typha` ([`TyphaMode`]): `auto` (the default) deploys Typha when the cluster
//!   has more than [`AUTO_THRESHOLD`] nodes, `true` always, `false` never.
//! - Replicas: [`replicas`], the tigera operator's rule.
//! - Objects: ServiceAccount, ClusterRole (read-only but for the datastore initialisation
//!   every Calico client does), ClusterRoleBinding, Service, Deployment, PodDisruptionBudget,
//!   all named `calico-typha` in `kube-system`; calico-node finds it through the ConfigMap's
//!   `typha_service_name` (`FELIX_TYPHAK8SSERVICENAME`).
//! - When Typha is no longer wanted the leader's prune deletes these objects (they carry the
//!   managed-by label like every workload object) and the ConfigMap says `none` again.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, ObjectFieldSelector,
    PodSpec, PodTemplateSpec, Probe, SecurityContext, Service, ServicePort, ServiceSpec,
    Toleration,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{APP_LABEL, NAMESPACE, labels, meta};
use crate::calico::GROUP;
use crate::config::release::{self as version, CalicoVersion};
use crate::config::{CharmConfig, Image};

/// Name of the Service, Deployment, PodDisruptionBudget, ServiceAccount, ClusterRole and
/// binding, and the pods' `k8s-app` label.
pub(crate) const CALICO_TYPHA: &str = "calico-typha";
/// Typha's port (the Service's and the pods' host port).
pub(crate) const TYPHA_PORT: i32 = 5473;
/// Typha's health port (`TYPHA_HEALTHENABLED`), probed on localhost.
pub(crate) const HEALTH_PORT: i32 = 9098;
/// Grace period (and `TYPHA_SHUTDOWNTIMEOUTSECS`) for Typha's graceful shutdown.
pub(crate) const SHUTDOWN_SECONDS: i64 = 300;

pub(crate) use crate::config::typha::AUTO_THRESHOLD;
pub use crate::config::typha::TyphaMode;

/// Whether Typha is to run for this mode and node count. `None` (no cluster was asked: the
/// offline `render`, tests) counts as no nodes: `auto` renders no Typha, `true` one replica.
pub(crate) fn decide(mode: TyphaMode, nodes: Option<u64>) -> TyphaPlan {
    let n = nodes.unwrap_or(0);
    match mode {
        TyphaMode::Off => TyphaPlan::Absent,
        TyphaMode::Auto if n <= AUTO_THRESHOLD => TyphaPlan::Absent,
        _ => TyphaPlan::Replicas(replicas(n)),
    }
}

/// What the leader renders for Typha.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TyphaPlan {
    /// No Typha: the ConfigMap's `typha_service_name` is `none`.
    Absent,
    /// Typha with this many replicas.
    Replicas(i32),
}

impl TyphaPlan {
    pub fn enabled(self) -> bool {
        matches!(self, TyphaPlan::Replicas(_))
    }
}

/// Typha replicas for `nodes` nodes, the tigera operator's rule
/// (`GetExpectedTyphaScale`, tigera/operator `pkg/common/autoscale.go`, tag v1.40.15): one
/// Typha per 200 nodes plus one, plus one more for availability; 1 for 1–2 nodes, 2 for
/// 3–4, and at least 3 from 5 nodes.
pub fn replicas(nodes: u64) -> i32 {
    let typhas = nodes / 200 + 2;
    let typhas = match nodes {
        0..=2 => 1,
        3..=4 => 2,
        _ => typhas.max(3),
    };
    i32::try_from(typhas).unwrap_or(i32::MAX)
}

/// Typha's image, derived from the node image as the CNI image is: same registry and path,
/// last path component `typha`, same tag (`reg:5000/calico/node:v3.6.1` →
/// `reg:5000/calico/typha:v3.6.1`).
pub(crate) fn typha_image(node_image: &Image) -> String {
    let cni = super::pods::cni_image(node_image);
    match cni.rsplit_once("/cni") {
        Some((prefix, tag)) => format!("{prefix}/typha{tag}"),
        None => cni.replacen("cni", "typha", 1),
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const LIST_WATCH: &[&str] = &["list", "watch"];

/// Typha's rules: what its syncers read (the Felix, BGP, tunnel-IP and node-status syncers
/// serve calico-node the same Calico kinds, Nodes, pods, namespaces, service accounts,
/// services, endpoints and network policies calico-node would otherwise watch itself), the
/// Service's endpoints it counts for connection rebalancing, and the datastore
/// initialisation every Calico client does at start-up (`EnsureInitialized`: the
/// ClusterInformation `default`; from 3.7 also the default Tier). No write to any Node, pod,
/// IPAM or policy object: Typha only reads and fans out.
pub fn rules(v: CalicoVersion) -> Vec<PolicyRule> {
    let mut out = vec![
        rule(
            "",
            &["nodes", "pods", "namespaces", "serviceaccounts"],
            READ,
        ),
        rule("", &["services", "endpoints"], READ),
        rule("networking.k8s.io", &["networkpolicies"], LIST_WATCH),
    ];
    if v.at_least(version::AFTER_V3_6) {
        out.push(rule("discovery.k8s.io", &["endpointslices"], LIST_WATCH));
        out.push(rule(
            "policy.networking.k8s.io",
            &["clusternetworkpolicies"],
            LIST_WATCH,
        ));
    }
    out.push(rule(GROUP, &super::rbac::calico_node_read_kinds(v), READ));
    out.push(rule(GROUP, &["clusterinformations"], &["create", "update"]));
    if v.at_least(version::AFTER_V3_6) {
        out.push(rule(GROUP, &["tiers"], &["create"]));
    }
    out
}

/// The calico-node rule that lets Felix find Typha through its Service (`get` the Service
/// and its Endpoints in `kube-system`), added only while Typha runs.
pub(crate) fn discovery_rule() -> PolicyRule {
    rule("", &["services", "endpoints"], &["get"])
}

fn app() -> [(&'static str, &'static str); 1] {
    [(APP_LABEL, CALICO_TYPHA)]
}

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            APP_LABEL.to_string(),
            CALICO_TYPHA.to_string(),
        )])),
        ..LabelSelector::default()
    }
}

/// The objects of Typha for a configuration and a replica count.
#[derive(Clone, Debug)]
pub struct TyphaObjects {
    pub service_account: k8s_openapi::api::core::v1::ServiceAccount,
    pub cluster_role: ClusterRole,
    pub cluster_role_binding: ClusterRoleBinding,
    pub service: Service,
    pub deployment: Deployment,
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Build Typha's objects (pure).
pub fn objects(config: &CharmConfig, replicas: i32) -> TyphaObjects {
    let v = super::node_version(config);
    TyphaObjects {
        service_account: k8s_openapi::api::core::v1::ServiceAccount {
            metadata: meta(CALICO_TYPHA, Some(NAMESPACE), &[]),
            ..Default::default()
        },
        cluster_role: ClusterRole {
            metadata: meta(CALICO_TYPHA, None, &[]),
            rules: Some(rules(v)),
            ..ClusterRole::default()
        },
        cluster_role_binding: super::rbac::binding(CALICO_TYPHA),
        service: service(),
        deployment: deployment(config, v, replicas),
        pod_disruption_budget: PodDisruptionBudget {
            metadata: meta(CALICO_TYPHA, Some(NAMESPACE), &app()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(selector()),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        },
    }
}

fn service() -> Service {
    Service {
        metadata: meta(CALICO_TYPHA, Some(NAMESPACE), &app()),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort {
                name: Some(CALICO_TYPHA.to_string()),
                port: TYPHA_PORT,
                protocol: Some("TCP".to_string()),
                target_port: Some(IntOrString::String(CALICO_TYPHA.to_string())),
                ..ServicePort::default()
            }]),
            selector: Some(BTreeMap::from([(
                APP_LABEL.to_string(),
                CALICO_TYPHA.to_string(),
            )])),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Typha's probes: `calico-typha check liveness|readiness` in 3.6, HTTP on the health port
/// from 3.7.
fn probe(v: CalicoVersion, check: &str, period: i32, initial: Option<i32>) -> Probe {
    let mut p = Probe {
        period_seconds: Some(period),
        initial_delay_seconds: initial,
        timeout_seconds: Some(10),
        ..Probe::default()
    };
    if v.at_least(version::TYPHA_HTTP_PROBES) {
        p.http_get = Some(HTTPGetAction {
            path: Some(format!("/{check}")),
            port: IntOrString::Int(HEALTH_PORT),
            host: Some("localhost".to_string()),
            ..HTTPGetAction::default()
        });
    } else {
        p.exec = Some(ExecAction {
            command: Some(vec![
                "calico-typha".to_string(),
                "check".to_string(),
                check.to_string(),
            ]),
        });
    }
    p
}

fn deployment(config: &CharmConfig, v: CalicoVersion, replicas: i32) -> Deployment {
    let graceful = v.at_least(version::TYPHA_GRACEFUL_SHUTDOWN);
    let mut env_vars = vec![
        env("TYPHA_LOGSEVERITYSCREEN", "info"),
        env("TYPHA_LOGFILEPATH", "none"),
        env("TYPHA_LOGSEVERITYSYS", "none"),
        env("TYPHA_CONNECTIONREBALANCINGMODE", "kubernetes"),
        env("TYPHA_DATASTORETYPE", "kubernetes"),
        env("TYPHA_HEALTHENABLED", "true"),
    ];
    if graceful {
        env_vars.push(env(
            "TYPHA_SHUTDOWNTIMEOUTSECS",
            &SHUTDOWN_SECONDS.to_string(),
        ));
    }
    env_vars.push(env_field("TYPHA_NODENAME", "spec.nodeName"));
    let security_context = v
        .at_least(version::TYPHA_NON_ROOT)
        .then(|| SecurityContext {
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            ..SecurityContext::default()
        });
    let strategy = graceful.then(|| DeploymentStrategy {
        type_: Some("RollingUpdate".to_string()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::String("100%".to_string())),
            max_unavailable: Some(IntOrString::Int(1)),
        }),
    });
    Deployment {
        metadata: meta(CALICO_TYPHA, Some(NAMESPACE), &app()),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            revision_history_limit: Some(2),
            selector: selector(),
            strategy,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&app())),
                    annotations: Some(BTreeMap::from([(
                        "cluster-autoscaler.kubernetes.io/safe-to-evict".to_string(),
                        "true".to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(BTreeMap::from([(
                        "kubernetes.io/os".to_string(),
                        "linux".to_string(),
                    )])),
                    // calico-node cannot network a pod before Typha runs: Typha itself is
                    // host-networked.
                    host_network: Some(true),
                    tolerations: Some(vec![Toleration {
                        key: Some("CriticalAddonsOnly".to_string()),
                        operator: Some("Exists".to_string()),
                        ..Toleration::default()
                    }]),
                    service_account_name: Some(CALICO_TYPHA.to_string()),
                    priority_class_name: Some("system-cluster-critical".to_string()),
                    termination_grace_period_seconds: graceful.then_some(SHUTDOWN_SECONDS),
                    containers: vec![Container {
                        name: CALICO_TYPHA.to_string(),
                        image: Some(typha_image(&config.calico_node_image)),
                        ports: Some(vec![ContainerPort {
                            container_port: TYPHA_PORT,
                            name: Some(CALICO_TYPHA.to_string()),
                            protocol: Some("TCP".to_string()),
                            ..ContainerPort::default()
                        }]),
                        env: Some(env_vars),
                        liveness_probe: Some(probe(v, "liveness", 30, Some(30))),
                        readiness_probe: Some(probe(v, "readiness", 10, None)),
                        security_context,
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_follow_the_operators_table() {
        // The table in the operator's doc comment: 1-2 → 1, 3-4 → 2, <200 → 3, >400 → 4,
        // >600 → 5, >800 → 6, >1000 → 7, >2000 → 12, >3600 → 20.
        let table = [
            (1, 1),
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (51, 3),
            (199, 3),
            (399, 3),
            (400, 4),
            (401, 4),
            (601, 5),
            (801, 6),
            (1000, 7),
            (1001, 7),
            (2001, 12),
            (3601, 20),
        ];
        for (nodes, want) in table {
            assert_eq!(replicas(nodes), want, "{nodes} nodes");
        }
        assert_eq!(replicas(0), 1);
        assert_eq!(replicas(u64::MAX), i32::MAX);
    }

    #[test]
    fn auto_deploys_above_fifty_nodes_and_true_always() {
        assert_eq!(decide(TyphaMode::Auto, Some(50)), TyphaPlan::Absent);
        assert_eq!(decide(TyphaMode::Auto, Some(51)), TyphaPlan::Replicas(3));
        assert_eq!(decide(TyphaMode::On, Some(1)), TyphaPlan::Replicas(1));
        assert_eq!(decide(TyphaMode::On, Some(1000)), TyphaPlan::Replicas(7));
        assert_eq!(decide(TyphaMode::Off, Some(5000)), TyphaPlan::Absent);
        assert_eq!(decide(TyphaMode::Off, None), TyphaPlan::Absent);
        assert_eq!(decide(TyphaMode::Auto, None), TyphaPlan::Absent);
        assert_eq!(decide(TyphaMode::On, None), TyphaPlan::Replicas(1));
    }

    #[test]
    fn the_image_is_typha_next_to_the_node_image() {
        let image = |s: &str| Image::parse(s).expect("image");
        assert_eq!(
            typha_image(&image("docker.io/calico/node:v3.6.1")),
            "docker.io/calico/typha:v3.6.1"
        );
        assert_eq!(
            typha_image(&image("registry:5000/calico/node:v3.29.2")),
            "registry:5000/calico/typha:v3.29.2"
        );
        assert_eq!(typha_image(&image("node:v3.26.0")), "typha:v3.26.0");
    }

    #[test]
    fn typha_writes_nothing_but_the_datastore_initialisation() {
        for v in [CalicoVersion::new(3, 6, 1), version::CURRENT] {
            for r in rules(v) {
                assert!(!r.verbs.iter().any(|verb| verb == "*" || verb == "delete"));
                let writes = r
                    .verbs
                    .iter()
                    .any(|verb| ["create", "update", "patch"].contains(&verb.as_str()));
                if writes {
                    let res = r.resources.clone().unwrap_or_default();
                    assert!(
                        res == ["clusterinformations"] || res == ["tiers"],
                        "{v}: {res:?} {:?}",
                        r.verbs
                    );
                }
            }
        }
    }
}
