//! The reconcile's [`Cluster`] seam on the Kubernetes API: a synchronous converge for one
//! hook (its own single-threaded Tokio runtime, a client built lazily from the kubeconfig).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::checks::Reads;
use super::converge::{ConvergeOptions, check_node_agent, converge_detailed};
use super::kube::connect_with;
use super::kubeconfig::kubeconfig_path;
use super::retry::RetrySettings;
use super::workloads::KubeWorkloads;
use super::{DatastoreError, KubeDatastore};
use crate::datastore::{CalicoDatastore, DsResult};
use crate::problems::{Cause, Outcome};
use crate::render::Desired;

/// The seam where the cluster is changed, as the reconcile sees it: [`KubeCluster`] in the
/// binary, doubles in tests. An implementation builds its client lazily (the kubeconfig may
/// not exist before the principal publishes `kubeconfig-hash`) and reports every failure in
/// the [`Outcome`] (transient: `waiting`; denied or refused: `blocked`), never as a panic.
pub trait Cluster {
    /// Make the cluster match `desired`: apply what it holds, prune what this unit owns and no
    /// longer wants. `stop`/`remove` pass the stopping `Desired` (everything pruned).
    fn converge(&self, desired: &Desired) -> Outcome;

    /// `stop`/`remove`: converge to the stopping `Desired` ([`crate::render::stopping`]).
    /// Defaults to [`Cluster::converge`]; override to skip readiness checks that make no
    /// sense for a unit going away.
    fn stop(&self, desired: &Desired) -> Outcome {
        self.converge(desired)
    }

    /// Converge with Calico's data in etcd (etcd mode): the same as [`Cluster::converge`],
    /// the Calico objects written to the etcd `etcd` names, the workloads to Kubernetes.
    /// Defaults to `blocked`: a seam without an etcd datastore (test doubles).
    fn converge_etcd(&self, desired: &Desired, etcd: &crate::etcd::EtcdConfig) -> Outcome {
        let _ = (desired, etcd);
        Outcome::of(Cause::NoEtcdSeam)
    }

    /// `stop`/`remove` in etcd mode. Defaults to [`Cluster::converge_etcd`].
    fn stop_etcd(&self, desired: &Desired, etcd: &crate::etcd::EtcdConfig) -> Outcome {
        self.converge_etcd(desired, etcd)
    }

    /// What the next converges read ([`super::checks`]): everything unless set. Defaults to
    /// ignoring it (doubles read what they read).
    fn set_reads(&self, reads: &Reads) {
        let _ = reads;
    }

    /// The cluster's Kubernetes version (`major`, `minor` of the API server's `/version`), when
    /// the last converge read it. Defaults to `None` (no check).
    fn server_version(&self) -> Option<(u32, u32)> {
        None
    }

    /// How many Nodes the cluster has (the leader asks, for Typha, unless `typha=false`):
    /// `Err` with what to report when the API could not tell. Defaults to `None`: this seam
    /// does not count (doubles), which renders as no nodes
    /// ([`crate::render::workloads::typha::decide`]).
    fn node_count(&self) -> Option<Result<u64, Outcome>> {
        None
    }

    /// What calico-node reports in `node`'s `CalicoNodeStatus` (the `bgp-status` action):
    /// `None` when this seam cannot ask, `Ok(None)` when there is no report yet.
    #[allow(clippy::type_complexity)]
    fn node_status_report(
        &self,
        _node: &str,
    ) -> Option<Result<Option<Vec<crate::nodestatus::Reported>>, String>> {
        None
    }

    /// The same in etcd mode: the report in etcd. Defaults to `None`.
    #[allow(clippy::type_complexity)]
    fn node_status_report_etcd(
        &self,
        _node: &str,
        _etcd: &crate::etcd::EtcdConfig,
    ) -> Option<Result<Option<Vec<crate::nodestatus::Reported>>, String>> {
        None
    }
}

