//! Converge: make the datastore hold what one unit wants, and nothing it no longer wants.
//! Observe, decide purely ([`super::plan`]), then execute; an object that already holds
//! what the unit wants is not written ([`super::fields`]).
//!
//! Order (each step is idempotent, so a hook killed anywhere is repaired by the next one):
//!
//! 1. leader: Calico CRDs (created when absent); the workloads observed (one labelled list
//!    per kind), planned ([`super::plan::plan_workloads`]) and those that differ applied;
//! 2. observe: the Node, the pools (leader with manage-pools), this unit's peers (one
//!    labelled list), the BGP configuration (leader); then [`super::plan::plan`];
//! 3. the pools that differ (adopted by CIDR or created), then the peers: those it owns
//!    applied, new ones created if their name is free (an existing peer of that name read
//!    then, and adopted when it is the earlier charm's), then the BGP configuration;
//! 4. this unit's Calico Node settings (set, and removed when no longer wanted);
//! 5. this unit's peers no longer wanted (label-selected, ownership re-checked, uid-guarded);
//! 6. pools no longer wanted: disabled, then deleted once drained ([`super::plan::drained`]);
//! 7. leader: workload objects no longer wanted (label-selected, ownership re-checked).
//!
//! New things are in place before old ones go (new pool before the old is disabled, new
//! peers and mesh setting before stale peers are deleted).

use std::time::Duration;

use super::Outcome;
use super::checks::Reads;
use super::plan::{
    Apply, NodePlan, Observed, Plan, WorkloadPlan, leftover_node_keys, owned_by, plan,
    plan_workloads, take_peer,
};
use super::workloads::{KUBERNETES_API, KubeWorkloads, NodeAgent, WorkloadKind};
use crate::apply::readiness::waiting_message;
use crate::calico::{BGPPeer, charm_labels};
use crate::datastore::{CalicoDatastore, Created, DatastoreError};
use crate::problems::Cause;
use crate::render::workloads::{CALICO_NODE, Workloads};
use crate::render::{Desired, Pools};

pub(crate) use super::plan::waiting_for_node;

