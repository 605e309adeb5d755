//! Issue 9's classes of defects, through the packed charm as the unit agent runs it: secrets
//! never leave (status, debug-log, relation data, stderr), every hook ends within its deadline
//! whatever the API server does, memory has a ceiling, nothing panics, faults are classified
//! by what the operator must do.

mod juju_harness;
mod support;

use std::time::Duration;

use juju_harness::{KUBECONFIG_HASH, Unit};
use support::apiserver::{Options, TestApiServer};
use support::rawserver::{Behaviour, RawServer};
use support::tls::base64;

/// A related unit on `worker-0`, with small API budgets so that deadline tests are fast.
fn unit(name: &str, leader: bool) -> (Unit, String) {
    let mut unit = Unit::new(name);
    unit.set_leader(leader);
    let rid = unit.relate_cni(4, &[("kubeconfig-hash", KUBECONFIG_HASH)]);
    unit.set_env("NODENAME", "worker-0");
    unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "3");
    unit.set_env("CALICO_CHARM_API_TIMEOUT_SECS", "1");
    unit.set_env("CALICO_CHARM_API_BASE_DELAY_MS", "50");
    (unit, rid)
}

/// The cluster with `worker-0` registered; `None` when the envtest tests are skipped.
fn cluster() -> Option<TestApiServer> {
    cluster_with(Options::default())
}

/// The same, from `options`.
fn cluster_with(options: Options) -> Option<TestApiServer> {
    let server = envtest!(options)?;
    server.add_ready_node("worker-0", None, "docker.io/calico/node:v3.6.1");
    Some(server)
}

/// Everything the unit sent out of the machine: statuses, debug-log lines, relation data,
/// action results, and the hooks' stdout/stderr (which Juju logs).
fn everything_sent(unit: &Unit, runs: &[juju_harness::HookRun]) -> String {
    let mut all = String::new();
    for s in unit.statuses() {
        all.push_str(&format!("status {} {}\n", s.status, s.message));
    }
    for l in unit.logs() {
        all.push_str(&format!("log {}\n", l.message));
    }
    for (_, rid, data) in unit.relation_sets() {
        all.push_str(&format!("relation-set {rid} {data:?}\n"));
    }
    for record in unit.action_records() {
        all.push_str(&format!("action {record}\n"));
    }
    for run in runs {
        all.push_str(&run.stdout);
        all.push_str(&run.stderr);
    }
    all
}

fn assert_secret_absent(unit: &Unit, runs: &[juju_harness::HookRun], secret: &str) {
    let sent = everything_sent(unit, runs);
    assert!(
        !sent.contains(secret),
        "secret {secret:?} left the machine:\n{sent}"
    );
}

fn kubeconfig(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    certificate-authority-data: {}\n    server: {server}\nusers:\n- name: u\n  user:\n{user}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\ncurrent-context: c\n",
        base64(ca_pem.as_bytes())
    )
}

fn status(unit: &Unit) -> (String, String) {
    unit.status()
}

fn assert_one_line_status(unit: &Unit) {
    for s in unit.statuses() {
        assert!(!s.message.contains('\n'), "{s:?}");
        assert!(s.message.chars().count() <= 240, "{s:?}");
    }
}

