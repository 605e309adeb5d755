//! What one unit's BGP peers and AS number are under a configuration.

use super::{CharmConfig, Peer};
use crate::asn::AsNumber;
use crate::unit::UnitFacts;

/// Where an effective peer came from (the option that lists it).
pub(crate) fn effective_peers_with_source(
    config: &CharmConfig,
    facts: &UnitFacts,
) -> Vec<(Peer, &'static str)> {
    let subnet = config
        .subnet_bgp_peers
        .iter()
        .filter(|(net, _)| net.contains(facts.address))
        .flat_map(|(_, peers)| peers.iter().map(|p| (*p, "subnet-bgp-peers")));
    let unit = config
        .unit_bgp_peers
        .get(&facts.unit_id)
        .into_iter()
        .flatten()
        .map(|p| (*p, "unit-bgp-peers"));
    let mut out: Vec<(Peer, &'static str)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (peer, source) in config
        .global_bgp_peers
        .iter()
        .map(|p| (*p, "global-bgp-peers"))
        .chain(subnet)
        .chain(unit)
    {
        if peer.address != facts.address && seen.insert(peer) {
            out.push((peer, source));
        }
    }
    out
}

/// This unit's BGP peers: global-bgp-peers, then the peers of every subnet-bgp-peers subnet
/// containing the unit's address, then unit-bgp-peers[id]; its own address skipped,
/// duplicates collapsed (first occurrence kept).
pub(crate) fn effective_peers(config: &CharmConfig, facts: &UnitFacts) -> Vec<Peer> {
    effective_peers_with_source(config, facts)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// The AS number this unit's node gets: unit-as-numbers[id], else the most specific
/// subnet-as-numbers subnet containing its address, else none (the global AS applies).
pub(crate) fn node_as_number(config: &CharmConfig, facts: &UnitFacts) -> Option<AsNumber> {
    config
        .unit_as_numbers
        .get(&facts.unit_id)
        .copied()
        .or_else(|| {
            config
                .subnet_as_numbers
                .iter()
                .filter(|(net, _)| net.contains(facts.address))
                // Most specific first; on a tie (impossible for distinct valid subnets) the
                // first listed wins.
                .fold(
                    None,
                    |best: Option<&(ipnetwork::IpNetwork, _)>, e| match best {
                        Some(b) if b.0.prefix() >= e.0.prefix() => Some(b),
                        _ => Some(e),
                    },
                )
                .map(|(_, asn)| *asn)
        })
}
