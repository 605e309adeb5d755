//! The `render` and `validate` commands, run as the built binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_calico-charm");

fn golden(path: &str) -> String {
    format!("{}/tests/golden/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run calico-charm");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait")
}

/// `render --config CONFIG --unit UNIT --address ADDRESS`, then `extra`.
fn render_args<'a>(
    config: &'a str,
    unit: &'a str,
    address: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "render",
        "--config",
        config,
        "--unit",
        unit,
        "--address",
        address,
    ];
    args.extend_from_slice(extra);
    args
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn yaml_docs(s: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(s)
        .map(|d| Value::deserialize(d).expect("yaml document"))
        .collect()
}

fn charm_objects(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .filter(|o| {
            ["IPPool", "BGPConfiguration", "BGPPeer", "Node"]
                .contains(&o["kind"].as_str().unwrap_or_default())
        })
        .collect()
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(contents.as_bytes()).expect("write");
    f
}

#[test]
fn render_yaml_for_an_as_per_rack_reflector() {
    let config = golden("as-per-rack.yaml");
    // The binding's prefix as network-get gives it: the Node's BGP address is 10.0.0.2/24.
    let args = render_args(
        &config,
        "calico/0",
        "10.0.0.2/24",
        &["--node-name", "node-0"],
    );
    let out = run(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("---\n"), "{stdout}");
    let expected =
        yaml_docs(&std::fs::read_to_string(golden("as-per-rack/calico-0.yaml")).expect("golden"));
    assert_eq!(yaml_docs(&stdout), expected);
    // Same bytes every time.
    assert_eq!(run(&args, None).stdout, out.stdout);
}

