//! The charm's etcd v3 client against a real etcd with TLS and client-certificate
//! authentication (tests/support/etcd.rs), checked through the harness's own client.

mod support;

use std::time::{Duration, Instant};

use calico_charm::etcd::{
    Compare, EtcdClient, EtcdConfig, EtcdError, EtcdSettings, Op, from_relation,
};
use serde_json::json;
use support::etcd::Etcd;

macro_rules! etcd {
    ($name:literal) => {{
        if support::etcd::skip($name) {
            return;
        }
        let etcd = Etcd::shared();
        (etcd, etcd.lock())
    }};
}

fn settings() -> EtcdSettings {
    EtcdSettings {
        budget: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
    }
}

fn config(data: &std::collections::BTreeMap<String, String>) -> EtcdConfig {
    from_relation(data).expect("relation data")
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn writes_compare_on_mod_revision_and_transactions_are_all_or_nothing() {
    let (etcd, _guard) = etcd!("writes_compare_on_mod_revision");
    let client = EtcdClient::new(&config(&etcd.relation_data()), settings()).unwrap();
    run(async {
        let key = "/calico/resources/v3/projectcalico.org/ippools/ipv4";
        // Create only if absent (mod revision 0).
        assert!(client.put_if(key, br#"{"a":1}"#, 0).await.unwrap());
        assert!(!client.put_if(key, br#"{"a":2}"#, 0).await.unwrap());
        let kv = client.get(key).await.unwrap().unwrap();
        assert_eq!(kv.value, br#"{"a":1}"#);
        assert_eq!(etcd.dump(key)[key].1, kv.mod_revision);
        // A stale revision writes nothing; the current one does.
        assert!(
            !client
                .put_if(key, b"{}", kv.mod_revision - 1)
                .await
                .unwrap()
        );
        assert!(
            client
                .put_if(key, br#"{"a":3}"#, kv.mod_revision)
                .await
                .unwrap()
        );
        assert_eq!(etcd.get(key), Some(json!({"a": 3})));

        // Two writes under two compares: one stale compare and neither is made.
        let other = "/calico/resources/v3/projectcalico.org/bgppeers/p";
        let now = client.get(key).await.unwrap().unwrap().mod_revision;
        let txn = client
            .txn(
                &[
                    Compare {
                        key: key.into(),
                        mod_revision: now,
                    },
                    Compare {
                        key: other.into(),
                        mod_revision: 12345,
                    },
                ],
                &[
                    Op::Delete { key: key.into() },
                    Op::Put {
                        key: other.into(),
                        value: b"{}".to_vec(),
                    },
                ],
            )
            .await
            .unwrap();
        assert!(!txn.succeeded);
        assert!(etcd.get(key).is_some());
        assert!(etcd.get(other).is_none());
        // With current revisions both happen at one revision.
        let txn = client
            .txn(
                &[
                    Compare {
                        key: key.into(),
                        mod_revision: now,
                    },
                    Compare {
                        key: other.into(),
                        mod_revision: 0,
                    },
                ],
                &[
                    Op::Delete { key: key.into() },
                    Op::Put {
                        key: other.into(),
                        value: b"{}".to_vec(),
                    },
                ],
            )
            .await
            .unwrap();
        assert!(txn.succeeded);
        assert!(etcd.get(key).is_none());
        assert_eq!(etcd.dump(other)[other].1, txn.revision);
        assert_eq!(etcd.revision(), txn.revision);
        // Deletes compare too.
        assert!(!client.delete_if(other, txn.revision - 1).await.unwrap());
        assert!(client.delete_if(other, txn.revision).await.unwrap());
        assert!(etcd.get(other).is_none());
    });
}

#[test]
fn a_prefix_lists_one_units_peers_and_nothing_else() {
    let (etcd, _guard) = etcd!("a_prefix_lists_one_units_peers");
    let base = "/calico/resources/v3/projectcalico.org/bgppeers/";
    for name in [
        "calico-1-10.0.0.1-64512",
        "calico-1-10.0.0.2-64512",
        "calico-10-10.0.0.1-64512",
        "calico-2-10.0.0.1-64512",
        "someone-elses",
    ] {
        etcd.put(&format!("{base}{name}"), &json!({"n": name}));
    }
    let client = EtcdClient::new(&config(&etcd.relation_data()), settings()).unwrap();
    let keys = run(client.keys_with_prefix(&format!("{base}calico-1-"))).unwrap();
    assert_eq!(
        keys,
        vec![
            format!("{base}calico-1-10.0.0.1-64512"),
            format!("{base}calico-1-10.0.0.2-64512"),
        ]
    );
    let kvs = run(client.list_prefix(base)).unwrap();
    assert_eq!(kvs.len(), 5);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&kvs[4].value).unwrap(),
        json!({"n": "someone-elses"})
    );
}

#[test]
fn a_client_certificate_etcd_does_not_trust_is_denied_not_retried() {
    let (etcd, _guard) = etcd!("a_client_certificate_etcd_does_not_trust");
    let client = EtcdClient::new(&config(&etcd.wrong_cert_relation_data()), settings()).unwrap();
    let started = Instant::now();
    let err = run(client.get("/calico/x")).unwrap_err();
    assert!(matches!(err, EtcdError::Denied(_)), "{err:?}");
    assert!(err.to_string().contains("client certificate"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "retried: {err}");
    assert!(!err.is_transient());

    // A client_ca that does not sign etcd's server certificate: the relation cannot work.
    let data = etcd.relation_with(&etcd.client, &etcd.wrong_ca_pem);
    let client = EtcdClient::new(&config(&data), settings()).unwrap();
    let err = run(client.get("/calico/x")).unwrap_err();
    assert!(
        matches!(err, EtcdError::Setup(ref m) if m.contains("not trusted")),
        "{err:?}"
    );
}

#[test]
fn unparsable_credentials_are_named() {
    let (etcd, _guard) = etcd!("unparsable_credentials_are_named");
    let mut data = etcd.relation_data();
    data.insert(
        "client_key".into(),
        "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----".into(),
    );
    let err = EtcdClient::new(&config(&data), settings()).unwrap_err();
    assert_eq!(err.to_string(), "etcd: client_key is not a PEM private key");
}

#[test]
fn etcd_down_or_frozen_is_unavailable_within_the_budget_then_answers_again() {
    let (etcd, _guard) = etcd!("etcd_down_or_frozen_is_unavailable");
    let cfg = config(&etcd.relation_data());
    etcd.stop();
    let client = EtcdClient::new(&cfg, settings()).unwrap();
    let started = Instant::now();
    let err = run(client.get("/calico/x")).unwrap_err();
    assert!(matches!(err, EtcdError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    etcd.start().unwrap();
    let client = EtcdClient::new(&cfg, settings()).unwrap();
    assert_eq!(run(client.get("/calico/x")).unwrap(), None);

    // Frozen: the connection is accepted, nothing answers; the request timeout bounds it.
    etcd.pause();
    let client = EtcdClient::new(&cfg, settings()).unwrap();
    let started = Instant::now();
    let err = run(client.get("/calico/x")).unwrap_err();
    etcd.resume();
    assert!(matches!(err, EtcdError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // A second endpoint that refuses does not stop the first from being used.
    let mut data = etcd.relation_data();
    data.insert(
        "connection_string".into(),
        format!("https://127.0.0.1:1,{}", etcd.url),
    );
    let client = EtcdClient::new(&config(&data), settings()).unwrap();
    assert!(run(client.revision()).unwrap() > 0);
}

mod store {
    use super::*;
    use calico_charm::calico::{BGPPeer, BGPPeerSpec, IPPool, IPPoolSpec};
    use calico_charm::etcd::store::{EtcdStore, NodeBgp};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    const R: &str = "/calico/resources/v3/projectcalico.org/";

    fn charm_labels(unit: Option<&str>) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "calico-charm".to_string(),
        )]);
        if let Some(u) = unit {
            l.insert("calico.juju.is/unit".into(), u.into());
        }
        l
    }

    fn pool(name: &str, cidr: &str) -> IPPool {
        IPPool {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(charm_labels(None)),
                ..ObjectMeta::default()
            },
            spec: IPPoolSpec {
                cidr: cidr.into(),
                ipip_mode: Some("Always".into()),
                nat_outgoing: Some(true),
                ..IPPoolSpec::default()
            },
        }
    }

    fn store(etcd: &Etcd) -> EtcdStore {
        EtcdStore::new(EtcdClient::new(&config(&etcd.relation_data()), settings()).unwrap())
    }

    #[test]
    fn pools_are_full_v3_objects_written_once_and_merged_with_others_fields() {
        let (etcd, _guard) = etcd!("pools_are_full_v3_objects");
        let s = store(etcd);
        let stored = run(s.apply_pool(&pool("ipv4", "10.1.0.0/16"))).unwrap();
        let key = format!("{R}ippools/ipv4");
        let (value, rev) = etcd.dump(&key)[&key].clone();
        assert_eq!(value["apiVersion"], "projectcalico.org/v3");
        assert_eq!(value["kind"], "IPPool");
        assert_eq!(value["metadata"]["name"], "ipv4");
        assert_eq!(value["metadata"]["uid"].as_str().map(str::len), Some(36));
        assert!(value["metadata"]["creationTimestamp"].is_string());
        assert!(value["metadata"].get("resourceVersion").is_none());
        assert_eq!(
            value["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "calico-charm"
        );
        assert_eq!(
            value["spec"],
            json!({"cidr": "10.1.0.0/16", "ipipMode": "Always", "natOutgoing": true})
        );
        assert_eq!(stored.metadata.resource_version, Some(rev.to_string()));

        // The same apply again writes nothing.
        let before = etcd.revision();
        run(s.apply_pool(&pool("ipv4", "10.1.0.0/16"))).unwrap();
        assert_eq!(etcd.revision(), before);

        // Someone else adds a field and a label; the charm changes its own field only.
        let mut v = value.clone();
        v["spec"]["blockSize"] = json!(24);
        v["metadata"]["labels"]["team"] = json!("net");
        etcd.put(&key, &v);
        let mut p = pool("ipv4", "10.1.0.0/16");
        p.spec.ipip_mode = None;
        p.spec.vxlan_mode = Some("Always".into());
        run(s.apply_pool(&p)).unwrap();
        let after = etcd.get(&key).unwrap();
        assert_eq!(
            after["spec"],
            json!({"cidr": "10.1.0.0/16", "vxlanMode": "Always", "natOutgoing": true, "blockSize": 24})
        );
        assert_eq!(after["metadata"]["labels"]["team"], "net");
        assert_eq!(after["metadata"]["uid"], value["metadata"]["uid"]);

        // Disable keeps every other field; delete compares the revision read.
        let listed = run(s.list_pools()).unwrap();
        assert_eq!(listed.len(), 1);
        run(s.disable_pool(&listed[0])).unwrap();
        assert_eq!(etcd.get(&key).unwrap()["spec"]["disabled"], true);
        assert!(
            !run(s.delete_pool(&listed[0])).unwrap(),
            "stale revision deleted"
        );
        assert!(etcd.get(&key).is_some());
        let fresh = run(s.list_pools()).unwrap();
        assert!(run(s.delete_pool(&fresh[0])).unwrap());
        assert!(etcd.get(&key).is_none());
    }

    #[test]
    fn owned_peers_are_found_by_prefix_and_label_and_the_node_keeps_others_fields() {
        let (etcd, _guard) = etcd!("owned_peers_are_found_by_prefix");
        let s = store(etcd);
        let peer = |name: &str, unit: Option<&str>| BGPPeer {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: unit.map(|u| charm_labels(Some(u))),
                ..ObjectMeta::default()
            },
            spec: BGPPeerSpec {
                node: Some("n1".into()),
                peer_ip: Some("10.0.0.1".into()),
                as_number: Some(64512),
                ..BGPPeerSpec::default()
            },
        };
        run(s.apply_peer(&peer("calico-1-10.0.0.1-64512", Some("calico-1")))).unwrap();
        run(s.apply_peer(&peer("calico-10-10.0.0.1-64512", Some("calico-10")))).unwrap();
        // The earlier charm's peer: same prefix, no labels.
        etcd.put(
            &format!("{R}bgppeers/calico-1-10.0.0.9-64512"),
            &json!({"kind": "BGPPeer", "apiVersion": "projectcalico.org/v3",
                    "metadata": {"name": "calico-1-10.0.0.9-64512"},
                    "spec": {"node": "n1", "peerIP": "10.0.0.9", "asNumber": 64512}}),
        );
        let owned: Vec<String> = run(s.list_owned_peers("calico-1"))
            .unwrap()
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert_eq!(owned, vec!["calico-1-10.0.0.1-64512".to_string()]);
        let prefixed = run(s.list_peers_with_prefix("calico-1")).unwrap();
        assert_eq!(prefixed.len(), 2);

        // The Node: calico-node's fields stay; the address is set, not owned.
        let key = format!("{R}nodes/n1");
        etcd.put(
            &key,
            &json!({"kind": "Node", "apiVersion": "projectcalico.org/v3",
                    "metadata": {"name": "n1", "uid": "abc"},
                    "spec": {"bgp": {"ipv4Address": "10.0.0.5/24", "asNumber": 64999},
                             "orchRefs": [{"nodeName": "n1", "orchestrator": "k8s"}]}}),
        );
        let bgp = NodeBgp {
            as_number: Some(64512),
            route_reflector_cluster_id: Some("224.0.0.1".into()),
            ipv4_address: Some("10.0.0.5/24".into()),
        };
        assert_eq!(run(s.apply_node_bgp("n1", &bgp)).unwrap(), bgp);
        let node = etcd.get(&key).unwrap();
        assert_eq!(node["spec"]["orchRefs"][0]["nodeName"], "n1");
        assert_eq!(node["metadata"]["uid"], "abc");
        let before = etcd.revision();
        run(s.apply_node_bgp("n1", &bgp)).unwrap();
        assert_eq!(etcd.revision(), before, "a no-op wrote");
        // Stop wanting everything: the charm's fields go, the address and the rest stay.
        run(s.apply_node_bgp("n1", &NodeBgp::default())).unwrap();
        let node = etcd.get(&key).unwrap();
        assert_eq!(node["spec"]["bgp"], json!({"ipv4Address": "10.0.0.5/24"}));
        assert_eq!(node["spec"]["orchRefs"][0]["orchestrator"], "k8s");
        // A node calico-node has not created yet is created with the charm's settings.
        run(s.apply_node_bgp("n2", &bgp)).unwrap();
        assert_eq!(
            etcd.get(&format!("{R}nodes/n2")).unwrap()["spec"]["bgp"]["asNumber"],
            64512
        );
        assert_eq!(run(s.get_node_bgp("n3")).unwrap(), None);
    }

    #[test]
    fn ipam_blocks_are_read_with_their_cidr_and_use() {
        let (etcd, _guard) = etcd!("ipam_blocks_are_read");
        etcd.put(
            "/calico/ipam/v2/assignment/ipv4/block/10.1.0.0-26",
            &json!({"cidr": "10.1.0.0/26", "affinity": "host:n1", "allocations": [0, null]}),
        );
        etcd.put(
            "/calico/ipam/v2/assignment/ipv4/block/10.1.0.64-26",
            &json!({"cidr": "10.1.0.64/26", "allocations": [null, null]}),
        );
        let blocks = run(store(etcd).list_ipam_blocks()).unwrap();
        let summary: Vec<(String, bool)> = blocks
            .iter()
            .map(|b| (b.spec.cidr.clone(), b.spec.in_use()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("10.1.0.0/26".to_string(), true),
                ("10.1.0.64/26".to_string(), false)
            ]
        );
    }
}
