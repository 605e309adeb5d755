//! Calico's data in etcd, in Calico's terms: pools, peers, the BGP configuration, a node's
//! BGP settings and IPAM blocks, over [`EtcdClient`] and [`super::layout`].
//!
//! Objects come and go as the charm's typed kinds ([`crate::calico`]); `resourceVersion` is
//! the key's mod revision, and every write and delete is a transaction comparing it with the
//! revision read, so an object changed or replaced under the charm is never overwritten or
//! deleted blindly (a changed object is read again and merged once more).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::client::{EtcdClient, EtcdError};
use super::layout::{self, Created, Kind, Wanted};
use crate::calico::{BGPConfiguration, BGPPeer, IPAMBlock, IPPool, MANAGED_BY, MANAGED_BY_LABEL};

/// How often a write is re-read and merged again when the object changed under it.
const CONFLICT_RETRIES: usize = 3;

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The object kept changing under the charm.
    #[error("{object} conflict: it changed {CONFLICT_RETRIES} times while being written")]
    Conflict { object: String },
    /// A stored value the charm cannot read (not a v3 object of its kind).
    #[error("{object}: the stored value is not a Calico v3 object: {reason}")]
    Unreadable { object: String, reason: String },
}

/// A node's BGP settings in its v3 Node (`spec.bgp`): the fields the charm may set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBgp {
    pub as_number: Option<u32>,
    pub route_reflector_cluster_id: Option<String>,
    /// `10.0.0.5/24`.
    pub ipv4_address: Option<String>,
}

/// Calico's etcdv3 datastore.
#[derive(Debug)]
pub struct EtcdStore {
    pub client: EtcdClient,
}