/// Converge through the Kubernetes API, one hook at a time.
#[derive(Clone, Debug)]
pub struct KubeCluster {
    /// The kubeconfig (read at each converge: the principal may rewrite it).
    pub kubeconfig: PathBuf,
    pub retry: RetrySettings,
    pub options: ConvergeOptions,
    /// Also report this node's calico-node readiness (`waiting` until Running and Ready).
    pub check_node_agent: bool,
    /// The API server's Kubernetes version, as the leader's last converge read it.
    pub server_version: Arc<Mutex<Option<(u32, u32)>>>,
    /// What converges read ([`Cluster::set_reads`]; everything by default).
    pub reads: Arc<Mutex<Reads>>,
}

impl KubeCluster {
    /// From the environment: `KUBECONFIG` (else `/root/.kube/config`), the retry settings
    /// ([`RetrySettings::from_env`]) and converge options ([`ConvergeOptions::from_env`]).
    /// calico-node readiness is checked on every converge; [`Cluster::stop`] skips it.
    pub fn from_env() -> Self {
        KubeCluster {
            kubeconfig: kubeconfig_path(),
            retry: RetrySettings::from_env(),
            options: ConvergeOptions::from_env(),
            check_node_agent: true,
            server_version: Arc::default(),
            reads: Arc::default(),
        }
    }

    /// The same without the calico-node readiness check (for `stop`/`remove`).
    pub fn without_node_agent_check(mut self) -> Self {
        self.check_node_agent = false;
        self
    }

    /// Converge `desired` and, if asked and the API answered, fold in calico-node's state.
    pub(crate) async fn converge_async(&self, desired: &Desired) -> Outcome {
        let ds: KubeDatastore = match connect_with(&self.kubeconfig, self.retry.clone()).await {
            Ok(ds) => ds,
            Err(err) => return Outcome::of(kubeconfig_cause(&err)),
        };
        let mut options = self.options.clone();
        options.reads = self.reads.lock().map(|r| r.clone()).unwrap_or_default();
        let mut converged = converge_detailed(desired, &ds, &ds, &options).await;
        // A kind not served, on a hook that left the CRDs unchecked: check (and create) them
        // now, with every read, rather than wait for their turn.
        if converged.kind_missing && !options.reads.crds && desired.workloads.is_some() {
            tracing::info!("a Calico kind is not served: checking the CRDs now");
            options.reads = Reads::all();
            converged = converge_detailed(desired, &ds, &ds, &options).await;
        }
        let mut outcome = converged.outcome;
        // The leader renders the workloads: it checks them against the cluster's Kubernetes
        // (`/version`, one GET; a failure only leaves the check out).
        if desired.workloads.is_some()
            && options.reads.version
            && let Ok(Some(v)) = ds.kubernetes_version().await
            && let Ok(mut slot) = self.server_version.lock()
        {
            *slot = Some(v);
        }
        let api_failed = converged.unreachable;
        // No calico-node pod can run on a node that has not registered: one cause is enough.
        let node_missing = converged.node_missing;
        // The leader saw calico-node's DaemonSet settled with every pod ready: no list of
        // this node's pods is needed.
        if self.check_node_agent && !api_failed && !node_missing && !converged.calico_node_ready {
            outcome.merge(match &options.reads.pod_verdict {
                Some(verdict) => node_agent_verdict(&desired.node.node_name, verdict),
                None => check_node_agent(&ds, &desired.node.node_name).await,
            });
        }
        if !api_failed {
            match &desired.node_status {
                Some(want) if !node_missing => {
                    outcome.bgp_sessions = keep_node_status(&ds, want).await;
                }
                Some(_) => {}
                // Stopping: the unit's own report goes with it.
                None if !self.check_node_agent => {
                    remove_node_status(&ds, &desired.owner, &desired.node.node_name).await;
                }
                None => {}
            }
        }
        outcome
    }

