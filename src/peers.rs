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
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::config::CharmConfig;
use crate::juju::{HookTools, ToolError};
use crate::problems::Cause;
use crate::status::{Shown, StatusKind};
use crate::topology::{self, Severity, Topology, UnitInput};
use crate::unit::UnitFacts;

/// The peer endpoint (metadata.yaml `peers: calico`).
pub(crate) const PEER_ENDPOINT: &str = "calico";
/// The application-data key holding every unit's problems.
pub(crate) const PROBLEMS_KEY: &str = "topology-problems";
/// The application-data key holding every unit's expected session peers.
pub(crate) const SESSIONS_KEY: &str = "topology-sessions";

/// One problem as a unit sees it (published by the leader).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnitProblem {
    pub kind: String,
    pub severity: String,
    pub message: String,
    /// This unit is cut off from the others (no session, or routes that reach no one).
    #[serde(default)]
    pub cut_off: bool,
}

/// What the peer relation said this hook.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bgp {
    /// This unit's problems (from the leader's computation).
    pub problems: Vec<UnitProblem>,
    /// The whole topology, when this unit computed it (the leader).
    pub topology: Option<Topology>,
    /// The peers of the sessions the model expects this unit's calico-node to have: `None`
    /// when the leader has not published them (yet, or not for this unit: see
    /// [`bounded_sessions_json`]).
    pub expected_peers: Option<Vec<IpAddr>>,
}

/// This unit's address with its subnet's prefix (from `network-get cni`, see
/// [`UnitFacts::with_prefix`]), else a host prefix.
pub(crate) fn bind_network(facts: &UnitFacts) -> IpNetwork {
    facts
        .address_prefix
        .and_then(|p| IpNetwork::new(facts.address, p).ok())
        .unwrap_or_else(|| IpNetwork::from(facts.address))
}