fn display(kind: Kind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

/// A stored v3 object as the charm's typed kind (`resourceVersion` = mod revision).
fn typed<K: DeserializeOwned>(
    kind: Kind,
    name: &str,
    object: &Value,
    rev: i64,
) -> Result<K, StoreError> {
    let mut meta = object
        .get("metadata")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    meta["name"] = Value::String(name.to_string());
    meta["resourceVersion"] = Value::String(rev.to_string());
    let v = json!({
        "apiVersion": crate::calico::API_VERSION,
        "kind": kind.as_str(),
        "metadata": meta,
        "spec": object.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    serde_json::from_value(v).map_err(|e| StoreError::Unreadable {
        object: display(kind, name),
        reason: e.to_string(),
    })
}

fn spec_map<S: Serialize>(spec: &S) -> Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

impl EtcdStore {
    pub fn new(client: EtcdClient) -> EtcdStore {
        EtcdStore { client }
    }

    /// One object as stored: its JSON and mod revision.
    async fn read(&self, kind: Kind, name: &str) -> Result<Option<(Value, i64)>, StoreError> {
        let key = layout::key(kind, name);
        match self.client.get(&key).await? {
            None => Ok(None),
            Some(kv) => match layout::decode(&kv.value) {
                Some(v) => Ok(Some((v, kv.mod_revision))),
                None => Err(StoreError::Unreadable {
                    object: display(kind, name),
                    reason: "not a JSON object".into(),
                }),
            },
        }
    }

    /// Merge `wanted` into the stored object (created if absent) and write it if that changes
    /// anything, comparing on the revision read. Returns the object and its revision after.
    pub async fn apply(
        &self,
        kind: Kind,
        name: &str,
        wanted: &Wanted,
    ) -> Result<(Value, i64), StoreError> {
        self.update(kind, name, |existing| {
            Some(layout::merge(kind, name, existing, wanted, &Created::now()))
        })
        .await
        .map(|r| r.unwrap_or((Value::Null, 0)))
    }

    /// Read, change with `f` (`None`: leave as is), write if changed, comparing on the
    /// revision read; retried on a conflict. `Ok(None)` when nothing is stored and `f`
    /// created nothing.
    async fn update(
        &self,
        kind: Kind,
        name: &str,
        f: impl Fn(Option<&Value>) -> Option<Value>,
    ) -> Result<Option<(Value, i64)>, StoreError> {
        let key = layout::key(kind, name);
        for _ in 0..CONFLICT_RETRIES {
            let current = self.read(kind, name).await?;
            let (existing, rev) = match &current {
                Some((v, r)) => (Some(v), *r),
                None => (None, 0),
            };
            let Some(next) = f(existing) else {
                return Ok(current);
            };
            if existing == Some(&next) {
                return Ok(current);
            }
            let result = self
                .client
                .txn(
                    &[super::Compare {
                        key: key.clone(),
                        mod_revision: rev,
                    }],
                    &[super::Op::Put {
                        key: key.clone(),
                        value: layout::encode(&next),
                    }],
                )
                .await?;
            if result.succeeded {
                return Ok(Some((next, result.revision)));
            }
        }
        Err(StoreError::Conflict {
            object: display(kind, name),
        })
    }

    /// Delete the object if it is still at revision `rev`; already gone is success. `false`:
    /// it changed since (left in place).
    pub async fn delete(&self, kind: Kind, name: &str, rev: i64) -> Result<bool, StoreError> {
        let key = layout::key(kind, name);
        if rev == 0 {
            return Ok(true);
        }
        if self.client.delete_if(&key, rev).await? {
            return Ok(true);
        }
        Ok(self.client.get(&key).await?.is_none())
    }

    /// Every IP pool.
    pub async fn list_pools(&self) -> Result<Vec<IPPool>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .client
            .list_prefix(&layout::prefix(Kind::IPPool, ""))
            .await?
        {
            let Some(name) = layout::name_of(Kind::IPPool, &kv.key) else {
                continue;
            };
            let Some(v) = layout::decode(&kv.value) else {
                continue;
            };
            out.push(typed(Kind::IPPool, name, &v, kv.mod_revision)?);
        }
        Ok(out)
    }

    /// Apply the pool's labels and spec fields.
    pub async fn apply_pool(&self, pool: &IPPool) -> Result<IPPool, StoreError> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let wanted = Wanted {
            labels: pool.metadata.labels.clone().unwrap_or_default(),
            spec: spec_map(&pool.spec),
        };
        let (v, rev) = self.apply(Kind::IPPool, &name, &wanted).await?;
        typed(Kind::IPPool, &name, &v, rev)
    }

    /// `spec.disabled: true`, every other field left as it is.
    pub async fn disable_pool(&self, pool: &IPPool) -> Result<(), StoreError> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        self.update(Kind::IPPool, &name, |existing| {
            let mut v = existing?.clone();
            if v.pointer("/spec/disabled") == Some(&Value::Bool(true)) {
                return None;
            }
            if !v.get("spec").is_some_and(Value::is_object) {
                v["spec"] = json!({});
            }
            v["spec"]["disabled"] = Value::Bool(true);
            Some(v)
        })
        .await
        .map(drop)
    }

    /// Delete the pool as read (same revision).
    pub async fn delete_pool(&self, pool: &IPPool) -> Result<bool, StoreError> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        self.delete(Kind::IPPool, &name, revision_of(&pool.metadata))
            .await
    }

    /// Every IPAM block (their CIDR from the key, allocations from the value).
    pub async fn list_ipam_blocks(&self) -> Result<Vec<IPAMBlock>, StoreError> {
        let mut out = Vec::new();
        for kv in self.client.list_prefix(layout::IPAM_BLOCKS).await? {
            let Some(cidr) = layout::block_cidr(&kv.key) else {
                continue;
            };
            let value: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            let allocations: Vec<Option<i64>> = if layout::block_in_use(&kv.value) {
                match value.get("allocations").and_then(Value::as_array) {
                    Some(a) => a.iter().map(Value::as_i64).collect(),
                    // Unreadable: counted as allocated.
                    None => vec![Some(0)],
                }
            } else {
                Vec::new()
            };
            let mut block = IPAMBlock::new(
                &cidr.replace(['/', ':'], "-"),
                crate::calico::IPAMBlockSpec {
                    cidr,
                    allocations,
                    affinity: value
                        .get("affinity")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                },
            );
            block.metadata.resource_version = Some(kv.mod_revision.to_string());
            out.push(block);
        }
        Ok(out)
    }

    /// The peers whose name starts with `<owner>-` (a key-prefix range: never every peer in
    /// the cluster), labelled as the charm's and `owner`'s.
    pub async fn list_owned_peers(&self, owner: &str) -> Result<Vec<BGPPeer>, StoreError> {
        Ok(self
            .list_peers_with_prefix(owner)
            .await?
            .into_iter()
            .filter(|p| {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                    && labels.get(crate::calico::UNIT_LABEL).map(String::as_str) == Some(owner)
            })
            .collect())
    }

    /// Every peer named `<owner>-...`, labelled or not (the earlier charm's have no labels).
    pub async fn list_peers_with_prefix(&self, owner: &str) -> Result<Vec<BGPPeer>, StoreError> {
        let mut out = Vec::new();
        let prefix = layout::prefix(Kind::BGPPeer, &format!("{owner}-"));
        for kv in self.client.list_prefix(&prefix).await? {
            let Some(name) = layout::name_of(Kind::BGPPeer, &kv.key) else {
                continue;
            };
            let Some(v) = layout::decode(&kv.value) else {
                continue;
            };
            out.push(typed(Kind::BGPPeer, name, &v, kv.mod_revision)?);
        }
        Ok(out)
    }

    /// Adopt the earlier charm's peers of this unit: those named `<owner>-<address>-<as>`
    /// (its naming, [`crate::render::peer_name`]) for `node`, carrying no labels of their own.
    /// They get the charm's labels, so the converge then keeps the wanted ones and prunes
    /// the rest like any peer of this unit. Returns the names adopted.
    pub(crate) async fn adopt_legacy_peers(
        &self,
        owner: &str,
        node: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut adopted = Vec::new();
        for peer in self.list_peers_with_prefix(owner).await? {
            let name = peer.metadata.name.clone().unwrap_or_default();
            let unlabelled = peer
                .metadata
                .labels
                .as_ref()
                .is_none_or(|l| l.keys().all(|k| k.contains("projectcalico.org/")));
            if !unlabelled
                || peer.spec.node.as_deref() != Some(node)
                || !legacy_peer_name(owner, &name)
            {
                continue;
            }
            let wanted = Wanted {
                labels: crate::calico::charm_labels(Some(owner)),
                spec: Map::new(),
            };
            self.apply(Kind::BGPPeer, &name, &wanted).await?;
            adopted.push(name);
        }
        Ok(adopted)
    }

    /// One peer.
    pub async fn get_peer(&self, name: &str) -> Result<Option<BGPPeer>, StoreError> {
        match self.read(Kind::BGPPeer, name).await? {
            Some((v, rev)) => typed(Kind::BGPPeer, name, &v, rev).map(Some),
            None => Ok(None),
        }
    }

    /// Apply a peer's labels and spec fields.
    pub async fn apply_peer(&self, peer: &BGPPeer) -> Result<BGPPeer, StoreError> {
        let name = peer.metadata.name.clone().unwrap_or_default();
        let wanted = Wanted {
            labels: peer.metadata.labels.clone().unwrap_or_default(),
            spec: spec_map(&peer.spec),
        };
        let (v, rev) = self.apply(Kind::BGPPeer, &name, &wanted).await?;
        typed(Kind::BGPPeer, &name, &v, rev)
    }

    /// Delete the peer as read (same revision).
    pub async fn delete_peer(&self, peer: &BGPPeer) -> Result<bool, StoreError> {
        let name = peer.metadata.name.clone().unwrap_or_default();
        self.delete(Kind::BGPPeer, &name, revision_of(&peer.metadata))
            .await
    }

    /// One BGP configuration.
    pub async fn get_bgp_configuration(
        &self,
        name: &str,
    ) -> Result<Option<BGPConfiguration>, StoreError> {
        match self.read(Kind::BGPConfiguration, name).await? {
            Some((v, rev)) => typed(Kind::BGPConfiguration, name, &v, rev).map(Some),
            None => Ok(None),
        }
    }

    /// Apply the BGP configuration's labels and spec fields.
    pub async fn apply_bgp_configuration(
        &self,
        config: &BGPConfiguration,
    ) -> Result<BGPConfiguration, StoreError> {
        let name = config.metadata.name.clone().unwrap_or_default();
        let wanted = Wanted {
            labels: config.metadata.labels.clone().unwrap_or_default(),
            spec: spec_map(&config.spec),
        };
        let (v, rev) = self.apply(Kind::BGPConfiguration, &name, &wanted).await?;
        typed(Kind::BGPConfiguration, &name, &v, rev)
    }

    /// The node's `spec.bgp` fields the charm knows; `None` when Calico has no Node of that
    /// name yet.
    pub async fn get_node_bgp(&self, node: &str) -> Result<Option<NodeBgp>, StoreError> {
        Ok(self
            .read(Kind::Node, node)
            .await?
            .map(|(v, _)| node_bgp_of(&v)))
    }

    /// Set the node's BGP settings the charm owns (`None` fields the charm set before are
    /// removed, others' fields stay); the Node is created when calico-node has not yet.
    /// Returns the settings afterwards.
    pub async fn apply_node_bgp(&self, node: &str, bgp: &NodeBgp) -> Result<NodeBgp, StoreError> {
        let result = self
            .update(Kind::Node, node, |existing| {
                if existing.is_none() && *bgp == NodeBgp::default() {
                    return None;
                }
                Some(node_value(existing, node, bgp, &Created::now()))
            })
            .await?;
        Ok(result.map(|(v, _)| node_bgp_of(&v)).unwrap_or_default())
    }

    /// Remove these `spec.bgp` fields (`asNumber`, `routeReflectorClusterID`) from the node
    /// whoever set them (the earlier charm set them with calicoctl, without ownership).
    pub async fn remove_node_bgp(&self, node: &str, fields: &[&str]) -> Result<(), StoreError> {
        self.update(Kind::Node, node, |existing| {
            let mut v = existing?.clone();
            let bgp = v.pointer_mut("/spec/bgp").and_then(Value::as_object_mut)?;
            let mut changed = false;
            for f in fields {
                changed |= bgp.remove(*f).is_some();
            }
            changed.then_some(v)
        })
        .await
        .map(drop)
    }
}

