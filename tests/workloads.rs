//! Calico workloads: CRDs, RBAC, ConfigMap, calico-node, calico-kube-controllers, images,
//! MTU, IP autodetection and pod readiness.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use calico_charm::apply::readiness;
use calico_charm::config::{CharmConfig, EncapMode, Image};
use calico_charm::render::workloads::{self, CalicoVersion, CrdPlan, Workloads, crds, plan_crd};
use ipnetwork::IpNetwork;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Pod, PodSpec, Probe, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

#[path = "support/charm_config.rs"]
mod charm_config;

use charm_config::{current, defaults};

fn cidrs(list: &[&str]) -> Vec<IpNetwork> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn daemon_set(w: &Workloads) -> &DaemonSet {
    assert_eq!(w.daemon_sets.len(), 1);
    &w.daemon_sets[0]
}

fn node_pod_spec(w: &Workloads) -> &PodSpec {
    daemon_set(w).spec.template.spec.as_ref().unwrap()
}

/// calico-node's main container environment as name → value (valueFrom as `<from>`).
fn node_env(config: &CharmConfig) -> BTreeMap<String, String> {
    let w = workloads::render(config);
    let spec = node_pod_spec(&w);
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "calico-node")
        .unwrap();
    env_map(c.env.as_ref().unwrap())
}

fn env_map(env: &[EnvVar]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in env {
        let v = e.value.clone().unwrap_or_else(|| "<from>".into());
        assert!(
            out.insert(e.name.clone(), v).is_none(),
            "duplicate env {}",
            e.name
        );
    }
    out
}

/// The pod template's labels, after checking the selector matches them.
fn template_labels<'a>(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    template: &'a k8s_openapi::api::core::v1::PodTemplateSpec,
) -> &'a BTreeMap<String, String> {
    let sel = selector.match_labels.as_ref().unwrap();
    let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(!sel.is_empty());
    assert!(
        sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "selector {sel:?} does not match the template's labels {labels:?}"
    );
    labels
}

fn pod_images(spec: &PodSpec) -> Vec<String> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.image.clone().unwrap())
        .collect()
}

// ---------------------------------------------------------------- objects and round trip

#[test]
fn objects_come_in_apply_order_with_kind_name_and_owner_label() {
    // v3.6.1 has no calico-cni-plugin account (the CNI plugin uses calico-node's token).
    for (config, accounts) in [(defaults(), 2), (current(), 3)] {
        objects_in_apply_order(&config, accounts);
    }
}

fn objects_in_apply_order(config: &CharmConfig, accounts: usize) {
    let objects = workloads::render(config).objects();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    let mut expected = vec!["CustomResourceDefinition"; 23];
    expected.extend(vec!["ServiceAccount"; accounts]);
    expected.extend(vec!["ClusterRole"; accounts]);
    expected.extend(vec!["ClusterRoleBinding"; accounts]);
    expected.extend(["ConfigMap", "DaemonSet", "Deployment"]);
    assert_eq!(kinds, expected);
    for o in &objects {
        let api = o["apiVersion"].as_str().unwrap();
        let kind = o["kind"].as_str().unwrap();
        let want = match kind {
            "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
            "ServiceAccount" | "ConfigMap" => "v1",
            "ClusterRole" | "ClusterRoleBinding" => "rbac.authorization.k8s.io/v1",
            _ => "apps/v1",
        };
        assert_eq!(api, want, "{kind}");
        assert!(
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        );
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"], "calico-charm",
            "{kind} {}",
            o["metadata"]["name"]
        );
        let namespaced = matches!(
            kind,
            "ServiceAccount" | "ConfigMap" | "DaemonSet" | "Deployment"
        );
        assert_eq!(
            o["metadata"].get("namespace").and_then(Value::as_str),
            namespaced.then_some("kube-system"),
            "{kind}"
        );
    }
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(o: &Value) {
    let typed: T = serde_json::from_value(o.clone())
        .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", o["kind"]));
    assert_eq!(&serde_json::to_value(&typed).unwrap(), o, "{}", o["kind"]);
}

#[test]
fn every_object_deserializes_into_k8s_openapi_types_and_round_trips() {
    for base in [defaults(), current()] {
        let mut config = base;
        config.cidrs = cidrs(&["10.1.0.0/16", "fd00:1::/64"]);
        config.veth_mtu = Some(9000);
        config.vxlan = EncapMode::Always;
        config.manage_pools = false;
        round_trip_all(&config);
    }
}

fn round_trip_all(config: &CharmConfig) {
    for o in workloads::render(config).objects() {
        match o["kind"].as_str().unwrap() {
            "CustomResourceDefinition" => round_trip::<CustomResourceDefinition>(&o),
            "ServiceAccount" => round_trip::<ServiceAccount>(&o),
            "ClusterRole" => round_trip::<ClusterRole>(&o),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(&o),
            "ConfigMap" => round_trip::<ConfigMap>(&o),
            "DaemonSet" => round_trip::<DaemonSet>(&o),
            "Deployment" => round_trip::<Deployment>(&o),
            other => panic!("unexpected kind {other}"),
        }
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = workloads::render(&defaults()).objects();
    let b = workloads::render(&defaults()).objects();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------- images

#[test]
fn default_images_are_the_documented_ones_plus_the_derived_cni_image() {
    let config = defaults();
    assert_eq!(
        workloads::images(&config),
        [
            "docker.io/calico/node:v3.6.1",
            "docker.io/calico/cni:v3.6.1",
            "docker.io/calico/kube-controllers:v3.6.1",
        ]
    );
}

#[test]
fn private_registry_images_reach_every_container_and_nothing_else_is_pulled() {
    // The seed's private-registry example: $REGISTRY = <ip>:<port>.
    let registry = "10.10.0.7:5000";
    let mut config = defaults();
    config.calico_node_image.reference = format!("{registry}/calico/node:v3.6.1");
    config.calico_policy_image.reference = format!("{registry}/calico/kube-controllers:v3.6.1");
    let w = workloads::render(&config);
    let listed = workloads::images(&config);
    assert_eq!(
        listed,
        [
            "10.10.0.7:5000/calico/node:v3.6.1",
            "10.10.0.7:5000/calico/cni:v3.6.1",
            "10.10.0.7:5000/calico/kube-controllers:v3.6.1",
        ]
    );
    let node = pod_images(node_pod_spec(&w));
    assert_eq!(
        node,
        [
            "10.10.0.7:5000/calico/cni:v3.6.1",
            "10.10.0.7:5000/calico/node:v3.6.1"
        ]
    );
    let kc = pod_images(w.deployments[0].spec.template.spec.as_ref().unwrap());
    assert_eq!(kc, ["10.10.0.7:5000/calico/kube-controllers:v3.6.1"]);
    // Every image any object mentions is listed, and nothing else is pulled.
    let mut mentioned = BTreeSet::new();
    for o in w.objects() {
        collect_images(&o, &mut mentioned);
    }
    let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(mentioned, listed_set);
}

/// Every value of an `image` key anywhere in `v`.
fn collect_images(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_str()) {
                    ("image", Some(img)) => {
                        out.insert(img.to_string());
                    }
                    _ => collect_images(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_images(x, out)),
        _ => {}
    }
}

#[test]
fn cni_image_keeps_registry_path_and_tag_and_drops_a_digest() {
    let cni = |node: &str| {
        workloads::cni_image(&Image {
            reference: node.into(),
        })
    };
    assert_eq!(
        cni("registry.example.com:5000/calico/node:v3.32.1"),
        "registry.example.com:5000/calico/cni:v3.32.1"
    );
    assert_eq!(
        cni("quay.io/calico/node:v3.32.1@sha256:0123abcd"),
        "quay.io/calico/cni:v3.32.1"
    );
    assert_eq!(cni("calico/node"), "calico/cni");
    assert_eq!(cni("node:v1"), "cni:v1");
    assert_eq!(cni("reg:5000/mirror/calico-node"), "reg:5000/mirror/cni");
    assert_eq!(cni("localhost:5000/node"), "localhost:5000/cni");
}

#[test]
fn an_image_change_changes_the_pod_templates() {
    let a = workloads::render(&defaults());
    let mut config = defaults();
    config.calico_node_image.reference = "docker.io/calico/node:v3.32.1".into();
    config.calico_policy_image.reference = "docker.io/calico/kube-controllers:v3.32.1".into();
    let b = workloads::render(&config);
    assert_ne!(
        serde_json::to_value(&daemon_set(&a).spec.template).unwrap(),
        serde_json::to_value(&daemon_set(&b).spec.template).unwrap()
    );
    assert_ne!(
        serde_json::to_value(&a.deployments[0].spec.template).unwrap(),
        serde_json::to_value(&b.deployments[0].spec.template).unwrap()
    );
}

// ---------------------------------------------------------------- MTU

#[test]
fn veth_mtu_follows_encapsulation() {
    let mut c = defaults();
    assert_eq!(workloads::veth_mtu(&c), None, "unset");
    // Unset: v3.6 has no auto-detection (its manifest's 1440); from 3.17 0 = auto-detect.
    assert_eq!(workloads::effective_mtu(&c), 1440);
    assert_eq!(workloads::effective_mtu(&current()), 0);
    c.veth_mtu = Some(1500);
    assert_eq!(workloads::veth_mtu(&c), Some(1500));
    c.ipip = EncapMode::Always;
    assert_eq!(workloads::veth_mtu(&c), Some(1480));
    c.ipip = EncapMode::CrossSubnet;
    assert_eq!(workloads::veth_mtu(&c), Some(1480));
    c.ipip = EncapMode::Never;
    c.vxlan = EncapMode::Always;
    assert_eq!(workloads::veth_mtu(&c), Some(1450));
    c.veth_mtu = Some(9000);
    c.vxlan = EncapMode::CrossSubnet;
    assert_eq!(workloads::veth_mtu(&c), Some(8950));
    c.veth_mtu = Some(30);
    assert_eq!(workloads::veth_mtu(&c), None, "no underflow");
}

#[test]
fn mtu_reaches_the_config_map_felix_and_install_cni() {
    let cm_mtu = |c: &CharmConfig| {
        workloads::render(c).config_maps[0].data.as_ref().unwrap()["veth_mtu"].clone()
    };
    let mut c = current();
    assert_eq!(cm_mtu(&c), "0");
    assert_eq!(node_env(&c)["FELIX_IPINIPMTU"], "0");
    c.veth_mtu = Some(9000);
    c.ipip = EncapMode::Always;
    assert_eq!(cm_mtu(&c), "8980");
    let env = node_env(&c);
    for k in ["FELIX_IPINIPMTU", "FELIX_VXLANMTU", "FELIX_WIREGUARDMTU"] {
        assert_eq!(env[k], "8980", "{k}");
    }
    let w = workloads::render(&c);
    let init = &node_pod_spec(&w).init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "install-cni");
    assert_eq!(env_map(init.env.as_ref().unwrap())["CNI_MTU"], "8980");
}

