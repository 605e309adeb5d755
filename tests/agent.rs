//! The agent as a process (`calico-charm agent --dir ...`) against the real control plane
//! (through the fault proxy), fed by the real hooks of a leader unit run through
//! `charm/dispatch` (which write its desired state and install its service with the
//! stand-in `systemctl` on PATH):
//!
//! - an edited charm-owned field, a deleted owned object and a removed owned annotation are
//!   corrected within 2 s;
//! - a manager that keeps reverting a field ends in the conflict report, naming it;
//! - an API server restart (the proxy stops and serves again) ends in watches resumed from
//!   their last resourceVersion, not re-listed;
//! - update-status with the agent in sync makes no Kubernetes request at all;
//! - an invalid config makes it stop acting; `stop` disables and removes its service;
//! - SIGTERM ends it within 1 s.

mod juju_harness;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use juju_harness::{Unit, assert_ok};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::apiserver::{Options, TestApiServer};

const BINARY: &str = env!("CARGO_BIN_EXE_calico-charm");
const IMAGE: &str = "docker.io/calico/node:v3.29.2";
const PEER: &str = "calico-0-10.0.0.1-65000";

fn leader(server: &TestApiServer) -> Unit {
    let mut unit = Unit::on_cluster("calico/0", true, "node-0", |path| {
        server.write_kubeconfig(path)
    });
    unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "5");
    unit.set_env("CALICO_CHARM_POOL_SETTLE_MS", "10");
    unit.set_config("calico-node-image", json!(IMAGE));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.29.2"),
    );
    unit.set_config("unit-as-numbers", json!("{0: 64513}"));
    unit.set_config(
        "global-bgp-peers",
        json!("[{address: 10.0.0.1, as-number: 65000}]"),
    );
    unit
}

fn hook(unit: &Unit, name: &str) {
    let run = unit.hook(name);
    assert_ok(unit, &run);
}