/// Knobs of a converge that tests may turn.
#[derive(Clone, Debug)]
pub struct ConvergeOptions {
    /// Pause between disabling a pool and reading its IPAM blocks, so that an allocation
    /// already under way lands in a block we then see (calicoctl waits 500 ms too).
    pub pool_settle: Duration,
    /// What the leader reads of the workloads ([`super::checks`]): everything by default.
    pub reads: Reads,
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        ConvergeOptions {
            pool_settle: Duration::from_millis(500),
            reads: Reads::all(),
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

/// Converge `desired` into `ds`. Never fails: what could not be done is in the [`Outcome`]'s
/// `waiting` (outside the charm, retry on a later hook) or `blocked` (the operator must act).
pub async fn converge_with<C: CalicoDatastore, W: KubeWorkloads>(
    desired: &Desired,
    calico: &C,
    kube: &W,
    options: &ConvergeOptions,
) -> Outcome {
    converge_detailed(desired, calico, kube, options)
        .await
        .outcome
}

/// What a converge did, and what it saw that spares a later read.
#[derive(Clone, Debug, Default)]
pub(crate) struct Converged {
    pub outcome: Outcome,
    /// The leader saw the calico-node DaemonSet unchanged and every pod it schedules
    /// updated, ready and available ([`super::readiness::daemon_set_ready`]): this node's
    /// calico-node needs no separate check.
    pub calico_node_ready: bool,
    /// A seam could not be used at all (unreachable, access denied, unusable client): no
    /// further read this hook can succeed.
    pub unreachable: bool,
    /// This unit's Node is not registered: no calico-node pod can run on it yet.
    pub node_missing: bool,
    /// A kind was not served (its CRD is missing): a converge that did not check the CRDs
    /// ([`Reads::crds`]) must be run again with them.
    pub kind_missing: bool,
}

/// [`converge_with`], with what it saw on the way.
pub(crate) async fn converge_detailed<C: CalicoDatastore, W: KubeWorkloads>(
    desired: &Desired,
    calico: &C,
    kube: &W,
    options: &ConvergeOptions,
) -> Converged {
    let mut run = Run {
        ds: calico,
        kube,
        desired,
        options,
        out: Outcome::default(),
        calico_node_ready: false,
        unreachable: false,
        node_missing: false,
        kind_missing: false,
        crds_created: false,
    };
    // An Err(Abort) means a fault that stops the whole converge (unreachable API, denied
    // access, missing CRDs): it is already recorded in the outcome.
    let _ = run.all().await;
    Converged {
        outcome: run.out,
        calico_node_ready: run.calico_node_ready,
        unreachable: run.unreachable,
        node_missing: run.node_missing,
        kind_missing: run.kind_missing,
    }
}

/// Fold the state of this node's calico-node into an outcome: `waiting` unless it is
/// Running and Ready. Call after [`converge`] on hooks that report status (not on stop).
pub async fn check_node_agent<W: KubeWorkloads>(kube: &W, node: &str) -> Outcome {
    let mut out = Outcome::default();
    match kube.node_agent(node).await {
        Ok(NodeAgent::Ready) => {}
        Ok(NodeAgent::Missing) => out.push(waiting_message(node, "no calico-node pod")),
        Ok(NodeAgent::NotReady(reason)) => out.push(waiting_message(node, &reason)),
        Err(err) => {
            let _ = record_fatal(&mut out, KUBERNETES_API, "Pod", err);
        }
    }
    out
}

/// The outcome of one failed datastore read outside a converge (`waiting` for an API that
/// did not answer, `blocked` for a denial), worded as converge words it.
pub(crate) fn failed_read(datastore: &str, kind: &str, err: DatastoreError) -> Outcome {
    let mut out = Outcome::default();
    let _ = record_fatal(&mut out, datastore, kind, err);
    out
}

/// Whether an error means the seam cannot be used at all this hook.
fn unreachable(err: &DatastoreError) -> bool {
    matches!(
        err,
        DatastoreError::Unavailable(_) | DatastoreError::Denied(_) | DatastoreError::Setup(_)
    )
}

/// Marker: the converge stopped; the cause is in the outcome.
struct Abort;

struct Run<'a, C, W> {
    ds: &'a C,
    kube: &'a W,
    desired: &'a Desired,
    options: &'a ConvergeOptions,
    out: Outcome,
    calico_node_ready: bool,
    unreachable: bool,
    node_missing: bool,
    kind_missing: bool,
    /// This converge created CRDs.
    crds_created: bool,
}

/// Record an error. Returns `Err(Abort)` for faults that make going on pointless (the API
/// is unreachable or refuses us, Calico's kinds are not installed), `Ok(())` for a problem
/// with one object, after which converge goes on with the others.
/// Whether a stored workload object still carries the label `ops.manifests` puts on what
/// today's Calico charm applies (`juju.io/manifest`), which adoption removes.
fn from_earlier_charm(live: &serde_json::Value) -> bool {
    live.pointer("/metadata/labels/juju.io~1manifest").is_some()
}

fn record_fatal(
    out: &mut Outcome,
    datastore: &str,
    kind: &str,
    err: DatastoreError,
) -> Result<(), Abort> {
    let datastore = datastore.to_string();
    let (cause, fatal) = match err {
        DatastoreError::Unavailable(cause) => (Cause::Unavailable { datastore, cause }, true),
        DatastoreError::Denied(cause) => (Cause::Denied { datastore, cause }, true),
        DatastoreError::Setup(cause) => (Cause::Unusable { datastore, cause }, true),
        DatastoreError::KindMissing { kind: missing } => {
            if is_calico_kind(&missing) || is_calico_kind(kind) {
                (Cause::CrdsMissing, true)
            } else {
                (
                    Cause::KindNotServed {
                        datastore,
                        kind: missing,
                    },
                    true,
                )
            }
        }
        // Only reached where absence is not expected; say so and go on.
        DatastoreError::NotFound { object } => (Cause::Disappeared { object }, false),
        DatastoreError::Invalid { object, reason } => (Cause::Rejected { object, reason }, false),
        DatastoreError::Conflict { object, reason } => (Cause::Conflict { object, reason }, false),
        DatastoreError::Other { object, reason } => (Cause::Refused { object, reason }, false),
    };
    out.push(cause);
    if fatal { Err(Abort) } else { Ok(()) }
}

fn is_calico_kind(kind: &str) -> bool {
    let lower = kind.to_ascii_lowercase();
    ["ippool", "bgppeer", "bgpconfiguration", "ipamblock"]
        .iter()
        .any(|k| lower.starts_with(k))
}

impl<C: CalicoDatastore, W: KubeWorkloads> Run<'_, C, W> {
    fn fail(&mut self, kind: &str, err: DatastoreError) -> Result<(), Abort> {
        self.unreachable |= unreachable(&err);
        self.kind_missing |= matches!(err, DatastoreError::KindMissing { .. });
        record_fatal(&mut self.out, self.ds.name(), kind, err)
    }

