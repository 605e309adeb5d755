//! ConfigMap `calico-config`, DaemonSet `calico-node`, Deployment `calico-kube-controllers`,
//! the images they pull and the MTU.
//!
//! Why they are shaped as they are:
//! - `calico_backend` is always `bird`: every BGP option of the charm (mesh, peers, AS
//!   numbers, route reflectors) needs BIRD, and VXLAN works alongside it.
//! - IP: the unit's cni-binding address, which every unit writes on its own Node
//!   (`projectcalico.org/IPv4Address`, `crate::render::node_address_annotations`); the
//!   DaemonSet leaves `IP` unset so that calico-node keeps it, in every release (see
//!   `ip_env` and docs/workloads-versions.md). The DaemonSet is cluster-wide and the leader
//!   does not know the other units' addresses, so nothing per-unit can be put in it.
//!   IPv6-only: `IP=none` and `CALICO_ROUTER_ID=hash` (BIRD needs a router id; `hash` from
//!   3.7).
//! - Everything that differs between Calico releases is gated on [`node_version`] (the
//!   `calico-node-image` tag); the cut-overs and their sources are in
//!   [`crate::config::release`] and `docs/workloads-versions.md`.
//! - The `AS` variable is never set: the charm sets each node's AS through annotations.
//! - Init containers `upgrade-ipam` (migrates host-local IPAM data, which this charm never
//!   used) and `ebpf-bootstrap` (eBPF dataplane, not used) are omitted.
//! - The pod template carries a hash of the ConfigMap data (annotation [`CONFIG_HASH`]),
//!   so a change of MTU or CNI template rolls calico-node; an image change rolls the
//!   workloads by itself.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, Container, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    HostPathVolumeSource, Lifecycle, LifecycleHandler, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{APP_LABEL, CALICO_NODE, CONFIG_MAP, KUBE_CONTROLLERS, NAMESPACE, labels, meta};
use crate::config::release::node_version;
use crate::config::release::{self as version, CalicoVersion};
use crate::config::{CharmConfig, Image};
use crate::render::cni;
use crate::render::mtu::effective_mtu;

/// Pod-template annotation holding a hash of the ConfigMap data.
pub(crate) const CONFIG_HASH: &str = "calico.juju.is/config-hash";
/// Calico's CNI image, derived from the node image: same registry and path, last path
/// component `cni`, same tag ([`Image::tag`]); no digest (`reg:5000/calico/node:v3.6.1` →
/// `reg:5000/calico/cni:v3.6.1`).
pub fn cni_image(node_image: &Image) -> String {
    let name_tag = node_image
        .reference
        .split_once('@')
        .map_or(node_image.reference.as_str(), |(n, _)| n);
    let base = match name_tag.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/cni"),
        None => "cni".to_string(),
    };
    match node_image.tag().filter(|t| !t.is_empty()) {
        Some(tag) => format!("{base}:{tag}"),
        None => base,
    }
}

/// Every image the charm pulls: calico-node, Calico CNI (install-cni), kube-controllers.
pub fn images(config: &CharmConfig) -> Vec<String> {
    vec![
        config.calico_node_image.reference.clone(),
        cni_image(&config.calico_node_image),
        config.calico_policy_image.reference.clone(),
    ]
}

/// `veth_mtu` as Calico reads it (see [`effective_mtu`]).
fn mtu_string(config: &CharmConfig) -> String {
    effective_mtu(config).to_string()
}

