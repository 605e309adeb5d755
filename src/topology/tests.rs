//! Unit tests of the model on small hand-built cases (the documentation's examples are the
//! goldens under tests/golden/topology).

use super::*;
use serde_json::json;

fn config(pairs: &[(&str, serde_json::Value)]) -> CharmConfig {
    let raw = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    match crate::config::validate(&raw) {
        Ok(v) => v.config,
        Err(e) => panic!("{e:?}"),
    }
}

fn units(list: &[(&str, &str)]) -> Vec<UnitInput> {
    list.iter()
        .enumerate()
        .map(|(i, (u, a))| UnitInput {
            unit: u.to_string(),
            address: parse_address(a).unwrap_or_else(|e| panic!("{e}")),
            node_name: format!("node-{i}"),
        })
        .collect()
}

fn kinds(t: &Topology) -> Vec<&'static str> {
    t.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn two_node_mesh_is_symmetric_with_one_passive_side() {
    let t = topology(
        &config(&[]),
        &units(&[("calico/0", "10.0.0.2/24"), ("calico/1", "10.0.0.3/24")]),
    )
    .expect("topology");
    let a = &t.nodes[0].sessions;
    let b = &t.nodes[1].sessions;
    assert_eq!((a.len(), b.len()), (1, 1));
    assert!(a[0].passive && !b[0].passive, "{a:?} {b:?}");
    assert!(
        t.reach
            .iter()
            .all(|r| r.reached && r.via_external.is_empty())
    );
    assert!(t.problems.is_empty(), "{:?}", t.problems);
}

#[test]
fn mesh_off_without_peers_isolates_every_node() {
    let t = topology(
        &config(&[("node-to-node-mesh", json!(false))]),
        &units(&[("calico/0", "10.0.0.2/24"), ("calico/1", "10.0.0.3/24")]),
    )
    .expect("topology");
    assert_eq!(kinds(&t), ["isolated-node", "isolated-node"]);
    assert!(t.cut_off("calico/0") && t.cut_off("calico/1"));
}

#[test]
fn reflector_split_horizon_needs_the_client_flag() {
    // Two clients peer with one reflector: the reflector passes routes between them.
    let t = topology(
        &config(&[
            ("node-to-node-mesh", json!(false)),
            ("route-reflector-cluster-ids", json!("{0: 244.0.0.1}")),
            (
                "global-bgp-peers",
                json!("[{address: 10.0.0.2, as-number: 64512}]"),
            ),
        ]),
        &units(&[
            ("calico/0", "10.0.0.2/24"),
            ("calico/1", "10.0.0.3/24"),
            ("calico/2", "10.0.0.4/24"),
        ]),
    )
    .expect("topology");
    assert!(t.reach.iter().all(|r| r.reached), "{:?}", t.reach);
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    // Without the cluster ID the same peerings are plain iBGP: clients never hear each other.
    let t = topology(
        &config(&[
            ("node-to-node-mesh", json!(false)),
            (
                "global-bgp-peers",
                json!("[{address: 10.0.0.2, as-number: 64512}]"),
            ),
        ]),
        &units(&[
            ("calico/0", "10.0.0.2/24"),
            ("calico/1", "10.0.0.3/24"),
            ("calico/2", "10.0.0.4/24"),
        ]),
    )
    .expect("topology");
    let r: Vec<(&str, &str, bool)> = t
        .reach
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str(), r.reached))
        .collect();
    assert!(r.contains(&("calico/1", "calico/2", false)), "{r:?}");
    assert!(r.contains(&("calico/1", "calico/0", true)), "{r:?}");
    assert!(
        kinds(&t).contains(&"ibgp-without-mesh-or-reflection"),
        "{:?}",
        t.problems
    );
}

#[test]
fn wrong_peer_as_is_named() {
    let t = topology(
        &config(&[
            ("node-to-node-mesh", json!(false)),
            ("route-reflector-cluster-ids", json!("{0: 244.0.0.1}")),
            (
                "global-bgp-peers",
                json!("[{address: 10.0.0.2, as-number: 64513}]"),
            ),
        ]),
        &units(&[("calico/0", "10.0.0.2/24"), ("calico/1", "10.0.0.3/24")]),
    )
    .expect("topology");
    let p = t
        .problems
        .iter()
        .find(|p| p.kind == "peer-as-mismatch")
        .expect("peer-as-mismatch");
    assert_eq!(p.units, ["calico/1", "calico/0"]);
    assert!(p.options.contains(&"global-bgp-peers"), "{p:?}");
    assert!(t.has_errors());
}

#[test]
fn units_file_is_checked() {
    assert!(parse_units("- {unit: calico/0, address: 10.0.0.2/24, node-name: n0}").is_ok());
    for (bad, says) in [
        (
            "- {unit: calico, address: 10.0.0.2/24, node-name: n0}",
            "unit name",
        ),
        (
            "- {unit: calico/0, address: 10.0.0.2, node-name: n0}",
            "IP/PREFIX",
        ),
        (
            "- {unit: calico/0, address: 10.0.0.2/24}",
            "missing node-name",
        ),
        (
            "- {unit: calico/0, address: 10.0.0.2/24, node-name: N0}",
            "node name",
        ),
        (
            "- {unit: calico/0, adress: 10.0.0.2/24, node-name: n0}",
            "unknown key",
        ),
        ("{unit: calico/0}", "expected a YAML list"),
    ] {
        let e = parse_units(bad).expect_err(bad);
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
    let dup = parse_units(
        "- {unit: calico/0, address: 10.0.0.2/24, node-name: n0}\n- {unit: calico/1, address: 10.0.0.2/24, node-name: n1}",
    )
    .expect("parse");
    let e = topology(&config(&[]), &dup).expect_err("duplicate address");
    assert!(e.to_string().contains("10.0.0.2"), "{e}");
}

#[test]
fn one_external_router_with_two_as_numbers_is_an_error() {
    let t = topology(
        &config(&[(
            "subnet-bgp-peers",
            json!("{10.0.0.0/25: [{address: 10.0.0.1, as-number: 64512}], 10.0.0.128/25: [{address: 10.0.0.1, as-number: 64999}]}"),
        )]),
        &units(&[("calico/0", "10.0.0.2/24"), ("calico/1", "10.0.0.200/24")]),
    )
    .expect("topology");
    let p = t
        .problems
        .iter()
        .find(|p| p.kind == "external-peer-as-conflict")
        .expect("conflict");
    assert_eq!(p.units, ["calico/0", "calico/1"]);
    assert!(
        p.message
            .contains("AS 64512 for calico/0 and AS 64999 for calico/1"),
        "{}",
        p.message
    );
    assert!(t.has_errors());
}