    /// A failure of the Kubernetes workloads seam.
    fn fail_kube(&mut self, kind: &str, err: DatastoreError) -> Result<(), Abort> {
        self.unreachable |= unreachable(&err);
        self.kind_missing |= matches!(err, DatastoreError::KindMissing { .. });
        record_fatal(&mut self.out, KUBERNETES_API, kind, err)
    }

    fn changed(&mut self, what: String) {
        self.out.changed.push(what);
    }

    /// Record an applied object as changed when it is new or its revision moved.
    fn applied(&mut self, what: String, before: &Option<String>, after: Option<String>) {
        if before.is_none() || *before != after {
            self.changed(what);
        }
    }

    async fn all(&mut self) -> Result<(), Abort> {
        let desired = self.desired;
        let mut workload_plan = None;
        if let Some(workloads) = &desired.workloads {
            workload_plan = Some(self.workloads(workloads).await?);
        }

        let observed = self.observe().await?;
        let plan = plan(desired, &observed);
        for cause in plan.waiting.iter().chain(&plan.blocked) {
            self.out.push(cause.clone());
        }
        self.execute(plan).await?;

        if let Some(plan) = workload_plan {
            for object in plan.delete {
                match self.kube.delete_workload(&object).await {
                    Ok(()) => self.out.deleted.push(object.display()),
                    Err(err) => self.fail_kube(&object.kind, err)?,
                }
            }
        }
        Ok(())
    }

    // ---- workloads ------------------------------------------------------------------

