//! The `calico` peer relation: every unit publishes its BGP facts, the leader computes the
//! topology of all units ([`crate::topology`]) on every hook, logs it at debug level and
//! publishes each unit's problems in the application data; every unit shows its own.
//!
//! Unit data (strings): `node-name`, `address` (`IP/PREFIX`, the prefix from `network-get
//! cni`), `as` (the effective AS), `cluster-id` (absent when not a route reflector: Juju deletes
//! a key set to an empty value).
//! Application data: `topology-problems`, a JSON map from unit name to that unit's problems.
//!
//! Also the `topology` and `bgp-status` actions.

use std::collections::BTreeMap;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::config::CharmConfig;
use crate::juju::{HookTools, ToolError};
use crate::render::UnitFacts;
use crate::status::{StatusKind, UnitStatus};
use crate::topology::{self, Severity, Topology, UnitInput};

/// The peer endpoint (metadata.yaml `peers: calico`).
pub const PEER_ENDPOINT: &str = "calico";
/// The application-data key holding every unit's problems.
pub const PROBLEMS_KEY: &str = "topology-problems";

/// One problem as a unit sees it (published by the leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitProblem {
    pub kind: String,
    pub severity: String,
    pub message: String,
    /// This unit is cut off from the others (no session, or routes that reach no one).
    #[serde(default)]
    pub cut_off: bool,
}

/// What the peer relation said this hook.
#[derive(Clone, Debug, Default)]
pub struct Bgp {
    /// The peer relation, when there is one.
    pub relation: Option<String>,
    /// This unit's problems (from the leader's computation).
    pub problems: Vec<UnitProblem>,
    /// The whole topology, when this unit computed it (the leader).
    pub topology: Option<Topology>,
}

/// This unit's address with its subnet's prefix (from `network-get cni`, see
/// [`UnitFacts::with_prefix`]), else a host prefix.
pub fn bind_network(facts: &UnitFacts) -> IpNetwork {
    facts
        .address_prefix
        .and_then(|p| IpNetwork::new(facts.address, p).ok())
        .unwrap_or_else(|| IpNetwork::from(facts.address))
}

/// The settings this unit publishes.
pub fn own_settings(
    config: &CharmConfig,
    facts: &UnitFacts,
    network: IpNetwork,
) -> Vec<(&'static str, String)> {
    let asn = crate::render::node_as_number(config, facts).unwrap_or(config.global_as_number);
    let cluster = config
        .route_reflector_cluster_ids
        .get(&facts.unit_id)
        .map(ToString::to_string)
        .unwrap_or_default();
    vec![
        ("node-name", facts.node_name.clone()),
        ("address", network.to_string()),
        ("as", asn.to_string()),
        ("cluster-id", cluster),
    ]
}

/// Every unit that published usable facts on `rid`, this one first.
pub fn gather_units(
    tools: &impl HookTools,
    rid: &str,
    me: UnitInput,
) -> Result<Vec<UnitInput>, ToolError> {
    let mut units = vec![me];
    for unit in tools.relation_list(rid)? {
        let bag = tools.relation_get(rid, &unit)?;
        let node = bag.get("node-name").map(|s| s.trim().to_string());
        let address = bag
            .get("address")
            .and_then(|a| topology::parse_address(a).ok());
        match (node, address) {
            (Some(node_name), Some(address)) if !node_name.is_empty() => units.push(UnitInput {
                unit,
                address,
                node_name,
            }),
            _ => tracing::debug!("{unit} has not published its BGP facts on {rid} yet"),
        }
    }
    Ok(units)
}

/// Each unit's problems, for the application data.
pub fn problems_by_unit(t: &Topology) -> BTreeMap<String, Vec<UnitProblem>> {
    let mut out: BTreeMap<String, Vec<UnitProblem>> = BTreeMap::new();
    for node in &t.nodes {
        let list: Vec<UnitProblem> = t
            .problems_of(&node.unit)
            .map(|p| UnitProblem {
                kind: p.kind.to_string(),
                severity: match p.severity {
                    Severity::Error => "error".into(),
                    Severity::Warning => "warning".into(),
                },
                message: p.message.clone(),
                cut_off: t.cut_off(&node.unit)
                    && p.units.first() == Some(&node.unit)
                    && matches!(
                        p.kind,
                        "isolated-node" | "node-cut-off" | "routes-reach-no-one"
                    ),
            })
            .collect();
        if !list.is_empty() {
            out.insert(node.unit.clone(), list);
        }
    }
    out
}

