//! [`CalicoDatastore`] on etcd: Calico's etcdv3 datastore ([`EtcdStore`]) behind the seam
//! converge uses, the same contract as the Kubernetes datastore (see
//! [`crate::datastore`]).
//!
//! - Peers are selected by key prefix: the owner label names the unit (`calico-0`), and the
//!   unit's peers are the keys `.../bgppeers/calico-0-...` (the charm's names, and the
//!   earlier charm's); of those, the ones carrying every label asked for. Never a range over
//!   every peer in the cluster.
//! - Node BGP settings, named by the KDD annotation keys, are the v3 Node's `spec.bgp`
//!   fields. A node calico-node has not created yet counts as registered with no settings:
//!   the unit creates it with its settings (its BGP address among them) before calico-node
//!   starts, as it annotates the Kubernetes Node in KDD.
//! - A delete compares the mod revision read: an object changed since is left, and the
//!   converge reports a conflict and retries on a later hook.

use std::collections::BTreeMap;

use super::client::EtcdError;
use super::store::{EtcdStore, NodeBgp, StoreError};
use crate::calico::{
    AS_NUMBER_ANNOTATION, BGPConfiguration, BGPPeer, IPAMBlock, IPPool, IPV4_ADDRESS_ANNOTATION,
    RR_CLUSTER_ID_ANNOTATION, UNIT_LABEL,
};
use crate::datastore::{CalicoDatastore, DatastoreError, DsResult, Labels};

/// How operator-facing messages name this datastore.
pub const NAME: &str = "etcd";

/// A store failure in the seam's terms.
pub(crate) fn classify(err: StoreError) -> DatastoreError {
    match err {
        StoreError::Etcd(EtcdError::Unavailable(m)) => DatastoreError::Unavailable(m),
        StoreError::Etcd(EtcdError::Denied(m)) => DatastoreError::Denied(m),
        StoreError::Etcd(EtcdError::Setup(m)) => DatastoreError::Setup(m),
        StoreError::Etcd(EtcdError::Other(m)) => DatastoreError::Other {
            object: NAME.into(),
            reason: m,
        },
        StoreError::Conflict { object } => DatastoreError::Conflict {
            object,
            reason: "it changed while being written; retrying on a later hook".into(),
        },
        StoreError::Unreadable { object, reason } => DatastoreError::Other { object, reason },
    }
}

fn conflict(kind: &str, name: Option<&str>) -> DatastoreError {
    DatastoreError::Conflict {
        object: format!("{kind}/{}", name.unwrap_or_default()),
        reason: "it changed since it was read; left for a later hook".into(),
    }
}

/// The KDD keys of a node's settings, from its `spec.bgp`.
fn as_keys(bgp: &NodeBgp) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(a) = bgp.as_number {
        out.insert(AS_NUMBER_ANNOTATION.to_string(), a.to_string());
    }
    if let Some(id) = &bgp.route_reflector_cluster_id {
        out.insert(RR_CLUSTER_ID_ANNOTATION.to_string(), id.clone());
    }
    if let Some(ip) = &bgp.ipv4_address {
        out.insert(IPV4_ADDRESS_ANNOTATION.to_string(), ip.clone());
    }
    out
}

/// `spec.bgp` from the KDD keys (a number that does not parse is left out).
fn from_keys(settings: &BTreeMap<String, String>) -> NodeBgp {
    NodeBgp {
        as_number: settings
            .get(AS_NUMBER_ANNOTATION)
            .and_then(|a| a.parse().ok()),
        route_reflector_cluster_id: settings.get(RR_CLUSTER_ID_ANNOTATION).cloned(),
        ipv4_address: settings.get(IPV4_ADDRESS_ANNOTATION).cloned(),
    }
}

impl CalicoDatastore for EtcdStore {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn list_pools(&self) -> DsResult<Vec<IPPool>> {
        EtcdStore::list_pools(self).await.map_err(classify)
    }