    /// Create missing CRDs, then observe, plan and apply the other objects. Returns the
    /// plan, whose deletes run last.
    async fn workloads(&mut self, workloads: &Workloads) -> Result<WorkloadPlan, Abort> {
        let reads = &self.options.reads;
        if reads.crds && !workloads.crds.is_empty() {
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
                            Ok(true) => {
                                self.crds_created = true;
                                self.changed(format!("CustomResourceDefinition/{name}"));
                            }
                            Ok(false) => {}
                            Err(err) => self.fail_kube("CustomResourceDefinition", err)?,
                        }
                    }
                }
                Err(err) => self.fail_kube("CustomResourceDefinition", err)?,
            }
        }

        let mut owned = Vec::new();
        let kinds = self.options.reads.kinds.clone();
        for kind in kinds.iter().copied() {
            match self.kube.list_workloads(kind, &charm_labels(None)).await {
                Ok(list) => owned.extend(list),
                Err(err) => self.fail_kube(kind.as_str(), err)?,
            }
        }
        let plan = plan_workloads(workloads, &owned, &kinds);
        // calico-node's DaemonSet as wanted and settled everywhere: its pods are ready.
        self.calico_node_ready = owned.iter().any(|o| {
            o.kind == WorkloadKind::DaemonSet.as_str()
                && o.name == CALICO_NODE
                && plan.unchanged.contains(&format!("DaemonSet/{CALICO_NODE}"))
                && super::readiness::daemon_set_ready(&o.live)
        });
        let mut adopted = workloads.adopt;
        for Apply { object, before, .. } in &plan.apply {
            let (_, name) = object.key();
            let kind = object.kind().as_str();
            match self.kube.apply_workload(object).await {
                Ok(after) => {
                    let rv = after.resource_version.clone();
                    self.applied(format!("{kind}/{name}"), before, rv);
                    // Only objects someone else made: not labelled as the charm's before
                    // this apply, or still carrying the earlier charm's manifest label (a
                    // take-over that failed half-way). The charm's own objects keep what
                    // other managers (an operator's kubectl) added to them.
                    if workloads.adopt && (before.is_none() || from_earlier_charm(&after.live)) {
                        adopted &= self.take_over(object, &after).await?;
                    }
                }
                Err(err) => {
                    adopted = false;
                    self.fail_kube(kind, err)?
                }
            }
        }
        // Objects already as wanted may still hold the earlier charm's fields.
        if workloads.adopt {
            for object in super::plan::workload_objects(workloads) {
                let (namespace, name) = object.key();
                let kind = object.kind().as_str();
                if !plan.unchanged.contains(&format!("{kind}/{name}")) {
                    continue;
                }
                if let Some(live) = owned.iter().find(|o| {
                    o.kind == kind
                        && o.namespace == namespace
                        && o.name == name
                        && from_earlier_charm(&o.live)
                }) {
                    adopted &= self.take_over(&object, live).await?;
                }
            }
        }
        self.out.workloads_adopted = adopted;
        Ok(plan)
    }

    /// Adopt `live` (the stored `object`) when another manager owns fields in it: hand its
    /// fields to the charm's manager, then apply again, which removes every one of them the
    /// charm does not set. `false` when that failed (retried on a later hook).
    async fn take_over(
        &mut self,
        object: &super::workloads::WorkloadObject,
        live: &super::workloads::ObjectRef,
    ) -> Result<bool, Abort> {
        let Some(fields) = super::fields::take_over(&live.live) else {
            return Ok(true);
        };
        let kind = object.kind().as_str();
        let (_, name) = object.key();
        if let Err(err) = self.kube.set_managed_fields(live, fields).await {
            self.fail_kube(kind, err)?;
            return Ok(false);
        }
        match self.kube.apply_workload(object).await {
            Ok(_) => {
                tracing::info!(
                    "adopted {kind}/{name}: the fields of its earlier managers are gone"
                );
                self.changed(format!("{kind}/{name} (adopted)"));
                Ok(true)
            }
            Err(err) => {
                self.fail_kube(kind, err)?;
                Ok(false)
            }
        }
    }

    // ---- observe ----------------------------------------------------------------------

    /// Read what the unit owns: one read per kind, and by name only the desired peers it
    /// does not own yet. A read that fails without stopping the converge leaves its part
    /// unread (and so unplanned).
    async fn observe(&mut self) -> Result<Observed, Abort> {
        let desired = self.desired;
        let mut observed = Observed::default();
        let node = &desired.node.node_name;
        match self.ds.get_node_bgp(node).await {
            Ok(current) => {
                // Said at once: a later read may stop the converge before it plans.
                if current.is_none() {
                    self.node_missing = true;
                    self.out.push(waiting_for_node(node));
                }
                observed.node = Some(current);
            }
            Err(err) => self.fail("Node", err)?,
        }
        if let Pools::Managed(_) = &desired.pools {
            match self.ds.list_pools().await {
                Ok(list) => observed.pools = Some(list),
                Err(err) => self.fail("IPPool", err)?,
            }
        }
        let owner = &desired.owner;
        match self.ds.list_peers(&charm_labels(Some(owner))).await {
            // The server filtered by label; keep only what really carries them.
            // A desired peer it does not own yet is not read here: execute creates it if
            // its name is free, and reads it only when it is not.
            Ok(list) => {
                observed.peers = Some(list.into_iter().filter(|p| owned_by(p, owner)).collect());
            }
            Err(err) => self.fail("BGPPeer", err)?,
        }
        if let Some(config) = &desired.bgp_configuration {
            let name = config.metadata.name.clone().unwrap_or_default();
            match self.ds.get_bgp_configuration(&name).await {
                Ok(stored) => observed.bgp_configuration = Some(stored),
                Err(err) => self.fail("BGPConfiguration", err)?,
            }
        }
        Ok(observed)
    }

    // ---- execute ----------------------------------------------------------------------

    async fn execute(&mut self, plan: Plan) -> Result<(), Abort> {
        let mut pools_complete = true;
        for Apply { object, before, .. } in &plan.pools {
            let name = object.metadata.name.clone().unwrap_or_default();
            match self.ds.apply_pool(object).await {
                Ok(after) => self.applied(
                    format!("IPPool/{name}"),
                    before,
                    after.metadata.resource_version,
                ),
                Err(err) => {
                    pools_complete = false;
                    self.fail("IPPool", err)?;
                }
            }
        }

        for Apply {
            object,
            before,
            adopted,
        } in &plan.peers
        {
            let name = object.metadata.name.clone().unwrap_or_default();
            match self.ds.apply_peer(object).await {
                Ok(after) => {
                    if *adopted {
                        self.changed(format!("BGPPeer/{name} (adopted)"));
                    } else {
                        self.applied(
                            format!("BGPPeer/{name}"),
                            before,
                            after.metadata.resource_version,
                        );
                    }
                }
                Err(err) => self.fail("BGPPeer", err)?,
            }
        }

        for object in &plan.create_peers {
            self.create_peer(object).await?;
        }

        if let Some(Apply { object, before, .. }) = &plan.bgp_configuration {
            let name = object.metadata.name.clone().unwrap_or_default();
            match self.ds.apply_bgp_configuration(object).await {
                Ok(after) => self.applied(
                    format!("BGPConfiguration/{name}"),
                    before,
                    after.metadata.resource_version,
                ),
                Err(err) => self.fail("BGPConfiguration", err)?,
            }
        }

        if let Some(node) = &plan.node {
            self.node_settings(node).await?;
        }

        for peer in &plan.delete_peers {
            let name = peer.metadata.name.clone().unwrap_or_default();
            match self.ds.delete_peer(peer).await {
                Ok(()) => self.out.deleted.push(format!("BGPPeer/{name}")),
                Err(err) => self.fail("BGPPeer", err)?,
            }
        }

        if pools_complete && !plan.stale_pools.is_empty() {
            self.remove_stale_pools(&plan).await?;
        }
        Ok(())
    }

    /// A peer new to the unit: created if its name is free; a peer of that name that exists
    /// is taken over only as [`take_peer`] allows, else reported and left alone.
    async fn create_peer(&mut self, object: &BGPPeer) -> Result<(), Abort> {
        let name = object.metadata.name.clone().unwrap_or_default();
        // Right after this hook created the CRDs the API server was measured to answer a
        // create of a new kind's first object slowly (over 1.5 s, envtest on a loaded
        // machine), a server-side apply quickly: then read and apply, as a datastore
        // without conditional creates does.
        let created = if self.crds_created {
            match self.ds.get_peer(&name).await {
                Ok(Some(existing)) => Ok(Created::Exists(existing)),
                Ok(None) => self.ds.apply_peer(object).await.map(Created::New),
                Err(err) => Err(err),
            }
        } else {
            self.ds.create_peer(object).await
        };
        let existing = match created {
            Ok(Created::New(_)) => {
                self.changed(format!("BGPPeer/{name}"));
                return Ok(());
            }
            Ok(Created::Exists(existing)) => existing,
            Err(err) => return self.fail("BGPPeer", err),
        };
        let want = self
            .desired
            .peers
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            .unwrap_or(object);
        match take_peer(self.desired, want, object.clone(), &existing) {
            Ok(Apply {
                object,
                adopted,
                before,
            }) => match self.ds.apply_peer(&object).await {
                Ok(_) if adopted => self.changed(format!("BGPPeer/{name} (adopted)")),
                Ok(after) => self.applied(
                    format!("BGPPeer/{name}"),
                    &before,
                    after.metadata.resource_version,
                ),
                Err(err) => self.fail("BGPPeer", err)?,
            },
            Err(cause) => self.out.push(cause),
        }
        Ok(())
    }

    async fn node_settings(&mut self, plan: &NodePlan) -> Result<(), Abort> {
        let node = self.desired.node.node_name.clone();
        let mut after = plan.current.clone();
        if let Some(settings) = &plan.apply {
            match self.ds.apply_node_bgp(&node, settings).await {
                Ok(result) => after = result,
                Err(DatastoreError::NotFound { .. }) => {
                    self.node_missing = true;
                    self.out.push(waiting_for_node(&node));
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
        let leftover = leftover_node_keys(&plan.want, &after);
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
        if after != plan.current {
            self.changed(format!("Node/{node}"));
        }
        Ok(())
    }

    /// Disable, then (once no IPAM block in its range is allocated) delete, every stale
    /// pool.
    async fn remove_stale_pools(&mut self, plan: &Plan) -> Result<(), Abort> {
        let mut disabled_now = false;
        for (pool, _) in &plan.stale_pools {
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
        let drained = super::plan::drained(&plan.stale_pools, &blocks, &plan.desired_cidrs);
        for ((pool, cidr), drained) in plan.stale_pools.iter().zip(drained) {
            let name = pool.metadata.name.clone().unwrap_or_default();
            if !drained {
                self.out.push(Cause::Draining {
                    pool: name,
                    cidr: cidr.to_string(),
                });
                continue;
            }
            match self.ds.delete_pool(pool).await {
                Ok(()) => self.out.deleted.push(format!("IPPool/{name}")),
                Err(err) => self.fail("IPPool", err)?,
            }
        }
        Ok(())
    }
}
