//! `--format text`: one block per node (AS, role, sessions), the external routers, reach,
//! then the problems.

use std::fmt::Write;

use super::{SessionState, Topology};

pub fn render_text(t: &Topology) -> String {
    let mut s = String::new();
    for node in &t.nodes {
        let role = match &node.route_reflector_cluster_id {
            Some(id) => format!("route reflector, cluster ID {id}"),
            None => "node".to_string(),
        };
        let _ = writeln!(
            s,
            "{} {} {}/{} AS {} ({role})",
            node.unit, node.node, node.address, node.prefix, node.as_number
        );
        if node.sessions.is_empty() {
            let _ = writeln!(s, "  no BGP sessions");
        }
        for x in &node.sessions {
            let mut flags = vec![if x.ibgp { "iBGP" } else { "eBGP" }];
            if x.rr_client {
                flags.push("rr-client");
            }
            if x.passive {
                flags.push("passive");
            }
            let who = x
                .peer_unit
                .clone()
                .unwrap_or_else(|| "external".to_string());
            let state = match x.state {
                SessionState::Matched => "",
                SessionState::External => "",
                SessionState::AsMismatch => "  [AS mismatch: never established]",
                SessionState::OneSided => "  [not configured on the peer: never established]",
                SessionState::BothPassive => "  [both sides passive: never established]",
            };
            let _ = writeln!(
                s,
                "  {:<20} {:<16} AS {:<10} {:<4} {:<24} {who}{state}",
                x.bird_name(),
                x.peer,
                x.peer_as,
                x.source.as_str(),
                flags.join(" "),
            );
        }
    }
    if !t.external.is_empty() {
        let _ = writeln!(s, "external routers:");
        for e in &t.external {
            let _ = writeln!(s, "  {} AS {}", e.address, e.as_number);
            for m in &e.must {
                let _ = writeln!(s, "    must {m}");
            }
        }
    }
    let total = t.reach.len();
    let ok = t.reach.iter().filter(|r| r.reached).count();
    let _ = writeln!(s, "reach: {ok} of {total} node pairs");
    for r in t.reach.iter().filter(|r| !r.reached) {
        let _ = writeln!(s, "  {} -> {}: not reached", r.from, r.to);
    }
    if t.problems.is_empty() {
        let _ = writeln!(s, "problems: none");
    } else {
        let _ = writeln!(s, "problems:");
        for p in &t.problems {
            let sev = match p.severity {
                super::Severity::Error => "error",
                super::Severity::Warning => "warning",
            };
            let _ = writeln!(
                s,
                "  {sev} {} [{}] ({}): {}",
                p.kind,
                p.units.join(", "),
                p.options.join(", "),
                p.message
            );
        }
    }
    s
}
