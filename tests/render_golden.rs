//! Golden tests: the seed documentation's worked examples, rendered for several units and
//! compared with expected objects written by hand under tests/golden/.
//!
//! Each example's configuration is a `juju config calico --file` file
//! (`tests/golden/<example>.yaml`); each expected file
//! (`tests/golden/<example>/<unit>[-leader].yaml`) holds the Calico objects and the Node,
//! in apply order. Each unit's Node carries its BGP address
//! (`projectcalico.org/IPv4Address`): the address it is rendered for with the examples'
//! /24 prefix. Workloads (the leader's CRDs, RBAC, DaemonSet, ...) are not part of the
//! goldens: only the leader renders them, CRDs first so that the output applies in order on a
//! fresh cluster, and they are otherwise ignored here.

use std::net::IpAddr;
use std::path::PathBuf;

use calico_charm::config::options;
use calico_charm::config::{self, Validated};
use calico_charm::render;
use calico_charm::unit::UnitFacts;
use serde::Deserialize;
use serde_json::Value;

const CHARM_KINDS: [&str; 5] = [
    "IPPool",
    "BGPConfiguration",
    "BGPPeer",
    "Node",
    "CalicoNodeStatus",
];

fn golden(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden")).join(path)
}

fn load(example: &str) -> Validated {
    let text = std::fs::read_to_string(golden(&format!("{example}.yaml"))).expect("example config");
    let merged = options::merge_user_file(&text).expect("example file parses");
    assert!(merged.errors.is_empty(), "{example}: {:?}", merged.errors);
    config::validate(&merged.raw).unwrap_or_else(|e| panic!("{example}: invalid: {e:?}"))
}

fn expected(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(golden(path)).expect("expected file");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("expected document"))
        .collect()
}

/// Render `example` for `unit` and compare with `tests/golden/<example>/<file>`.
fn check(example: &str, unit: &str, address: &str, leader: bool, expected_warnings: &[&str]) {
    let v = load(example);
    let id = unit.trim_start_matches("calico/");
    let address: IpAddr = address.parse().expect("address");
    // Every example's subnets are /24s: the binding's prefix is 24.
    let facts = UnitFacts::new(unit, format!("node-{id}"), address, leader)
        .expect("unit")
        .with_prefix(Some(24));
    let objects = render::desired(&v.config, &facts).objects();
    let file = format!(
        "{example}/calico-{id}{}.yaml",
        if leader { "-leader" } else { "" }
    );
    let want = expected(&file);
    let kind = |o: &Value| o["kind"].as_str().unwrap_or_default().to_string();
    let charm: Vec<Value> = objects
        .iter()
        .filter(|o| CHARM_KINDS.contains(&kind(o).as_str()))
        .cloned()
        .collect();
    assert_eq!(charm.len(), want.len(), "{file}: got {charm:#?}");
    for (i, (g, w)) in charm.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{file}: object {i} differs");
    }
    if leader {
        let first_charm = objects
            .iter()
            .position(|o| CHARM_KINDS.contains(&kind(o).as_str()))
            .unwrap_or(objects.len());
        assert!(
            objects[..first_charm]
                .iter()
                .all(|o| kind(o) == "CustomResourceDefinition"),
            "{file}: only CRDs may come before the Calico objects"
        );
        assert!(
            objects
                .iter()
                .any(|o| kind(o) == "CustomResourceDefinition"),
            "{file}: the leader renders the CRDs"
        );
    } else {
        assert_eq!(
            objects.len(),
            want.len(),
            "{file}: a non-leader renders no workloads"
        );
    }
    let mut warnings: Vec<String> = v.warnings.iter().map(|w| w.option.clone()).collect();
    warnings.extend(
        config::unit_warnings(&v.config, &facts)
            .into_iter()
            .map(|w| w.option),
    );
    assert_eq!(warnings, expected_warnings, "{file}: warnings");
}

#[test]
fn multiple_subnets_with_a_router_peer() {
    check("multiple-subnets", "calico/0", "10.0.0.5", true, &[]);
    check("multiple-subnets", "calico/1", "10.0.1.7", false, &[]);
}

#[test]
fn route_reflection_with_two_reflectors_and_the_mesh_off() {
    check("route-reflection", "calico/0", "10.0.0.2", true, &[]);
    check("route-reflection", "calico/1", "10.0.0.3", false, &[]);
    check("route-reflection", "calico/7", "10.0.0.17", false, &[]);
}