/// The ConfigMap `calico-config`.
pub fn config_map(config: &CharmConfig) -> ConfigMap {
    let mut data = BTreeMap::new();
    data.insert("typha_service_name".to_string(), "none".to_string());
    data.insert("calico_backend".to_string(), "bird".to_string());
    data.insert("veth_mtu".to_string(), mtu_string(config));
    data.insert("cni_network_config".to_string(), cni::template(config));
    ConfigMap {
        metadata: meta(CONFIG_MAP, Some(NAMESPACE), &[]),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// FNV-1a 64 of the ConfigMap data, in key order (stable across runs and platforms).
pub(crate) fn config_hash(cm: &ConfigMap) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in cm.data.iter().flatten() {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_node_name(name: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_config_map(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: CONFIG_MAP.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn first_of(config: &CharmConfig, v6: bool) -> Option<IpNetwork> {
    config.cidrs.iter().copied().find(|c| c.is_ipv6() == v6)
}

/// The IP autodetection method used for each enabled family from Calico 3.22 (see the
/// module doc).
pub(crate) const IP_AUTODETECTION: &str = "kubernetes-internal-ip";

/// The downward-API field holding the node's primary address (what kubelet registered as
/// its node IP; the address `kubernetes-internal-ip` reads from 3.22 on).
pub(crate) const HOST_IP_FIELD: &str = "status.hostIP";

fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// `IP`/`IP6` and their autodetection methods for the enabled families.
///
/// - IPv4: `IP` is left unset. Every unit writes its cni-binding address on its Node
///   (`projectcalico.org/IPv4Address`, [`crate::render::node_address_annotations`]), and
///   calico-node, in every release from 3.6 to 3.32, keeps the address it finds on its Node
///   when `IP` is unset (`configureIPsAndSubnets`: `ipv4Env == "" && IPv4Address != ""`
///   skips autodetection; projectcalico/node `pkg/startup/startup.go` of the v3.6 line,
///   projectcalico/calico `node/pkg/lifecycle/startup/startup.go` of v3.32; the v3.6
///   "Configuring a node IP address" page says the same). Autodetection runs only while the
///   Node has no address yet (calico-node started before the unit's hook), with
///   `kubernetes-internal-ip` from 3.22 and Calico's default `first-found` before; the
///   unit's next hook then writes the binding address, which calico-node's BGP and Felix
///   follow (they watch the Node) and keep across restarts. `autodetect`, or an explicit
///   `IP` (such as the downward API's `status.hostIP`), would re-detect or overwrite the
///   charm's address at every start: the multi-NIC bug of the earlier charm (LP#2037236).
/// - IPv6: autodetected as before (`kubernetes-internal-ip` from 3.22; an IPv6-only cidr
///   before 3.22 takes `status.hostIP`, a dual-stack one `first-found`).
fn ip_env(config: &CharmConfig, v: CalicoVersion, e: &mut Vec<EnvVar>) {
    let v4 = first_of(config, false).is_some();
    let v6 = first_of(config, true).is_some();
    if v.at_least(version::K8S_INTERNAL_IP) {
        if v4 {
            // No `IP`: keep the Node's address (see above); this method only fills it in.
            e.push(env("IP_AUTODETECTION_METHOD", IP_AUTODETECTION));
        } else {
            e.push(env("IP", "none"));
            e.push(env("CALICO_ROUTER_ID", "hash"));
        }
        if v6 {
            e.push(env("IP6", "autodetect"));
            e.push(env("IP6_AUTODETECTION_METHOD", IP_AUTODETECTION));
        }
    } else if v4 {
        // No `IP`: keep the Node's address; `first-found` (the default) only fills it in.
        if v6 {
            e.push(env("IP6", "autodetect"));
            e.push(env("IP6_AUTODETECTION_METHOD", "first-found"));
        }
    } else {
        e.push(env("IP", "none"));
        // Before 3.7 `hash` would be taken as the router id itself (see `super::warnings`).
        if v.at_least(version::ROUTER_ID_HASH) {
            e.push(env("CALICO_ROUTER_ID", "hash"));
        }
        e.push(env_field("IP6", HOST_IP_FIELD));
    }
}

/// calico-node's environment for the configuration (order is stable).
pub(crate) fn calico_node_env(config: &CharmConfig) -> Vec<EnvVar> {
    let v = node_version(config);
    let v4 = first_of(config, false);
    let v6 = first_of(config, true);
    let mtu = mtu_string(config);
    let vxlan = v.at_least(version::VXLAN);
    let mut e = vec![
        env("DATASTORE_TYPE", "kubernetes"),
        env("WAIT_FOR_DATASTORE", "true"),
        env_node_name("NODENAME"),
        env("CALICO_NETWORKING_BACKEND", "bird"),
        env("CLUSTER_TYPE", "k8s,bgp"),
    ];
    ip_env(config, v, &mut e);
    if config.manage_pools {
        // The charm owns the pools; calico-node must not create its defaults.
        e.push(env("NO_DEFAULT_POOLS", "true"));
    } else {
        // calico-node creates a default pool per family only when none exists: make it
        // the pool the charm would have created.
        // A family the cidr option lacks gets `none` (no pool) from 3.27: calico-node would
        // otherwise invent one (192.168.0.0/16, or a random IPv6 ULA prefix when the kernel
        // has IPv6). Before 3.27 `none` is an invalid CIDR that stops calico-node, so the
        // variable is left out and calico-node's default pool may appear (see
        // `super::warnings`).
        let nat = if config.nat_outgoing { "true" } else { "false" };
        let none = v.at_least(version::POOL_CIDR_NONE);
        match v4 {
            Some(c) => {
                e.push(env("CALICO_IPV4POOL_CIDR", c.to_string()));
                e.push(env("CALICO_IPV4POOL_IPIP", config.ipip.as_str()));
                if vxlan {
                    e.push(env("CALICO_IPV4POOL_VXLAN", config.vxlan.as_str()));
                }
                e.push(env("CALICO_IPV4POOL_NAT_OUTGOING", nat));
            }
            None if none => e.push(env("CALICO_IPV4POOL_CIDR", "none")),
            None => {}
        }
        match v6 {
            Some(c) => {
                e.push(env("CALICO_IPV6POOL_CIDR", c.to_string()));
                if vxlan {
                    e.push(env("CALICO_IPV6POOL_VXLAN", config.vxlan.as_str()));
                }
                e.push(env("CALICO_IPV6POOL_NAT_OUTGOING", nat));
            }
            None if none => e.push(env("CALICO_IPV6POOL_CIDR", "none")),
            None => {}
        }
    }
    e.push(env(
        "FELIX_IPV6SUPPORT",
        if v6.is_some() { "true" } else { "false" },
    ));
    e.push(env("FELIX_IPINIPMTU", mtu.clone()));
    if vxlan {
        e.push(env("FELIX_VXLANMTU", mtu.clone()));
    }
    if v.at_least(version::MTU_AUTODETECT) {
        e.push(env("FELIX_WIREGUARDMTU", mtu));
    }
    e.extend([
        env("CALICO_DISABLE_FILE_LOGGING", "true"),
        env("FELIX_DEFAULTENDPOINTTOHOSTACTION", "ACCEPT"),
        env("FELIX_LOGSEVERITYSCREEN", "info"),
        env("FELIX_HEALTHENABLED", "true"),
    ]);
    if config.ignore_loose_rpf {
        // Felix's IgnoreLooseRPF; the FelixConfiguration field was dropped from the API
        // (projectcalico/calico PR #3058), the environment variable is what Felix reads.
        e.push(env("FELIX_IGNORELOOSERPF", "true"));
    }
    if let Some(value) = feature_detect_override(config) {
        e.push(env("FELIX_FEATUREDETECTOVERRIDE", value));
    }
    e
}

/// Felix's feature-detection override that turns TX checksum offload off on
/// `vxlan.calico` (`ChecksumOffloadBroken=true`, from [`version::CHECKSUM_OFFLOAD_OVERRIDE`]),
/// when VXLAN is on and `disable-vxlan-tx-checksumming` is true. Older releases with VXLAN
/// get the same from the charm on each node ([`node_disables_vxlan_checksum`]). `None`: Felix's
/// own detection decides.
pub(crate) fn feature_detect_override(config: &CharmConfig) -> Option<&'static str> {
    (config.vxlan.enabled()
        && config.disable_vxlan_tx_checksumming
        && node_version(config).at_least(version::CHECKSUM_OFFLOAD_OVERRIDE))
    .then_some("ChecksumOffloadBroken=true")
}

/// Whether the charm must turn TX checksum offload off on `vxlan.calico` itself (VXLAN on,
/// `disable-vxlan-tx-checksumming` true, a release without Felix's override).
pub fn node_disables_vxlan_checksum(config: &CharmConfig) -> bool {
    config.vxlan.enabled()
        && config.disable_vxlan_tx_checksumming
        && !node_version(config).at_least(version::CHECKSUM_OFFLOAD_OVERRIDE)
}

fn exec_probe(command: &[&str], period: i32, failure: i32, initial: Option<i32>) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|c| c.to_string()).collect()),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(10),
        failure_threshold: Some(failure),
        initial_delay_seconds: initial,
        ..Probe::default()
    }
}

