//! Route propagation: does each node's pod route reach every other node?
//!
//! Each origin's route is followed through the sessions that come up, with BGP's rules as
//! calico-node's BIRD applies them:
//!
//! - a route learned over iBGP is not passed to another iBGP peer (split horizon), except
//!   by a route reflector: routes from its clients go to every peer, routes from other iBGP
//!   peers go to its clients (RFC 4456);
//! - a reflector drops a route from a client whose CLUSTER_LIST holds its own cluster ID
//!   (cluster ID 0 means the router ID, as in BIRD);
//! - routes learned over eBGP, and the node's own, go to every peer; eBGP prepends the
//!   sender's AS and a receiver drops a route whose AS path holds its own AS;
//! - iBGP keeps the next hop, eBGP (multihop, as Calico configures it) sets the sender's.
//!
//! A router that is no Calico node is not seen: a path through it is kept, marked as
//! depending on it, with what it must do (reflect between iBGP peers, re-advertise, exchange
//! routes with another router of the operator's network). A route whose next hop lies
//! outside the receiver's subnet needs encapsulation (ipip/vxlan), or a router in that
//! subnet that learns the route (taken as the subnet's gateway).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashSet};
use std::net::IpAddr;

use super::{ExternalPeer, ExternalRouter, Node, NodeFacts, Reach, SessionState, ip_key};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Learned {
    Origin,
    Ebgp,
    FromClient,
    FromNonClient,
    /// Passed between two routers of the operator's network; `true` within one AS.
    Cloud(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Reflect(usize),
    Readvertise(usize),
    Exchange(usize, usize),
}

/// One way a node's pod traffic can reach another's.
struct Candidate {
    /// Routers that must reflect between iBGP peers (what a router that only peers, as
    /// the documentation configures it, does not do).
    reflects: usize,
    /// No route at the receiver: its traffic follows its gateway, which has the route.
    gateway_only: bool,
    hops: usize,
    via: Vec<usize>,
    actions: Vec<Action>,
    gateway: Option<usize>,
}

impl Candidate {
    fn new(
        hops: usize,
        via: Vec<usize>,
        actions: Vec<Action>,
        gateway: Option<usize>,
        gateway_only: bool,
    ) -> Candidate {
        Candidate {
            reflects: actions
                .iter()
                .filter(|a| matches!(a, Action::Reflect(_)))
                .count(),
            gateway_only,
            hops,
            via,
            actions,
            gateway,
        }
    }

    /// Preferred first: fewest reflecting routers, a BGP route at the receiver, fewest
    /// external routers, fewest hops, lowest router addresses.
    fn key(&self) -> (usize, bool, usize, usize, &[usize]) {
        (
            self.reflects,
            self.gateway_only,
            self.via.len(),
            self.hops,
            &self.via,
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Link {
    to: usize,
    ibgp: bool,
    /// The sender treats `to` as a route reflector client.
    to_client: bool,
}

struct St {
    at: usize,
    learned: Learned,
    from: Option<usize>,
    path: Vec<u32>,
    clusters: Vec<u32>,
    next_hop: IpAddr,
    via: Vec<usize>,
    hops: usize,
    parent: Option<usize>,
    action: Option<Action>,
}

/// Why a node's routes do not reach another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    Reached,
    NoRoute,
    NextHop(IpAddr),
}

pub(crate) struct Propagation {
    pub reach: Vec<Reach>,
    pub external: Vec<ExternalRouter>,
    pub reached: Vec<Vec<bool>>,
    pub reached_internally: Vec<Vec<bool>>,
    pub via: Vec<Vec<Vec<IpAddr>>>,
    pub reasons: Vec<Vec<Reason>>,
}

impl Propagation {
    /// `: why`, for a problem message about `from`'s routes missing `to`.
    pub(crate) fn why_unreached(&self, from: usize, to: &[usize], facts: &[NodeFacts]) -> String {
        let mut hop: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        let mut none = Vec::new();
        for &t in to {
            match &self.reasons[from][t] {
                Reason::NextHop(nh) => hop.entry(*nh).or_default().push(facts[t].unit.clone()),
                _ => none.push(facts[t].unit.clone()),
            }
        }
        let mut parts = Vec::new();
        if !none.is_empty() {
            parts.push(format!(
                "no BGP path carries them to {} (sessions down, iBGP split horizon, a reflector's cluster list, or an AS-path loop)",
                none.join(", ")
            ));
        }
        for (nh, units) in hop {
            parts.push(format!(
                "{} learn them, but their next hop {nh} is outside their subnet and no router there learns them: set ipip (or vxlan) to CrossSubnet, or peer with the subnet's router",
                units.join(", ")
            ));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(": {}", parts.join("; "))
        }
    }
}

fn cluster_key(f: &NodeFacts, index: usize) -> Option<u32> {
    f.cluster_id.map(|id| {
        let v = u32::from(id);
        if v != 0 {
            v
        } else {
            match f.ip() {
                IpAddr::V4(v4) => u32::from(v4),
                // An IPv6-only node's router ID comes from elsewhere: distinct per node.
                IpAddr::V6(_) => 0xffff_0000 | u32::try_from(index).unwrap_or(0),
            }
        }
    })
}

fn in_subnet(f: &NodeFacts, ip: IpAddr) -> bool {
    f.address.contains(ip)
}

pub(crate) fn propagate(facts: &[NodeFacts], nodes: &[Node], encapsulated: bool) -> Propagation {
    let n = facts.len();
    // External routers: every peer address that is no Calico node.
    let mut ext_index: BTreeMap<(u8, u128), (IpAddr, u32)> = BTreeMap::new();
    for node in nodes {
        for s in &node.sessions {
            if s.peer_unit.is_none() {
                ext_index
                    .entry(ip_key(s.peer))
                    .or_insert((s.peer, s.peer_as));
            }
        }
    }
    let externals: Vec<(IpAddr, u32)> = ext_index.values().copied().collect();
    let ext_of = |ip: IpAddr| externals.iter().position(|(a, _)| *a == ip).map(|e| n + e);
    let total = n + externals.len();
    let as_of = |s: usize| -> u32 {
        if s < n {
            facts[s].as_number.get()
        } else {
            externals[s - n].1
        }
    };
    let addr_of = |s: usize| -> IpAddr {
        if s < n {
            facts[s].ip()
        } else {
            externals[s - n].0
        }
    };
    let by_ip: BTreeMap<IpAddr, usize> =
        facts.iter().enumerate().map(|(i, f)| (f.ip(), i)).collect();
    let mut links: Vec<Vec<Link>> = vec![Vec::new(); total];
    for (i, node) in nodes.iter().enumerate() {
        let mut to: BTreeMap<usize, Link> = BTreeMap::new();
        for s in &node.sessions {
            let target = match (s.state, by_ip.get(&s.peer)) {
                (SessionState::Matched, Some(&j)) => j,
                (SessionState::External, None) => match ext_of(s.peer) {
                    Some(x) => x,
                    None => continue,
                },
                _ => continue,
            };
            let e = to.entry(target).or_insert(Link {
                to: target,
                ibgp: s.ibgp,
                to_client: false,
            });
            e.to_client |= s.rr_client;
        }
        for (target, link) in to {
            if target >= n {
                links[target].push(Link {
                    to: i,
                    ibgp: link.ibgp,
                    to_client: false,
                });
            }
            links[i].push(link);
        }
    }
    let onward: Vec<Vec<Link>> = links
        .iter()
        .map(|l| {
            l.iter()
                .copied()
                .filter(|l| !l.ibgp || l.to_client)
                .collect()
        })
        .collect();
    // (receiver, sender) pairs where the receiver treats the sender as a reflector client.
    let clients: HashSet<(usize, usize)> = links
        .iter()
        .enumerate()
        .flat_map(|(r, ls)| ls.iter().filter(|l| l.to_client).map(move |l| (r, l.to)))
        .collect();
    let client_of = |receiver: usize, sender: usize| clients.contains(&(receiver, sender));

    let mut reached = vec![vec![false; n]; n];
    let mut route = vec![vec![false; n]; n];
    let mut reached_internally = vec![vec![false; n]; n];
    let mut via_ip = vec![vec![Vec::new(); n]; n];
    let mut reasons = vec![vec![Reason::NoRoute; n]; n];
    let mut actions: BTreeSet<Action> = BTreeSet::new();
    let mut gateways: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();

    for o in 0..n {
        let mut states: Vec<St> = vec![St {
            at: o,
            learned: Learned::Origin,
            from: None,
            path: Vec::new(),
            clusters: Vec::new(),
            next_hop: facts[o].ip(),
            via: Vec::new(),
            hops: 0,
            parent: None,
            action: None,
        }];
        // Cheapest first: fewest external routers, then fewest hops, then the lowest
        // external addresses (externals are indexed in address order).
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((0usize, 0usize, Vec::<usize>::new(), 0usize)));
        let key_of = |s: &St| {
            (
                s.at,
                s.learned,
                s.at < n && in_subnet(&facts[s.at], s.next_hop),
            )
        };
        let mut visited: HashSet<(usize, Learned, bool)> = HashSet::new();
        let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut ext_first: BTreeMap<usize, usize> = BTreeMap::new();
        while let Some(Reverse((_, _, _, idx))) = heap.pop() {
            let at = states[idx].at;
            if !visited.insert(key_of(&states[idx])) {
                continue;
            }
            if at < n {
                if at != o {
                    arrivals[at].push(idx);
                }
            } else {
                ext_first.entry(at).or_insert(idx);
            }
            let mut next: Vec<St> = Vec::new();
            let st = &states[idx];
            let receive = |b: usize, ibgp: bool, action: Option<Action>, next: &mut Vec<St>| {
                let a = st.at;
                let mut path = st.path.clone();
                if !ibgp {
                    path.insert(0, as_of(a));
                    if path.contains(&as_of(b)) {
                        return;
                    }
                }
                let mut via = st.via.clone();
                if a >= n && !via.contains(&a) {
                    via.push(a);
                    via.sort_unstable();
                }
                let (learned, clusters, next_hop) = if b < n {
                    if b == o {
                        return;
                    }
                    if ibgp {
                        let mut clusters = st.clusters.clone();
                        if a < n
                            && matches!(st.learned, Learned::FromClient | Learned::FromNonClient)
                            && let Some(c) = cluster_key(&facts[a], a)
                        {
                            clusters.insert(0, c);
                        }
                        let is_client = client_of(b, a);
                        if is_client
                            && let Some(own) = cluster_key(&facts[b], b)
                            && clusters.contains(&own)
                        {
                            return;
                        }
                        let nh = if a >= n
                            && !matches!(st.learned, Learned::FromClient | Learned::FromNonClient)
                        {
                            addr_of(a)
                        } else {
                            st.next_hop
                        };
                        (
                            if is_client {
                                Learned::FromClient
                            } else {
                                Learned::FromNonClient
                            },
                            clusters,
                            nh,
                        )
                    } else {
                        (Learned::Ebgp, Vec::new(), addr_of(a))
                    }
                } else if ibgp {
                    (Learned::FromNonClient, st.clusters.clone(), st.next_hop)
                } else {
                    (Learned::Ebgp, Vec::new(), addr_of(a))
                };
                next.push(St {
                    at: b,
                    learned,
                    from: Some(a),
                    path,
                    clusters,
                    next_hop,
                    via,
                    hops: st.hops + 1,
                    parent: Some(idx),
                    action,
                });
            };
            if at < n {
                // Split horizon: a route from a non-client iBGP peer goes only to eBGP peers
                // and to this node's reflector clients.
                let out: &[Link] = match st.learned {
                    Learned::Origin | Learned::Ebgp | Learned::FromClient => &links[at],
                    Learned::FromNonClient => &onward[at],
                    Learned::Cloud(_) => &[],
                };
                for l in out {
                    if Some(l.to) != st.from {
                        receive(l.to, l.ibgp, None, &mut next);
                    }
                }
            } else {
                let in_ibgp = matches!(
                    st.learned,
                    Learned::FromClient | Learned::FromNonClient | Learned::Cloud(true)
                );
                for l in &links[at] {
                    if Some(l.to) == st.from {
                        continue;
                    }
                    let action = if l.ibgp && in_ibgp {
                        Action::Reflect(at)
                    } else {
                        Action::Readvertise(at)
                    };
                    receive(l.to, l.ibgp, Some(action), &mut next);
                }
                if !matches!(st.learned, Learned::Cloud(_)) {
                    for y in n..total {
                        if y == at {
                            continue;
                        }
                        let same = as_of(at) == as_of(y);
                        let mut path = st.path.clone();
                        if !same {
                            path.insert(0, as_of(at));
                            if path.contains(&as_of(y)) {
                                continue;
                            }
                        }
                        let mut via = st.via.clone();
                        if !via.contains(&at) {
                            via.push(at);
                            via.sort_unstable();
                        }
                        next.push(St {
                            at: y,
                            learned: Learned::Cloud(same),
                            from: Some(at),
                            path,
                            clusters: if same {
                                st.clusters.clone()
                            } else {
                                Vec::new()
                            },
                            next_hop: addr_of(y),
                            via,
                            hops: st.hops + 1,
                            parent: Some(idx),
                            action: Some(Action::Exchange(at, y)),
                        });
                    }
                }
            }
            for s in next {
                if visited.contains(&key_of(&s)) {
                    continue;
                }
                let key = (s.via.len(), s.hops, s.via.clone(), states.len());
                states.push(s);
                heap.push(Reverse(key));
            }
        }
        for t in 0..n {
            if t == o {
                continue;
            }
            if arrivals[t].iter().any(|&i| states[i].via.is_empty()) {
                reached_internally[o][t] = true;
            }
            let path_actions = |mut cur: Option<usize>| {
                let mut out = Vec::new();
                while let Some(c) = cur {
                    out.extend(states[c].action);
                    cur = states[c].parent;
                }
                out
            };
            // Candidates: an arrival whose next hop the node reaches directly (or through a
            // tunnel); an arrival plus a router in the node's subnet that learns the route
            // (its gateway); or, without any route at the node, that gateway alone.
            let mut candidates: Vec<Candidate> = Vec::new();
            let gateways_of_t: Vec<(usize, usize)> = ext_first
                .iter()
                .filter(|(g, _)| in_subnet(&facts[t], addr_of(**g)))
                .map(|(g, gi)| (*g, *gi))
                .collect();
            let with_gateway = |via: &[usize], g: usize, gi: usize| {
                let mut via: Vec<usize> = via
                    .iter()
                    .chain(&states[gi].via)
                    .copied()
                    .chain([g])
                    .collect();
                via.sort_unstable();
                via.dedup();
                via
            };
            for &i in &arrivals[t] {
                let st = &states[i];
                if encapsulated || in_subnet(&facts[t], st.next_hop) {
                    candidates.push(Candidate::new(
                        st.hops,
                        st.via.clone(),
                        path_actions(Some(i)),
                        None,
                        false,
                    ));
                    continue;
                }
                for &(g, gi) in &gateways_of_t {
                    let mut acts = path_actions(Some(i));
                    acts.extend(path_actions(Some(gi)));
                    candidates.push(Candidate::new(
                        st.hops,
                        with_gateway(&st.via, g, gi),
                        acts,
                        Some(g),
                        false,
                    ));
                }
            }
            if !encapsulated {
                for &(g, gi) in &gateways_of_t {
                    candidates.push(Candidate::new(
                        states[gi].hops + 1,
                        with_gateway(&[], g, gi),
                        path_actions(Some(gi)),
                        Some(g),
                        true,
                    ));
                }
            }
            candidates.sort_by(|a, b| a.key().cmp(&b.key()));
            match candidates.into_iter().next() {
                Some(c) => {
                    reached[o][t] = true;
                    route[o][t] = !c.gateway_only;
                    reasons[o][t] = Reason::Reached;
                    if let Some(g) = c.gateway {
                        gateways.entry(g).or_default().insert(format!(
                            "{}/{}",
                            facts[t].address.network(),
                            facts[t].address.prefix()
                        ));
                    }
                    actions.extend(c.actions);
                    via_ip[o][t] = c.via.iter().map(|&x| addr_of(x)).collect();
                }
                None => {
                    reasons[o][t] = match arrivals[t].first() {
                        Some(&i) => Reason::NextHop(states[i].next_hop),
                        None => Reason::NoRoute,
                    };
                }
            }
        }
    }

    let mut reach = Vec::new();
    for o in 0..n {
        for t in 0..n {
            if o != t {
                reach.push(Reach {
                    from: facts[o].unit.clone(),
                    to: facts[t].unit.clone(),
                    reached: reached[o][t],
                    via_external: via_ip[o][t].clone(),
                    route: route[o][t],
                });
            }
        }
    }

    let mut external = Vec::new();
    for (e, (address, asn)) in externals.iter().enumerate() {
        let x = n + e;
        let mut peers = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Some(s) = node.sessions.iter().find(|s| s.peer == *address) {
                peers.push(ExternalPeer {
                    unit: facts[i].unit.clone(),
                    address: facts[i].ip(),
                    as_number: facts[i].as_number.get(),
                    ibgp: s.ibgp,
                });
            }
        }
        let mut must = Vec::new();
        if !peers.is_empty() {
            let list: Vec<String> = peers
                .iter()
                .map(|p| format!("{} ({}, AS {})", p.address, p.unit, p.as_number))
                .collect();
            must.push(format!("peer as AS {asn} with {}", list.join(", ")));
        }
        if actions.contains(&Action::Reflect(x)) {
            must.push(
                "reflect the routes it learns over iBGP to its other iBGP peers (route reflector with the Calico nodes as clients), keeping their next hop"
                    .to_string(),
            );
        }
        if actions.contains(&Action::Readvertise(x)) {
            must.push("re-advertise the pod routes it learns to its Calico peers".to_string());
        }
        let partners: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Exchange(p, q) if *p == x => Some(addr_of(*q).to_string()),
                Action::Exchange(p, q) if *q == x => Some(addr_of(*p).to_string()),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !partners.is_empty() {
            must.push(format!(
                "exchange the pod routes with {} (the same router, or BGP sessions between them)",
                partners.join(", ")
            ));
        }
        if let Some(nets) = gateways.get(&x) {
            let nets: Vec<&str> = nets.iter().map(String::as_str).collect();
            must.push(format!(
                "route pod traffic for {} as its gateway: routes there keep next hops outside the subnet",
                nets.join(", ")
            ));
        }
        external.push(ExternalRouter {
            address: *address,
            as_number: *asn,
            peers,
            must,
        });
    }

    Propagation {
        reach,
        external,
        reached,
        reached_internally,
        via: via_ip,
        reasons,
    }
}
