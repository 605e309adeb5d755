//! Converge through a real kube client against the test API server (HTTPS, bearer token,
//! server-side apply with managed fields, Calico's upstream CRD schemas, fault injection).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use calico_charm::apply::Cluster;
use calico_charm::apply::kube::connect_with;
use calico_charm::apply::retry::RetrySettings;
use calico_charm::apply::{
    ConvergeOptions, KubeCluster, KubeDatastore, Outcome, check_node_agent, converge_with,
};
use calico_charm::calico::{
    AS_NUMBER_ANNOTATION, BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec, IPPool,
    IPPoolSpec, MANAGED_BY, MANAGED_BY_LABEL, RR_CLUSTER_ID_ANNOTATION, UNIT_LABEL,
};
use calico_charm::render::workloads::Workloads;
use calico_charm::render::{Desired, NodeBgp, Pools};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::apiserver::{Access, Options, TestApiServer};

const CALICO: &str = "crd.projectcalico.org/v1";

// ---- setup ---------------------------------------------------------------------------------

struct Env {
    server: TestApiServer,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

/// A fresh cluster with `nodes` registered; `None` when the envtest tests are skipped.
fn env_with(options: Options, nodes: &[&str]) -> Option<Env> {
    let server = envtest!(options)?;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    for node in nodes {
        add_node(&server, node, json!({}));
    }
    Some(Env {
        server,
        _dir: dir,
        kubeconfig,
    })
}

fn env(nodes: &[&str]) -> Option<Env> {
    env_with(Options::default(), nodes)
}

fn add_node(server: &TestApiServer, name: &str, annotations: Value) {
    server
        .insert(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": annotations, "labels": {"kubernetes.io/hostname": name}}
        }))
        .unwrap();
}

fn fast_retry() -> RetrySettings {
    RetrySettings {
        budget: Duration::from_secs(3),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
    }
}

fn options() -> ConvergeOptions {
    ConvergeOptions {
        pool_settle: Duration::ZERO,
        ..ConvergeOptions::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(env: &Env, retry: RetrySettings) -> KubeDatastore {
    connect_with(&env.kubeconfig, retry).await.unwrap()
}

/// One hook: a fresh client (a fresh retry budget), one converge.
fn hook(env: &Env, desired: &Desired) -> Outcome {
    hook_with(env, desired, fast_retry())
}

fn hook_with(env: &Env, desired: &Desired, retry: RetrySettings) -> Outcome {
    rt().block_on(async {
        let ds = connect(env, retry).await;
        converge_with(desired, &ds, &ds, &options()).await
    })
}

// ---- desired values, shaped as render makes them -----------------------------------------

fn owner(unit: u32) -> String {
    format!("calico-{unit}")
}

fn labels(owner: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string())]);
    if let Some(o) = owner {
        l.insert(UNIT_LABEL.to_string(), o.to_string());
    }
    l
}

fn pool(name: &str, cidr: &str) -> IPPool {
    let mut p = IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.to_string(),
            ipip_mode: Some("Always".into()),
            vxlan_mode: Some("Never".into()),
            nat_outgoing: Some(true),
            disabled: Some(false),
            ..IPPoolSpec::default()
        },
    );
    p.metadata.labels = Some(labels(None));
    p
}

fn peer(unit: u32, node: &str, ip: &str, asn: u32) -> BGPPeer {
    let o = owner(unit);
    let mut p = BGPPeer::new(
        &format!("{o}-{ip}-{asn}"),
        BGPPeerSpec {
            node: Some(node.to_string()),
            peer_ip: Some(ip.to_string()),
            as_number: Some(asn),
            ..BGPPeerSpec::default()
        },
    );
    p.metadata.labels = Some(labels(Some(&o)));
    p
}

fn bgp(asn: u32, mesh: bool) -> BGPConfiguration {
    let mut c = BGPConfiguration::new(
        "default",
        BGPConfigurationSpec {
            as_number: Some(asn),
            node_to_node_mesh_enabled: Some(mesh),
            log_severity_screen: None,
            ..BGPConfigurationSpec::default()
        },
    );
    c.metadata.labels = Some(labels(None));
    c
}