fn privileged() -> SecurityContext {
    SecurityContext {
        privileged: Some(true),
        ..SecurityContext::default()
    }
}

/// A hostPath volume.
fn host_path(name: &str, path: &str, kind: Option<&str>) -> Volume {
    Volume {
        name: name.to_string(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_string(),
            type_: kind.map(str::to_string),
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn calico_node_volumes() -> Vec<Volume> {
    vec![
        host_path("lib-modules", "/lib/modules", None),
        host_path("xtables-lock", "/run/xtables.lock", Some("FileOrCreate")),
        host_path(
            "var-run-calico",
            "/var/run/calico",
            Some("DirectoryOrCreate"),
        ),
        host_path(
            "var-lib-calico",
            "/var/lib/calico",
            Some("DirectoryOrCreate"),
        ),
        host_path(
            "policysync",
            "/var/run/nodeagent",
            Some("DirectoryOrCreate"),
        ),
        host_path("sys-fs-bpf", "/sys/fs/bpf", Some("DirectoryOrCreate")),
        host_path("cni-bin-dir", "/opt/cni/bin", Some("DirectoryOrCreate")),
        host_path(
            "cni-net-dir",
            cni::DEFAULT_CNI_DIR,
            Some("DirectoryOrCreate"),
        ),
        host_path(
            "cni-log-dir",
            "/var/log/calico/cni",
            Some("DirectoryOrCreate"),
        ),
    ]
}

/// The installer in Calico's CNI image: the Go binary from 3.16, the shell script before
/// (both read the same environment: `CNI_CONF_NAME`, `CNI_NETWORK_CONFIG`,
/// `KUBERNETES_NODE_NAME`, `CNI_MTU`, `SLEEP`).
pub(crate) fn install_cni_command(v: CalicoVersion) -> &'static str {
    if v.at_least(version::GO_CNI_INSTALLER) {
        "/opt/cni/bin/install"
    } else {
        "/install-cni.sh"
    }
}

/// Felix's health endpoint (`FELIX_HEALTHENABLED`), used for liveness before 3.11.
pub(crate) const FELIX_HEALTH_PORT: i32 = 9099;

fn http_probe(path: &str, period: i32, failure: i32, initial: Option<i32>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some("localhost".to_string()),
            path: Some(path.to_string()),
            port: IntOrString::Int(FELIX_HEALTH_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(10),
        failure_threshold: Some(failure),
        initial_delay_seconds: initial,
        ..Probe::default()
    }
}

/// calico-node's liveness probe: `-felix-live -bird-live` from 3.11, Felix's HTTP
/// `/liveness` before (3.6 has neither flag).
fn calico_node_liveness(v: CalicoVersion) -> Probe {
    if v.at_least(version::EXEC_LIVENESS) {
        exec_probe(
            &["/bin/calico-node", "-felix-live", "-bird-live"],
            10,
            6,
            Some(10),
        )
    } else {
        http_probe("/liveness", 10, 6, Some(10))
    }
}

fn install_cni(config: &CharmConfig) -> Container {
    Container {
        name: "install-cni".to_string(),
        image: Some(cni_image(&config.calico_node_image)),
        command: Some(vec![install_cni_command(node_version(config)).to_string()]),
        env: Some(vec![
            env("CNI_CONF_NAME", cni::CONFLIST_NAME),
            env_config_map("CNI_NETWORK_CONFIG", "cni_network_config"),
            env_node_name("KUBERNETES_NODE_NAME"),
            env("CNI_MTU", mtu_string(config)),
            // Install once and exit (an init container).
            env("SLEEP", "false"),
        ]),
        volume_mounts: Some(vec![
            mount("cni-bin-dir", "/host/opt/cni/bin", false),
            mount("cni-net-dir", "/host/etc/cni/net.d", false),
        ]),
        security_context: Some(privileged()),
        ..Container::default()
    }
}

fn calico_node_container(config: &CharmConfig) -> Container {
    let v = node_version(config);
    let mut requests = BTreeMap::new();
    requests.insert("cpu".to_string(), Quantity("250m".to_string()));
    Container {
        name: CALICO_NODE.to_string(),
        image: Some(config.calico_node_image.reference.clone()),
        env: Some(calico_node_env(config)),
        security_context: Some(privileged()),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            ..ResourceRequirements::default()
        }),
        // `-shutdown` (marks the node NetworkUnavailable) exists from 3.21.
        lifecycle: v.at_least(version::SHUTDOWN_HOOK).then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["/bin/calico-node".into(), "-shutdown".into()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        liveness_probe: Some(calico_node_liveness(v)),
        readiness_probe: Some(exec_probe(
            &["/bin/calico-node", "-felix-ready", "-bird-ready"],
            10,
            3,
            None,
        )),
        volume_mounts: Some(vec![
            // The token refresher rewrites the CNI kubeconfig.
            mount("cni-net-dir", "/host/etc/cni/net.d", false),
            mount("lib-modules", "/lib/modules", true),
            mount("xtables-lock", "/run/xtables.lock", false),
            mount("var-run-calico", "/var/run/calico", false),
            mount("var-lib-calico", "/var/lib/calico", false),
            mount("policysync", "/var/run/nodeagent", false),
            mount("sys-fs-bpf", "/sys/fs/bpf", false),
            mount("cni-log-dir", "/var/log/calico/cni", true),
        ]),
        ..Container::default()
    }
}

fn toleration(key: Option<&str>, effect: Option<&str>) -> Toleration {
    Toleration {
        key: key.map(str::to_string),
        effect: effect.map(str::to_string),
        operator: Some("Exists".to_string()),
        ..Toleration::default()
    }
}

fn linux_only() -> BTreeMap<String, String> {
    BTreeMap::from([("kubernetes.io/os".to_string(), "linux".to_string())])
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(APP_LABEL.to_string(), app.to_string())])),
        ..LabelSelector::default()
    }
}

