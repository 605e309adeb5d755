//! Arbitrary bytes as `calico-charm topology`'s two inputs, `OPTIONS\0UNITS`: an option file
//! (merged over the defaults, as `juju config calico --file` takes it; empty means the
//! defaults) and a units file (`[{unit, address, node-name}]`, which is also the shape of
//! the facts the leader gathers from the peer relation). For a valid configuration and a
//! usable units list, the topology is computed and checked.
#![no_main]

use std::collections::BTreeSet;

use calico_charm::config;
use calico_charm::config::options;
use calico_charm::topology::{self, Severity, Topology, UnitInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (options_text, units_text) = text.split_once('\0').unwrap_or(("", text));
    let options_text = if options_text.trim().is_empty() {
        "{}"
    } else {
        options_text
    };
    let Ok(merged) = options::merge_user_file(options_text) else {
        return;
    };
    if !merged.errors.is_empty() {
        return;
    }
    let Ok(validated) = config::validate(&merged.raw) else {
        return;
    };
    let units = match topology::parse_units(units_text) {
        Ok(units) => units,
        Err(e) => {
            assert_one_line(&e.to_string());
            return;
        }
    };
    match topology::topology(&validated.config, &units) {
        Ok(t) => check(&t, &units),
        Err(e) => assert_one_line(&e.to_string()),
    }
});

fn assert_one_line(message: &str) {
    assert!(!message.is_empty());
    assert!(!message.contains('\n'), "{message:?}");
}

/// What holds for every topology: one node per unit; problems and reach name only units of
/// the input; kinds are kebab-case; the exit decision agrees with the severities; the JSON
/// is one object with the documented keys, and the text names every unit.
fn check(t: &Topology, units: &[UnitInput]) {
    let names: BTreeSet<&str> = units.iter().map(|u| u.unit.as_str()).collect();
    assert_eq!(t.nodes.len(), units.len());
    for node in &t.nodes {
        assert!(names.contains(node.unit.as_str()));
        for s in &node.sessions {
            assert_ne!(s.peer, node.address, "a node never peers with itself");
            if let Some(peer) = &s.peer_unit {
                assert!(names.contains(peer.as_str()));
            }
        }
    }
    for r in &t.reach {
        assert_ne!(r.from, r.to);
        assert!(names.contains(r.from.as_str()) && names.contains(r.to.as_str()));
    }
    for p in &t.problems {
        assert!(!p.kind.is_empty());
        assert!(
            p.kind.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{}",
            p.kind
        );
        assert!(!p.message.is_empty());
        for u in &p.units {
            assert!(names.contains(u.as_str()), "{u} in {p:?}");
        }
    }
    assert_eq!(
        t.has_errors(),
        t.problems.iter().any(|p| p.severity == Severity::Error)
    );
    for u in &names {
        if t.cut_off(u) {
            assert!(t.has_errors());
        }
    }
    let json = serde_json::to_value(t).expect("serialises");
    let object = json.as_object().expect("one object");
    for key in ["nodes", "reach", "problems"] {
        assert!(object.get(key).is_some_and(|v| v.is_array()), "{key}");
    }
    let text = topology::render_text(t);
    for u in &names {
        assert!(text.contains(u), "{u} missing from the text");
    }
}
