//! The planner (pure): from what one unit wants ([`Desired`]) and what it owns in the
//! datastore ([`Observed`]), everything a converge will do, and why.
//!
//! [`plan`] decides which pool to adopt or create, which pools are stale, whether a peer
//! may be taken over, which objects already match and are skipped, what is pruned; the
//! edge ([`super::converge`]) observes, calls [`plan`], then executes the steps in order.
//! Only two decisions need what a write returns, and they are pure functions here too:
//! which node settings survive an apply ([`leftover_node_keys`]) and which stale pools are
//! drained once disabled ([`drained`]).

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::IpNetwork;
use serde::Serialize;

use super::fields::up_to_date;
use super::pools::{choose_pool_name, contains, normalise_cidr, overlaps};
use super::workloads::{ObjectRef, WorkloadKind, WorkloadObject};
use crate::calico::{
    BGPConfiguration, BGPPeer, IPAMBlock, IPPool, MANAGED_BY, MANAGED_BY_LABEL, NODE_ANNOTATIONS,
    NODE_SET_ONLY_ANNOTATIONS, UNIT_LABEL, is_charm_node_annotation,
};
use crate::problems::Cause;
use crate::render::workloads::Workloads;
use crate::render::{Desired, Pools};

/// What the unit owns in the datastore, as read at the start of a converge. `None` where a
/// read failed (the cause is already in the outcome; that part of the plan is left out) or
/// was not made (a non-leader reads no pools).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The node's Calico settings; `Some(None)`: the node is not registered.
    pub node: Option<Option<BTreeMap<String, String>>>,
    /// Every pool (leader with manage-pools only).
    pub pools: Option<Vec<IPPool>>,
    /// The peers labelled as this unit's.
    pub peers: Option<Vec<BGPPeer>>,
    /// Desired peers not among [`Observed::peers`], when read by name (`None`: no such
    /// peer). A desired name missing here was not read: the plan creates it only if absent
    /// ([`Plan::create_peers`]), and [`take_peer`] decides about one that exists.
    pub peer_names: BTreeMap<String, Option<BGPPeer>>,
    /// The BGP configuration the leader wants, as stored (`Some(None)`: none yet).
    pub bgp_configuration: Option<Option<BGPConfiguration>>,
}

/// One object to apply, with its revision before (`None`: it is new to the unit) so that
/// the edge can tell whether the apply changed anything.
#[derive(Clone, Debug, PartialEq)]
pub struct Apply<T> {
    pub object: T,
    pub before: Option<String>,
    /// A peer taken over from the earlier charm or a departed unit.
    pub adopted: bool,
}

/// What to do with the node's Calico settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// The settings the unit applies (every key it owns), when they differ from the node's.
    pub apply: Option<BTreeMap<String, String>>,
    /// What the unit wants the node to hold.
    pub want: BTreeMap<String, String>,
    /// The node's settings as read.
    pub current: BTreeMap<String, String>,
}

/// What the leader does with the workloads: applied first (calico-node must run before the
/// pools it will use exist), pruned last.
#[derive(Clone, Debug, Default)]
pub struct WorkloadPlan {
    /// Workload objects that differ from what is stored.
    pub apply: Vec<Apply<WorkloadObject>>,
    /// Workload objects no longer wanted.
    pub delete: Vec<ObjectRef>,
    /// Objects that already match (`Kind/name`).
    pub unchanged: Vec<String>,
}

/// Everything one converge does with Calico's objects, in execution order.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Pools to apply (adopted by CIDR or created), new before old.
    pub pools: Vec<Apply<IPPool>>,
    /// Peers to apply.
    pub peers: Vec<Apply<BGPPeer>>,
    /// Peers new to the unit, not read by name: created only if no peer of that name
    /// exists; an existing one is left as it is and decided by [`take_peer`].
    pub create_peers: Vec<BGPPeer>,
    /// The BGP configuration, when it differs.
    pub bgp_configuration: Option<Apply<BGPConfiguration>>,
    /// The node's settings (`None`: the node is unregistered or unread).
    pub node: Option<NodePlan>,
    /// This unit's peers no longer wanted.
    pub delete_peers: Vec<BGPPeer>,
    /// Pools no longer wanted: disabled, then deleted once drained. Only when every desired
    /// pool was placed.
    pub stale_pools: Vec<(IPPool, IpNetwork)>,
    /// The desired pool ranges (a block inside one of them is that pool's, not a stale one's).
    pub desired_cidrs: Vec<IpNetwork>,
    /// Objects that already match and are left alone (`Kind/name`).
    pub unchanged: Vec<String>,
    /// Operator-facing causes found while planning.
    pub waiting: Vec<Cause>,
    pub blocked: Vec<Cause>,
}

/// The waiting cause while this unit's Node has not registered.
pub(crate) fn waiting_for_node(node: &str) -> Cause {
    Cause::NodeUnregistered {
        node: node.to_string(),
    }
}

