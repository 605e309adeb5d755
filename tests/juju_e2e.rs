//! The packed charm run as the Juju unit agent runs it, against the hook-tool emulator and,
//! where a test needs the cluster, a test API server named by `KUBECONFIG`.

mod juju_harness;

use juju_harness::assert_ok;
mod support;

use juju_harness::{KUBECONFIG_HASH, Unit};
use serde_json::json;
use support::apiserver::{Options, TestApiServer};

fn pair(status: &str, message: &str) -> (String, String) {
    (status.to_string(), message.to_string())
}

/// The status of a unit with nothing pending: it also needs a reachable API (a test API
/// server named by KUBECONFIG, see `Unit::set_env`), its Node and calico-node.
fn ready() -> (String, String) {
    pair("active", "Ready")
}

/// A unit of calico on a worker, related to its principal which published its kubeconfig-hash,
/// with a Kubernetes API to converge to: the test API server (Calico CRDs installed) named by
/// the unit's KUBECONFIG, this node (`NODENAME=worker-0`) registered and its calico-node pod
/// Running and Ready. `None` when the envtest tests are skipped.
fn related_unit(name: &str, leader: bool) -> Option<(Unit, String)> {
    let mut unit = Unit::new(name);
    unit.set_leader(leader);
    let rid = unit.relate_cni(
        4,
        &[
            ("kubeconfig-hash", KUBECONFIG_HASH),
            ("image-registry", "rocks.canonical.com:443/cdk"),
        ],
    );
    with_cluster(&mut unit)?;
    Some((unit, rid))
}

/// Give `unit` the cluster of [`cluster`] for node `worker-0` (`None`: envtest skipped).
fn with_cluster(unit: &mut Unit) -> Option<()> {
    let server = cluster("worker-0")?;
    server
        .write_kubeconfig(&unit.kubeconfig())
        .expect("write kubeconfig");
    unit.set_env("NODENAME", "worker-0");
    unit.keep_alive(server);
    Some(())
}

/// A test API server where `node` is registered and runs a ready calico-node pod.
fn cluster(node: &str) -> Option<TestApiServer> {
    let server = envtest!(Options::default())?;
    server.add_ready_node(node, None, "docker.io/calico/node:v3.6.1");
    Some(server)
}

fn logged(unit: &Unit, level: &str, needle: &str) -> bool {
    unit.logs()
        .iter()
        .any(|l| l.level == level && l.message.contains(needle))
}

