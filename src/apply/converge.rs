//! Converge: make the datastore hold what one unit wants, and nothing it no longer wants.
//!
//! Order (each step is idempotent, so a hook killed anywhere is repaired by the next one):
//!
//! 1. leader: Calico CRDs (created when absent), then the other workloads (applied);
//! 2. the Node (is it registered?);
//! 3. leader with manage-pools: the desired pools (adopted by CIDR or created);
//! 4. this unit's desired BGP peers (adopting the earlier charm's);
//! 5. leader: BGPConfiguration `default`;
//! 6. this unit's Calico Node annotations (set, and removed when no longer wanted);
//! 7. this unit's peers no longer wanted (label-selected, ownership re-checked, uid-guarded);
//! 8. leader with manage-pools: pools no longer wanted: disabled, then deleted once empty;
//! 9. leader: workload objects no longer wanted (label-selected, ownership re-checked).
//!
//! New things are in place before old ones go (new pool before the old is disabled, new
//! peers and mesh setting before stale peers are deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnetwork::IpNetwork;

use super::Outcome;
use super::datastore::{CalicoDatastore, DatastoreError};
use super::pools::{choose_pool_name, contains, overlaps, parse_cidr};
use super::workloads::{
    KUBERNETES_API, KubeWorkloads, NodeAgent, ObjectRef, WorkloadKind, WorkloadObject,
};
use crate::apply::readiness::waiting_message;
use crate::calico::{
    BGPConfiguration, BGPPeer, IPPool, MANAGED_BY, MANAGED_BY_LABEL, NODE_ANNOTATIONS, UNIT_LABEL,
    charm_labels,
};
use crate::render::workloads::Workloads;
use crate::render::{Desired, Pools};

/// Message while Calico's CRDs are not installed.
pub const WAITING_FOR_CRDS: &str = "Waiting for Calico CRDs";

/// The waiting cause while this unit's Node has not registered.
pub fn waiting_for_node(node: &str) -> String {
    format!("Waiting for node {node} to register")
}

/// Knobs of a converge that tests may turn.
#[derive(Clone, Debug)]
pub struct ConvergeOptions {
    /// Pause between disabling a pool and reading its IPAM blocks, so that an allocation
    /// already under way lands in a block we then see (calicoctl waits 500 ms too).
    pub pool_settle: Duration,
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        ConvergeOptions {
            pool_settle: Duration::from_millis(500),
        }
    }
}

impl ConvergeOptions {
    /// Defaults, with `CALICO_CHARM_POOL_SETTLE_MS` overriding the settle pause.
    pub fn from_env() -> Self {
        let mut options = ConvergeOptions::default();
        if let Some(ms) = std::env::var("CALICO_CHARM_POOL_SETTLE_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            options.pool_settle = Duration::from_millis(ms);
        }
        options
    }
}

/// Converge with [`ConvergeOptions::from_env`].
pub async fn converge<C: CalicoDatastore, W: KubeWorkloads>(
    desired: &Desired,
    calico: &C,
    kube: &W,
) -> Outcome {
    converge_with(desired, calico, kube, &ConvergeOptions::from_env()).await
}

/// Converge `desired` into `ds`. Never fails: what could not be done is in the [`Outcome`]'s
/// `waiting` (outside the charm, retry on a later hook) or `blocked` (the operator must act).
pub async fn converge_with<C: CalicoDatastore, W: KubeWorkloads>(
    desired: &Desired,
    calico: &C,
    kube: &W,
    options: &ConvergeOptions,
) -> Outcome {
    let mut run = Run {
        ds: calico,
        kube,
        desired,
        options,
        out: Outcome::default(),
    };
    // An Err(Abort) means a fault that stops the whole converge (unreachable API, denied
    // access, missing CRDs): it is already recorded in the outcome.
    let _ = run.all().await;
    run.out
}