    async fn apply_pool(&self, pool: &IPPool) -> DsResult<IPPool> {
        EtcdStore::apply_pool(self, pool).await.map_err(classify)
    }

    async fn disable_pool(&self, pool: &IPPool) -> DsResult<()> {
        EtcdStore::disable_pool(self, pool).await.map_err(classify)
    }

    async fn delete_pool(&self, pool: &IPPool) -> DsResult<()> {
        match EtcdStore::delete_pool(self, pool).await.map_err(classify)? {
            true => Ok(()),
            false => Err(conflict("IPPool", pool.metadata.name.as_deref())),
        }
    }

    async fn list_ipam_blocks(&self) -> DsResult<Vec<IPAMBlock>> {
        EtcdStore::list_ipam_blocks(self).await.map_err(classify)
    }

    async fn list_peers(&self, labels: &Labels) -> DsResult<Vec<BGPPeer>> {
        let Some(owner) = labels.get(UNIT_LABEL) else {
            return Err(DatastoreError::Other {
                object: "BGPPeer".into(),
                reason: format!("etcd lists peers by their owner ({UNIT_LABEL}) only"),
            });
        };
        let peers = self.list_peers_with_prefix(owner).await.map_err(classify)?;
        Ok(peers
            .into_iter()
            .filter(|p| {
                let have = p.metadata.labels.clone().unwrap_or_default();
                labels.iter().all(|(k, v)| have.get(k) == Some(v))
            })
            .collect())
    }

    async fn get_peer(&self, name: &str) -> DsResult<Option<BGPPeer>> {
        EtcdStore::get_peer(self, name).await.map_err(classify)
    }

    async fn apply_peer(&self, peer: &BGPPeer) -> DsResult<BGPPeer> {
        EtcdStore::apply_peer(self, peer).await.map_err(classify)
    }

    async fn delete_peer(&self, peer: &BGPPeer) -> DsResult<()> {
        match EtcdStore::delete_peer(self, peer).await.map_err(classify)? {
            true => Ok(()),
            false => Err(conflict("BGPPeer", peer.metadata.name.as_deref())),
        }
    }

    async fn get_bgp_configuration(&self, name: &str) -> DsResult<Option<BGPConfiguration>> {
        EtcdStore::get_bgp_configuration(self, name)
            .await
            .map_err(classify)
    }

    async fn apply_bgp_configuration(
        &self,
        config: &BGPConfiguration,
    ) -> DsResult<BGPConfiguration> {
        EtcdStore::apply_bgp_configuration(self, config)
            .await
            .map_err(classify)
    }

    async fn get_node_bgp(&self, node: &str) -> DsResult<Option<BTreeMap<String, String>>> {
        // A node calico-node has not created yet: registered, no settings (see the module).
        Ok(Some(
            EtcdStore::get_node_bgp(self, node)
                .await
                .map_err(classify)?
                .map(|b| as_keys(&b))
                .unwrap_or_default(),
        ))
    }

    async fn apply_node_bgp(
        &self,
        node: &str,
        settings: &BTreeMap<String, String>,
    ) -> DsResult<BTreeMap<String, String>> {
        EtcdStore::apply_node_bgp(self, node, &from_keys(settings))
            .await
            .map(|b| as_keys(&b))
            .map_err(classify)
    }

    async fn remove_node_bgp(&self, node: &str, keys: &[String]) -> DsResult<()> {
        let fields: Vec<&str> = keys
            .iter()
            .filter_map(|k| match k.as_str() {
                AS_NUMBER_ANNOTATION => Some("asNumber"),
                RR_CLUSTER_ID_ANNOTATION => Some("routeReflectorClusterID"),
                _ => None,
            })
            .collect();
        if fields.is_empty() {
            return Ok(());
        }
        EtcdStore::remove_node_bgp(self, node, &fields)
            .await
            .map_err(classify)
    }
}