#[test]
fn a_config_map_change_rolls_calico_node() {
    let hash = |c: &CharmConfig| {
        let w = workloads::render(c);
        daemon_set(&w)
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["calico.juju.is/config-hash"]
            .clone()
    };
    let mut c = defaults();
    let h0 = hash(&c);
    assert_eq!(h0, hash(&defaults()));
    c.veth_mtu = Some(1500);
    assert_ne!(hash(&c), h0);
    let mut c = defaults();
    c.cidrs = cidrs(&["192.168.0.0/16", "fd00::/64"]);
    assert_ne!(
        hash(&c),
        h0,
        "the CNI template changes with the IP families"
    );
}

// ---------------------------------------------------------------- calico-node environment

#[test]
fn ip_autodetection_follows_the_cidr_families() {
    // IPv4: no IP, so calico-node keeps the address each unit writes on its Node; the
    // method only fills in a Node that has none yet.
    let env = node_env(&current());
    assert!(!env.contains_key("IP"));
    assert_eq!(env["IP_AUTODETECTION_METHOD"], "kubernetes-internal-ip");
    assert!(!env.contains_key("IP6"));
    assert!(!env.contains_key("IP6_AUTODETECTION_METHOD"));
    assert_eq!(env["FELIX_IPV6SUPPORT"], "false");

    let mut c = current();
    c.cidrs = cidrs(&["192.168.0.0/16", "fd00:c00b:1::/64"]);
    let env = node_env(&c);
    assert!(!env.contains_key("IP"));
    assert_eq!(env["IP6"], "autodetect");
    assert_eq!(env["IP6_AUTODETECTION_METHOD"], "kubernetes-internal-ip");
    assert_eq!(env["FELIX_IPV6SUPPORT"], "true");
    assert!(!env.contains_key("CALICO_ROUTER_ID"));

    c.cidrs = cidrs(&["fd00:c00b:1::/64"]);
    let env = node_env(&c);
    assert_eq!(env["IP"], "none");
    assert_eq!(env["IP6"], "autodetect");
    assert_eq!(env["CALICO_ROUTER_ID"], "hash");
}

#[test]
fn calico_node_env_has_the_datastore_and_backend_settings_and_never_as() {
    let env = node_env(&defaults());
    assert_eq!(env["DATASTORE_TYPE"], "kubernetes");
    assert_eq!(env["WAIT_FOR_DATASTORE"], "true");
    assert_eq!(env["NODENAME"], "<from>");
    assert_eq!(env["CALICO_NETWORKING_BACKEND"], "bird");
    assert_eq!(env["CLUSTER_TYPE"], "k8s,bgp");
    assert!(
        !env.contains_key("AS"),
        "the charm sets AS numbers via annotations"
    );
    let w = workloads::render(&defaults());
    let c = &node_pod_spec(&w).containers[0];
    let nodename = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "NODENAME")
        .unwrap();
    assert_eq!(
        nodename
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
    assert_eq!(
        w.config_maps[0].data.as_ref().unwrap()["calico_backend"],
        "bird"
    );
}

#[test]
fn pool_env_follows_manage_pools() {
    let env = node_env(&current());
    assert_eq!(env["NO_DEFAULT_POOLS"], "true");
    assert!(env.keys().all(|k| !k.contains("POOL_")));

    let mut c = current();
    c.manage_pools = false;
    c.ipip = EncapMode::CrossSubnet;
    c.nat_outgoing = false;
    c.cidrs = cidrs(&["10.1.0.0/16", "fd00:1::/64"]);
    let env = node_env(&c);
    assert!(!env.contains_key("NO_DEFAULT_POOLS"));
    assert_eq!(env["CALICO_IPV4POOL_CIDR"], "10.1.0.0/16");
    assert_eq!(env["CALICO_IPV4POOL_IPIP"], "CrossSubnet");
    assert_eq!(env["CALICO_IPV4POOL_VXLAN"], "Never");
    assert_eq!(env["CALICO_IPV4POOL_NAT_OUTGOING"], "false");
    assert_eq!(env["CALICO_IPV6POOL_CIDR"], "fd00:1::/64");
    assert_eq!(env["CALICO_IPV6POOL_NAT_OUTGOING"], "false");

    // A family the cidr lacks gets no default pool.
    c.cidrs = cidrs(&["10.1.0.0/16"]);
    let env = node_env(&c);
    assert_eq!(env["CALICO_IPV4POOL_CIDR"], "10.1.0.0/16");
    assert_eq!(env["CALICO_IPV6POOL_CIDR"], "none");
    c.cidrs = cidrs(&["fd00:1::/64"]);
    let env = node_env(&c);
    assert_eq!(env["CALICO_IPV4POOL_CIDR"], "none");
    assert!(!env.contains_key("CALICO_IPV4POOL_IPIP"));
    assert_eq!(env["CALICO_IPV6POOL_CIDR"], "fd00:1::/64");
    // With managed pools, no pool variable at all (calico-node refuses both together).
    let mut c = current();
    c.cidrs = cidrs(&["fd00:1::/64"]);
    assert!(node_env(&c).keys().all(|k| !k.contains("POOL_")));
}

#[test]
fn calico_node_daemon_set_runs_privileged_on_every_node() {
    let w = workloads::render(&defaults());
    let ds = daemon_set(&w);
    assert_eq!(ds.metadata.name.as_deref(), Some("calico-node"));
    let tl = template_labels(&ds.spec.selector, &ds.spec.template);
    assert_eq!(tl["app.kubernetes.io/managed-by"], "calico-charm");
    let spec = node_pod_spec(&w);
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(spec.service_account_name.as_deref(), Some("calico-node"));
    let tol = spec.tolerations.as_ref().unwrap();
    for effect in ["NoSchedule", "NoExecute"] {
        assert!(tol.iter().any(|t| t.effect.as_deref() == Some(effect)
            && t.key.is_none()
            && t.operator.as_deref() == Some("Exists")));
    }
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        assert_eq!(
            c.security_context.as_ref().unwrap().privileged,
            Some(true),
            "{}",
            c.name
        );
    }
    let main = &spec.containers[0];
    assert!(main.liveness_probe.is_some() && main.readiness_probe.is_some());
    // Every mount names a declared hostPath volume.
    let vols: BTreeSet<_> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            assert!(v.host_path.is_some(), "{}", v.name);
            v.name.clone()
        })
        .collect();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for m in c.volume_mounts.iter().flatten() {
            assert!(
                vols.contains(&m.name),
                "{} mounts unknown {}",
                c.name,
                m.name
            );
        }
    }
    let host_paths: BTreeSet<_> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.host_path.as_ref().unwrap().path.clone())
        .collect();
    for p in [
        "/opt/cni/bin",
        "/etc/cni/net.d",
        "/var/lib/calico",
        "/var/run/calico",
        "/lib/modules",
    ] {
        assert!(host_paths.contains(p), "{p}");
    }
    // install-cni takes its template from the ConfigMap.
    let init = &spec.init_containers.as_ref().unwrap()[0];
    let cfg = init
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "CNI_NETWORK_CONFIG")
        .unwrap();
    let key = cfg
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("calico-config", "cni_network_config")
    );
}

