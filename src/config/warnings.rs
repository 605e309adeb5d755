//! Valid but suspicious settings: of the whole configuration ([`config_warnings`], part of
//! validation) and of one unit ([`unit_warnings`], which needs the unit's facts).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{CharmConfig, Peer, Warning};
use crate::unit::UnitFacts;

/// A warning on one line (an operator reads one line per problem).
fn warning(option: &str, message: impl Into<String>) -> Warning {
    Warning {
        option: option.to_string(),
        message: super::options::one_line(&message.into()),
    }
}

/// Warnings about the configuration as a whole (part of [`super::validate()`]).
pub(super) fn config_warnings(config: &CharmConfig) -> Vec<Warning> {
    let mut out = Vec::new();
    if config.ipip.enabled()
        && let Some(v6) = config.cidrs.iter().find(|n| n.is_ipv6())
    {
        let v4 = config.cidrs.iter().any(IpNetwork::is_ipv4);
        out.push(warning(
            "ipip",
            if v4 {
                format!(
                    "{}: IPIP is IPv4-only: the IPv6 pool {v6} gets ipipMode Never",
                    config.ipip.as_str()
                )
            } else {
                format!(
                    "{}: IPIP is IPv4-only and cidr {v6} is IPv6: ipip has no effect",
                    config.ipip.as_str()
                )
            },
        ));
    }
    let any_peers = !config.global_bgp_peers.is_empty()
        || config.subnet_bgp_peers.iter().any(|(_, p)| !p.is_empty())
        || config.unit_bgp_peers.values().any(|p| !p.is_empty());
    if !config.node_to_node_mesh && !any_peers {
        out.push(warning(
            "node-to-node-mesh",
            "false while no BGP peers are configured (global-bgp-peers, subnet-bgp-peers, unit-bgp-peers are empty): \
             nodes will not exchange pod routes",
        ));
    }
    if config.node_to_node_mesh && !config.route_reflector_cluster_ids.is_empty() {
        let ids: Vec<String> = config
            .route_reflector_cluster_ids
            .keys()
            .map(u32::to_string)
            .collect();
        out.push(warning(
            "route-reflector-cluster-ids",
            format!(
                "units {} are route reflectors while node-to-node-mesh is true: route reflectors never join the mesh, \
                 so they reach other nodes only through BGP peers; set node-to-node-mesh=false for route reflection",
                ids.join(", ")
            ),
        ));
    }
    out
}

/// Warnings that depend on one unit: its address, id and the peers it ends up with.
pub fn unit_warnings(config: &CharmConfig, facts: &UnitFacts) -> Vec<Warning> {
    let mut out = Vec::new();
    let with_source = super::peers::effective_peers_with_source(config, facts);
    let peers: Vec<Peer> = with_source.iter().map(|(p, _)| *p).collect();
    let rr = config.route_reflector_cluster_ids.get(&facts.unit_id);
    if peers.is_empty() && (!config.node_to_node_mesh || rr.is_some()) {
        let (option, why) = if rr.is_some() {
            (
                "route-reflector-cluster-ids",
                "is a route reflector (route reflectors never join the mesh)",
            )
        } else {
            (
                "node-to-node-mesh",
                "is off the mesh (node-to-node-mesh is false)",
            )
        };
        out.push(Warning {
            option: option.into(),
            message: format!(
                "{} ({}) {why} and has no BGP peer: no global-bgp-peers, no subnet-bgp-peers subnet containing {}, \
                 no unit-bgp-peers entry {}: its pods are unreachable from other nodes",
                facts.unit_name, facts.address, facts.address, facts.unit_id
            ),
        });
    }
    // The first peer seen at each address (linear in the number of peers).
    let mut first: std::collections::HashMap<IpAddr, &Peer> = std::collections::HashMap::new();
    for (p, source) in &with_source {
        let other = *first.entry(p.address).or_insert(p);
        if other != p {
            out.push(Warning {
                option: (*source).into(),
                message: format!(
                    "{} gets peer {} with two AS numbers ({} and {}): Calico keeps only one session per peer address",
                    facts.unit_name, p.address, other.as_number, p.as_number
                ),
            });
        }
    }
    if !config.subnet_as_numbers.is_empty()
        && !config.unit_as_numbers.contains_key(&facts.unit_id)
        && !config
            .subnet_as_numbers
            .iter()
            .any(|(n, _)| n.contains(facts.address))
    {
        out.push(Warning {
            option: "subnet-as-numbers".into(),
            message: format!(
                "no subnet contains {} and unit-as-numbers has no entry {}: {} uses global-as-number {}",
                facts.address, facts.unit_id, facts.unit_name, config.global_as_number
            ),
        });
    }
    out
}
