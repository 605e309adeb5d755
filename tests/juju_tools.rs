//! The hook-tool client (`calico_charm::juju::Subprocess`) against the hook-tool emulator:
//! every method, Juju's output formats, errors naming the tool, and commit semantics.

mod juju_harness;

use std::time::Duration;

use calico_charm::juju::{HookTools, Subprocess, ToolError};
use calico_charm::status::{StatusKind, UnitStatus};
use juju_harness::{KUBECONFIG_HASH, Unit};
use serde_json::json;

/// Run one emulated hook tool directly, in the environment of hook `hook` of `unit` (for the
/// tools the charm itself never calls: state-get/state-set, juju-log's flag handling).
fn tool(unit: &Unit, hook: &str, name: &str, args: &[&str]) -> Result<String, ToolError> {
    let env: Vec<(String, String)> = unit.hook_env(hook).into_iter().collect();
    calico_charm::juju::tools::run_tool_with(name, args, Duration::from_secs(30), &env)
}

fn state_get(unit: &Unit, hook: &str, key: &str) -> Option<String> {
    let out = tool(unit, hook, "state-get", &["--format=json", "--", key]).unwrap();
    let value: Option<String> = serde_json::from_str(&out).unwrap();
    value.filter(|v| !v.is_empty())
}

/// A client whose tools see the environment of hook `hook` of `unit`.
fn client(unit: &Unit, hook: &str) -> Subprocess {
    Subprocess {
        timeout: Duration::from_secs(30),
        env: unit.hook_env(hook).into_iter().collect(),
    }
}

#[test]
fn reads_config_network_leadership_and_relations() {
    let unit = Unit::tools_only("calico/3");
    unit.set_leader(true);
    let rid = unit.relate_cni(
        9,
        &[
            ("kubeconfig-hash", KUBECONFIG_HASH),
            ("service-cidr", "10.152.183.0/24"),
        ],
    );
    unit.begin("update-status");
    let tools = client(&unit, "update-status");

    // Typed values as config.yaml declares them; veth-mtu has no default and is omitted.
    let config = tools.config_get().unwrap();
    assert_eq!(config.get("nat-outgoing"), Some(&json!(true)));
    assert_eq!(config.get("global-as-number"), Some(&json!(64512)));
    assert_eq!(config.get("cidr"), Some(&json!("192.168.0.0/16")));
    assert!(!config.contains_key("veth-mtu"));
    unit.set_config("veth-mtu", json!(9000));
    assert_eq!(
        tools.config_get().unwrap().get("veth-mtu"),
        Some(&json!(9000))
    );

    let network = tools.network_get("cni").unwrap();
    assert_eq!(network.bind_addresses.len(), 2);
    assert_eq!(network.bind_addresses[0].interface_name, "fan-252");
    assert_eq!(
        calico_charm::juju::bind_address(&network),
        Some("10.0.0.5".parse().unwrap())
    );
    assert_eq!(tools.unit_get_private_address().unwrap(), "10.0.0.5");
    assert!(tools.is_leader().unwrap());

    assert_eq!(tools.relation_ids("cni").unwrap(), vec![rid.clone()]);
    assert!(tools.relation_ids("etcd").unwrap().is_empty());
    assert_eq!(
        tools.relation_list(&rid).unwrap(),
        vec!["kubernetes-worker/0".to_string()]
    );
    let bag = tools.relation_get(&rid, "kubernetes-worker/0").unwrap();
    assert_eq!(
        bag.get("kubeconfig-hash").map(String::as_str),
        Some(KUBECONFIG_HASH)
    );
    assert_eq!(
        bag.get("service-cidr").map(String::as_str),
        Some("10.152.183.0/24")
    );
    assert_eq!(
        bag.get("private-address").map(String::as_str),
        Some("10.0.0.7")
    );
    unit.end("update-status", 0);
}

