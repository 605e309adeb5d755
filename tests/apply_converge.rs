//! Converge's edge against an in-memory Calico datastore (no Kubernetes API): the order of
//! its steps and what it does when one of them fails. The decisions themselves (adopt, skip,
//! stale, drain, take over, prune) are tables of plain values in `src/apply/plan.rs`; the
//! whole charm on the real API server is tests/juju_cluster_e2e.rs.
//!
//! The double keeps pools, peers, the BGP configuration, IPAM blocks, Nodes' annotations,
//! CRDs and workload objects in maps, logs every call in order, counts calls, and fails
//! chosen operations on demand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use calico_charm::apply::workloads::{
    KubeWorkloads, NodeAgent, ObjectRef, WorkloadKind, WorkloadObject,
};
use calico_charm::apply::{ConvergeOptions, Outcome, check_node_agent, converge_with};
use calico_charm::calico::{
    AS_NUMBER_ANNOTATION, BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec, IPAMBlock,
    IPAMBlockSpec, IPPool, IPPoolSpec, MANAGED_BY, MANAGED_BY_LABEL, NODE_ANNOTATIONS,
    RR_CLUSTER_ID_ANNOTATION, UNIT_LABEL, charm_labels,
};
use calico_charm::datastore::{CalicoDatastore, DatastoreError, DsResult, Labels};
use calico_charm::render::workloads::Workloads;
use calico_charm::render::{Desired, NodeBgp, Pools};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

// ---- the double ------------------------------------------------------------------------

#[derive(Default)]
struct State {
    calico_crds: bool,
    pools: BTreeMap<String, IPPool>,
    peers: BTreeMap<String, BGPPeer>,
    bgp: BTreeMap<String, BGPConfiguration>,
    blocks: Vec<IPAMBlock>,
    /// Node name -> every annotation on it.
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// Node name -> annotation keys the charm's field manager owns (server-side apply).
    node_owned: BTreeMap<String, BTreeSet<String>>,
    /// Names of served CRDs.
    crds: BTreeSet<String>,
    workloads: BTreeMap<(String, String, String), (ObjectRef, String)>,
    agents: BTreeMap<String, NodeAgent>,
    serial: u64,
    log: Vec<String>,
    /// Fail the next call of an operation (by name) with this error.
    faults: Vec<(String, DatastoreError)>,
}

struct Mem {
    state: Mutex<State>,
}

fn meta_with(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        ..ObjectMeta::default()
    }
}