fn unit(unit: u32, node: &str, peers: &[&str], annotations: &[(&str, &str)]) -> Desired {
    Desired {
        owner: owner(unit),
        pools: Pools::Unmanaged,
        bgp_configuration: None,
        peers: peers.iter().map(|ip| peer(unit, node, ip, 64512)).collect(),
        node: NodeBgp {
            node_name: node.to_string(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        workloads: None,
        node_status: None,
    }
}

fn leader(node: &str, cidr: &str, peers: &[&str], annotations: &[(&str, &str)]) -> Desired {
    Desired {
        pools: Pools::Managed(vec![pool("ipv4", cidr)]),
        bgp_configuration: Some(bgp(64512, false)),
        ..unit(0, node, peers, annotations)
    }
}

fn stopping(u: u32, node: &str) -> Desired {
    unit(u, node, &[], &[])
}

// ---- reading the server ----------------------------------------------------------------------

fn names(server: &TestApiServer, kind: &str) -> Vec<String> {
    let mut n: Vec<String> = server
        .list(CALICO, kind, None)
        .iter()
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    n.sort();
    n
}

fn calico(server: &TestApiServer, kind: &str, name: &str) -> Value {
    server
        .get(CALICO, kind, None, name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

fn annotations(server: &TestApiServer, node: &str) -> BTreeMap<String, String> {
    server
        .get_as::<Node>(None, node)
        .and_then(|n| n.metadata.annotations)
        .unwrap_or_default()
}

fn add_block(server: &TestApiServer, cidr: &str, allocated: bool) {
    let name = cidr.replace(['.', '/'], "-");
    let allocations: Vec<Value> = (0..64)
        .map(|i| {
            if allocated && i == 1 {
                json!(0)
            } else {
                Value::Null
            }
        })
        .collect();
    server
        .insert(json!({
            "apiVersion": CALICO, "kind": "IPAMBlock",
            "metadata": {"name": name},
            "spec": {"cidr": cidr, "affinity": "host:n0", "allocations": allocations,
                     "unallocated": [], "attributes": [], "strictAffinity": false}
        }))
        .unwrap();
}

/// Writes (anything but GET) the server answered since the last reset.
fn writes(server: &TestApiServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

// ---- tests -----------------------------------------------------------------------------------

#[test]
fn objects_appear_exactly_as_rendered_and_a_second_hook_is_a_no_op() {
    let Some(env) = env(&["n0"]) else { return };
    let want = leader(
        "n0",
        "10.1.0.0/16",
        &["10.0.0.1", "10.0.0.2"],
        &[(AS_NUMBER_ANNOTATION, "64513")],
    );
    let out = hook(&env, &want);
    assert!(out.settled(), "{out:?}");
    let s = &env.server;

    assert_eq!(names(s, "IPPool"), vec!["ipv4"]);
    let p = calico(s, "IPPool", "ipv4");
    assert_eq!(p["spec"]["cidr"], "10.1.0.0/16");
    assert_eq!(p["spec"]["ipipMode"], "Always");
    assert_eq!(p["spec"]["vxlanMode"], "Never");
    assert_eq!(p["spec"]["natOutgoing"], true);
    assert_eq!(p["spec"]["disabled"], false);
    assert_eq!(p["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);

    assert_eq!(
        names(s, "BGPPeer"),
        vec!["calico-0-10.0.0.1-64512", "calico-0-10.0.0.2-64512"]
    );
    let typed: BGPPeer =
        serde_json::from_value(calico(s, "BGPPeer", "calico-0-10.0.0.1-64512")).unwrap();
    assert_eq!(typed.spec, want.peers[0].spec);
    assert_eq!(typed.metadata.labels, want.peers[0].metadata.labels);

    let c = calico(s, "BGPConfiguration", "default");
    assert_eq!(c["spec"]["asNumber"], 64512);
    assert_eq!(c["spec"]["nodeToNodeMeshEnabled"], false);
    let managers: Vec<&str> = c["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"calico-charm"), "{managers:?}");

    assert_eq!(
        annotations(s, "n0")
            .get(AS_NUMBER_ANNOTATION)
            .map(String::as_str),
        Some("64513")
    );

    // A second hook with the same config: nothing changes on the server, and it costs one
    // read per kind and no write (issue 10: what already matches is not applied).
    let rv = s.resource_version();
    s.reset_requests();
    let out = hook(&env, &want);
    assert_eq!(out, Outcome::default());
    assert_eq!(s.resource_version(), rv, "a no-op converge wrote something");
    let requests: Vec<String> = s
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        requests,
        vec![
            "GET /api/v1/nodes/n0",
            "GET /apis/crd.projectcalico.org/v1/ippools",
            "GET /apis/crd.projectcalico.org/v1/bgppeers",
            "GET /apis/crd.projectcalico.org/v1/bgpconfigurations/default",
        ]
    );
    // The peer list was label-selected, never the whole cluster's.
    let list = s
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/bgppeers"))
        .unwrap();
    assert!(list.query.contains("labelSelector="), "{}", list.query);
}

#[test]
fn config_change_prunes_peers_and_annotations_and_spares_others() {
    let Some(env) = env(&["n0", "n1"]) else {
        return;
    };
    let s = &env.server;
    // An admin's own peer and node annotation, and another unit's peer.
    s.insert(json!({"apiVersion": CALICO, "kind": "BGPPeer", "metadata": {"name": "tor-a", "labels": {"rack": "a"}},
                    "spec": {"peerIP": "10.9.9.9", "asNumber": 65000}}))
        .unwrap();
    add_node(s, "n0", json!({"example.com/owner": "ops"}));
    hook(&env, &unit(1, "n1", &["10.0.1.1"], &[]));

    let first = unit(
        0,
        "n0",
        &["10.0.0.1", "10.0.0.2"],
        &[
            (AS_NUMBER_ANNOTATION, "64513"),
            (RR_CLUSTER_ID_ANNOTATION, "244.0.0.1"),
        ],
    );
    assert!(hook(&env, &first).settled());
    assert_eq!(annotations(s, "n0").len(), 3);

    let second = unit(
        0,
        "n0",
        &["10.0.0.2", "10.0.0.3"],
        &[(AS_NUMBER_ANNOTATION, "64514")],
    );
    let out = hook(&env, &second);
    assert!(out.settled(), "{out:?}");
    assert_eq!(out.deleted, vec!["BGPPeer/calico-0-10.0.0.1-64512"]);
    assert_eq!(
        names(s, "BGPPeer"),
        vec![
            "calico-0-10.0.0.2-64512",
            "calico-0-10.0.0.3-64512",
            "calico-1-10.0.1.1-64512",
            "tor-a"
        ]
    );
    assert_eq!(
        annotations(s, "n0"),
        BTreeMap::from([
            (AS_NUMBER_ANNOTATION.to_string(), "64514".to_string()),
            ("example.com/owner".to_string(), "ops".to_string()),
        ])
    );
    let tor = calico(s, "BGPPeer", "tor-a");
    assert_eq!(tor["metadata"]["labels"], json!({"rack": "a"}));
}

#[test]
fn annotation_set_by_another_manager_is_removed_when_no_longer_wanted() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    // As `kubectl annotate` would: a merge patch by another field manager.
    rt().block_on(async {
        let client = s.kube_client_without_retry().await.unwrap();
        let patch = json!({"metadata": {"annotations": {RR_CLUSTER_ID_ANNOTATION: "244.0.0.9", "keep": "me"}}});
        Api::<Node>::all(client)
            .patch("n0", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    });
    let out = hook(&env, &unit(0, "n0", &[], &[]));
    assert!(out.settled(), "{out:?}");
    assert_eq!(
        annotations(s, "n0"),
        BTreeMap::from([("keep".to_string(), "me".to_string())])
    );
}

#[test]
fn admin_fields_on_the_bgp_configuration_survive() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    rt().block_on(async {
        let client = s.kube_client_without_retry().await.unwrap();
        let patch = json!({"apiVersion": CALICO, "kind": "BGPConfiguration",
                           "metadata": {"name": "default"},
                           "spec": {"logSeverityScreen": "Debug", "asNumber": 65001}});
        Api::<BGPConfiguration>::all(client)
            .patch(
                "default",
                &PatchParams::apply("admin"),
                &Patch::Apply(&patch),
            )
            .await
            .unwrap();
    });
    let out = hook(&env, &leader("n0", "10.1.0.0/16", &[], &[]));
    assert!(out.settled(), "{out:?}");
    let c = calico(s, "BGPConfiguration", "default");
    assert_eq!(c["spec"]["logSeverityScreen"], "Debug");
    // The charm's field wins (forced apply).
    assert_eq!(c["spec"]["asNumber"], 64512);
    assert_eq!(c["spec"]["nodeToNodeMeshEnabled"], false);
}

#[test]
fn cidr_change_disables_then_deletes_the_old_pool_once_its_blocks_are_gone() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    assert!(hook(&env, &leader("n0", "10.1.0.0/16", &[], &[])).settled());
    add_block(s, "10.1.0.0/26", true);

    let want = leader("n0", "10.2.0.0/16", &[], &[]);
    let out = hook(&env, &want);
    assert_eq!(
        out.waiting_messages(),
        vec!["Draining IP pool ipv4 (10.1.0.0/16)".to_string()],
        "{out:?}"
    );
    assert_eq!(names(s, "IPPool"), vec!["ipv4", "ipv4-10-2-0-0-16"]);
    assert_eq!(calico(s, "IPPool", "ipv4")["spec"]["disabled"], true);
    assert_eq!(
        calico(s, "IPPool", "ipv4-10-2-0-0-16")["spec"]["disabled"],
        false
    );
    // The old pool kept its other settings while draining.
    assert_eq!(calico(s, "IPPool", "ipv4")["spec"]["natOutgoing"], true);
    assert_eq!(calico(s, "IPPool", "ipv4")["spec"]["ipipMode"], "Always");

    // Still allocated: the next hook waits again.
    let out = hook(&env, &want);
    assert_eq!(out.waiting().count(), 1, "{out:?}");
    assert_eq!(names(s, "IPPool").len(), 2);

    s.remove(CALICO, "IPAMBlock", None, "10-1-0-0-26");
    let out = hook(&env, &want);
    assert!(out.settled(), "{out:?}");
    assert_eq!(out.deleted, vec!["IPPool/ipv4"]);
    assert_eq!(names(s, "IPPool"), vec!["ipv4-10-2-0-0-16"]);
}

#[test]
fn server_errors_and_throttling_are_retried() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    s.fail_next(2, 503);
    let out = hook(&env, &unit(0, "n0", &["10.0.0.1"], &[]));
    assert!(out.settled(), "{out:?}");
    assert_eq!(names(s, "BGPPeer"), vec!["calico-0-10.0.0.1-64512"]);

    s.throttle_next(1, 1);
    let started = Instant::now();
    let out = hook(&env, &unit(0, "n0", &["10.0.0.2"], &[]));
    assert!(out.settled(), "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(names(s, "BGPPeer"), vec!["calico-0-10.0.0.2-64512"]);

    s.drop_next(2);
    let out = hook(&env, &unit(0, "n0", &["10.0.0.3"], &[]));
    assert!(out.settled(), "{out:?}");
    assert_eq!(names(s, "BGPPeer"), vec!["calico-0-10.0.0.3-64512"]);
}

#[test]
fn api_down_waits_within_the_budget_then_converges_after_recovery() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    let want = unit(0, "n0", &["10.0.0.1"], &[(AS_NUMBER_ANNOTATION, "64513")]);
    s.stop();
    let mut retry = fast_retry();
    retry.budget = Duration::from_millis(800);
    let started = Instant::now();
    let out = hook_with(&env, &want, retry);
    let took = started.elapsed();
    assert_eq!(out.waiting().count(), 1, "{out:?}");
    assert!(
        out.waiting_messages()[0].starts_with("Kubernetes API unavailable: "),
        "{out:?}"
    );
    assert!(out.blocked().next().is_none());
    assert!(took < Duration::from_secs(4), "{took:?}");

    s.restart().unwrap();
    let out = hook(&env, &want);
    assert!(out.settled(), "{out:?}");
    assert_eq!(names(s, "BGPPeer"), vec!["calico-0-10.0.0.1-64512"]);
}

#[test]
fn persistent_server_errors_end_in_waiting_with_the_cause() {
    let Some(env) = env(&["n0"]) else { return };
    env.server.fail_next(1_000, 503);
    let mut retry = fast_retry();
    // Long enough that the first answer (a 503) arrives on a loaded machine: with 500 ms the
    // budget could run out before any answer, and the cause read "budget spent" instead.
    retry.budget = Duration::from_secs(2);
    let out = hook_with(&env, &unit(0, "n0", &[], &[]), retry);
    assert_eq!(out.waiting().count(), 1, "{out:?}");
    assert!(
        out.waiting_messages()[0].starts_with("Kubernetes API unavailable: HTTP 503"),
        "{out:?}"
    );
}

#[test]
fn denied_access_blocks() {
    let Some(env) = env(&["n0"]) else { return };
    env.server.set_access(Access::Deny);
    let out = hook(&env, &unit(0, "n0", &["10.0.0.1"], &[]));
    assert_eq!(out.blocked().count(), 1, "{out:?}");
    assert!(
        out.blocked_messages()[0].starts_with("Kubernetes API denied access: "),
        "{out:?}"
    );
    assert!(out.waiting().next().is_none());
}

#[test]
fn an_invalid_object_blocks_naming_it_and_the_api_reason() {
    let Some(env) = env(&["n0"]) else { return };
    let mut want = unit(0, "n0", &["10.0.0.1"], &[]);
    // Not a DNS-1123 name: the API refuses it.
    want.peers[0].metadata.name = Some("Calico_0_Bad".into());
    want.peers.push(peer(0, "n0", "10.0.0.2", 64512));
    let out = hook(&env, &want);
    assert_eq!(out.blocked().count(), 1, "{out:?}");
    assert!(
        out.blocked_messages()[0].starts_with("BGPPeer/Calico_0_Bad rejected: "),
        "{out:?}"
    );
    assert!(out.blocked_messages()[0].len() > "BGPPeer/Calico_0_Bad rejected: ".len());
    assert_eq!(
        names(&env.server, "BGPPeer"),
        vec!["calico-0-10.0.0.2-64512"]
    );
}

#[test]
fn missing_crds_and_unregistered_nodes_wait() {
    let Some(env) = env_with(Options::without_crds(), &[]) else {
        return;
    };
    let out = hook(&env, &unit(0, "n0", &["10.0.0.1"], &[]));
    assert!(out.blocked().next().is_none(), "{out:?}");
    assert_eq!(
        out.waiting_messages(),
        vec![
            "Waiting for node n0 to register".to_string(),
            "Waiting for Calico CRDs".to_string()
        ]
    );
    env.server.install_calico_crds().unwrap();
    add_node(&env.server, "n0", json!({}));
    assert!(hook(&env, &unit(0, "n0", &["10.0.0.1"], &[])).settled());
}

#[test]
fn stop_removes_the_units_peers_and_annotations() {
    let Some(env) = env(&["n0", "n1"]) else {
        return;
    };
    let s = &env.server;
    hook(
        &env,
        &unit(1, "n1", &["10.0.1.1"], &[(AS_NUMBER_ANNOTATION, "64600")]),
    );
    hook(
        &env,
        &leader(
            "n0",
            "10.1.0.0/16",
            &["10.0.0.1"],
            &[(AS_NUMBER_ANNOTATION, "64513")],
        ),
    );
    let out = hook(&env, &stopping(0, "n0"));
    assert!(out.settled(), "{out:?}");
    assert_eq!(names(s, "BGPPeer"), vec!["calico-1-10.0.1.1-64512"]);
    assert!(annotations(s, "n0").is_empty());
    assert_eq!(annotations(s, "n1").len(), 1);
    // Global objects stay.
    assert_eq!(names(s, "IPPool"), vec!["ipv4"]);
    assert_eq!(names(s, "BGPConfiguration"), vec!["default"]);
}

#[test]
fn a_hook_killed_mid_converge_is_repaired_by_the_next() {
    let before = unit(
        0,
        "n0",
        &["10.0.0.1"],
        &[(RR_CLUSTER_ID_ANNOTATION, "244.0.0.1")],
    );
    let after = leader(
        "n0",
        "10.2.0.0/16",
        &["10.0.0.2"],
        &[(AS_NUMBER_ANNOTATION, "64513")],
    );
    // Requests of a full converge from `before` to `after`; stop the server after each count.
    for served in 0..14 {
        let Some(env) = env(&["n0"]) else { return };
        let s = &env.server;
        assert!(hook(&env, &leader("n0", "10.1.0.0/16", &[], &[])).settled());
        assert!(hook(&env, &before).settled());
        s.stop_after(served);
        let mut retry = fast_retry();
        retry.budget = Duration::from_millis(300);
        let _ = hook_with(&env, &after, retry);
        // The next hook finds the API up again (and no stop still pending).
        s.clear_faults();
        s.restart().unwrap();
        let out = hook(&env, &after);
        assert!(out.settled(), "killed after {served}: {out:?}");
        assert_eq!(names(s, "IPPool"), vec!["ipv4-10-2-0-0-16"], "{served}");
        assert_eq!(
            names(s, "BGPPeer"),
            vec!["calico-0-10.0.0.2-64512"],
            "{served}"
        );
        assert_eq!(
            annotations(s, "n0"),
            BTreeMap::from([(AS_NUMBER_ANNOTATION.to_string(), "64513".to_string())]),
            "{served}"
        );
    }
}

fn converge_units(env: &Env, wants: Vec<Desired>) -> Vec<Outcome> {
    rt().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, want) in wants.into_iter().enumerate() {
            let kubeconfig = env.kubeconfig.clone();
            tasks.spawn(async move {
                // All units at once against a real server on a small machine: a budget no
                // fault test here needs to be short.
                // Per-attempt deadlines are as generous: fifty answers queued on two busy
                // cores can take longer than the 2 s the fault tests use.
                let retry = RetrySettings {
                    budget: Duration::from_secs(30),
                    attempt_timeout: Duration::from_secs(10),
                    connect_timeout: Duration::from_secs(5),
                    ..fast_retry()
                };
                let ds = connect_with(&kubeconfig, retry).await.unwrap();
                (i, converge_with(&want, &ds, &ds, &options()).await)
            });
        }
        let mut outs = tasks.join_all().await;
        outs.sort_by_key(|(i, _)| *i);
        outs.into_iter().map(|(_, o)| o).collect()
    })
}

fn units(n: u32, round: u32) -> Vec<Desired> {
    (0..n)
        .map(|u| {
            let node = format!("n{u}");
            let ips: Vec<String> = (0..2).map(|k| format!("10.{round}.{u}.{k}")).collect();
            let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
            let asn = (64600 + u + round).to_string();
            let mut d = unit(u, &node, &ips, &[(AS_NUMBER_ANNOTATION, asn.as_str())]);
            if u == 0 {
                d.pools = Pools::Managed(vec![pool("ipv4", &format!("10.{}.0.0/16", 100 + round))]);
                d.bgp_configuration = Some(bgp(64512, false));
            }
            d
        })
        .collect()
}

fn assert_cluster(env: &Env, n: u32, round: u32) {
    let s = &env.server;
    let mut expected: Vec<String> = (0..n)
        .flat_map(|u| (0..2).map(move |k| format!("calico-{u}-10.{round}.{u}.{k}-64512")))
        .collect();
    expected.sort();
    assert_eq!(names(s, "BGPPeer"), expected);
    for peer in s.list(CALICO, "BGPPeer", None) {
        let name = peer["metadata"]["name"].as_str().unwrap().to_string();
        let owner = peer["metadata"]["labels"][UNIT_LABEL]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            name.starts_with(&format!("{owner}-")),
            "{name} owned by {owner}"
        );
    }
    for u in 0..n {
        assert_eq!(
            annotations(s, &format!("n{u}")),
            BTreeMap::from([(
                AS_NUMBER_ANNOTATION.to_string(),
                (64600 + u + round).to_string()
            )])
        );
    }
    assert_eq!(names(s, "IPPool").len(), 1);
    assert_eq!(
        calico(s, "IPPool", &names(s, "IPPool")[0])["spec"]["cidr"],
        format!("10.{}.0.0/16", 100 + round)
    );
}

