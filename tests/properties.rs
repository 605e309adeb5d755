//! Property tests of validation and rendering, and self-tests of the schema validator in
//! `tests/support/crd_schema.rs`.

// Only the schema validator: the rest of tests/support (the test API server) is not needed.
#[path = "support/crd_schema.rs"]
mod crd_schema;

use crd_schema::{default_crd_dir, find_crd, validate_object};
use serde_json::json;

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
fn schema_accepts_the_rendered_service_ip_lists_and_rejects_bad_ones() {
    // What render makes of bgp-service-* on a current release: the three lists of {cidr}.
    let raw = [
        ("calico-node-image", "docker.io/calico/node:v3.32.1"),
        ("bgp-service-cluster-ips", "10.152.183.0/24"),
        ("bgp-service-external-ips", "10.0.10.0/24, fd00:e::/64"),
        ("bgp-service-loadbalancer-ips", "10.0.20.0/24"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
    .collect();
    let v = calico_charm::config::validate(&raw).expect("valid");
    let facts =
        calico_charm::unit::UnitFacts::new("calico/0", "n0", "10.0.0.2".parse().unwrap(), true)
            .expect("unit");
    let conf = calico_charm::render::desired(&v.config, &facts)
        .objects()
        .into_iter()
        .find(|o| o["kind"] == "BGPConfiguration")
        .expect("leader renders the BGPConfiguration");
    assert_eq!(
        conf["spec"]["serviceClusterIPs"],
        json!([{"cidr": "10.152.183.0/24"}])
    );
    assert_eq!(
        conf["spec"]["serviceExternalIPs"],
        json!([{"cidr": "10.0.10.0/24"}, {"cidr": "fd00:e::/64"}])
    );
    assert_eq!(
        conf["spec"]["serviceLoadBalancerIPs"],
        json!([{"cidr": "10.0.20.0/24"}])
    );
    assert_eq!(errors(conf), Vec::<String>::new());
    // The schema's own rules bite: a list of strings, an unknown key, a non-CIDR.
    let bad = json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {"serviceClusterIPs": ["10.152.183.0/24"],
                 "serviceExternalIPs": [{"cidr": "10.0.10.0/24", "prefix": 24}],
                 "serviceLoadBalancerIPs": [{"cidr": "not-a-cidr"}]}});
    let e = errors(bad);
    assert!(e.iter().any(|l| l.contains("serviceClusterIPs")), "{e:?}");
    assert!(e.iter().any(|l| l.contains("prefix")), "{e:?}");
    assert!(
        e.iter().any(|l| l.contains("serviceLoadBalancerIPs")),
        "{e:?}"
    );
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

// ---------------------------------------------------------------------------------------
// Properties of validation and rendering.
// ---------------------------------------------------------------------------------------

use std::net::IpAddr;

use calico_charm::cli::{Format, format_objects};
use calico_charm::config;
use calico_charm::config::options::{self, RawConfig};
use calico_charm::render;
use calico_charm::unit::UnitFacts;
use proptest::prelude::*;
use serde_json::Value;

const CALICO_KINDS: [&str; 3] = ["IPPool", "BGPConfiguration", "BGPPeer"];

fn option_names() -> Vec<String> {
    options::specs()
        .expect("config.yaml")
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => (0u8..4, 1u8..4).prop_map(|(c, d)| format!("10.0.{c}.{d}")),
        5 => (1u16..4).prop_map(|d| format!("fd00::{d}")),
        1 => Just("10.0.0.300".to_string()),
        1 => Just("0.0.0.0".to_string()),
    ]
}

fn as_text() -> impl Strategy<Value = String> {
    prop_oneof![
        50 => (64512u32..64516).prop_map(|n| n.to_string()),
        2 => Just("'1.10'".to_string()),
        1 => Just("2147483647".to_string()),
        1 => Just("1.10".to_string()),
        1 => Just("4200000000".to_string()),
        1 => Just("0".to_string()),
        1 => Just("x".to_string()),
    ]
}

