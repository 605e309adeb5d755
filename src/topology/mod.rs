//! The cluster's BGP seen whole (pure): from the configuration and every unit's facts, the
//! sessions each calico-node configures, whether each node's pod routes reach every other
//! node, and the problems that follow.
//!
//! The sessions follow calico-node's rules (confd's peer expansion and BIRD template, see
//! `docs/topology.md`): the node-to-node mesh between nodes without a route reflector cluster
//! ID, the charm's BGPPeers (always node-scoped: `spec.node` is the unit's node), reverse
//! peerings for BGPPeers whose address and AS are a Calico node's, skipping ourselves, iBGP
//! when the AS numbers match, `rr client` on a reflector's iBGP sessions toward peers with
//! another (or no) cluster ID, and the passive side of mesh sessions.
//!
//! Each unit's AS number, cluster ID and BGPPeers are computed by the charm's own
//! [`crate::render`] functions, so the model sees exactly what the units apply.

pub mod command;
mod propagate;
mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde::Serialize;

use crate::asn::AsNumber;
use crate::config::{CharmConfig, EncapMode, Peer};
use crate::unit::UnitFacts;

pub use text::render_text;

/// One unit as the topology sees it: `{unit: calico/N, address: IP/PREFIX, node-name: NAME}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitInput {
    pub unit: String,
    /// The unit's address with the prefix length of its subnet.
    pub address: IpNetwork,
    pub node_name: String,
}

/// A Calico node with everything the model needs: what the charm gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeFacts {
    pub unit: String,
    pub unit_id: u32,
    pub node_name: String,
    pub address: IpNetwork,
    /// The effective AS (the node's own, else the global one).
    pub as_number: AsNumber,
    pub cluster_id: Option<Ipv4Addr>,
    /// This unit's BGPPeers (node-scoped) with the option that lists each.
    pub peers: Vec<(Peer, &'static str)>,
}

impl NodeFacts {
    pub fn ip(&self) -> IpAddr {
        self.address.ip()
    }
}

/// Where a session comes from in calico-node's terms (`Mesh_`, `Global_`, `Node_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Mesh,
    Global,
    Node,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mesh => "mesh",
            Source::Global => "global",
            Source::Node => "node",
        }
    }
}

/// Whether a configured session can come up, as far as the model can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Both Calico ends configure it with matching AS numbers.
    Matched,
    /// The peer is not a Calico node: up only if the router peers back.
    External,
    /// The Calico node at the peer address has another AS than this session expects.
    AsMismatch,
    /// The Calico node at the peer address configures no session back.
    OneSided,
    /// Both ends wait passively for the other.
    BothPassive,
}

/// One BGP session a node's BIRD configures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Session {
    pub peer: IpAddr,
    pub peer_as: u32,
    pub source: Source,
    pub ibgp: bool,
    pub rr_client: bool,
    pub passive: bool,
    pub peer_unit: Option<String>,
    /// The option behind a BGPPeer session (`None` for mesh and reverse peerings).
    #[serde(skip)]
    pub option: Option<&'static str>,
    /// A reverse peering (calico-node adds it for a BGPPeer toward this node).
    #[serde(skip)]
    pub reverse: bool,
    #[serde(skip)]
    pub state: SessionState,
}