/// The settings this unit publishes.
pub(crate) fn own_settings(
    config: &CharmConfig,
    facts: &UnitFacts,
    network: IpNetwork,
) -> Vec<(&'static str, String)> {
    let asn = crate::config::node_as_number(config, facts).unwrap_or(config.global_as_number);
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
pub(crate) fn gather_units(
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
pub(crate) fn problems_by_unit(t: &Topology) -> BTreeMap<String, Vec<UnitProblem>> {
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

/// The largest `topology-problems` value published (one hook-tool argument must stay well
/// below the kernel's 128 KiB limit).
pub(crate) const MAX_PROBLEMS_JSON: usize = 96 * 1024;
/// Characters of each message kept in the application data.
const MAX_PUBLISHED_MESSAGE: usize = 300;

/// `topology-problems` as JSON: messages shortened, and units left out (logged) once the value
/// would pass [`MAX_PROBLEMS_JSON`]; each unit's cut-off problem comes first.
pub(crate) fn bounded_problems_json(by_unit: &BTreeMap<String, Vec<UnitProblem>>) -> String {
    let mut out: BTreeMap<&str, Vec<UnitProblem>> = BTreeMap::new();
    let mut size = 2;
    let mut left_out = 0;
    for (unit, list) in by_unit {
        let mut list: Vec<UnitProblem> = list
            .iter()
            .map(|p| UnitProblem {
                message: p.message.chars().take(MAX_PUBLISHED_MESSAGE).collect(),
                ..p.clone()
            })
            .collect();
        list.sort_by_key(|p| !p.cut_off);
        let entry = serde_json::to_string(&list).map(|j| j.len()).unwrap_or(0) + unit.len() + 4;
        if size + entry > MAX_PROBLEMS_JSON {
            left_out += 1;
            continue;
        }
        size += entry;
        out.insert(unit, list);
    }
    if left_out > 0 {
        tracing::warn!(
            "{PROBLEMS_KEY}: the problems of {left_out} units are left out (too large for the application data); run the topology action"
        );
    }
    serde_json::to_string(&out).unwrap_or_else(|_| "{}".into())
}

/// Each unit's expected session peers, in the model's order.
pub(crate) fn sessions_by_unit(t: &Topology) -> BTreeMap<String, Vec<IpAddr>> {
    t.nodes
        .iter()
        .map(|n| (n.unit.clone(), n.sessions.iter().map(|s| s.peer).collect()))
        .collect()
}

/// `topology-sessions` as JSON, units left out (logged; they then judge calico-node's report
/// alone) once the value would pass [`MAX_PROBLEMS_JSON`]. A full mesh of about 300 IPv4
/// nodes fits.
pub(crate) fn bounded_sessions_json(by_unit: &BTreeMap<String, Vec<IpAddr>>) -> String {
    let mut out: BTreeMap<&str, &Vec<IpAddr>> = BTreeMap::new();
    let mut size = 2;
    let mut left_out = 0;
    for (unit, peers) in by_unit {
        let entry = serde_json::to_string(peers).map(|j| j.len()).unwrap_or(0) + unit.len() + 4;
        if size + entry > MAX_PROBLEMS_JSON {
            left_out += 1;
            continue;
        }
        size += entry;
        out.insert(unit, peers);
    }
    if left_out > 0 {
        tracing::info!(
            "{SESSIONS_KEY}: the expected sessions of {left_out} units are left out (too large \
             for the application data); those units judge calico-node's report alone"
        );
    }
    serde_json::to_string(&out).unwrap_or_else(|_| "{}".into())
}

/// Publish this unit's facts on the peer relation `relation` (looked up once per hook;
/// `None`: there is none yet); on the leader compute the topology and publish every unit's
/// problems; read this unit's.
pub(crate) fn sync_on(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
    relation: Option<&str>,
) -> Result<Bgp, ToolError> {
    let Some(rid) = relation.map(str::to_string) else {
        return Ok(Bgp::default());
    };
    let network = bind_network(facts);
    let settings = own_settings(config, facts, network);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tools.relation_set(&rid, &pairs)?;
    let mut bgp = Bgp::default();
    if facts.leader {
        let me = UnitInput {
            unit: facts.unit_name.clone(),
            address: network,
            node_name: facts.node_name.clone(),
        };
        let units = gather_units(tools, &rid, me)?;
        match topology::topology(config, &units) {
            Ok(t) => {
                log_topology(&t);
                let by_unit = problems_by_unit(&t);
                let json = bounded_problems_json(&by_unit);
                let sessions = sessions_by_unit(&t);
                let sessions_json = bounded_sessions_json(&sessions);
                tools.relation_set_app(
                    &rid,
                    &[(PROBLEMS_KEY, &json), (SESSIONS_KEY, &sessions_json)],
                )?;
                bgp.problems = by_unit.get(&facts.unit_name).cloned().unwrap_or_default();
                bgp.expected_peers = sessions.get(&facts.unit_name).cloned();
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
        if let Some(json) = bag.get(SESSIONS_KEY) {
            match serde_json::from_str::<BTreeMap<String, Vec<IpAddr>>>(json) {
                Ok(mut by_unit) => bgp.expected_peers = by_unit.remove(&facts.unit_name),
                Err(e) => tracing::warn!("{SESSIONS_KEY} from the leader is unreadable: {e}"),
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

/// At most this many debug events carry the topology's text (each juju-log call is a
/// process; a large cluster's text runs to megabytes): the `topology` action has it all.
const MAX_TOPOLOGY_LOG_EVENTS: usize = 8;
/// Bytes of text per event, below the log layer's line cap.
const TOPOLOGY_LOG_CHUNK: usize = 3800;

/// Log the topology at debug level: a summary, then the text in a few bounded events.
fn log_topology(t: &Topology) {
    let pairs = t.reach.len();
    let reached = t.reach.iter().filter(|r| r.reached).count();
    let errors = t
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    tracing::debug!(
        "topology: {} nodes, {reached} of {pairs} node pairs reached, {errors} errors, {} warnings",
        t.nodes.len(),
        t.problems.len() - errors
    );
    let text = topology::render_text(t);
    let mut chunk = String::new();
    let mut events = 0;
    for line in text.lines() {
        if chunk.len() + line.len() + 1 > TOPOLOGY_LOG_CHUNK && !chunk.is_empty() {
            tracing::debug!("topology:\n{chunk}");
            chunk.clear();
            events += 1;
            if events == MAX_TOPOLOGY_LOG_EVENTS {
                tracing::debug!("topology: the rest is not logged: run the topology action");
                return;
            }
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    if !chunk.is_empty() {
        tracing::debug!("topology:\n{chunk}");
    }
}

/// The head of a problem message (up to its first `: `), for a status line.
fn head(message: &str) -> &str {
    message.split(": ").next().unwrap_or(message)
}

/// The unit's status with its BGP problems: `blocked` when cut off (unless already blocked
/// for another cause), a suffix naming the first problem otherwise.
pub(crate) fn status_with(status: Shown, bgp: &Bgp) -> Shown {
    if let Some(p) = bgp.problems.iter().find(|p| p.cut_off) {
        if status.kind() == StatusKind::Blocked {
            return status;
        }
        return Shown::new(Cause::BgpCutOff {
            summary: head(&p.message).to_string(),
            kind: p.kind.clone(),
        });
    }
    let Some(first) = bgp.problems.first() else {
        return status;
    };
    status.with_note(Cause::BgpNote {
        error: first.severity == "error",
        kind: first.kind.clone(),
        more: bgp.problems.len() - 1,
    })
}

/// The largest action result value set (one hook-tool argument).
const MAX_ACTION_RESULT: usize = 96 * 1024;

/// The topology of every unit on the peer relation, computed here, with the units.
fn local_topology(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
) -> Result<Result<(Topology, Vec<UnitInput>), String>, ToolError> {
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
    Ok(topology::topology(config, &units)
        .map(|t| (t, units))
        .map_err(|e| e.to_string()))
}

/// `topology` (leader): the whole model as text and JSON.
pub(crate) fn action_topology(
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
        Ok((t, units)) => {
            let units_yaml: String = units
                .iter()
                .map(|u| {
                    format!(
                        "- {{unit: {}, address: {}, node-name: {}}}\n",
                        u.unit, u.address, u.node_name
                    )
                })
                .collect();
            let too_big = |what: &str, len: usize| {
                format!(
                    "{what} is {len} bytes, too large for action results: save the units result \
                     as UNITS.yaml and run calico-charm topology --config FILE --units UNITS.yaml"
                )
            };
            let mut text = topology::render_text(&t);
            if text.len() > MAX_ACTION_RESULT {
                text = too_big("the text", text.len());
            }
            let mut json = serde_json::to_string(&t).unwrap_or_default();
            if json.len() > MAX_ACTION_RESULT {
                json = too_big("the JSON", json.len());
            }
            let errors = t.has_errors().to_string();
            tools.action_set(&[
                ("text", &text),
                ("json", &json),
                ("errors", &errors),
                ("units", &units_yaml),
            ])
        }
        Err(e) => tools.action_fail(&format!("cannot compute the topology: {e}")),
    }
}

/// `bgp-status`: this unit's sessions, expected (the model) and actual.
/// `report` is what calico-node reported in this node's `CalicoNodeStatus` (`None`: the
/// charm could not ask, e.g. no cluster; `Ok(None)`: no report yet).
pub(crate) fn action_bgp_status(
    tools: &impl HookTools,
    config: &CharmConfig,
    facts: &UnitFacts,
    report: Option<Result<Option<Vec<crate::nodestatus::Reported>>, String>>,
) -> Result<(), ToolError> {
    let t = match local_topology(tools, config, facts)? {
        Ok((t, _)) => t,
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
    let version = crate::render::workloads::node_version(config);
    let expected_peers: Vec<IpAddr> = node.sessions.iter().map(|s| s.peer).collect();
    let actual = if !crate::nodestatus::supported(version) {
        format!("unavailable: calico-node {version} has no CalicoNodeStatus (Calico 3.22 or later)")
    } else {
        match report {
            None => "unavailable: the Kubernetes API was not asked".to_string(),
            Some(Err(e)) => format!("unavailable: {e}"),
            Some(Ok(None)) => format!(
                "unavailable: calico-node has not reported on {} yet (CalicoNodeStatus/{})",
                facts.node_name, facts.node_name
            ),
            Some(Ok(Some(reported))) => {
                let mut lines: Vec<String> = reported
                    .iter()
                    .map(|r| {
                        let state = if r.state.is_empty() {
                            "unknown"
                        } else {
                            &r.state
                        };
                        format!("{} {state}", r.peer)
                    })
                    .collect();
                if lines.is_empty() {
                    lines.push("no BGP sessions".to_string());
                }
                let health = crate::nodestatus::compare(Some(&expected_peers), &reported);
                lines.push(health.message());
                lines.join("\n")
            }
        }
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
    fn published_problems_stay_bounded() {
        let mut by_unit = BTreeMap::new();
        for i in 0..2000 {
            let mut p = problem("routes-reach-some", "error", false);
            p.message = "x".repeat(5000);
            by_unit.insert(
                format!("calico/{i}"),
                vec![p, problem("isolated-node", "error", true)],
            );
        }
        let json = bounded_problems_json(&by_unit);
        assert!(json.len() <= MAX_PROBLEMS_JSON, "{}", json.len());
        let back: BTreeMap<String, Vec<UnitProblem>> = serde_json::from_str(&json).expect("json");
        assert!(back.len() > 100 && back.len() < 2000, "{}", back.len());
        let first = &back["calico/0"];
        assert!(first[0].cut_off, "the cut-off problem first");
        assert!(first[1].message.chars().count() <= MAX_PUBLISHED_MESSAGE);
    }

    #[test]
    fn cut_off_blocks_and_warnings_are_a_suffix() {
        let ready = Shown::new(Cause::Ready);
        let bgp = Bgp {
            problems: vec![problem("isolated-node", "error", true)],
            ..Bgp::default()
        };
        assert_eq!(
            status_with(ready.clone(), &bgp).unit_status(),
            crate::status::UnitStatus::new(
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
            status_with(ready, &bgp).unit_status().message,
            "Ready (BGP warning: rr-cluster-id-zero +1 more, see the topology action)"
        );
        let waiting = Shown::new(Cause::CrdsMissing);
        assert_eq!(status_with(waiting.clone(), &bgp), waiting);
        let blocked = Shown::new(Cause::Denied {
            datastore: "Kubernetes API".into(),
            cause: "forbidden".into(),
        });
        let bgp = Bgp {
            problems: vec![problem("isolated-node", "error", true)],
            ..Bgp::default()
        };
        assert_eq!(status_with(blocked.clone(), &bgp), blocked);
    }
}