impl Mem {
    fn new() -> Mem {
        let state = State {
            calico_crds: true,
            ..State::default()
        };
        Mem {
            state: Mutex::new(state),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap();
        f(&mut state)
    }

    /// Log the call; fail it if a fault is armed for it.
    fn call(&self, op: &str, arg: &str) -> DsResult<()> {
        self.with(|s| {
            s.log.push(format!("{op} {arg}").trim().to_string());
            if let Some(i) = s.faults.iter().position(|(o, _)| o == op) {
                let (_, err) = s.faults.remove(i);
                return Err(err);
            }
            Ok(())
        })
    }

    fn calico(&self, kind: &str) -> DsResult<()> {
        if self.with(|s| s.calico_crds) {
            Ok(())
        } else {
            Err(DatastoreError::KindMissing {
                kind: kind.to_string(),
            })
        }
    }

    fn fail_next(&self, op: &str, err: DatastoreError) {
        self.with(|s| s.faults.push((op.to_string(), err)));
    }

    fn log(&self) -> Vec<String> {
        self.with(|s| s.log.clone())
    }

    fn clear_log(&self) {
        self.with(|s| s.log.clear());
    }

    fn add_pool(&self, name: &str, cidr: &str, labels: &[(&str, &str)]) {
        self.with(|s| {
            s.serial += 1;
            let mut pool = IPPool::new(
                name,
                IPPoolSpec {
                    cidr: cidr.to_string(),
                    ..IPPoolSpec::default()
                },
            );
            pool.metadata = meta_with(name, labels);
            pool.metadata.uid = Some(format!("uid-{}", s.serial));
            pool.metadata.resource_version = Some(s.serial.to_string());
            s.pools.insert(name.to_string(), pool);
        });
    }

    fn add_peer(&self, name: &str, node: Option<&str>, ip: &str, labels: &[(&str, &str)]) {
        self.with(|s| {
            s.serial += 1;
            let mut peer = BGPPeer::new(
                name,
                BGPPeerSpec {
                    node: node.map(str::to_string),
                    peer_ip: Some(ip.to_string()),
                    as_number: Some(64512),
                    ..BGPPeerSpec::default()
                },
            );
            peer.metadata = meta_with(name, labels);
            peer.metadata.uid = Some(format!("uid-{}", s.serial));
            peer.metadata.resource_version = Some(s.serial.to_string());
            s.peers.insert(name.to_string(), peer);
        });
    }

    fn add_block(&self, cidr: &str, allocated: bool) {
        self.with(|s| {
            let name = cidr.replace(['.', '/', ':'], "-");
            s.blocks.push(IPAMBlock::new(
                &name,
                IPAMBlockSpec {
                    cidr: cidr.to_string(),
                    allocations: vec![allocated.then_some(0), None],
                    affinity: Some("host:n1".to_string()),
                },
            ));
        });
    }

    fn add_node(&self, name: &str, annotations: &[(&str, &str)]) {
        self.with(|s| {
            s.nodes.insert(
                name.to_string(),
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        });
    }

    fn pool_names(&self) -> Vec<String> {
        self.with(|s| s.pools.keys().cloned().collect())
    }

    fn pool(&self, name: &str) -> Option<IPPool> {
        self.with(|s| s.pools.get(name).cloned())
    }

    fn peer_names(&self) -> Vec<String> {
        self.with(|s| s.peers.keys().cloned().collect())
    }

    fn peer(&self, name: &str) -> Option<BGPPeer> {
        self.with(|s| s.peers.get(name).cloned())
    }

    fn node(&self, name: &str) -> BTreeMap<String, String> {
        self.with(|s| s.nodes.get(name).cloned().unwrap_or_default())
    }

    fn calls(&self) -> usize {
        self.with(|s| s.log.len())
    }
}

fn bump<T: PartialEq>(
    serial: &mut u64,
    old: Option<&T>,
    new: &T,
    old_rv: Option<String>,
) -> String {
    match (old, old_rv) {
        (Some(o), Some(rv)) if o == new => rv,
        _ => {
            *serial += 1;
            serial.to_string()
        }
    }
}

fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Server-side apply of a labelled object kept by name: labels merge with the stored ones,
/// the resourceVersion moves only when the spec or the labels change, the uid is kept.
fn apply_labelled<T: Resource + Clone, S: PartialEq>(
    serial: &mut u64,
    map: &mut BTreeMap<String, T>,
    object: &T,
    spec: impl Fn(&T) -> S,
) -> T {
    let name = object.meta().name.clone().unwrap_or_default();
    let old = map.get(&name).cloned();
    let mut labels = old
        .as_ref()
        .map(|o| labels_of(o.meta()))
        .unwrap_or_default();
    labels.extend(labels_of(object.meta()));
    let mut stored = object.clone();
    stored.meta_mut().labels = Some(labels);
    let content = (spec(&stored), stored.meta().labels.clone());
    let old_content = old.as_ref().map(|o| (spec(o), o.meta().labels.clone()));
    let rv = bump(
        serial,
        old_content.as_ref(),
        &content,
        old.as_ref().and_then(|o| o.meta().resource_version.clone()),
    );
    let serial = *serial;
    stored.meta_mut().uid = old
        .and_then(|o| o.meta().uid.clone())
        .or(Some(format!("uid-{serial}")));
    stored.meta_mut().resource_version = Some(rv);
    map.insert(name, stored.clone());
    stored
}

impl CalicoDatastore for Mem {
    fn name(&self) -> &'static str {
        "Kubernetes API"
    }

    async fn list_pools(&self) -> DsResult<Vec<IPPool>> {
        self.call("list_pools", "")?;
        self.calico("IPPool")?;
        Ok(self.with(|s| s.pools.values().cloned().collect()))
    }

    async fn apply_pool(&self, pool: &IPPool) -> DsResult<IPPool> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        self.call("apply_pool", &name)?;
        self.calico("IPPool")?;
        assert!(pool.metadata.uid.is_none() && pool.metadata.resource_version.is_none());
        Ok(self.with(|s| apply_labelled(&mut s.serial, &mut s.pools, pool, |o| o.spec.clone())))
    }