fn concurrent_units(n: u32) {
    let nodes: Vec<String> = (0..n).map(|u| format!("n{u}")).collect();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let Some(env) = env(&nodes) else { return };
    for round in 0..2 {
        let outs = converge_units(&env, units(n, round));
        for (u, out) in outs.iter().enumerate() {
            assert!(out.settled(), "unit {u} round {round}: {out:?}");
        }
        assert_cluster(&env, n, round);
    }
}

#[test]
fn two_units_converge_concurrently() {
    concurrent_units(2);
}

#[test]
fn fifty_units_converge_concurrently() {
    concurrent_units(50);
}

#[test]
fn calico_node_readiness_is_read_from_its_pod() {
    let Some(env) = env(&["n0", "n1"]) else {
        return;
    };
    let s = &env.server;
    let pod = |name: &str, node: &str, status: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
               "spec": {"nodeName": node, "containers": [{"name": "calico-node", "image": "calico/node"}]},
               "status": status})
    };
    s.insert(pod(
        "calico-node-a",
        "n0",
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}),
    ))
    .unwrap();
    s.insert(pod("calico-node-b", "n1", json!({"phase": "Pending", "containerStatuses": [
        {"name": "calico-node", "image": "calico/node", "imageID": "", "ready": false, "restartCount": 0,
         "state": {"waiting": {"reason": "ImagePullBackOff"}}}]})))
        .unwrap();
    let (n0, n1, n2) = rt().block_on(async {
        let ds = connect(&env, fast_retry()).await;
        (
            check_node_agent(&ds, "n0").await,
            check_node_agent(&ds, "n1").await,
            check_node_agent(&ds, "n2").await,
        )
    });
    assert!(n0.settled(), "{n0:?}");
    assert_eq!(
        n1.waiting_messages(),
        vec!["Waiting for calico-node on n1: ImagePullBackOff".to_string()]
    );
    assert_eq!(
        n2.waiting_messages(),
        vec!["Waiting for calico-node on n2: no calico-node pod".to_string()]
    );
}