/// Fold the state of this node's calico-node into an outcome: `waiting` unless it is
/// Running and Ready. Call after [`converge`] on hooks that report status (not on stop).
pub async fn check_node_agent<W: KubeWorkloads>(kube: &W, node: &str) -> Outcome {
    let mut out = Outcome::default();
    match kube.node_agent(node).await {
        Ok(NodeAgent::Ready) => {}
        Ok(NodeAgent::Missing) => out
            .waiting
            .push(waiting_message(node, "no calico-node pod")),
        Ok(NodeAgent::NotReady(reason)) => out.waiting.push(waiting_message(node, &reason)),
        Err(err) => {
            let _ = record_fatal(&mut out, KUBERNETES_API, "Pod", err);
        }
    }
    out
}

/// The outcome of one failed datastore read outside a converge (`waiting` for an API that
/// did not answer, `blocked` for a denial), worded as converge words it.
pub fn failed_read(datastore: &str, kind: &str, err: DatastoreError) -> Outcome {
    let mut out = Outcome::default();
    let _ = record_fatal(&mut out, datastore, kind, err);
    out
}

/// Marker: the converge stopped; the cause is in the outcome.
struct Abort;

struct Run<'a, C, W> {
    ds: &'a C,
    kube: &'a W,
    desired: &'a Desired,
    options: &'a ConvergeOptions,
    out: Outcome,
}

/// Record an error. Returns `Err(Abort)` for faults that make going on pointless (the API
/// is unreachable or refuses us, Calico's kinds are not installed), `Ok(())` for a problem
/// with one object, after which converge goes on with the others.
fn record_fatal(
    out: &mut Outcome,
    datastore: &str,
    kind: &str,
    err: DatastoreError,
) -> Result<(), Abort> {
    match err {
        DatastoreError::Unavailable(cause) => {
            push_unique(
                &mut out.waiting,
                format!("{datastore} unavailable: {cause}"),
            );
            Err(Abort)
        }
        DatastoreError::Denied(cause) => {
            push_unique(
                &mut out.blocked,
                format!("{datastore} denied access: {cause}"),
            );
            Err(Abort)
        }
        DatastoreError::Setup(cause) => {
            push_unique(
                &mut out.blocked,
                format!("{datastore} cannot be used: {cause}"),
            );
            Err(Abort)
        }
        DatastoreError::KindMissing { kind: missing } => {
            if is_calico_kind(&missing) || is_calico_kind(kind) {
                push_unique(&mut out.waiting, WAITING_FOR_CRDS.to_string());
            } else {
                push_unique(
                    &mut out.waiting,
                    format!("Waiting for {datastore} to serve {missing}"),
                );
            }
            Err(Abort)
        }
        DatastoreError::NotFound { object } => {
            // Only reached where absence is not expected; say so and go on.
            push_unique(
                &mut out.waiting,
                format!("{object} disappeared; will retry"),
            );
            Ok(())
        }
        DatastoreError::Invalid { object, reason } => {
            push_unique(&mut out.blocked, format!("{object} rejected: {reason}"));
            Ok(())
        }
        DatastoreError::Conflict { object, reason } => {
            push_unique(&mut out.waiting, format!("{object} conflict: {reason}"));
            Ok(())
        }
        DatastoreError::Other { object, reason } => {
            push_unique(&mut out.blocked, format!("{object}: {reason}"));
            Ok(())
        }
    }
}

fn push_unique(list: &mut Vec<String>, message: String) {
    if !list.contains(&message) {
        list.push(message);
    }
}

fn is_calico_kind(kind: &str) -> bool {
    let lower = kind.to_ascii_lowercase();
    ["ippool", "bgppeer", "bgpconfiguration", "ipamblock"]
        .iter()
        .any(|k| lower.starts_with(k))
}