#[test]
fn kube_controllers_deployment_runs_the_node_controller() {
    let w = workloads::render(&defaults());
    assert_eq!(w.deployments.len(), 1);
    let d = &w.deployments[0];
    assert_eq!(d.metadata.name.as_deref(), Some("calico-kube-controllers"));
    assert_eq!(d.spec.replicas, Some(1));
    assert_eq!(
        d.spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );
    let spec = d.spec.template.spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("calico-kube-controllers")
    );
    let c = &spec.containers[0];
    let env = env_map(c.env.as_ref().unwrap());
    assert_eq!(env["ENABLED_CONTROLLERS"], "node");
    assert_eq!(env["DATASTORE_TYPE"], "kubernetes");
    // v3.6.1's check-status has only -r (no -l): readiness only, as its manifest.
    assert_eq!(
        exec_command(c.readiness_probe.as_ref()),
        ["/usr/bin/check-status", "-r"]
    );
    assert!(c.liveness_probe.is_none());
    let w = workloads::render(&current());
    let c = &w.deployments[0]
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        exec_command(c.readiness_probe.as_ref()),
        ["/usr/bin/check-status", "-r"]
    );
    assert_eq!(
        exec_command(c.liveness_probe.as_ref()),
        ["/usr/bin/check-status", "-l"]
    );
    let tl = template_labels(&d.spec.selector, &d.spec.template);
    assert_eq!(tl["app.kubernetes.io/managed-by"], "calico-charm");
}

fn exec_command(probe: Option<&Probe>) -> Vec<String> {
    probe
        .and_then(|p| p.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap_or_default()
}

fn node_container(w: &Workloads) -> &Container {
    node_pod_spec(w)
        .containers
        .iter()
        .find(|c| c.name == "calico-node")
        .unwrap()
}

// ---------------------------------------------------------------- Calico versions

#[test]
fn the_version_comes_from_the_calico_node_image_tag() {
    let parse = CalicoVersion::parse_tag;
    assert_eq!(parse("v3.6.1"), Some(CalicoVersion::new(3, 6, 1)));
    assert_eq!(parse("v3.32.1"), Some(CalicoVersion::new(3, 32, 1)));
    assert_eq!(parse("3.26"), Some(CalicoVersion::new(3, 26, 0)));
    assert_eq!(parse("v3.27.0-rc2"), Some(CalicoVersion::new(3, 27, 0)));
    assert_eq!(parse("v3.16.1-amd64"), Some(CalicoVersion::new(3, 16, 1)));
    assert_eq!(parse("v3.20.0+build.7"), Some(CalicoVersion::new(3, 20, 0)));
    for bad in [
        "latest",
        "master",
        "",
        "v",
        "v3",
        "v3.",
        "v3.6.",
        "v3.6.1.2",
        "v3.x.1",
        "vv3.6.1",
        "3.6.1a",
        "v-3.6",
        "v3.6.99999999999",
    ] {
        assert_eq!(parse(bad), None, "{bad:?}");
    }
    // Ordered numerically, not as text.
    assert!(CalicoVersion::new(3, 10, 0) > CalicoVersion::new(3, 9, 9));
    assert!(CalicoVersion::new(3, 6, 1).at_least(CalicoVersion::new(3, 6, 0)));
    assert!(!CalicoVersion::new(3, 6, 1).at_least(CalicoVersion::new(3, 7, 0)));

    let of = |r: &str| {
        CalicoVersion::of_image(&Image {
            reference: r.into(),
        })
    };
    assert_eq!(
        of("registry.local:5000/calico/node:v3.6.1"),
        (CalicoVersion::new(3, 6, 1), None),
        "a registry port is not a tag"
    );
    assert_eq!(
        workloads::node_version(&defaults()),
        CalicoVersion::new(3, 6, 1)
    );
    // Not a version: assume the reference's release and say so.
    for (r, why) in [
        (
            "docker.io/calico/node:latest",
            "tag \"latest\" is not a Calico version",
        ),
        (
            "docker.io/calico/node@sha256:0123456789abcdef0123456789abcdef",
            "the reference has a digest but no tag",
        ),
        (
            "registry.local:5000/calico/node",
            "the reference has no tag",
        ),
    ] {
        let (v, warning) = of(r);
        assert_eq!(v, CalicoVersion::new(3, 32, 1), "{r}");
        let warning = warning.unwrap();
        assert!(
            warning.starts_with(&format!(
                "calico-node-image: {why}; assuming Calico v3.32.1"
            )),
            "{warning}"
        );
    }
    let (v, warning) = of("calico/node:v2.6.12");
    assert_eq!(v, CalicoVersion::new(2, 6, 12));
    assert!(warning.unwrap().contains("older than v3.6.0"));
}

#[test]
fn warnings_name_what_the_configured_release_cannot_do() {
    assert_eq!(workloads::warnings(&defaults()), Vec::<String>::new());
    assert_eq!(workloads::warnings(&current()), Vec::<String>::new());

    let mut c = defaults();
    c.vxlan = EncapMode::Always;
    c.calico_policy_image.reference = "docker.io/calico/kube-controllers:v3.32.1".into();
    let w = workloads::warnings(&c);
    // vxlan on v3.6.1 is no longer a warning: validation refuses it (config::validate).
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("calico-policy-image is Calico v3.32.1 but calico-node-image is v3.6.1")
    );

    let mut c = defaults();
    c.manage_pools = false;
    c.cidrs = cidrs(&["10.1.0.0/16", "fd00:1::/64"]);
    let w = workloads::warnings(&c);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("cidr: with Calico v3.6.1 the node's IPv6 address"));
    c.cidrs = cidrs(&["10.1.0.0/16"]);
    let w = workloads::warnings(&c);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("manage-pools: Calico v3.6.1 cannot be told"));
    c.calico_node_image.reference = "docker.io/calico/node:v3.27.0".into();
    c.calico_policy_image.reference = "docker.io/calico/kube-controllers:v3.27.0".into();
    assert_eq!(workloads::warnings(&c), Vec::<String>::new());

    let mut c = current();
    c.calico_node_image.reference = "docker.io/calico/node:latest".into();
    assert_eq!(workloads::warnings(&c).len(), 1);
}

#[test]
fn v3_6_calico_node_uses_what_v3_6_has() {
    let w = workloads::render(&defaults());
    let spec = node_pod_spec(&w);
    // install-cni in calico/cni:v3.6.1 is a shell script; /opt/cni/bin/install came in 3.16.
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "install-cni");
    assert_eq!(init.image.as_deref(), Some("docker.io/calico/cni:v3.6.1"));
    assert_eq!(
        init.command.as_deref(),
        Some(&["/install-cni.sh".to_string()][..])
    );
    let env = env_map(init.env.as_ref().unwrap());
    assert_eq!(env["CNI_CONF_NAME"], "10-calico.conflist");
    assert_eq!(env["CNI_NETWORK_CONFIG"], "<from>");
    assert_eq!(env["KUBERNETES_NODE_NAME"], "<from>");
    assert_eq!(env["SLEEP"], "false");
    assert_eq!(env["CNI_MTU"], "1440", "3.6 has no MTU auto-detection");

    let main = node_container(&w);
    // No -felix-live/-bird-live in 3.6: Felix's HTTP health endpoint.
    let live = main.liveness_probe.as_ref().unwrap();
    assert!(live.exec.is_none());
    let http = live.http_get.as_ref().unwrap();
    assert_eq!(http.path.as_deref(), Some("/liveness"));
    assert_eq!(http.port, IntOrString::Int(9099));
    assert_eq!(http.host.as_deref(), Some("localhost"));
    assert_eq!(
        exec_command(main.readiness_probe.as_ref()),
        ["/bin/calico-node", "-felix-ready", "-bird-ready"]
    );
    assert!(main.lifecycle.is_none(), "no -shutdown before 3.21");

    let env = env_map(main.env.as_ref().unwrap());
    // No IP (the Node's address is kept) and no method: kubernetes-internal-ip does not
    // exist before 3.22, so a Node without an address yet gets 3.6's first-found.
    assert!(!env.contains_key("IP"));
    assert!(!env.contains_key("IP_AUTODETECTION_METHOD"));
    assert_eq!(env["FELIX_IPINIPMTU"], "1440");
    assert!(!env.contains_key("FELIX_VXLANMTU"), "no VXLAN in 3.6");
    assert!(!env.contains_key("FELIX_WIREGUARDMTU"));
    assert_eq!(w.config_maps[0].data.as_ref().unwrap()["veth_mtu"], "1440");
    // Nothing of 3.32 is left in the DaemonSet.
    let text = serde_json::to_string(daemon_set(&w)).unwrap();
    for later in [
        "kubernetes-internal-ip",
        "-felix-live",
        "-bird-live",
        "/opt/cni/bin/install",
        "-shutdown",
    ] {
        assert!(!text.contains(later), "{later}");
    }
}

