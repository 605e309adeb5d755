use serde_json::{Value, json};

use super::cidr::parse_cidr_option;
use super::validate::{MAX_MAP_ENTRIES, MAX_OPTION_BYTES, MAX_PEER_ENTRIES};
use super::*;
use crate::asn::AsNumber;
use crate::config::options::RawConfig;
use crate::unit::UnitFacts;

fn raw(pairs: &[(&str, Value)]) -> RawConfig {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn errors(pairs: &[(&str, Value)]) -> Vec<String> {
    match validate(&raw(pairs)) {
        Ok(v) => panic!("expected errors, got {v:?}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn valid(pairs: &[(&str, Value)]) -> Validated {
    validate(&raw(pairs)).unwrap_or_else(|e| panic!("expected valid, got {e:?}"))
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

#[test]
fn defaults_are_valid_and_typed() {
    let v = valid(&[]);
    let c = &v.config;
    assert_eq!(c.calico_node_image.tag(), Some("v3.6.1"));
    assert_eq!(c.ipip, EncapMode::Never);
    assert_eq!(c.vxlan, EncapMode::Never);
    assert!(c.nat_outgoing && c.manage_pools && c.node_to_node_mesh);
    assert_eq!(
        c.cidrs,
        vec![parse_cidr_option("192.168.0.0/16").expect("cidr")]
    );
    assert_eq!(c.global_as_number, AsNumber(64512));
    assert!(c.subnet_as_numbers.is_empty() && c.global_bgp_peers.is_empty());
    assert_eq!(c.veth_mtu, None);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
}

#[test]
fn encapsulation_modes() {
    let e = errors(&[("ipip", json!("always")), ("vxlan", json!("crosssubnet"))]);
    assert!(
        has(
            &e,
            "ipip: \"always\": expected one of Always, CrossSubnet, Never (case matters): did you mean \"Always\"?"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "vxlan: \"crosssubnet\": expected one of Always, CrossSubnet, Never (case matters): did you mean \"CrossSubnet\"?"
        ),
        "{e:?}"
    );
    let e = errors(&[("ipip", json!("sometimes"))]);
    assert_eq!(
        e,
        vec!["ipip: \"sometimes\": expected one of Always, CrossSubnet, Never"]
    );
    let e = errors(&[("ipip", json!("Always")), ("vxlan", json!("CrossSubnet"))]);
    assert_eq!(
        e,
        vec![
            "vxlan: \"CrossSubnet\" together with ipip \"Always\": a pool uses one encapsulation; set ipip or vxlan to Never"
        ]
    );
    let v = valid(&[
        ("vxlan", json!("Always")),
        ("calico-node-image", json!("docker.io/calico/node:v3.7.0")),
    ]);
    assert_eq!(v.config.vxlan, EncapMode::Always);
}

#[test]
fn cidr_rules() {
    let e = errors(&[("cidr", json!("192.168.1.0/16"))]);
    assert_eq!(
        e,
        vec!["cidr: \"192.168.1.0/16\": host bits are set: did you mean 192.168.0.0/16?"]
    );
    let e = errors(&[("cidr", json!("10.0.0.0/27"))]);
    assert_eq!(
        e,
        vec![
            "cidr: 10.0.0.0/27: too small for Calico's default /26 IPv4 block: use a prefix of /26 or shorter"
        ]
    );
    let e = errors(&[("cidr", json!("fd00::/123"))]);
    assert!(e[0].contains("/122"), "{e:?}");
    for (bad, what) in [
        ("169.254.0.0/16", "link-local"),
        ("fe80::/64", "link-local"),
        ("127.0.0.0/8", "loopback"),
        ("224.0.0.0/8", "multicast"),
        ("ff00::/16", "multicast"),
        ("0.0.0.0/0", "link-local"),
    ] {
        let e = errors(&[("cidr", json!(bad))]);
        assert!(
            e.iter()
                .any(|l| l.starts_with("cidr: ") && l.contains(what)),
            "{bad}: {e:?}"
        );
    }
    let e = errors(&[("cidr", json!("10.0.0.0/16,10.1.0.0/16"))]);
    assert_eq!(
        e,
        vec!["cidr: 10.1.0.0/16: at most one IPv4 CIDR (already have 10.0.0.0/16)"]
    );
    let e = errors(&[("cidr", json!("10.0.0.0"))]);
    assert!(
        e[0].starts_with("cidr: \"10.0.0.0\": expected a CIDR"),
        "{e:?}"
    );
    let e = errors(&[("cidr", json!(""))]);
    assert!(e[0].starts_with("cidr: must not be empty"), "{e:?}");
    let e = errors(&[("cidr", json!("10.0.0.0/16,"))]);
    assert!(e[0].contains("empty entry"), "{e:?}");
    let v = valid(&[("cidr", json!(" fd00:c00b:1::/64 , 10.1.0.0/16 "))]);
    let shown: Vec<String> = v.config.cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["fd00:c00b:1::/64", "10.1.0.0/16"]);
}

#[test]
fn as_numbers_everywhere() {
    let e = errors(&[("global-as-number", json!(0))]);
    assert!(
        e[0].starts_with(
            "global-as-number: 0 is out of range: expected an AS number from 1 to 4294967295"
        ),
        "{e:?}"
    );
    let e = errors(&[("global-as-number", json!(4294967296u64))]);
    assert!(
        e[0].starts_with("global-as-number: 4294967296 is out of range"),
        "{e:?}"
    );
    let v = valid(&[("global-as-number", json!("1.10"))]);
    assert_eq!(v.config.global_as_number, AsNumber(65546));
    let e = errors(&[
        ("global-as-number", json!(4200000000u64)),
        (
            "global-bgp-peers",
            json!("[{address: 10.0.0.1, as-number: '65535.0'}]"),
        ),
    ]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("global-as-number: AS number 4200000000 is above 2147483647"),
        "{e:?}"
    );
    assert!(
        e[0].contains("subnet-as-numbers or unit-as-numbers"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("global-bgp-peers: peer 1: AS number 4294901760 is above 2147483647"),
        "{e:?}"
    );
    let v = valid(&[("global-as-number", json!(2147483647u64))]);
    assert_eq!(v.config.global_as_number, AsNumber(2147483647));
    // Node annotations are strings: no int32 limit there.
    let v = valid(&[
        ("unit-as-numbers", json!("{0: 4200000000}")),
        ("subnet-as-numbers", json!("{10.0.0.0/24: '64000.1'}")),
    ]);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    assert_eq!(
        v.config.unit_as_numbers.get(&0),
        Some(&AsNumber(4200000000))
    );
    assert_eq!(v.config.subnet_as_numbers[0].1, AsNumber(64000 * 65536 + 1));
    let e = errors(&[("unit-as-numbers", json!("{0: 1.10}"))]);
    assert!(
        e[0].starts_with("unit-as-numbers: unit 0: 1.1 was read as a decimal number")
            && e[0].contains("quote asdot"),
        "{e:?}"
    );
}

#[test]
fn peers_have_exactly_address_and_as_number() {
    let e = errors(&[(
        "global-bgp-peers",
        json!(
            "- address: 10.0.0.1\n  as_number: 64512\n- {address: 10.0.0.2, asn: 1, as-number: 2}\n- {as-number: 5}\n"
        ),
    )]);
    assert!(
        has(
            &e,
            "global-bgp-peers: peer 1: unknown key \"as_number\" (did you mean \"as-number\"?): a peer has exactly \"address\" and \"as-number\""
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "global-bgp-peers: peer 1: missing \"as-number\": a peer has exactly \"address\" and \"as-number\""
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "global-bgp-peers: peer 2: unknown key \"asn\" (did you mean \"as-number\"?): a peer has exactly \"address\" and \"as-number\""
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "global-bgp-peers: peer 3: missing \"address\": a peer has exactly \"address\" and \"as-number\""
        ),
        "{e:?}"
    );
    assert_eq!(e.len(), 4, "{e:?}");
    let e = errors(&[(
        "subnet-bgp-peers",
        json!("10.0.0.0/24:\n- {address: 10.0.0.300, as-number: 1}\n10.0.1.1/24: []\n"),
    )]);
    assert!(
        has(
            &e,
            "subnet-bgp-peers: subnet 10.0.0.0/24: peer 1: address \"10.0.0.300\": expected an IPv4 or IPv6 address (no port, no prefix)"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "subnet-bgp-peers: subnet \"10.0.1.1/24\": host bits are set: did you mean 10.0.1.0/24?"
        ),
        "{e:?}"
    );
    let e = errors(&[(
        "unit-bgp-peers",
        json!("calico/0: [{address: 10.0.0.1, as-number: 1}]\n-1: []\n"),
    )]);
    assert!(
        has(
            &e,
            "unit-bgp-peers: unit ID \"calico/0\": expected a non-negative integer (the N of calico/N, without the application name)"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "unit-bgp-peers: unit ID -1: expected a non-negative integer (the N of calico/N)"
        ),
        "{e:?}"
    );
    let e = errors(&[(
        "global-bgp-peers",
        json!("{address: 10.0.0.1, as-number: 1}"),
    )]);
    assert!(
        e[0].starts_with("global-bgp-peers: got a map: expected a list of peers"),
        "{e:?}"
    );
    let e = errors(&[(
        "global-bgp-peers",
        json!("[{address: 0.0.0.0, as-number: 1}]"),
    )]);
    assert!(e[0].contains("unicast"), "{e:?}");
    let v = valid(&[
        (
            "unit-bgp-peers",
            json!("'7': [{address: 'fd00::1', as-number: '1.10'}]"),
        ),
        ("global-bgp-peers", json!("")),
    ]);
    assert_eq!(
        v.config.unit_bgp_peers[&7],
        vec![Peer {
            address: "fd00::1".parse().expect("ip"),
            as_number: AsNumber(65546)
        }]
    );
}

#[test]
fn ipv4_mapped_addresses_are_checked_as_the_ipv4_they_map_to() {
    for bad in ["::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:224.0.0.5"] {
        let e = errors(&[(
            "global-bgp-peers",
            json!(format!("[{{address: '{bad}', as-number: 1}}]")),
        )]);
        assert!(
            e.len() == 1 && e[0].contains("the IPv4 address") && e[0].contains("unicast"),
            "{bad}: {e:?}"
        );
    }
    let v = valid(&[(
        "global-bgp-peers",
        json!("[{address: '::ffff:10.0.0.1', as-number: 1}]"),
    )]);
    assert_eq!(v.config.global_bgp_peers.len(), 1);
    for (bad, what) in [
        ("::ffff:127.0.0.0/104", "loopback"),
        ("::ffff:169.254.0.0/112", "link-local"),
        ("::ffff:224.0.0.0/100", "multicast"),
        ("::/64", "loopback"),
    ] {
        let e = errors(&[("cidr", json!(bad))]);
        assert!(
            e.iter()
                .any(|l| l.contains("IPv4-mapped") && l.contains(what)),
            "{bad}: {e:?}"
        );
    }
    assert!(validate(&raw(&[("cidr", json!("fd00::/64"))])).is_ok());
}

#[test]
fn object_counts_and_sizes_have_documented_limits() {
    let peers = |n: usize| {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!(
                "- {{address: 10.{}.{}.1, as-number: 64512}}\n",
                i / 250,
                i % 250
            ));
        }
        s
    };
    assert!(
        validate(&raw(&[(
            "global-bgp-peers",
            json!(peers(MAX_PEER_ENTRIES))
        )]))
        .is_ok()
    );
    let e = errors(&[
        ("global-bgp-peers", json!(peers(600))),
        (
            "unit-bgp-peers",
            json!(format!("0:\n{}", peers(600).replace("- ", "  - "))),
        ),
    ]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("unit-bgp-peers: unit 0: more than 1000 BGP peer entries"),
        "{e:?}"
    );
    let mut map = String::new();
    for i in 0..=MAX_MAP_ENTRIES {
        map.push_str(&format!("{i}: 64512\n"));
    }
    let e = errors(&[("unit-as-numbers", json!(map))]);
    assert_eq!(
        e,
        vec![format!(
            "unit-as-numbers: has 5001 entries: at most {MAX_MAP_ENTRIES}"
        )]
    );
    let e = errors(&[("calico-node-image", json!("a".repeat(MAX_OPTION_BYTES + 1)))]);
    assert_eq!(
        e,
        vec![format!(
            "calico-node-image: is {} bytes long: at most {MAX_OPTION_BYTES} bytes",
            MAX_OPTION_BYTES + 1
        )]
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let e = errors(&[("global-bgp-peers", json!(deep))]);
    assert!(e[0].contains("nested more than 32 deep"), "{e:?}");
}

#[test]
fn the_largest_accepted_configuration_renders_in_linear_time() {
    // 1000 peers for one unit (the limit) and 5000 subnets: validation and rendering stay
    // fast (quadratic work over these counts took seconds before).
    let mut subnets = String::new();
    for i in 0..MAX_MAP_ENTRIES {
        subnets.push_str(&format!("10.{}.{}.0/24: 64512\n", i / 250, i % 250));
    }
    let mut peers = String::new();
    for i in 0..MAX_PEER_ENTRIES {
        peers.push_str(&format!(
            "- {{address: 172.16.{}.{}, as-number: 64512}}\n",
            i / 250,
            i % 250 + 1
        ));
    }
    let started = std::time::Instant::now();
    let v = valid(&[
        ("subnet-as-numbers", json!(subnets)),
        ("global-bgp-peers", json!(peers)),
        ("node-to-node-mesh", json!(false)),
    ]);
    let facts =
        UnitFacts::new("calico/0", "n", "10.0.0.9".parse().expect("ip"), false).expect("unit");
    let desired = crate::render::desired(&v.config, &facts);
    let _ = unit_warnings(&v.config, &facts);
    assert_eq!(desired.peers.len(), MAX_PEER_ENTRIES);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn yaml_options_parse_and_report_shape_errors() {
    let e = errors(&[
        ("subnet-as-numbers", json!("[1, 2]")),
        (
            "route-reflector-cluster-ids",
            json!("{0: 1.2.3, 1: 0.0.0.256, 2: 7}"),
        ),
        ("unit-as-numbers", json!("{0: [oops")),
    ]);
    assert!(
        has(
            &e,
            "subnet-as-numbers: got a list: expected a YAML map of subnets to AS numbers, e.g. {10.0.0.0/24: 64512}"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "route-reflector-cluster-ids: unit 0: cluster ID \"1.2.3\": expected a dotted-quad IPv4 address like 0.0.0.1"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "route-reflector-cluster-ids: unit 1: cluster ID \"0.0.0.256\": expected a dotted-quad IPv4 address like 0.0.0.1"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "route-reflector-cluster-ids: unit 2: cluster ID 7: expected a dotted-quad IPv4 address like 0.0.0.1"
        ),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("unit-as-numbers: not valid YAML: ")),
        "{e:?}"
    );
    assert!(e.iter().all(|l| !l.contains('\n')));
    let e = errors(&[(
        "subnet-as-numbers",
        json!("{10.0.0.0/24: 1, 10.0.0.0/024: 2}"),
    )]);
    assert_eq!(
        e,
        vec!["subnet-as-numbers: subnet 10.0.0.0/24 is listed twice"]
    );
    let v = valid(&[
        ("subnet-as-numbers", json!("  ")),
        ("route-reflector-cluster-ids", json!("~")),
    ]);
    assert!(
        v.config.subnet_as_numbers.is_empty() && v.config.route_reflector_cluster_ids.is_empty()
    );
}

#[test]
fn images_and_mtu() {
    for ok in [
        "docker.io/calico/node:v3.6.1",
        "calico/node",
        "localhost:5000/calico/node:v3.6.1",
        "10.0.0.5:5000/calico/node:latest",
        "[fd00::1]:5000/calico/node:v1",
        "registry.example.com/a/b__c/d-e:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert!(Image::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "/calico/node:v3.6.1",
        "calico/Node",
        "calico/node:",
        "calico node",
        "calico/node@sha256:xyz",
        "-a/b",
    ] {
        assert!(Image::parse(bad).is_err(), "{bad:?}");
    }
    let e = errors(&[
        ("calico-node-image", json!("/calico/node:v3.6.1")),
        ("calico-policy-image", json!("")),
    ]);
    assert!(
        e[0].starts_with("calico-node-image: \"/calico/node:v3.6.1\": invalid path component \"\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("calico-policy-image: must not be empty"),
        "{e:?}"
    );
    let img = Image::parse("localhost:5000/calico/node").expect("image");
    assert_eq!((img.tag(), img.version()), (None, "latest"));
    let e = errors(&[("veth-mtu", json!(100))]);
    assert_eq!(e, vec!["veth-mtu: 100: expected an MTU from 576 to 65535"]);
    assert_eq!(
        valid(&[("veth-mtu", json!("9000"))]).config.veth_mtu,
        Some(9000)
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(&[
        ("ipip", json!("ALWAYS")),
        ("cidr", json!("10.0.0.1/8")),
        ("nat-outgoing", json!("perhaps")),
        ("global-as-number", json!(-3)),
        ("node-to-node-mesh", json!(12)),
        ("bogus", json!(1)),
    ]);
    let options: Vec<&str> = e
        .iter()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        options,
        [
            "bogus",
            "ipip",
            "nat-outgoing",
            "cidr",
            "global-as-number",
            "node-to-node-mesh"
        ]
    );
}

#[test]
fn config_level_warnings() {
    let v = valid(&[("node-to-node-mesh", json!(false))]);
    assert_eq!(v.warnings.len(), 1);
    assert!(
        v.warnings[0]
            .to_string()
            .starts_with("node-to-node-mesh: false while no BGP peers are configured")
    );
    let v = valid(&[("route-reflector-cluster-ids", json!("{0: 0.0.0.0}"))]);
    assert!(v.warnings[0].to_string().starts_with(
        "route-reflector-cluster-ids: units 0 are route reflectors while node-to-node-mesh is true"
    ));
    let v = valid(&[("ipip", json!("Always")), ("cidr", json!("fd00::/64"))]);
    assert_eq!(
        v.warnings[0].to_string(),
        "ipip: Always: IPIP is IPv4-only and cidr fd00::/64 is IPv6: ipip has no effect"
    );
}

#[test]
fn service_ip_options_take_cidrs_separated_by_spaces_or_commas() {
    let current = ("calico-node-image", json!("docker.io/calico/node:v3.32.1"));
    let v = valid(&[
        current.clone(),
        ("bgp-service-cluster-ips", json!("10.152.183.0/24")),
        (
            "bgp-service-external-ips",
            json!(" 10.0.10.0/24,10.0.11.0/24  fd00:e::/64 "),
        ),
        ("bgp-service-loadbalancer-ips", json!("10.0.20.0/24")),
    ]);
    let shown = |n: &[IpNetwork]| n.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        shown(&v.config.bgp_service_cluster_ips),
        ["10.152.183.0/24"]
    );
    assert_eq!(
        shown(&v.config.bgp_service_external_ips),
        ["10.0.10.0/24", "10.0.11.0/24", "fd00:e::/64"]
    );
    assert_eq!(
        shown(&v.config.bgp_service_loadbalancer_ips),
        ["10.0.20.0/24"]
    );
    assert!(valid(&[]).config.bgp_service_cluster_ips.is_empty());
    let e = errors(&[
        current.clone(),
        ("bgp-service-cluster-ips", json!("10.152.183.1/24")),
        (
            "bgp-service-external-ips",
            json!("10.0.10.0/24;10.0.11.0/24"),
        ),
        (
            "bgp-service-loadbalancer-ips",
            json!("10.0.20.0/24 10.0.20.0/24"),
        ),
    ]);
    assert_eq!(
        e,
        [
            "bgp-service-cluster-ips: \"10.152.183.1/24\": host bits are set: did you mean 10.152.183.0/24?; separate CIDRs with spaces or commas",
            "bgp-service-external-ips: \"10.0.10.0/24;10.0.11.0/24\": the prefix length must be 0 to 32; separate CIDRs with spaces or commas",
            "bgp-service-loadbalancer-ips: 10.0.20.0/24 is listed twice",
        ]
    );
}

#[test]
fn options_the_release_cannot_honour_are_errors_naming_option_and_release() {
    // The default image is v3.6.1: no VXLAN, no service IP advertisement.
    let e = errors(&[
        ("vxlan", json!("Always")),
        ("bgp-service-cluster-ips", json!("10.152.183.0/24")),
        ("bgp-service-external-ips", json!("10.0.10.0/24")),
        ("bgp-service-loadbalancer-ips", json!("10.0.20.0/24")),
    ]);
    assert_eq!(
        e,
        [
            "vxlan: \"Always\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no VXLAN encapsulation, which arrived in v3.7.0: set vxlan=Never, or use ipip, or a calico-node-image of v3.7.0 or later",
            "bgp-service-cluster-ips: \"10.152.183.0/24\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no BGPConfiguration serviceClusterIPs, which arrived in v3.11.0: leave the option empty or use a calico-node-image of v3.11.0 or later",
            "bgp-service-external-ips: \"10.0.10.0/24\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no BGPConfiguration serviceExternalIPs, which arrived in v3.10.0: leave the option empty or use a calico-node-image of v3.10.0 or later",
            "bgp-service-loadbalancer-ips: \"10.0.20.0/24\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no BGPConfiguration serviceLoadBalancerIPs, which arrived in v3.18.0: leave the option empty or use a calico-node-image of v3.18.0 or later",
        ]
    );
    // Each cut-over release itself is accepted, the one before refused.
    let at = |tag: &str, option: &str, value: &str| {
        validate(&raw(&[
            (
                "calico-node-image",
                json!(format!("docker.io/calico/node:{tag}")),
            ),
            (option, json!(value)),
        ]))
        .is_ok()
    };
    assert!(at("v3.7.0", "vxlan", "CrossSubnet") && !at("v3.6.9", "vxlan", "CrossSubnet"));
    assert!(at("v3.10.0", "bgp-service-external-ips", "10.0.0.0/24"));
    assert!(!at("v3.9.5", "bgp-service-external-ips", "10.0.0.0/24"));
    assert!(at("v3.11.0", "bgp-service-cluster-ips", "10.0.0.0/24"));
    assert!(!at("v3.10.3", "bgp-service-cluster-ips", "10.0.0.0/24"));
    assert!(at("v3.18.0", "bgp-service-loadbalancer-ips", "10.0.0.0/24"));
    assert!(!at(
        "v3.17.5",
        "bgp-service-loadbalancer-ips",
        "10.0.0.0/24"
    ));
    // Invalid values elsewhere are reported without the release check (nothing typed yet).
    let e = errors(&[("vxlan", json!("Always")), ("ipip", json!("bogus"))]);
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn image_registry_moves_default_images_and_keeps_explicit_ones() {
    let v = valid(&[("image-registry", json!("registry.example.com:5000/"))]);
    assert_eq!(
        v.config.calico_node_image.reference,
        "registry.example.com:5000/calico/node:v3.6.1"
    );
    assert_eq!(
        v.config.calico_policy_image.reference,
        "registry.example.com:5000/calico/kube-controllers:v3.6.1"
    );
    assert_eq!(
        v.config.image_registry.as_deref(),
        Some("registry.example.com:5000")
    );
    let v = valid(&[
        ("image-registry", json!("rocks.canonical.com:443/cdk")),
        ("calico-node-image", json!("quay.io/calico/node:v3.32.1")),
    ]);
    assert_eq!(
        v.config.calico_node_image.reference,
        "quay.io/calico/node:v3.32.1"
    );
    assert_eq!(
        v.config.calico_policy_image.reference,
        "rocks.canonical.com:443/cdk/calico/kube-controllers:v3.6.1"
    );
    assert_eq!(
        valid(&[("image-registry", json!(""))])
            .config
            .image_registry,
        None
    );
    for bad in [
        "registry.example.com/calico:v1",
        "reg@sha256:00",
        "Reg Istry",
        "a//b",
    ] {
        let e = errors(&[("image-registry", json!(bad))]);
        assert!(
            e.len() == 1 && e[0].starts_with(&format!("image-registry: {bad:?}: ")),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn rpf_and_checksum_options_are_booleans() {
    let c = valid(&[]).config;
    assert!(!c.ignore_loose_rpf && c.disable_vxlan_tx_checksumming);
    let c = valid(&[
        ("ignore-loose-rpf", json!("true")),
        ("disable-vxlan-tx-checksumming", json!(false)),
    ])
    .config;
    assert!(c.ignore_loose_rpf && !c.disable_vxlan_tx_checksumming);
    let e = errors(&[("ignore-loose-rpf", json!("loose"))]);
    assert_eq!(
        e,
        ["ignore-loose-rpf: \"loose\": expected a boolean (true or false)"]
    );
}

#[test]
fn unit_warnings_for_conflicting_peer_as_numbers() {
    let v = valid(&[
        (
            "global-bgp-peers",
            json!("[{address: 10.0.0.1, as-number: 1}]"),
        ),
        (
            "unit-bgp-peers",
            json!("{0: [{address: 10.0.0.1, as-number: 2}]}"),
        ),
    ]);
    let facts =
        UnitFacts::new("calico/0", "n", "10.0.0.9".parse().expect("ip"), false).expect("unit");
    let w: Vec<String> = unit_warnings(&v.config, &facts)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        w,
        [
            "unit-bgp-peers: calico/0 gets peer 10.0.0.1 with two AS numbers (1 and 2): Calico keeps only one session per peer address"
        ]
    );
}