impl EtcdStore {
    /// The `CalicoNodeStatus` named `name` (calico-node's `status` included), if stored.
    pub async fn get_node_status(
        &self,
        name: &str,
    ) -> Result<Option<crate::calico::CalicoNodeStatus>, StoreError> {
        match self.read(Kind::CalicoNodeStatus, name).await? {
            Some((v, rev)) => node_status_of(name, &v, rev).map(Some),
            None => Ok(None),
        }
    }

    /// Merge the charm's labels and spec fields into the stored `CalicoNodeStatus` (created
    /// when absent); calico-node's `status` and others' fields stay as they are.
    pub async fn apply_node_status(
        &self,
        want: &crate::calico::CalicoNodeStatus,
    ) -> Result<crate::calico::CalicoNodeStatus, StoreError> {
        let name = want.metadata.name.clone().unwrap_or_default();
        let wanted = Wanted {
            labels: want.metadata.labels.clone().unwrap_or_default(),
            spec: spec_map(&want.spec),
        };
        let (v, rev) = self.apply(Kind::CalicoNodeStatus, &name, &wanted).await?;
        node_status_of(&name, &v, rev)
    }

    /// Delete the `CalicoNodeStatus` as read (same revision); `false`: it changed since.
    pub async fn delete_node_status(
        &self,
        live: &crate::calico::CalicoNodeStatus,
    ) -> Result<bool, StoreError> {
        let name = live.metadata.name.clone().unwrap_or_default();
        self.delete(Kind::CalicoNodeStatus, &name, revision_of(&live.metadata))
            .await
    }
}