#[test]
fn the_cluster_seam_converges_synchronously_from_the_kubeconfig() {
    let Some(env) = env(&["n0"]) else { return };
    let cluster = KubeCluster {
        kubeconfig: env.kubeconfig.clone(),
        retry: fast_retry(),
        options: options(),
        check_node_agent: true,
        server_version: Default::default(),
        reads: Default::default(),
    };
    let out = cluster.converge(&unit(0, "n0", &["10.0.0.1"], &[]));
    assert_eq!(out.changed, vec!["BGPPeer/calico-0-10.0.0.1-64512"]);
    assert_eq!(
        out.waiting_messages(),
        vec!["Waiting for calico-node on n0: no calico-node pod".to_string()]
    );
    let stop = cluster
        .clone()
        .without_node_agent_check()
        .converge(&stopping(0, "n0"));
    assert!(stop.settled(), "{stop:?}");
    assert!(names(&env.server, "BGPPeer").is_empty());

    let missing = KubeCluster {
        kubeconfig: env.kubeconfig.with_file_name("absent"),
        ..cluster
    };
    let out = missing.converge(&unit(0, "n0", &[], &[]));
    assert_eq!(out.waiting().count(), 1);
    assert!(
        out.waiting_messages()[0].starts_with("Waiting for kubeconfig: kubeconfig ")
            && out.waiting_messages()[0].ends_with("absent does not exist yet"),
        "{out:?}"
    );
}