#[test]
fn kubeconfig_secrets_never_reach_status_log_or_relation_data() {
    let Some(server) = cluster_with(Options::alone()) else {
        return;
    };
    let ca = server.ca_pem().to_string();
    let url = server.url();
    let token = server.token().to_string();
    let dir = tempfile::tempdir().unwrap();

    // (kubeconfig text, a secret planted in it, the status kind and a phrase of its message)
    let plugin_ok = dir.path().join("plugin-ok");
    std::fs::write(
        &plugin_ok,
        format!(
            "#!/bin/sh\nprintf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n"
        ),
    )
    .unwrap();
    let plugin_fail = dir.path().join("plugin-fail");
    std::fs::write(
        &plugin_fail,
        "#!/bin/sh\necho \"cannot log in with key $PLUGIN_KEY\" >&2\nexit 3\n",
    )
    .unwrap();
    let plugin_hang = dir.path().join("plugin-hang");
    std::fs::write(&plugin_hang, "#!/bin/sh\nexec sleep 600\n").unwrap();
    for p in [&plugin_ok, &plugin_fail, &plugin_hang] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let token_file_ok = dir.path().join("token-ok");
    std::fs::write(&token_file_ok, format!("{token}\n")).unwrap();
    let token_file_bad = dir.path().join("token-bad");
    std::fs::write(&token_file_bad, "planted-file-token-3141592\n").unwrap();
    let exec = |path: &std::path::Path, env: &str| {
        format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n      env:\n      - name: PLUGIN_KEY\n        value: {env}\n",
            path.display()
        )
    };

    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "yaml error near users",
            format!(
                "{}   broken: [\n",
                kubeconfig(&url, &ca, "    token: planted-token-yaml-2718281")
            ),
            "planted-token-yaml-2718281",
            "blocked",
            "is not valid YAML",
        ),
        (
            "token with a line break",
            kubeconfig(&url, &ca, "    token: \"planted-token-nl-1618\\nrest\""),
            "planted-token-nl-1618",
            "blocked",
            "the token contains a line break",
        ),
        (
            "token with a control character",
            kubeconfig(&url, &ca, "    token: \"planted-token-ctl-1414\\u0007\""),
            "planted-token-ctl-1414",
            "blocked",
            "the token contains a control character",
        ),
        (
            "token file with a trailing newline works",
            kubeconfig(
                &url,
                &ca,
                &format!("    tokenFile: {}", token_file_ok.display()),
            ),
            &token,
            "active",
            "Ready",
        ),
        (
            "refused token from a token file",
            kubeconfig(
                &url,
                &ca,
                &format!("    tokenFile: {}", token_file_bad.display()),
            ),
            "planted-file-token-3141592",
            "blocked",
            "denied access",
        ),
        (
            "client key",
            kubeconfig(
                &url,
                &ca,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {}",
                    base64(b"-----BEGIN CERTIFICATE-----\nplanted-cert\n-----END CERTIFICATE-----\n"),
                    base64(b"-----BEGIN PRIVATE KEY-----\nplanted-key-material-5772\n-----END PRIVATE KEY-----\n")
                ),
            ),
            "planted-key-material-5772",
            "blocked",
            "kubeconfig",
        ),
        (
            "exec plugin output",
            kubeconfig(&url, &ca, &exec(&plugin_ok, "planted-env-ok-6931")),
            &token,
            "active",
            "Ready",
        ),
        (
            "exec plugin error",
            kubeconfig(&url, &ca, &exec(&plugin_fail, "planted-env-key-1732")),
            "planted-env-key-1732",
            "blocked",
            "credential plugin",
        ),
        (
            "exec plugin that hangs",
            kubeconfig(&url, &ca, &exec(&plugin_hang, "planted-env-hang-2236")),
            "planted-env-hang-2236",
            "blocked",
            "did not finish within",
        ),
        (
            "proxy url",
            kubeconfig(&url, &ca, &format!("    token: {token}")).replace(
                "    server:",
                "    proxy-url: http://admin:planted-proxy-pw-4669@127.0.0.1:9/\n    server:",
            ),
            "planted-proxy-pw-4669",
            "blocked",
            "sets proxy-url",
        ),
        (
            "plain http",
            kubeconfig(
                &url.replace("https://", "http://"),
                &ca,
                "    token: planted-http-token-8862",
            ),
            "planted-http-token-8862",
            "blocked",
            "is plain HTTP",
        ),
    ];
    // The cases are independent units of one cluster: run them side by side, as many
    // hooks at once as Juju runs on many machines (the one that hangs takes its deadline).
    std::thread::scope(|scope| {
        for (what, text, secret, kind, phrase) in cases {
            scope.spawn(move || {
                let (unit, _rid) = unit("calico/1", false);
                std::fs::write(unit.kubeconfig(), &text).unwrap();
                let started = std::time::Instant::now();
                let runs = vec![unit.hook("install"), unit.hook("update-status")];
                for run in &runs {
                    assert!(run.ok(), "{what}: {run:?}\n{}", unit.transcript());
                }
                let (got_kind, message) = status(&unit);
                assert_eq!(got_kind, kind, "{what}: {message}\n{}", unit.transcript());
                assert!(message.contains(phrase), "{what}: {message}");
                assert_secret_absent(&unit, &runs, secret);
                assert_one_line_status(&unit);
                // Nothing waits forever: two hooks well within two deadlines (3 s + 20 s
                // each).
                assert!(started.elapsed() < Duration::from_secs(40), "{what}");
            });
        }
    });
}

#[test]
fn an_http_server_gets_no_request_at_all() {
    let Some(server) = cluster() else { return };
    let (unit, _) = unit("calico/0", true);
    let text = kubeconfig(
        &server.url().replace("https://", "http://"),
        server.ca_pem(),
        &format!("    token: {}", server.token()),
    );
    std::fs::write(unit.kubeconfig(), text).unwrap();
    assert!(unit.hook("install").ok());
    let (kind, message) = status(&unit);
    assert_eq!(kind, "blocked");
    assert!(
        message.contains(&format!(
            "server {} is plain HTTP",
            server.url().replace("https://", "http://")
        )),
        "{message}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn a_body_trickling_one_byte_at_a_time_ends_the_hook_within_its_deadline() {
    let raw = RawServer::start(Behaviour::Trickle {
        interval: Duration::from_millis(300),
    });
    let (unit, _) = unit("calico/0", true);
    std::fs::write(unit.kubeconfig(), raw.kubeconfig_yaml("trickle-token-1")).unwrap();
    let measured = unit.prepare_hook("config-changed").run_measured();
    assert_eq!(measured.run.code, Some(0), "{measured:?}");
    let (kind, message) = status(&unit);
    assert_eq!(kind, "waiting", "{message}");
    assert!(
        message.contains("did not arrive within") || message.contains("budget"),
        "{message}"
    );
    // Budget 3 s (every request, body included, draws from it) plus the hook tools.
    assert!(
        measured.wall < Duration::from_secs(10),
        "{:?}",
        measured.wall
    );
    assert!(raw.requests() >= 1);
}

#[test]
fn a_slow_but_successful_api_does_not_stretch_the_hook_past_its_budget() {
    let Some(server) = cluster() else { return };
    server.set_latency(Duration::from_millis(400));
    let (mut unit, _) = unit("calico/0", true);
    unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "2");
    server.write_kubeconfig(&unit.kubeconfig()).unwrap();
    let measured = unit.prepare_hook("config-changed").run_measured();
    assert_eq!(measured.run.code, Some(0), "{measured:?}");
    let (kind, message) = status(&unit);
    assert_eq!(kind, "waiting", "{message}");
    assert!(
        message.contains("budget for the Kubernetes API is spent"),
        "{message}"
    );
    // The leader's converge needs 26 requests (10 s at 400 ms each); the budget is 2 s.
    assert!(
        measured.wall < Duration::from_secs(8),
        "{:?}",
        measured.wall
    );
    // The next hook, on a fast API again, converges.
    server.set_latency(Duration::ZERO);
    assert!(unit.hook("update-status").ok());
    assert_eq!(status(&unit).0, "active", "{}", unit.transcript());
}