#[test]
fn writes_are_buffered_until_the_hook_succeeds() {
    let unit = Unit::tools_only("calico/0");
    let rid = unit.relate_cni(1, &[]);

    unit.begin("config-changed");
    let tools = client(&unit, "config-changed");
    tools
        .relation_set(
            &rid,
            &[
                ("cidr", "10.1.0.0/16"),
                ("cni-conf-file", "10-calico.conflist"),
            ],
        )
        .unwrap();
    tool(&unit, "config-changed", "state-set", &["--", "pools=ipv4"]).unwrap();
    // This hook sees its own pending writes.
    let own = tools.relation_get(&rid, "calico/0").unwrap();
    assert_eq!(own.get("cidr").map(String::as_str), Some("10.1.0.0/16"));
    assert_eq!(
        state_get(&unit, "config-changed", "pools").as_deref(),
        Some("ipv4")
    );
    // The hook fails: nothing is committed.
    unit.end("config-changed", 1);
    assert_eq!(unit.local_data(&rid).get("cidr"), None);
    assert!(unit.charm_state().is_empty());
    assert_eq!(
        unit.status(),
        ("error".into(), "hook failed: \"config-changed\"".into())
    );

    // The same writes in a hook that succeeds are committed and seen by the next hook.
    unit.begin("config-changed");
    tools
        .relation_set(
            &rid,
            &[
                ("cidr", "10.1.0.0/16"),
                ("cni-conf-file", "10-calico.conflist"),
            ],
        )
        .unwrap();
    tool(&unit, "config-changed", "state-set", &["--", "pools=ipv4"]).unwrap();
    unit.end("config-changed", 0);
    assert_eq!(
        unit.local_data(&rid).get("cidr").map(String::as_str),
        Some("10.1.0.0/16")
    );
    unit.begin("update-status");
    let next = client(&unit, "update-status");
    assert_eq!(
        state_get(&unit, "update-status", "pools").as_deref(),
        Some("ipv4")
    );
    assert_eq!(state_get(&unit, "update-status", "absent"), None);
    // `key=` deletes a relation key.
    next.relation_set(&rid, &[("cidr", "")]).unwrap();
    unit.end("update-status", 0);
    assert_eq!(unit.local_data(&rid).get("cidr"), None);
    assert_eq!(
        unit.local_data(&rid)
            .get("cni-conf-file")
            .map(String::as_str),
        Some("10-calico.conflist")
    );
}

#[test]
fn status_version_and_log_are_immediate() {
    let unit = Unit::tools_only("calico/0");
    unit.begin("install");
    let tools = client(&unit, "install");
    // A message starting with '-' must not be taken for a flag.
    tools
        .status_set(&UnitStatus::new(StatusKind::Blocked, "-x is not a cidr"))
        .unwrap();
    tools.application_version_set("v3.26.1").unwrap();
    tool(
        &unit,
        "install",
        "juju-log",
        &["--log-level", "WARNING", "--", "--not a flag"],
    )
    .unwrap();
    unit.end("install", 1);
    let statuses = unit.statuses();
    assert!(
        statuses
            .iter()
            .any(|s| s.status == "blocked" && s.message == "-x is not a cidr" && s.by == "charm")
    );
    assert_eq!(unit.versions(), ["v3.26.1"]);
    let logs = unit.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, "WARNING");
    assert_eq!(logs[0].message, "--not a flag");
    assert!(
        logs[0]
            .line
            .contains("WARNING unit.calico/0.juju-log --not a flag")
    );
}

#[test]
fn errors_name_the_tool() {
    let unit = Unit::tools_only("calico/0");
    unit.begin("config-changed");
    let tools = client(&unit, "config-changed");

    // Runtime error (exit 1) with Juju's message.
    match tools.network_get("etcd") {
        Err(ToolError::Failed { tool, stderr, .. }) => {
            assert_eq!(tool, "network-get");
            assert_eq!(stderr, "ERROR no network config found for binding \"etcd\"");
        }
        other => panic!("{other:?}"),
    }
    // Usage error (exit 2): a relation that does not exist.
    let err = tools.relation_list("cni:42").unwrap_err();
    assert!(err.to_string().contains("relation-list"), "{err}");
    assert!(err.to_string().contains("exit status: 2"), "{err}");
    assert!(err.to_string().contains("relation not found"), "{err}");
    // Action tools outside an action.
    let err = tools.action_fail("nope").unwrap_err();
    assert!(err.to_string().contains("action-fail"), "{err}");
    assert!(err.to_string().contains("not running an action"), "{err}");
    // Missing tool.
    unit.remove_tool("is-leader");
    let err = tools.is_leader().unwrap_err();
    assert!(
        matches!(err, ToolError::Missing { ref tool } if tool == "is-leader"),
        "{err:?}"
    );
    unit.end("config-changed", 0);
}

#[test]
fn state_values_are_limited_like_juju() {
    let unit = Unit::tools_only("calico/0");
    unit.begin("install");
    let big = "x".repeat(65537);
    let pair = format!("k={big}");
    let err = tool(&unit, "install", "state-set", &["--", &pair]).unwrap_err();
    assert!(err.to_string().contains("state-set"), "{err}");
    unit.end("install", 0);
}