fn crd(plural: &str, kind: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.crd.projectcalico.org")},
        "spec": {"group": "crd.projectcalico.org", "scope": "Cluster",
                 "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap()
}

/// A ConfigMap labelled as rendering labels it.
fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "kube-system", "labels": labels(None)},
        "data": {"k": "v"}}))
    .unwrap()
}

#[test]
fn workloads_leave_existing_crds_alone_and_prune_only_their_own_objects() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    let ippools_before = s
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "ippools.crd.projectcalico.org",
        )
        .unwrap();
    s.insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "admin-settings", "namespace": "kube-system"}}))
        .unwrap();
    let mut want = unit(0, "n0", &[], &[]);
    want.workloads = Some(Workloads {
        crds: vec![crd("ippools", "IPPool"), crd("tiers", "Tier")],
        config_maps: vec![config_map("calico-config"), config_map("calico-extra")],
        ..Workloads::default()
    });
    let out = hook(&env, &want);
    assert!(out.settled(), "{out:?}");
    assert!(
        out.changed
            .contains(&"CustomResourceDefinition/tiers.crd.projectcalico.org".to_string())
    );
    // The preloaded upstream CRD was not touched.
    let ippools_after = s
        .get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "ippools.crd.projectcalico.org",
        )
        .unwrap();
    assert_eq!(ippools_before, ippools_after);
    assert!(
        !writes(s)
            .iter()
            .any(|w| w.contains("ippools.crd.projectcalico.org"))
    );

    want.workloads = Some(Workloads {
        crds: vec![crd("ippools", "IPPool"), crd("tiers", "Tier")],
        config_maps: vec![config_map("calico-config")],
        ..Workloads::default()
    });
    s.reset_requests();
    let out = hook(&env, &want);
    assert!(out.settled(), "{out:?}");
    assert_eq!(out.deleted, vec!["ConfigMap/calico-extra"]);
    let cms: Vec<String> = s
        .list("v1", "ConfigMap", Some("kube-system"))
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert!(cms.contains(&"admin-settings".to_string()), "{cms:?}");
    assert!(cms.contains(&"calico-config".to_string()), "{cms:?}");
    assert!(!cms.contains(&"calico-extra".to_string()), "{cms:?}");
    assert!(
        !writes(s)
            .iter()
            .any(|w| w.contains("customresourcedefinitions"))
    );
}

