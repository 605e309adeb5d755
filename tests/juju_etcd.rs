//! The packed charm in etcd mode, run as Juju runs it: the `etcd` relation to a real etcd with
//! TLS and client-certificate authentication (tests/support/etcd.rs) and a real Kubernetes
//! API for the workloads (tests/support/apiserver). Calico's data is checked in etcd with
//! the harness's own client, the workloads on the API server.

mod juju_harness;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use juju_harness::{Unit, assert_ok, share_peer_data};
use serde_json::{Value, json};
use support::apiserver::{Options, TestApiServer};
use support::etcd::Etcd;

const R: &str = "/calico/resources/v3/projectcalico.org/";
const NODE: &str = "worker-0";

fn pair(status: &str, message: &str) -> (String, String) {
    (status.to_string(), message.to_string())
}

/// A unit related to its principal (kubeconfig published) with a Kubernetes API where its
/// node runs a ready calico-node pod, and its credential files in its own directory; and
/// the binary's etcd, held by this test (running, no Calico key in it). `None` when the
/// envtest tests are skipped.
fn etcd_unit(name: &str, leader: bool, crds: bool) -> Option<EtcdUnit> {
    if support::etcd::skip(module_path!()) {
        return None;
    }
    let options = if crds {
        Options::default()
    } else {
        Options::without_crds()
    };
    let server = envtest!(options)?;
    server.add_ready_node(NODE, None, "docker.io/calico/node:v3.6.1");
    let unit = unit_on(&server, name, leader, NODE);
    let etcd = Etcd::shared();
    let guard = etcd.lock();
    Some((unit, server, etcd, guard))
}

/// What [`etcd_unit`] gives: the unit, its API server, the etcd and the hold on it.
type EtcdUnit = (
    Unit,
    TestApiServer,
    &'static Etcd,
    std::sync::MutexGuard<'static, ()>,
);

/// A unit on `node`, related to its principal, whose kubeconfig reaches `server`.
fn unit_on(server: &TestApiServer, name: &str, leader: bool, node: &str) -> Unit {
    let mut unit = Unit::on_cluster(name, leader, node, |path| server.write_kubeconfig(path));
    let creds = unit.host_dir().join("etcd-credentials");
    unit.set_env("CALICO_CHARM_ETCD_DIR", &creds.display().to_string());
    unit.set_env("CALICO_CHARM_ETCD_BUDGET_SECS", "3");
    unit.set_env("CALICO_CHARM_ETCD_TIMEOUT_SECS", "1");
    unit.set_env("CALICO_CHARM_POOL_SETTLE_MS", "0");
    unit
}

/// Server-side apply of `object` as field manager `manager` (as today's charm applies its
/// manifests: lightkube, `force=True`, manager `<application>-<manifest>`).
fn apply_as(server: &TestApiServer, manager: &str, path: &str, object: &Value) {
    let client = server
        .plane()
        .blocking_client("admin")
        .expect("admin client");
    let (code, body) = client
        .request(
            "PATCH",
            &format!("{path}?fieldManager={manager}&force=true"),
            "application/apply-patch+yaml",
            Some(&object.to_string()),
        )
        .expect("apply");
    assert!((200..300).contains(&code), "{code}: {body}");
}

/// The object as this charm makes it, without what the server alone keeps (identity,
/// revision, generation, managed fields, status) and the DaemonSet's generation annotation.
fn comparable(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deprecated.daemonset.template.generation");
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(root) = o.as_object_mut() {
        root.remove("status");
    }
    o
}

/// `unit` is active and Ready, on the datastore it remembers as `datastore`.
fn assert_ready_on(unit: &Unit, datastore: &str) {
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );
    assert_eq!(
        unit.charm_state().get("datastore").map(String::as_str),
        Some(datastore)
    );
}

fn relate_etcd(unit: &Unit, data: &BTreeMap<String, String>) -> String {
    unit.relate("etcd", 7, "etcd/0", data)
}

/// Every key below `prefix` with its JSON value.
fn values(etcd: &Etcd, prefix: &str) -> BTreeMap<String, Value> {
    etcd.dump(prefix)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect()
}

fn names(etcd: &Etcd, plural: &str) -> Vec<String> {
    values(etcd, &format!("{R}{plural}/"))
        .keys()
        .map(|k| k.rsplit('/').next().unwrap_or_default().to_string())
        .collect()
}

fn env_of(daemonset: &Value, container: &str) -> BTreeMap<String, Value> {
    daemonset["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == container)
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e))
        .collect()
}