#[test]
fn as_per_rack_reflectors_and_ordinary_units_in_each_subnet() {
    check("as-per-rack", "calico/0", "10.0.0.2", true, &[]);
    check("as-per-rack", "calico/0", "10.0.0.2", false, &[]);
    check("as-per-rack", "calico/1", "10.0.1.2", false, &[]);
    check("as-per-rack", "calico/2", "10.0.2.2", false, &[]);
    check("as-per-rack", "calico/3", "10.0.3.2", false, &[]);
    check("as-per-rack", "calico/4", "10.0.0.10", false, &[]);
    check("as-per-rack", "calico/5", "10.0.1.10", false, &[]);
    check("as-per-rack", "calico/6", "10.0.2.10", false, &[]);
    check("as-per-rack", "calico/7", "10.0.3.10", false, &[]);
}

#[test]
fn manage_pools_false_leaves_pools_alone() {
    check("manage-pools-false", "calico/0", "10.0.0.5", true, &[]);
    let v = load("manage-pools-false");
    let facts =
        UnitFacts::new("calico/0", "node-0", "10.0.0.5".parse().expect("ip"), true).expect("unit");
    assert!(matches!(
        render::desired(&v.config, &facts).pools,
        render::Pools::Unmanaged
    ));
}

#[test]
fn dual_stack_cidr_gets_two_pools_and_no_ipip_on_ipv6() {
    check("dual-stack", "calico/0", "10.0.0.5", true, &["ipip"]);
}

#[test]
fn an_ordinary_unit_outside_every_rack_subnet_is_warned_about() {
    // Not in any subnet of the AS-per-rack example: no peer at all with the mesh off, and no
    // AS from subnet-as-numbers.
    let v = load("as-per-rack");
    let facts =
        UnitFacts::new("calico/9", "node-9", "10.0.9.9".parse().expect("ip"), false).expect("unit");
    let d = render::desired(&v.config, &facts);
    assert!(d.peers.is_empty());
    // Only its BGP address (no prefix known here: /32), no AS number.
    assert_eq!(
        d.node.annotations,
        [(
            "projectcalico.org/IPv4Address".to_string(),
            "10.0.9.9/32".to_string()
        )]
        .into()
    );
    let w: Vec<String> = config::unit_warnings(&v.config, &facts)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("node-to-node-mesh: calico/9 (10.0.9.9) is off the mesh"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("subnet-as-numbers: no subnet contains 10.0.9.9"),
        "{w:?}"
    );
}

#[test]
fn stopping_wants_nothing_of_its_own() {
    let facts =
        UnitFacts::new("calico/3", "node-3", "10.0.3.2".parse().expect("ip"), true).expect("unit");
    let d = render::stopping(&facts);
    assert_eq!(
        d.objects(),
        vec![serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-3", "annotations": {}}})]
    );
    assert_eq!(d.owner, "calico-3");
}

#[test]
fn service_advertisement_lists_land_in_the_bgp_configuration() {
    check("service-advertisement", "calico/0", "10.0.0.5", true, &[]);
    // A non-leader renders no BGPConfiguration at all.
    let v = load("service-advertisement");
    let facts =
        UnitFacts::new("calico/1", "node-1", "10.0.0.6".parse().expect("ip"), false).expect("unit");
    assert!(
        render::desired(&v.config, &facts)
            .bgp_configuration
            .is_none()
    );
}

/// The images the leader's workloads pull, in render order (the DaemonSet's container,
/// its init container, the Deployment's container).
fn images(file_text: &str) -> Vec<String> {
    let merged = options::merge_user_file(file_text).expect("file");
    let v = config::validate(&merged.raw).expect("valid");
    let leader =
        UnitFacts::new("calico/0", "node-0", "10.0.0.5".parse().expect("ip"), true).expect("unit");
    let yaml = serde_yaml::to_string(&render::desired(&v.config, &leader).objects()).expect("yaml");
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn image_registry_moves_every_default_image_and_explicit_images_win() {
    // The documentation's private-registry recipe as one setting: node, its CNI image
    // (install-cni) and kube-controllers all come from the registry, name and tag kept.
    assert_eq!(
        images("image-registry: registry.example.com:5000\n"),
        [
            "registry.example.com:5000/calico/node:v3.6.1",
            "registry.example.com:5000/calico/cni:v3.6.1",
            "registry.example.com:5000/calico/kube-controllers:v3.6.1",
        ]
    );
    // An image option set away from its default is used as set; calico/cni always follows
    // calico-node-image (same registry, same tag), since the two must be one release.
    assert_eq!(
        images(
            "image-registry: rocks.canonical.com:443/cdk\ncalico-node-image: quay.io/calico/node:v3.6.2\n"
        ),
        [
            "quay.io/calico/node:v3.6.2",
            "quay.io/calico/cni:v3.6.2",
            "rocks.canonical.com:443/cdk/calico/kube-controllers:v3.6.1",
        ]
    );
}
