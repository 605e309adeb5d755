//! Real BGP agrees with the topology model: for each worked example of the documentation and
//! a broken variant of each, the nodes and external routers run real BIRD 1.6 in network
//! namespaces, one bridge per subnet. Each Calico node's BIRD is configured from the model's
//! sessions the way calico-node's template does (multihop, `gateway recursive`, `rr client`
//! and `rr cluster id`, passive side, source address, export of the node's pod block only);
//! each router the way the documentation tells the operator. The test checks that every
//! session the model predicts is Established on both ends (and the others are not), that
//! every pod block reaches exactly the nodes the model says (a kernel route installed by
//! BIRD), and pings between pod addresses (on each namespace's loopback) both ways.
//!
//! Needs root (see tests/bird/mod.rs); CI runs as root, where these tests run.

mod bird;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use bird::{Lab, TIMERS};
use calico_charm::topology::{self, SessionState, Topology};
use ipnetwork::IpNetwork;

fn golden(path: &str) -> String {
    format!("{}/tests/golden/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn model(config: &str, units: &str) -> Topology {
    let text = std::fs::read_to_string(golden(config)).expect("config");
    let merged = calico_charm::config::options::merge_user_file(&text).expect("config file");
    assert!(merged.errors.is_empty(), "{:?}", merged.errors);
    let config = calico_charm::config::validate(&merged.raw)
        .expect("valid config")
        .config;
    let units = topology::parse_units(&std::fs::read_to_string(golden(units)).expect("units"))
        .expect("units file");
    topology::topology(&config, &units).expect("topology")
}

/// A router the example names, configured as the documentation tells the operator.
struct Router {
    short: &'static str,
    asn: u32,
    /// Addresses in the example's subnets (`IP/PREFIX`).
    addresses: Vec<&'static str>,
    /// BGP neighbours: address, AS, `next hop self`.
    neighbours: Vec<(&'static str, u32, bool)>,
    /// Whether it reflects between its iBGP neighbours (`rr client` on them).
    reflects: bool,
}

/// A point-to-point link between two routers: (router, address), (router, address).
type Wire = ((&'static str, &'static str), (&'static str, &'static str));

struct Example {
    tag: &'static str,
    config: &'static str,
    units: &'static str,
    routers: Vec<Router>,
    wires: Vec<Wire>,
}

fn underscored(ip: &str) -> String {
    ip.replace(['.', ':'], "_")
}

fn unit_id(unit: &str) -> u32 {
    unit.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("unit id")
}

fn block(unit: &str) -> String {
    format!("192.168.{}.0/26", unit_id(unit))
}

fn pod(unit: &str) -> String {
    format!("192.168.{}.1", unit_id(unit))
}

const COMMON: &str = "log stderr all;\n\
protocol device { scan time 1; }\n\
protocol direct { interface \"eth*\"; }\n\
filter pods { if net ~ [ 192.168.0.0/16+ ] then accept; reject; }\n";

/// A Calico node's BIRD, from the model's sessions (as calico-node's template renders them).
fn node_config(t: &Topology, index: usize) -> String {
    let node = &t.nodes[index];
    let mut c = format!("router id {};\n{COMMON}", node.address);
    c.push_str(
        "protocol kernel {\n  learn;\n  scan time 1;\n  import all;\n  export where source = RTS_BGP;\n}\n",
    );
    c.push_str(&format!(
        "protocol static {{\n  route {} blackhole;\n}}\n",
        block(&node.unit)
    ));
    c.push_str(&format!(
        "template bgp calico {{\n  local as {};\n  multihop;\n  gateway recursive;\n  import all;\n  export filter pods;\n  source address {};\n{TIMERS}}}\n",
        node.as_number, node.address
    ));
    for s in &node.sessions {
        c.push_str(&format!(
            "protocol bgp {} from calico {{\n  neighbor {} as {};\n",
            s.bird_name(),
            s.peer,
            s.peer_as
        ));
        if s.passive {
            c.push_str("  passive on;\n");
        }
        if s.rr_client {
            c.push_str(&format!(
                "  rr client;\n  rr cluster id {};\n",
                node.route_reflector_cluster_id
                    .as_deref()
                    .unwrap_or("0.0.0.0")
            ));
        }
        c.push_str("}\n");
    }
    c
}

fn router_config(r: &Router) -> String {
    let id = r.addresses[0].split('/').next().unwrap_or_default();
    let mut c = format!("router id {id};\n{COMMON}");
    c.push_str(
        "protocol kernel {\n  scan time 1;\n  import none;\n  export where source = RTS_BGP;\n}\n",
    );
    c.push_str(&format!(
        "template bgp peers {{\n  local as {};\n  gateway recursive;\n  import all;\n  export filter pods;\n{TIMERS}}}\n",
        r.asn
    ));
    for (ip, asn, nhs) in &r.neighbours {
        c.push_str(&format!(
            "protocol bgp peer_{} from peers {{\n  neighbor {ip} as {asn};\n",
            underscored(ip)
        ));
        if *nhs {
            c.push_str("  next hop self;\n");
        }
        if r.reflects && *asn == r.asn {
            c.push_str("  rr client;\n");
        }
        c.push_str("}\n");
    }
    c
}

/// Build and check `example`; returns the running lab and each node's daemon (by unit order)
/// for further checks, or `None` when skipping was asked for.
fn prove(example: Example) -> Option<(Lab, Vec<usize>)> {
    if !bird::available() {
        return None;
    }
    let t = model(example.config, example.units);
    let mut lab = Lab::new(example.tag);

    // Subnets: every unit's, every router's.
    let mut subnets: Vec<IpNetwork> = Vec::new();
    let nets = t
        .nodes
        .iter()
        .map(|n| format!("{}/{}", n.address, n.prefix))
        .chain(
            example
                .routers
                .iter()
                .flat_map(|r| r.addresses.iter().map(|a| a.to_string())),
        );
    for a in nets {
        let net: IpNetwork = a.parse().expect("address");
        let net = IpNetwork::new(net.network(), net.prefix()).expect("net");
        if !subnets.contains(&net) {
            subnets.push(net);
        }
    }
    let switches: Vec<String> = (0..subnets.len())
        .map(|k| lab.switch(&format!("s{k}")))
        .collect();
    let switch_of = |ip: IpAddr| {
        subnets
            .iter()
            .position(|n| n.contains(ip))
            .map(|k| switches[k].clone())
            .expect("subnet")
    };

    // Routers first (their addresses are the nodes' gateways).
    let mut router_ns: BTreeMap<&str, String> = BTreeMap::new();
    let mut gateways: Vec<IpAddr> = Vec::new();
    for r in &example.routers {
        let ns = lab.namespace(r.short);
        for (k, a) in r.addresses.iter().enumerate() {
            let ip: IpAddr = a.split('/').next().unwrap_or_default().parse().expect("ip");
            lab.plug(&switch_of(ip), &ns, &format!("eth{k}"), a);
            gateways.push(ip);
        }
        lab.forward(&ns);
        router_ns.insert(r.short, ns);
    }
    for ((a, a_addr), (b, b_addr)) in &example.wires {
        let (na, nb) = (router_ns[a].clone(), router_ns[b].clone());
        lab.wire(&na, "ethw", a_addr, &nb, "ethw", b_addr);
    }

    // Calico nodes: one interface in their subnet, a pod address, the subnet's gateway.
    let mut node_ns = Vec::new();
    for node in &t.nodes {
        let ns = lab.namespace(&format!("n{}", unit_id(&node.unit)));
        let net = IpNetwork::new(node.address, node.prefix).expect("net");
        lab.plug(
            &switch_of(node.address),
            &ns,
            "eth0",
            &format!("{}/{}", node.address, node.prefix),
        );
        // The pod address (on lo: the machine may have no dummy interfaces).
        lab.exec(
            &ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/32", pod(&node.unit)),
                "dev",
                "lo",
            ],
        );
        if let Some(gw) = gateways.iter().find(|g| net.contains(**g)) {
            lab.exec(
                &ns,
                &["ip", "route", "add", "default", "via", &gw.to_string()],
            );
        }
        node_ns.push(ns);
    }

    // BIRD everywhere.
    let mut node_bird = Vec::new();
    for (i, node) in t.nodes.iter().enumerate() {
        let short = format!("n{}", unit_id(&node.unit));
        node_bird.push(lab.bird(&node_ns[i].clone(), &short, &node_config(&t, i)));
    }
    let mut router_bird: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &example.routers {
        let ns = router_ns[r.short].clone();
        router_bird.insert(r.short, lab.bird(&ns, r.short, &router_config(r)));
    }

    // Sessions: (daemon, protocol) pairs that must be Established, and those that must not.
    let index_of: BTreeMap<String, usize> = t
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.unit.clone(), i))
        .collect();
    let mut up: Vec<(usize, String)> = Vec::new();
    let mut down: Vec<(usize, String)> = Vec::new();
    for (i, node) in t.nodes.iter().enumerate() {
        for s in &node.sessions {
            let mine = (node_bird[i], s.bird_name());
            match (s.state, &s.peer_unit) {
                (SessionState::Matched, Some(u)) => {
                    let j = index_of[u];
                    up.push(mine);
                    for back in t.nodes[j]
                        .sessions
                        .iter()
                        .filter(|b| b.peer == node.address)
                    {
                        up.push((node_bird[j], back.bird_name()));
                    }
                }
                (SessionState::External, None) => {
                    let router = example.routers.iter().find(|r| {
                        r.addresses
                            .iter()
                            .any(|a| a.starts_with(&format!("{}/", s.peer)))
                            && r.neighbours.iter().any(|n| n.0 == node.address.to_string())
                    });
                    match router {
                        Some(r) => {
                            up.push(mine);
                            up.push((
                                router_bird[r.short],
                                format!("peer_{}", underscored(&node.address.to_string())),
                            ));
                        }
                        None => down.push(mine),
                    }
                }
                _ => down.push(mine),
            }
        }
    }
    // Router-to-router sessions (assumed by the example) come up too.
    for r in &example.routers {
        for (ip, _, _) in &r.neighbours {
            if example
                .routers
                .iter()
                .any(|o| o.addresses.iter().any(|a| a.starts_with(&format!("{ip}/"))))
                || example.wires.iter().any(|(a, b)| {
                    a.1.starts_with(&format!("{ip}/")) || b.1.starts_with(&format!("{ip}/"))
                })
            {
                up.push((router_bird[r.short], format!("peer_{}", underscored(ip))));
            }
        }
    }
    let all_up = lab.wait_until(Duration::from_secs(30), || {
        up.iter().all(|(d, p)| lab.established(*d, p))
    });
    let missing: Vec<String> = up
        .iter()
        .filter(|(d, p)| !lab.established(*d, p))
        .map(|(d, p)| format!("{} {p}", lab.daemon(*d).ns))
        .collect();
    assert!(
        all_up,
        "{}: not Established: {missing:?}\n{}",
        example.tag,
        lab.dump()
    );
    let wrongly_up: Vec<String> = down
        .iter()
        .filter(|(d, p)| lab.established(*d, p))
        .map(|(d, p)| format!("{} {p}", lab.daemon(*d).ns))
        .collect();
    assert!(
        wrongly_up.is_empty(),
        "{}: the model says these never come up: {wrongly_up:?}",
        example.tag
    );

    // Reach: the model's, except paths through a router that must reflect and, configured
    // as documented, does not.
    let reflect_needed = |r: &Router| !r.reflects;
    let router_of = |ip: &IpAddr| {
        example
            .routers
            .iter()
            .find(|r| r.addresses.iter().any(|a| a.starts_with(&format!("{ip}/"))))
    };
    let expected = |from: &str, to: &str| -> bool {
        let r = t
            .reach
            .iter()
            .find(|r| r.from == from && r.to == to)
            .expect("pair");
        if !r.reached {
            return false;
        }
        r.via_external.iter().all(|ip| {
            let Some(router) = router_of(ip) else {
                return false;
            };
            let must_reflect = t
                .external
                .iter()
                .find(|e| e.address == *ip)
                .is_some_and(|e| e.must.iter().any(|m| m.starts_with("reflect ")));
            !(must_reflect && reflect_needed(router))
        })
    };
    let pairs: Vec<(usize, usize)> = (0..t.nodes.len())
        .flat_map(|a| (0..t.nodes.len()).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect();
    // A pair reached with a BGP route has the kernel route BIRD installed; a pair reached
    // only through the receiver's gateway has none.
    let with_route = |o: usize, d: usize| {
        expected(&t.nodes[o].unit, &t.nodes[d].unit)
            && t.reach
                .iter()
                .any(|r| r.from == t.nodes[o].unit && r.to == t.nodes[d].unit && r.route)
    };
    let routes_ok = lab.wait_until(Duration::from_secs(20), || {
        pairs.iter().all(|&(o, d)| {
            !with_route(o, d)
                || lab
                    .bird_route(&node_ns[d], &block(&t.nodes[o].unit))
                    .is_some()
        })
    });
    let lacking: Vec<String> = pairs
        .iter()
        .filter(|&&(o, d)| {
            with_route(o, d)
                && lab
                    .bird_route(&node_ns[d], &block(&t.nodes[o].unit))
                    .is_none()
        })
        .map(|&(o, d)| format!("{} -> {}", t.nodes[o].unit, t.nodes[d].unit))
        .collect();
    assert!(
        routes_ok,
        "{}: no kernel route for {lacking:?}\n{}",
        example.tag,
        lab.dump()
    );
    let unexpected: Vec<String> = pairs
        .iter()
        .filter(|&&(o, d)| {
            expected(&t.nodes[o].unit, &t.nodes[d].unit)
                && !with_route(o, d)
                && lab
                    .bird_route(&node_ns[d], &block(&t.nodes[o].unit))
                    .is_some()
        })
        .map(|&(o, d)| format!("{} -> {}", t.nodes[o].unit, t.nodes[d].unit))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{}: the model says only the gateway carries these, yet BIRD has a route: {unexpected:?}",
        example.tag
    );

    // Pings between pod addresses, in parallel (each failing ping waits its 1 s timeout).
    let results: Vec<(String, String, bool, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .filter(|(a, b)| a < b)
            .map(|&(a, b)| {
                let (ua, ub) = (t.nodes[a].unit.clone(), t.nodes[b].unit.clone());
                let want = expected(&ua, &ub) && expected(&ub, &ua);
                let (lab, ns) = (&lab, node_ns[a].clone());
                scope.spawn(move || {
                    let got = if want {
                        (0..5).any(|_| lab.ping(&ns, &pod(&ua), &pod(&ub)))
                    } else {
                        lab.ping(&ns, &pod(&ua), &pod(&ub))
                    };
                    (ua, ub, want, got)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ping thread"))
            .collect()
    });
    let wrong: Vec<String> = results
        .iter()
        .filter(|(_, _, want, got)| want != got)
        .map(|(a, b, want, _)| {
            format!(
                "{a} <-> {b}: expected {}",
                if *want { "ping" } else { "no ping" }
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{}: {wrong:?}\n{}",
        example.tag,
        lab.dump()
    );
    // A broken variant must break something the model names.
    if t.has_errors() {
        assert!(
            !down.is_empty() || results.iter().any(|r| !r.2),
            "{}: the model reports errors but nothing is down",
            example.tag
        );
    }
    Some((lab, node_bird))
}

fn mesh_example(config: &'static str, tag: &'static str) -> Example {
    Example {
        tag,
        config,
        units: "topology/default-mesh.units.yaml",
        routers: Vec::new(),
        wires: Vec::new(),
    }
}

#[test]
fn default_mesh() {
    let _ = prove(mesh_example("topology/default-mesh.yaml", "mesh"));
}

#[test]
fn default_mesh_with_a_reflector_cut_off() {
    let _ = prove(mesh_example(
        "topology/default-mesh-rr-cut-off.yaml",
        "meshrr",
    ));
}

/// The documentation's router: 10.0.0.1 and 10.0.1.1, AS 64512, peering with each Calico
/// node (plain iBGP, as the documentation says: it does not reflect).
fn multiple_subnets(config: &'static str, tag: &'static str) -> Example {
    Example {
        tag,
        config,
        units: "topology/multiple-subnets.units.yaml",
        routers: vec![Router {
            short: "r0",
            asn: 64512,
            addresses: vec!["10.0.0.1/24", "10.0.1.1/24"],
            neighbours: vec![
                ("10.0.0.2", 64512, false),
                ("10.0.0.3", 64512, false),
                ("10.0.1.2", 64512, false),
                ("10.0.1.3", 64512, false),
            ],
            reflects: false,
        }],
        wires: Vec::new(),
    }
}

#[test]
fn multiple_subnets_example() {
    let _ = prove(multiple_subnets("multiple-subnets.yaml", "subnets"));
}

#[test]
fn multiple_subnets_with_the_mesh_off_and_a_subnet_forgotten() {
    let _ = prove(multiple_subnets(
        "topology/multiple-subnets-forgotten-subnet.yaml",
        "subnetsx",
    ));
}

fn route_reflection(config: &'static str, tag: &'static str) -> Example {
    Example {
        tag,
        config,
        units: "topology/route-reflection.units.yaml",
        routers: Vec::new(),
        wires: Vec::new(),
    }
}

#[test]
fn route_reflection_example() {
    let _ = prove(route_reflection("route-reflection.yaml", "rr"));
}

/// Cluster ID 0.0.0.0 is unset for BIRD (each reflector uses its router ID): calico/1 keeps
/// calico/2's route as calico/0 reflected it, beside calico/2's own. With a shared non-zero
/// ID calico/1 drops the reflected copy (its cluster ID is in the CLUSTER_LIST), as RFC 4456
/// means. Clients hear the route from both reflectors either way.
#[test]
fn cluster_id_zero_makes_two_clusters_and_a_shared_id_one() {
    let prefix = block("calico/2");
    for (config, tag, on_reflector) in [
        ("route-reflection.yaml", "rrzero", 2),
        ("topology/route-reflection-shared-id.yaml", "rrshared", 1),
    ] {
        let Some((lab, nodes)) = prove(route_reflection(config, tag)) else {
            return;
        };
        let settled = lab.wait_until(Duration::from_secs(10), || {
            lab.bgp_routes(nodes[1], &prefix) == on_reflector
                && lab.bgp_routes(nodes[3], &prefix) == 2
        });
        assert!(
            settled,
            "{tag}: calico/1 has {} routes for {prefix} (expected {on_reflector}), calico/3 has {} (expected 2)\n{}",
            lab.bgp_routes(nodes[1], &prefix),
            lab.bgp_routes(nodes[3], &prefix),
            lab.dump()
        );
        // And it stays so (not a moment of convergence).
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(lab.bgp_routes(nodes[1], &prefix), on_reflector, "{tag}");
    }
}

#[test]
fn route_reflection_with_a_mistyped_peer_as() {
    let _ = prove(route_reflection(
        "topology/route-reflection-wrong-as.yaml",
        "rrx",
    ));
}

/// The documentation leaves the ToRs to the switch vendor. Assumed here: each ToR peers over
/// iBGP with its rack's reflectors (next hop self toward them) and over eBGP with the other
/// rack's ToR on a point-to-point link (172.31.255.0/30), and routes between its subnets.
fn as_per_rack(config: &'static str, tag: &'static str) -> Example {
    Example {
        tag,
        config,
        units: "topology/as-per-rack.units.yaml",
        routers: vec![
            Router {
                short: "tor0",
                asn: 64512,
                addresses: vec!["10.0.0.1/24", "10.0.1.1/24"],
                neighbours: vec![
                    ("10.0.0.2", 64512, true),
                    ("10.0.1.2", 64512, true),
                    ("172.31.255.2", 64513, false),
                ],
                reflects: false,
            },
            Router {
                short: "tor1",
                asn: 64513,
                addresses: vec!["10.0.2.1/24", "10.0.3.1/24"],
                neighbours: vec![
                    ("10.0.2.2", 64513, true),
                    ("10.0.3.2", 64513, true),
                    ("172.31.255.1", 64512, false),
                ],
                reflects: false,
            },
        ],
        wires: vec![(("tor0", "172.31.255.1/30"), ("tor1", "172.31.255.2/30"))],
    }
}

#[test]
fn as_per_rack_example() {
    let _ = prove(as_per_rack("as-per-rack.yaml", "rack"));
}

#[test]
fn as_per_rack_with_rack_1_unpeered() {
    let _ = prove(as_per_rack(
        "topology/as-per-rack-rack1-unpeered.yaml",
        "rackx",
    ));
}