/// Decide everything (pure, deterministic).
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut plan = Plan::default();
    match &observed.node {
        Some(Some(current)) => plan.node = Some(plan_node(desired, current)),
        Some(None) => plan.waiting.push(waiting_for_node(&desired.node.node_name)),
        None => {}
    }
    if let (Pools::Managed(pools), Some(existing)) = (&desired.pools, &observed.pools) {
        plan_pools(&mut plan, pools, existing);
    }
    if let Some(owned) = &observed.peers {
        plan_peers(&mut plan, desired, owned, &observed.peer_names);
    }
    if let (Some(want), Some(stored)) = (&desired.bgp_configuration, &observed.bgp_configuration) {
        let name = want.metadata.name.clone().unwrap_or_default();
        let mut object = BGPConfiguration::new(&name, want.spec.clone());
        object.metadata.labels = want.metadata.labels.clone();
        object.metadata.annotations = want.metadata.annotations.clone();
        match stored {
            Some(stored) if matches(&object, stored) => {
                plan.unchanged.push(format!("BGPConfiguration/{name}"));
            }
            _ => {
                plan.bgp_configuration = Some(Apply {
                    object,
                    before: stored
                        .as_ref()
                        .and_then(|s| s.metadata.resource_version.clone()),
                    adopted: false,
                });
            }
        }
    } else if let Some(want) = &desired.bgp_configuration {
        // Unread (the read failed without stopping the converge): apply anyway.
        let name = want.metadata.name.clone().unwrap_or_default();
        let mut object = BGPConfiguration::new(&name, want.spec.clone());
        object.metadata.labels = want.metadata.labels.clone();
        object.metadata.annotations = want.metadata.annotations.clone();
        plan.bgp_configuration = Some(Apply {
            object,
            before: None,
            adopted: false,
        });
    }
    plan
}

/// Whether `stored` already holds `want` (values and the charm's own fields).
fn matches<T: Serialize>(want: &T, stored: &T) -> bool {
    match (serde_json::to_value(want), serde_json::to_value(stored)) {
        (Ok(w), Ok(s)) => up_to_date(&w, &s),
        _ => false,
    }
}

// ---- workloads ----------------------------------------------------------------------

/// Decide what to do with the workloads, given the objects labelled as the charm's, as
/// listed for the kinds `listed` (an object of a kind not listed is neither applied nor
/// pruned: a later hook lists it, [`super::checks`]).
pub fn plan_workloads(
    workloads: &Workloads,
    owned: &[ObjectRef],
    listed: &[WorkloadKind],
) -> WorkloadPlan {
    let mut plan = WorkloadPlan::default();
    let objects = workload_objects(workloads);
    let read = |kind: &str| listed.iter().any(|k| k.as_str() == kind);
    for object in objects.iter().filter(|o| listed.contains(&o.kind())) {
        let (namespace, name) = object.key();
        let kind = object.kind().as_str();
        let stored = owned
            .iter()
            .find(|o| o.kind == kind && o.namespace == namespace && o.name == name);
        match (stored, object.to_json()) {
            (Some(stored), Some(json)) if up_to_date(&json, &stored.live) => {
                plan.unchanged.push(format!("{kind}/{name}"));
            }
            _ => plan.apply.push(Apply {
                object: object.clone(),
                before: stored.and_then(|o| o.resource_version.clone()),
                adopted: false,
            }),
        }
    }
    if objects.is_empty() {
        // An empty set would prune calico-node itself: treat it as "nothing rendered"
        // rather than "remove Calico".
        tracing::warn!("no workload objects rendered; not pruning any");
        return plan;
    }
    let wanted: BTreeSet<(String, String, String)> = objects
        .iter()
        .map(|o| {
            let (ns, name) = o.key();
            (o.kind().as_str().to_string(), ns, name)
        })
        .collect();
    plan.delete = owned
        .iter()
        .filter(|o| {
            read(&o.kind)
                && managed_by_charm(&o.labels)
                && !wanted.contains(&(o.kind.clone(), o.namespace.clone(), o.name.clone()))
        })
        .cloned()
        .collect();
    plan
}

/// Every workload object except CRDs, in apply order, labelled as managed by the charm.
pub(crate) fn workload_objects(workloads: &Workloads) -> Vec<WorkloadObject> {
    let mut objects: Vec<WorkloadObject> = Vec::new();
    objects.extend(
        workloads
            .service_accounts
            .iter()
            .cloned()
            .map(WorkloadObject::ServiceAccount),
    );
    objects.extend(
        workloads
            .cluster_roles
            .iter()
            .cloned()
            .map(WorkloadObject::ClusterRole),
    );
    objects.extend(
        workloads
            .cluster_role_bindings
            .iter()
            .cloned()
            .map(WorkloadObject::ClusterRoleBinding),
    );
    objects.extend(
        workloads
            .config_maps
            .iter()
            .cloned()
            .map(WorkloadObject::ConfigMap),
    );
    objects.extend(
        workloads
            .secrets
            .iter()
            .cloned()
            .map(WorkloadObject::Secret),
    );
    objects.extend(
        workloads
            .services
            .iter()
            .cloned()
            .map(WorkloadObject::Service),
    );
    objects.extend(
        workloads
            .daemon_sets
            .iter()
            .cloned()
            .map(WorkloadObject::DaemonSet),
    );
    objects.extend(
        workloads
            .deployments
            .iter()
            .cloned()
            .map(WorkloadObject::Deployment),
    );
    objects.extend(
        workloads
            .pod_disruption_budgets
            .iter()
            .cloned()
            .map(WorkloadObject::PodDisruptionBudget),
    );
    objects
}

