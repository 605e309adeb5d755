//! Shared checks of the fuzz targets: everything the charm does with a valid configuration.
//!
//! Besides "no panic", these checks assert what must hold for every valid configuration:
//! rendering is deterministic, no object is silently dropped by `Desired::objects`, every
//! object has `apiVersion` and `kind`, and every output serialises.

#![allow(dead_code)]

use std::net::IpAddr;

use calico_charm::cli::{Format, format_objects};
use calico_charm::render::cni;
use calico_charm::config::{self, CharmConfig, Validated};
use calico_charm::config::options::RawConfig;
use calico_charm::render::{self, Pools};
use calico_charm::unit::UnitFacts;

/// Unit facts to render for: leader and not, IPv4 and IPv6, plus one address inside each
/// configured subnet (so subnet AS numbers and subnet peers are exercised).
fn facts_for(config: &CharmConfig) -> Vec<UnitFacts> {
    let mut addrs: Vec<IpAddr> = vec![
        IpAddr::from([10, 0, 0, 2]),
        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 2]),
    ];
    for net in config
        .subnet_bgp_peers
        .iter()
        .map(|(n, _)| n)
        .chain(config.subnet_as_numbers.iter().map(|(n, _)| n))
        .take(4)
    {
        addrs.push(net.network());
    }
    let mut ids: Vec<u32> = vec![0, 1];
    ids.extend(config.unit_bgp_peers.keys().take(2));
    ids.extend(config.unit_as_numbers.keys().take(2));
    ids.extend(config.route_reflector_cluster_ids.keys().take(2));
    let mut out = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = ids.get(i % ids.len()).copied().unwrap_or(0);
        let unit = format!("calico/{id}");
        match UnitFacts::new(&unit, format!("node-{id}"), *addr, false) {
            Ok(f) => out.push(f),
            Err(e) => panic!("unit name {unit:?} refused: {e}"),
        }
    }
    // Other unit ids at the first address.
    for id in ids.iter().skip(addrs.len()) {
        let unit = format!("calico/{id}");
        if let Ok(f) = UnitFacts::new(&unit, format!("node-{id}"), addrs[0], false) {
            out.push(f);
        }
    }
    out
}

fn check_objects(objects: &[serde_json::Value], what: &str) {
    for o in objects {
        assert!(
            o.get("apiVersion").and_then(|v| v.as_str()).is_some()
                && o.get("kind").and_then(|v| v.as_str()).is_some(),
            "{what}: object without apiVersion/kind: {o}"
        );
        let text = serde_json::to_string(o).expect("serialise object");
        let back: serde_json::Value = serde_json::from_str(&text).expect("re-read object");
        assert_eq!(&back, o, "{what}: JSON round trip");
    }
}

fn check_unit(config: &CharmConfig, facts: &UnitFacts) -> Vec<serde_json::Value> {
    let _ = config::unit_warnings(config, facts);
    let d = render::desired(config, facts);
    let objects = d.objects();
    let pools = match &d.pools {
        Pools::Managed(p) => p.len(),
        Pools::Unmanaged => 0,
    };
    let wl = d.workloads.as_ref().map_or(0, |w| {
        w.crds.len()
            + w.service_accounts.len()
            + w.cluster_roles.len()
            + w.cluster_role_bindings.len()
            + w.config_maps.len()
            + w.daemon_sets.len()
            + w.deployments.len()
    });
    let expected = pools + usize::from(d.bgp_configuration.is_some()) + d.peers.len() + 1 + wl;
    assert_eq!(
        objects.len(),
        expected,
        "Desired::objects dropped or duplicated objects for {facts:?}"
    );
    // Peer names are unique per unit (they are object names).
    let mut names: Vec<_> = d.peers.iter().map(|p| p.metadata.name.clone()).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "duplicate BGPPeer names for {facts:?}");
    check_objects(&objects, "desired");
    if !facts.leader {
        // Determinism (cheap for non-leaders: no workloads).
        assert_eq!(render::desired(config, facts).objects(), objects);
    }
    format_objects(&objects, Format::Json).expect("json output");
    objects
}

/// Everything the charm does with a valid configuration.
pub fn check_valid(v: &Validated) {
    let config = &v.config;
    for facts in facts_for(config) {
        let _ = check_unit(config, &facts);
    }
    // The leader once (its workloads, from `workloads::render`: CRDs, RBAC, ConfigMap,
    // DaemonSet, Deployment, are the costly part), in YAML too.
    let leader =
        UnitFacts::new("calico/0", "node-0", IpAddr::from([10, 0, 0, 2]), true).expect("calico/0");
    let objects = check_unit(config, &leader);
    format_objects(&objects, Format::Yaml).expect("yaml output");
    // CNI config: valid JSON, with the node name and MTU substituted.
    for node in ["node-0", "weird\"name\\\u{7f}"] {
        let text = cni::render(config, node);
        let doc: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("cni conflist not JSON: {e}\n{text}"));
        assert_eq!(doc["plugins"][0]["nodename"], node);
        assert!(doc["plugins"][0]["mtu"].is_u64(), "mtu: {text}");
    }
    let _ = cni::template(config);
}

/// Validate a raw configuration, and check everything downstream when it is valid.
pub fn check_raw(raw: &RawConfig) {
    match config::validate(raw) {
        Ok(v) => {
            for w in &v.warnings {
                let _ = w.to_string();
            }
            check_valid(&v);
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "validate failed with no error");
            for e in &errors {
                let s = e.to_string();
                assert!(!s.is_empty());
            }
        }
    }
}