    async fn disable_pool(&self, pool: &IPPool) -> DsResult<()> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        self.call("disable_pool", &name)?;
        self.with(|s| match s.pools.get_mut(&name) {
            Some(p) => {
                p.spec.disabled = Some(true);
                s.serial += 1;
                p.metadata.resource_version = Some(s.serial.to_string());
                Ok(())
            }
            None => Err(DatastoreError::NotFound {
                object: format!("IPPool/{name}"),
            }),
        })
    }

    async fn delete_pool(&self, pool: &IPPool) -> DsResult<()> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        self.call("delete_pool", &name)?;
        self.with(|s| {
            if s.pools.get(&name).map(|p| p.metadata.uid.clone()) == Some(pool.metadata.uid.clone())
            {
                s.pools.remove(&name);
            }
        });
        Ok(())
    }

    async fn list_ipam_blocks(&self) -> DsResult<Vec<IPAMBlock>> {
        self.call("list_ipam_blocks", "")?;
        self.calico("IPAMBlock")?;
        Ok(self.with(|s| s.blocks.clone()))
    }

    async fn list_peers(&self, labels: &Labels) -> DsResult<Vec<BGPPeer>> {
        let owner = labels.get(UNIT_LABEL).cloned().unwrap_or_default();
        self.call("list_owned_peers", &owner)?;
        self.calico("BGPPeer")?;
        Ok(self.with(|s| {
            s.peers
                .values()
                .filter(|p| {
                    let l = labels_of(&p.metadata);
                    labels.iter().all(|(k, v)| l.get(k) == Some(v))
                })
                .cloned()
                .collect()
        }))
    }

    async fn get_peer(&self, name: &str) -> DsResult<Option<BGPPeer>> {
        self.call("get_peer", name)?;
        Ok(self.with(|s| s.peers.get(name).cloned()))
    }

    async fn apply_peer(&self, peer: &BGPPeer) -> DsResult<BGPPeer> {
        let name = peer.metadata.name.clone().unwrap_or_default();
        self.call("apply_peer", &name)?;
        self.calico("BGPPeer")?;
        assert!(peer.metadata.uid.is_none() && peer.metadata.resource_version.is_none());
        Ok(self.with(|s| apply_labelled(&mut s.serial, &mut s.peers, peer, |o| o.spec.clone())))
    }

    async fn delete_peer(&self, peer: &BGPPeer) -> DsResult<()> {
        let name = peer.metadata.name.clone().unwrap_or_default();
        self.call("delete_peer", &name)?;
        self.with(|s| {
            if s.peers.get(&name).map(|p| p.metadata.uid.clone()) == Some(peer.metadata.uid.clone())
            {
                s.peers.remove(&name);
            }
        });
        Ok(())
    }

    async fn get_bgp_configuration(&self, name: &str) -> DsResult<Option<BGPConfiguration>> {
        self.call("get_bgp_configuration", name)?;
        Ok(self.with(|s| s.bgp.get(name).cloned()))
    }

    async fn apply_bgp_configuration(
        &self,
        config: &BGPConfiguration,
    ) -> DsResult<BGPConfiguration> {
        let name = config.metadata.name.clone().unwrap_or_default();
        self.call("apply_bgp_configuration", &name)?;
        self.calico("BGPConfiguration")?;
        Ok(self.with(|s| {
            let old = s.bgp.get(&name).cloned();
            let mut stored = config.clone();
            // Like server-side apply: fields the charm does not set keep others' values.
            if let Some(o) = &old
                && stored.spec.log_severity_screen.is_none()
            {
                stored.spec.log_severity_screen = o.spec.log_severity_screen.clone();
            }
            let rv = bump(
                &mut s.serial,
                old.as_ref().map(|o| &o.spec),
                &stored.spec,
                old.as_ref()
                    .and_then(|o| o.metadata.resource_version.clone()),
            );
            stored.metadata.resource_version = Some(rv);
            s.bgp.insert(name.clone(), stored.clone());
            stored
        }))
    }

    async fn get_node_bgp(&self, node: &str) -> DsResult<Option<BTreeMap<String, String>>> {
        self.call("get_node_bgp", node)?;
        Ok(self.with(|s| {
            s.nodes.get(node).map(|a| {
                a.iter()
                    .filter(|(k, _)| NODE_ANNOTATIONS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
        }))
    }

    async fn apply_node_bgp(
        &self,
        node: &str,
        settings: &BTreeMap<String, String>,
    ) -> DsResult<BTreeMap<String, String>> {
        self.call("apply_node_bgp", node)?;
        self.with(|s| {
            let Some(annotations) = s.nodes.get_mut(node) else {
                return Err(DatastoreError::NotFound {
                    object: format!("Node/{node}"),
                });
            };
            let owned = s.node_owned.entry(node.to_string()).or_default();
            // Server-side apply: what the manager owned and no longer applies goes.
            for key in owned.iter() {
                if !settings.contains_key(key) {
                    annotations.remove(key);
                }
            }
            annotations.extend(settings.clone());
            *owned = settings.keys().cloned().collect();
            Ok(annotations
                .iter()
                .filter(|(k, _)| NODE_ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }

    async fn remove_node_bgp(&self, node: &str, keys: &[String]) -> DsResult<()> {
        self.call("remove_node_bgp", &keys.join(","))?;
        self.with(|s| {
            let annotations = s.nodes.get_mut(node).ok_or(DatastoreError::NotFound {
                object: format!("Node/{node}"),
            })?;
            for key in keys {
                annotations.remove(key);
            }
            Ok(())
        })
    }
}

impl KubeWorkloads for Mem {
    async fn missing_crds(&self, crds: &[CustomResourceDefinition]) -> DsResult<Vec<String>> {
        self.call("missing_crds", "")?;
        Ok(self.with(|s| {
            crds.iter()
                .filter_map(|c| c.metadata.name.clone())
                .filter(|n| !s.crds.contains(n))
                .collect()
        }))
    }

    async fn create_crd(&self, crd: &CustomResourceDefinition) -> DsResult<bool> {
        let name = crd.metadata.name.clone().unwrap_or_default();
        self.call("create_crd", &name)?;
        Ok(self.with(|s| s.crds.insert(name)))
    }

    async fn apply_workload(&self, object: &WorkloadObject) -> DsResult<ObjectRef> {
        let (namespace, name) = object.key();
        let kind = object.kind().as_str().to_string();
        self.call("apply_workload", &format!("{kind}/{name}"))?;
        let content = format!("{object:?}");
        Ok(self.with(|s| {
            let key = (kind.clone(), namespace.clone(), name.clone());
            let old = s.workloads.get(&key).cloned();
            let rv = bump(
                &mut s.serial,
                old.as_ref().map(|(_, c)| c),
                &content,
                old.as_ref().and_then(|(r, _)| r.resource_version.clone()),
            );
            let serial = s.serial;
            let stored = ObjectRef {
                kind,
                namespace,
                name,
                uid: old
                    .and_then(|(r, _)| r.uid)
                    .or(Some(format!("uid-{serial}"))),
                resource_version: Some(rv),
                labels: object.meta().labels.clone().unwrap_or_default(),
                live: serde_json::Value::Null,
            };
            s.workloads.insert(key, (stored.clone(), content));
            stored
        }))
    }

    async fn list_workloads(
        &self,
        kind: WorkloadKind,
        labels: &Labels,
    ) -> DsResult<Vec<ObjectRef>> {
        self.call("list_owned_workloads", kind.as_str())?;
        Ok(self.with(|s| {
            s.workloads
                .values()
                .map(|(r, _)| r.clone())
                .filter(|r| {
                    r.kind == kind.as_str()
                        && labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
                })
                .collect()
        }))
    }

    async fn delete_workload(&self, object: &ObjectRef) -> DsResult<()> {
        self.call("delete_workload", &object.display())?;
        self.with(|s| {
            s.workloads.remove(&(
                object.kind.clone(),
                object.namespace.clone(),
                object.name.clone(),
            ))
        });
        Ok(())
    }

    async fn node_agent(&self, node: &str) -> DsResult<NodeAgent> {
        self.call("node_agent", node)?;
        Ok(self.with(|s| s.agents.get(node).cloned().unwrap_or(NodeAgent::Missing)))
    }

    async fn kubernetes_version(&self) -> DsResult<Option<(u32, u32)>> {
        Ok(None)
    }
}

// ---- desired values built by hand ---------------------------------------------------------

const NODE: &str = "n1";
const OWNER: &str = "calico-0";

fn owner_labels(owner: &str) -> Vec<(&'static str, String)> {
    vec![
        (MANAGED_BY_LABEL, MANAGED_BY.to_string()),
        (UNIT_LABEL, owner.to_string()),
    ]
}

fn want_pool(name: &str, cidr: &str) -> IPPool {
    let mut pool = IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.to_string(),
            ipip_mode: Some("Never".into()),
            vxlan_mode: Some("Never".into()),
            nat_outgoing: Some(true),
            ..IPPoolSpec::default()
        },
    );
    pool.metadata.labels = Some(BTreeMap::from([(
        MANAGED_BY_LABEL.to_string(),
        MANAGED_BY.to_string(),
    )]));
    pool
}

fn want_peer(owner: &str, ip: &str) -> BGPPeer {
    let mut peer = BGPPeer::new(
        &format!("{owner}-{ip}-64512"),
        BGPPeerSpec {
            node: Some(NODE.to_string()),
            peer_ip: Some(ip.to_string()),
            as_number: Some(64512),
            ..BGPPeerSpec::default()
        },
    );
    peer.metadata.labels = Some(
        owner_labels(owner)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    peer
}

fn bgp_default() -> BGPConfiguration {
    BGPConfiguration::new(
        "default",
        BGPConfigurationSpec {
            as_number: Some(64512),
            node_to_node_mesh_enabled: Some(false),
            log_severity_screen: None,
            ..BGPConfigurationSpec::default()
        },
    )
}

fn leader(pools: &[(&str, &str)], peers: &[&str], annotations: &[(&str, &str)]) -> Desired {
    Desired {
        owner: OWNER.to_string(),
        pools: Pools::Managed(pools.iter().map(|(n, c)| want_pool(n, c)).collect()),
        bgp_configuration: Some(bgp_default()),
        peers: peers.iter().map(|ip| want_peer(OWNER, ip)).collect(),
        node: NodeBgp {
            node_name: NODE.to_string(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        workloads: None,
        node_status: None,
    }
}

fn follower(peers: &[&str], annotations: &[(&str, &str)]) -> Desired {
    Desired {
        pools: Pools::Unmanaged,
        bgp_configuration: None,
        ..leader(&[], peers, annotations)
    }
}

fn fast() -> ConvergeOptions {
    ConvergeOptions {
        pool_settle: Duration::ZERO,
        ..ConvergeOptions::default()
    }
}

fn run(desired: &Desired, ds: &Mem) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(converge_with(desired, ds, ds, &fast()))
}

fn index_of(log: &[String], entry: &str) -> usize {
    log.iter()
        .position(|l| l == entry)
        .unwrap_or_else(|| panic!("{entry:?} not in {log:#?}"))
}

// ---- pools ---------------------------------------------------------------------------------

#[test]
fn fresh_leader_creates_everything_and_a_second_run_changes_nothing() {
    let ds = Mem::new();
    ds.add_node(NODE, &[("other/annotation", "kept")]);
    let want = leader(
        &[("ipv4", "10.1.0.0/16")],
        &["10.0.0.1", "10.0.0.2"],
        &[(AS_NUMBER_ANNOTATION, "64513")],
    );
    let out = run(&want, &ds);
    assert!(out.settled(), "{out:?}");
    assert_eq!(
        out.changed,
        vec![
            "IPPool/ipv4",
            "BGPPeer/calico-0-10.0.0.1-64512",
            "BGPPeer/calico-0-10.0.0.2-64512",
            "BGPConfiguration/default",
            "Node/n1",
        ]
    );
    assert!(out.deleted.is_empty());
    let pool = ds.pool("ipv4").unwrap();
    assert_eq!(pool.spec.cidr, "10.1.0.0/16");
    assert_eq!(pool.spec.disabled, Some(false));
    let peer = ds.peer("calico-0-10.0.0.1-64512").unwrap();
    assert_eq!(
        labels_of(&peer.metadata)
            .get(UNIT_LABEL)
            .map(String::as_str),
        Some(OWNER)
    );
    assert_eq!(
        ds.node(NODE),
        BTreeMap::from([
            (AS_NUMBER_ANNOTATION.to_string(), "64513".to_string()),
            ("other/annotation".to_string(), "kept".to_string()),
        ])
    );

    ds.clear_log();
    let again = run(&want, &ds);
    assert_eq!(again, Outcome::default());
    // No-op: one read per kind and no write (issue 10: what already matches is not applied).
    assert_eq!(
        ds.log(),
        vec![
            "get_node_bgp n1",
            "list_pools",
            "list_owned_peers calico-0",
            "get_bgp_configuration default",
        ]
    );
}

#[test]
fn cidr_change_creates_new_pool_first_then_drains_then_deletes_old() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.add_pool("ipv4", "10.1.0.0/16", &[(MANAGED_BY_LABEL, MANAGED_BY)]);
    ds.add_block("10.1.3.0/26", true);
    ds.add_block("10.1.4.0/26", false);

    let want = leader(&[("ipv4", "10.2.0.0/16")], &[], &[]);
    let out = run(&want, &ds);
    // The rendered name is taken by the old pool: the new one is named after its cidr.
    assert_eq!(ds.pool_names(), vec!["ipv4", "ipv4-10-2-0-0-16"]);
    assert_eq!(ds.pool("ipv4").unwrap().spec.disabled, Some(true));
    assert_eq!(
        out.waiting_messages(),
        vec!["Draining IP pool ipv4 (10.1.0.0/16)".to_string()]
    );
    assert!(out.blocked().next().is_none());
    assert!(out.changed.contains(&"IPPool/ipv4-10-2-0-0-16".to_string()));
    assert!(out.changed.contains(&"IPPool/ipv4 (disabled)".to_string()));
    let log = ds.log();
    assert!(index_of(&log, "apply_pool ipv4-10-2-0-0-16") < index_of(&log, "disable_pool ipv4"));
    assert!(!log.iter().any(|l| l.starts_with("delete_pool")));

    // Still allocated on the next hook: nothing more happens, still waiting.
    ds.clear_log();
    let out = run(&want, &ds);
    assert_eq!(
        out.waiting_messages(),
        vec!["Draining IP pool ipv4 (10.1.0.0/16)".to_string()]
    );
    assert!(!ds.log().iter().any(|l| l.starts_with("disable_pool")));

    // Pods moved: the old pool goes.
    ds.with(|s| s.blocks.clear());
    let out = run(&want, &ds);
    assert!(out.settled(), "{out:?}");
    assert_eq!(out.deleted, vec!["IPPool/ipv4"]);
    assert_eq!(ds.pool_names(), vec!["ipv4-10-2-0-0-16"]);

    // And from then on the new pool is simply kept.
    let out = run(&want, &ds);
    assert_eq!(out, Outcome::default());
    assert_eq!(ds.pool_names(), vec!["ipv4-10-2-0-0-16"]);
}

#[test]
fn empty_stale_pool_is_disabled_then_deleted_in_the_same_hook() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.add_pool("old", "10.1.0.0/16", &[]);
    ds.add_block("10.1.0.0/26", false); // empty block: no allocations
    let out = run(&leader(&[("ipv4", "10.2.0.0/16")], &[], &[]), &ds);
    assert!(out.settled(), "{out:?}");
    assert_eq!(out.deleted, vec!["IPPool/old"]);
    let log = ds.log();
    assert!(index_of(&log, "disable_pool old") < index_of(&log, "list_ipam_blocks"));
    assert!(index_of(&log, "list_ipam_blocks") < index_of(&log, "delete_pool old"));
    assert_eq!(ds.pool_names(), vec!["ipv4"]);
}

#[test]
fn old_pool_is_untouched_when_the_new_one_is_refused() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.add_pool("ipv4", "10.1.0.0/16", &[]);
    ds.fail_next(
        "apply_pool",
        DatastoreError::Invalid {
            object: "IPPool/ipv4-10-2-0-0-16".into(),
            reason: "spec.blockSize: Invalid value".into(),
        },
    );
    let out = run(&leader(&[("ipv4", "10.2.0.0/16")], &[], &[]), &ds);
    assert_eq!(
        out.blocked_messages(),
        vec!["IPPool/ipv4-10-2-0-0-16 rejected: spec.blockSize: Invalid value".to_string()]
    );
    let log = ds.log();
    assert!(
        !log.iter()
            .any(|l| l.starts_with("disable_pool") || l.starts_with("delete_pool"))
    );
    assert_eq!(ds.pool("ipv4").unwrap().spec.disabled, None);
    // The rest of the converge still happened.
    assert!(log.contains(&"apply_bgp_configuration default".to_string()));
}

// ---- peers ---------------------------------------------------------------------------------

// ---- node annotations ------------------------------------------------------------------

#[test]
fn unregistered_node_waits_but_peers_are_still_applied() {
    let ds = Mem::new();
    let out = run(
        &follower(&["10.0.0.1"], &[(AS_NUMBER_ANNOTATION, "64513")]),
        &ds,
    );
    assert_eq!(
        out.waiting_messages(),
        vec!["Waiting for node n1 to register".to_string()]
    );
    assert_eq!(ds.peer_names(), vec!["calico-0-10.0.0.1-64512"]);
    assert!(!ds.log().iter().any(|l| l.starts_with("apply_node_bgp")));
}

// ---- stop ----------------------------------------------------------------------------------

// ---- faults --------------------------------------------------------------------------------

#[test]
fn missing_calico_crds_wait() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.with(|s| s.calico_crds = false);
    let out = run(&leader(&[("ipv4", "10.1.0.0/16")], &["10.0.0.1"], &[]), &ds);
    assert_eq!(
        out.waiting_messages(),
        vec!["Waiting for Calico CRDs".to_string()]
    );
    assert!(out.blocked().next().is_none() && out.changed.is_empty());
    // Stopped at the first Calico kind.
    assert_eq!(ds.log(), vec!["get_node_bgp n1", "list_pools"]);
}

#[test]
fn unavailable_api_waits_with_the_cause_and_stops() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.fail_next(
        "list_owned_peers",
        DatastoreError::Unavailable("HTTP 503: etcdserver: leader changed".into()),
    );
    let out = run(&follower(&["10.0.0.1"], &[]), &ds);
    assert_eq!(
        out.waiting_messages(),
        vec!["Kubernetes API unavailable: HTTP 503: etcdserver: leader changed".to_string()]
    );
    assert_eq!(
        ds.log(),
        vec!["get_node_bgp n1", "list_owned_peers calico-0"]
    );
    // The next hook converges.
    let out = run(&follower(&["10.0.0.1"], &[]), &ds);
    assert!(out.settled(), "{out:?}");
    assert_eq!(ds.peer_names(), vec!["calico-0-10.0.0.1-64512"]);
}

#[test]
fn denied_access_blocks() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.fail_next(
        "get_node_bgp",
        DatastoreError::Denied("nodes \"n1\" is forbidden: User \"x\" cannot get".into()),
    );
    let out = run(&follower(&["10.0.0.1"], &[]), &ds);
    assert_eq!(
        out.blocked_messages(),
        vec![
            "Kubernetes API denied access: nodes \"n1\" is forbidden: User \"x\" cannot get"
                .to_string()
        ]
    );
    assert_eq!(ds.calls(), 1);
}