/// The DaemonSet `calico-node`.
pub(crate) fn calico_node(config: &CharmConfig) -> DaemonSet {
    let hash = config_hash(&config_map(config));
    DaemonSet {
        metadata: meta(CALICO_NODE, Some(NAMESPACE), &[(APP_LABEL, CALICO_NODE)]),
        spec: DaemonSetSpec {
            selector: selector(CALICO_NODE),
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..RollingUpdateDaemonSet::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[(APP_LABEL, CALICO_NODE)])),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH.to_string(), hash)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(linux_only()),
                    host_network: Some(true),
                    tolerations: Some(vec![
                        // Run on every node, whatever its taints.
                        toleration(None, Some("NoSchedule")),
                        toleration(Some("CriticalAddonsOnly"), None),
                        toleration(None, Some("NoExecute")),
                    ]),
                    service_account_name: Some(CALICO_NODE.to_string()),
                    termination_grace_period_seconds: Some(0),
                    priority_class_name: Some("system-node-critical".to_string()),
                    init_containers: Some(vec![install_cni(config)]),
                    containers: vec![calico_node_container(config)],
                    volumes: Some(calico_node_volumes()),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}

/// Point calico-node at Typha: `FELIX_TYPHAK8SSERVICENAME` from the ConfigMap's
/// `typha_service_name` (Felix reads it at start, so the pods roll with the new hash).
pub(crate) fn use_typha(ds: &mut DaemonSet, config_hash: &str) {
    let spec = &mut ds.spec;
    if let Some(meta) = spec.template.metadata.as_mut() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(CONFIG_HASH.to_string(), config_hash.to_string());
    }
    if let Some(pod) = spec.template.spec.as_mut() {
        for c in pod.containers.iter_mut().filter(|c| c.name == CALICO_NODE) {
            c.env.get_or_insert_with(Vec::new).push(env_config_map(
                "FELIX_TYPHAK8SSERVICENAME",
                "typha_service_name",
            ));
        }
    }
}