#[test]
fn render_json_is_one_list_and_reads_stdin() {
    let config = std::fs::read_to_string(golden("as-per-rack.yaml")).expect("config");
    let out = run(
        &render_args(
            "-",
            "calico/0",
            "10.0.0.2/24",
            &["--node-name", "node-0", "--leader", "--format", "json"],
        ),
        Some(&config),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items").clone();
    let expected = yaml_docs(
        &std::fs::read_to_string(golden("as-per-rack/calico-0-leader.yaml")).expect("golden"),
    );
    assert_eq!(charm_objects(items), expected);
}

#[test]
fn render_shows_the_node_address_bgp_uses() {
    let config = golden("as-per-rack.yaml");
    let node = |address: &str| {
        let out = run(
            &render_args(&config, "calico/4", address, &["--node-name", "node-4"]),
            None,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        yaml_docs(&text(&out.stdout))
            .into_iter()
            .find(|o| o["kind"] == "Node")
            .expect("Node")
    };
    assert_eq!(
        node("10.0.0.10/24")["metadata"]["annotations"]["projectcalico.org/IPv4Address"],
        "10.0.0.10/24"
    );
    // Without a prefix Calico's own reading of a bare address: /32.
    assert_eq!(
        node("10.0.0.10")["metadata"]["annotations"]["projectcalico.org/IPv4Address"],
        "10.0.0.10/32"
    );
}

#[test]
fn render_accepts_the_application_keyed_file_and_defaults_the_node_name_to_the_host() {
    let f = file("calico:\n  cidr: 10.5.0.0/16\n");
    let path = f.path().to_str().expect("path");
    let out = run(
        &render_args(path, "calico/2", "10.0.0.9", &["--leader"]),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let objects = charm_objects(yaml_docs(&text(&out.stdout)));
    assert_eq!(objects[0]["spec"]["cidr"], "10.5.0.0/16");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let node = objects.last().expect("node");
    assert_eq!(node["kind"], "Node");
    assert_eq!(node["metadata"]["name"], host.trim().to_ascii_lowercase());
}

#[test]
fn invalid_config_prints_every_error_and_nothing_on_stdout() {
    let f = file(
        "ipip: always\ncidr: 192.168.1.0/16\nglobal-bgp-peers: |\n  - address: 10.0.0.1\n    as_number: 64512\nnat-outgoing: maybe\nbogus: 1\n",
    );
    let path = f.path().to_str().expect("path");
    for cmd in [
        render_args(path, "calico/0", "10.0.0.2", &["--node-name", "n"]),
        vec!["validate", "--config", path],
    ] {
        let out = run(&cmd, None);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}");
        assert_eq!(text(&out.stdout), "", "{cmd:?}");
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let options: Vec<&str> = lines
            .iter()
            .map(|l| l.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            options,
            [
                "bogus",
                "ipip",
                "nat-outgoing",
                "cidr",
                "global-bgp-peers",
                "global-bgp-peers"
            ],
            "{stderr}"
        );
        assert!(
            lines.contains(
                &"cidr: \"192.168.1.0/16\": host bits are set: did you mean 192.168.0.0/16?"
            ),
            "{stderr}"
        );
        assert!(lines.contains(&"ipip: \"always\": expected one of Always, CrossSubnet, Never (case matters): did you mean \"Always\"?"), "{stderr}");
    }
}

#[test]
fn validate_reports_warnings_and_exits_zero() {
    let out = run(&["validate", "--config", &golden("dual-stack.yaml")], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "valid, 1 warning\n");
    assert_eq!(
        text(&out.stderr),
        "warning: ipip: CrossSubnet: IPIP is IPv4-only: the IPv6 pool fd00:c00b:1::/64 gets ipipMode Never\n"
    );
    let out = run(
        &["validate", "--config", &golden("route-reflection.yaml")],
        None,
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout), text(&out.stderr)),
        (Some(0), "valid\n".into(), String::new())
    );
    // With a unit, the unit's own warnings too: calico/9 is in no rack subnet.
    let out = run(
        &[
            "validate",
            "--config",
            &golden("as-per-rack.yaml"),
            "--unit",
            "calico/9",
            "--address",
            "10.0.9.9",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.lines().all(|l| l.starts_with("warning: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: node-to-node-mesh: calico/9 (10.0.9.9) is off the mesh (node-to-node-mesh is false) and has no BGP peer"
        ),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "valid, 2 warnings\n");
}

#[test]
fn usage_errors_exit_2() {
    let config = golden("as-per-rack.yaml");
    for args in [
        vec!["render", "--config", &config, "--address", "10.0.0.2"],
        render_args(&config, "calico", "10.0.0.2", &[]),
        render_args(&config, "calico/x", "10.0.0.2", &[]),
        render_args(&config, "calico/0", "10.0.0", &[]),
        render_args(&config, "calico/0", "10.0.0.2/33", &[]),
        render_args(&config, "calico/0", "10.0.0.2/", &[]),
        render_args(&config, "calico/0", "10.0.0.2", &["--format", "xml"]),
        vec!["validate", "--config", &config, "--unit", "calico/0"],
        vec!["validate"],
        render_args(&config, "calico/0", "10.0.0.2", &["--node-name", "Node_0"]),
    ] {
        let out = run(&args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
}

#[test]
fn unreadable_or_malformed_files_fail_with_exit_1() {
    let missing = run(&["validate", "--config", "/nonexistent/calico.yaml"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).starts_with("error: cannot read configuration file"),
        "{}",
        text(&missing.stderr)
    );
    let f = file("- ipip\n");
    let out = run(
        &["validate", "--config", f.path().to_str().expect("path")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("expected a map of option names to values"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_refuses_an_endless_input_file_instead_of_reading_it_to_the_end() {
    let started = std::time::Instant::now();
    let out = run(&["validate", "--config", "/dev/zero"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("configuration file /dev/zero is larger than 16777216 bytes"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn an_integer_too_large_for_64_bits_is_reported_with_the_other_errors() {
    let out = run(
        &["validate", "--config", "-"],
        Some("global-as-number: 99999999999999999999999\nipip: sometimes\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ipip: \"sometimes\""), "{stderr}");
    assert!(
        stderr.contains(
            "global-as-number: 99999999999999999999999 is too large: expected an integer"
        ),
        "{stderr}"
    );
}

#[test]
fn render_for_etcd_prints_calicos_keys_and_values_and_no_secret() {
    let config = golden("as-per-rack.yaml");
    let out = run(
        &render_args(
            &config,
            "calico/0",
            "10.0.0.2/24",
            &[
                "--node-name",
                "rack1-host1",
                "--leader",
                "--datastore",
                "etcd",
                "--etcd-endpoints",
                "https://10.0.0.9:2379",
                "--format",
                "json",
            ],
        ),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).expect("a JSON list");
    let docs = list["items"].as_array().cloned().unwrap_or_default();
    let keys: Vec<&str> = docs.iter().filter_map(|d| d["key"].as_str()).collect();
    assert!(keys.contains(&"/calico/resources/v3/projectcalico.org/bgpconfigurations/default"));
    assert!(keys.contains(&"/calico/resources/v3/projectcalico.org/nodes/rack1-host1"));
    assert!(
        keys.iter()
            .all(|k| k.starts_with("/calico/resources/v3/projectcalico.org/")),
        "{keys:?}"
    );
    for d in docs.iter().filter(|d| d.get("key").is_some()) {
        assert_eq!(d["value"]["apiVersion"], "projectcalico.org/v3", "{d}");
        assert!(d["value"]["metadata"].get("uid").is_none(), "{d}");
    }
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(!kinds.contains(&"CustomResourceDefinition"), "{kinds:?}");
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .expect("the Secret");
    assert_eq!(secret["metadata"]["name"], "calico-etcd-secrets");
    assert!(secret.get("data").is_none(), "{secret}");
    let text = text(&out.stdout);
    assert!(!text.contains("BEGIN"), "a PEM block in render output");
    assert!(text.contains("https://10.0.0.9:2379"));
}