/// A stored `CalicoNodeStatus` as the charm's type, with its `status` (an unreadable
/// report counts as none yet).
fn node_status_of(
    name: &str,
    object: &Value,
    rev: i64,
) -> Result<crate::calico::CalicoNodeStatus, StoreError> {
    let mut typed: crate::calico::CalicoNodeStatus =
        typed(Kind::CalicoNodeStatus, name, object, rev)?;
    typed.status = object
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok());
    Ok(typed)
}

/// The Node to store (pure): `existing` (calico-node's, if any) with the charm's `spec.bgp`
/// fields merged in. `asNumber` and `routeReflectorClusterID` are owned (removed when no
/// longer wanted); `ipv4Address` is set, never owned: calico-node writes its own when it
/// starts on a node without one, and a unit that stops setting it leaves it.
pub(crate) fn node_value(
    existing: Option<&Value>,
    node: &str,
    bgp: &NodeBgp,
    created: &Created,
) -> Value {
    let mut inner = Map::new();
    if let Some(a) = bgp.as_number {
        inner.insert("asNumber".into(), json!(a));
    }
    if let Some(id) = &bgp.route_reflector_cluster_id {
        inner.insert("routeReflectorClusterID".into(), json!(id));
    }
    let mut spec = Map::new();
    if !inner.is_empty() {
        spec.insert("bgp".into(), Value::Object(inner));
    }
    let wanted = Wanted {
        labels: BTreeMap::new(),
        spec,
    };
    let mut v = layout::merge(Kind::Node, node, existing, &wanted, created);
    if let Some(ip) = &bgp.ipv4_address
        && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
    {
        let entry = spec.entry("bgp").or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        if let Some(b) = entry.as_object_mut() {
            b.insert("ipv4Address".into(), json!(ip));
        }
    }
    v
}

/// Whether `name` is `<owner>-<address with : as ->-<AS number>`.
fn legacy_peer_name(owner: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(owner).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let Some((address, asn)) = rest.rsplit_once('-') else {
        return false;
    };
    !asn.is_empty()
        && asn.bytes().all(|b| b.is_ascii_digit())
        && (address.parse::<std::net::Ipv4Addr>().is_ok()
            || address
                .replace('-', ":")
                .parse::<std::net::Ipv6Addr>()
                .is_ok())
}

/// The charm's fields of a stored Node's `spec.bgp`.
pub(crate) fn node_bgp_of(node: &Value) -> NodeBgp {
    let bgp = node.pointer("/spec/bgp");
    NodeBgp {
        as_number: bgp
            .and_then(|b| b.get("asNumber"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        route_reflector_cluster_id: bgp
            .and_then(|b| b.get("routeReflectorClusterID"))
            .and_then(Value::as_str)
            .map(str::to_string),
        ipv4_address: bgp
            .and_then(|b| b.get("ipv4Address"))
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}
