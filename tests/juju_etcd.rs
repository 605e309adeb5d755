//! The packed charm in etcd mode, run as Juju runs it: the `etcd` relation to a real etcd with
//! TLS and client-certificate authentication (tests/support/etcd.rs) and a real Kubernetes
//! API for the workloads (tests/support/apiserver). Calico's data is checked in etcd with
//! the harness's own client, the workloads on the API server.

mod juju_harness;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use juju_harness::{KUBECONFIG_HASH, Unit, assert_ok};
use serde_json::{Value, json};
use support::apiserver::{Options, TestApiServer};
use support::etcd::Etcd;

const R: &str = "/calico/resources/v3/projectcalico.org/";
const NODE: &str = "worker-0";

fn pair(status: &str, message: &str) -> (String, String) {
    (status.to_string(), message.to_string())
}

/// A unit related to its principal (kubeconfig published) with a Kubernetes API where its
/// node runs a ready calico-node pod, and its credential files in its own directory.
/// `None` when the envtest tests are skipped.
fn etcd_unit(name: &str, leader: bool, crds: bool) -> Option<(Unit, TestApiServer)> {
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
    let mut unit = Unit::new(name);
    unit.set_leader(leader);
    unit.relate_cni(4, &[("kubeconfig-hash", KUBECONFIG_HASH)]);
    server
        .write_kubeconfig(&unit.kubeconfig())
        .expect("write kubeconfig");
    unit.set_env("NODENAME", NODE);
    let creds = unit.host_dir().join("etcd-credentials");
    unit.set_env("CALICO_CHARM_ETCD_DIR", &creds.display().to_string());
    unit.set_env("CALICO_CHARM_ETCD_BUDGET_SECS", "3");
    unit.set_env("CALICO_CHARM_ETCD_TIMEOUT_SECS", "1");
    unit.set_env("CALICO_CHARM_POOL_SETTLE_MS", "0");
    Some((unit, server))
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
    let Some((unit, server)) = etcd_unit("calico/0", true, false) else {
        return;
    };
    let etcd = Etcd::shared();
    let _guard = etcd.lock();
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
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );
    assert_eq!(
        unit.charm_state().get("datastore").map(String::as_str),
        Some("etcd")
    );

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
    let Some((unit, _server)) = etcd_unit("calico/1", true, false) else {
        return;
    };
    let etcd = Etcd::shared();
    let _guard = etcd.lock();
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
    let Some((unit, _server)) = etcd_unit("calico/3", true, true) else {
        return;
    };
    let etcd = Etcd::shared();
    let _guard = etcd.lock();
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );
    assert_eq!(
        unit.charm_state().get("datastore").map(String::as_str),
        Some("kubernetes")
    );
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

#[test]
fn an_upgrade_from_todays_charm_adopts_its_data_and_workloads() {
    let Some((unit, server)) = etcd_unit("calico/0", true, false) else {
        return;
    };
    let etcd = Etcd::shared();
    let _guard = etcd.lock();
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
    // Its workloads in kube-system (ops.manifests labels, no managed-by).
    let juju_labels = json!({"juju.io/application": "calico", "juju.io/manifest": "calico",
                             "k8s-app": "calico-node"});
    server
        .insert(json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "calico-etcd-secrets", "namespace": "kube-system",
                                    "labels": juju_labels},
                       "data": {"etcd-key": "b2xk", "etcd-cert": "b2xk", "etcd-ca": "b2xk"}}))
        .expect("secret");
    server
        .insert(json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "calico-config", "namespace": "kube-system",
                                    "labels": juju_labels},
                       "data": {"etcd_endpoints": "https://10.0.0.99:2379",
                                "etcd_key": "/calico-secrets/etcd-key"}}))
        .expect("configmap");
    // A second peer of today's charm that the config still asks for.
    etcd.put(
        &format!("{R}bgppeers/calico-0-10.0.0.2-65000"),
        &calicoctl(
            "BGPPeer",
            "calico-0-10.0.0.2-65000",
            json!({"node": NODE, "peerIP": "10.0.0.2", "asNumber": 65000}),
        ),
    );
    unit.set_config(
        "global-bgp-peers",
        json!("- address: 10.0.0.2\n  as-number: 65000\n"),
    );
    relate_etcd(&unit, &etcd.relation_data());

    // juju refresh: upgrade-charm, then config-changed.
    assert_ok(&unit, &unit.hook("upgrade-charm"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(
        unit.status(),
        pair("active", "Ready"),
        "{}",
        unit.transcript()
    );
    assert_eq!(
        unit.charm_state().get("datastore").map(String::as_str),
        Some("etcd")
    );

    // Adopted, not duplicated: the same objects, now labelled as the charm's.
    assert_eq!(names(etcd, "ippools"), ["ipv4"]);
    let pool = etcd.get(&format!("{R}ippools/ipv4")).unwrap();
    assert_eq!(pool["metadata"]["uid"], "uid-ipv4");
    assert_eq!(
        pool["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "calico-charm"
    );
    assert_eq!(pool["spec"]["blockSize"], 26, "others' fields kept");
    // The wanted peer adopted (same uid, now labelled); the unwanted one pruned.
    assert_eq!(names(etcd, "bgppeers"), ["calico-0-10.0.0.2-65000"]);
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

    // The workloads: one Secret, one ConfigMap, now the charm's, with the relation's data.
    let secret = server
        .get("v1", "Secret", Some("kube-system"), "calico-etcd-secrets")
        .unwrap();
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "calico-charm"
    );
    assert_eq!(
        String::from_utf8(support::etcd::unbase64(
            secret["data"]["etcd-key"].as_str().unwrap_or_default()
        ))
        .unwrap(),
        etcd.client.key
    );
    let cm = server
        .get("v1", "ConfigMap", Some("kube-system"), "calico-config")
        .unwrap();
    assert_eq!(cm["data"]["etcd_endpoints"], etcd.url.as_str());
    assert_eq!(
        server.list("v1", "Secret", Some("kube-system")).len(),
        server
            .list("v1", "Secret", Some("kube-system"))
            .iter()
            .filter(|s| s["metadata"]["name"] != "calico-etcd-secrets")
            .count()
            + 1
    );
}