    /// etcd mode: Calico's data to etcd (`etcd`, the relation's endpoints and credentials),
    /// the workloads to Kubernetes, then calico-node's state as on the Kubernetes datastore.
    pub(crate) async fn converge_etcd_async(
        &self,
        desired: &Desired,
        etcd: &crate::etcd::EtcdConfig,
    ) -> Outcome {
        let ds: KubeDatastore = match connect_with(&self.kubeconfig, self.retry.clone()).await {
            Ok(ds) => ds,
            Err(err) => return Outcome::of(kubeconfig_cause(&err)),
        };
        let store = match crate::etcd::EtcdClient::new(etcd, crate::etcd::EtcdSettings::from_env())
        {
            Ok(client) => crate::etcd::store::EtcdStore::new(client),
            Err(err) => {
                let cause = match err {
                    crate::etcd::EtcdError::Setup(m) | crate::etcd::EtcdError::Other(m) => m,
                    other => other.to_string(),
                };
                return Outcome::of(Cause::Unusable {
                    datastore: crate::etcd::datastore::NAME.to_string(),
                    cause,
                });
            }
        };
        // The earlier charm's peers of this unit become this unit's (then kept or pruned).
        match store
            .adopt_legacy_peers(&desired.owner, &desired.node.node_name)
            .await
        {
            Ok(adopted) => {
                for name in adopted {
                    tracing::info!("adopted the earlier charm's BGPPeer {name}");
                }
            }
            Err(err) => tracing::warn!("cannot adopt the earlier charm's peers: {err}"),
        }
        let converged = converge_detailed(desired, &store, &ds, &self.options).await;
        let mut outcome = converged.outcome;
        if desired.workloads.is_some()
            && let Ok(Some(v)) = ds.kubernetes_version().await
            && let Ok(mut slot) = self.server_version.lock()
        {
            *slot = Some(v);
        }
        if self.check_node_agent && !converged.unreachable && !converged.calico_node_ready {
            outcome.merge(check_node_agent(&ds, &desired.node.node_name).await);
        }
        // The unit's CalicoNodeStatus lives in etcd, as all of Calico's data does.
        if !converged.unreachable {
            match &desired.node_status {
                Some(want) => outcome.bgp_sessions = keep_node_status(&store, want).await,
                None if !self.check_node_agent => {
                    remove_node_status(&store, &desired.owner, &desired.node.node_name).await;
                }
                None => {}
            }
        }
        outcome
    }

    /// What calico-node reports on `node` now (for the `bgp-status` action): `Ok(None)`
    /// when there is no report (yet).
    pub(crate) async fn read_node_status_async(
        &self,
        node: &str,
    ) -> Result<Option<Vec<crate::nodestatus::Reported>>, String> {
        let ds: KubeDatastore = connect_with(&self.kubeconfig, self.retry.clone())
            .await
            .map_err(|e| e.to_string())?;
        let live = ds.get_node_status(node).await.map_err(|e| e.to_string())?;
        Ok(live.and_then(|l| crate::nodestatus::reported(l.status.as_ref())))
    }
}

/// calico-node's state on `node` as a live agent reports it (`ready`, `missing` or the
/// reason it is not ready), worded as [`check_node_agent`] words it.
pub fn node_agent_verdict(node: &str, verdict: &str) -> Outcome {
    let mut out = Outcome::default();
    match verdict {
        "ready" => {}
        "missing" => out.push(super::readiness::waiting_message(
            node,
            "no calico-node pod",
        )),
        reason => out.push(super::readiness::waiting_message(node, reason)),
    }
    out
}

/// A kubeconfig not written yet heals by itself ([`Cause::KubeconfigPending`]); one that
/// cannot work as written (syntax, plain HTTP, proxy-url, a bad token, a failing plugin)
/// needs the operator ([`Cause::KubeconfigUnusable`]).
fn kubeconfig_cause(err: &super::ApplyError) -> Cause {
    if err.is_transient() {
        Cause::KubeconfigPending(err.to_string())
    } else {
        Cause::KubeconfigUnusable(err.to_string())
    }
}