impl Session {
    /// The name calico-node's BIRD gives the session (`Mesh_10_0_0_1`, `Node_10_0_0_1`).
    pub fn bird_name(&self) -> String {
        let prefix = match self.source {
            Source::Mesh => "Mesh",
            Source::Global => "Global",
            Source::Node => "Node",
        };
        let ip = self.peer.to_string().replace(['.', ':'], "_");
        format!("{prefix}_{ip}")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    pub unit: String,
    pub node: String,
    pub address: IpAddr,
    #[serde(rename = "as")]
    pub as_number: u32,
    pub route_reflector_cluster_id: Option<String>,
    pub sessions: Vec<Session>,
    #[serde(skip)]
    pub prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reach {
    pub from: String,
    pub to: String,
    pub reached: bool,
    pub via_external: Vec<IpAddr>,
    /// Whether `to` holds a BGP route for `from`'s pods (else its gateway carries them).
    #[serde(skip)]
    pub route: bool,
}

/// One Calico node's session toward an external router.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalPeer {
    pub unit: String,
    pub address: IpAddr,
    #[serde(rename = "as")]
    pub as_number: u32,
    pub ibgp: bool,
}

/// An address Calico nodes peer with that is no Calico node, and what it must do for the
/// paths that rely on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExternalRouter {
    pub address: IpAddr,
    #[serde(rename = "as")]
    pub as_number: u32,
    pub peers: Vec<ExternalPeer>,
    pub must: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: &'static str,
    pub severity: Severity,
    pub units: Vec<String>,
    pub options: Vec<&'static str>,
    pub message: String,
}

/// The whole picture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub reach: Vec<Reach>,
    pub external: Vec<ExternalRouter>,
    pub problems: Vec<Problem>,
}

impl Topology {
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    /// The problems naming `unit`.
    pub(crate) fn problems_of<'a>(
        &'a self,
        unit: &'a str,
    ) -> impl Iterator<Item = &'a Problem> + 'a {
        self.problems
            .iter()
            .filter(move |p| p.units.iter().any(|u| u == unit))
    }

    /// Whether `unit` is cut off: no session at all, or its routes reach no one.
    pub fn cut_off(&self, unit: &str) -> bool {
        self.problems_of(unit).any(|p| {
            p.severity == Severity::Error
                && matches!(
                    p.kind,
                    "isolated-node" | "node-cut-off" | "routes-reach-no-one"
                )
                && p.units.first().is_some_and(|u| u == unit)
        })
    }
}

/// A problem with the units list (a units file or facts), before any topology.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The BIRD source line that treats route reflector cluster ID 0 as unset (cited in the
/// `rr-cluster-id-zero` warning).
pub(crate) const BIRD_CLUSTER_ID_SOURCE: &str = "https://github.com/projectcalico/bird/blob/1e2ff99db42b8f037a51f7a8f7b946a542d96bd1/proto/bgp/bgp.c#L1231";

/// Facts of every unit as the charm renders them (AS, cluster ID, BGPPeers).
pub(crate) fn node_facts(
    config: &CharmConfig,
    units: &[UnitInput],
) -> Result<Vec<NodeFacts>, InputError> {
    let mut out: Vec<NodeFacts> = Vec::with_capacity(units.len());
    for u in units {
        let facts = UnitFacts::new(&u.unit, u.node_name.clone(), u.address.ip(), false)
            .map_err(|e| InputError(e.to_string()))?;
        if let Some(prev) = out.iter().find(|n| n.unit_id == facts.unit_id) {
            return Err(InputError(format!("unit {} is listed twice", prev.unit)));
        }
        if let Some(prev) = out.iter().find(|n| n.ip() == u.address.ip()) {
            return Err(InputError(format!(
                "address {} is given to both {} and {}",
                u.address.ip(),
                prev.unit,
                u.unit
            )));
        }
        if let Some(prev) = out.iter().find(|n| n.node_name == u.node_name) {
            return Err(InputError(format!(
                "node name {} is given to both {} and {}",
                u.node_name, prev.unit, u.unit
            )));
        }
        out.push(NodeFacts {
            unit: u.unit.clone(),
            unit_id: facts.unit_id,
            node_name: u.node_name.clone(),
            address: u.address,
            as_number: crate::config::node_as_number(config, &facts)
                .unwrap_or(config.global_as_number),
            cluster_id: config
                .route_reflector_cluster_ids
                .get(&facts.unit_id)
                .copied(),
            peers: crate::config::effective_peers_with_source(config, &facts),
        });
    }
    out.sort_by_key(|n| n.unit_id);
    Ok(out)
}