#[test]
fn v3_32_calico_node_uses_what_the_reference_describes() {
    let w = workloads::render(&current());
    let spec = node_pod_spec(&w);
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("docker.io/calico/cni:v3.32.1"));
    assert_eq!(
        init.command.as_deref(),
        Some(&["/opt/cni/bin/install".to_string()][..])
    );
    assert_eq!(env_map(init.env.as_ref().unwrap())["CNI_MTU"], "0");
    let main = node_container(&w);
    assert_eq!(
        exec_command(main.liveness_probe.as_ref()),
        ["/bin/calico-node", "-felix-live", "-bird-live"]
    );
    assert_eq!(
        exec_command(main.readiness_probe.as_ref()),
        ["/bin/calico-node", "-felix-ready", "-bird-ready"]
    );
    let pre_stop = main.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(
        pre_stop.exec.as_ref().unwrap().command.as_deref(),
        Some(&["/bin/calico-node".to_string(), "-shutdown".to_string()][..])
    );
    let env = env_map(main.env.as_ref().unwrap());
    assert!(!env.contains_key("IP"));
    assert_eq!(env["IP_AUTODETECTION_METHOD"], "kubernetes-internal-ip");
    for k in ["FELIX_IPINIPMTU", "FELIX_VXLANMTU", "FELIX_WIREGUARDMTU"] {
        assert_eq!(env[k], "0", "{k}");
    }
}

#[test]
fn each_feature_switches_at_its_release() {
    let at = |tag: &str| {
        let mut c = defaults();
        c.calico_node_image.reference = format!("docker.io/calico/node:{tag}");
        c.calico_policy_image.reference = format!("docker.io/calico/kube-controllers:{tag}");
        c
    };
    let install = |tag: &str| {
        let w = workloads::render(&at(tag));
        node_pod_spec(&w).init_containers.as_ref().unwrap()[0]
            .command
            .clone()
            .unwrap()
    };
    assert_eq!(install("v3.15.5"), ["/install-cni.sh"]);
    assert_eq!(install("v3.16.0"), ["/opt/cni/bin/install"]);
    let live = |tag: &str| {
        let w = workloads::render(&at(tag));
        exec_command(node_container(&w).liveness_probe.as_ref())
    };
    assert_eq!(live("v3.10.4"), Vec::<String>::new(), "HTTP liveness");
    assert_eq!(
        live("v3.11.0"),
        ["/bin/calico-node", "-felix-live", "-bird-live"]
    );
    let method = |tag: &str| node_env(&at(tag)).get("IP_AUTODETECTION_METHOD").cloned();
    assert_eq!(method("v3.21.6"), None);
    assert_eq!(method("v3.22.0").as_deref(), Some("kubernetes-internal-ip"));
    let mtu = |tag: &str| node_env(&at(tag))["FELIX_IPINIPMTU"].clone();
    assert_eq!(mtu("v3.16.9"), "1440");
    assert_eq!(mtu("v3.17.0"), "0");
    let shutdown = |tag: &str| {
        node_container(&workloads::render(&at(tag)))
            .lifecycle
            .is_some()
    };
    assert!(!shutdown("v3.20.6"));
    assert!(shutdown("v3.21.0"));
    let kc_live = |tag: &str| {
        let w = workloads::render(&at(tag));
        w.deployments[0]
            .spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .liveness_probe
            .is_some()
    };
    assert!(!kc_live("v3.18.6"));
    assert!(kc_live("v3.19.0"));
    let vxlan = |tag: &str| node_env(&at(tag)).contains_key("FELIX_VXLANMTU");
    assert!(!vxlan("v3.6.5"));
    assert!(vxlan("v3.7.0"));
    // The CNI token: the pod's own before 3.23, minted for calico-node until 3.26, then
    // for calico-cni-plugin.
    let token_for = |tag: &str| {
        let w = workloads::render(&at(tag));
        let node = w
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("calico-node"))
            .unwrap();
        node.rules
            .iter()
            .flatten()
            .find(|r| {
                r.resources
                    .iter()
                    .flatten()
                    .any(|x| x == "serviceaccounts/token")
            })
            .map(|r| r.resource_names.clone().unwrap())
    };
    assert_eq!(token_for("v3.22.5"), None);
    assert_eq!(token_for("v3.23.0"), Some(vec!["calico-node".to_string()]));
    assert_eq!(token_for("v3.25.2"), Some(vec!["calico-node".to_string()]));
    assert_eq!(
        token_for("v3.26.0"),
        Some(vec!["calico-cni-plugin".to_string()])
    );
    let accounts = |tag: &str| workloads::render(&at(tag)).service_accounts.len();
    assert_eq!(accounts("v3.25.2"), 2);
    assert_eq!(accounts("v3.26.0"), 3);
    // `none` for a pool family calico-node must not create: from 3.27 only.
    let pool6 = |tag: &str| {
        let mut c = at(tag);
        c.manage_pools = false;
        node_env(&c).get("CALICO_IPV6POOL_CIDR").cloned()
    };
    assert_eq!(pool6("v3.26.4"), None);
    assert_eq!(pool6("v3.27.0").as_deref(), Some("none"));
}

#[test]
fn v3_6_ip_and_pool_env_for_each_cidr_family() {
    // Dual stack: IPv4 kept from the Node (no IP), IPv6 by the only 3.6 method without a
    // per-node value.
    let mut c = defaults();
    c.cidrs = cidrs(&["192.168.0.0/16", "fd00:c00b:1::/64"]);
    let env = node_env(&c);
    assert!(!env.contains_key("IP"));
    assert_eq!(env["IP6"], "autodetect");
    assert_eq!(env["IP6_AUTODETECTION_METHOD"], "first-found");
    assert_eq!(env["FELIX_IPV6SUPPORT"], "true");
    // IPv6 only: the node IP is the IPv6 address; `CALICO_ROUTER_ID=hash` only from 3.7,
    // so 3.6 gets none and a warning.
    c.cidrs = cidrs(&["fd00:c00b:1::/64"]);
    let env = node_env(&c);
    assert_eq!(env["IP"], "none");
    assert_eq!(env["IP6"], "<from>");
    assert!(!env.contains_key("CALICO_ROUTER_ID"));
    let w = workloads::warnings(&c);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("cidr: Calico v3.6.1 cannot run IPv6-only"));
    c.calico_node_image.reference = "docker.io/calico/node:v3.7.0".into();
    c.calico_policy_image.reference = "docker.io/calico/kube-controllers:v3.7.0".into();
    assert_eq!(node_env(&c)["CALICO_ROUTER_ID"], "hash");
    assert_eq!(node_env(&c)["IP6"], "<from>");
    assert_eq!(workloads::warnings(&c), Vec::<String>::new());

    // Unmanaged pools: 3.6 knows neither VXLAN nor `none`.
    let mut c = defaults();
    c.manage_pools = false;
    c.ipip = EncapMode::Always;
    let env = node_env(&c);
    assert_eq!(env["CALICO_IPV4POOL_CIDR"], "192.168.0.0/16");
    assert_eq!(env["CALICO_IPV4POOL_IPIP"], "Always");
    assert_eq!(env["CALICO_IPV4POOL_NAT_OUTGOING"], "true");
    assert!(!env.contains_key("CALICO_IPV4POOL_VXLAN"));
    assert!(
        !env.contains_key("CALICO_IPV6POOL_CIDR"),
        "`none` stops 3.6"
    );
    assert!(!env.contains_key("NO_DEFAULT_POOLS"));
    assert!(env.values().all(|v| v != "none"));
}