/// Where a unit keeps its node's `CalicoNodeStatus`: the Kubernetes API (the Kubernetes
/// datastore's CRD) or etcd (`/calico/resources/v3/projectcalico.org/caliconodestatuses/
/// <name>`). The same keeping, comparing and removal run on either; the charm never writes
/// `status` (calico-node's).
pub(crate) trait NodeStatusStore {
    fn get_node_status(
        &self,
        name: &str,
    ) -> impl Future<Output = DsResult<Option<crate::calico::CalicoNodeStatus>>>;
    fn apply_node_status(
        &self,
        want: &crate::calico::CalicoNodeStatus,
    ) -> impl Future<Output = DsResult<crate::calico::CalicoNodeStatus>>;
    fn delete_node_status(
        &self,
        live: &crate::calico::CalicoNodeStatus,
    ) -> impl Future<Output = DsResult<()>>;
}

impl NodeStatusStore for KubeDatastore {
    async fn get_node_status(
        &self,
        name: &str,
    ) -> DsResult<Option<crate::calico::CalicoNodeStatus>> {
        KubeDatastore::get_node_status(self, name).await
    }
    async fn apply_node_status(
        &self,
        want: &crate::calico::CalicoNodeStatus,
    ) -> DsResult<crate::calico::CalicoNodeStatus> {
        KubeDatastore::apply_node_status(self, want).await
    }
    async fn delete_node_status(&self, live: &crate::calico::CalicoNodeStatus) -> DsResult<()> {
        KubeDatastore::delete_node_status(self, live).await
    }
}

impl NodeStatusStore for crate::etcd::store::EtcdStore {
    async fn get_node_status(
        &self,
        name: &str,
    ) -> DsResult<Option<crate::calico::CalicoNodeStatus>> {
        crate::etcd::store::EtcdStore::get_node_status(self, name)
            .await
            .map_err(crate::etcd::datastore::classify)
    }
    async fn apply_node_status(
        &self,
        want: &crate::calico::CalicoNodeStatus,
    ) -> DsResult<crate::calico::CalicoNodeStatus> {
        crate::etcd::store::EtcdStore::apply_node_status(self, want)
            .await
            .map_err(crate::etcd::datastore::classify)
    }
    async fn delete_node_status(&self, live: &crate::calico::CalicoNodeStatus) -> DsResult<()> {
        match crate::etcd::store::EtcdStore::delete_node_status(self, live)
            .await
            .map_err(crate::etcd::datastore::classify)?
        {
            true => Ok(()),
            false => Err(DatastoreError::Conflict {
                object: format!(
                    "CalicoNodeStatus/{}",
                    live.metadata.name.as_deref().unwrap_or_default()
                ),
                reason: "it changed since it was read; left for a later hook".into(),
            }),
        }
    }
}

/// Keep this node's `CalicoNodeStatus` as the charm wants it (one GET; a write only when
/// it is absent or differs) and return calico-node's report in it. A failure is logged and
/// leaves the status without BGP session state: the rest of the hook has already reported
/// what the API said.
async fn keep_node_status(
    ds: &impl NodeStatusStore,
    want: &crate::calico::CalicoNodeStatus,
) -> Option<Vec<crate::nodestatus::Reported>> {
    let name = want.metadata.name.clone().unwrap_or_default();
    let live = match ds.get_node_status(&name).await {
        Ok(live) => live,
        Err(err) => {
            tracing::warn!("BGP session state unavailable: {err}");
            return None;
        }
    };
    match live {
        Some(live) if crate::nodestatus::matches(&live, want) => {
            let report = crate::nodestatus::reported(live.status.as_ref());
            if report.is_none() {
                tracing::info!("BGP session state: calico-node has not reported on {name} yet");
            }
            report
        }
        _ => match ds.apply_node_status(want).await {
            Ok(applied) => {
                tracing::info!("applied CalicoNodeStatus/{name}");
                crate::nodestatus::reported(applied.status.as_ref())
            }
            Err(err) => {
                tracing::warn!("BGP session state unavailable: {err}");
                None
            }
        },
    }
}