/// Publish this unit's facts; on the leader compute the topology and publish every unit's
/// problems; read this unit's.
pub fn sync(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
) -> Result<Bgp, ToolError> {
    let Some(rid) = tools.relation_ids(PEER_ENDPOINT)?.into_iter().next() else {
        return Ok(Bgp::default());
    };
    let network = bind_network(facts);
    let settings = own_settings(config, facts, network);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tools.relation_set(&rid, &pairs)?;
    let mut bgp = Bgp {
        relation: Some(rid.clone()),
        ..Bgp::default()
    };
    if facts.leader {
        let me = UnitInput {
            unit: facts.unit_name.clone(),
            address: network,
            node_name: facts.node_name.clone(),
        };
        let units = gather_units(tools, &rid, me)?;
        match topology::topology(config, &units) {
            Ok(t) => {
                for line in topology::render_text(&t).lines() {
                    tracing::debug!("topology: {line}");
                }
                let by_unit = problems_by_unit(&t);
                let json = serde_json::to_string(&by_unit).unwrap_or_else(|_| "{}".into());
                tools.relation_set_app(&rid, &[(PROBLEMS_KEY, &json)])?;
                bgp.problems = by_unit.get(&facts.unit_name).cloned().unwrap_or_default();
                bgp.topology = Some(t);
            }
            Err(e) => tracing::warn!("topology: cannot compute it from the units' facts: {e}"),
        }
    } else {
        let app = facts.unit_name.split('/').next().unwrap_or_default();
        let bag = tools.relation_get_app(&rid, app)?;
        if let Some(json) = bag.get(PROBLEMS_KEY) {
            match serde_json::from_str::<BTreeMap<String, Vec<UnitProblem>>>(json) {
                Ok(mut by_unit) => {
                    bgp.problems = by_unit.remove(&facts.unit_name).unwrap_or_default();
                }
                Err(e) => tracing::warn!("{PROBLEMS_KEY} from the leader is unreadable: {e}"),
            }
        }
    }
    for p in &bgp.problems {
        if p.severity == "error" {
            tracing::warn!("BGP {}: {}", p.kind, p.message);
        } else {
            tracing::info!("BGP {}: {}", p.kind, p.message);
        }
    }
    Ok(bgp)
}

/// The head of a problem message (up to its first `: `), for a status line.
fn head(message: &str) -> &str {
    message.split(": ").next().unwrap_or(message)
}

/// The unit's status with its BGP problems: `blocked` when cut off (unless already blocked
/// for another cause), a suffix naming the first problem otherwise.
pub fn status_with(status: UnitStatus, bgp: &Bgp) -> UnitStatus {
    if let Some(p) = bgp.problems.iter().find(|p| p.cut_off) {
        if status.kind == StatusKind::Blocked {
            return status;
        }
        return UnitStatus::new(
            StatusKind::Blocked,
            format!("BGP: {} ({})", head(&p.message), p.kind),
        );
    }
    let Some(first) = bgp.problems.first() else {
        return status;
    };
    if status.kind != StatusKind::Active {
        return status;
    }
    let more = match bgp.problems.len() - 1 {
        0 => String::new(),
        n => format!(" +{n} more"),
    };
    let what = if first.severity == "error" {
        "BGP problem"
    } else {
        "BGP warning"
    };
    let note = format!("{what}: {}{more}, see the topology action", first.kind);
    let message = if status.message == crate::status::READY {
        format!("{} ({note})", status.message)
    } else {
        format!("{}; {note}", status.message)
    };
    UnitStatus::new(status.kind, message)
}

/// The topology of every unit on the peer relation, computed here.
fn local_topology(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
) -> Result<Result<Topology, String>, ToolError> {
    let network = bind_network(facts);
    let me = UnitInput {
        unit: facts.unit_name.clone(),
        address: network,
        node_name: facts.node_name.clone(),
    };
    let units = match tools.relation_ids(PEER_ENDPOINT)?.into_iter().next() {
        Some(rid) => gather_units(tools, &rid, me)?,
        None => vec![me],
    };
    Ok(topology::topology(config, &units).map_err(|e| e.to_string()))
}

