//! The Calico datastore seam: what converge reads and writes of Calico's own data.
//!
//! [`CalicoDatastore`] holds exactly what Calico keeps in its datastore and the charm
//! manages: IP pools, BGP peers, the BGP configuration, a node's BGP settings, and (read
//! only) IPAM blocks. It is datastore-neutral: its signatures use only the Calico resource
//! types of [`crate::calico`] and plain values (names, labels, key/value settings), so that
//! Calico's Kubernetes datastore (KDD, [`super::kube::KubeDatastore`]) and its etcd v3
//! datastore can both implement it. The Kubernetes objects that *run* Calico (CRDs, RBAC,
//! the DaemonSet, the Deployment, pod readiness) are a separate seam,
//! [`super::workloads::KubeWorkloads`], because they live in Kubernetes whichever datastore
//! Calico uses.
//!
//! ## Contract for an implementation
//!
//! - **Objects.** Every object is passed and returned as the [`crate::calico`] type. An
//!   implementation reads and writes `metadata.name`, `metadata.labels`,
//!   `metadata.annotations`, `metadata.uid` (identity for guarded deletes),
//!   `metadata.resourceVersion` (any opaque revision that changes on every write) and
//!   `spec`. `metadata.managedFields` is optional: KDD returns the API server's; a store
//!   that keeps none leaves it `None`, and the planner then compares values only.
//! - **Observe by one list per kind.** [`CalicoDatastore::list_pools`] returns every pool
//!   (the leader matches pools by CIDR, and pools are few); [`CalicoDatastore::list_peers`]
//!   returns the peers carrying *all* of the given labels (a label selector, never every
//!   peer of the cluster). Gets by name are for single objects (the BGP configuration, a
//!   node) and for the rare check before a peer is adopted.
//! - **Writes are idempotent** and touch only what the charm owns: `apply_*` creates the
//!   object or updates exactly the fields present in the argument (an unset `Option` field
//!   is not the charm's and must be left as it is); a field the charm set earlier and no
//!   longer sets may be dropped (server-side apply does this; a store without field
//!   ownership may keep it). Converge can be re-run from any state a killed hook left.
//! - **Deletes are guarded**: `delete_*` take the object as last read and must delete
//!   nothing but that very object (same `uid`); already gone is success.
//! - **Errors** are classified into [`DatastoreError`], transient faults already retried
//!   within the hook's budget.
//! - **Node BGP settings** are named by the keys of [`crate::calico::NODE_ANNOTATIONS`] and
//!   [`crate::calico::NODE_SET_ONLY_ANNOTATIONS`] (KDD keeps them as Node annotations; an
//!   etcd store maps them to the Calico Node's `spec.bgp` fields: `asNumber`,
//!   `routeReflectorClusterID`, `ipv4Address`).

use std::collections::BTreeMap;
use std::future::Future;

use crate::calico::{BGPConfiguration, BGPPeer, IPAMBlock, IPPool};

/// Labels as plain key/value pairs: what [`CalicoDatastore::list_peers`] selects by.
pub type Labels = BTreeMap<String, String>;

/// Why a datastore operation failed, already classified for converge.
///
/// Transient faults have already been retried within the hook's budget by the time an
/// operation returns [`DatastoreError::Unavailable`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatastoreError {
    /// The datastore could not be reached or kept failing (connection refused or reset,
    /// timeouts, 429, 5xx) until the retry budget ran out.
    #[error("{0}")]
    Unavailable(String),
    /// The credentials were refused (401) or lack a permission (403).
    #[error("{0}")]
    Denied(String),
    /// The client cannot work as configured (the server's certificate is not trusted by the
    /// kubeconfig's CA, ...): retrying cannot help, the operator must fix the kubeconfig.
    #[error("{0}")]
    Setup(String),
    /// The kind itself is not served (its CRD is not installed).
    #[error("{kind} is not served")]
    KindMissing { kind: String },
    /// The object does not exist (for operations on one named object).
    #[error("{object} not found")]
    NotFound { object: String },
    /// The object was refused as invalid (422); `reason` is the API's own words.
    #[error("{object} rejected: {reason}")]
    Invalid { object: String, reason: String },
    /// The object changed or was replaced under us (409, failed precondition).
    #[error("{object} conflict: {reason}")]
    Conflict { object: String, reason: String },
    /// Anything else the API refused (400, 405, an unreadable answer, ...).
    #[error("{object}: {reason}")]
    Other { object: String, reason: String },
}