#[test]
fn a_deployment_related_to_etcd_runs_calico_on_etcd_through_faults_and_never_switches() {
    let Some((unit, server, etcd, _guard)) = etcd_unit("calico/0", true, false) else {
        return;
    };
    // Related, nothing published yet; then part of it.
    let rid = relate_etcd(&unit, &BTreeMap::new());
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(unit.status(), pair("waiting", "Waiting for etcd"));
    let mut partial = BTreeMap::new();
    partial.insert("connection_string".to_string(), etcd.url.clone());
    unit.set_remote_bag(&rid, "etcd/0", &partial);
    assert_ok(
        &unit,
        &unit.endpoint_hook("etcd", "changed", &rid, "etcd/0"),
    );
    assert_eq!(
        unit.status(),
        pair(
            "waiting",
            "Waiting for etcd: no client_cert, client_key, client_ca yet"
        )
    );
    unit.set_remote_bag(&rid, "etcd/0", &etcd.relation_data());
    assert_ok(
        &unit,
        &unit.endpoint_hook("etcd", "changed", &rid, "etcd/0"),
    );
    assert_ready_on(&unit, "etcd");

    // Calico's data is in etcd, as v3 objects labelled as the charm's.
    assert_eq!(names(etcd, "ippools"), ["ipv4"]);
    let pool = etcd.get(&format!("{R}ippools/ipv4")).unwrap();
    assert_eq!(pool["spec"]["cidr"], "192.168.0.0/16");
    assert_eq!(
        pool["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "calico-charm"
    );
    let bgp = etcd.get(&format!("{R}bgpconfigurations/default")).unwrap();
    assert_eq!(bgp["spec"]["asNumber"], 64512);
    assert_eq!(bgp["spec"]["nodeToNodeMeshEnabled"], true);
    let node = etcd.get(&format!("{R}nodes/{NODE}")).unwrap();
    // The binding's address with its subnet's prefix (the emulator's network-get: /24).
    assert_eq!(node["spec"]["bgp"]["ipv4Address"], "10.0.0.5/24");
    // Nothing of Calico's in the Kubernetes datastore: no CRDs created.
    assert!(
        server
            .list("apiextensions.k8s.io/v1", "CustomResourceDefinition", None)
            .iter()
            .all(|c| !c["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .ends_with("projectcalico.org")),
    );

    // The workloads read etcd; the Secret holds the relation's credentials.
    let secret = server
        .get("v1", "Secret", Some("kube-system"), "calico-etcd-secrets")
        .expect("the Secret");
    let data = &secret["data"];
    let decoded = |k: &str| {
        String::from_utf8(support::etcd::unbase64(
            data[k].as_str().unwrap_or_default(),
        ))
        .unwrap()
    };
    assert_eq!(decoded("etcd-key"), etcd.client.key);
    assert_eq!(decoded("etcd-ca"), etcd.ca_pem);
    let ds = server
        .get("apps/v1", "DaemonSet", Some("kube-system"), "calico-node")
        .unwrap();
    let env = env_of(&ds, "calico-node");
    assert_eq!(env["DATASTORE_TYPE"]["value"], "etcdv3");
    let cm = server
        .get("v1", "ConfigMap", Some("kube-system"), "calico-config")
        .unwrap();
    assert_eq!(cm["data"]["etcd_endpoints"], etcd.url.as_str());
    let kc = server
        .get(
            "apps/v1",
            "Deployment",
            Some("kube-system"),
            "calico-kube-controllers",
        )
        .unwrap();
    let env = env_of(&kc, "calico-kube-controllers");
    assert_eq!(
        env["ENABLED_CONTROLLERS"]["value"],
        "policy,namespace,serviceaccount,workloadendpoint,node"
    );

    // The unit's credential files: 0600; the CNI config names them.
    let creds = unit.host_dir().join("etcd-credentials");
    for f in ["etcd-ca", "etcd-cert", "etcd-key"] {
        let meta = std::fs::metadata(creds.join(f)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(creds.join("etcd-key")).unwrap(),
        etcd.client.key
    );
    let conflist = std::fs::read_to_string(unit.cni_dir().join("10-calico.conflist")).unwrap();
    assert!(conflist.contains(&format!("\"etcd_endpoints\": \"{}\"", etcd.url)));
    assert!(!conflist.contains("datastore_type"));

    // The key never reaches debug-log or a status.
    let key_line = etcd
        .client
        .key
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(unit.logs().iter().all(|l| !l.message.contains(&key_line)));
    assert!(!unit.transcript().contains(&key_line));

    // A no-op hook writes nothing to etcd.
    let before = etcd.revision();
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(etcd.revision(), before, "a no-op hook wrote to etcd");
    assert_eq!(unit.status(), pair("active", "Ready"));

    // Typha is never deployed on etcd: `true` is a warning naming the option, `auto` is off
    // (no Node count is even asked for).
    unit.set_config("typha", json!("true"));
    server.reset_requests();
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(
        unit.status(),
        pair(
            "active",
            "Ready (typha=true ignored: Calico advises against Typha on etcd, which serves many clients itself; set typha=auto)"
        )
    );
    let typha = |kind: &str| {
        server.get(
            if kind == "Service" { "v1" } else { "apps/v1" },
            kind,
            Some("kube-system"),
            "calico-typha",
        )
    };
    assert!(typha("Deployment").is_none() && typha("Service").is_none());
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/nodes"),
        "counted Nodes for Typha"
    );
    let cm = server
        .get("v1", "ConfigMap", Some("kube-system"), "calico-config")
        .unwrap();
    assert_eq!(cm["data"]["typha_service_name"], "none");
    unit.set_config("typha", json!("auto"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert!(typha("Deployment").is_none());

    // Invalid config: blocked naming the option, nothing written to etcd.
    let before = etcd.revision();
    unit.set_config("cidr", json!("10.1.0.0/99"));
    assert_ok(&unit, &unit.hook("config-changed"));
    let (status, message) = unit.status();
    assert_eq!(status, "blocked", "{message}");
    assert!(message.starts_with("Invalid config: cidr"), "{message}");
    assert_eq!(etcd.revision(), before, "an invalid config wrote to etcd");
    unit.set_config("cidr", json!("192.168.0.0/16"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(unit.status(), pair("active", "Ready"));

    // etcd down: waiting with the cause, exit 0, within the hook's bounds; then back.
    etcd.stop();
    let started = std::time::Instant::now();
    let run = unit.endpoint_hook("etcd", "changed", &rid, "etcd/0");
    assert_ok(&unit, &run);
    let (status, message) = unit.status();
    assert_eq!(status, "waiting", "{message}");
    assert!(message.starts_with("etcd unavailable"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    etcd.start().expect("etcd back");
    assert_ok(&unit, &unit.hook("update-status"));
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );

    unit.set_remote_bag(&rid, "etcd/0", &etcd.wrong_cert_relation_data());
    assert_ok(
        &unit,
        &unit.endpoint_hook("etcd", "changed", &rid, "etcd/0"),
    );
    let (status, message) = unit.status();
    assert_eq!(status, "blocked", "{message}");
    assert!(message.starts_with("etcd denied access"), "{message}");

    // The relation goes: blocked, and nothing is written to the Kubernetes datastore.
    unit.set_remote_bag(&rid, "etcd/0", &etcd.relation_data());
    unit.edit_state("relations.json", |r| r[&rid]["dead"] = json!(true));
    assert_ok(&unit, &unit.endpoint_hook("etcd", "broken", &rid, "etcd/0"));
    unit.remove_relation(&rid);
    assert_eq!(
        unit.status(),
        pair("blocked", "etcd relation removed: Calico's data is in etcd")
    );
    assert!(
        server
            .list("apiextensions.k8s.io/v1", "CustomResourceDefinition", None)
            .iter()
            .all(|c| c["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "calico-charm"),
        "the charm created CRDs in etcd mode"
    );
    assert_eq!(
        unit.charm_state().get("datastore").map(String::as_str),
        Some("etcd")
    );
}

#[test]
fn peers_are_pruned_by_prefix_pools_drain_and_others_objects_stay() {
    let Some((unit, _server, etcd, _guard)) = etcd_unit("calico/1", true, false) else {
        return;
    };
    relate_etcd(&unit, &etcd.relation_data());
    // Others' objects: another unit's peer, a peer of nobody's, a pool of someone else's.
    let foreign = [
        (
            format!("{R}bgppeers/calico-10-10.0.0.1-65000"),
            json!({"kind": "BGPPeer", "apiVersion": "projectcalico.org/v3",
                   "metadata": {"name": "calico-10-10.0.0.1-65000",
                                "labels": {"app.kubernetes.io/managed-by": "calico-charm",
                                           "calico.juju.is/unit": "calico-10"}},
                   "spec": {"peerIP": "10.0.0.1", "asNumber": 65000}}),
        ),
        (
            format!("{R}bgppeers/tor-switch"),
            json!({"kind": "BGPPeer", "apiVersion": "projectcalico.org/v3",
                   "metadata": {"name": "tor-switch"},
                   "spec": {"peerIP": "10.9.9.9", "asNumber": 65100}}),
        ),
        (
            format!("{R}felixconfigurations/default"),
            json!({"kind": "FelixConfiguration", "apiVersion": "projectcalico.org/v3",
                   "metadata": {"name": "default"}, "spec": {"logSeverityScreen": "Info"}}),
        ),
    ];
    for (k, v) in &foreign {
        etcd.put(k, v);
    }
    unit.set_config(
        "unit-bgp-peers",
        json!(
            "1:\n- address: 10.0.0.1\n  as-number: 65000\n- address: 10.0.0.2\n  as-number: 65000\n"
        ),
    );
    unit.set_config("unit-as-numbers", json!("1: 64600\n"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );
    let mut peers = names(etcd, "bgppeers");
    peers.sort();
    assert_eq!(
        peers,
        [
            "calico-1-10.0.0.1-65000",
            "calico-1-10.0.0.2-65000",
            "calico-10-10.0.0.1-65000",
            "tor-switch"
        ]
    );
    let p = etcd
        .get(&format!("{R}bgppeers/calico-1-10.0.0.1-65000"))
        .unwrap();
    assert_eq!(p["spec"]["node"], NODE);
    assert_eq!(p["metadata"]["labels"]["calico.juju.is/unit"], "calico-1");

    // One peer less, and a new pool CIDR: the peer is pruned, the new pool comes first.
    unit.set_config(
        "unit-bgp-peers",
        json!("1:\n- address: 10.0.0.2\n  as-number: 65000\n"),
    );
    // An address still allocated in the old pool keeps it (disabled) until released.
    let block = "/calico/ipam/v2/assignment/ipv4/block/192.168.0.0-26";
    etcd.put(
        block,
        &json!({"cidr": "192.168.0.0/26", "affinity": format!("host:{NODE}"),
                "allocations": [0, null], "unallocated": [1], "attributes": [{}]}),
    );
    unit.set_config("cidr", json!("10.50.0.0/16"));
    assert_ok(&unit, &unit.hook("config-changed"));
    let (status, message) = unit.status();
    assert_eq!(status, "waiting", "{}", unit.transcript());
    assert!(message.contains("ipv4"), "{message}");
    let pools = values(etcd, &format!("{R}ippools/"));
    let by_cidr: BTreeMap<String, Value> = pools
        .values()
        .map(|p| {
            (
                p["spec"]["cidr"].as_str().unwrap_or_default().to_string(),
                p.clone(),
            )
        })
        .collect();
    assert_eq!(by_cidr.len(), 2, "{pools:?}");
    assert_eq!(by_cidr["192.168.0.0/16"]["spec"]["disabled"], true);
    assert_ne!(by_cidr["10.50.0.0/16"]["spec"]["disabled"], true);
    let mut peers = names(etcd, "bgppeers");
    peers.sort();
    assert_eq!(
        peers,
        [
            "calico-1-10.0.0.2-65000",
            "calico-10-10.0.0.1-65000",
            "tor-switch"
        ]
    );
    // Released: the old pool goes.
    etcd.put(
        block,
        &json!({"cidr": "192.168.0.0/26", "allocations": [null, null], "unallocated": [0, 1]}),
    );
    assert_ok(&unit, &unit.hook("update-status"));
    let pools = values(etcd, &format!("{R}ippools/"));
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(
        pools.values().next().unwrap()["spec"]["cidr"],
        "10.50.0.0/16"
    );
    // Nothing of others' was touched.
    for (k, v) in &foreign {
        assert_eq!(etcd.get(k).as_ref(), Some(v), "{k}");
    }
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );

    // stop then remove: the unit's peers and node settings go; the credentials too.
    assert_eq!(
        etcd.get(&format!("{R}nodes/{NODE}")).unwrap()["spec"]["bgp"]["asNumber"],
        64600
    );
    assert_ok(&unit, &unit.hook("stop"));
    assert_ok(&unit, &unit.hook("remove"));
    let mut peers = names(etcd, "bgppeers");
    peers.sort();
    assert_eq!(peers, ["calico-10-10.0.0.1-65000", "tor-switch"]);
    let node = etcd.get(&format!("{R}nodes/{NODE}")).unwrap();
    assert!(node["spec"]["bgp"].get("asNumber").is_none(), "{node}");
    assert!(!unit.host_dir().join("etcd-credentials/etcd-key").exists());
}

#[test]
fn an_etcd_relation_added_later_never_switches_the_datastore() {
    // A Kubernetes-datastore deployment later related to etcd: stays, with a warning.
    let Some((unit, _server, etcd, _guard)) = etcd_unit("calico/3", true, true) else {
        return;
    };
    assert_ok(&unit, &unit.hook("install"));
    assert_ready_on(&unit, "kubernetes");
    let rid = relate_etcd(&unit, &etcd.relation_data());
    assert_ok(
        &unit,
        &unit.endpoint_hook("etcd", "changed", &rid, "etcd/0"),
    );
    let (status, message) = unit.status();
    assert_eq!(status, "active", "{message}");
    assert!(message.contains("etcd relation ignored"), "{message}");
    assert!(values(etcd, "/calico/").is_empty(), "wrote to etcd");
    assert_eq!(
        unit.charm_state().get("datastore").map(String::as_str),
        Some("kubernetes")
    );
}

/// The workload objects today's charm and this one both make (apiVersion, kind, plural path).
const ADOPTED: [(&str, &str, &str); 4] = [
    (
        "apps/v1",
        "DaemonSet",
        "/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node",
    ),
    (
        "apps/v1",
        "Deployment",
        "/apis/apps/v1/namespaces/kube-system/deployments/calico-kube-controllers",
    ),
    (
        "v1",
        "ConfigMap",
        "/api/v1/namespaces/kube-system/configmaps/calico-config",
    ),
    (
        "v1",
        "Secret",
        "/api/v1/namespaces/kube-system/secrets/calico-etcd-secrets",
    ),
];

fn adopted_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

/// What today's charm applies in kube-system (its field manager `calico-calico`), with the
/// fields of Calico's etcd manifest and its CK edits that this charm does not set: an
/// `IP_AUTODETECTION_METHOD`, `envFrom`, the `mount-bpffs` init container, the `nodeproc`,
/// `policysync` and `cni-log-dir` volumes, a second container, the `juju.io/*` labels,
/// kube-controllers' `cdk-restart-on-ca-change` label and `cdk-etcd-cert-last-modified`
/// annotation, a `Recreate` strategy, a ConfigMap key this charm does not set.
fn todays_workloads(server: &TestApiServer) {
    let labels = |app: &str| {
        json!({"juju.io/application": "calico", "juju.io/manifest": "calico",
               "juju.io/manifest-version": "calico-v3.25.1", "k8s-app": app})
    };
    let meta = |name: &str, app: &str| json!({"name": name, "namespace": "kube-system", "labels": labels(app)});
    let host = |name: &str, path: &str| json!({"name": name, "hostPath": {"path": path}});
    let node = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("calico-node", "calico-node"),
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "calico-node"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"k8s-app": "calico-node"},
                             "annotations": {"juju.io/old-hash": "0123"}},
                "spec": {
                    "hostNetwork": true,
                    "serviceAccountName": "calico-node",
                    "initContainers": [{
                        "name": "mount-bpffs", "image": "docker.io/calico/node:v3.25.1",
                        "command": ["calico-node", "-init", "-best-effort"],
                        "volumeMounts": [{"name": "nodeproc", "mountPath": "/nodeproc", "readOnly": true}],
                    }],
                    "containers": [
                        {"name": "calico-node", "image": "docker.io/calico/node:v3.25.1",
                         "envFrom": [{"configMapRef": {"name": "kubernetes-services-endpoint", "optional": true}}],
                         "env": [
                             {"name": "IP_AUTODETECTION_METHOD", "value": "skip-interface=lxd.*,fan.*"},
                             {"name": "ETCD_ENDPOINTS", "valueFrom": {"configMapKeyRef": {"name": "calico-config", "key": "etcd_endpoints"}}},
                             {"name": "CALICO_IPV6POOL_VXLAN", "value": "Never"},
                         ],
                         "volumeMounts": [
                             {"name": "policysync", "mountPath": "/var/run/nodeagent"},
                             {"name": "cni-log-dir", "mountPath": "/var/log/calico/cni", "readOnly": true},
                         ]},
                        {"name": "old-sidecar", "image": "docker.io/library/busybox:1"},
                    ],
                    "volumes": [
                        host("nodeproc", "/proc"),
                        host("policysync", "/var/run/nodeagent"),
                        host("cni-log-dir", "/var/log/calico/cni"),
                    ],
                },
            },
        },
    });
    let controllers = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "calico-kube-controllers", "namespace": "kube-system",
                     "labels": {"k8s-app": "calico-kube-controllers", "cdk-restart-on-ca-change": "true",
                                "juju.io/application": "calico", "juju.io/manifest": "calico"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"k8s-app": "calico-kube-controllers"}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": {"k8s-app": "calico-kube-controllers"},
                             "annotations": {"cdk-etcd-cert-last-modified": "foo"}},
                "spec": {
                    "hostNetwork": true,
                    "serviceAccountName": "calico-kube-controllers",
                    "containers": [{"name": "calico-kube-controllers",
                                    "image": "docker.io/calico/kube-controllers:v3.25.1",
                                    "env": [{"name": "ENABLED_CONTROLLERS",
                                             "value": "policy,namespace,serviceaccount,workloadendpoint,node"}]}],
                    "volumes": [{"name": "etcd-certs",
                                 "secret": {"secretName": "calico-etcd-secrets", "defaultMode": 288}}],
                },
            },
        },
    });
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("calico-config", "calico-node"),
        "data": {"etcd_endpoints": "https://10.0.0.99:2379", "etcd_key": "/calico-secrets/etcd-key",
                 "calico_backend": "bird", "calico_old_key": "x"},
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": meta("calico-etcd-secrets", "calico-node"),
        "type": "Opaque",
        "data": {"etcd-key": "b2xk", "etcd-cert": "b2xk", "etcd-ca": "b2xk"},
    });
    for (object, (_, _, path)) in [node, controllers, config, secret].iter().zip(ADOPTED) {
        apply_as(server, "calico-calico", path, object);
    }
}