struct Agent {
    child: Child,
    dir: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let child = Command::new(BINARY)
            .args(["agent", "--dir"])
            .arg(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start agent");
        Agent {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn state(&self) -> Value {
        std::fs::read_to_string(self.dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// Wait until the state says `ok`, at most `limit`.
    fn wait(&self, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let s = self.state();
            if ok(&s) {
                return s;
            }
            assert!(
                started.elapsed() < limit,
                "agent state not reached within {limit:?}: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn synced(&self) -> Value {
        self.wait(Duration::from_secs(20), |s| {
            s["acting"] == true && s["watches_healthy"] == true && s["last_sync"].as_u64() > Some(0)
        })
    }

    fn sigterm(&mut self) -> Duration {
        let pid = self.child.id() as i32;
        let started = Instant::now();
        // SAFETY: signalling our own child process by its pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "agent exit: {status}");
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "agent ignores SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peers_api(server: &TestApiServer) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "crd.projectcalico.org".into(),
        version: "v1".into(),
        api_version: "crd.projectcalico.org/v1".into(),
        kind: "BGPPeer".into(),
        plural: "bgppeers".into(),
    };
    Api::all_with(server.admin_client(), &ar)
}

fn block<F: std::future::Future + Send + 'static>(f: F) -> F::Output
where
    F::Output: Send + 'static,
{
    support::apiserver::block(f)
}

/// An admin edits the peer's AS number as `manager` would (a merge patch, an Update).
fn edit_peer(server: &TestApiServer, manager: &str, asn: u32) {
    let api = peers_api(server);
    let pp = PatchParams {
        field_manager: Some(manager.to_string()),
        ..PatchParams::default()
    };
    block(async move {
        api.patch(PEER, &pp, &Patch::Merge(json!({"spec": {"asNumber": asn}})))
            .await
            .expect("edit peer");
    });
}

fn peer_asn(server: &TestApiServer) -> Option<u64> {
    server
        .get("crd.projectcalico.org/v1", "BGPPeer", None, PEER)
        .and_then(|p| p["spec"]["asNumber"].as_u64())
}

/// How long until `ok` holds (panics after 2 s: the agent's promise).
fn corrected_within_2s(what: &str, ok: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: not corrected within 2 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

#[test]
fn the_agent_corrects_drift_reports_a_fight_resumes_after_a_restart_and_stops_on_sigterm() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    server.add_ready_node("node-0", None, IMAGE);
    let unit = leader(&server);
    hook(&unit, "install");
    // The hook installed the service with systemctl and wrote the desired state (0600).
    let calls = unit.systemctl_calls();
    assert_eq!(
        calls,
        [
            "daemon-reload",
            "enable calico-charm-agent-calico-0.service",
            "restart calico-charm-agent-calico-0.service",
        ],
        "{calls:?}"
    );
    let unit_file = std::fs::read_to_string(
        unit.systemd_dir()
            .join("calico-charm-agent-calico-0.service"),
    )
    .expect("unit file");
    assert!(
        unit_file.lines().any(|l| l.starts_with("ExecStart=/")
            && l.ends_with(&format!(
                "/charm/bin/calico-charm agent --dir {}",
                unit.agent_dir().display()
            ))),
        "{unit_file}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(unit.agent_dir().join("desired.json"))
        .expect("desired.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(peer_asn(&server), Some(65000));

    let mut agent = Agent::start(&unit.agent_dir());
    let started = agent.synced();
    assert_eq!(
        started["corrections"], 0,
        "nothing to correct at start: {started:#}"
    );

    // 1. A charm-owned field edited.
    edit_peer(&server, "kubectl-edit", 65009);
    let t = corrected_within_2s("edited peer", || peer_asn(&server) == Some(65000));
    eprintln!("edit corrected in {t:?}");

    // 2. An owned object deleted.
    server.remove("crd.projectcalico.org/v1", "BGPPeer", None, PEER);
    let t = corrected_within_2s("deleted peer", || peer_asn(&server) == Some(65000));
    eprintln!("delete corrected in {t:?}");

    // 3. An owned annotation removed from the Node.
    let key = "projectcalico.org/ASNumber";
    let node_ann = |s: &TestApiServer| {
        s.get("v1", "Node", None, "node-0").and_then(|n| {
            n["metadata"]["annotations"][key]
                .as_str()
                .map(str::to_string)
        })
    };
    let before = node_ann(&server).expect("AS annotation");
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(server.admin_client());
    block(async move {
        nodes
            .patch(
                "node-0",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: null}}})),
            )
            .await
            .expect("remove annotation");
    });
    let t = corrected_within_2s("removed annotation", || {
        node_ann(&server).as_deref() == Some(before.as_str())
    });
    eprintln!("annotation corrected in {t:?}");

    // 4. A leader's workload edited (the ConfigMap).
    let cms = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        server.admin_client(),
        "kube-system",
    );
    let cms2 = cms.clone();
    block(async move {
        cms2.patch(
            "calico-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"veth_mtu": "1234"}})),
        )
        .await
        .expect("edit configmap");
    });
    let mtu = |s: &TestApiServer| {
        s.get("v1", "ConfigMap", Some("kube-system"), "calico-config")
            .and_then(|c| c["data"]["veth_mtu"].as_str().map(str::to_string))
    };
    corrected_within_2s("edited ConfigMap", || mtu(&server).as_deref() == Some("0"));
    let _ = cms;
    let s = agent.wait(Duration::from_secs(3), |s| {
        s["corrections"].as_u64() >= Some(4)
    });
    assert!(s["conflicts"].as_array().is_none_or(Vec::is_empty), "{s:#}");

    // 5. API server restart: the watches resume from their last resourceVersion.
    server.reset_requests();
    server.stop();
    std::thread::sleep(Duration::from_millis(600));
    server.restart().expect("restart");
    agent.wait(Duration::from_secs(10), |s| s["watches_healthy"] == true);
    edit_peer(&server, "kubectl-edit", 65010);
    corrected_within_2s("edit after the restart", || {
        peer_asn(&server) == Some(65000)
    });
    let after = server.requests();
    let peer_requests: Vec<String> = after
        .iter()
        .filter(|r| r.user_agent.starts_with("calico-charm-agent") && r.path.ends_with("/bgppeers"))
        .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
        .collect();
    assert!(
        peer_requests.iter().all(|r| r.contains("watch=true")),
        "no re-list after the restart: {peer_requests:#?}"
    );
    assert!(
        peer_requests.iter().any(|r| r.contains("watch=true")
            && r.contains("resourceVersion=")
            && !r.contains("resourceVersion=&")
            && !r.ends_with("resourceVersion=")),
        "a watch from the last resourceVersion: {peer_requests:#?}"
    );

    // 6. update-status with the agent in sync: no Kubernetes request from the hook.
    agent.synced();
    server.reset_requests();
    hook(&unit, "update-status");
    let hook_requests: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| !r.user_agent.starts_with("calico-charm-agent"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(hook_requests, Vec::<String>::new());
    let (status, message) = unit.status();
    assert_eq!(status, "active", "{message}");
    assert!(
        message.starts_with("Ready")
            && message.contains("(agent: ")
            && message.contains("drifts corrected"),
        "{message}"
    );

    // 7. A manager that keeps reverting: corrected a few times, then reported, named.
    let started = Instant::now();
    let fighter = loop {
        if peer_asn(&server) != Some(65111) {
            edit_peer(&server, "fighting-controller", 65111);
        }
        let s = agent.state();
        if let Some(c) = s["conflicts"].as_array().and_then(|c| c.first()) {
            break c.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no conflict reported: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(30));
    };
    assert_eq!(
        fighter,
        json!({"object": format!("BGPPeer/{PEER}"), "manager": "fighting-controller"})
    );
    // ... and it stops correcting: the fighter's value stays.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(peer_asn(&server), Some(65111));
    hook(&unit, "update-status");
    let (_, message) = unit.status();
    assert!(
        message.contains(&format!(
            "agent conflict: BGPPeer/{PEER} keeps being changed by fighting-controller"
        )),
        "{message}"
    );

    // 8. An invalid config: the agent stops acting (and corrects nothing).
    unit.set_config("typha", json!("maybe"));
    hook(&unit, "config-changed");
    agent.wait(Duration::from_secs(3), |s| s["acting"] == false);
    unit.set_config("typha", json!("auto"));

    // 9. SIGTERM: gone within a second.
    let took = agent.sigterm();
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");

    // 10. stop: the service disabled and removed before the unit's objects go.
    hook(&unit, "stop");
    let calls = unit.systemctl_calls();
    assert!(
        calls.ends_with(&[
            "disable --now calico-charm-agent-calico-0.service".to_string(),
            "daemon-reload".to_string(),
        ]),
        "{calls:?}"
    );
    assert!(
        !unit
            .systemd_dir()
            .join("calico-charm-agent-calico-0.service")
            .exists()
    );
    assert!(!unit.agent_dir().join("desired.json").exists());
}
