//! `calico-charm topology` run as the built binary against the documentation's worked
//! examples and their broken variants. Every expected result under tests/golden/topology was
//! written by hand from the rules (see tests/golden/topology/README.md).

use std::collections::BTreeMap;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_calico-charm");

fn golden(path: &str) -> String {
    format!("{}/tests/golden/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run calico-charm")
}

fn topology(config: &str, units: &str, format: &str) -> Output {
    run(&[
        "topology",
        "--config",
        &golden(config),
        "--units",
        &golden(units),
        "--format",
        format,
    ])
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// One session as the compact line of the expected files.
fn session_line(x: &Value) -> String {
    let mut words = vec![
        s(&x["peer"]),
        "as".into(),
        s(&x["peer_as"]),
        s(&x["source"]),
        if x["ibgp"] == Value::Bool(true) {
            "ibgp".into()
        } else {
            "ebgp".into()
        },
    ];
    if x["rr_client"] == Value::Bool(true) {
        words.push("rr-client".into());
    }
    if x["passive"] == Value::Bool(true) {
        words.push("passive".into());
    }
    words.push(match &x["peer_unit"] {
        Value::Null => "external".into(),
        u => s(u),
    });
    words.join(" ")
}

/// `must` sentences as the expected files' keywords.
fn must_words(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let l = s(l);
            if l.starts_with("peer as AS ") {
                "peer".to_string()
            } else if l.starts_with("reflect ") {
                "reflect".to_string()
            } else if l.starts_with("re-advertise ") {
                "re-advertise".to_string()
            } else if let Some(rest) = l.strip_prefix("exchange the pod routes with ") {
                let list = rest.split(" (").next().unwrap_or_default();
                format!("exchange {}", list.replace(", ", " "))
            } else if let Some(rest) = l.strip_prefix("route pod traffic for ") {
                let list = rest.split(" as its gateway").next().unwrap_or_default();
                format!("gateway {}", list.replace(", ", " "))
            } else {
                panic!("unexpected must line: {l}")
            }
        })
        .collect()
}