/// `topology` (leader): the whole model as text and JSON.
pub fn action_topology(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
) -> Result<(), ToolError> {
    if !facts.leader {
        return tools.action_fail(&format!(
            "{} is not the leader: run the topology action on the leader",
            facts.unit_name
        ));
    }
    match local_topology(tools, config, facts)? {
        Ok(t) => {
            let text = topology::render_text(&t);
            let json = serde_json::to_string(&t).unwrap_or_default();
            let errors = t.has_errors().to_string();
            tools.action_set(&[("text", &text), ("json", &json), ("errors", &errors)])
        }
        Err(e) => tools.action_fail(&format!("cannot compute the topology: {e}")),
    }
}

/// `bgp-status`: this unit's sessions, expected (the model) and actual.
pub fn action_bgp_status(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
) -> Result<(), ToolError> {
    let t = match local_topology(tools, config, facts)? {
        Ok(t) => t,
        Err(e) => return tools.action_fail(&format!("cannot compute the topology: {e}")),
    };
    let Some(node) = t.nodes.iter().find(|n| n.unit == facts.unit_name) else {
        return tools.action_fail("this unit is not in its own topology");
    };
    let mut expected = Vec::new();
    for s in &node.sessions {
        let who = s.peer_unit.clone().unwrap_or_else(|| "external".into());
        expected.push(format!(
            "{} {} AS {} {} {}{}{}",
            s.bird_name(),
            s.peer,
            s.peer_as,
            if s.ibgp { "iBGP" } else { "eBGP" },
            who,
            if s.rr_client { " rr-client" } else { "" },
            if s.passive { " passive" } else { "" },
        ));
    }
    if expected.is_empty() {
        expected.push("no BGP sessions".to_string());
    }
    let expected = expected.join("\n");
    let version = config.calico_node_image.version().to_string();
    let actual = if crate::workloads::version::CalicoVersion::parse_tag(&version)
        .is_some_and(|v| v.at_least(crate::workloads::version::CalicoVersion::new(3, 22, 0)))
    {
        "unavailable: reading CalicoNodeStatus is not implemented yet".to_string()
    } else {
        format!("unavailable: calico-node {version} has no CalicoNodeStatus (Calico 3.22 or later)")
    };
    let problems: Vec<String> = t
        .problems_of(&facts.unit_name)
        .map(|p| format!("{} {}: {}", severity_word(p.severity), p.kind, p.message))
        .collect();
    let problems = if problems.is_empty() {
        "none".to_string()
    } else {
        problems.join("\n")
    };
    tools.action_set(&[
        ("expected", &expected),
        ("actual", &actual),
        ("problems", &problems),
    ])
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: &str, severity: &str, cut_off: bool) -> UnitProblem {
        UnitProblem {
            kind: kind.into(),
            severity: severity.into(),
            message: format!("calico/2 (10.0.0.4) has no BGP session at all: {kind}"),
            cut_off,
        }
    }

    #[test]
    fn cut_off_blocks_and_warnings_are_a_suffix() {
        let ready = UnitStatus::new(StatusKind::Active, "Ready");
        let bgp = Bgp {
            problems: vec![problem("isolated-node", "error", true)],
            ..Bgp::default()
        };
        assert_eq!(
            status_with(ready.clone(), &bgp),
            UnitStatus::new(
                StatusKind::Blocked,
                "BGP: calico/2 (10.0.0.4) has no BGP session at all (isolated-node)"
            )
        );
        let bgp = Bgp {
            problems: vec![
                problem("rr-cluster-id-zero", "warning", false),
                problem("duplicate-session", "warning", false),
            ],
            ..Bgp::default()
        };
        assert_eq!(
            status_with(ready, &bgp).message,
            "Ready (BGP warning: rr-cluster-id-zero +1 more, see the topology action)"
        );
        let waiting = UnitStatus::new(StatusKind::Waiting, "Waiting for Calico CRDs");
        assert_eq!(status_with(waiting.clone(), &bgp), waiting);
        let blocked = UnitStatus::new(StatusKind::Blocked, "Kubernetes API denied access");
        let bgp = Bgp {
            problems: vec![problem("isolated-node", "error", true)],
            ..Bgp::default()
        };
        assert_eq!(status_with(blocked.clone(), &bgp), blocked);
    }
}