#[test]
fn v3_6_rbac_is_the_v3_6_manifests_rules() {
    let w = workloads::render(&defaults());
    let crd = "crd.projectcalico.org";
    // The CNI plugin runs with calico-node's token: calico-node holds its grants.
    assert!(grants(&w, "calico-node", "", "pods/status", "patch"));
    assert!(grants(&w, "calico-node", crd, "ipamhandles", "delete"));
    assert!(grants(&w, "calico-node", crd, "ipamconfigs", "get"));
    assert!(!grants(&w, "calico-node", crd, "ipamconfigs", "create"));
    assert!(!grants(
        &w,
        "calico-node",
        "",
        "serviceaccounts/token",
        "create"
    ));
    // The v2.6 data-migration check reads the legacy kinds at start-up.
    assert!(grants(&w, "calico-node", crd, "globalfelixconfigs", "get"));
    assert!(grants(&w, "calico-node", crd, "globalbgpconfigs", "list"));
    assert!(grants(&w, "calico-node", crd, "blockaffinities", "watch"));
    assert!(grants(&w, "calico-node", "", "nodes/status", "update"));
    // What 3.6 does not use.
    for (group, resource, verb) in [
        (crd, "tiers", "create"),
        (crd, "caliconodestatuses", "update"),
        (crd, "bgpfilters", "list"),
        (crd, "ipreservations", "list"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("policy.networking.k8s.io", "clusternetworkpolicies", "list"),
        (crd, "bgppeers", "create"),
    ] {
        assert!(
            !grants(&w, "calico-node", group, resource, verb),
            "{resource} {verb}"
        );
    }
    let kc = "calico-kube-controllers";
    assert!(grants(&w, kc, "", "nodes", "watch"));
    assert!(grants(&w, kc, "", "pods", "get"));
    assert!(!grants(&w, kc, "", "pods", "watch"));
    assert!(grants(&w, kc, crd, "ippools", "list"));
    assert!(grants(&w, kc, crd, "ipamblocks", "delete"));
    assert!(grants(&w, kc, crd, "clusterinformations", "create"));
    for resource in ["kubecontrollersconfigurations", "tiers", "hostendpoints"] {
        assert!(!grants(&w, kc, crd, resource, "get"), "{resource}");
    }
    // The current line no longer needs the legacy reads.
    let w = workloads::render(&current());
    assert!(!grants(&w, "calico-node", crd, "globalfelixconfigs", "get"));
}

// ---------------------------------------------------------------- RBAC

#[test]
fn rbac_has_no_wildcards_and_every_binding_is_complete() {
    let cni = "calico-cni-plugin";
    rbac_complete(&defaults(), &["calico-kube-controllers", "calico-node"]);
    rbac_complete(
        &current(),
        &[
            "calico-cni-plugin",
            "calico-kube-controllers",
            "calico-node",
        ],
    );
    assert!(
        !workloads::render(&defaults())
            .objects()
            .iter()
            .any(|o| o["metadata"]["name"] == cni),
        "no {cni} object on v3.6.1"
    );
}

fn rbac_complete(config: &CharmConfig, accounts: &[&str]) {
    let w = workloads::render(config);
    let known_verbs: BTreeSet<&str> = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ]
    .into();
    for role in &w.cluster_roles {
        let name = role.metadata.name.as_deref().unwrap();
        for r in role.rules.iter().flatten() {
            for v in &r.verbs {
                assert!(known_verbs.contains(v.as_str()), "{name}: verb {v}");
            }
            for list in [&r.api_groups, &r.resources, &r.resource_names] {
                for x in list.iter().flatten() {
                    assert!(!x.contains('*'), "{name}: wildcard {x}");
                }
            }
            assert!(r.non_resource_urls.is_none());
            assert!(
                r.resources.as_ref().is_some_and(|x| !x.is_empty()),
                "{name}"
            );
        }
    }
    let sas: BTreeSet<_> = w
        .service_accounts
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    let roles: BTreeSet<_> = w
        .cluster_roles
        .iter()
        .map(|r| r.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        sas,
        accounts
            .iter()
            .map(|a| a.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(roles, sas);
    for b in &w.cluster_role_bindings {
        assert!(roles.contains(&b.role_ref.name));
        for s in b.subjects.iter().flatten() {
            assert_eq!(s.kind, "ServiceAccount");
            assert_eq!(s.namespace.as_deref(), Some("kube-system"));
            assert!(sas.contains(&s.name));
        }
    }
    // The workloads run as the bound accounts.
    assert_eq!(
        node_pod_spec(&w).service_account_name.as_deref(),
        Some("calico-node")
    );
}

fn grants(w: &Workloads, role: &str, group: &str, resource: &str, verb: &str) -> bool {
    let r = w
        .cluster_roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(role))
        .unwrap();
    r.rules.iter().flatten().any(|rule| {
        rule.api_groups.iter().flatten().any(|g| g == group)
            && rule.resources.iter().flatten().any(|x| x == resource)
            && rule.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn rbac_grants_what_calico_needs_and_not_more() {
    let w = workloads::render(&current());
    let crd = "crd.projectcalico.org";
    // Needed (reference, section 8).
    assert!(grants(&w, "calico-node", "", "nodes/status", "patch"));
    assert!(grants(&w, "calico-node", crd, "ippools", "watch"));
    assert!(grants(&w, "calico-node", crd, "ipamblocks", "create"));
    assert!(grants(
        &w,
        "calico-node",
        "",
        "serviceaccounts/token",
        "create"
    ));
    assert!(grants(
        &w,
        "calico-cni-plugin",
        crd,
        "ipamhandles",
        "delete"
    ));
    assert!(grants(
        &w,
        "calico-kube-controllers",
        crd,
        "ipamblocks",
        "delete"
    ));
    assert!(grants(&w, "calico-kube-controllers", "", "pods", "watch"));
    // Not needed.
    assert!(
        !grants(&w, "calico-node", "", "nodes", "update"),
        "writes go through nodes/status"
    );
    assert!(!grants(&w, "calico-node", "", "secrets", "get"));
    assert!(
        !grants(&w, "calico-node", crd, "bgppeers", "create"),
        "the charm owns peers"
    );
    assert!(!grants(
        &w,
        "calico-kube-controllers",
        "",
        "services",
        "update"
    ));
    assert!(!grants(&w, "calico-cni-plugin", crd, "ippools", "update"));
    // The token request is limited to the CNI plugin's account.
    let node = &w
        .cluster_roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("calico-node"))
        .unwrap();
    let token = node
        .rules
        .iter()
        .flatten()
        .find(|r| {
            r.resources
                .iter()
                .flatten()
                .any(|x| x == "serviceaccounts/token")
        })
        .unwrap();
    assert_eq!(
        token.resource_names.as_deref(),
        Some(&["calico-cni-plugin".to_string()][..])
    );
}

// ---------------------------------------------------------------- CRDs

/// (kind, plural, group, scope, version) of every CRD the reference lists (section 8).
const EXPECTED_CRDS: [(&str, &str, &str, &str, &str); 23] = [
    (
        "BGPConfiguration",
        "bgpconfigurations",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "BGPFilter",
        "bgpfilters",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "BGPPeer",
        "bgppeers",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "BlockAffinity",
        "blockaffinities",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "CalicoNodeStatus",
        "caliconodestatuses",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "ClusterInformation",
        "clusterinformations",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "FelixConfiguration",
        "felixconfigurations",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "GlobalNetworkSet",
        "globalnetworksets",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "HostEndpoint",
        "hostendpoints",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "IPAMBlock",
        "ipamblocks",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "IPAMConfig",
        "ipamconfigs",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "IPAMHandle",
        "ipamhandles",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "IPPool",
        "ippools",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "IPReservation",
        "ipreservations",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "KubeControllersConfiguration",
        "kubecontrollersconfigurations",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "NetworkPolicy",
        "networkpolicies",
        "crd.projectcalico.org",
        "Namespaced",
        "v1",
    ),
    (
        "NetworkSet",
        "networksets",
        "crd.projectcalico.org",
        "Namespaced",
        "v1",
    ),
    (
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
        "crd.projectcalico.org",
        "Cluster",
        "v1",
    ),
    (
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
        "crd.projectcalico.org",
        "Namespaced",
        "v1",
    ),
    (
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
        "crd.projectcalico.org",
        "Namespaced",
        "v1",
    ),
    ("Tier", "tiers", "crd.projectcalico.org", "Cluster", "v1"),
    (
        "ClusterNetworkPolicy",
        "clusternetworkpolicies",
        "policy.networking.k8s.io",
        "Cluster",
        "v1alpha2",
    ),
];

#[test]
fn the_crds_also_cover_what_v3_6_needs() {
    // The kinds the v3.6 KDD manifest creates (`_includes/v3.6/charts/calico/templates/
    // kdd-crds.yaml` in projectcalico/calico): the same names, group and scope.
    let v3_6 = [
        ("felixconfigurations", "Cluster"),
        ("ipamblocks", "Cluster"),
        ("blockaffinities", "Cluster"),
        ("ipamhandles", "Cluster"),
        ("ipamconfigs", "Cluster"),
        ("bgppeers", "Cluster"),
        ("bgpconfigurations", "Cluster"),
        ("ippools", "Cluster"),
        ("hostendpoints", "Cluster"),
        ("clusterinformations", "Cluster"),
        ("globalnetworkpolicies", "Cluster"),
        ("globalnetworksets", "Cluster"),
        ("networkpolicies", "Namespaced"),
    ];
    let all = crds::crds();
    for (plural, scope) in v3_6 {
        let name = format!("{plural}.crd.projectcalico.org");
        let c = all
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no CRD {name}"));
        assert_eq!(c.spec.scope, scope, "{name}");
        assert!(c.spec.versions.iter().any(|v| v.name == "v1" && v.served));
    }
}

#[test]
fn every_crd_the_reference_lists_is_present_with_its_names_and_scope() {
    let all = crds::crds();
    assert_eq!(all.len(), EXPECTED_CRDS.len());
    for (kind, plural, group, scope, version) in EXPECTED_CRDS {
        let c = all
            .iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap_or_else(|| panic!("no CRD for {kind}"));
        assert_eq!(
            c.metadata.name.as_deref(),
            Some(format!("{plural}.{group}").as_str())
        );
        assert_eq!(c.spec.group, group, "{kind}");
        assert_eq!(c.spec.names.plural, plural, "{kind}");
        assert_eq!(
            c.spec.names.singular.as_deref(),
            Some(kind.to_lowercase().as_str())
        );
        assert_eq!(
            c.spec.names.list_kind.as_deref(),
            Some(format!("{kind}List").as_str())
        );
        assert_eq!(c.spec.scope, scope, "{kind}");
        assert_eq!(c.spec.versions.len(), 1, "{kind}");
        let v = &c.spec.versions[0];
        assert_eq!(v.name, version, "{kind}");
        assert!(v.served && v.storage, "{kind}");
    }
}

/// Kubernetes' structural-schema rules, as far as these CRDs can break them.
fn check_structural(s: &Value, path: &str, errs: &mut Vec<String>) {
    let obj = s.as_object().unwrap();
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if obj
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && !preserve
        && !int_or_string
    {
        errs.push(format!("{path}: no type"));
    }
    if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
        errs.push(format!("{path}: properties and additionalProperties"));
    }
    if obj.get("additionalProperties") == Some(&json!(false)) {
        errs.push(format!("{path}: additionalProperties false"));
    }
    for k in [
        "$ref",
        "definitions",
        "dependencies",
        "id",
        "patternProperties",
        "additionalItems",
    ] {
        if obj.contains_key(k) {
            errs.push(format!("{path}: {k} is not allowed"));
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        for b in obj.get(k).and_then(Value::as_array).into_iter().flatten() {
            for f in [
                "type",
                "description",
                "default",
                "nullable",
                "additionalProperties",
            ] {
                if b.get(f).is_some() {
                    errs.push(format!("{path}.{k}: {f} inside a logical junctor"));
                }
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            check_structural(p, &format!("{path}.{name}"), errs);
        }
    }
    if let Some(items) = obj.get("items") {
        check_structural(items, &format!("{path}[]"), errs);
    }
    if let Some(a) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(a, &format!("{path}{{}}"), errs);
    }
}

fn root_schema(c: &CustomResourceDefinition) -> Value {
    serde_json::to_value(
        c.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn every_crd_schema_is_structural_and_keeps_unknown_spec_fields() {
    for c in crds::crds() {
        let kind = &c.spec.names.kind;
        let root = root_schema(&c);
        let mut errs = Vec::new();
        check_structural(&root, kind, &mut errs);
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!(root["type"], "object", "{kind}");
        assert_eq!(root["properties"]["metadata"]["type"], "object", "{kind}");
        assert!(
            root["properties"]["metadata"].get("properties").is_none(),
            "{kind}"
        );
        let spec = &root["properties"]["spec"];
        assert_eq!(spec["type"], "object", "{kind}");
        assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], true, "{kind}");
        assert!(
            root.get("required").is_none(),
            "{kind}: spec must not be required"
        );
        assert!(
            !serde_json::to_string(&root)
                .unwrap()
                .contains("\"default\""),
            "{kind}: defaults"
        );
        assert!(
            !serde_json::to_string(&root).unwrap().contains("uint"),
            "{kind}: a format Kubernetes does not know"
        );
        let has_status = root["properties"].get("status").is_some();
        let want_status = matches!(
            kind.as_str(),
            "CalicoNodeStatus" | "KubeControllersConfiguration" | "ClusterNetworkPolicy"
        );
        assert_eq!(has_status, want_status, "{kind}");
        if has_status {
            assert_eq!(
                root["properties"]["status"]["x-kubernetes-preserve-unknown-fields"],
                true
            );
        }
        // Calico's v1 CRDs have no status subresource; the upstream CNP API has one.
        assert_eq!(
            c.spec.versions[0].subresources.is_some(),
            kind == "ClusterNetworkPolicy",
            "{kind}"
        );
    }
}

#[test]
fn crds_match_the_upstream_identities_in_shared_calico_crds() {
    let dir = support::crd_schema::default_crd_dir();
    let ours = crds::crds();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let up: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = up["metadata"]["name"].as_str().unwrap();
        let mine = ours
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no CRD named {name}"));
        let mine = serde_json::to_value(mine).unwrap();
        for key in ["group", "scope"] {
            assert_eq!(mine["spec"][key], up["spec"][key], "{name} {key}");
        }
        assert_eq!(mine["spec"]["names"], up["spec"]["names"], "{name} names");
        let uv = &up["spec"]["versions"][0];
        let mv = &mine["spec"]["versions"][0];
        for key in ["name", "served", "storage"] {
            assert_eq!(mv[key], uv[key], "{name} {key}");
        }
        assert_eq!(
            uv.get("subresources"),
            mv.get("subresources"),
            "{name} subresources"
        );
        seen += 1;
    }
    assert_eq!(seen, 7);
}

/// Write our CRDs as YAML manifests into a directory the schema validator reads.
fn our_crd_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for c in crds::crds() {
        let name = c.metadata.name.clone().unwrap();
        let yaml = serde_yaml::to_string(&c).unwrap();
        std::fs::write(dir.path().join(format!("{name}.yaml")), yaml).unwrap();
    }
    dir
}

#[test]
fn fields_other_writers_set_survive_pruning_by_our_crds() {
    let dir = our_crd_dir();
    // An IPPool as calicoctl or calico-node writes it, with fields the charm does not model.
    let pool = json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {"cidr": "192.168.0.0/16", "blockSize": 26, "ipipMode": "Never",
                 "vxlanMode": "Always", "natOutgoing": true, "nodeSelector": "all()",
                 "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic",
                 "disableBGPExport": false}
    });
    let crd = support::crd_schema::find_crd(dir.path(), "IPPool").unwrap();
    assert_eq!(crd.validate(&pool), Ok(()));
    let mut pruned = pool.clone();
    crd.prune(&mut pruned);
    assert_eq!(pruned, pool);
    // The same object against the upstream CRD is valid too (our view is no stricter).
    assert_eq!(
        support::crd_schema::validate_object(&support::crd_schema::default_crd_dir(), &pool),
        Ok(())
    );

    let peer = json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
        "metadata": {"name": "tor"},
        "spec": {"peerIP": "10.0.0.1", "asNumber": 65000, "keepOriginalNextHop": true,
                 "password": {"secretKeyRef": {"name": "s", "key": "k"}}}
    });
    let crd = support::crd_schema::find_crd(dir.path(), "BGPPeer").unwrap();
    let mut pruned = peer.clone();
    crd.prune(&mut pruned);
    assert_eq!(pruned, peer);

    let status = json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "CalicoNodeStatus",
        "metadata": {"name": "n1"},
        "spec": {"node": "n1", "classes": ["Agent"], "updatePeriodSeconds": 10},
        "status": {"agent": {"birdV4": {"state": "Ready"}}}
    });
    let crd = support::crd_schema::find_crd(dir.path(), "CalicoNodeStatus").unwrap();
    let mut pruned = status.clone();
    crd.prune(&mut pruned);
    assert_eq!(pruned, status);
}