/// What [`CalicoDatastore::create_peer`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Created<T> {
    /// Created: the object as stored.
    New(T),
    /// An object of that name already exists (as read); nothing was written.
    Exists(T),
}

/// A value returned by a [`CalicoDatastore`] or [`super::workloads::KubeWorkloads`]
/// operation.
pub type DsResult<T> = Result<T, DatastoreError>;

/// Calico's datastore, as converge needs it (see the module documentation for the contract).
pub trait CalicoDatastore: Sync {
    /// How operator-facing messages name this datastore (`Kubernetes API`).
    fn name(&self) -> &'static str;

    /// Every IP pool (pools are few; the leader needs all of them to match by CIDR).
    fn list_pools(&self) -> impl Future<Output = DsResult<Vec<IPPool>>> + Send;
    /// Apply a pool (create or update the fields the charm owns); returns the stored pool.
    fn apply_pool(&self, pool: &IPPool) -> impl Future<Output = DsResult<IPPool>> + Send;
    /// Set `disabled: true` on a pool, leaving every other field as it is.
    fn disable_pool(&self, pool: &IPPool) -> impl Future<Output = DsResult<()>> + Send;
    /// Delete this pool (as read: same uid). Already gone is success.
    fn delete_pool(&self, pool: &IPPool) -> impl Future<Output = DsResult<()>> + Send;
    /// Every IPAM block (read only when a pool is being removed).
    fn list_ipam_blocks(&self) -> impl Future<Output = DsResult<Vec<IPAMBlock>>> + Send;

    /// The BGP peers carrying every one of `labels` (the charm passes its managed-by label
    /// and the unit's owner label): a label-selected list, never every peer in the cluster.
    fn list_peers(&self, labels: &Labels) -> impl Future<Output = DsResult<Vec<BGPPeer>>> + Send;
    /// One peer by name.
    fn get_peer(&self, name: &str) -> impl Future<Output = DsResult<Option<BGPPeer>>> + Send;
    /// Apply a peer; returns the stored peer.
    fn apply_peer(&self, peer: &BGPPeer) -> impl Future<Output = DsResult<BGPPeer>> + Send;
    /// Create a peer the unit does not own yet, only if no peer of its name exists:
    /// [`Created::New`] with the stored peer, or [`Created::Exists`] with the existing one,
    /// left as it was (the caller decides whether it may be taken over). One request where
    /// the datastore can create conditionally (KDD: a `POST`, `409 AlreadyExists` when the
    /// name is taken); by default a read by name, then an apply when there is none.
    fn create_peer(
        &self,
        peer: &BGPPeer,
    ) -> impl Future<Output = DsResult<Created<BGPPeer>>> + Send {
        async move {
            let name = peer.metadata.name.clone().unwrap_or_default();
            match self.get_peer(&name).await? {
                Some(existing) => Ok(Created::Exists(existing)),
                None => self.apply_peer(peer).await.map(Created::New),
            }
        }
    }
    /// Delete this peer (as read: same uid). Already gone is success.
    fn delete_peer(&self, peer: &BGPPeer) -> impl Future<Output = DsResult<()>> + Send;

    /// One BGP configuration by name (`default`).
    fn get_bgp_configuration(
        &self,
        name: &str,
    ) -> impl Future<Output = DsResult<Option<BGPConfiguration>>> + Send;
    /// Apply the fields the charm owns on a BGP configuration; returns the stored object.
    fn apply_bgp_configuration(
        &self,
        config: &BGPConfiguration,
    ) -> impl Future<Output = DsResult<BGPConfiguration>> + Send;

    /// The node's Calico BGP settings: every key of [`crate::calico::NODE_ANNOTATIONS`]
    /// present on it; `None` when the node is not registered.
    fn get_node_bgp(
        &self,
        node: &str,
    ) -> impl Future<Output = DsResult<Option<BTreeMap<String, String>>>> + Send;
    /// Apply the node's Calico BGP settings the unit owns (only these keys); a key the charm
    /// owned and no longer applies is dropped. Returns the node's Calico keys afterwards.
    fn apply_node_bgp(
        &self,
        node: &str,
        settings: &BTreeMap<String, String>,
    ) -> impl Future<Output = DsResult<BTreeMap<String, String>>> + Send;
    /// Remove these Calico keys from the node whoever set them.
    fn remove_node_bgp(
        &self,
        node: &str,
        keys: &[String],
    ) -> impl Future<Output = DsResult<()>> + Send;
}