/// The topology of `units` under `config`.
pub fn topology(config: &CharmConfig, units: &[UnitInput]) -> Result<Topology, InputError> {
    Ok(analyze(config, &node_facts(config, units)?))
}

/// One calico-node peer entry before rendering (confd's v1 peer).
struct Entry {
    ip: IpAddr,
    as_number: AsNumber,
    cluster_id: Option<Ipv4Addr>,
    option: Option<&'static str>,
    reverse: bool,
}

fn cluster_text(id: Option<Ipv4Addr>) -> Option<String> {
    id.map(|i| i.to_string())
}

/// Sessions of every node (calico-node's rules), then their states.
fn sessions(config: &CharmConfig, facts: &[NodeFacts]) -> Vec<Vec<Session>> {
    let by_ip: BTreeMap<IpAddr, usize> =
        facts.iter().enumerate().map(|(i, n)| (n.ip(), i)).collect();
    // Node-scoped entries: forward first (first writer wins per node and address), then the
    // reverse peerings for BGPPeers whose address and AS are a Calico node's.
    let mut entries: Vec<Vec<Entry>> = facts.iter().map(|_| Vec::new()).collect();
    for (i, n) in facts.iter().enumerate() {
        for (peer, option) in &n.peers {
            if entries[i].iter().any(|e| e.ip == peer.address) {
                continue;
            }
            entries[i].push(Entry {
                ip: peer.address,
                as_number: peer.as_number,
                cluster_id: None,
                option: Some(option),
                reverse: false,
            });
        }
    }
    for (m, n) in facts.iter().enumerate() {
        for (peer, _) in &n.peers {
            let Some(&r) = by_ip.get(&peer.address) else {
                continue;
            };
            if facts[r].as_number != peer.as_number || r == m {
                continue;
            }
            if entries[r].iter().any(|e| e.ip == n.ip()) {
                continue;
            }
            entries[r].push(Entry {
                ip: n.ip(),
                as_number: n.as_number,
                cluster_id: n.cluster_id,
                option: None,
                reverse: true,
            });
        }
    }
    let mut out = Vec::with_capacity(facts.len());
    for (i, n) in facts.iter().enumerate() {
        let mut list = Vec::new();
        let same_family = |ip: IpAddr| ip.is_ipv4() == n.ip().is_ipv4();
        if config.node_to_node_mesh && n.cluster_id.is_none() {
            for (j, p) in facts.iter().enumerate() {
                if j == i || p.cluster_id.is_some() || !same_family(p.ip()) || p.ip() == n.ip() {
                    continue;
                }
                list.push(Session {
                    peer: p.ip(),
                    peer_as: p.as_number.get(),
                    source: Source::Mesh,
                    ibgp: p.as_number == n.as_number,
                    rr_client: false,
                    passive: p.ip().to_string() > n.ip().to_string(),
                    peer_unit: Some(p.unit.clone()),
                    option: None,
                    reverse: false,
                    state: SessionState::External,
                });
            }
        }
        for e in &entries[i] {
            if e.ip == n.ip() || !same_family(e.ip) {
                continue;
            }
            let ibgp = e.as_number == n.as_number;
            list.push(Session {
                peer: e.ip,
                peer_as: e.as_number.get(),
                source: Source::Node,
                ibgp,
                rr_client: n.cluster_id.is_some()
                    && ibgp
                    && cluster_text(e.cluster_id) != cluster_text(n.cluster_id),
                passive: false,
                peer_unit: by_ip.get(&e.ip).map(|&j| facts[j].unit.clone()),
                option: e.option,
                reverse: e.reverse,
                state: SessionState::External,
            });
        }
        list.sort_by_key(|a| (a.source, ip_key(a.peer)));
        out.push(list);
    }
    // States: a session toward a Calico node needs one back with matching AS numbers.
    // (peer_as, passive) of every session, by node and peer address.
    let back_of: Vec<BTreeMap<IpAddr, Vec<(u32, bool)>>> = out
        .iter()
        .map(|list| {
            let mut m: BTreeMap<IpAddr, Vec<(u32, bool)>> = BTreeMap::new();
            for s in list {
                m.entry(s.peer).or_default().push((s.peer_as, s.passive));
            }
            m
        })
        .collect();
    for (i, list) in out.iter_mut().enumerate() {
        for s in list.iter_mut() {
            let Some(&j) = by_ip.get(&s.peer) else {
                s.state = SessionState::External;
                continue;
            };
            let back: &[(u32, bool)] = back_of[j]
                .get(&facts[i].ip())
                .map(Vec::as_slice)
                .unwrap_or_default();
            s.state = if s.peer_as != facts[j].as_number.get() {
                SessionState::AsMismatch
            } else if back.is_empty() {
                SessionState::OneSided
            } else if !back.iter().any(|b| b.0 == facts[i].as_number.get()) {
                SessionState::AsMismatch
            } else if s.passive && back.iter().all(|b| b.1) {
                SessionState::BothPassive
            } else {
                SessionState::Matched
            };
        }
    }
    out
}

