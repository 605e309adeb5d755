//! Property tests of validation and rendering, and self-tests of the schema validator in
//! `tests/support/crd_schema.rs`.

mod support;

use serde_json::json;
use support::crd_schema::{default_crd_dir, find_crd, validate_object};

fn errors(obj: serde_json::Value) -> Vec<String> {
    match validate_object(&default_crd_dir(), &obj) {
        Ok(()) => Vec::new(),
        Err(e) => e,
    }
}

#[test]
fn schema_accepts_a_plain_pool_peer_and_bgp_configuration() {
    let pool = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "ipv4", "labels": {"app.kubernetes.io/managed-by": "calico-charm"}},
        "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Never", "vxlanMode": "Always", "natOutgoing": true, "disabled": false}});
    assert_eq!(errors(pool), Vec::<String>::new());
    let peer = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
        "metadata": {"name": "calico-0-10.0.0.1-64512"},
        "spec": {"node": "node-0", "peerIP": "10.0.0.1", "asNumber": 64512}});
    assert_eq!(errors(peer), Vec::<String>::new());
    let conf = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": false}});
    assert_eq!(errors(conf), Vec::<String>::new());
}

#[test]
fn schema_rejects_int32_overflow_unknown_fields_and_bad_enums() {
    let peer = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
        "metadata": {"name": "p"},
        "spec": {"peerIP": "10.0.0.1", "asNumber": 3000000000u64, "as-number": 1}});
    let e = errors(peer);
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.asNumber:") && m.contains("int32")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.as-number:") && m.contains("unknown field")),
        "{e:?}"
    );
    let pool = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "Bad_Name"}, "spec": {"ipipMode": "always", "blockSize": 200}});
    let e = errors(pool);
    assert!(
        e.iter().any(|m| m.starts_with("spec.cidr: Required")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.ipipMode: Unsupported value")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.blockSize:") && m.contains("less than or equal to 128")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.starts_with("metadata.name:")), "{e:?}");
}

#[test]
fn schema_evaluates_the_hand_written_cel_rules() {
    let pool = |spec| {
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "p"}, "spec": spec})
    };
    let e = errors(pool(
        json!({"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "CrossSubnet"}),
    ));
    assert!(
        e.iter().any(|m| m.contains("cannot both be enabled")),
        "{e:?}"
    );
    let e = errors(pool(
        json!({"cidr": "fd00::/64", "ipipMode": "CrossSubnet"}),
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("IPIP is not supported on IPv6")),
        "{e:?}"
    );
    assert!(
        errors(pool(
            json!({"cidr": "fd00::/64", "ipipMode": "Never", "vxlanMode": "Always"})
        ))
        .is_empty()
    );
    let peer = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
        "metadata": {"name": "p"},
        "spec": {"node": "n", "nodeSelector": "all()", "peerIP": "10.0.0.1", "peerSelector": "x == 'y'"}});
    let e = errors(peer);
    assert!(
        e.iter().any(|m| m.contains("node and nodeSelector")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("peerIP and peerSelector")),
        "{e:?}"
    );
}

#[test]
fn schema_checks_transition_rules_defaults_and_pruning() {
    let crd = find_crd(&default_crd_dir(), "IPPool").expect("IPPool CRD");
    let old = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16"}});
    let mut new = old.clone();
    new["spec"]["cidr"] = json!("10.1.0.0/16");
    let e = crd
        .validate_update(&old, &new)
        .expect_err("cidr is immutable");
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.cidr:") && m.contains("CIDR cannot be changed")),
        "{e:?}"
    );
    assert!(crd.validate_update(&old, &old).is_ok());
    let mut obj = old.clone();
    obj["spec"]["bogus"] = json!(1);
    crd.prune(&mut obj);
    crd.apply_defaults(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({"cidr": "10.0.0.0/16", "assignmentMode": "Automatic"})
    );
    // The LoadBalancer and localWorkloadSelector rules etc. are documented as unevaluated or
    // handled; the immutability rules are handled by validate_update.
    let unevaluated = crd.unevaluated_rules();
    assert!(unevaluated.is_empty(), "{unevaluated:?}");
}
