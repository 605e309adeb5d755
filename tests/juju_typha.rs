//! Typha end to end: the packed charm's leader, run as Juju runs it, against the real API
//! server: `typha=auto` deploys calico-typha once the cluster has more than 50 Nodes (with
//! the tigera operator's replica count), `typha=false` removes every object of it and points
//! calico-node back at the API server, `typha=true` deploys it on a small cluster.

mod juju_harness;
mod support;

use juju_harness::{Unit, assert_ok};
use serde_json::{Value, json};
use support::apiserver::{Options, TestApiServer};

const IMAGE: &str = "docker.io/calico/node:v3.29.2";

fn leader(server: &TestApiServer) -> Unit {
    let mut unit = Unit::on_cluster("calico/0", true, "node-0", |path| {
        server.write_kubeconfig(path)
    });
    unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "5");
    unit.set_env("CALICO_CHARM_POOL_SETTLE_MS", "10");
    for spec in calico_charm::config::options::specs().expect("config.yaml") {
        unit.set_config(&spec.name, spec.default.clone().unwrap_or(Value::Null));
    }
    unit.set_config("calico-node-image", json!(IMAGE));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.29.2"),
    );
    unit
}

fn add_nodes(server: &TestApiServer, from: u32, to: u32) {
    for i in from..to {
        server
            .insert(json!({"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": format!("extra-{i}")}}))
            .expect("node");
    }
}

fn hook(unit: &Unit, name: &str) {
    let run = unit.hook(name);
    assert_ok(unit, &run);
}

/// Every calico-typha object the charm applies, as (kind, present).
fn typha_objects(server: &TestApiServer) -> Vec<(&'static str, bool)> {
    let ns = Some("kube-system");
    vec![
        (
            "Deployment",
            server
                .get("apps/v1", "Deployment", ns, "calico-typha")
                .is_some(),
        ),
        (
            "Service",
            server.get("v1", "Service", ns, "calico-typha").is_some(),
        ),
        (
            "PodDisruptionBudget",
            server
                .get("policy/v1", "PodDisruptionBudget", ns, "calico-typha")
                .is_some(),
        ),
        (
            "ServiceAccount",
            server
                .get("v1", "ServiceAccount", ns, "calico-typha")
                .is_some(),
        ),
        (
            "ClusterRole",
            server
                .get(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRole",
                    None,
                    "calico-typha",
                )
                .is_some(),
        ),
        (
            "ClusterRoleBinding",
            server
                .get(
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRoleBinding",
                    None,
                    "calico-typha",
                )
                .is_some(),
        ),
    ]
}

fn all(present: bool) -> Vec<(&'static str, bool)> {
    [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ]
    .into_iter()
    .map(|k| (k, present))
    .collect()
}

fn typha_service_name(server: &TestApiServer) -> String {
    let cm = server
        .get("v1", "ConfigMap", Some("kube-system"), "calico-config")
        .expect("calico-config");
    cm["data"]["typha_service_name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// calico-node's `FELIX_TYPHAK8SSERVICENAME`, as (ConfigMap, key) it is read from.
fn felix_typha_env(server: &TestApiServer) -> Option<(String, String)> {
    let ds = server
        .get("apps/v1", "DaemonSet", Some("kube-system"), "calico-node")
        .expect("calico-node");
    let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    env.iter()
        .find(|e| e["name"] == "FELIX_TYPHAK8SSERVICENAME")
        .map(|e| {
            let r = &e["valueFrom"]["configMapKeyRef"];
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["key"].as_str().unwrap_or_default().to_string(),
            )
        })
}

fn replicas(server: &TestApiServer) -> i64 {
    let d = server
        .get("apps/v1", "Deployment", Some("kube-system"), "calico-typha")
        .expect("calico-typha");
    d["spec"]["replicas"].as_i64().expect("replicas")
}

/// Run update-status until `done` holds, at most four times (one round of the leader's
/// rotating reads, `apply::checks`, which re-counts the Nodes once a round).
fn update_status_until(unit: &Unit, done: impl Fn() -> bool) {
    for _ in 0..4 {
        hook(unit, "update-status");
        if done() {
            return;
        }
    }
}

#[test]
fn typha_follows_the_node_count_and_the_option_and_is_pruned_when_not_wanted() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    server.add_ready_node("node-0", None, IMAGE);
    let unit = leader(&server);

    // 50 Nodes: auto deploys no Typha.
    add_nodes(&server, 1, 50);
    hook(&unit, "install");
    assert_eq!(typha_objects(&server), all(false));
    assert_eq!(typha_service_name(&server), "none");
    assert_eq!(felix_typha_env(&server), None);

    // 51 Nodes: auto deploys it, 3 replicas (51/200 + 2 = 2, at least 3). Without an agent
    // update-status re-counts the Nodes in its turn: within four of them.
    // Never in part: the hook that counts 51 applies every Typha object at once.
    add_nodes(&server, 50, 51);
    update_status_until(&unit, || {
        let objects = typha_objects(&server);
        assert!(objects == all(false) || objects == all(true), "{objects:?}");
        objects == all(true)
    });
    assert_eq!(typha_objects(&server), all(true));
    assert_eq!(replicas(&server), 3);
    assert_eq!(typha_service_name(&server), "calico-typha");
    assert_eq!(
        felix_typha_env(&server),
        Some(("calico-config".into(), "typha_service_name".into()))
    );
    let deployment = server
        .get("apps/v1", "Deployment", Some("kube-system"), "calico-typha")
        .expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "calico-typha");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["containers"][0]["image"],
        "docker.io/calico/typha:v3.29.2"
    );
    assert_eq!(pod["containers"][0]["ports"][0]["containerPort"], 5473);
    let service = server
        .get("v1", "Service", Some("kube-system"), "calico-typha")
        .expect("service");
    assert_eq!(service["spec"]["ports"][0]["port"], 5473);
    assert_eq!(service["spec"]["selector"]["k8s-app"], "calico-typha");
    let (status, _) = unit.status();
    assert_eq!(status, "active");

    // typha=false: every object of it goes, calico-node talks to the API server again.
    unit.set_config("typha", json!("false"));
    hook(&unit, "config-changed");
    assert_eq!(typha_objects(&server), all(false));
    assert_eq!(typha_service_name(&server), "none");
    assert_eq!(felix_typha_env(&server), None);

    // typha=true on a 51-Node cluster, then (Nodes gone) on a 1-Node one: 3, then 1.
    unit.set_config("typha", json!("true"));
    hook(&unit, "config-changed");
    assert_eq!(typha_objects(&server), all(true));
    assert_eq!(replicas(&server), 3);
    for i in 1..51 {
        server.remove("v1", "Node", None, &format!("extra-{i}"));
    }
    update_status_until(&unit, || replicas(&server) == 1);
    assert_eq!(replicas(&server), 1);

    // An invalid value is refused naming the option and value, and nothing is touched.
    unit.set_config("typha", json!("maybe"));
    hook(&unit, "config-changed");
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(
        message.contains("typha: \"maybe\": expected one of auto, true, false"),
        "{message}"
    );
    assert_eq!(typha_objects(&server), all(true));
}