fn peer_yaml() -> impl Strategy<Value = String> {
    (
        address(),
        as_text(),
        prop_oneof![
            60 => Just("as-number"),
            1 => Just("as_number"),
            1 => Just("asn")
        ],
    )
        .prop_map(|(a, n, key)| format!("{{address: '{a}', {key}: {n}}}"))
}

fn peers_yaml() -> impl Strategy<Value = String> {
    prop::collection::vec(peer_yaml(), 0..3).prop_map(|p| format!("[{}]", p.join(", ")))
}

fn subnet() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (0u8..4).prop_map(|c| format!("10.0.{c}.0/24")),
        3 => Just("10.0.0.0/16".to_string()),
        3 => Just("fd00::/64".to_string()),
        1 => Just("10.0.0.1/24".to_string()),
    ]
}

fn unit_key() -> impl Strategy<Value = String> {
    prop_oneof![
        40 => (0u32..6).prop_map(|n| n.to_string()),
        1 => Just("-1".to_string()),
        1 => Just("calico/0".to_string()),
    ]
}

/// Mostly-plausible option values that reach deep into validation and rendering.
fn structured_config() -> impl Strategy<Value = RawConfig> {
    let mode = || {
        prop::sample::select(vec![
            "Always",
            "CrossSubnet",
            "Never",
            "Never",
            "Never",
            "Never",
            "Never",
            "Never",
            "Never",
            "Never",
            "never",
        ])
    };
    let cidr = prop::sample::select(vec![
        "192.168.0.0/16",
        "192.168.0.0/16",
        "10.1.0.0/16, fd00:c00b:1::/64",
        "10.1.0.0/16, fd00:c00b:1::/64",
        "fd00:c00b:1::/64",
        "10.1.0.0/16",
        "10.1.0.0/16",
        "10.1.0.0/16",
        "10.1.2.0/16",
        "10.1.0.0/28",
    ]);
    let subnet_as = prop::collection::btree_map(subnet(), as_text(), 0..4).prop_map(|v| {
        let body: Vec<String> = v.iter().map(|(s, a)| format!("{s}: {a}")).collect();
        format!("{{{}}}", body.join(", "))
    });
    let unit_as = prop::collection::btree_map(unit_key(), as_text(), 0..4).prop_map(|v| {
        let body: Vec<String> = v.iter().map(|(u, a)| format!("'{u}': {a}")).collect();
        format!("{{{}}}", body.join(", "))
    });
    let subnet_peers = prop::collection::btree_map(subnet(), peers_yaml(), 0..3).prop_map(|v| {
        let body: Vec<String> = v.iter().map(|(s, p)| format!("{s}: {p}")).collect();
        format!("{{{}}}", body.join(", "))
    });
    let unit_peers = prop::collection::btree_map(unit_key(), peers_yaml(), 0..3).prop_map(|v| {
        let body: Vec<String> = v.iter().map(|(u, p)| format!("'{u}': {p}")).collect();
        format!("{{{}}}", body.join(", "))
    });
    let rr = prop::collection::btree_map(
        unit_key(),
        prop::sample::select(vec![
            "0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.1", "0.0.0.1", "0.0.0.1", "1.2.3",
        ]),
        0..3,
    )
    .prop_map(|v| {
        let body: Vec<String> = v.iter().map(|(u, c)| format!("'{u}': '{c}'")).collect();
        format!("{{{}}}", body.join(", "))
    });
    (
        (
            mode(),
            mode(),
            cidr,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop_oneof![
                Just(Value::from(64512)),
                Just(Value::from(4200000000u64)),
                Just(Value::from("1.10"))
            ],
            subnet_as,
            unit_as,
            peers_yaml(),
            subnet_peers,
            unit_peers,
            rr,
        ),
        (
            prop::sample::select(vec![
                "docker.io/calico/node:v3.6.1",
                "docker.io/calico/node:v3.32.1",
                "docker.io/calico/node:v3.32.1",
                "docker.io/calico/node:v3.17.0",
            ]),
            service_ips(),
            service_ips(),
            service_ips(),
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(vec![
                "",
                "",
                "",
                "",
                "",
                "",
                "registry.example.com:5000",
                "Bad Registry",
            ]),
        ),
    )
        .prop_map(
            |(
                (ipip, vxlan, cidr, nat, pools, mesh),
                (gas, sas, uas, gp, sp, up, rr),
                (image, cluster, external, lb, rpf, csum, registry),
            )| {
                let mut raw = RawConfig::new();
                raw.insert("calico-node-image".into(), Value::from(image));
                raw.insert("bgp-service-cluster-ips".into(), Value::from(cluster));
                raw.insert("bgp-service-external-ips".into(), Value::from(external));
                raw.insert("bgp-service-loadbalancer-ips".into(), Value::from(lb));
                raw.insert("ignore-loose-rpf".into(), Value::from(rpf));
                raw.insert("disable-vxlan-tx-checksumming".into(), Value::from(csum));
                raw.insert("image-registry".into(), Value::from(registry));
                raw.insert("ipip".into(), Value::from(ipip));
                raw.insert("vxlan".into(), Value::from(vxlan));
                raw.insert("cidr".into(), Value::from(cidr));
                raw.insert("nat-outgoing".into(), Value::from(nat));
                raw.insert("manage-pools".into(), Value::from(pools));
                raw.insert("node-to-node-mesh".into(), Value::from(mesh));
                raw.insert("global-as-number".into(), gas);
                raw.insert("subnet-as-numbers".into(), Value::from(sas));
                raw.insert("unit-as-numbers".into(), Value::from(uas));
                raw.insert("global-bgp-peers".into(), Value::from(gp));
                raw.insert("subnet-bgp-peers".into(), Value::from(sp));
                raw.insert("unit-bgp-peers".into(), Value::from(up));
                raw.insert("route-reflector-cluster-ids".into(), Value::from(rr));
                raw
            },
        )
}