fn yaml_strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| match x {
                    serde_yaml::Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn yaml_scalar(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Null => "null".into(),
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Compare the JSON output with a compact, hand-written expectation.
fn check(config: &str, units: &str, expected: &str) {
    let out = topology(config, units, "json");
    let got = json_of(&out);
    let text = std::fs::read_to_string(golden(expected)).expect("expected file");
    let want: serde_yaml::Value = serde_yaml::from_str(&text).expect("expected yaml");
    let label = expected;
    assert_eq!(
        out.status.code(),
        want["exit"].as_i64().map(|c| c as i32),
        "{label}: exit code; stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly the keys (plus external).
    let keys: Vec<&String> = got.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["external", "nodes", "problems", "reach"], "{label}");

    // Nodes.
    let nodes = got["nodes"].as_array().expect("nodes");
    let want_nodes = want["nodes"].as_mapping().expect("nodes map");
    assert_eq!(nodes.len(), want_nodes.len(), "{label}: node count");
    for node in nodes {
        let unit = s(&node["unit"]);
        let w = &want["nodes"][unit.as_str()];
        assert_eq!(s(&node["as"]), yaml_scalar(&w["as"]), "{label}: {unit} AS");
        assert_eq!(
            s(&node["route_reflector_cluster_id"]),
            yaml_scalar(&w["cluster-id"]),
            "{label}: {unit} cluster ID"
        );
        let sessions: Vec<String> = node["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .map(session_line)
            .collect();
        assert_eq!(
            sessions,
            yaml_strings(&w["sessions"]),
            "{label}: {unit} sessions"
        );
    }

    // Reach: every ordered pair once; reached exactly as listed, with these routers.
    let reach = got["reach"].as_array().expect("reach");
    assert_eq!(
        reach.len(),
        nodes.len() * (nodes.len() - 1),
        "{label}: reach pairs"
    );
    for r in reach {
        let (from, to) = (s(&r["from"]), s(&r["to"]));
        let listed = &want["reach"][from.as_str()][to.as_str()];
        let via: Vec<String> = r["via_external"]
            .as_array()
            .expect("via")
            .iter()
            .map(s)
            .collect();
        if listed.is_null() {
            assert_eq!(
                r["reached"],
                Value::Bool(false),
                "{label}: {from} -> {to} should not be reached"
            );
            assert!(via.is_empty(), "{label}: {from} -> {to}: {via:?}");
        } else {
            assert_eq!(
                r["reached"],
                Value::Bool(true),
                "{label}: {from} -> {to} should be reached"
            );
            assert_eq!(via, yaml_strings(listed), "{label}: {from} -> {to} via");
        }
    }

    // External routers.
    let ext = got["external"].as_array().expect("external");
    let want_ext = want["external"].as_mapping().cloned().unwrap_or_default();
    assert_eq!(
        ext.len(),
        want_ext.len(),
        "{label}: external routers {ext:?}"
    );
    for e in ext {
        let addr = s(&e["address"]);
        let w = &want["external"][addr.as_str()];
        assert_eq!(s(&e["as"]), yaml_scalar(&w["as"]), "{label}: {addr} AS");
        let peers: Vec<String> = e["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| s(&p["unit"]))
            .collect();
        assert_eq!(peers, yaml_strings(&w["peers"]), "{label}: {addr} peers");
        assert_eq!(
            must_words(e["must"].as_array().expect("must")),
            yaml_strings(&w["must"]),
            "{label}: {addr} must"
        );
    }

    // Problems, in order, each with the words its message must contain.
    let problems = got["problems"].as_array().expect("problems");
    let want_problems = want["problems"].as_sequence().cloned().unwrap_or_default();
    let heads: Vec<String> = problems
        .iter()
        .map(|p| {
            let list = |k: &str| {
                p[k].as_array()
                    .expect("list")
                    .iter()
                    .map(s)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{} {} [{}] ({})",
                s(&p["severity"]),
                s(&p["kind"]),
                list("units"),
                list("options")
            )
        })
        .collect();
    let want_heads: Vec<String> = want_problems
        .iter()
        .map(|p| match p {
            serde_yaml::Value::Mapping(m) => m.keys().next().map(yaml_scalar).unwrap_or_default(),
            other => yaml_scalar(other),
        })
        .collect();
    assert_eq!(heads, want_heads, "{label}: problems");
    for (p, w) in problems.iter().zip(&want_problems) {
        let message = s(&p["message"]);
        if let serde_yaml::Value::Mapping(m) = w {
            for words in m.values().flat_map(yaml_strings) {
                assert!(
                    message.contains(&words),
                    "{label}: {:?} lacks {words:?}: {message}",
                    p["kind"]
                );
            }
        }
        assert!(!message.contains('\n'), "{label}: one line");
    }
}

#[test]
fn default_mesh_is_exactly_the_hand_written_json() {
    let out = topology(
        "topology/default-mesh.yaml",
        "topology/default-mesh.units.yaml",
        "json",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(golden("topology/default-mesh.expected.json")).expect("golden"),
    )
    .expect("golden json");
    assert_eq!(json_of(&out), want);
}

#[test]
fn default_mesh_with_a_reflector_cut_off() {
    check(
        "topology/default-mesh-rr-cut-off.yaml",
        "topology/default-mesh.units.yaml",
        "topology/default-mesh-rr-cut-off.expected.yaml",
    );
}

#[test]
fn multiple_subnets() {
    check(
        "multiple-subnets.yaml",
        "topology/multiple-subnets.units.yaml",
        "topology/multiple-subnets.expected.yaml",
    );
}

#[test]
fn multiple_subnets_with_the_mesh_off_and_a_subnet_forgotten() {
    check(
        "topology/multiple-subnets-forgotten-subnet.yaml",
        "topology/multiple-subnets.units.yaml",
        "topology/multiple-subnets-forgotten-subnet.expected.yaml",
    );
}

#[test]
fn route_reflection() {
    check(
        "route-reflection.yaml",
        "topology/route-reflection.units.yaml",
        "topology/route-reflection.expected.yaml",
    );
}

#[test]
fn route_reflection_with_a_shared_non_zero_cluster_id() {
    check(
        "topology/route-reflection-shared-id.yaml",
        "topology/route-reflection.units.yaml",
        "topology/route-reflection-shared-id.expected.yaml",
    );
}

#[test]
fn route_reflection_with_a_mistyped_peer_as() {
    check(
        "topology/route-reflection-wrong-as.yaml",
        "topology/route-reflection.units.yaml",
        "topology/route-reflection-wrong-as.expected.yaml",
    );
}

#[test]
fn as_per_rack() {
    check(
        "as-per-rack.yaml",
        "topology/as-per-rack.units.yaml",
        "topology/as-per-rack.expected.yaml",
    );
}

#[test]
fn as_per_rack_with_rack_1_unpeered() {
    check(
        "topology/as-per-rack-rack1-unpeered.yaml",
        "topology/as-per-rack.units.yaml",
        "topology/as-per-rack-rack1-unpeered.expected.yaml",
    );
}

#[test]
fn text_format_has_a_block_per_node_then_problems() {
    let out = topology(
        "route-reflection.yaml",
        "topology/route-reflection.units.yaml",
        "text",
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "calico/0 node-0 10.0.0.2/24 AS 64512 (route reflector, cluster ID 0.0.0.0)"
    );
    assert!(
        lines[1].starts_with("  Node_10_0_0_3") && lines[1].contains("rr-client"),
        "{text}"
    );
    assert!(
        text.contains("calico/2 node-2 10.0.0.4/24 AS 64512 (node)\n"),
        "{text}"
    );
    assert!(text.contains("reach: 12 of 12 node pairs\n"), "{text}");
    let problems = text.find("problems:\n").expect("problems");
    assert!(
        text[problems..].contains("warning rr-cluster-id-zero [calico/0, calico/1]"),
        "{text}"
    );
    // The default format is text.
    let out = run(&[
        "topology",
        "--config",
        &golden("route-reflection.yaml"),
        "--units",
        &golden("topology/route-reflection.units.yaml"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    };
    let units = golden("topology/default-mesh.units.yaml");
    let config = golden("topology/default-mesh.yaml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["topology".into(), "--config".into(), config.clone()],
            "--units",
        ),
        (
            vec![
                "topology".into(),
                "--config".into(),
                config.clone(),
                "--units".into(),
                units.clone(),
                "--format".into(),
                "xml".into(),
            ],
            "xml",
        ),
        (
            vec![
                "topology".into(),
                "--config".into(),
                write("bad.yaml", "cidr: 10.0.0.1/8\n"),
                "--units".into(),
                units.clone(),
            ],
            "cidr: \"10.0.0.1/8\": host bits are set",
        ),
        (
            vec![
                "topology".into(),
                "--config".into(),
                config.clone(),
                "--units".into(),
                write("u.yaml", "- {unit: calico/0, address: 10.0.0.2}\n"),
            ],
            "IP/PREFIX",
        ),
        (
            vec![
                "topology".into(),
                "--config".into(),
                config.clone(),
                "--units".into(),
                write(
                    "d.yaml",
                    "- {unit: calico/0, address: 10.0.0.2/24, node-name: a}\n- {unit: calico/0, address: 10.0.0.3/24, node-name: b}\n",
                ),
            ],
            "listed twice",
        ),
        (
            vec![
                "topology".into(),
                "--config".into(),
                config.clone(),
                "--units".into(),
                dir.path().join("missing").to_string_lossy().into_owned(),
            ],
            "cannot read units file",
        ),
        (
            vec![
                "topology".into(),
                "--config".into(),
                config.clone(),
                "--units".into(),
                "/dev/zero".into(),
            ],
            "is larger than 16777216 bytes",
        ),
    ];
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn every_reach_pair_appears_once_and_names_real_units() {
    let out = topology(
        "as-per-rack.yaml",
        "topology/as-per-rack.units.yaml",
        "json",
    );
    let got = json_of(&out);
    let mut pairs: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in got["reach"].as_array().expect("reach") {
        *pairs.entry((s(&r["from"]), s(&r["to"]))).or_default() += 1;
    }
    assert_eq!(pairs.len(), 56);
    assert!(pairs.values().all(|&c| c == 1));
    assert!(pairs.keys().all(|(a, b)| a != b));
}