#[test]
fn typed_fields_are_still_validated_by_our_crds() {
    let dir = our_crd_dir();
    let crd = support::crd_schema::find_crd(dir.path(), "IPPool").unwrap();
    let bad = json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "p"},
        "spec": {"cidr": "10.0.0.0/8", "blockSize": "big"}
    });
    let errs = crd.validate(&bad).unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("spec.blockSize")),
        "{errs:?}"
    );
}

#[test]
fn an_existing_crd_is_never_replaced() {
    let all = crds::crds();
    let ours = all.iter().find(|c| c.spec.names.kind == "IPPool").unwrap();
    assert_eq!(plan_crd(ours, None), CrdPlan::Create);
    // A newer upstream CRD (stricter schema, more versions) is left alone.
    let mut newer = ours.clone();
    newer.metadata.labels = None;
    newer.metadata.annotations = Some(BTreeMap::from([(
        "controller-gen.kubebuilder.io/version".into(),
        "v0.19.0".into(),
    )]));
    let mut v2 = newer.spec.versions[0].clone();
    v2.name = "v2".into();
    v2.storage = false;
    newer.spec.versions.push(v2);
    newer.spec.versions[0].schema = None;
    assert_eq!(plan_crd(ours, Some(&newer)), CrdPlan::Keep);
    assert_eq!(plan_crd(ours, Some(ours)), CrdPlan::Keep);
    // One that no longer serves v1 is left alone and reported.
    let mut gone = ours.clone();
    gone.spec.versions[0].served = false;
    match plan_crd(ours, Some(&gone)) {
        CrdPlan::Unusable(why) => {
            assert_eq!(why, "CRD ippools.crd.projectcalico.org does not serve v1")
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- readiness

fn pod(node: &str, status: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("calico-node-{node}"), "namespace": "kube-system",
                     "labels": {"k8s-app": "calico-node"},
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": node, "containers": [{"name": "calico-node"}]},
        "status": status,
    }))
    .unwrap()
}