/// Run one tool by name in `unit`'s hook context: (exit code, stdout, stderr).
fn raw_tool(unit: &Unit, hook: &str, tool: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(unit.tools_dir.join(tool))
        .args(args)
        .env_clear()
        .envs(unit.hook_env(hook))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The emulator's own fidelity to the reference (../shared/reference/juju-runtime.md §4-5).
#[test]
fn emulator_speaks_jujus_formats_and_exit_codes() {
    let unit = Unit::tools_only("calico/0");
    unit.begin("install");
    let ok = |out: (i32, String, String)| {
        assert_eq!(out.0, 0, "{out:?}");
        out.1
    };
    // smart (the default) vs json.
    assert_eq!(ok(raw_tool(&unit, "install", "is-leader", &[])), "False\n");
    assert_eq!(
        ok(raw_tool(&unit, "install", "is-leader", &["--format=json"])),
        "false\n"
    );
    assert_eq!(
        ok(raw_tool(&unit, "install", "config-get", &["cidr"])),
        "192.168.0.0/16\n"
    );
    assert_eq!(
        ok(raw_tool(
            &unit,
            "install",
            "config-get",
            &["veth-mtu", "--format", "json"]
        )),
        "null\n"
    );
    assert_eq!(
        ok(raw_tool(&unit, "install", "config-get", &["veth-mtu"])),
        ""
    );
    let all = ok(raw_tool(
        &unit,
        "install",
        "config-get",
        &["--all", "--format=json"],
    ));
    assert!(all.contains("\"veth-mtu\":null"), "{all}");
    let set = ok(raw_tool(&unit, "install", "config-get", &["--format=json"]));
    assert!(!set.contains("veth-mtu"), "{set}");
    assert_eq!(
        ok(raw_tool(&unit, "install", "state-get", &["--format=json"])),
        "null\n"
    );
    assert_eq!(
        ok(raw_tool(
            &unit,
            "install",
            "relation-ids",
            &["cni", "--format=json"]
        )),
        "[]\n"
    );
    // --bind-address is the first address of the first interface, fan or not: the reason
    // the charm reads the whole document and skips fan- interfaces itself.
    assert_eq!(
        ok(raw_tool(
            &unit,
            "install",
            "network-get",
            &["cni", "--bind-address", "--format=json"]
        )),
        "\"252.0.5.1\"\n"
    );
    // Usage errors exit 2, runtime errors exit 1, one `ERROR` line on stderr, empty stdout.
    let cases: [(&str, &[&str], i32, &str); 7] = [
        (
            "status-set",
            &["bogus"],
            2,
            "ERROR invalid status \"bogus\", expected one of [maintenance blocked waiting active]\n",
        ),
        ("juju-log", &[], 2, "ERROR no message specified\n"),
        (
            "application-version-set",
            &[],
            2,
            "ERROR no version specified\n",
        ),
        (
            "config-get",
            &["--format=xml"],
            2,
            "ERROR invalid value \"xml\" for option --format: unknown format \"xml\"\n",
        ),
        (
            "relation-get",
            &["-", "kubernetes-worker/0"],
            2,
            "ERROR no relation id specified\n",
        ),
        (
            "network-get",
            &["etcd"],
            1,
            "ERROR no network config found for binding \"etcd\"\n",
        ),
        ("action-get", &[], 1, "ERROR not running an action\n"),
    ];
    for (tool, args, code, stderr) in cases {
        let out = raw_tool(&unit, "install", tool, args);
        assert_eq!(
            (out.0, out.1.as_str(), out.2.as_str()),
            (code, "", stderr),
            "{tool} {args:?}"
        );
    }
    let rid = unit.relate_cni(3, &[]);
    let out = raw_tool(&unit, "install", "relation-set", &["-r", &rid, "haha"]);
    assert_eq!(out.0, 2);
    assert_eq!(out.2, "ERROR expected \"key=value\", got \"haha\"\n");
    unit.end("install", 0);

    // Outside a hook context, like jujuc.
    let out = std::process::Command::new(unit.tools_dir.join("is-leader"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ERROR JUJU_CONTEXT_ID not set\n"
    );
}

#[test]
fn resource_get_prints_the_path_without_a_newline_and_fails_as_juju_does() {
    let unit = Unit::tools_only("calico/0");
    unit.begin("upgrade-charm");
    let tools = client(&unit, "upgrade-charm");
    // Declared in metadata.yaml, nothing attached: exit 1, "could not download resource".
    match tools.resource_get("calicoctl") {
        Err(ToolError::Failed { tool, stderr, .. }) => {
            assert_eq!(tool, "resource-get");
            assert!(
                stderr.starts_with("ERROR could not download resource: "),
                "{stderr}"
            );
        }
        other => panic!("{other:?}"),
    }
    let file = unit.host_dir().join("calicoctl-resource");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    unit.attach_resource("calicoctl", Some(&file));
    let out = raw_tool(&unit, "upgrade-charm", "resource-get", &["calicoctl"]);
    assert_eq!(out, (0, file.display().to_string(), String::new()));
    assert_eq!(
        tools.resource_get("calicoctl").unwrap(),
        file.display().to_string()
    );
    // Usage errors exit 2; a resource metadata.yaml does not declare exits 1.
    assert_eq!(
        raw_tool(&unit, "upgrade-charm", "resource-get", &[]),
        (
            2,
            String::new(),
            "ERROR missing required resource name\n".into()
        )
    );
    assert_eq!(
        raw_tool(&unit, "upgrade-charm", "resource-get", &["calicoctl", "x"]),
        (
            2,
            String::new(),
            "ERROR unrecognized args: [\"x\"]\n".into()
        )
    );
    assert_eq!(
        raw_tool(&unit, "upgrade-charm", "resource-get", &["calico"]),
        (
            1,
            String::new(),
            "ERROR could not download resource: resource \"calico\" not found\n".into()
        )
    );
    unit.end("upgrade-charm", 0);
}