#[test]
fn invalid_peer_is_named_and_the_others_still_apply() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.fail_next(
        "apply_peer",
        DatastoreError::Invalid {
            object: "BGPPeer/calico-0-10.0.0.1-64512".into(),
            reason: "spec.asNumber: Invalid value: must be of type int32".into(),
        },
    );
    let out = run(&follower(&["10.0.0.1", "10.0.0.2"], &[]), &ds);
    assert_eq!(
        out.blocked_messages(),
        vec![
            "BGPPeer/calico-0-10.0.0.1-64512 rejected: spec.asNumber: Invalid value: must be of type int32"
                .to_string()
        ]
    );
    assert_eq!(ds.peer_names(), vec!["calico-0-10.0.0.2-64512"]);
}

#[test]
fn a_converge_interrupted_anywhere_is_completed_by_the_next() {
    // Fail each write in turn (as if the hook were killed there), then converge again:
    // the end state is always the same.
    let ops = [
        "apply_pool",
        "apply_peer",
        "apply_bgp_configuration",
        "apply_node_bgp",
        "remove_node_bgp",
        "delete_peer",
        "disable_pool",
        "list_ipam_blocks",
        "delete_pool",
    ];
    let want = leader(
        &[("ipv4", "10.2.0.0/16")],
        &["10.0.0.2"],
        &[(AS_NUMBER_ANNOTATION, "64513")],
    );
    let setup = || {
        let ds = Mem::new();
        ds.add_node(NODE, &[(RR_CLUSTER_ID_ANNOTATION, "244.0.0.1")]);
        ds.add_pool("ipv4", "10.1.0.0/16", &[]);
        let labels = [(MANAGED_BY_LABEL, MANAGED_BY), (UNIT_LABEL, OWNER)];
        ds.add_peer("calico-0-10.0.0.1-64512", Some(NODE), "10.0.0.1", &labels);
        ds
    };
    let reference = setup();
    run(&want, &reference);
    for op in ops {
        let ds = setup();
        ds.fail_next(op, DatastoreError::Unavailable("connection reset".into()));
        let first = run(&want, &ds);
        // Every write of the converge was reached, and failed.
        assert!(
            ds.log().iter().any(|l| l.starts_with(op)),
            "{op}: {:?}",
            ds.log()
        );
        assert!(!first.settled(), "{op}: {first:?}");
        let out = run(&want, &ds);
        assert!(out.settled(), "after failing {op}: {out:?}");
        assert_eq!(ds.pool_names(), reference.pool_names(), "{op}");
        assert_eq!(ds.peer_names(), reference.peer_names(), "{op}");
        assert_eq!(ds.node(NODE), reference.node(NODE), "{op}");
    }
    assert_eq!(reference.pool_names(), vec!["ipv4-10-2-0-0-16"]);
    assert_eq!(reference.peer_names(), vec!["calico-0-10.0.0.2-64512"]);
}