/// bgp-service-* values: mostly empty, else one to three CIDRs (IPv4 and IPv6) separated
/// by spaces or commas, now and then a bad one.
fn service_ips() -> impl Strategy<Value = String> {
    let cidr = prop_oneof![
        20 => (0u8..4).prop_map(|c| format!("10.96.{c}.0/24")),
        3 => Just("fd00:5::/112".to_string()),
        1 => Just("10.96.0.1/24".to_string()),
    ];
    prop_oneof![
        12 => Just(String::new()),
        3 => (prop::collection::vec(cidr, 1..4), any::<bool>())
            .prop_map(|(v, comma)| v.join(if comma { ", " } else { " " })),
    ]
}

fn facts() -> impl Strategy<Value = UnitFacts> {
    (0u32..6, address(), any::<bool>()).prop_map(|(id, a, leader)| {
        let address: IpAddr = a.parse().unwrap_or(IpAddr::from([10, 0, 0, 9]));
        UnitFacts::new(
            &format!("calico/{id}"),
            format!("node-{id}"),
            address,
            leader,
        )
        .expect("valid unit name")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics_on_arbitrary_strings(values in prop::collection::vec(proptest::option::of(".*"), 16)) {
        let raw: RawConfig = option_names()
            .into_iter()
            .zip(values)
            .filter_map(|(n, v)| v.map(|v| (n, Value::String(v))))
            .collect();
        if let Err(errors) = config::validate(&raw) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(!e.to_string().contains('\n'), "{}", e);
                prop_assert!(raw.contains_key(&e.option), "{}", e);
            }
        }
    }

    #[test]
    fn validation_never_panics_on_arbitrary_json(values in prop::collection::vec(arb_json(), 16), extra in arb_json()) {
        let mut raw: RawConfig = option_names().into_iter().zip(values).collect();
        raw.insert("extra".into(), extra);
        let result = config::validate(&raw);
        // `extra` is not an option.
        prop_assert!(result.is_err());
    }

    #[test]
    fn merging_never_panics_on_arbitrary_text(text in ".*", yamlish in "[a-z:\\- \\n{}\\[\\],'0-9.]{0,60}") {
        let _ = options::merge_user_file(&text);
        let _ = options::merge_user_file(&yamlish);
        let _ = calico_charm::unit::parse_unit_name(&text);
        let _ = calico_charm::asn::AsNumber::parse(&text);
    }

    #[test]
    fn valid_configs_render_deterministically_and_match_the_crds(raw in structured_config(), facts in facts()) {
        let Ok(v) = config::validate(&raw) else { return Ok(()) };
        let first = render::desired(&v.config, &facts).objects();
        let second = render::desired(&v.config, &facts).objects();
        let yaml = format_objects(&first, Format::Yaml).expect("yaml");
        prop_assert_eq!(&yaml, &format_objects(&second, Format::Yaml).expect("yaml"));
        let json = format_objects(&first, Format::Json).expect("json");
        prop_assert_eq!(&json, &format_objects(&second, Format::Json).expect("json"));
        let _ = config::unit_warnings(&v.config, &facts);
        for obj in &first {
            let kind = obj["kind"].as_str().unwrap_or_default();
            if !CALICO_KINDS.contains(&kind) {
                continue;
            }
            // A valid config renders only objects the upstream schemas accept (AS numbers
            // above int32 are validation errors, never refused objects).
            if let Err(errors) = validate_object(&default_crd_dir(), obj) {
                prop_assert!(false, "{obj:#}: {errors:?}");
            }
        }
        // Peer names are unique and never this unit's own address.
        let peers: Vec<&Value> = first.iter().filter(|o| o["kind"] == "BGPPeer").collect();
        for (i, p) in peers.iter().enumerate() {
            prop_assert!(p["spec"]["peerIP"].as_str() != Some(facts.address.to_string().as_str()));
            prop_assert!(peers.iter().take(i).all(|q| q["metadata"]["name"] != p["metadata"]["name"]));
        }
    }

    #[test]
    fn rendering_never_panics_for_any_valid_config_and_unit(raw in structured_config(), id in any::<u32>(), a in any::<[u8; 16]>(), v4 in any::<bool>(), leader in any::<bool>()) {
        let Ok(v) = config::validate(&raw) else { return Ok(()) };
        let address = if v4 { IpAddr::from([a[0], a[1], a[2], a[3]]) } else { IpAddr::from(a) };
        let facts = UnitFacts::new(&format!("calico/{id}"), "n", address, leader).expect("unit");
        let d = render::desired(&v.config, &facts);
        prop_assert!(!d.objects().is_empty());
        let _ = config::unit_warnings(&v.config, &facts);
    }
}

#[test]
fn the_structured_generator_reaches_valid_configs_with_peers() {
    // Guard against a generator that never produces a valid config (the properties above
    // would then pass vacuously).
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = structured_config();
    let mut valid_with_peers = 0;
    let mut valid_with_service_ips = 0;
    for _ in 0..1200 {
        let raw = strategy.new_tree(&mut runner).expect("tree").current();
        if let Ok(v) = config::validate(&raw) {
            if !v.config.global_bgp_peers.is_empty() {
                valid_with_peers += 1;
            }
            if !v.config.bgp_service_loadbalancer_ips.is_empty()
                || !v.config.bgp_service_cluster_ips.is_empty()
            {
                valid_with_service_ips += 1;
            }
        }
    }
    assert!(
        valid_with_service_ips >= 10,
        "only {valid_with_service_ips} valid configs advertising service IPs"
    );
    assert!(
        valid_with_peers >= 60,
        "only {valid_with_peers} valid configs with peers (of 1200)"
    );
}