#[test]
fn a_hook_tool_that_hangs_ends_the_hook_waiting_with_exit_zero() {
    let (mut unit, _) = unit("calico/0", false);
    // is-leader hangs: the hook's deadline is 3 s + 2 s; the tool is killed when it passes.
    unit.set_env("CALICO_CHARM_HOOK_MARGIN_SECS", "2");
    let tool = unit.tools_dir.join("is-leader");
    std::fs::remove_file(&tool).unwrap();
    std::fs::write(&tool, "#!/bin/sh\nexec sleep 600\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let measured = unit.prepare_hook("config-changed").run_measured();
    assert_eq!(measured.run.code, Some(0), "{measured:?}");
    let (kind, message) = status(&unit);
    assert_eq!(kind, "waiting", "{message}");
    assert!(
        message.starts_with("hook tool is-leader did not finish within"),
        "{message}"
    );
    // The deadline (5 s), then at most a second each for the final status-set and log line.
    assert!(
        measured.wall < Duration::from_secs(12),
        "{:?}",
        measured.wall
    );
}

#[test]
fn an_invalid_nodename_blocks_naming_what_is_wrong() {
    let Some(server) = cluster() else { return };
    for (bad, why) in [
        ("../../api/v1/namespaces", "contains '/'"),
        ("Worker-0", "upper-case"),
        ("wörker-0", "non-ASCII"),
    ] {
        let (mut unit, _) = unit("calico/0", false);
        server.write_kubeconfig(&unit.kubeconfig()).unwrap();
        unit.set_env("NODENAME", bad);
        let run = unit.hook("install");
        assert!(run.ok(), "{run:?}");
        let (kind, message) = status(&unit);
        assert_eq!(kind, "blocked", "{bad}");
        assert!(message.starts_with("NODENAME "), "{message}");
        assert!(message.contains(why), "{bad}: {message}");
    }
    // Nothing was requested for any of them.
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.path.contains("..") || r.path.contains("Worker") || r.path.contains('%')),
        "{:?}",
        server.requests()
    );
}

#[test]
fn temporary_conflists_of_killed_hooks_are_removed() {
    let Some(server) = cluster() else { return };
    let (unit, _) = unit("calico/0", false);
    server.write_kubeconfig(&unit.kubeconfig()).unwrap();
    let stale = unit.cni_dir().join(".10-calico.conflist.tmp-31337");
    std::fs::write(&stale, "{\"half\": ").unwrap();
    assert!(unit.hook("install").ok());
    assert!(!stale.exists());
    assert!(unit.cni_dir().join("10-calico.conflist").exists());
}

#[test]
fn many_config_problems_are_logged_bounded_and_counted() {
    let (unit, _) = unit("calico/0", false);
    let mut peers = String::new();
    for i in 0..900 {
        peers.push_str(&format!(
            "- {{address: 10.1.{}.{}, asn: 1}}\n",
            i / 250,
            i % 250
        ));
    }
    unit.set_config("global-bgp-peers", serde_json::json!(peers));
    let started = std::time::Instant::now();
    let run = unit.hook("config-changed");
    assert!(run.ok(), "{run:?}");
    let (kind, message) = status(&unit);
    assert_eq!(kind, "blocked");
    assert!(
        message.starts_with("Invalid config: global-bgp-peers: peer 1: "),
        "{message}"
    );
    assert!(
        message.ends_with("(+1799 more, see juju debug-log)"),
        "{message}"
    );
    let logs: Vec<_> = unit
        .logs()
        .into_iter()
        .filter(|l| l.hook == "config-changed")
        .collect();
    // 20 problems in full, one line counting the rest, the summary.
    assert_eq!(logs.len(), 22, "{logs:#?}");
    assert!(
        logs.iter()
            .any(|l| l.message == "Invalid config: 1780 more not logged (`calico-charm validate --config FILE` lists them all)"),
        "{logs:#?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