/// Whether a label map marks an object as managed by the charm.
fn managed_by_charm(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

/// Whether a peer is labelled as owned by `owner` (the double check before a delete).
pub fn owned_by(peer: &BGPPeer, owner: &str) -> bool {
    let labels = peer.metadata.labels.clone().unwrap_or_default();
    managed_by_charm(&labels) && labels.get(UNIT_LABEL).map(String::as_str) == Some(owner)
}

/// Whether a peer looks like one the earlier Python charm made: no labels of its own (only
/// Calico's `projectcalico.org/` bookkeeping ones, which calicoctl writes).
fn unlabelled(peer: &BGPPeer) -> bool {
    peer.metadata
        .labels
        .as_ref()
        .is_none_or(|labels| labels.keys().all(|k| k.contains("projectcalico.org/")))
}

impl<C: CalicoDatastore, W: KubeWorkloads> Run<'_, C, W> {
    fn fail(&mut self, kind: &str, err: DatastoreError) -> Result<(), Abort> {
        record_fatal(&mut self.out, self.ds.name(), kind, err)
    }

    /// A failure of the Kubernetes workloads seam.
    fn fail_kube(&mut self, kind: &str, err: DatastoreError) -> Result<(), Abort> {
        record_fatal(&mut self.out, KUBERNETES_API, kind, err)
    }

    fn changed(&mut self, what: String) {
        self.out.changed.push(what);
    }

    async fn all(&mut self) -> Result<(), Abort> {
        let desired = self.desired;
        let workloads = desired.workloads.as_ref();
        let mut owned_workloads = Vec::new();
        if let Some(workloads) = workloads {
            owned_workloads = self.apply_workloads(workloads).await?;
        }

        let node_bgp = self.read_node().await?;

        let mut pool_plan = None;
        if let Pools::Managed(pools) = &desired.pools {
            pool_plan = Some(self.apply_pools(pools).await?);
        }

        let owned_peers = self.apply_peers().await?;

        if let Some(config) = &desired.bgp_configuration {
            self.apply_bgp_configuration(config).await?;
        }

        if let Some(current) = node_bgp {
            self.node_annotations(current).await?;
        }

        self.prune_peers(owned_peers).await?;

        if let Some(plan) = pool_plan {
            self.remove_stale_pools(plan).await?;
        }

        if let Some(workloads) = workloads {
            self.prune_workloads(workloads, owned_workloads).await?;
        }
        Ok(())
    }

    // ---- workloads ------------------------------------------------------------------

    /// Create missing CRDs, apply the other objects. Returns the owned objects listed
    /// before applying (for pruning afterwards).
    async fn apply_workloads(&mut self, workloads: &Workloads) -> Result<Vec<ObjectRef>, Abort> {
        if !workloads.crds.is_empty() {
            match self.kube.missing_crds(&workloads.crds).await {
                Ok(missing) => {
                    for crd in workloads.crds.iter().filter(|c| {
                        c.metadata
                            .name
                            .as_ref()
                            .is_some_and(|n| missing.contains(n))
                    }) {
                        let name = crd.metadata.name.clone().unwrap_or_default();
                        match self.kube.create_crd(crd).await {
                            Ok(true) => self.changed(format!("CustomResourceDefinition/{name}")),
                            Ok(false) => {}
                            Err(err) => self.fail_kube("CustomResourceDefinition", err)?,
                        }
                    }
                }
                Err(err) => self.fail_kube("CustomResourceDefinition", err)?,
            }
        }

        let objects = workload_objects(workloads);
        let mut owned = Vec::new();
        for kind in WorkloadKind::ALL {
            match self.kube.list_workloads(kind, &charm_labels(None)).await {
                Ok(list) => owned.extend(list),
                Err(err) => self.fail_kube(kind.as_str(), err)?,
            }
        }
        for object in &objects {
            let (namespace, name) = object.key();
            let kind = object.kind().as_str();
            let before = owned
                .iter()
                .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
                .and_then(|o| o.resource_version.clone());
            match self.kube.apply_workload(object).await {
                Ok(after) => {
                    if before.is_none() || before != after.resource_version {
                        self.changed(format!("{kind}/{name}"));
                    }
                }
                Err(err) => self.fail_kube(kind, err)?,
            }
        }
        Ok(owned)
    }

    async fn prune_workloads(
        &mut self,
        workloads: &Workloads,
        owned: Vec<ObjectRef>,
    ) -> Result<(), Abort> {
        let objects = workload_objects(workloads);
        if objects.is_empty() {
            // An empty set would prune calico-node itself: treat it as "nothing rendered"
            // rather than "remove Calico".
            tracing::warn!("no workload objects rendered; not pruning any");
            return Ok(());
        }
        let wanted: BTreeSet<(String, String, String)> = objects
            .iter()
            .map(|o| {
                let (ns, name) = o.key();
                (o.kind().as_str().to_string(), ns, name)
            })
            .collect();
        for object in owned {
            let key = (
                object.kind.clone(),
                object.namespace.clone(),
                object.name.clone(),
            );
            if wanted.contains(&key) || !managed_by_charm(&object.labels) {
                continue;
            }
            match self.kube.delete_workload(&object).await {
                Ok(()) => self.out.deleted.push(object.display()),
                Err(err) => self.fail_kube(&object.kind, err)?,
            }
        }
        Ok(())
    }

    // ---- node -----------------------------------------------------------------------

    async fn read_node(&mut self) -> Result<Option<BTreeMap<String, String>>, Abort> {
        let node = &self.desired.node.node_name;
        match self.ds.get_node_bgp(node).await {
            Ok(Some(current)) => Ok(Some(current)),
            Ok(None) => {
                self.out.waiting.push(waiting_for_node(node));
                Ok(None)
            }
            Err(err) => {
                self.fail("Node", err)?;
                Ok(None)
            }
        }
    }

    async fn node_annotations(&mut self, current: BTreeMap<String, String>) -> Result<(), Abort> {
        let node = self.desired.node.node_name.clone();
        let mut want: BTreeMap<String, String> = self
            .desired
            .node
            .annotations
            .iter()
            .filter(|(k, _)| crate::calico::is_charm_node_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // A set-only annotation the unit no longer sets keeps its current value: applying
        // without it would drop it when the charm's field manager owns it.
        for key in crate::calico::NODE_SET_ONLY_ANNOTATIONS {
            if let (false, Some(value)) = (want.contains_key(key), current.get(key)) {
                want.insert(key.to_string(), value.clone());
            }
        }
        let is_current = want.iter().all(|(k, v)| current.get(k) == Some(v));
        let unwanted = |map: &BTreeMap<String, String>| -> Vec<String> {
            map.keys()
                .filter(|k| NODE_ANNOTATIONS.contains(&k.as_str()) && !want.contains_key(*k))
                .cloned()
                .collect()
        };
        let mut after = current.clone();
        if !is_current || !unwanted(&current).is_empty() {
            // Apply even an empty set: it drops what the charm owned and no longer wants.
            match self.ds.apply_node_bgp(&node, &want).await {
                Ok(result) => after = result,
                Err(DatastoreError::NotFound { .. }) => {
                    self.out.waiting.push(waiting_for_node(&node));
                    return Ok(());
                }
                Err(err) => {
                    self.fail("Node", err)?;
                    return Ok(());
                }
            }
        }
        // Keys set by someone else (the earlier charm, an admin, calico-node) survive the
        // apply: remove them explicitly.
        let leftover = unwanted(&after);
        if !leftover.is_empty() {
            match self.ds.remove_node_bgp(&node, &leftover).await {
                Ok(()) => {
                    for key in &leftover {
                        after.remove(key);
                    }
                }
                Err(DatastoreError::NotFound { .. }) => return Ok(()),
                Err(err) => self.fail("Node", err)?,
            }
        }
        if after != current {
            self.changed(format!("Node/{node}"));
        }
        Ok(())
    }

    // ---- BGP configuration ----------------------------------------------------------

    async fn apply_bgp_configuration(&mut self, config: &BGPConfiguration) -> Result<(), Abort> {
        let name = config.metadata.name.clone().unwrap_or_default();
        let before = match self.ds.get_bgp_configuration(&name).await {
            Ok(b) => b.and_then(|b| b.metadata.resource_version),
            Err(err) => {
                self.fail("BGPConfiguration", err)?;
                None
            }
        };
        let mut object = BGPConfiguration::new(&name, config.spec.clone());
        object.metadata.labels = config.metadata.labels.clone();
        object.metadata.annotations = config.metadata.annotations.clone();
        match self.ds.apply_bgp_configuration(&object).await {
            Ok(after) => {
                if before.is_none() || before != after.metadata.resource_version {
                    self.changed(format!("BGPConfiguration/{name}"));
                }
            }
            Err(err) => self.fail("BGPConfiguration", err)?,
        }
        Ok(())
    }

    // ---- peers ----------------------------------------------------------------------

    /// Apply every desired peer. Returns the peers owned before (for pruning).
    async fn apply_peers(&mut self) -> Result<Vec<BGPPeer>, Abort> {
        let owner = self.desired.owner.clone();
        let owned = match self.ds.list_peers(&charm_labels(Some(&owner))).await {
            // The server filtered by label; keep only what really carries them.
            Ok(list) => list
                .into_iter()
                .filter(|p| owned_by(p, &owner))
                .collect::<Vec<_>>(),
            Err(err) => {
                self.fail("BGPPeer", err)?;
                return Ok(Vec::new());
            }
        };
        for want in &self.desired.peers {
            let name = want.metadata.name.clone().unwrap_or_default();
            let mut object = BGPPeer::new(&name, want.spec.clone());
            let mut labels = want.metadata.labels.clone().unwrap_or_default();
            labels.extend(charm_labels(Some(&owner)));
            object.metadata.labels = Some(labels);
            object.metadata.annotations = want.metadata.annotations.clone();

            let mut before = owned
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|p| p.metadata.resource_version.clone());
            let mut adopted = false;
            if before.is_none() {
                match self.ds.get_peer(&name).await {
                    Ok(None) => {}
                    Ok(Some(existing)) => {
                        if !self.may_take(&existing, want) {
                            self.out.blocked.push(format!(
                                "BGPPeer/{name} exists and is not managed by {owner}; rename or delete it"
                            ));
                            continue;
                        }
                        adopted = !owned_by(&existing, &owner);
                        before = existing.metadata.resource_version;
                    }
                    Err(err) => {
                        self.fail("BGPPeer", err)?;
                        continue;
                    }
                }
            }
            match self.ds.apply_peer(&object).await {
                Ok(after) => {
                    if adopted {
                        self.changed(format!("BGPPeer/{name} (adopted)"));
                    } else if before.is_none() || before != after.metadata.resource_version {
                        self.changed(format!("BGPPeer/{name}"));
                    }
                }
                Err(err) => self.fail("BGPPeer", err)?,
            }
        }
        Ok(owned)
    }

    /// Whether an existing peer with a desired peer's name may be taken over: it is already
    /// ours; or the earlier Python charm's (no labels) for the same node; or the charm's
    /// own for this very node, left by a unit that is gone (one unit per machine).
    fn may_take(&self, existing: &BGPPeer, want: &BGPPeer) -> bool {
        let owner = &self.desired.owner;
        if owned_by(existing, owner) {
            return true;
        }
        let same_node = existing.spec.node == want.spec.node;
        if unlabelled(existing) {
            return same_node;
        }
        let labels = existing.metadata.labels.clone().unwrap_or_default();
        managed_by_charm(&labels)
            && same_node
            && existing.spec.node.as_deref() == Some(self.desired.node.node_name.as_str())
    }

    async fn prune_peers(&mut self, owned: Vec<BGPPeer>) -> Result<(), Abort> {
        let owner = self.desired.owner.clone();
        let wanted: BTreeSet<&str> = self
            .desired
            .peers
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        for peer in owned {
            let name = peer.metadata.name.clone().unwrap_or_default();
            if wanted.contains(name.as_str()) || !owned_by(&peer, &owner) {
                continue;
            }
            match self.ds.delete_peer(&peer).await {
                Ok(()) => self.out.deleted.push(format!("BGPPeer/{name}")),
                Err(err) => self.fail("BGPPeer", err)?,
            }
        }
        Ok(())
    }

    // ---- pools ----------------------------------------------------------------------

    /// Adopt or create every desired pool (matched by CIDR).
    async fn apply_pools(&mut self, pools: &[IPPool]) -> Result<PoolPlan, Abort> {
        let existing = match self.ds.list_pools().await {
            Ok(list) => list,
            Err(err) => {
                self.fail("IPPool", err)?;
                return Ok(PoolPlan::default());
            }
        };
        let mut taken: BTreeSet<String> = existing
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let mut plan = PoolPlan {
            existing,
            ..PoolPlan::default_complete()
        };
        if pools.is_empty() {
            // "Exactly no pools" would remove every pool and with it pod networking: never.
            tracing::warn!("no IP pool rendered; leaving existing pools alone");
            plan.complete = false;
        }
        for want in pools {
            let rendered = want.metadata.name.clone().unwrap_or_default();
            let Some(cidr) = parse_cidr(&want.spec.cidr) else {
                self.out.blocked.push(format!(
                    "IPPool/{rendered} rejected: invalid cidr {:?}",
                    want.spec.cidr
                ));
                plan.complete = false;
                continue;
            };
            plan.desired.push(cidr);
            let found = plan.existing.iter().find(|p| {
                !plan
                    .kept
                    .contains(p.metadata.name.as_deref().unwrap_or_default())
                    && parse_cidr(&p.spec.cidr) == Some(cidr)
            });
            let (name, before) = match found {
                Some(p) => (
                    p.metadata.name.clone().unwrap_or_default(),
                    p.metadata.resource_version.clone(),
                ),
                None => (choose_pool_name(&rendered, cidr, &taken), None),
            };
            taken.insert(name.clone());
            plan.kept.insert(name.clone());

            let mut spec = want.spec.clone();
            spec.cidr = cidr.to_string();
            // A pool adopted while it was draining must allocate again.
            spec.disabled.get_or_insert(false);
            let mut object = IPPool::new(&name, spec);
            let mut labels = want.metadata.labels.clone().unwrap_or_default();
            labels.extend(charm_labels(None));
            object.metadata.labels = Some(labels);
            object.metadata.annotations = want.metadata.annotations.clone();
            match self.ds.apply_pool(&object).await {
                Ok(after) => {
                    if before.is_none() || before != after.metadata.resource_version {
                        self.changed(format!("IPPool/{name}"));
                    }
                }
                Err(err) => {
                    plan.complete = false;
                    self.fail("IPPool", err)?;
                }
            }
        }
        Ok(plan)
    }

    /// Disable, then (once no IPAM block in its range is allocated) delete, every pool not
    /// kept. Only when every desired pool is in place.
    async fn remove_stale_pools(&mut self, plan: PoolPlan) -> Result<(), Abort> {
        if !plan.complete {
            return Ok(());
        }
        let stale: Vec<(IPPool, IpNetwork)> = plan
            .existing
            .into_iter()
            .filter(|p| {
                !plan
                    .kept
                    .contains(p.metadata.name.as_deref().unwrap_or_default())
            })
            .filter_map(|p| match parse_cidr(&p.spec.cidr) {
                Some(cidr) => Some((p, cidr)),
                None => {
                    // Not a range we can reason about: leave it alone.
                    tracing::warn!(
                        "IPPool {:?} has an unreadable cidr {:?}; leaving it",
                        p.metadata.name,
                        p.spec.cidr
                    );
                    None
                }
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }

        let mut disabled_now = false;
        for (pool, _) in &stale {
            if pool.spec.disabled != Some(true) {
                let name = pool.metadata.name.clone().unwrap_or_default();
                match self.ds.disable_pool(pool).await {
                    Ok(()) => {
                        disabled_now = true;
                        self.changed(format!("IPPool/{name} (disabled)"));
                    }
                    Err(DatastoreError::NotFound { .. }) => {}
                    Err(err) => self.fail("IPPool", err)?,
                }
            }
        }
        if disabled_now && !self.options.pool_settle.is_zero() {
            tokio::time::sleep(self.options.pool_settle).await;
        }

        let blocks = match self.ds.list_ipam_blocks().await {
            Ok(blocks) => blocks,
            Err(err) => {
                self.fail("IPAMBlock", err)?;
                return Ok(());
            }
        };
        let in_use: Vec<Option<IpNetwork>> = blocks
            .iter()
            .filter(|b| b.spec.in_use())
            .map(|b| parse_cidr(&b.spec.cidr))
            .collect();
        for (pool, cidr) in stale {
            let name = pool.metadata.name.clone().unwrap_or_default();
            let allocated = in_use.iter().any(|block| match block {
                // A block inside a pool we keep is that pool's: the addresses stay routed.
                Some(block) => {
                    overlaps(cidr, *block) && !plan.desired.iter().any(|d| contains(*d, *block))
                }
                // An allocated block we cannot read: assume it is this pool's.
                None => true,
            });
            if allocated {
                self.out
                    .waiting
                    .push(format!("Draining IP pool {name} ({cidr})"));
                continue;
            }
            match self.ds.delete_pool(&pool).await {
                Ok(()) => self.out.deleted.push(format!("IPPool/{name}")),
                Err(err) => self.fail("IPPool", err)?,
            }
        }
        Ok(())
    }
}

/// What [`Run::apply_pools`] found and did, for [`Run::remove_stale_pools`].
#[derive(Default)]
struct PoolPlan {
    /// Every pool before this converge.
    existing: Vec<IPPool>,
    /// Names of the pools that hold a desired CIDR (adopted or created).
    kept: BTreeSet<String>,
    /// Desired CIDRs.
    desired: Vec<IpNetwork>,
    /// Every desired pool was applied: only then may old ones be touched.
    complete: bool,
}

impl PoolPlan {
    fn default_complete() -> Self {
        PoolPlan {
            complete: true,
            ..Default::default()
        }
    }
}

/// Every workload object except CRDs, in apply order, labelled as managed by the charm.
pub fn workload_objects(workloads: &Workloads) -> Vec<WorkloadObject> {
    let mut objects: Vec<WorkloadObject> = Vec::new();
    objects.extend(
        workloads
            .service_accounts
            .iter()
            .cloned()
            .map(WorkloadObject::ServiceAccount),
    );
    objects.extend(
        workloads
            .cluster_roles
            .iter()
            .cloned()
            .map(WorkloadObject::ClusterRole),
    );
    objects.extend(
        workloads
            .cluster_role_bindings
            .iter()
            .cloned()
            .map(WorkloadObject::ClusterRoleBinding),
    );
    objects.extend(
        workloads
            .config_maps
            .iter()
            .cloned()
            .map(WorkloadObject::ConfigMap),
    );
    objects.extend(
        workloads
            .secrets
            .iter()
            .cloned()
            .map(WorkloadObject::Secret),
    );
    objects.extend(
        workloads
            .services
            .iter()
            .cloned()
            .map(WorkloadObject::Service),
    );
    objects.extend(
        workloads
            .daemon_sets
            .iter()
            .cloned()
            .map(WorkloadObject::DaemonSet),
    );
    objects.extend(
        workloads
            .deployments
            .iter()
            .cloned()
            .map(WorkloadObject::Deployment),
    );
    objects.extend(
        workloads
            .pod_disruption_budgets
            .iter()
            .cloned()
            .map(WorkloadObject::PodDisruptionBudget),
    );
    for object in &mut objects {
        let labels = object.meta_mut().labels.get_or_insert_with(BTreeMap::new);
        labels.extend(charm_labels(None));
    }
    objects
}