/// Sort key: IPv4 before IPv6, numeric order.
pub(crate) fn ip_key(ip: IpAddr) -> (u8, u128) {
    match ip {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (6, u128::from(v6)),
    }
}

/// The topology of nodes whose facts are known (the charm's, or published by each unit).
pub(crate) fn analyze(config: &CharmConfig, facts: &[NodeFacts]) -> Topology {
    let sessions = sessions(config, facts);
    let nodes: Vec<Node> = facts
        .iter()
        .zip(&sessions)
        .map(|(n, s)| Node {
            unit: n.unit.clone(),
            node: n.node_name.clone(),
            address: n.ip(),
            as_number: n.as_number.get(),
            route_reflector_cluster_id: cluster_text(n.cluster_id),
            sessions: s.clone(),
            prefix: n.address.prefix(),
        })
        .collect();
    let encapsulated = config.ipip != EncapMode::Never || config.vxlan != EncapMode::Never;
    let prop = propagate::propagate(facts, &nodes, encapsulated);
    let mut problems = Vec::new();
    problems_from(config, facts, &nodes, &prop, &mut problems);
    problems.sort_by(|a, b| (a.severity, a.kind, &a.units).cmp(&(b.severity, b.kind, &b.units)));
    Topology {
        nodes,
        reach: prop.reach,
        external: prop.external,
        problems,
    }
}

fn units_text(units: &[String]) -> String {
    units.join(", ")
}

fn push(
    out: &mut Vec<Problem>,
    kind: &'static str,
    severity: Severity,
    units: Vec<String>,
    options: BTreeSet<&'static str>,
    message: String,
) {
    out.push(Problem {
        kind,
        severity,
        units,
        options: options.into_iter().collect(),
        message,
    });
}

/// The options that give `n` its sessions.
fn session_options(config: &CharmConfig, n: &NodeFacts) -> BTreeSet<&'static str> {
    let mut o: BTreeSet<&'static str> = [
        "node-to-node-mesh",
        "global-bgp-peers",
        "subnet-bgp-peers",
        "unit-bgp-peers",
    ]
    .into_iter()
    .collect();
    if n.cluster_id.is_some() || !config.route_reflector_cluster_ids.is_empty() {
        o.insert("route-reflector-cluster-ids");
    }
    o
}

fn as_options(config: &CharmConfig) -> impl Iterator<Item = &'static str> {
    let mut o = vec!["global-as-number"];
    if !config.subnet_as_numbers.is_empty() {
        o.push("subnet-as-numbers");
    }
    if !config.unit_as_numbers.is_empty() {
        o.push("unit-as-numbers");
    }
    o.into_iter()
}