// ---- node -----------------------------------------------------------------------------

fn plan_node(desired: &Desired, current: &BTreeMap<String, String>) -> NodePlan {
    let mut want: BTreeMap<String, String> = desired
        .node
        .annotations
        .iter()
        .filter(|(k, _)| is_charm_node_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A set-only setting the unit no longer sets keeps its current value: applying
    // without it would drop it when the charm's field manager owns it.
    for key in NODE_SET_ONLY_ANNOTATIONS {
        if let (false, Some(value)) = (want.contains_key(key), current.get(key)) {
            want.insert(key.to_string(), value.clone());
        }
    }
    let is_current = want.iter().all(|(k, v)| current.get(k) == Some(v));
    let apply = (!is_current || !leftover_node_keys(&want, current).is_empty())
        // Apply even an empty set: it drops what the charm owned and no longer wants.
        .then(|| want.clone());
    NodePlan {
        apply,
        want,
        current: current.clone(),
    }
}

/// The Calico keys on the node that the unit does not want (after an apply these are the
/// ones someone else set: the earlier charm, an admin, calico-node), to remove explicitly.
pub(crate) fn leftover_node_keys(
    want: &BTreeMap<String, String>,
    node: &BTreeMap<String, String>,
) -> Vec<String> {
    node.keys()
        .filter(|k| NODE_ANNOTATIONS.contains(&k.as_str()) && !want.contains_key(*k))
        .cloned()
        .collect()
}

// ---- pools ----------------------------------------------------------------------------

fn plan_pools(plan: &mut Plan, pools: &[IPPool], existing: &[IPPool]) {
    let mut taken: BTreeSet<String> = existing
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let mut kept: BTreeSet<String> = BTreeSet::new();
    let mut complete = true;
    if pools.is_empty() {
        // "Exactly no pools" would remove every pool and with it pod networking: never.
        tracing::warn!("no IP pool rendered; leaving existing pools alone");
        complete = false;
    }
    for want in pools {
        let rendered = want.metadata.name.clone().unwrap_or_default();
        let Some(cidr) = normalise_cidr(&want.spec.cidr) else {
            plan.blocked.push(Cause::Rejected {
                object: format!("IPPool/{rendered}"),
                reason: format!("invalid cidr {:?}", want.spec.cidr),
            });
            complete = false;
            continue;
        };
        plan.desired_cidrs.push(cidr);
        let found = existing.iter().find(|p| {
            !kept.contains(p.metadata.name.as_deref().unwrap_or_default())
                && normalise_cidr(&p.spec.cidr) == Some(cidr)
        });
        let name = match found {
            Some(p) => p.metadata.name.clone().unwrap_or_default(),
            None => choose_pool_name(&rendered, cidr, &taken),
        };
        taken.insert(name.clone());
        kept.insert(name.clone());

        let mut spec = want.spec.clone();
        spec.cidr = cidr.to_string();
        // A pool adopted while it was draining must allocate again.
        spec.disabled.get_or_insert(false);
        let mut object = IPPool::new(&name, spec);
        object.metadata.labels = want.metadata.labels.clone();
        object.metadata.annotations = want.metadata.annotations.clone();
        match found {
            Some(stored) if matches(&object, stored) => {
                plan.unchanged.push(format!("IPPool/{name}"));
            }
            _ => plan.pools.push(Apply {
                object,
                before: found.and_then(|p| p.metadata.resource_version.clone()),
                adopted: false,
            }),
        }
    }
    if !complete {
        return;
    }
    plan.stale_pools = existing
        .iter()
        .filter(|p| !kept.contains(p.metadata.name.as_deref().unwrap_or_default()))
        .filter_map(|p| match normalise_cidr(&p.spec.cidr) {
            Some(cidr) => Some((p.clone(), cidr)),
            None => {
                // Not a range we can reason about: leave it alone.
                tracing::warn!(
                    "IPPool {:?} has an unreadable cidr {:?}; leaving it",
                    p.metadata.name,
                    p.spec.cidr
                );
                None
            }
        })
        .collect();
}

/// For each stale pool, whether it still has allocated addresses: an in-use IPAM block
/// overlapping it, unless the block lies inside a pool that is kept (its addresses stay
/// routed there). An in-use block whose CIDR cannot be read counts against every pool.
pub(crate) fn drained(
    stale: &[(IPPool, IpNetwork)],
    blocks: &[IPAMBlock],
    desired: &[IpNetwork],
) -> Vec<bool> {
    let in_use: Vec<Option<IpNetwork>> = blocks
        .iter()
        .filter(|b| b.spec.in_use())
        .map(|b| normalise_cidr(&b.spec.cidr))
        .collect();
    stale
        .iter()
        .map(|(_, cidr)| {
            !in_use.iter().any(|block| match block {
                Some(block) => {
                    overlaps(*cidr, *block) && !desired.iter().any(|d| contains(*d, *block))
                }
                None => true,
            })
        })
        .collect()
}

// ---- peers ----------------------------------------------------------------------------

/// Whether a label map marks an object as managed by the charm.
pub(crate) fn managed_by_charm(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// Whether a peer is labelled as owned by `owner` (the double check before a delete).
pub(crate) fn owned_by(peer: &BGPPeer, owner: &str) -> bool {
    let labels = peer.metadata.labels.clone().unwrap_or_default();
    managed_by_charm(&labels) && labels.get(UNIT_LABEL).map(String::as_str) == Some(owner)
}

/// Whether a peer looks like one the earlier Python charm made: no labels of its own (only
/// Calico's `projectcalico.org/` bookkeeping ones, which calicoctl writes).
fn unlabelled(peer: &BGPPeer) -> bool {
    peer.metadata
        .labels
        .as_ref()
        .is_none_or(|labels| labels.keys().all(|k| k.contains("projectcalico.org/")))
}

/// Whether an existing peer with a desired peer's name may be taken over: it is already
/// ours; or the earlier Python charm's (no labels) for the same node; or the charm's own
/// for this very node, left by a unit that is gone (one unit per machine).
pub(crate) fn may_take(existing: &BGPPeer, want: &BGPPeer, owner: &str, node: &str) -> bool {
    if owned_by(existing, owner) {
        return true;
    }
    let same_node = existing.spec.node == want.spec.node;
    if unlabelled(existing) {
        return same_node;
    }
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    managed_by_charm(&labels) && same_node && existing.spec.node.as_deref() == Some(node)
}

/// What to do with an existing peer that has the name of `want` (as rendered) and is not
/// among the unit's own: apply `object` (the peer as the unit applies it) over it when it
/// [`may_take`] it, else the cause to report (it is left alone).
pub fn take_peer(
    desired: &Desired,
    want: &BGPPeer,
    object: BGPPeer,
    existing: &BGPPeer,
) -> Result<Apply<BGPPeer>, Cause> {
    let owner = &desired.owner;
    if !may_take(existing, want, owner, &desired.node.node_name) {
        return Err(Cause::PeerTaken {
            name: object.metadata.name.clone().unwrap_or_default(),
            owner: owner.clone(),
        });
    }
    Ok(Apply {
        object,
        before: existing.metadata.resource_version.clone(),
        adopted: !owned_by(existing, owner),
    })
}

/// The peer as the unit applies it: the rendered one (render sets the unit's labels).
pub fn peer_object(want: &BGPPeer) -> BGPPeer {
    let name = want.metadata.name.clone().unwrap_or_default();
    let mut object = BGPPeer::new(&name, want.spec.clone());
    object.metadata.labels = want.metadata.labels.clone();
    object.metadata.annotations = want.metadata.annotations.clone();
    object
}

fn plan_peers(
    plan: &mut Plan,
    desired: &Desired,
    owned: &[BGPPeer],
    by_name: &BTreeMap<String, Option<BGPPeer>>,
) {
    let owner = &desired.owner;
    let owned: Vec<&BGPPeer> = owned.iter().filter(|p| owned_by(p, owner)).collect();
    for want in &desired.peers {
        let name = want.metadata.name.clone().unwrap_or_default();
        let object = peer_object(want);

        if let Some(stored) = owned
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        {
            if matches(&object, *stored) {
                plan.unchanged.push(format!("BGPPeer/{name}"));
            } else {
                plan.peers.push(Apply {
                    object,
                    before: stored.metadata.resource_version.clone(),
                    adopted: false,
                });
            }
            continue;
        }
        match by_name.get(&name) {
            // Not read by name: create it if its name is free (one request); an existing
            // peer of that name goes through `take_peer` then.
            None => plan.create_peers.push(object),
            Some(None) => plan.peers.push(Apply {
                object,
                before: None,
                adopted: false,
            }),
            Some(Some(existing)) => match take_peer(desired, want, object, existing) {
                Ok(apply) => plan.peers.push(apply),
                Err(cause) => plan.blocked.push(cause),
            },
        }
    }
    let wanted: BTreeSet<&str> = desired
        .peers
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    plan.delete_peers = owned
        .into_iter()
        .filter(|p| !wanted.contains(p.metadata.name.as_deref().unwrap_or_default()))
        .cloned()
        .collect();
}

#[cfg(test)]
mod tests {
    //! Every pool, peer, adoption, drain and node rule as tables of plain values: no double,
    //! no server. The whole-charm tests on the real API server prove the edges.

    use super::*;
    use crate::calico::charm_labels;
    use crate::calico::{
        AS_NUMBER_ANNOTATION, BGPConfigurationSpec, BGPPeerSpec, IPAMBlockSpec, IPPoolSpec,
        IPV4_ADDRESS_ANNOTATION, RR_CLUSTER_ID_ANNOTATION,
    };
    use crate::render::NodeBgp;
    use serde_json::json;

    const NODE: &str = "n1";
    const OWNER: &str = "calico-0";

    fn pool(name: &str, cidr: &str) -> IPPool {
        IPPool::new(
            name,
            IPPoolSpec {
                cidr: cidr.to_string(),
                ipip_mode: Some("Never".into()),
                vxlan_mode: Some("Never".into()),
                nat_outgoing: Some(true),
                ..IPPoolSpec::default()
            },
        )
    }

    /// A pool as stored: the charm's labels (when `ours`), a revision, maybe disabled.
    fn stored_pool(name: &str, cidr: &str, ours: bool, disabled: Option<bool>) -> IPPool {
        let mut p = pool(name, cidr);
        p.spec.disabled = disabled;
        if ours {
            p.metadata.labels = Some(charm_labels(None));
        }
        p.metadata.resource_version = Some("7".into());
        p
    }

    fn peer(owner: &str, ip: &str, node: &str) -> BGPPeer {
        BGPPeer::new(
            &format!("{owner}-{ip}-64512"),
            BGPPeerSpec {
                node: Some(node.to_string()),
                peer_ip: Some(ip.to_string()),
                as_number: Some(64512),
                ..BGPPeerSpec::default()
            },
        )
    }

    fn labelled(mut p: BGPPeer, labels: BTreeMap<String, String>) -> BGPPeer {
        p.metadata.labels = Some(labels);
        p.metadata.resource_version = Some("3".into());
        p
    }

    fn desired(pools: Option<&[(&str, &str)]>, peers: &[&str]) -> Desired {
        Desired {
            owner: OWNER.to_string(),
            pools: match pools {
                // Labelled as rendering labels them.
                Some(p) => Pools::Managed(
                    p.iter()
                        .map(|(n, c)| {
                            let mut p = pool(n, c);
                            p.metadata.labels = Some(charm_labels(None));
                            p
                        })
                        .collect(),
                ),
                None => Pools::Unmanaged,
            },
            bgp_configuration: None,
            peers: peers
                .iter()
                .map(|ip| {
                    let mut p = peer(OWNER, ip, NODE);
                    p.metadata.labels = Some(charm_labels(Some(OWNER)));
                    p
                })
                .collect(),
            node: NodeBgp {
                node_name: NODE.to_string(),
                annotations: BTreeMap::new(),
            },
            workloads: None,
            node_status: None,
        }
    }

    fn names<T: kube::Resource>(items: &[Apply<T>]) -> Vec<String> {
        items
            .iter()
            .map(|a| a.object.meta().name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn pools() {
        struct Case {
            what: &'static str,
            want: Option<&'static [(&'static str, &'static str)]>,
            existing: Vec<IPPool>,
            apply: &'static [&'static str],
            unchanged: &'static [&'static str],
            stale: &'static [&'static str],
            blocked: usize,
        }
        let cases = [
            Case {
                what: "a fresh cluster gets the rendered pool",
                want: Some(&[("ipv4", "10.1.0.0/16")]),
                existing: vec![],
                apply: &["ipv4"],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "a pool with the wanted CIDR is adopted under its own name",
                want: Some(&[("ipv4", "10.1.0.0/16")]),
                existing: vec![stored_pool(
                    "default-ipv4-ippool",
                    "10.1.0.0/16",
                    false,
                    None,
                )],
                apply: &["default-ipv4-ippool"],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "a pool already as wanted is left alone",
                want: Some(&[("ipv4", "10.1.0.0/16")]),
                existing: vec![stored_pool("p", "10.1.0.0/16", true, Some(false))],
                apply: &[],
                unchanged: &["p"],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "CIDRs compare as ranges, not as text: the pool is adopted, not replaced",
                want: Some(&[("ipv4", "10.1.0.0/16")]),
                existing: vec![stored_pool("p", "10.1.2.3/16", true, Some(false))],
                apply: &["p"],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "a CIDR change creates the new pool and makes the old one stale",
                want: Some(&[("ipv4", "10.2.0.0/16")]),
                existing: vec![stored_pool("ipv4", "10.1.0.0/16", true, Some(false))],
                apply: &["ipv4-10-2-0-0-16"],
                unchanged: &[],
                stale: &["ipv4"],
                blocked: 0,
            },
            Case {
                what: "a pool the charm never made is stale like any other",
                want: Some(&[("ipv4", "10.2.0.0/16")]),
                existing: vec![stored_pool(
                    "default-ipv4-ippool",
                    "192.168.0.0/16",
                    false,
                    None,
                )],
                apply: &["ipv4"],
                unchanged: &[],
                stale: &["default-ipv4-ippool"],
                blocked: 0,
            },
            Case {
                what: "a stale pool that was draining is enabled again when wanted again",
                want: Some(&[("ipv4", "10.1.0.0/16")]),
                existing: vec![stored_pool("ipv4", "10.1.0.0/16", true, Some(true))],
                apply: &["ipv4"],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "an invalid wanted CIDR blocks and leaves every old pool alone",
                want: Some(&[("ipv4", "10.1.0.0/33")]),
                existing: vec![stored_pool("old", "10.9.0.0/16", true, Some(false))],
                apply: &[],
                unchanged: &[],
                stale: &[],
                blocked: 1,
            },
            Case {
                what: "managed but empty: no pool is removed",
                want: Some(&[]),
                existing: vec![stored_pool("old", "10.9.0.0/16", true, Some(false))],
                apply: &[],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "unmanaged pools are never touched",
                want: None,
                existing: vec![stored_pool("old", "10.9.0.0/16", true, Some(false))],
                apply: &[],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
            Case {
                what: "an unreadable stored CIDR is left alone",
                want: Some(&[("ipv4", "10.1.0.0/16")]),
                existing: vec![stored_pool("odd", "not-a-cidr", false, None)],
                apply: &["ipv4"],
                unchanged: &[],
                stale: &[],
                blocked: 0,
            },
        ];
        for case in cases {
            let d = desired(case.want, &[]);
            let observed = Observed {
                pools: Some(case.existing),
                ..Observed::default()
            };
            let plan = plan(&d, &observed);
            assert_eq!(names(&plan.pools), case.apply, "{}", case.what);
            let unchanged: Vec<String> = case
                .unchanged
                .iter()
                .map(|n| format!("IPPool/{n}"))
                .collect();
            assert_eq!(plan.unchanged, unchanged, "{}", case.what);
            let stale: Vec<String> = plan
                .stale_pools
                .iter()
                .map(|(p, _)| p.metadata.name.clone().unwrap_or_default())
                .collect();
            assert_eq!(stale, case.stale, "{}", case.what);
            assert_eq!(
                plan.blocked.len(),
                case.blocked,
                "{}: {:?}",
                case.what,
                plan.blocked
            );
        }
    }

    #[test]
    fn applied_pools_carry_the_wanted_cidr_labels_and_enable_allocation() {
        let d = desired(Some(&[("ipv4", "10.1.0.0/16")]), &[]);
        let observed = Observed {
            pools: Some(vec![stored_pool(
                "adopted",
                "10.1.0.0/16",
                false,
                Some(true),
            )]),
            ..Observed::default()
        };
        let plan = plan(&d, &observed);
        let applied = &plan.pools[0];
        assert_eq!(applied.before.as_deref(), Some("7"));
        assert_eq!(applied.object.spec.cidr, "10.1.0.0/16");
        assert_eq!(applied.object.spec.disabled, Some(false));
        assert_eq!(applied.object.metadata.labels, Some(charm_labels(None)));
    }

    #[test]
    fn drain() {
        let block = |cidr: &str, used: bool| IPAMBlock {
            metadata: Default::default(),
            spec: IPAMBlockSpec {
                cidr: cidr.to_string(),
                allocations: if used { vec![Some(0)] } else { vec![None] },
                ..IPAMBlockSpec::default()
            },
        };
        let stale = |cidr: &str| {
            let net = normalise_cidr(cidr).unwrap_or_else(|| panic!("{cidr}"));
            (pool("old", cidr), net)
        };
        let kept = [normalise_cidr("10.1.0.0/24").unwrap_or_else(|| panic!())];
        let cases: [(&str, Vec<IPAMBlock>, &[IpNetwork], bool); 6] = [
            ("no blocks: drained", vec![], &[], true),
            (
                "an allocated block inside: draining",
                vec![block("10.1.0.0/26", true)],
                &[],
                false,
            ),
            (
                "an empty block inside: drained",
                vec![block("10.1.0.0/26", false)],
                &[],
                true,
            ),
            (
                "an allocated block elsewhere: drained",
                vec![block("10.9.0.0/26", true)],
                &[],
                true,
            ),
            (
                "a block of a kept pool overlapping the old one: drained",
                vec![block("10.1.0.0/26", true)],
                &kept,
                true,
            ),
            (
                "an allocated block that cannot be read: draining",
                vec![block("x", true)],
                &[],
                false,
            ),
        ];
        for (what, blocks, desired_cidrs, want) in cases {
            assert_eq!(
                drained(&[stale("10.1.0.0/16")], &blocks, desired_cidrs),
                vec![want],
                "{what}"
            );
        }
    }

    #[test]
    fn peers() {
        let ours = charm_labels(Some(OWNER));
        let departed = charm_labels(Some("calico-7"));
        let python = BTreeMap::from([("projectcalico.org/metadata".to_string(), "x".to_string())]);
        struct Case {
            what: &'static str,
            owned: Vec<BGPPeer>,
            by_name: Vec<(&'static str, Option<BGPPeer>)>,
            apply: &'static [(&'static str, bool)],
            unchanged: usize,
            delete: &'static [&'static str],
            blocked: usize,
            /// Peers created only if absent.
            create: usize,
        }
        let name = |ip: &str| format!("{OWNER}-{ip}-64512");
        let cases = vec![
            Case {
                what: "a new peer is created",
                owned: vec![],
                by_name: vec![("10.0.0.1", None)],
                apply: &[("10.0.0.1", false)],
                unchanged: 0,
                delete: &[],
                blocked: 0,
                create: 0,
            },
            Case {
                what: "an owned peer as wanted is left alone",
                owned: vec![labelled(peer(OWNER, "10.0.0.1", NODE), ours.clone())],
                by_name: vec![],
                apply: &[],
                unchanged: 1,
                delete: &[],
                blocked: 0,
                create: 0,
            },
            Case {
                what: "an owned peer changed by someone else is applied again",
                owned: vec![{
                    let mut p = labelled(peer(OWNER, "10.0.0.1", NODE), ours.clone());
                    p.spec.as_number = Some(1);
                    p
                }],
                by_name: vec![],
                apply: &[("10.0.0.1", false)],
                unchanged: 0,
                delete: &[],
                blocked: 0,
                create: 0,
            },
            Case {
                what: "the earlier Python charm's peer for this node is adopted",
                owned: vec![],
                by_name: vec![(
                    "10.0.0.1",
                    Some(labelled(peer(OWNER, "10.0.0.1", NODE), python.clone())),
                )],
                apply: &[("10.0.0.1", true)],
                unchanged: 0,
                delete: &[],
                blocked: 0,
                create: 0,
            },
            Case {
                what: "an unlabelled peer of another node is not taken",
                owned: vec![],
                by_name: vec![(
                    "10.0.0.1",
                    Some(labelled(peer(OWNER, "10.0.0.1", "n2"), python.clone())),
                )],
                apply: &[],
                unchanged: 0,
                delete: &[],
                blocked: 1,
                create: 0,
            },
            Case {
                what: "a departed unit's peer on this very node is taken over",
                owned: vec![],
                by_name: vec![(
                    "10.0.0.1",
                    Some(labelled(peer(OWNER, "10.0.0.1", NODE), departed.clone())),
                )],
                apply: &[("10.0.0.1", true)],
                unchanged: 0,
                delete: &[],
                blocked: 0,
                create: 0,
            },
            Case {
                what: "a foreign peer with our name is left alone and reported",
                owned: vec![],
                by_name: vec![(
                    "10.0.0.1",
                    Some(labelled(
                        peer(OWNER, "10.0.0.1", NODE),
                        BTreeMap::from([("team".to_string(), "net".to_string())]),
                    )),
                )],
                apply: &[],
                unchanged: 0,
                delete: &[],
                blocked: 1,
                create: 0,
            },
            Case {
                what: "a peer not read by name is created only if its name is free",
                owned: vec![],
                by_name: vec![],
                apply: &[],
                unchanged: 0,
                delete: &[],
                blocked: 0,
                create: 1,
            },
            Case {
                what: "owned peers no longer wanted are deleted, others never",
                owned: vec![
                    labelled(peer(OWNER, "10.0.0.1", NODE), ours.clone()),
                    labelled(peer(OWNER, "10.0.0.9", NODE), ours.clone()),
                    // Listed by a sloppy server, but not labelled as ours.
                    labelled(peer(OWNER, "10.0.0.8", NODE), departed.clone()),
                ],
                by_name: vec![],
                apply: &[],
                unchanged: 1,
                delete: &["10.0.0.9"],
                blocked: 0,
                create: 0,
            },
        ];
        for case in cases {
            let d = desired(None, &["10.0.0.1"]);
            let observed = Observed {
                peers: Some(case.owned),
                peer_names: case
                    .by_name
                    .into_iter()
                    .map(|(ip, p)| (name(ip), p))
                    .collect(),
                ..Observed::default()
            };
            let plan = plan(&d, &observed);
            let applied: Vec<(String, bool)> = plan
                .peers
                .iter()
                .map(|a| {
                    (
                        a.object.metadata.name.clone().unwrap_or_default(),
                        a.adopted,
                    )
                })
                .collect();
            let want: Vec<(String, bool)> =
                case.apply.iter().map(|(ip, a)| (name(ip), *a)).collect();
            assert_eq!(applied, want, "{}", case.what);
            assert_eq!(plan.unchanged.len(), case.unchanged, "{}", case.what);
            let deleted: Vec<String> = plan
                .delete_peers
                .iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            let want_deleted: Vec<String> = case.delete.iter().map(|ip| name(ip)).collect();
            assert_eq!(deleted, want_deleted, "{}", case.what);
            assert_eq!(
                plan.blocked.len(),
                case.blocked,
                "{}: {:?}",
                case.what,
                plan.blocked
            );
            assert_eq!(plan.create_peers.len(), case.create, "{}", case.what);
            for applied in plan
                .peers
                .iter()
                .map(|a| &a.object)
                .chain(&plan.create_peers)
            {
                assert_eq!(applied.metadata.labels, Some(ours.clone()), "{}", case.what);
            }
        }
    }

    #[test]
    fn node_settings() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        const ASN: &str = AS_NUMBER_ANNOTATION;
        const RR: &str = RR_CLUSTER_ID_ANNOTATION;
        const IP: &str = IPV4_ADDRESS_ANNOTATION;
        type Pairs = &'static [(&'static str, &'static str)];
        // (what, wanted, on the node, applied, leftover after that apply)
        type Case = (
            &'static str,
            Pairs,
            Pairs,
            Option<Pairs>,
            &'static [&'static str],
        );
        let cases: [Case; 6] = [
            (
                "already set: nothing",
                &[(ASN, "65001")],
                &[(ASN, "65001")],
                None,
                &[],
            ),
            (
                "a new value is applied",
                &[(ASN, "65002")],
                &[(ASN, "65001")],
                Some(&[(ASN, "65002")]),
                &[],
            ),
            (
                "an unwanted key: an empty apply, then removed",
                &[],
                &[(RR, "1.1.1.1")],
                Some(&[]),
                &[RR],
            ),
            (
                "the BGP address the unit no longer sets keeps its value",
                &[],
                &[(IP, "10.0.0.5/24")],
                None,
                &[],
            ),
            (
                "unregistered keys of others are not the charm's",
                &[],
                &[("other", "x")],
                None,
                &[],
            ),
            (
                "several at once",
                &[(ASN, "65001"), (IP, "10.0.0.5/24")],
                &[(RR, "1.1.1.1")],
                Some(&[(ASN, "65001"), (IP, "10.0.0.5/24")]),
                &[RR],
            ),
        ];
        for (what, wanted, current, apply, leftover) in cases {
            let mut d = desired(None, &[]);
            d.node.annotations = map(wanted);
            let current = map(current);
            let observed = Observed {
                node: Some(Some(current.clone())),
                ..Observed::default()
            };
            let plan = plan(&d, &observed);
            let node = plan.node.unwrap_or_else(|| panic!("{what}: no node plan"));
            assert_eq!(node.apply, apply.map(map), "{what}");
            let leftover: Vec<String> = leftover.iter().map(|k| k.to_string()).collect();
            assert_eq!(leftover_node_keys(&node.want, &current), leftover, "{what}");
        }
        let observed = Observed {
            node: Some(None),
            ..Observed::default()
        };
        let plan = plan(&desired(None, &[]), &observed);
        assert_eq!(plan.node, None);
        assert_eq!(plan.waiting, vec![waiting_for_node(NODE)]);
    }

    #[test]
    fn bgp_configuration_is_applied_only_when_it_differs() {
        let mut d = desired(None, &[]);
        let want = BGPConfiguration::new(
            "default",
            BGPConfigurationSpec {
                as_number: Some(64512),
                node_to_node_mesh_enabled: Some(true),
                ..BGPConfigurationSpec::default()
            },
        );
        d.bgp_configuration = Some(want.clone());
        let with = |stored: Option<BGPConfiguration>| {
            plan(
                &d,
                &Observed {
                    bgp_configuration: Some(stored),
                    ..Observed::default()
                },
            )
        };
        assert!(with(None).bgp_configuration.is_some(), "none yet");
        let mut same = want.clone();
        same.spec.log_severity_screen = Some("Info".into());
        assert!(
            with(Some(same)).bgp_configuration.is_none(),
            "an admin's field is not ours"
        );
        let mut off = want.clone();
        off.spec.node_to_node_mesh_enabled = Some(false);
        assert!(
            with(Some(off)).bgp_configuration.is_some(),
            "drift is corrected"
        );
        let mut owned_more = want.clone();
        owned_more.metadata.managed_fields = serde_json::from_value(json!([{
            "manager": "calico-charm", "operation": "Apply", "apiVersion": "crd.projectcalico.org/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:asNumber": {}, "f:nodeToNodeMeshEnabled": {}, "f:serviceClusterIPs": {}}}
        }]))
        .ok();
        assert!(
            with(Some(owned_more)).bgp_configuration.is_some(),
            "a field the charm set and no longer sets is dropped by applying"
        );
    }

    #[test]
    fn workloads_that_match_are_skipped_and_stale_ones_pruned() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let config_map = |name: &str, value: &str| ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("kube-system".into()),
                labels: Some(charm_labels(None)),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("k".to_string(), value.to_string())])),
            ..Default::default()
        };
        let stored = |cm: ConfigMap| ObjectRef {
            kind: "ConfigMap".into(),
            namespace: "kube-system".into(),
            name: cm.metadata.name.clone().unwrap_or_default(),
            uid: Some("u".into()),
            resource_version: Some("1".into()),
            labels: charm_labels(None),
            live: serde_json::to_value(&cm).unwrap_or_default(),
        };
        let workloads = Workloads {
            config_maps: vec![config_map("calico-config", "v")],
            ..Workloads::default()
        };
        let all = &WorkloadKind::ALL;
        let same = plan_workloads(&workloads, &[stored(config_map("calico-config", "v"))], all);
        assert!(same.apply.is_empty() && same.delete.is_empty());
        assert_eq!(same.unchanged, vec!["ConfigMap/calico-config"]);
        let drifted = plan_workloads(&workloads, &[stored(config_map("calico-config", "x"))], all);
        assert_eq!(drifted.apply.len(), 1);
        assert_eq!(drifted.apply[0].before.as_deref(), Some("1"));
        let stale = plan_workloads(
            &workloads,
            &[
                stored(config_map("calico-config", "v")),
                stored(config_map("old", "v")),
            ],
            all,
        );
        assert_eq!(stale.delete.len(), 1);
        assert_eq!(stale.delete[0].name, "old");
        let none = plan_workloads(
            &Workloads::default(),
            &[stored(config_map("old", "v"))],
            all,
        );
        assert!(none.delete.is_empty(), "nothing rendered prunes nothing");
        // A kind this hook did not list (its turn is later): neither applied (though nothing
        // of it was seen) nor pruned; the kinds listed are planned as always.
        let unlisted = plan_workloads(&workloads, &[], &[WorkloadKind::DaemonSet]);
        assert!(unlisted.apply.is_empty() && unlisted.delete.is_empty());
        let with_a_daemon_set = Workloads {
            daemon_sets: vec![k8s_openapi::api::apps::v1::DaemonSet {
                metadata: kube::api::ObjectMeta {
                    name: Some("calico-node".into()),
                    namespace: Some("kube-system".into()),
                    ..Default::default()
                },
                ..Default::default()
            }],
            ..workloads.clone()
        };
        let only_ds = plan_workloads(
            &with_a_daemon_set,
            &[stored(config_map("old", "v"))],
            &[WorkloadKind::DaemonSet],
        );
        assert_eq!(only_ds.apply.len(), 1, "the missing DaemonSet is applied");
        assert_eq!(only_ds.apply[0].object.kind(), WorkloadKind::DaemonSet);
        assert!(
            only_ds.delete.is_empty(),
            "ConfigMaps not listed: none pruned"
        );
    }
}