/// `stop`/`remove`: delete this unit's `CalicoNodeStatus` if it owns it (a foreign object of
/// the same name is left alone). Failures are logged: a removal must not wedge.
async fn remove_node_status(ds: &impl NodeStatusStore, owner: &str, node: &str) {
    match ds.get_node_status(node).await {
        Ok(Some(live)) if crate::nodestatus::owned_by(&live, owner) => {
            match ds.delete_node_status(&live).await {
                Ok(()) => tracing::info!("deleted CalicoNodeStatus/{node}"),
                Err(err) => tracing::warn!("CalicoNodeStatus/{node} not deleted: {err}"),
            }
        }
        Ok(_) => {}
        Err(DatastoreError::KindMissing { .. }) => {}
        Err(err) => tracing::warn!("CalicoNodeStatus/{node} not checked: {err}"),
    }
}

impl Cluster for KubeCluster {
    fn converge(&self, desired: &Desired) -> Outcome {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.converge_async(desired)),
            Err(err) => Outcome::of(Cause::ClientStart(err.to_string())),
        }
    }

    /// `stop`/`remove`: the same converge (of the stopping `Desired`) without waiting for
    /// calico-node, since the unit is going away.
    fn stop(&self, desired: &Desired) -> Outcome {
        self.clone().without_node_agent_check().converge(desired)
    }

    fn converge_etcd(&self, desired: &Desired, etcd: &crate::etcd::EtcdConfig) -> Outcome {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.converge_etcd_async(desired, etcd)),
            Err(err) => Outcome::of(Cause::EtcdClientStart(err.to_string())),
        }
    }

    /// `stop`/`remove` in etcd mode: the same without waiting for calico-node.
    fn stop_etcd(&self, desired: &Desired, etcd: &crate::etcd::EtcdConfig) -> Outcome {
        self.clone()
            .without_node_agent_check()
            .converge_etcd(desired, etcd)
    }

    /// One metadata list of Nodes ([`KubeDatastore::count_nodes`]); `None` when no client
    /// can be built (the converge then reports why), `Err` with the outcome (`waiting` or
    /// `blocked`, as a converge words it) when the API did not answer.
    fn node_count(&self) -> Option<Result<u64, Outcome>> {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(err) => {
                return Some(Err(Outcome::of(Cause::ClientStart(err.to_string()))));
            }
        };
        runtime.block_on(async {
            // Without a client the converge cannot apply anything either, and says why
            // (waiting for the kubeconfig, or an unusable one): no count, no guess.
            let ds: KubeDatastore = connect_with(&self.kubeconfig, self.retry.clone())
                .await
                .ok()?;
            Some(
                ds.count_nodes()
                    .await
                    .map_err(|e| super::converge::failed_read(ds.name(), "Node", e)),
            )
        })
    }

    fn set_reads(&self, reads: &Reads) {
        if let Ok(mut slot) = self.reads.lock() {
            *slot = reads.clone();
        }
    }

    /// What the leader's last converge read from `/version`.
    fn server_version(&self) -> Option<(u32, u32)> {
        self.server_version.lock().ok().and_then(|v| *v)
    }

    /// One read of `/calico/resources/v3/projectcalico.org/caliconodestatuses/<node>`.
    fn node_status_report_etcd(
        &self,
        node: &str,
        etcd: &crate::etcd::EtcdConfig,
    ) -> Option<Result<Option<Vec<crate::nodestatus::Reported>>, String>> {
        let read = async {
            let client = crate::etcd::EtcdClient::new(etcd, crate::etcd::EtcdSettings::from_env())
                .map_err(|e| e.to_string())?;
            let store = crate::etcd::store::EtcdStore::new(client);
            let live = store
                .get_node_status(node)
                .await
                .map_err(|e| e.to_string())?;
            Ok(live.and_then(|l| crate::nodestatus::reported(l.status.as_ref())))
        };
        Some(
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(read),
                Err(err) => Err(format!("cannot start the etcd client: {err}")),
            },
        )
    }

    /// One GET of `CalicoNodeStatus/<node>`.
    fn node_status_report(
        &self,
        node: &str,
    ) -> Option<Result<Option<Vec<crate::nodestatus::Reported>>, String>> {
        Some(
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(self.read_node_status_async(node)),
                Err(err) => Err(format!("cannot start the Kubernetes client: {err}")),
            },
        )
    }
}
