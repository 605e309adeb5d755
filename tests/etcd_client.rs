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