fn running_ready() -> Value {
    json!({"phase": "Running",
           "conditions": [{"type": "Ready", "status": "True"}],
           "initContainerStatuses": [{"name": "install-cni", "ready": true, "restartCount": 0,
               "image": "i", "imageID": "",
               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
           "containerStatuses": [{"name": "calico-node", "ready": true, "restartCount": 0,
               "image": "i", "imageID": "", "state": {"running": {}}}]})
}

#[test]
fn a_running_ready_pod_is_ready() {
    assert_eq!(readiness::pod_ready(&pod("n1", running_ready())), Ok(()));
}

#[test]
fn the_reason_is_read_from_the_pod() {
    let waiting = |reason: &str| {
        json!({"phase": "Pending",
               "containerStatuses": [{"name": "calico-node", "ready": false, "restartCount": 0,
                   "image": "i", "imageID": "",
                   "state": {"waiting": {"reason": reason, "message": "details"}}}]})
    };
    for reason in ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"] {
        assert_eq!(
            readiness::pod_ready(&pod("n1", waiting(reason))),
            Err(reason.to_string())
        );
    }
    // An init container failing to pull is the reason, not the main container's wait.
    let init = json!({"phase": "Pending",
        "initContainerStatuses": [{"name": "install-cni", "ready": false, "restartCount": 0,
            "image": "i", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff"}}}],
        "containerStatuses": [{"name": "calico-node", "ready": false, "restartCount": 0,
            "image": "i", "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}]});
    assert_eq!(
        readiness::pod_ready(&pod("n1", init)),
        Err("ImagePullBackOff".into())
    );
    let failed_init = json!({"phase": "Pending",
        "initContainerStatuses": [{"name": "install-cni", "ready": false, "restartCount": 1,
            "image": "i", "imageID": "", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    assert_eq!(
        readiness::pod_ready(&pod("n1", failed_init)),
        Err("install-cni Error".into())
    );
    // Running but the readiness probe fails.
    let mut not_ready = running_ready();
    not_ready["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    assert_eq!(
        readiness::pod_ready(&pod("n1", not_ready)),
        Err("not ready".into())
    );
    // Phase when no container says more.
    assert_eq!(
        readiness::pod_ready(&pod("n1", json!({"phase": "Pending"}))),
        Err("Pending".into())
    );
    assert_eq!(
        readiness::pod_ready(&pod("n1", json!({}))),
        Err("Pending".into())
    );
    assert_eq!(
        readiness::waiting_message("node-1", "ImagePullBackOff").to_string(),
        "Waiting for calico-node on node-1: ImagePullBackOff"
    );
}

#[test]
fn this_nodes_pod_is_chosen_by_node_name_and_label() {
    let mine = pod("n1", running_ready());
    let other = pod("n2", json!({"phase": "Pending"}));
    let mut unlabelled = pod("n1", json!({"phase": "Pending"}));
    unlabelled.metadata.labels = Some(BTreeMap::from([("k8s-app".into(), "something".into())]));
    let pods = vec![other.clone(), unlabelled, mine.clone()];
    assert_eq!(readiness::calico_node_pod(&pods, "n1"), Some(&mine));
    assert_eq!(readiness::node_pod_ready(&pods, "n1"), Ok(()));
    assert_eq!(
        readiness::node_pod_ready(&pods, "n2"),
        Err("Pending".into())
    );
    assert_eq!(
        readiness::node_pod_ready(&pods, "n3"),
        Err("no calico-node pod".into())
    );
    // During a roll, the new pod wins over the terminating one.
    let mut old = pod("n1", running_ready());
    old.metadata.deletion_timestamp = old.metadata.creation_timestamp.clone();
    let mut new = pod("n1", json!({"phase": "Pending"}));
    new.metadata.name = Some("calico-node-new".into());
    let pods = vec![new.clone(), old];
    assert_eq!(readiness::calico_node_pod(&pods, "n1"), Some(&new));
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn encap() -> impl Strategy<Value = EncapMode> {
        prop_oneof![
            Just(EncapMode::Never),
            Just(EncapMode::Always),
            Just(EncapMode::CrossSubnet)
        ]
    }

    fn network() -> impl Strategy<Value = Option<IpNetwork>> {
        prop_oneof![
            Just(None),
            (any::<[u8; 4]>(), 8u8..=32).prop_map(|(a, p)| {
                let n = ipnetwork::Ipv4Network::new(a.into(), p).unwrap();
                Some(IpNetwork::V4(
                    ipnetwork::Ipv4Network::new(n.network(), p).unwrap(),
                ))
            }),
        ]
    }

    fn network6() -> impl Strategy<Value = Option<IpNetwork>> {
        prop_oneof![
            Just(None),
            (any::<[u8; 16]>(), 48u8..=128).prop_map(|(a, p)| {
                let n = ipnetwork::Ipv6Network::new(a.into(), p).unwrap();
                Some(IpNetwork::V6(
                    ipnetwork::Ipv6Network::new(n.network(), p).unwrap(),
                ))
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn rendering_never_panics_and_pulls_exactly_the_listed_images(
            node in "[ -~]{0,60}",
            policy in "[ -~]{0,60}",
            mtu in proptest::option::of(0u32..100_000),
            ipip in encap(),
            vxlan in encap(),
            manage in any::<bool>(),
            v4 in network(),
            v6 in network6(),
        ) {
            let mut c = defaults();
            c.calico_node_image.reference = node.clone();
            c.calico_policy_image.reference = policy.clone();
            c.veth_mtu = mtu;
            c.ipip = ipip;
            c.vxlan = if ipip.enabled() { EncapMode::Never } else { vxlan };
            c.manage_pools = manage;
            c.cidrs = v4.into_iter().chain(v6).collect();
            let w = workloads::render(&c);
            let images = workloads::images(&c);
            prop_assert_eq!(images.len(), 3);
            prop_assert_eq!(&images[0], &node);
            prop_assert_eq!(&images[2], &policy);
            let mut pulled = pod_images(node_pod_spec(&w));
            pulled.extend(pod_images(w.deployments[0].spec.template.spec.as_ref().unwrap()));
            for img in &pulled {
                prop_assert!(images.contains(img), "{} not listed", img);
            }
            prop_assert_eq!(w.objects(), workloads::render(&c).objects());
            // The conflist stays JSON whatever the node name.
            let doc: Value = serde_json::from_str(&calico_charm::render::cni::render(&c, &node)).unwrap();
            prop_assert_eq!(doc["plugins"][0]["nodename"].as_str(), Some(node.as_str()));
        }

        #[test]
        fn every_release_renders_consistent_objects(
            minor in 0u32..40,
            patch in 0u32..8,
            suffix in prop_oneof![Just(""), Just("-rc1"), Just("-amd64")],
            dual in any::<bool>(),
            manage in any::<bool>(),
        ) {
            let tag = format!("v3.{minor}.{patch}{suffix}");
            let mut c = defaults();
            c.calico_node_image.reference = format!("quay.io/calico/node:{tag}");
            c.calico_policy_image.reference = format!("quay.io/calico/kube-controllers:{tag}");
            c.manage_pools = manage;
            if dual {
                c.cidrs = cidrs(&["10.1.0.0/16", "fd00:1::/64"]);
            }
            let w = workloads::render(&c);
            let accounts: BTreeSet<String> = w
                .service_accounts
                .iter()
                .map(|a| a.metadata.name.clone().unwrap())
                .collect();
            // Every role and binding has its account, and a token may only be minted for
            // an account that exists.
            for r in &w.cluster_roles {
                prop_assert!(accounts.contains(r.metadata.name.as_ref().unwrap()));
                for rule in r.rules.iter().flatten() {
                    for name in rule.resource_names.iter().flatten() {
                        prop_assert!(accounts.contains(name), "{} for {}", name, tag);
                    }
                }
            }
            prop_assert_eq!(w.cluster_role_bindings.len(), accounts.len());
            // The install-cni MTU is the one in the ConfigMap and Felix's.
            let spec = node_pod_spec(&w);
            let init = env_map(spec.init_containers.as_ref().unwrap()[0].env.as_ref().unwrap());
            let main = env_map(node_container(&w).env.as_ref().unwrap());
            prop_assert_eq!(&init["CNI_MTU"], &main["FELIX_IPINIPMTU"]);
            prop_assert_eq!(
                &init["CNI_MTU"],
                &w.config_maps[0].data.as_ref().unwrap()["veth_mtu"]
            );
            // calico-node refuses NO_DEFAULT_POOLS with a pool CIDR.
            prop_assert!(
                !(main.contains_key("NO_DEFAULT_POOLS")
                    && main.keys().any(|k| k.ends_with("POOL_CIDR")))
            );
            // IP is unset exactly when the cidr has an IPv4 network (calico-node keeps the
            // address the unit writes on its Node); an IPv6-only cidr says `none`.
            let v4 = c.cidrs.iter().any(|n| n.is_ipv4());
            prop_assert_eq!(main.get("IP").map(String::as_str), (!v4).then_some("none"));
            // The conflist the unit writes is what install-cni writes.
            let doc: Value = serde_json::from_str(&calico_charm::render::cni::render(&c, "n")).unwrap();
            prop_assert_eq!(doc["plugins"][0]["mtu"].to_string(), init["CNI_MTU"].clone());
            for o in w.objects() {
                if o["kind"] == "DaemonSet" {
                    let typed: DaemonSet = serde_json::from_value(o.clone()).unwrap();
                    prop_assert_eq!(serde_json::to_value(&typed).unwrap(), o);
                }
            }
        }

        #[test]
        fn veth_mtu_subtracts_exactly_the_overhead(
            mtu in 0u32..100_000,
            ipip in encap(),
            vxlan in encap(),
        ) {
            let mut c = defaults();
            c.veth_mtu = Some(mtu);
            c.ipip = ipip;
            c.vxlan = if ipip.enabled() { EncapMode::Never } else { vxlan };
            let overhead = if c.ipip.enabled() { 20 } else if c.vxlan.enabled() { 50 } else { 0 };
            match workloads::veth_mtu(&c) {
                Some(v) => prop_assert_eq!(v + overhead, mtu),
                None => prop_assert!(mtu < overhead),
            }
        }
    }
}

// ---------------------------------------------------------------- test API server

mod api_server {
    use super::*;
    use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
    use kube::core::{ApiResource, GroupVersionKind};
    use support::apiserver::Options;

    fn resource(obj: &Value) -> ApiResource {
        let (group, version) = match obj["apiVersion"].as_str().unwrap().rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                obj["apiVersion"].as_str().unwrap().to_string(),
            ),
        };
        let kind = obj["kind"].as_str().unwrap();
        ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, kind))
    }

    fn api(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
            None => Api::all_with(client.clone(), ar),
        }
    }

    #[tokio::test]
    async fn rendered_workloads_are_accepted_and_read_back_unchanged() {
        // The documented default (v3.6.1) and the reference's release (v3.32.1).
        for base in [defaults(), current()] {
            let mut config = base;
            config.cidrs = cidrs(&["10.1.0.0/16", "fd00:1::/64"]);
            config.veth_mtu = Some(1500);
            accepted_and_read_back(&config).await;
        }
    }

    /// `live` holds everything `want` holds, with the same values (maps may have more keys:
    /// server defaults); `Err` names the first path where it does not.
    fn contains(live: &Value, want: &Value) -> Result<(), String> {
        match (live, want) {
            (_, Value::Null) => Ok(()),
            (Value::Object(l), Value::Object(w)) => {
                for (k, v) in w {
                    contains(l.get(k).unwrap_or(&Value::Null), v)
                        .map_err(|at| format!(".{k}{at}"))?;
                    if v != &Value::Null && !l.contains_key(k) {
                        return Err(format!(".{k}"));
                    }
                }
                Ok(())
            }
            (Value::Array(l), Value::Array(w)) if l.len() == w.len() => {
                for (i, (a, b)) in l.iter().zip(w).enumerate() {
                    contains(a, b).map_err(|at| format!("[{i}]{at}"))?;
                }
                Ok(())
            }
            (l, w) if l == w => Ok(()),
            _ => Err(String::new()),
        }
    }

    async fn accepted_and_read_back(config: &CharmConfig) {
        let Some(server) = crate::envtest!(Options::without_crds()) else {
            return;
        };
        let client = server.kube_client().await.unwrap();
        let w = workloads::render(config);

        let crd_api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in &w.crds {
            crd_api.create(&PostParams::default(), crd).await.unwrap();
        }
        // A real server serves a new kind once its CRD is Established (a moment later).
        for crd in &w.crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let live = crd_api.get(&name).await.unwrap();
                let established = live
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} not Established"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let pp = PatchParams::apply("calico-charm").validation_strict();
        for obj in w.objects().into_iter().skip(w.crds.len()) {
            let ar = resource(&obj);
            let name = obj["metadata"]["name"].as_str().unwrap();
            let ns = obj["metadata"]["namespace"].as_str();
            let applied = api(&client, &ar, ns)
                .patch(name, &pp, &Patch::Apply(&obj))
                .await
                .unwrap_or_else(|e| panic!("{} {name}: {e}", obj["kind"]));
            // Nothing was dropped or altered on the way in (the real server adds its
            // defaults to built-in kinds: everything the charm set is there as set).
            let back = serde_json::to_value(&applied).unwrap();
            for field in ["spec", "data", "rules"] {
                if let Err(at) = contains(&back[field], &obj[field]) {
                    panic!("{name}: {field}{at} was changed by the API server");
                }
            }
        }
        let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
        let got = serde_json::to_value(ds.get("calico-node").await.unwrap().spec).unwrap();
        let want = serde_json::to_value(&w.daemon_sets[0].spec).unwrap();
        contains(&got, &want).unwrap_or_else(|at| panic!("calico-node spec{at} differs"));

        // Every installed kind is served with its scope: a namespaced Calico policy and a
        // cluster-wide Tier can be created.
        let np = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default.allow", "namespace": "default"},
            "spec": {"selector": "all()", "types": ["Ingress"]}});
        let created = api(&client, &resource(&np), Some("default"))
            .create(
                &PostParams::default(),
                &serde_json::from_value(np.clone()).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(serde_json::to_value(&created).unwrap()["spec"], np["spec"]);
        let tier = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "Tier",
            "metadata": {"name": "default"}, "spec": {"order": 1000000}});
        api(&client, &resource(&tier), None)
            .create(
                &PostParams::default(),
                &serde_json::from_value(tier).unwrap(),
            )
            .await
            .unwrap();
        for (_, plural, group, scope, version) in EXPECTED_CRDS {
            let c = crd_api.get(&format!("{plural}.{group}")).await.unwrap();
            assert_eq!(c.spec.scope, scope);
            assert_eq!(c.spec.versions[0].name, version);
        }
    }
}

#[test]
fn ignore_loose_rpf_sets_felix_ignorelooserpf_only_when_true() {
    let mut c = current();
    assert!(!node_env(&c).contains_key("FELIX_IGNORELOOSERPF"));
    c.ignore_loose_rpf = true;
    assert_eq!(node_env(&c)["FELIX_IGNORELOOSERPF"], "true");
    let mut c = defaults();
    c.ignore_loose_rpf = true;
    assert_eq!(node_env(&c)["FELIX_IGNORELOOSERPF"], "true");
}

#[test]
fn vxlan_checksum_offload_is_felix_s_override_from_3_20_and_the_node_s_job_before() {
    let at = |tag: &str, vxlan: EncapMode, disable: bool| {
        let mut c = current();
        c.calico_node_image.reference = format!("docker.io/calico/node:{tag}");
        c.vxlan = vxlan;
        c.disable_vxlan_tx_checksumming = disable;
        c
    };
    let env = |c: &CharmConfig| node_env(c).get("FELIX_FEATUREDETECTOVERRIDE").cloned();
    let on = at("v3.20.0", EncapMode::Always, true);
    assert_eq!(env(&on).as_deref(), Some("ChecksumOffloadBroken=true"));
    assert!(!workloads::pods::node_disables_vxlan_checksum(&on));
    // Off, or no VXLAN: Felix's own detection.
    assert_eq!(env(&at("v3.32.1", EncapMode::Always, false)), None);
    assert_eq!(env(&at("v3.32.1", EncapMode::Never, true)), None);
    assert!(!workloads::pods::node_disables_vxlan_checksum(&at(
        "v3.32.1",
        EncapMode::Never,
        true
    )));
    // Before Felix had the override, the charm does it on the node (ethtool).
    let old = at("v3.19.4", EncapMode::CrossSubnet, true);
    assert_eq!(env(&old), None);
    assert!(workloads::pods::node_disables_vxlan_checksum(&old));
    assert!(!workloads::pods::node_disables_vxlan_checksum(&at(
        "v3.19.4",
        EncapMode::CrossSubnet,
        false
    )));
    // The value is one the FelixConfiguration schema accepts for featureDetectOverride
    // (the variable and the field share Felix's parser).
    let crd: Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/calico-crds/crd.projectcalico.org_felixconfigurations.yaml"),
        )
        .expect("felixconfigurations CRD"),
    )
    .expect("yaml");
    let pattern =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["featureDetectOverride"]["pattern"]
            .as_str()
            .expect("pattern")
            .to_string();
    // ^([a-zA-Z0-9-_]+=(true|false|),)*([a-zA-Z0-9-_]+=(true|false|))?$, checked by hand:
    // one NAME=true item matches the optional last group.
    assert_eq!(
        pattern,
        "^([a-zA-Z0-9-_]+=(true|false|),)*([a-zA-Z0-9-_]+=(true|false|))?$"
    );
    let value = env(&on).unwrap();
    let (name, flag) = value.split_once('=').unwrap();
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(flag, "true");
}