// ---- workloads -----------------------------------------------------------------------------

fn crd(name: &str) -> CustomResourceDefinition {
    let mut c = CustomResourceDefinition::default();
    c.metadata.name = Some(name.to_string());
    c
}

fn workloads(config_maps: &[&str]) -> Workloads {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("calico-node".into()),
            namespace: Some("kube-system".into()),
            labels: Some(charm_labels(None)),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let ds = DaemonSet {
        metadata: ObjectMeta {
            name: Some("calico-node".into()),
            namespace: Some("kube-system".into()),
            labels: Some(charm_labels(None)),
            ..ObjectMeta::default()
        },
        ..DaemonSet::default()
    };
    Workloads {
        crds: vec![
            crd("ippools.crd.projectcalico.org"),
            crd("bgppeers.crd.projectcalico.org"),
        ],
        service_accounts: vec![sa],
        config_maps: config_maps
            .iter()
            .map(|n| ConfigMap {
                metadata: ObjectMeta {
                    name: Some(n.to_string()),
                    namespace: Some("kube-system".into()),
                    labels: Some(charm_labels(None)),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            })
            .collect(),
        daemon_sets: vec![ds],
        ..Workloads::default()
    }
}

#[test]
fn workloads_create_only_missing_crds_apply_the_rest_and_prune_by_label() {
    let ds = Mem::new();
    ds.add_node(NODE, &[]);
    ds.with(|s| s.crds.insert("ippools.crd.projectcalico.org".into()));
    let mut want = leader(&[], &[], &[]);
    want.pools = Pools::Unmanaged;
    want.workloads = Some(workloads(&["calico-config", "old-config"]));
    let out = run(&want, &ds);
    assert!(out.settled(), "{out:?}");
    let log = ds.log();
    assert!(log.contains(&"create_crd bgppeers.crd.projectcalico.org".to_string()));
    assert!(!log.contains(&"create_crd ippools.crd.projectcalico.org".to_string()));
    // CRDs before anything else.
    assert!(
        index_of(&log, "create_crd bgppeers.crd.projectcalico.org")
            < index_of(&log, "get_node_bgp n1")
    );
    assert!(out.changed.contains(&"DaemonSet/calico-node".to_string()));

    // A ConfigMap someone else made, unlabelled, with a name the charm no longer uses.
    ds.with(|s| {
        s.workloads.insert(
            (
                "ConfigMap".into(),
                "kube-system".into(),
                "admin-config".into(),
            ),
            (
                ObjectRef {
                    kind: "ConfigMap".into(),
                    namespace: "kube-system".into(),
                    name: "admin-config".into(),
                    uid: Some("u".into()),
                    resource_version: Some("1".into()),
                    labels: BTreeMap::new(),
                    live: serde_json::Value::Null,
                },
                String::new(),
            ),
        )
    });
    want.workloads = Some(workloads(&["calico-config"]));
    ds.clear_log();
    let out = run(&want, &ds);
    assert_eq!(out.deleted, vec!["ConfigMap/old-config"]);
    assert!(!ds.log().iter().any(|l| l.starts_with("create_crd")));
    let names: Vec<String> = ds.with(|s| s.workloads.keys().map(|k| k.2.clone()).collect());
    assert_eq!(
        names,
        vec![
            "admin-config",
            "calico-config",
            "calico-node",
            "calico-node"
        ]
    );
}

// ---- calico-node readiness -------------------------------------------------------------

#[test]
fn node_agent_status_is_folded_into_an_outcome() {
    let ds = Mem::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = rt.block_on(check_node_agent(&ds, NODE));
    assert_eq!(
        out.waiting_messages(),
        vec!["Waiting for calico-node on n1: no calico-node pod".to_string()]
    );
    ds.with(|s| {
        s.agents
            .insert(NODE.into(), NodeAgent::NotReady("ImagePullBackOff".into()))
    });
    let out = rt.block_on(check_node_agent(&ds, NODE));
    assert_eq!(
        out.waiting_messages(),
        vec!["Waiting for calico-node on n1: ImagePullBackOff".to_string()]
    );
    ds.with(|s| s.agents.insert(NODE.into(), NodeAgent::Ready));
    assert!(rt.block_on(check_node_agent(&ds, NODE)).settled());
}