/// The Deployment `calico-kube-controllers`.
pub(crate) fn kube_controllers(config: &CharmConfig) -> Deployment {
    Deployment {
        metadata: meta(
            KUBE_CONTROLLERS,
            Some(NAMESPACE),
            &[(APP_LABEL, KUBE_CONTROLLERS)],
        ),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: selector(KUBE_CONTROLLERS),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_string()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[(APP_LABEL, KUBE_CONTROLLERS)])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: Some(linux_only()),
                    tolerations: Some(vec![
                        toleration(Some("CriticalAddonsOnly"), None),
                        toleration(Some("node-role.kubernetes.io/master"), Some("NoSchedule")),
                        toleration(
                            Some("node-role.kubernetes.io/control-plane"),
                            Some("NoSchedule"),
                        ),
                    ]),
                    service_account_name: Some(KUBE_CONTROLLERS.to_string()),
                    priority_class_name: Some("system-cluster-critical".to_string()),
                    containers: vec![Container {
                        name: KUBE_CONTROLLERS.to_string(),
                        image: Some(config.calico_policy_image.reference.clone()),
                        env: Some(vec![
                            env("ENABLED_CONTROLLERS", "node"),
                            env("DATASTORE_TYPE", "kubernetes"),
                        ]),
                        // `check-status -l` exists from 3.19; older images only have
                        // `-r` and their manifests have no liveness probe.
                        liveness_probe: version::calico_version(&config.calico_policy_image)
                            .at_least(version::KUBE_CONTROLLERS_LIVENESS)
                            .then(|| exec_probe(&["/usr/bin/check-status", "-l"], 10, 6, Some(10))),
                        readiness_probe: Some(exec_probe(
                            &["/usr/bin/check-status", "-r"],
                            10,
                            3,
                            None,
                        )),
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