#[test]
fn a_refused_token_blocks() {
    let Some(env) = env(&["n0"]) else { return };
    env.server
        .write_kubeconfig_with_token(&env.kubeconfig, "not-a-valid-token")
        .unwrap();
    let out = hook(&env, &unit(0, "n0", &[], &[]));
    assert_eq!(out.blocked().count(), 1, "{out:?}");
    assert!(
        out.blocked_messages()[0].starts_with("Kubernetes API denied access: "),
        "{out:?}"
    );
}

#[test]
fn tls_is_verified_even_when_the_kubeconfig_says_skip() {
    let Some(env) = env(&["n0"]) else { return };
    let yaml: String = env
        .server
        .kubeconfig_yaml()
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("certificate-authority-data:") {
                "    insecure-skip-tls-verify: true".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&env.kubeconfig, yaml).unwrap();
    let started = Instant::now();
    let out = hook(&env, &unit(0, "n0", &["10.0.0.1"], &[]));
    // An unknown CA cannot heal by itself: blocked, naming what to fix.
    assert!(out.waiting().next().is_none(), "{out:?}");
    assert_eq!(
        out.blocked_messages(),
        vec![
            "Kubernetes API cannot be used: TLS: the API server's certificate is not signed by \
             the kubeconfig's certificate authority (certificate-authority-data): fix the kubeconfig"
                .to_string()
        ]
    );
    // A certificate problem is not retried.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(names(&env.server, "BGPPeer").is_empty());
    assert!(
        env.server.requests().is_empty(),
        "{:?}",
        env.server.requests()
    );
}