#[test]
fn deploy_sequence_ends_active_with_relation_data_and_version() {
    let Some((unit, rid)) = related_unit("calico/0", true) else {
        return;
    };
    for hook in ["install", "leader-elected", "config-changed", "start"] {
        let run = unit.hook(hook);
        assert_ok(&unit, &run);
        assert_eq!(run.handler, "dispatch");
    }
    for kind in ["created", "joined", "changed"] {
        assert_ok(&unit, &unit.relation_hook(kind, &rid));
    }
    // A charm upgrade is followed by config-changed; both reconcile.
    for hook in ["upgrade-charm", "config-changed"] {
        assert_ok(&unit, &unit.hook(hook));
    }
    eprintln!("{}", unit.transcript());

    // Juju's own maintenance status before install, then the charm's.
    assert_eq!(
        unit.statuses_in("install"),
        vec![
            pair("maintenance", "installing charm software"),
            pair("maintenance", "Configuring Calico"),
            ready(),
        ]
    );
    assert_eq!(unit.status(), ready());
    // The version is the tag of config.yaml's default calico-node-image
    // (docker.io/calico/node:v3.6.1), set on every hook.
    let versions = unit.versions();
    assert_eq!(versions.len(), 9);
    assert!(versions.iter().all(|v| v == "v3.6.1"), "{versions:?}");

    // What the principal reads: Juju's keys plus the two the charm sets.
    let data = unit.local_data(&rid);
    assert_eq!(data.get("cidr").map(String::as_str), Some("192.168.0.0/16"));
    assert_eq!(
        data.get("cni-conf-file").map(String::as_str),
        Some("10-calico.conflist")
    );
    assert_eq!(
        data.get("private-address").map(String::as_str),
        Some("10.0.0.5")
    );

    // debug-log: one INFO line per hook saying where it ended; relation hooks prefixed.
    assert!(logged(&unit, "INFO", "install hook: active \"Ready\""));
    assert!(
        unit.logs().iter().any(|l| l.hook == "cni-relation-changed"
            && l.message
                .starts_with("cni:4: cni-relation-changed hook: active")),
        "{:#?}",
        unit.logs()
    );
    // No tool call failed, but resource-get: no calicoctl resource is attached, which Juju
    // answers with exit 1 "could not download resource" (and the charm expects).
    let failed: Vec<_> = unit
        .calls()
        .into_iter()
        .filter(|c| c.exit != 0)
        .filter(|c| !(c.tool == "resource-get" && c.stderr.contains("could not download resource")))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn hook_tool_protocol_of_one_reconcile() {
    let Some((unit, _rid)) = related_unit("calico/1", false) else {
        return;
    };
    assert_ok(&unit, &unit.hook("config-changed"));
    eprintln!("{}", unit.transcript());
    let calls: Vec<_> = unit
        .calls()
        .into_iter()
        .filter(|c| c.tool != "juju-log")
        .collect();
    let tools: Vec<&str> = calls.iter().map(|c| c.tool.as_str()).collect();
    assert_eq!(
        tools,
        [
            "status-set",
            "config-get",
            "relation-ids",
            "relation-set",
            "relation-list",
            "relation-get",
            "is-leader",
            "network-get",
            // The peer relation, the datastore remembered (none yet: not the leader, it
            // follows what the leader would choose), the etcd relation.
            "relation-ids",
            "state-get",
            "relation-ids",
            "resource-get",
            "status-set",
            "application-version-set",
        ]
    );
    assert_eq!(
        calls
            .iter()
            .find(|c| c.tool == "resource-get")
            .map(|c| c.args.clone()),
        Some(vec!["--".to_string(), "calicoctl".to_string()])
    );
    let args = |tool: &str| -> Vec<String> {
        calls
            .iter()
            .find(|c| c.tool == tool)
            .map(|c| c.args.clone())
            .unwrap_or_default()
    };
    for tool in [
        "config-get",
        "relation-ids",
        "relation-list",
        "relation-get",
        "is-leader",
        "network-get",
    ] {
        assert!(
            args(tool).iter().any(|a| a == "--format=json"),
            "{tool} {:?}",
            args(tool)
        );
    }
    assert_eq!(
        args("relation-set"),
        [
            "-r",
            "cni:4",
            "--",
            "cidr=192.168.0.0/16",
            "cni-conf-file=10-calico.conflist"
        ]
    );
    assert_eq!(
        args("relation-get"),
        [
            "--format=json",
            "-r",
            "cni:4",
            "--",
            "-",
            "kubernetes-worker/0"
        ]
    );
    assert_eq!(args("network-get"), ["--format=json", "--", "cni"]);
    // Every juju-log call names its level.
    for call in unit.calls().iter().filter(|c| c.tool == "juju-log") {
        assert_eq!(call.args.first().map(String::as_str), Some("--log-level"));
    }
}

#[test]
fn invalid_config_blocks_names_the_option_and_logs_every_error() {
    let Some((unit, rid)) = related_unit("calico/0", true) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(unit.status(), ready());

    // One bad option: the message names it and its value.
    unit.set_config("ipip", json!("sometimes"));
    let run = unit.hook("config-changed");
    assert_ok(&unit, &run);
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(
        message.starts_with("Invalid config: ipip: ") && message.contains("sometimes"),
        "{message}"
    );
    assert!(!message.contains("more, see juju debug-log"), "{message}");

    // Two bad options, one of them cidr: blocked with a count, both errors logged at ERROR,
    // the previously published cidr kept (never publish a broken cidr to kube-proxy).
    unit.set_config("cidr", json!("192.168.1.0/16"));
    assert_ok(&unit, &unit.hook("config-changed"));
    eprintln!("{}", unit.transcript());
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(message.starts_with("Invalid config: "), "{message}");
    assert!(
        message.ends_with("(+1 more, see juju debug-log)"),
        "{message}"
    );
    let errors: Vec<_> = unit
        .logs()
        .into_iter()
        .filter(|l| l.hook == "config-changed" && l.level == "ERROR")
        .map(|l| l.message)
        .collect();
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("Invalid config: ipip: ")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|m| m.starts_with("Invalid config: cidr: ") && m.contains("192.168.0.0/16")),
        "{errors:?}"
    );
    let data = unit.local_data(&rid);
    assert_eq!(data.get("cidr").map(String::as_str), Some("192.168.0.0/16"));
    assert_eq!(
        data.get("cni-conf-file").map(String::as_str),
        Some("10-calico.conflist")
    );
    // Nothing applied: the hook stopped before gathering unit facts for render/apply.
    let tools_in_last: Vec<String> = unit
        .calls()
        .into_iter()
        .rev()
        .take_while(|c| c.hook == "config-changed")
        .map(|c| c.tool)
        .collect();
    assert!(
        !tools_in_last
            .iter()
            .any(|t| t == "is-leader" || t == "network-get"),
        "{tools_in_last:?}"
    );

    // Fixing it: active again and the new cidr published.
    unit.reset_config("ipip");
    unit.set_config("cidr", json!("10.1.0.0/16, fd00:c00b:1::/64"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(unit.status(), ready());
    assert_eq!(
        unit.local_data(&rid).get("cidr").map(String::as_str),
        Some("10.1.0.0/16,fd00:c00b:1::/64")
    );
}

#[test]
fn invalid_image_blocks_without_a_version() {
    let Some((unit, _rid)) = related_unit("calico/0", false) else {
        return;
    };
    unit.set_config("calico-node-image", json!(""));
    assert_ok(&unit, &unit.hook("install"));
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(
        message.starts_with("Invalid config: calico-node-image: "),
        "{message}"
    );
    assert!(unit.versions().is_empty());
    unit.set_config(
        "calico-node-image",
        json!("registry.example.com:5000/calico/node:v3.26.1"),
    );
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(unit.status(), ready());
    assert_eq!(unit.versions(), ["v3.26.1"]);
}

#[test]
fn leader_and_non_leader_both_reach_active() {
    let Some((leader, _)) = related_unit("calico/0", true) else {
        return;
    };
    let Some((follower, _)) = related_unit("calico/1", false) else {
        return;
    };
    for unit in [&leader, &follower] {
        assert_ok(unit, &unit.hook("install"));
        assert_eq!(unit.status(), ready());
    }
    assert!(logged(&leader, "INFO", "calico/0 (leader) on node"));
    assert!(logged(&follower, "INFO", "calico/1 (not leader) on node"));
    // Leadership changes are reconciled like anything else.
    follower.set_leader(true);
    assert_ok(&follower, &follower.hook("leader-elected"));
    assert!(
        follower
            .logs()
            .iter()
            .any(|l| l.hook == "leader-elected" && l.message.contains("calico/1 (leader)"))
    );
    leader.set_leader(false);
    assert_ok(&leader, &leader.hook("leader-settings-changed"));
    assert_eq!(leader.status(), ready());
}

#[test]
fn bind_address_skips_fan_and_falls_back_to_unit_get() {
    let Some((unit, _)) = related_unit("calico/0", false) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    // The fixture lists fan-252 (252.0.5.1) first: the charm takes eth0's 10.0.0.5.
    assert!(
        logged(&unit, "INFO", " at 10.0.0.5;"),
        "{}",
        unit.transcript()
    );
    assert!(!unit.logs().iter().any(|l| l.message.contains("252.0.5.1")));
    assert!(!unit.calls().iter().any(|c| c.tool == "unit-get"));

    // Only a fan interface: warn and use unit-get private-address.
    unit.set_network(Some(json!({"bind-addresses": [
        {"interface-name": "fan-252", "addresses": [{"value": "252.0.5.1", "cidr": "252.0.0.0/8"}]}
    ]})));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert!(logged(&unit, "WARNING", "using unit-get private-address"));
    assert!(
        unit.calls()
            .iter()
            .any(|c| c.tool == "unit-get" && c.args.contains(&"private-address".to_string()))
    );
    assert_eq!(unit.status(), ready());

    // network-get fails (no such binding): same fallback, the error named in the warning.
    unit.set_network(None);
    assert_ok(&unit, &unit.hook("update-status"));
    assert!(
        unit.logs().iter().any(|l| l.hook == "update-status"
            && l.level == "WARNING"
            && l.message.contains("network-get")
            && l.message.contains("no network config found for binding")),
        "{}",
        unit.transcript()
    );
    assert_eq!(unit.status(), ready());

    // Older agents wrote `address` instead of `value`.
    unit.set_network(Some(json!({"bind-addresses": [
        {"interfacename": "ens3", "addresses": [{"address": "10.9.9.9", "cidr": "10.9.9.0/24"}]}
    ]})));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert!(logged(&unit, "INFO", " at 10.9.9.9;"));
}

#[test]
fn node_name_comes_from_nodename_else_the_host_name() {
    // No NODENAME and no cluster: only the node name in the hook's summary line matters here.
    let mut unit = Unit::new("calico/0");
    unit.relate_cni(4, &[("kubeconfig-hash", KUBECONFIG_HASH)]);
    assert_ok(&unit, &unit.hook("install"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(logged(&unit, "INFO", &format!("on node {host} at")));
    unit.set_env("NODENAME", "worker-3");
    assert_ok(&unit, &unit.hook("config-changed"));
    assert!(logged(&unit, "INFO", "on node worker-3 at"));
}

#[test]
fn waits_for_the_principals_kubeconfig_hash() {
    let mut unit = Unit::new("calico/0");
    if with_cluster(&mut unit).is_none() {
        return;
    }
    let rid = unit.relate_cni(2, &[("image-registry", "rocks.canonical.com:443/cdk")]);
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(
        unit.status(),
        pair(
            "waiting",
            "Waiting for kubeconfig: the principal has not published kubeconfig-hash yet",
        )
    );
    // Relation data is published even while waiting: the principal needs it first.
    assert_eq!(
        unit.local_data(&rid)
            .get("cni-conf-file")
            .map(String::as_str),
        Some("10-calico.conflist")
    );
    // An empty hash means the key is absent (the principal has no kubeconfig yet).
    unit.set_remote(&rid, "kubeconfig-hash", " ");
    assert_ok(&unit, &unit.relation_hook("changed", &rid));
    assert_eq!(
        unit.status(),
        pair(
            "waiting",
            "Waiting for kubeconfig: the principal has not published kubeconfig-hash yet",
        )
    );
    unit.set_remote(&rid, "kubeconfig-hash", KUBECONFIG_HASH);
    unit.set_remote(&rid, "service-cidr", "10.152.183.0/24");
    assert_ok(&unit, &unit.relation_hook("changed", &rid));
    eprintln!("{}", unit.transcript());
    assert_eq!(unit.status(), ready());
    // The hash is logged shortened, never anything from the kubeconfig itself.
    assert!(logged(
        &unit,
        "INFO",
        "principal kubeconfig-hash 9f86d081884c service-cidr 10.152.183.0/24"
    ));
    assert!(
        !unit
            .logs()
            .iter()
            .any(|l| l.message.contains(KUBECONFIG_HASH))
    );
}

#[test]
fn without_a_cni_relation_the_unit_waits_for_one() {
    let unit = Unit::new("calico/0");
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(unit.status(), pair("waiting", "Waiting for cni relation"));
    assert!(!unit.calls().iter().any(|c| c.tool == "relation-set"));
}

#[test]
fn broken_relation_is_not_written_and_the_unit_waits() {
    let Some((unit, rid)) = related_unit("calico/0", false) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    let sets_before = unit.relation_sets().len();
    assert_ok(&unit, &unit.relation_hook("departed", &rid));
    assert_ok(&unit, &unit.relation_hook("broken", &rid));
    eprintln!("{}", unit.transcript());
    // departed: relation-list no longer shows the principal, so no kubeconfig-hash.
    // broken: the dying relation is neither written nor read.
    let sets: Vec<_> = unit.relation_sets().into_iter().skip(sets_before).collect();
    assert!(
        sets.iter()
            .all(|(hook, _, _)| hook == "cni-relation-departed"),
        "{sets:?}"
    );
    assert_eq!(unit.status(), pair("waiting", "Waiting for cni relation"));
}

#[test]
fn update_status_does_not_flap_through_maintenance() {
    let Some((unit, _)) = related_unit("calico/0", true) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    assert_ok(&unit, &unit.hook("update-status"));
    assert_eq!(unit.statuses_in("update-status"), vec![ready()]);
}

#[test]
fn missing_hook_tool_fails_the_hook_naming_it_and_discards_pending_changes() {
    let Some((unit, rid)) = related_unit("calico/0", true) else {
        return;
    };
    // is-leader runs after relation-set: the buffered relation data must be discarded.
    unit.remove_tool("is-leader");
    let run = unit.hook("install");
    eprintln!("{}\nstderr: {}", unit.transcript(), run.stderr);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("is-leader"), "{}", run.stderr);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    assert_eq!(unit.status(), pair("error", "hook failed: \"install\""));
    assert!(unit.relation_sets().iter().any(|(_, r, _)| *r == rid));
    assert_eq!(unit.local_data(&rid).get("cni-conf-file"), None);
    // The cause is also in debug-log.
    assert!(logged(&unit, "ERROR", "is-leader"));
}

#[test]
fn failing_hook_tool_fails_the_hook_with_its_error() {
    let Some((unit, _)) = related_unit("calico/0", false) else {
        return;
    };
    unit.fail_tool("config-get", "permission denied");
    let run = unit.hook("config-changed");
    assert_eq!(run.code, Some(1), "{}", unit.transcript());
    assert!(run.stderr.contains("config-get"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ERROR permission denied"),
        "{}",
        run.stderr
    );
    assert_eq!(
        unit.status(),
        pair("error", "hook failed: \"config-changed\"")
    );
}

#[test]
fn juju_log_missing_falls_back_to_stderr() {
    let Some((unit, _)) = related_unit("calico/0", false) else {
        return;
    };
    unit.remove_tool("juju-log");
    let run = unit.hook("install");
    assert_ok(&unit, &run);
    assert!(
        run.stderr.contains("INFO install hook: active \"Ready\""),
        "{}",
        run.stderr
    );
    assert_eq!(unit.status(), ready());
}

#[test]
fn stop_and_remove_clean_up_and_succeed() {
    let Some((unit, _)) = related_unit("calico/0", true) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    // The machine's networking may already be going: stop/remove must not depend on it.
    unit.fail_tool("network-get", "no network config found for binding \"cni\"");
    unit.fail_tool("is-leader", "leadership status unknown: agent stopping");
    for hook in ["stop", "remove"] {
        assert_ok(&unit, &unit.hook(hook));
    }
    eprintln!("{}", unit.transcript());
    assert_eq!(
        unit.statuses_in("stop"),
        vec![pair("maintenance", "stopping charm software")]
    );
    assert_eq!(
        unit.statuses_in("remove"),
        vec![pair("maintenance", "cleaning up prior to charm deletion")]
    );
    assert!(logged(
        &unit,
        "INFO",
        "stop hook: removed what calico/0 owned"
    ));
    assert!(logged(
        &unit,
        "INFO",
        "remove hook: removed what calico/0 owned"
    ));
}

#[test]
fn unknown_hooks_are_logged_and_succeed() {
    let unit = Unit::new("calico/0");
    // Through the shipped hooks/ entry and through dispatch for a hook without one.
    for hook in ["pre-series-upgrade", "secret-changed"] {
        let run = unit.hook(hook);
        assert_ok(&unit, &run);
        assert!(logged(
            &unit,
            "INFO",
            &format!("{hook} hook: nothing to do")
        ));
    }
    assert!(unit.statuses().is_empty());
}

#[test]
fn dispatch_without_the_exec_bit_fails_every_hook() {
    use std::os::unix::fs::PermissionsExt;
    let Some((unit, _)) = related_unit("calico/0", false) else {
        return;
    };
    let dispatch = unit.charm_dir.join("dispatch");
    std::fs::set_permissions(&dispatch, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = unit.hook("install");
    assert_eq!(run.code, None, "{run:?}");
    assert!(run.stderr.contains("ermission denied"), "{}", run.stderr);
    assert_eq!(unit.status(), pair("error", "hook failed: \"install\""));
}

#[test]
fn old_juju_runs_hooks_directly_without_a_dispatch_path() {
    let Some((mut unit, rid)) = related_unit("calico/0", false) else {
        return;
    };
    unit.legacy = true;
    let run = unit.hook("install");
    assert_ok(&unit, &run);
    assert_eq!(run.handler, "hooks/install");
    assert!(logged(&unit, "INFO", "install hook: active \"Ready\""));
    let run = unit.relation_hook("changed", &rid);
    assert_ok(&unit, &run);
    assert!(logged(&unit, "INFO", "cni-relation-changed hook: active"));
}

#[test]
fn unknown_action_fails_the_action_not_the_unit() {
    let Some((unit, _)) = related_unit("calico/0", false) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    let run = unit.action("list-versions", json!({}));
    assert_ok(&unit, &run);
    let records = unit.action_records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["fail"],
        json!("unknown action \"list-versions\"")
    );
    assert_eq!(unit.status(), ready());
}

#[test]
fn dispatch_outside_juju_says_what_is_missing() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_calico-charm"))
        .arg("dispatch")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot tell which hook to run"), "{stderr}");
}

/// Without a peer relation (Juju creates it once metadata declares it; the harness does not)
/// the peer step costs one `relation-ids calico`; the datastore choice `state-get datastore`
/// and `relation-ids etcd`.
#[test]
fn a_quiet_update_status_makes_thirteen_tool_calls() {
    let Some((unit, _)) = related_unit("calico/0", true) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    assert_ok(&unit, &unit.hook("update-status"));
    let tools: Vec<String> = unit
        .calls()
        .into_iter()
        .filter(|c| c.hook == "update-status")
        .map(|c| c.tool)
        .collect();
    assert_eq!(
        tools,
        [
            "config-get",
            "relation-ids",
            "relation-set",
            "relation-list",
            "relation-get",
            "is-leader",
            "network-get",
            "relation-ids",
            "state-get",
            "relation-ids",
            "status-set",
            "application-version-set",
            "juju-log",
        ]
    );
}

#[test]
fn dispatch_finds_the_charm_from_its_own_path_without_juju_charm_dir() {
    let Some((unit, _)) = related_unit("calico/0", false) else {
        return;
    };
    let mut env = unit.hook_env("install");
    env.remove("JUJU_CHARM_DIR");
    env.remove("CHARM_DIR");
    unit.begin("install");
    // As an old agent would: hooks/install directly, no JUJU_DISPATCH_PATH either.
    let out = std::process::Command::new(unit.charm_dir.join("hooks/install"))
        .env_clear()
        .envs(&env)
        .current_dir(&unit.charm_dir)
        .output()
        .unwrap();
    unit.end("install", out.status.code().unwrap_or(-1));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        unit.transcript()
    );
    assert_eq!(unit.status(), ready());
    assert!(logged(&unit, "INFO", "install hook: active"));
}