fn problems_from(
    config: &CharmConfig,
    facts: &[NodeFacts],
    nodes: &[Node],
    prop: &propagate::Propagation,
    out: &mut Vec<Problem>,
) {
    let n = facts.len();
    let unit = |i: usize| facts[i].unit.clone();
    let by_ip: BTreeMap<IpAddr, usize> =
        facts.iter().enumerate().map(|(i, f)| (f.ip(), i)).collect();

    // Sessions that cannot come up.
    for (i, node) in nodes.iter().enumerate() {
        for s in &node.sessions {
            let Some(&j) = by_ip.get(&s.peer) else {
                continue;
            };
            match s.state {
                SessionState::AsMismatch if s.peer_as != facts[j].as_number.get() => {
                    let mut o: BTreeSet<&'static str> = as_options(config).collect();
                    o.extend(s.option);
                    push(
                        out,
                        "peer-as-mismatch",
                        Severity::Error,
                        vec![unit(i), unit(j)],
                        o,
                        format!(
                            "{} peers with {} as AS {}, but {} ({}) has AS {}: the session never comes up (BIRD: Bad peer AS){}",
                            facts[i].unit,
                            s.peer,
                            s.peer_as,
                            facts[j].unit,
                            facts[j].node_name,
                            facts[j].as_number,
                            s.option
                                .map(|o| format!(
                                    "; fix the peer's as-number in {o} or the node's AS"
                                ))
                                .unwrap_or_default()
                        ),
                    );
                }
                SessionState::OneSided => {
                    let mut o = session_options(config, &facts[j]);
                    o.extend(s.option);
                    push(
                        out,
                        "one-sided-session",
                        Severity::Error,
                        vec![unit(i), unit(j)],
                        o,
                        format!(
                            "{} configures a session to {} ({}), which configures none back: it never comes up",
                            facts[i].unit, facts[j].unit, s.peer
                        ),
                    );
                }
                SessionState::BothPassive => {
                    push(
                        out,
                        "passive-session",
                        Severity::Error,
                        vec![unit(i), unit(j)],
                        BTreeSet::new(),
                        format!(
                            "{} and {} both wait passively for the other: the session never comes up",
                            facts[i].unit, facts[j].unit
                        ),
                    );
                }
                _ => {}
            }
        }
        // Duplicate sessions: a mesh session and a BGPPeer session to the same node.
        let mut seen: BTreeMap<IpAddr, Vec<&Session>> = BTreeMap::new();
        for s in &node.sessions {
            seen.entry(s.peer).or_default().push(s);
        }
        for (ip, list) in seen {
            if list.len() > 1 {
                let mut o: BTreeSet<&'static str> = ["node-to-node-mesh"].into_iter().collect();
                let mut units = vec![unit(i)];
                if let Some(&j) = by_ip.get(&ip) {
                    units.push(unit(j));
                }
                let mut why = Vec::new();
                for s in &list {
                    o.extend(s.option);
                    why.push(match (s.source, s.option, s.reverse) {
                        (Source::Mesh, _, _) => "the node-to-node mesh".to_string(),
                        (_, Some(opt), _) => opt.to_string(),
                        (_, None, true) => "a reverse peering".to_string(),
                        _ => "a BGPPeer".to_string(),
                    });
                }
                push(
                    out,
                    "duplicate-session",
                    Severity::Warning,
                    units,
                    o,
                    format!(
                        "{} gets {} sessions to {ip} ({}): BIRD accepts the peer's connection on only one of them; turn node-to-node-mesh off when BGPPeers connect Calico nodes",
                        facts[i].unit,
                        list.len(),
                        why.join(" and ")
                    ),
                );
            }
        }
        // Route reflectors without clients.
        if let Some(id) = facts[i].cluster_id
            && !node.sessions.iter().any(|s| s.rr_client)
        {
            push(
                out,
                "route-reflector-without-clients",
                Severity::Warning,
                vec![unit(i)],
                [
                    "route-reflector-cluster-ids",
                    "global-bgp-peers",
                    "subnet-bgp-peers",
                    "unit-bgp-peers",
                ]
                .into_iter()
                .collect(),
                format!(
                    "{} is a route reflector (cluster ID {id}) without clients: no node peers with it over iBGP{}",
                    facts[i].unit,
                    if config.node_to_node_mesh {
                        " (route reflectors never join the node-to-node mesh)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }

    // One external router, two AS numbers: at most one of the sessions can come up.
    let mut external_as: BTreeMap<IpAddr, BTreeMap<u32, Vec<String>>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for s in node.sessions.iter().filter(|s| s.peer_unit.is_none()) {
            external_as
                .entry(s.peer)
                .or_default()
                .entry(s.peer_as)
                .or_default()
                .push(unit(i));
        }
    }
    for (ip, by_as) in external_as.iter().filter(|(_, m)| m.len() > 1) {
        let units: Vec<String> = by_as.values().flatten().cloned().collect();
        let parts: Vec<String> = by_as
            .iter()
            .map(|(asn, us)| format!("AS {asn} for {}", us.join(", ")))
            .collect();
        push(
            out,
            "external-peer-as-conflict",
            Severity::Error,
            units,
            ["global-bgp-peers", "subnet-bgp-peers", "unit-bgp-peers"]
                .into_iter()
                .collect(),
            format!(
                "external router {ip} is given {}: a router has one AS, so the sessions that expect another never come up",
                parts.join(" and ")
            ),
        );
    }

    // Cluster ID 0.0.0.0.
    let zero: Vec<String> = facts
        .iter()
        .filter(|f| f.cluster_id == Some(Ipv4Addr::UNSPECIFIED))
        .map(|f| f.unit.clone())
        .collect();
    if !zero.is_empty() {
        push(
            out,
            "rr-cluster-id-zero",
            Severity::Warning,
            zero.clone(),
            ["route-reflector-cluster-ids"].into_iter().collect(),
            format!(
                "{} {} route reflector cluster ID 0.0.0.0, which calico-node's BIRD treats as unset: each reflector falls back to its own router ID ({BIRD_CLUSTER_ID_SOURCE}), so reflectors \"sharing\" 0.0.0.0 act as separate clusters, clients get every route reflected twice and the reflectors log \"Invalid NEXT_HOP attribute\"; connectivity survives, the shared ID's intent does not: use a non-zero ID such as 244.0.0.1",
                units_text(&zero),
                if zero.len() == 1 { "has" } else { "have" }
            ),
        );
    }

    // Reflectors that serve the same clients with different cluster IDs.
    let mut split: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (c, node) in nodes.iter().enumerate() {
        let serving: Vec<usize> = (0..n)
            .filter(|&r| {
                r != c
                    && facts[r].cluster_id.is_some()
                    && nodes[r]
                        .sessions
                        .iter()
                        .any(|s| s.peer == facts[c].ip() && s.rr_client)
            })
            .collect();
        let _ = node;
        for (a_i, &a) in serving.iter().enumerate() {
            for &b in &serving[a_i + 1..] {
                if facts[a].cluster_id != facts[b].cluster_id
                    && facts[a].as_number == facts[b].as_number
                {
                    split.insert((a, b));
                }
            }
        }
    }
    for (a, b) in split {
        push(
            out,
            "rr-cluster-id-split",
            Severity::Warning,
            vec![unit(a), unit(b)],
            ["route-reflector-cluster-ids"].into_iter().collect(),
            format!(
                "{} (cluster ID {}) and {} (cluster ID {}) reflect for the same clients with different cluster IDs: they act as two clusters, not one redundant pair; give both the same non-zero ID",
                facts[a].unit,
                facts[a]
                    .cluster_id
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                facts[b].unit,
                facts[b]
                    .cluster_id
                    .map(|i| i.to_string())
                    .unwrap_or_default()
            ),
        );
    }

    // Reach.
    if n < 2 {
        return;
    }
    let reached = |a: usize, b: usize| prop.reached[a][b];
    let configured = |i: usize| !nodes[i].sessions.is_empty();
    let mut cut: BTreeSet<usize> = BTreeSet::new();
    for i in 0..n {
        let out_none = (0..n).all(|j| j == i || !reached(i, j));
        let in_none = (0..n).all(|j| j == i || !reached(j, i));
        if !configured(i) {
            cut.insert(i);
            let mut o = session_options(config, &facts[i]);
            if facts[i].cluster_id.is_none() {
                o.remove("route-reflector-cluster-ids");
            }
            push(
                out,
                "isolated-node",
                Severity::Error,
                vec![unit(i)],
                o,
                format!(
                    "{} ({}) has no BGP session at all: {}no global-bgp-peers, no subnet-bgp-peers subnet containing {}, no unit-bgp-peers entry {}, and no BGPPeer of another unit points at it: its pods are cut off from every other node",
                    facts[i].unit,
                    facts[i].ip(),
                    if facts[i].cluster_id.is_some() {
                        "it is a route reflector (never in the mesh), "
                    } else if !config.node_to_node_mesh {
                        "node-to-node-mesh is false, "
                    } else {
                        ""
                    },
                    facts[i].ip(),
                    facts[i].unit_id
                ),
            );
        } else if out_none && in_none {
            cut.insert(i);
            push(
                out,
                "node-cut-off",
                Severity::Error,
                vec![unit(i)],
                session_options(config, &facts[i]),
                format!(
                    "{} ({}) has BGP sessions but none of them carries routes to or from another node: {}",
                    facts[i].unit,
                    facts[i].ip(),
                    why_sessions(&nodes[i])
                ),
            );
        }
    }
    for i in 0..n {
        if cut.contains(&i) {
            continue;
        }
        let others: Vec<usize> = (0..n).filter(|&j| j != i && !cut.contains(&j)).collect();
        let missing: Vec<usize> = others.iter().copied().filter(|&j| !reached(i, j)).collect();
        if missing.is_empty() {
            continue;
        }
        let why = prop.why_unreached(i, &missing, facts);
        let mut units = vec![unit(i)];
        units.extend(missing.iter().map(|&j| unit(j)));
        if missing.len() == others.len() {
            push(
                out,
                "routes-reach-no-one",
                Severity::Error,
                units,
                session_options(config, &facts[i]),
                format!("{}'s pod routes reach no other node{why}", facts[i].unit),
            );
        } else {
            let names: Vec<String> = missing.iter().map(|&j| unit(j)).collect();
            push(
                out,
                "routes-reach-some",
                Severity::Error,
                units,
                session_options(config, &facts[i]),
                format!(
                    "{}'s pod routes do not reach {}{why}",
                    facts[i].unit,
                    units_text(&names)
                ),
            );
        }
    }

    // iBGP neighbours with neither the mesh nor a Calico route reflector between them.
    let mut by_as: BTreeMap<u32, (BTreeSet<usize>, bool, BTreeSet<IpAddr>)> = BTreeMap::new();
    for a in 0..n {
        for b in 0..n {
            if a == b
                || facts[a].as_number != facts[b].as_number
                || cut.contains(&a)
                || cut.contains(&b)
            {
                continue;
            }
            if prop.reached_internally[a][b] {
                continue;
            }
            let e = by_as.entry(facts[a].as_number.get()).or_default();
            e.0.insert(a);
            e.0.insert(b);
            if !reached(a, b) {
                e.1 = true;
            } else {
                e.2.extend(prop.via[a][b].iter().copied());
            }
        }
    }
    for (asn, (members, broken, via)) in by_as {
        let units: Vec<String> = members.iter().map(|&i| unit(i)).collect();
        let via: Vec<String> = via.iter().map(ToString::to_string).collect();
        let tail = if broken {
            "and some of their routes do not reach each other at all".to_string()
        } else {
            format!(
                "their routes pass only through {}, which must reflect them between its iBGP peers (route reflector with these nodes as clients) or carry their traffic as the subnet's gateway",
                via.join(", ")
            )
        };
        push(
            out,
            "ibgp-without-mesh-or-reflection",
            if broken {
                Severity::Error
            } else {
                Severity::Warning
            },
            units.clone(),
            ["node-to-node-mesh", "route-reflector-cluster-ids"]
                .into_iter()
                .collect(),
            format!(
                "{} are in AS {asn} with neither the node-to-node mesh nor a Calico route reflector between them (iBGP does not pass routes on): {tail}",
                units_text(&units)
            ),
        );
    }
}

fn why_sessions(node: &Node) -> String {
    let parts: Vec<String> = node
        .sessions
        .iter()
        .map(|s| {
            let state = match s.state {
                SessionState::Matched => "up, but no route passes",
                SessionState::External => "external",
                SessionState::AsMismatch => "AS mismatch",
                SessionState::OneSided => "not configured on the other side",
                SessionState::BothPassive => "both sides passive",
            };
            format!("{} ({state})", s.peer)
        })
        .collect();
    parts.join(", ")
}

/// Parse a units file: a YAML list of `{unit: calico/N, address: IP/PREFIX, node-name: NAME}`.
pub fn parse_units(text: &str) -> Result<Vec<UnitInput>, InputError> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        InputError(format!(
            "not valid YAML: {}",
            crate::config::options::one_line(&e.to_string())
        ))
    })?;
    let items = match doc {
        serde_yaml::Value::Sequence(s) => s,
        serde_yaml::Value::Null => Vec::new(),
        _ => {
            return Err(InputError(
                "expected a YAML list of {unit: calico/N, address: IP/PREFIX, node-name: NAME}"
                    .into(),
            ));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = format!("entry {}", i + 1);
        let Some(map) = item.as_mapping() else {
            return Err(InputError(format!(
                "{here}: expected a map {{unit: calico/N, address: IP/PREFIX, node-name: NAME}}"
            )));
        };
        let mut unit = None;
        let mut address = None;
        let mut node = None;
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default();
            let val = match v {
                serde_yaml::Value::String(s) => s.clone(),
                serde_yaml::Value::Number(n) => n.to_string(),
                _ => return Err(InputError(format!("{here}: {key}: expected a string"))),
            };
            match key {
                "unit" => unit = Some(val),
                "address" => address = Some(val),
                "node-name" => node = Some(val),
                other => {
                    return Err(InputError(format!(
                        "{here}: unknown key {other:?}: an entry has exactly unit, address and node-name"
                    )));
                }
            }
        }
        let unit = unit.ok_or_else(|| InputError(format!("{here}: missing unit")))?;
        crate::unit::parse_unit_name(&unit).map_err(|e| InputError(format!("{here}: {e}")))?;
        let address = address.ok_or_else(|| InputError(format!("{here}: missing address")))?;
        let net = parse_address(&address).map_err(|e| InputError(format!("{here}: {e}")))?;
        let node_name = node.ok_or_else(|| InputError(format!("{here}: missing node-name")))?;
        if !valid_node_name(&node_name) {
            return Err(InputError(format!(
                "{here}: node-name {node_name:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.')"
            )));
        }
        out.push(UnitInput {
            unit,
            address: net,
            node_name,
        });
    }
    Ok(out)
}

/// `10.0.0.2/24`: an address with the prefix length of its subnet (host bits expected).
pub fn parse_address(text: &str) -> Result<IpNetwork, String> {
    let t = text.trim();
    let Some((ip, prefix)) = t.split_once('/') else {
        return Err(format!(
            "address {t:?}: expected IP/PREFIX, e.g. 10.0.0.2/24"
        ));
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("address {t:?}: {ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix.parse() {
        Ok(p) if p <= max => p,
        _ => {
            return Err(format!(
                "address {t:?}: the prefix length must be 0 to {max}"
            ));
        }
    };
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(format!(
            "address {t:?}: expected a unicast, non-loopback address"
        ));
    }
    IpNetwork::new(ip, prefix).map_err(|e| format!("address {t:?}: {e}"))
}

fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests;