// ---- with the real renderer ------------------------------------------------------------------

fn rendered(unit: &str, node: &str, leader: bool, options: &[(&str, &str)]) -> Desired {
    let mut raw = calico_charm::config::options::defaults().unwrap();
    for (k, v) in options {
        raw.insert(k.to_string(), Value::String(v.to_string()));
    }
    let config = calico_charm::config::validate(&raw)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .config;
    let facts =
        calico_charm::unit::UnitFacts::new(unit, node, "10.0.0.10".parse().unwrap(), leader)
            .unwrap();
    calico_charm::render::desired(&config, &facts)
}

#[test]
fn rendered_objects_land_exactly_and_a_no_op_hook_costs_one_request_per_object() {
    let Some(env) = env(&["n0", "n1"]) else {
        return;
    };
    let s = &env.server;
    let opts = [
        ("cidr", "10.1.0.0/16"),
        ("node-to-node-mesh", "false"),
        (
            "global-bgp-peers",
            "[{address: 10.0.0.1, as-number: 65000}]",
        ),
        (
            "unit-bgp-peers",
            "{1: [{address: 10.0.0.2, as-number: 65001}]}",
        ),
        ("unit-as-numbers", "{0: 64513}"),
        ("route-reflector-cluster-ids", "{1: 244.0.0.1}"),
    ];
    let lead = rendered("calico/0", "n0", true, &opts);
    let other = rendered("calico/1", "n1", false, &opts);
    for want in [&lead, &other] {
        let out = hook(&env, want);
        assert!(out.settled(), "{out:?}");
    }

    // Every rendered Calico object is on the server as rendered.
    let Pools::Managed(pools) = &lead.pools else {
        panic!("leader manages pools")
    };
    for p in pools {
        let name = p.metadata.name.as_deref().unwrap();
        let stored: IPPool = serde_json::from_value(calico(s, "IPPool", name)).unwrap();
        assert_eq!(stored.spec, p.spec, "{name}");
    }
    let config = lead.bgp_configuration.as_ref().unwrap();
    let stored: BGPConfiguration =
        serde_json::from_value(calico(s, "BGPConfiguration", "default")).unwrap();
    assert_eq!(stored.spec.as_number, config.spec.as_number);
    assert_eq!(
        stored.spec.node_to_node_mesh_enabled,
        config.spec.node_to_node_mesh_enabled
    );
    for want in [&lead, &other] {
        assert!(!want.peers.is_empty());
        for p in &want.peers {
            let name = p.metadata.name.as_deref().unwrap();
            let stored: BGPPeer = serde_json::from_value(calico(s, "BGPPeer", name)).unwrap();
            assert_eq!(stored.spec, p.spec, "{name}");
            assert_eq!(stored.metadata.labels, p.metadata.labels, "{name}");
        }
        let node = &want.node.node_name;
        let calico_keys: BTreeMap<String, String> = annotations(s, node)
            .into_iter()
            .filter(|(k, _)| k.starts_with("projectcalico.org/"))
            .collect();
        assert_eq!(calico_keys, want.node.annotations, "{node}");
    }
    let workloads = lead.workloads.as_ref().unwrap();
    let mut owned = 0;
    for object in workloads.objects() {
        let api_version = object["apiVersion"].as_str().unwrap();
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let ns = object["metadata"]["namespace"].as_str();
        assert!(
            s.get(api_version, kind, ns, name).is_some(),
            "{kind}/{name} missing"
        );
        if kind != "CustomResourceDefinition" {
            owned += 1;
        }
    }

    // A second round changes nothing, and costs about one request per owned object.
    let rv = s.resource_version();
    for (want, objects) in [
        (&lead, owned + pools.len() + lead.peers.len() + 1),
        (&other, other.peers.len()),
    ] {
        s.reset_requests();
        let out = hook(&env, want);
        assert_eq!(out, Outcome::default());
        let requests = s.request_count();
        // Reads: the node, the owned-peer list; the leader also lists pools, reads the
        // BGPConfiguration, discovers served CRDs and lists its workloads of 9 kinds (the 6
        // of Calico's pods and RBAC, Typha's Service and PodDisruptionBudget, and the etcd
        // mode's Secret).
        let reads = if want.workloads.is_some() {
            2 + 1 + 1 + 2 + 9
        } else {
            2
        };
        assert!(
            requests <= objects + reads,
            "{} requests for {objects} objects: {:#?}",
            requests,
            s.requests()
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(s.resource_version(), rv, "a no-op round wrote something");

    // A config change prunes what is no longer rendered.
    let opts2 = [
        ("cidr", "10.1.0.0/16"),
        ("node-to-node-mesh", "false"),
        (
            "global-bgp-peers",
            "[{address: 10.0.0.3, as-number: 65000}]",
        ),
    ];
    for (unit, node, leader) in [("calico/0", "n0", true), ("calico/1", "n1", false)] {
        let out = hook(&env, &rendered(unit, node, leader, &opts2));
        assert!(out.settled(), "{out:?}");
        assert!(!out.deleted.is_empty(), "{out:?}");
    }
    let peers = names(s, "BGPPeer");
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(peers.iter().all(|p| p.contains("10.0.0.3")), "{peers:?}");
    for node in ["n0", "n1"] {
        assert!(
            !annotations(s, node)
                .keys()
                .any(|k| k == AS_NUMBER_ANNOTATION || k == RR_CLUSTER_ID_ANNOTATION),
            "{node}"
        );
    }
}

#[test]
fn a_no_op_hook_costs_the_same_in_a_large_cluster() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    let want = unit(0, "n0", &["10.0.0.1"], &[(AS_NUMBER_ANNOTATION, "64513")]);
    assert!(hook(&env, &want).settled());
    s.reset_requests();
    assert_eq!(hook(&env, &want), Outcome::default());
    let small = s.request_count();

    // 400 more units, each with its node and peers.
    for u in 1..=400u32 {
        let node = format!("n{u}");
        add_node(s, &node, json!({AS_NUMBER_ANNOTATION: "64600"}));
        for p in [
            peer(u, &node, "10.0.0.1", 64512),
            peer(u, &node, "10.0.0.2", 64512),
        ] {
            s.insert(&p).unwrap();
        }
    }
    s.reset_requests();
    assert_eq!(hook(&env, &want), Outcome::default());
    assert_eq!(s.request_count(), small);
    // The node and this unit's peers: two reads, no write.
    assert_eq!(small, 2, "{:?}", s.requests());
}

#[test]
fn writes_whose_answer_is_lost_are_retried_safely() {
    let Some(env) = env(&["n0"]) else { return };
    let s = &env.server;
    assert!(hook(&env, &leader("n0", "10.1.0.0/16", &["10.0.0.1"], &[])).settled());
    // Every write of the next hook is executed but its answer lost once: the retry finds
    // the work done (a delete answers 404, an apply is a no-op).
    s.drop_response_next_matching(1, "/bgppeers/calico-0-10.0.0.1-64512");
    s.drop_response_next_matching(1, "/bgppeers/calico-0-10.0.0.2-64512");
    s.drop_response_next_matching(1, "/ippools/ipv4-10-2-0-0-16");
    s.drop_response_next_matching(1, "/ippools/ipv4");
    let want = leader("n0", "10.2.0.0/16", &["10.0.0.2"], &[]);
    let out = hook(&env, &want);
    assert!(out.blocked().next().is_none(), "{out:?}");
    let out = hook(&env, &want);
    assert!(out.settled(), "{out:?}");
    assert_eq!(names(s, "BGPPeer"), vec!["calico-0-10.0.0.2-64512"]);
    assert_eq!(names(s, "IPPool"), vec!["ipv4-10-2-0-0-16"]);
}

#[test]
fn a_slow_api_within_the_timeout_is_waited_for() {
    let Some(env) = env(&["n0"]) else { return };
    env.server
        .delay_next_matching(1, "/bgppeers", Duration::from_millis(500));
    let out = hook(&env, &unit(0, "n0", &["10.0.0.1"], &[]));
    assert!(out.settled(), "{out:?}");
    // Slower than the attempt timeout: timed out, retried, done.
    env.server
        .delay_next_matching(1, "/bgppeers", Duration::from_secs(3));
    let out = hook(&env, &unit(0, "n0", &["10.0.0.2"], &[]));
    assert!(out.settled(), "{out:?}");
    assert_eq!(
        names(&env.server, "BGPPeer"),
        vec!["calico-0-10.0.0.2-64512"]
    );
}
