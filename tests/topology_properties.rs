//! Properties of the topology model over generated clusters: it never panics, it is
//! deterministic, and what it says is consistent with itself (every pair once, sessions
//! toward Calico nodes name them, the mesh is symmetric, problems name real units).

use std::collections::BTreeSet;

use calico_charm::topology::{self, Source, UnitInput};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config(pairs: Vec<(&str, Value)>) -> Option<calico_charm::config::CharmConfig> {
    let raw = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    calico_charm::config::validate(&raw).ok().map(|v| v.config)
}

prop_compose! {
    /// Up to 9 units in 10.0.0.0/24 .. 10.0.3.0/24, unit ids 0..=12, distinct addresses.
    fn units()(picks in proptest::collection::btree_map(0u32..13, (0u8..4, 2u8..30), 1..9)) -> Vec<UnitInput> {
        let mut seen = BTreeSet::new();
        picks
            .into_iter()
            .filter(|(_, (net, host))| seen.insert((*net, *host)))
            .map(|(id, (net, host))| UnitInput {
                unit: format!("calico/{id}"),
                address: topology::parse_address(&format!("10.0.{net}.{host}/24")).expect("address"),
                node_name: format!("node-{id}"),
            })
            .collect()
    }
}

prop_compose! {
    fn options()(
        mesh in any::<bool>(),
        rr in proptest::collection::btree_map(0u32..13, prop_oneof![Just("0.0.0.0"), Just("244.0.0.1"), Just("244.0.0.2")], 0..4),
        global in proptest::collection::vec((0u8..4, 1u8..30, prop_oneof![Just(64512u32), Just(64513u32)]), 0..3),
        subnet_as in any::<bool>(),
        ipip in any::<bool>(),
    ) -> Vec<(&'static str, Value)> {
        let rr: Vec<String> = rr.iter().map(|(u, id)| format!("{u}: {id}")).collect();
        let global: Vec<String> = global
            .iter()
            .map(|(n, h, a)| format!("{{address: 10.0.{n}.{h}, as-number: {a}}}"))
            .collect();
        let mut o = vec![
            ("node-to-node-mesh", json!(mesh)),
            ("route-reflector-cluster-ids", json!(format!("{{{}}}", rr.join(", ")))),
            ("global-bgp-peers", json!(format!("[{}]", global.join(", ")))),
        ];
        if subnet_as {
            o.push(("subnet-as-numbers", json!("{10.0.2.0/23: 64513}")));
        }
        if ipip {
            o.push(("ipip", json!("CrossSubnet")));
        }
        o
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_model_is_total_deterministic_and_self_consistent(units in units(), options in options()) {
        let Some(config) = config(options) else { return Ok(()) };
        let t = topology::topology(&config, &units).expect("valid units");
        let again = topology::topology(&config, &units).expect("valid units");
        prop_assert_eq!(&t, &again);
        let n = t.nodes.len();
        prop_assert_eq!(n, units.len());
        prop_assert_eq!(t.reach.len(), n * (n - 1));
        let names: BTreeSet<&str> = t.nodes.iter().map(|x| x.unit.as_str()).collect();
        let pairs: BTreeSet<(&str, &str)> =
            t.reach.iter().map(|r| (r.from.as_str(), r.to.as_str())).collect();
        prop_assert_eq!(pairs.len(), t.reach.len());
        for r in &t.reach {
            prop_assert!(r.from != r.to);
            prop_assert!(r.reached || r.via_external.is_empty());
            for ip in &r.via_external {
                prop_assert!(t.external.iter().any(|e| e.address == *ip), "{} not listed as external", ip);
            }
        }
        for node in &t.nodes {
            for s in &node.sessions {
                prop_assert!(s.peer != node.address, "a session to itself");
                match &s.peer_unit {
                    Some(u) => {
                        let peer = t.nodes.iter().find(|x| &x.unit == u).expect("peer unit");
                        prop_assert_eq!(peer.address, s.peer);
                    }
                    None => prop_assert!(t.external.iter().any(|e| e.address == s.peer)),
                }
                prop_assert_eq!(s.ibgp, s.peer_as == node.as_number);
                prop_assert!(!s.rr_client || (s.ibgp && node.route_reflector_cluster_id.is_some()));
                if s.source == Source::Mesh {
                    // The mesh is symmetric, with exactly one passive side.
                    let peer = t.nodes.iter().find(|x| x.address == s.peer).expect("mesh peer");
                    let back = peer
                        .sessions
                        .iter()
                        .find(|b| b.source == Source::Mesh && b.peer == node.address)
                        .expect("mesh back");
                    prop_assert!(s.passive != back.passive);
                }
            }
        }
        for p in &t.problems {
            prop_assert!(!p.units.is_empty());
            for u in &p.units {
                prop_assert!(names.contains(u.as_str()), "unknown unit {}", u);
            }
            prop_assert!(!p.message.contains('\n'));
            prop_assert!(p.kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
        // A node without sessions is always reported.
        for node in t.nodes.iter().filter(|x| x.sessions.is_empty()) {
            if n > 1 {
                prop_assert!(t.problems.iter().any(|p| p.kind == "isolated-node" && p.units == vec![node.unit.clone()]));
            }
        }
        // Text renders.
        prop_assert!(topology::render_text(&t).contains("reach: "));
    }
}