#[test]
fn an_upgrade_from_todays_charm_adopts_its_data_and_workloads() {
    let Some((unit, server, etcd, _guard)) = etcd_unit("calico/0", true, false) else {
        return;
    };
    let peers = json!("- address: 10.0.0.2\n  as-number: 65000\n");

    // What this charm makes on a fresh deployment with the same config and relation: the
    // objects the adopted ones must end as. Then cleared for the upgrade.
    let mut fresh = unit_on(&server, "calico/0", true, NODE);
    // The same credential files (the CNI config in the ConfigMap names them).
    let creds = unit.host_dir().join("etcd-credentials");
    fresh.set_env("CALICO_CHARM_ETCD_DIR", &creds.display().to_string());
    fresh.set_config("global-bgp-peers", peers.clone());
    relate_etcd(&fresh, &etcd.relation_data());
    assert_ok(&fresh, &fresh.hook("install"));
    assert_eq!(
        fresh.status(),
        pair("active", "Ready"),
        "{}",
        fresh.transcript()
    );
    let reference: Vec<Value> = ADOPTED
        .iter()
        .map(|(v, kind, path)| {
            let o = server
                .remove(v, kind, Some("kube-system"), adopted_name(path))
                .expect("made by a fresh deployment");
            comparable(&o)
        })
        .collect();
    etcd.wipe();

    // What today's charm leaves in etcd (calicoctl's writes: no labels).
    let calicoctl = |kind: &str, name: &str, spec: Value| {
        json!({"kind": kind, "apiVersion": "projectcalico.org/v3",
               "metadata": {"name": name, "uid": format!("uid-{name}"),
                            "creationTimestamp": "2024-01-01T00:00:00Z"},
               "spec": spec})
    };
    etcd.put(
        &format!("{R}ippools/ipv4"),
        &calicoctl(
            "IPPool",
            "ipv4",
            json!({"cidr": "192.168.0.0/16", "ipipMode": "Never", "vxlanMode": "Never",
                   "natOutgoing": true, "blockSize": 26, "nodeSelector": "all()"}),
        ),
    );
    etcd.put(
        &format!("{R}bgppeers/calico-0-10.0.0.1-65000"),
        &calicoctl(
            "BGPPeer",
            "calico-0-10.0.0.1-65000",
            json!({"node": NODE, "peerIP": "10.0.0.1", "asNumber": 65000}),
        ),
    );
    etcd.put(
        &format!("{R}bgpconfigurations/default"),
        &calicoctl(
            "BGPConfiguration",
            "default",
            json!({"asNumber": 64512, "nodeToNodeMeshEnabled": true,
                   "serviceClusterIPs": [], "logSeverityScreen": "Info"}),
        ),
    );
    etcd.put(
        &format!("{R}nodes/{NODE}"),
        &json!({"kind": "Node", "apiVersion": "projectcalico.org/v3",
                "metadata": {"name": NODE, "uid": "uid-node"},
                "spec": {"bgp": {"ipv4Address": "10.0.0.5/24", "asNumber": 64999},
                         "orchRefs": [{"nodeName": NODE, "orchestrator": "k8s"}]}}),
    );
    // Its workloads in kube-system, applied with its own field manager.
    todays_workloads(&server);
    let before: Vec<Value> = ADOPTED
        .iter()
        .map(|(v, kind, path)| {
            server
                .get(v, kind, Some("kube-system"), adopted_name(path))
                .expect("pre-filled")
        })
        .collect();
    // A second peer of today's charm that the config still asks for.
    etcd.put(
        &format!("{R}bgppeers/calico-0-10.0.0.2-65000"),
        &calicoctl(
            "BGPPeer",
            "calico-0-10.0.0.2-65000",
            json!({"node": NODE, "peerIP": "10.0.0.2", "asNumber": 65000}),
        ),
    );
    // A peer of the same name for another node (not this unit's machine): never taken.
    let elsewhere = calicoctl(
        "BGPPeer",
        "calico-0-10.0.0.3-65000",
        json!({"node": "another-node", "peerIP": "10.0.0.3", "asNumber": 65000}),
    );
    etcd.put(&format!("{R}bgppeers/calico-0-10.0.0.3-65000"), &elsewhere);
    unit.set_config("global-bgp-peers", peers);
    relate_etcd(&unit, &etcd.relation_data());

    // juju refresh: upgrade-charm, then config-changed.
    assert_ok(&unit, &unit.hook("upgrade-charm"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_ready_on(&unit, "etcd");

    // Adopted, not duplicated: the same objects, now labelled as the charm's.
    assert_eq!(names(etcd, "ippools"), ["ipv4"]);
    let pool = etcd.get(&format!("{R}ippools/ipv4")).unwrap();
    assert_eq!(pool["metadata"]["uid"], "uid-ipv4");
    assert_eq!(
        pool["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "calico-charm"
    );
    assert_eq!(pool["spec"]["blockSize"], 26, "others' fields kept");
    // The wanted peer adopted (same uid, now labelled); the unwanted one pruned; the one
    // of another node left exactly as it was.
    assert_eq!(
        names(etcd, "bgppeers"),
        ["calico-0-10.0.0.2-65000", "calico-0-10.0.0.3-65000"]
    );
    assert_eq!(
        etcd.get(&format!("{R}bgppeers/calico-0-10.0.0.3-65000")),
        Some(elsewhere)
    );
    let peer = etcd
        .get(&format!("{R}bgppeers/calico-0-10.0.0.2-65000"))
        .unwrap();
    assert_eq!(peer["metadata"]["uid"], "uid-calico-0-10.0.0.2-65000");
    assert_eq!(
        peer["metadata"]["labels"]["calico.juju.is/unit"],
        "calico-0"
    );
    let bgp = etcd.get(&format!("{R}bgpconfigurations/default")).unwrap();
    assert_eq!(bgp["metadata"]["uid"], "uid-default");
    assert_eq!(bgp["spec"]["logSeverityScreen"], "Info");
    let node = etcd.get(&format!("{R}nodes/{NODE}")).unwrap();
    assert_eq!(node["metadata"]["uid"], "uid-node");
    assert_eq!(node["spec"]["orchRefs"][0]["nodeName"], NODE);
    // The earlier charm's AS on the node is no longer wanted: removed.
    assert!(node["spec"]["bgp"].get("asNumber").is_none(), "{node}");

    // The workloads: the same objects (same uid: calico-node's DaemonSet was never
    // recreated, its selector is the same, so its pods are rolled, not removed), and each is
    // now exactly what a fresh deployment makes: nothing today's charm set is left.
    for (((v, kind, path), old), want) in ADOPTED.iter().zip(&before).zip(&reference) {
        let name = adopted_name(path);
        let live = server.get(v, kind, Some("kube-system"), name).unwrap();
        assert_eq!(
            live["metadata"]["uid"], old["metadata"]["uid"],
            "{kind}/{name}"
        );
        assert_eq!(
            comparable(&live),
            *want,
            "{kind}/{name}: the adopted object differs from a fresh deployment's"
        );
        let managers: Vec<&str> = live["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["manager"].as_str())
            .collect();
        assert_eq!(managers, ["calico-charm"], "{kind}/{name}");
    }
    let ds = server
        .get("apps/v1", "DaemonSet", Some("kube-system"), "calico-node")
        .unwrap();
    assert_eq!(ds["spec"]["selector"], before[0]["spec"]["selector"]);
    let env = env_of(&ds, "calico-node");
    assert!(!env.contains_key("IP_AUTODETECTION_METHOD"), "{env:?}");
    assert!(env.contains_key("ETCD_ENDPOINTS"));
    assert_eq!(
        String::from_utf8(support::etcd::unbase64(
            server
                .get("v1", "Secret", Some("kube-system"), "calico-etcd-secrets")
                .unwrap()["data"]["etcd-key"]
                .as_str()
                .unwrap_or_default()
        ))
        .unwrap(),
        etcd.client.key
    );

    // Done once and remembered: a later hook adopts nothing and writes no workload.
    assert_eq!(
        unit.charm_state()
            .get("workloads-adopted")
            .map(String::as_str),
        Some("true")
    );
    let versions = |server: &TestApiServer| -> Vec<Value> {
        ADOPTED
            .iter()
            .map(|(v, kind, path)| {
                server
                    .get(v, kind, Some("kube-system"), adopted_name(path))
                    .unwrap()["metadata"]["resourceVersion"]
                    .clone()
            })
            .collect()
    };
    let settled = versions(&server);
    assert_ok(&unit, &unit.hook("update-status"));
    assert_eq!(versions(&server), settled);
}

const V3_32: &str = "docker.io/calico/node:v3.32.1";

/// A unit of a three-unit etcd deployment: on `node`, its cni binding at `address`, Calico
/// v3.32.1 (which has CalicoNodeStatus), related to its peers and to etcd.
fn etcd_peer(server: &TestApiServer, etcd: &Etcd, name: &str, address: &str, node: &str) -> Unit {
    let unit = unit_on(server, name, name == "calico/0", node);
    unit.bind_cni_at(address);
    unit.join_peer_relation();
    unit.set_config("calico-node-image", json!(V3_32));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.32.1"),
    );
    relate_etcd(&unit, &etcd.relation_data());
    unit
}

fn hooks(units: &[&Unit], hook: &str) {
    for u in units {
        assert_ok(u, &u.hook(hook));
    }
}

/// Write calico-node's report into `CalicoNodeStatus/<node>` in etcd, as calico-node does
/// (the whole object, its `status.bgp` replaced).
fn report_in_etcd(etcd: &Etcd, node: &str, peers: &[(&str, &str)]) {
    let key = format!("{R}caliconodestatuses/{node}");
    let mut object = etcd.get(&key).expect("the unit's CalicoNodeStatus");
    let established = peers.iter().filter(|p| p.1 == "Established").count();
    object["status"] = json!({
        "lastUpdated": "2026-12-02T00:00:00Z",
        "bgp": {
            "numberEstablishedV4": established,
            "numberNotEstablishedV4": peers.len() - established,
            "peersV4": peers.iter().map(|(ip, state)| json!({
                "peerIP": ip, "state": state, "type": "NodeMesh", "since": "00:00:00"
            })).collect::<Vec<_>>(),
        },
    });
    etcd.put(&key, &object);
}

#[test]
fn three_units_on_etcd_prune_only_their_own_peers_and_keep_their_node_status() {
    if support::etcd::skip(module_path!()) {
        return;
    }
    let Some(server) = envtest!(Options::without_crds()) else {
        return;
    };
    let etcd = Etcd::shared();
    let _guard = etcd.lock();
    for n in ["node-0", "node-1", "node-2"] {
        server.add_ready_node(n, None, V3_32);
    }
    let u0 = etcd_peer(&server, etcd, "calico/0", "10.0.0.2/24", "node-0");
    let u1 = etcd_peer(&server, etcd, "calico/1", "10.0.0.3/24", "node-1");
    let u2 = etcd_peer(&server, etcd, "calico/2", "10.0.0.4/24", "node-2");
    let all = [&u0, &u1, &u2];
    let peers = |one: &str| {
        format!(
            "0:\n- address: 10.9.0.1\n  as-number: 65001\n1:\n{one}- address: 10.9.0.3\n  as-number: 65001\n2:\n- address: 10.9.0.4\n  as-number: 65001\n"
        )
    };
    for u in all {
        u.set_config(
            "unit-bgp-peers",
            json!(peers("- address: 10.9.0.2\n  as-number: 65001\n")),
        );
    }
    hooks(&all, "config-changed");
    share_peer_data(&all);
    hooks(&all, "update-status");
    share_peer_data(&all);
    hooks(&all, "update-status");
    for u in all {
        assert_eq!(u.status(), pair("active", "Ready"), "{}", u.transcript());
        assert_eq!(
            u.charm_state().get("datastore").map(String::as_str),
            Some("etcd")
        );
    }
    let mut all_peers = names(etcd, "bgppeers");
    all_peers.sort();
    assert_eq!(
        all_peers,
        [
            "calico-0-10.9.0.1-65001",
            "calico-1-10.9.0.2-65001",
            "calico-1-10.9.0.3-65001",
            "calico-2-10.9.0.4-65001"
        ]
    );
    for name in &all_peers {
        let p = etcd.get(&format!("{R}bgppeers/{name}")).unwrap();
        let owner = name.split('-').take(2).collect::<Vec<_>>().join("-");
        assert_eq!(
            p["metadata"]["labels"]["calico.juju.is/unit"],
            owner.as_str()
        );
    }

    // Each unit keeps its node's CalicoNodeStatus in etcd, labelled as its own.
    for (i, u) in all.iter().enumerate() {
        let s = etcd
            .get(&format!("{R}caliconodestatuses/node-{i}"))
            .unwrap_or_else(|| panic!("CalicoNodeStatus/node-{i}: {}", u.transcript()));
        assert_eq!(
            s["spec"],
            json!({"node": format!("node-{i}"), "classes": ["BGP"], "updatePeriodSeconds": 60})
        );
        assert_eq!(
            s["metadata"]["labels"]["calico.juju.is/unit"],
            format!("calico-{i}")
        );
        assert_eq!(s["kind"], "CalicoNodeStatus");
    }
    // calico-node's report, compared with the topology model: the mesh to the two others
    // and the unit's own two peers.
    let mesh_and_own = |last: &'static str| {
        [
            ("10.0.0.2", "Established"),
            ("10.0.0.4", "Established"),
            ("10.9.0.2", "Established"),
            ("10.9.0.3", last),
        ]
    };
    report_in_etcd(etcd, "node-1", &mesh_and_own("Established"));
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        pair("active", "Ready (BGP 4/4 established)"),
        "{}",
        u1.transcript()
    );
    report_in_etcd(etcd, "node-1", &mesh_and_own("Active"));
    let key = format!("{R}caliconodestatuses/node-1");
    let before = etcd.dump(&key)[&key].1;
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        pair(
            "waiting",
            "BGP: 1 of 4 sessions not established: 10.9.0.3 (Active)"
        )
    );
    // The hook never writes calico-node's report (nor anything else of the object).
    assert_eq!(etcd.dump(&key)[&key].1, before);
    assert_eq!(
        etcd.get(&key).unwrap()["status"]["bgp"]["peersV4"][3]["state"],
        "Active"
    );
    // bgp-status reads the report from etcd too.
    let run = u1.action("bgp-status", json!({}));
    assert_ok(&u1, &run);
    let set = u1.action_records().last().expect("record")["set"].clone();
    assert_eq!(
        set["actual"],
        json!(
            "10.0.0.2 Established\n10.0.0.4 Established\n10.9.0.2 Established\n10.9.0.3 Active\nBGP: 1 of 4 sessions not established: 10.9.0.3 (Active)"
        )
    );

    // Drift in a field the charm owns is put back; a field of someone else's stays.
    let drifted = format!("{R}bgppeers/calico-1-10.9.0.3-65001");
    let mut peer = etcd.get(&drifted).unwrap();
    peer["spec"]["asNumber"] = json!(65999);
    peer["spec"]["keepOriginalNextHop"] = json!(true);
    etcd.put(&drifted, &peer);

    // One peer less for calico/1: only its peer goes, whoever runs a hook.
    for u in all {
        u.set_config("unit-bgp-peers", json!(peers("")));
    }
    hooks(&all, "config-changed");
    let mut left = names(etcd, "bgppeers");
    left.sort();
    assert_eq!(
        left,
        [
            "calico-0-10.9.0.1-65001",
            "calico-1-10.9.0.3-65001",
            "calico-2-10.9.0.4-65001"
        ]
    );
    let peer = etcd.get(&drifted).unwrap();
    assert_eq!(peer["spec"]["asNumber"], 65001);
    assert_eq!(peer["spec"]["keepOriginalNextHop"], true);

    // calico/2 goes: its peer and its CalicoNodeStatus with it; an operator's own
    // CalicoNodeStatus for its node, and the other units', stay.
    let debug = json!({"kind": "CalicoNodeStatus", "apiVersion": "projectcalico.org/v3",
                       "metadata": {"name": "node-2-debug"},
                       "spec": {"node": "node-2", "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10}});
    etcd.put(&format!("{R}caliconodestatuses/node-2-debug"), &debug);
    // etcd down while it stops: the hook still succeeds; remove cleans up once etcd is back.
    etcd.stop();
    assert_ok(&u2, &u2.hook("stop"));
    assert!(etcd.start().is_ok(), "etcd back");
    assert_ok(&u2, &u2.hook("remove"));
    assert!(etcd.get(&format!("{R}caliconodestatuses/node-2")).is_none());
    assert_eq!(
        etcd.get(&format!("{R}caliconodestatuses/node-2-debug")),
        Some(debug)
    );
    for n in ["node-0", "node-1"] {
        assert!(etcd.get(&format!("{R}caliconodestatuses/{n}")).is_some());
    }
    let mut left = names(etcd, "bgppeers");
    left.sort();
    assert_eq!(left, ["calico-0-10.9.0.1-65001", "calico-1-10.9.0.3-65001"]);

    // The leader goes: the pool and the BGP configuration stay for the others.
    let globals = |etcd: &Etcd| {
        (
            values(etcd, &format!("{R}ippools/")),
            etcd.get(&format!("{R}bgpconfigurations/default")),
        )
    };
    let before = globals(etcd);
    assert_eq!(before.0.len(), 1);
    assert!(before.1.is_some());
    assert_ok(&u0, &u0.hook("stop"));
    assert_ok(&u0, &u0.hook("remove"));
    assert_eq!(globals(etcd), before);
    assert_eq!(names(etcd, "bgppeers"), ["calico-1-10.9.0.3-65001"]);
}

/// Calico's objects in etcd as a deployment's config determines them: without what the
/// store gives each (uid, creation time, revision), and pools keyed by CIDR (a cidr change
/// names the new pool after the old).
fn converged_state(etcd: &Etcd) -> BTreeMap<String, Value> {
    values(etcd, R)
        .into_iter()
        .map(|(key, mut value)| {
            if let Some(meta) = value["metadata"].as_object_mut() {
                for server_side in ["uid", "creationTimestamp", "resourceVersion", "generation"] {
                    meta.remove(server_side);
                }
            }
            let key = match key.strip_prefix(&format!("{R}ippools/")) {
                Some(_) => {
                    value["metadata"]["name"] = json!("");
                    format!("ippool {}", value["spec"]["cidr"])
                }
                None => key,
            };
            (key, value)
        })
        .collect()
}

#[test]
fn a_hook_killed_mid_write_to_etcd_is_converged_by_the_next() {
    let Some((unit, server, etcd, _guard)) = etcd_unit("calico/0", true, false) else {
        return;
    };
    let first = json!("- address: 10.0.0.1\n  as-number: 65000\n");
    let second = json!(
        "- address: 10.0.9.1\n  as-number: 65001\n- address: 10.0.9.2\n  as-number: 65002\n\
         - address: 10.0.9.3\n  as-number: 65003\n- address: 10.0.9.4\n  as-number: 65004\n"
    );
    let configure = |u: &Unit, peers: &Value, cidr: &str, asn: &str| {
        u.set_config("global-bgp-peers", peers.clone());
        u.set_config("cidr", json!(cidr));
        u.set_config("unit-as-numbers", json!(asn));
    };

    // The reference: a fresh deployment straight to the second configuration.
    let fresh = unit_on(&server, "calico/0", true, NODE);
    configure(&fresh, &second, "10.60.0.0/16", "0: 64600\n");
    relate_etcd(&fresh, &etcd.relation_data());
    assert_ok(&fresh, &fresh.hook("install"));
    assert_ready_on(&fresh, "etcd");
    let reference = converged_state(etcd);
    assert!(
        reference.keys().any(|k| k.contains("bgppeers/")),
        "{reference:?}"
    );
    etcd.wipe();

    // The unit under test: deployed with the first configuration, then killed part-way
    // through hooks that move between the two, at the first write each hook makes to etcd
    // and a little after it.
    configure(&unit, &first, "192.168.0.0/16", "");
    relate_etcd(&unit, &etcd.relation_data());
    assert_ok(&unit, &unit.hook("install"));
    assert_ready_on(&unit, "etcd");
    let mut kills = 0;
    for (i, delay_ms) in [0u64, 0, 3, 10, 25].into_iter().enumerate() {
        if i % 2 == 0 {
            configure(&unit, &second, "10.60.0.0/16", "0: 64600\n");
        } else {
            configure(&unit, &first, "192.168.0.0/16", "");
        }
        let before = etcd.dump(R);
        kills += usize::from(unit.run_killed_when("config-changed", || {
            etcd.dump(R) != before && {
                std::thread::sleep(std::time::Duration::from_millis(delay_ms));
                true
            }
        }));
    }
    assert!(kills >= 3, "killed {kills} hooks");

    // The next whole hook ends exactly where the fresh deployment did.
    configure(&unit, &second, "10.60.0.0/16", "0: 64600\n");
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_ready_on(&unit, "etcd");
    assert_eq!(converged_state(etcd), reference);
    // And a further hook writes nothing.
    let settled = etcd.dump(R);
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(etcd.dump(R), settled);
}

#[test]
fn the_as_per_rack_example_writes_to_etcd_exactly_what_render_prints() {
    let Some((unit, server, etcd, _guard)) = etcd_unit("calico/0", true, false) else {
        return;
    };
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/as-per-rack.yaml");
    let options: BTreeMap<String, Value> =
        serde_yaml::from_str(&std::fs::read_to_string(golden).expect("golden")).expect("yaml");
    for (key, value) in &options {
        unit.set_config(key, value.clone());
    }
    unit.bind_cni_at("10.0.0.2/24");
    relate_etcd(&unit, &etcd.relation_data());
    assert_ok(&unit, &unit.hook("install"));
    assert_ready_on(&unit, "etcd");

    // What the binary's `render --datastore etcd` prints for this unit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_calico-charm"))
        .args([
            "render",
            "--datastore",
            "etcd",
            "--format",
            "json",
            "--leader",
        ])
        .args([
            "--config",
            golden,
            "--unit",
            "calico/0",
            "--address",
            "10.0.0.2/24",
        ])
        .args(["--node-name", NODE])
        .output()
        .expect("render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = printed["items"].as_array().cloned().unwrap_or_default();
    let (keyed, workloads): (Vec<Value>, Vec<Value>) =
        items.into_iter().partition(|i| i.get("key").is_some());

    // Every printed key holds the printed object (the store adds only its identity), and
    // the charm owns no other key.
    // (The Node is calico-node's: the charm owns only its BGP fields, and labels it not.)
    let mut printed_keys = Vec::new();
    for item in &keyed {
        let key = item["key"].as_str().expect("key").to_string();
        let want = &item["value"];
        let live = etcd
            .get(&key)
            .unwrap_or_else(|| panic!("{key} not in etcd"));
        assert_eq!(live["spec"], want["spec"], "{key}");
        assert_eq!(live["kind"], want["kind"], "{key}");
        assert_eq!(live["metadata"]["name"], want["metadata"]["name"], "{key}");
        for part in ["labels", "annotations"] {
            for (k, v) in want["metadata"][part].as_object().into_iter().flatten() {
                assert_eq!(&live["metadata"][part][k], v, "{key}: {part} {k}");
            }
        }
        if want["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "calico-charm" {
            printed_keys.push(key);
        }
    }
    let owned: Vec<String> = values(etcd, "/calico/")
        .into_iter()
        .filter(|(_, v)| v["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "calico-charm")
        .map(|(k, _)| k)
        .collect();
    printed_keys.sort();
    assert_eq!(owned, printed_keys);
    // By hand, from the seed's example: calico/0 peers with the other reflector of its
    // rack (10.0.1.2) and its ToR (10.0.0.1); AS 64512 and cluster ID 0.0.0.0 on its node.
    assert_eq!(
        names(etcd, "bgppeers"),
        ["calico-0-10.0.0.1-64512", "calico-0-10.0.1.2-64512"]
    );
    let node = etcd.get(&format!("{R}nodes/{NODE}")).expect("node");
    assert_eq!(node["spec"]["bgp"]["asNumber"], 64512);
    assert_eq!(node["spec"]["bgp"]["routeReflectorClusterID"], "0.0.0.0");

    // Every printed workload object is on the API server as the charm's.
    for want in &workloads {
        let (api, kind) = (want["apiVersion"].as_str(), want["kind"].as_str());
        let name = want["metadata"]["name"].as_str().unwrap_or_default();
        let ns = want["metadata"]["namespace"].as_str();
        let live = server
            .get(api.unwrap_or_default(), kind.unwrap_or_default(), ns, name)
            .unwrap_or_else(|| panic!("{kind:?}/{name} not applied"));
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "calico-charm",
            "{kind:?}/{name}"
        );
        if kind == Some("ConfigMap") {
            // Offline, render knows neither the relation's endpoints nor this unit's
            // credential directory (a test's, not /etc/calico/etcd): it prints placeholders.
            let creds = unit.host_dir().join("etcd-credentials");
            let want = want["data"]
                .to_string()
                .replace("https://ETCD-ADDRESS:2379", &etcd.url)
                .replace("/etc/calico/etcd/", &format!("{}/", creds.display()));
            assert_eq!(live["data"].to_string(), want, "{name}");
        }
    }
    assert!(workloads.iter().any(|w| w["kind"] == "DaemonSet"));
}
