//! The Kubernetes API the tests talk to: the real control plane of [`super::envtest`] behind
//! a small fault-injecting HTTPS proxy.
//!
//! ```ignore
//! let Some(server) = envtest!(Options::default()) else { return };  // upstream Calico CRDs
//! server.write_kubeconfig(&dir.path().join("kubeconfig"))?;  // the proxy's URL, CA, token
//! server.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))?;
//! // ... run the charm with KUBECONFIG pointing at the file ...
//! let pools = server.list("crd.projectcalico.org/v1", "IPPool", None);
//! server.fail_next(3, 503);                                  // fault injection
//! ```
//!
//! Every semantic (validation, server-side apply, managed fields, selectors, RBAC, CRD
//! registration, admission) is the real kube-apiserver's. The proxy adds only what a real
//! server will not do on request: answer N requests with a status (429 with `Retry-After`,
//! 5xx), delay them, drop their connection before or after they are executed, add latency,
//! stop and restart on the same port, stop after N requests; and it logs every request it
//! forwards ([`LogEntry`]). The real server's own audit log is at
//! [`super::envtest::ControlPlane::audit_events`].
//!
//! A small pool of control planes serves the test binary (two by default, see
//! [`envtest::pool_size`]). A [`TestApiServer`] holds one of them for its lifetime, so at most
//! one test at a time uses each, and starting one first resets that cluster to a fresh state: no Calico objects, Nodes, calico pods or
//! charm-managed workloads, and the Calico CRDs as [`Options`] asks (exactly the upstream
//! ones from `../shared/calico-crds`, or none). Objects are further isolated by name and label.
//!
//! The direct accessors ([`TestApiServer::insert`], `get`, `list`, `remove`) go straight to
//! the real server as the cluster admin (not through the proxy, not logged).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::crd_schema;
use super::envtest::{self, ControlPlane};

/// Skip the calling test (returning `None`) when `CALICO_CHARM_SKIP_ENVTEST=1` and there is
/// no control plane; otherwise a fresh [`TestApiServer`]. Without the binaries and without
/// the variable, the test fails with one line saying how to provide them.
#[macro_export]
macro_rules! envtest {
    ($options:expr) => {
        if $crate::support::envtest::skip(module_path!()) {
            None
        } else {
            Some($crate::support::apiserver::TestApiServer::start($options))
        }
    };
}

/// How to start the server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Install the upstream Calico CRDs (so their kinds are served from the start).
    pub calico_crds: bool,
    /// Where the upstream CRDs are read (at run time): `../shared/calico-crds`.
    pub crd_dir: PathBuf,
    /// Run alone: no other test of the binary holds a cluster of the pool meanwhile (for
    /// tests that load the machine with many hooks at once, beside which another test's
    /// short deadlines would not hold).
    pub alone: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calico_crds: true,
            crd_dir: crd_schema::default_crd_dir(),
            alone: false,
        }
    }
}

impl Options {
    /// A cluster without any Calico CRD (their kinds answer 404 until installed).
    pub fn without_crds() -> Self {
        Options {
            calico_crds: false,
            ..Options::default()
        }
    }

    /// The default cluster, held while no other test of the binary holds one.
    pub fn alone() -> Self {
        Options {
            alone: true,
            ..Options::default()
        }
    }
}

/// What the charm's token may do (the proxy forwards it as a real identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A cluster admin (`system:masters`), as the principal's kubeconfig is.
    Full,
    /// Authenticated, but RBAC grants nothing: every request gets the real server's 403.
    Deny,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
    /// The user the token belongs to (empty for a token the tests did not hand out).
    pub user: String,
    pub user_agent: String,
    /// The client's address: requests of one client process share it while its connection
    /// lives (benches group requests by it).
    pub peer: Option<SocketAddr>,
    pub content_type: String,
    /// `Warning` headers the real server sent (e.g. unknown fields pruned).
    pub warnings: Vec<String>,
    /// Time from receipt to answer (including injected latency).
    pub duration: Duration,
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Answer with this status and a `Status` body; 429 and 503 may carry `Retry-After`.
    Status { code: u16, retry_after: Option<u32> },
    /// Close the connection without answering (the request is not forwarded).
    Drop,
    /// Forward the request, then close the connection without answering: the write
    /// happened but the client never learns it (a hook killed mid-request).
    DropResponse,
    /// Wait, then forward the request.
    Delay(Duration),
}

/// An injected fault rule; the first rule matching a request applies.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Only requests whose path contains this.
    pub path_contains: Option<String>,
    /// Only requests with this method (`GET`, `PATCH`, ...).
    pub method: Option<String>,
    /// How many more requests it applies to; `None`: until cleared.
    pub remaining: Option<u64>,
    pub action: FaultAction,
}

/// The Kubernetes minor the proxy's `/version` claims unless a test sets another
/// ([`TestApiServer::set_kubernetes_minor`]): 1.13, one the charm's default Calico (v3.6) is
/// tested on, so that tests of other things see no support warning
/// (`calico_charm::config::support`). Every other request is the real server's.
pub const DEFAULT_KUBERNETES_MINOR: u64 = 13;

const ACCESS_FULL: u8 = 0;
const ACCESS_DENY: u8 = 1;

struct Shared {
    plane: &'static ControlPlane,
    faults: Mutex<Vec<Fault>>,
    has_faults: AtomicBool,
    latency_us: AtomicU64,
    /// The Kubernetes minor `GET /version` answers through the proxy (`1.<minor>`); 0: the
    /// real server's own answer.
    kubernetes_minor: AtomicU64,
    log: Mutex<Vec<LogEntry>>,
    access: AtomicU8,
    running: AtomicBool,
    stop_after: Mutex<Option<u64>>,
    shutdown: Mutex<Option<watch::Sender<bool>>>,
    connector: TlsConnector,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn shutdown_now(&self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(true);
        }
    }

    fn log(&self, e: LogEntry) {
        lock(&self.log).push(e);
    }

    fn take_fault(&self, method: &str, path: &str) -> Option<FaultAction> {
        if !self.has_faults.load(Ordering::Relaxed) {
            return None;
        }
        let mut faults = lock(&self.faults);
        let idx = faults.iter().position(|f| {
            f.remaining != Some(0)
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && f.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let f = faults.get_mut(idx)?;
        let action = f.action.clone();
        if let Some(n) = f.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                faults.remove(idx);
            }
        }
        self.has_faults.store(!faults.is_empty(), Ordering::Relaxed);
        Some(action)
    }

    /// The user a bearer token belongs to, among the tokens the control plane knows.
    fn user_of(&self, token: &str) -> String {
        envtest::USERS
            .iter()
            .find(|(_, name, _)| self.plane.token(name) == token)
            .map(|(user, _, _)| user.to_string())
            .unwrap_or_default()
    }
}

/// The tokio runtime of the proxies and the admin client (one per test binary).
fn runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("test-apiserver-worker")
                    .enable_all()
                    .build()
                    .expect("test runtime");
                let _ = tx.send(rt.handle().clone());
                rt.block_on(std::future::pending::<()>());
            })
            .expect("runtime thread");
        rx.recv().expect("runtime handle")
    })
}

/// Run a future on the shared runtime and wait for it (callable from sync or async code).
pub fn block<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("test runtime task")
}

/// The binary's cluster locks: each cluster of the pool ([`envtest::pool_size`]) serves the
/// [`TestApiServer`]s of one test (thread) at a time. A test that starts a second one shares
/// the cluster of its first (no reset). A test takes the lowest free cluster (started on first
/// use), so a binary whose tests never overlap starts one.
static CLUSTERS: Mutex<Vec<Option<(std::thread::ThreadId, usize)>>> = Mutex::new(Vec::new());
static CLUSTER_FREE: std::sync::Condvar = std::sync::Condvar::new();

/// This thread's hold on one cluster of the pool; `first` when it was not held before.
struct ClusterHold {
    slot: usize,
    first: bool,
    owner: std::thread::ThreadId,
}

impl ClusterHold {
    /// Hold a cluster of the pool; `alone`: and every other one too (slot 0 is the test's).
    fn take(alone: bool) -> ClusterHold {
        let me = std::thread::current().id();
        let mut held = lock(&CLUSTERS);
        if held.is_empty() {
            held.resize(envtest::pool_size(), None);
        }
        loop {
            if let Some(slot) = held
                .iter()
                .position(|h| matches!(h, Some((o, _)) if *o == me))
            {
                for (o, n) in held.iter_mut().flatten() {
                    if *o == me {
                        *n += 1;
                    }
                }
                return ClusterHold {
                    slot,
                    first: false,
                    owner: me,
                };
            }
            if alone && held.iter().all(Option::is_none) {
                held.iter_mut().for_each(|h| *h = Some((me, 1)));
                return ClusterHold {
                    slot: 0,
                    first: true,
                    owner: me,
                };
            }
            if let Some(slot) = held.iter().position(Option::is_none).filter(|_| !alone) {
                held[slot] = Some((me, 1));
                return ClusterHold {
                    slot,
                    first: true,
                    owner: me,
                };
            }
            held = CLUSTER_FREE.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for ClusterHold {
    fn drop(&mut self) {
        let me = self.owner;
        let mut held = lock(&CLUSTERS);
        for h in held.iter_mut() {
            if let Some((o, n)) = h.as_mut()
                && *o == me
            {
                *n -= 1;
                if *n == 0 {
                    *h = None;
                }
            }
        }
        CLUSTER_FREE.notify_all();
    }
}

/// The proxy in front of the real API server, holding the cluster for one test.
pub struct TestApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    crd_dir: PathBuf,
    admin: kube::Client,
    // Last: released after the proxy has stopped.
    _cluster: ClusterHold,
}

impl TestApiServer {
    /// Take the cluster, reset it as `options` asks and start a proxy in front of it.
    /// Panics if it cannot (a test setup failure); see the [`envtest!`] macro for skipping.
    pub fn start(options: Options) -> TestApiServer {
        match Self::try_start(options) {
            Ok(s) => s,
            Err(e) => panic!("test API server failed to start: {e}"),
        }
    }

    /// The same, or say why it cannot.
    pub fn try_start(options: Options) -> Result<TestApiServer, String> {
        let guard = ClusterHold::take(options.alone);
        let plane = ControlPlane::pooled(guard.slot);
        let admin = block(async move { plane.kube_client("admin").await })?;
        if guard.first {
            reset(&admin, &options)?;
        }

        let (cert, key) = plane.serving_cert("fault-proxy")?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = TlsConnector::from(Arc::new(envtest::client_tls(&plane.ca_pem)?));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let shared = Arc::new(Shared {
            plane,
            faults: Mutex::new(Vec::new()),
            has_faults: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            kubernetes_minor: AtomicU64::new(DEFAULT_KUBERNETES_MINOR),
            log: Mutex::new(Vec::new()),
            access: AtomicU8::new(ACCESS_FULL),
            running: AtomicBool::new(false),
            stop_after: Mutex::new(None),
            shutdown: Mutex::new(None),
            connector,
        });
        let server = TestApiServer {
            shared,
            addr,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            crd_dir: options.crd_dir.clone(),
            admin,
            _cluster: guard,
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let (tx, rx) = watch::channel(false);
        *lock(&self.shared.shutdown) = Some(tx);
        self.shared.running.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        let acceptor = self.acceptor.clone();
        runtime().spawn(accept_loop(listener, shared, acceptor, rx));
    }

    /// The control plane behind the proxy.
    pub fn plane(&self) -> &'static ControlPlane {
        self.shared.plane
    }

    // ----- connection details -----

    /// `https://127.0.0.1:<port>` of the proxy.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the proxy's and the API server's certificates.
    pub fn ca_pem(&self) -> &str {
        &self.shared.plane.ca_pem
    }

    /// The charm's bearer token (a cluster admin).
    pub fn token(&self) -> String {
        self.shared.plane.token("charm")
    }

    /// A kubeconfig (YAML) for the proxy with the given bearer token.
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        self.shared.plane.kubeconfig_yaml(&self.url(), token)
    }

    /// A kubeconfig (YAML) for the proxy with the charm's token.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_with_token(&self.token())
    }

    /// Write a kubeconfig (CA data, the proxy's URL, the charm's token) to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Write a kubeconfig using another token (an unknown one gets the real server's 401).
    pub fn write_kubeconfig_with_token(&self, path: &Path, token: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml_with_token(token))
    }

    /// A kube client through the proxy (faults apply, requests are logged), as the charm.
    pub async fn kube_client(&self) -> Result<kube::Client, String> {
        let config = self.kube_config_with_token(&self.token()).await?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// The same without kube's own retries of 429/503/504: every fault reaches the caller.
    pub async fn kube_client_without_retry(&self) -> Result<kube::Client, String> {
        let mut config = self.kube_config_with_token(&self.token()).await?;
        config.default_retry = false;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// The kube config (from a kubeconfig for the proxy) for a token.
    pub async fn kube_config_with_token(&self, token: &str) -> Result<kube::Config, String> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml_with_token(token))
            .map_err(|e| e.to_string())?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())
    }

    /// The cluster admin's client, straight to the real server (no proxy).
    pub fn admin_client(&self) -> kube::Client {
        self.admin.clone()
    }

    // ----- identities -----

    /// What the charm's token may do from now on: `Deny` makes the real server refuse it
    /// (403, RBAC grants the identity nothing); `Full` restores it.
    pub fn set_access(&self, access: Access) {
        let v = match access {
            Access::Full => ACCESS_FULL,
            Access::Deny => ACCESS_DENY,
        };
        self.shared.access.store(v, Ordering::SeqCst);
    }

    // ----- direct access as the cluster admin -----

    /// Register `node` (with `annotations`, when given) as a kubelet would, and a Running,
    /// Ready calico-node pod on it that runs `image` (labels as the DaemonSet's, status set
    /// through the status subresource, since nothing else runs here).
    pub fn add_ready_node(&self, node: &str, annotations: Option<Value>, image: &str) {
        let mut metadata = json!({
            "name": node, "labels": {"kubernetes.io/hostname": node},
        });
        if let Some(annotations) = annotations {
            metadata["annotations"] = annotations;
        }
        self.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": metadata}))
            .expect("insert node");
        self.add_calico_node_pod(node, image, true);
    }

    /// A calico-node pod on `node`, Running and Ready or not.
    pub fn add_calico_node_pod(&self, node: &str, image: &str, ready: bool) {
        let flag = if ready { "True" } else { "False" };
        self.insert(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("calico-node-{node}"),
                "namespace": "kube-system",
                "labels": {"k8s-app": "calico-node"},
            },
            "spec": {
                "nodeName": node,
                "serviceAccountName": "default",
                "containers": [{"name": "calico-node", "image": image}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": flag}],
                "containerStatuses": [{
                    "name": "calico-node", "ready": ready, "restartCount": 0,
                    "image": image, "imageID": "", "state": {"running": {}},
                }],
            },
        }))
        .expect("insert calico-node pod");
    }

    /// Create an object as the admin, or replace it if it exists; an object's `status` is
    /// then written through the status subresource (Pods, Nodes, custom resources with one).
    /// A CRD is waited for until it is Established and its kind is served.
    pub fn insert<T: Serialize>(&self, obj: T) -> Result<Value, String> {
        let obj = serde_json::to_value(obj).map_err(|e| e.to_string())?;
        let admin = self.admin.clone();
        block(async move { insert(&admin, obj).await })
    }

    /// An object by apiVersion, kind, namespace (`None` for cluster-scoped) and name.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let api = self.api(api_version, kind, ns)?;
        let name = name.to_string();
        block(async move { api.get_opt(&name).await.ok().flatten() })
            .and_then(|o| serde_json::to_value(o).ok())
    }

    /// Objects of a kind, in one namespace (`Some`) or all.
    pub fn list(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        let Some(api) = self.api(api_version, kind, ns) else {
            return Vec::new();
        };
        let (api_version, kind) = (api_version.to_string(), kind.to_string());
        block(async move { api.list(&ListParams::default()).await.ok() })
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .map(|mut v| {
                        // Items of a list carry no apiVersion/kind on the wire.
                        v["apiVersion"] = json!(api_version);
                        v["kind"] = json!(kind);
                        v
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Delete an object (at once: no grace period); the object as it was. Deleting a CRD
    /// waits until its kind is no longer served.
    pub fn remove(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let before = self.get(api_version, kind, ns, name)?;
        let api = self.api(api_version, kind, ns)?;
        let n = name.to_string();
        block(async move {
            api.delete(&n, &DeleteParams::default().grace_period(0))
                .await
        })
        .ok()?;
        if kind == "CustomResourceDefinition" {
            let admin = self.admin.clone();
            let n = name.to_string();
            let _ = block(async move { wait_crd_gone(&admin, &n).await });
        }
        Some(before)
    }

    /// Make `GET /version` through the proxy answer Kubernetes `1.<minor>`; 0 passes the
    /// real server's answer through.
    pub fn set_kubernetes_minor(&self, minor: u32) {
        self.shared
            .kubernetes_minor
            .store(u64::from(minor), Ordering::SeqCst);
    }

    /// A typed object (any kube/k8s-openapi resource type).
    pub fn get_as<K>(&self, ns: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let v = self.get(&K::api_version(&()), &K::kind(&()), ns, name)?;
        serde_json::from_value(v).ok()
    }

    /// Typed objects of a kind (objects that do not deserialize are skipped).
    pub fn list_as<K>(&self, ns: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        self.list(&K::api_version(&()), &K::kind(&()), ns)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }

    /// Install the upstream Calico CRDs now (as if an operator applied them).
    pub fn install_calico_crds(&self) -> Result<(), String> {
        let admin = self.admin.clone();
        let dir = self.crd_dir.clone();
        block(async move { install_upstream(&admin, &dir).await })
    }

    /// Remove every Calico CRD (and so their objects).
    pub fn remove_calico_crds(&self) -> Result<(), String> {
        let admin = self.admin.clone();
        block(async move { remove_calico_crds(&admin, |_| true).await })
    }

    /// A digest of the resourceVersion of every object the charm could write (Nodes, every
    /// Calico kind, CRDs, kube-system's workloads, ConfigMaps, Secrets and ServiceAccounts,
    /// RBAC): it changes on any write to them, creation and deletion included. (The cluster's
    /// own revision moves by itself: the API server renews its leases.)
    pub fn resource_version(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut kinds: Vec<(String, String, Option<&str>)> = [
            ("v1", "Node", None),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition", None),
            ("apps/v1", "DaemonSet", Some("kube-system")),
            ("apps/v1", "Deployment", Some("kube-system")),
            ("v1", "ConfigMap", Some("kube-system")),
            ("v1", "Secret", Some("kube-system")),
            ("v1", "ServiceAccount", Some("kube-system")),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", None),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None),
        ]
        .iter()
        .map(|(a, k, n)| (a.to_string(), k.to_string(), *n))
        .collect();
        for crd in self.list("apiextensions.k8s.io/v1", "CustomResourceDefinition", None) {
            let group = crd["spec"]["group"].as_str().unwrap_or_default();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            let version = crd["spec"]["versions"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["served"] == true))
                .and_then(|v| v["name"].as_str())
                .unwrap_or_default();
            kinds.push((format!("{group}/{version}"), kind.to_string(), None));
        }
        let mut seen: Vec<(String, String, String)> = Vec::new();
        for (api_version, kind, ns) in &kinds {
            for o in self.list(api_version, kind, *ns) {
                seen.push((
                    kind.clone(),
                    format!(
                        "{}/{}",
                        o["metadata"]["namespace"].as_str().unwrap_or_default(),
                        o["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ));
            }
        }
        seen.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seen.hash(&mut h);
        h.finish()
    }

    /// An `Api` for a kind, found by discovery.
    fn api(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Option<Api<DynamicObject>> {
        let resource = resource_for(&self.admin, api_version, kind)?;
        Some(match ns {
            Some(ns) => Api::namespaced_with(self.admin.clone(), ns, &resource),
            None => Api::all_with(self.admin.clone(), &resource),
        })
    }

    // ----- request log -----

    /// Every request the proxy saw since start (or the last reset).
    pub fn requests(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).clone()
    }

    /// The same, clearing the log.
    pub fn take_requests(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.shared.log))
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Requests whose method is `method` (any if empty) and path contains `path_contains`.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|e| (method.is_empty() || e.method == method) && e.path.contains(path_contains))
            .count()
    }

    pub fn reset_requests(&self) {
        lock(&self.shared.log).clear();
    }

    // ----- fault injection -----

    pub fn add_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
        self.shared.has_faults.store(true, Ordering::Relaxed);
    }

    fn add_action(&self, n: u64, path_contains: &str, action: FaultAction) {
        self.add_fault(Fault {
            path_contains: Some(path_contains.to_string()).filter(|p| !p.is_empty()),
            method: None,
            remaining: Some(n),
            action,
        });
    }

    /// Answer the next `n` requests with `code` (e.g. 500, 503).
    pub fn fail_next(&self, n: u64, code: u16) {
        self.fail_next_matching(n, "", code);
    }

    pub fn fail_next_matching(&self, n: u64, path_contains: &str, code: u16) {
        let action = FaultAction::Status {
            code,
            retry_after: None,
        };
        self.add_action(n, path_contains, action);
    }

    /// Answer the next `n` requests with 429 Too Many Requests and `Retry-After: secs`.
    pub fn throttle_next(&self, n: u64, retry_after_secs: u32) {
        self.throttle_next_matching(n, "", retry_after_secs);
    }

    pub fn throttle_next_matching(&self, n: u64, path_contains: &str, retry_after_secs: u32) {
        let action = FaultAction::Status {
            code: 429,
            retry_after: Some(retry_after_secs),
        };
        self.add_action(n, path_contains, action);
    }

    /// Close the connection of the next `n` requests without forwarding them.
    pub fn drop_next(&self, n: u64) {
        self.drop_next_matching(n, "");
    }

    pub fn drop_next_matching(&self, n: u64, path_contains: &str) {
        self.add_action(n, path_contains, FaultAction::Drop);
    }

    /// Forward the next `n` matching requests, but close their connection instead of
    /// answering.
    pub fn drop_response_next_matching(&self, n: u64, path_contains: &str) {
        self.add_action(n, path_contains, FaultAction::DropResponse);
    }

    pub fn delay_next_matching(&self, n: u64, path_contains: &str, delay: Duration) {
        self.add_action(n, path_contains, FaultAction::Delay(delay));
    }

    /// Delay every request by `latency` (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Remove every fault rule, the latency and a pending `stop_after`.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
        self.shared.has_faults.store(false, Ordering::Relaxed);
        self.set_latency(Duration::ZERO);
        *lock(&self.shared.stop_after) = None;
    }

    /// Serve `n` more requests, then stop (the next request's connection is dropped, later
    /// connections are refused) until [`TestApiServer::restart`].
    pub fn stop_after(&self, n: u64) {
        *lock(&self.shared.stop_after) = Some(n);
    }

    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Stop: close the listener (connections are refused) and every open connection. The
    /// cluster behind is untouched.
    pub fn stop(&self) {
        self.shared.shutdown_now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Serve again on the same port (after `stop` or `stop_after`). No-op if running.
    pub fn restart(&self) -> Result<(), String> {
        if self.is_running() {
            return Ok(());
        }
        *lock(&self.shared.stop_after) = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot rebind {}: {e}", self.addr));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        self.serve(listener);
        Ok(())
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.shared.shutdown_now();
    }
}

// ---- the admin's operations ------------------------------------------------------------------

/// The `ApiResource` of a kind, by discovery (cached; retried briefly for a CRD just
/// registered).
fn resource_for(client: &kube::Client, api_version: &str, kind: &str) -> Option<ApiResource> {
    static CACHE: Mutex<BTreeMap<(String, String), ApiResource>> = Mutex::new(BTreeMap::new());
    let key = (api_version.to_string(), kind.to_string());
    if let Some(r) = lock(&CACHE).get(&key) {
        return Some(r.clone());
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let client = client.clone();
    let found = block(async move {
        kube::discovery::pinned_kind(&client, &gvk)
            .await
            .ok()
            .map(|(r, _)| r)
    })?;
    lock(&CACHE).insert(key, found.clone());
    Some(found)
}

/// Whether a kind is namespaced (by discovery).
async fn scope_of(
    client: &kube::Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, bool), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match kube::discovery::pinned_kind(client, gvk).await {
            Ok((r, caps)) => {
                return Ok((r, caps.scope == kube::discovery::Scope::Namespaced));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "{} {} is not served: {e}",
                    gvk.api_version(),
                    gvk.kind
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn insert(admin: &kube::Client, mut obj: Value) -> Result<Value, String> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?
        .to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (resource, namespaced) = scope_of(admin, &gvk).await?;
    let api: Api<DynamicObject> = if namespaced {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        obj["metadata"]["namespace"] = json!(ns);
        Api::namespaced_with(admin.clone(), &ns, &resource)
    } else {
        Api::all_with(admin.clone(), &resource)
    };
    let status = obj.as_object_mut().and_then(|o| o.remove("status"));
    // An object read back from the server may be stored again: the server owns these.
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(key);
        }
    }
    let dynamic: DynamicObject = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    let pp = PostParams {
        field_manager: Some("test-admin".into()),
        ..Default::default()
    };
    let mut live = match api.create(&pp, &dynamic).await {
        Ok(o) => o,
        Err(kube::Error::Api(e)) if e.code == 409 && kind == "Pod" => {
            // A pod's spec cannot be replaced: recreate it.
            api.delete(&name, &DeleteParams::default().grace_period(0))
                .await
                .map_err(|e| format!("delete {kind}/{name}: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match api.create(&pp, &dynamic).await {
                    Ok(o) => break o,
                    Err(kube::Error::Api(e)) if e.code == 409 && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(format!("create {kind}/{name}: {e}")),
                }
            }
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let current = api.get(&name).await.map_err(|e| e.to_string())?;
            let mut replacement = dynamic.clone();
            replacement.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &pp, &replacement)
                .await
                .map_err(|e| format!("replace {kind}/{name}: {e}"))?
        }
        Err(e) => return Err(format!("create {kind}/{name}: {e}")),
    };
    if kind == "CustomResourceDefinition" {
        wait_crd_served(admin, &obj).await?;
    } else if let Some(status) = status.filter(|s| s.as_object().is_some_and(|o| !o.is_empty())) {
        let mut with_status = serde_json::to_value(&live).map_err(|e| e.to_string())?;
        with_status["status"] = status;
        let with_status: DynamicObject =
            serde_json::from_value(with_status).map_err(|e| e.to_string())?;
        live = api
            .replace_status(&name, &pp, &with_status)
            .await
            .map_err(|e| format!("status of {kind}/{name}: {e}"))?;
    }
    let mut v = serde_json::to_value(live).map_err(|e| e.to_string())?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

async fn wait_crd_served(admin: &kube::Client, crd: &Value) -> Result<(), String> {
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let version = versions
        .iter()
        .find(|v| v["served"] == true)
        .and_then(|v| v["name"].as_str())
        .unwrap_or("v1")
        .to_string();
    let gvk = GroupVersionKind::gvk(group, &version, kind);
    scope_of(admin, &gvk).await.map(|_| ())
}

async fn wait_crd_gone(admin: &kube::Client, name: &str) -> Result<(), String> {
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match api.get_opt(name).await {
            Ok(None) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err(format!("CRD {name} still there after 60 s"))
}

/// The label the tests put on the upstream CRDs they install, to tell them from the
/// charm's own (the charm never changes a CRD, so the label survives).
const UPSTREAM_LABEL: &str = "test.calico-charm/upstream";

/// The upstream CRDs of `dir`, as objects (read at run time).
fn upstream_crds(dir: &Path) -> Result<Vec<Value>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("yaml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let crd: Value = serde_yaml::from_str(&text)
            .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
        if crd["kind"] == "CustomResourceDefinition" {
            out.push(crd);
        }
    }
    Ok(out)
}

type Crd =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

async fn calico_crds(admin: &kube::Client) -> Result<Vec<Crd>, String> {
    let api: Api<Crd> = Api::all(admin.clone());
    Ok(api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter(|c| {
            c.spec.group == "crd.projectcalico.org"
                || c.spec.group.ends_with("projectcalico.org")
                || c.spec.group == "policy.networking.k8s.io"
        })
        .collect())
}

async fn remove_calico_crds(
    admin: &kube::Client,
    which: impl Fn(&Crd) -> bool,
) -> Result<(), String> {
    let api: Api<Crd> = Api::all(admin.clone());
    let doomed: Vec<String> = calico_crds(admin)
        .await?
        .into_iter()
        .filter(|c| which(c))
        .filter_map(|c| c.metadata.name)
        .collect();
    for name in &doomed {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    for name in &doomed {
        wait_crd_gone(admin, name).await?;
    }
    Ok(())
}

async fn install_upstream(admin: &kube::Client, dir: &Path) -> Result<(), String> {
    for mut crd in upstream_crds(dir)? {
        crd["metadata"]["labels"][UPSTREAM_LABEL] = json!("true");
        insert(admin, crd).await?;
    }
    Ok(())
}

/// Bring the cluster back to a fresh state (see the module's documentation).
fn reset(admin: &kube::Client, options: &Options) -> Result<(), String> {
    let admin = admin.clone();
    let options = options.clone();
    block(async move { reset_async(&admin, &options).await })
}

async fn reset_async(admin: &kube::Client, options: &Options) -> Result<(), String> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

    // Every object of every Calico kind (the CRDs stay, unless asked below).
    for crd in calico_crds(admin).await? {
        let Some(version) = crd.spec.versions.iter().find(|v| v.served) else {
            continue;
        };
        let gvk = GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural);
        let api: Api<DynamicObject> = Api::all_with(admin.clone(), &resource);
        let _ = api
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await;
    }
    let everything = ListParams::default();
    let charm = ListParams::default().labels("app.kubernetes.io/managed-by=calico-charm");
    let now = DeleteParams::default().grace_period(0);
    let _ = Api::<Node>::all(admin.clone())
        .delete_collection(&now, &everything)
        .await;
    let _ = Api::<Pod>::namespaced(admin.clone(), "kube-system")
        .delete_collection(&now, &everything)
        .await;
    let _ = Api::<DaemonSet>::namespaced(admin.clone(), "kube-system")
        .delete_collection(&now, &everything)
        .await;
    let _ = Api::<Deployment>::namespaced(admin.clone(), "kube-system")
        .delete_collection(&now, &everything)
        .await;
    let _ = Api::<ConfigMap>::namespaced(admin.clone(), "kube-system")
        .delete_collection(&now, &charm)
        .await;
    let _ = Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .delete_collection(&now, &charm)
        .await;
    let _ = Api::<ServiceAccount>::namespaced(admin.clone(), "kube-system")
        .delete_collection(&now, &charm)
        .await;
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete_collection(&now, &charm)
        .await;
    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete_collection(&now, &charm)
        .await;
    let _ = Api::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::namespaced(
        admin.clone(),
        "kube-system",
    )
    .delete_collection(&now, &charm)
    .await;
    // Services have no delete-collection: one by one.
    let services =
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(admin.clone(), "kube-system");
    if let Ok(list) = services.list_metadata(&charm).await {
        for s in list.items {
            if let Some(name) = s.metadata.name {
                let _ = services.delete(&name, &now).await;
            }
        }
    }
    // No controller creates the namespaces' `default` ServiceAccount here; pods need one.
    for ns in ["default", "kube-system"] {
        let _ = insert(
            admin,
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": ns}}),
        )
        .await;
    }

    if options.calico_crds {
        // Every CRD but the upstream ones the tests installed goes (the charm's own, from
        // an earlier test); the upstream ones come (back).
        remove_calico_crds(admin, |c| {
            !c.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(UPSTREAM_LABEL))
        })
        .await?;
        let present: Vec<String> = calico_crds(admin)
            .await?
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        for mut crd in upstream_crds(&options.crd_dir)? {
            let name = crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !present.contains(&name) {
                crd["metadata"]["labels"][UPSTREAM_LABEL] = json!("true");
                insert(admin, crd).await?;
            }
        }
    } else {
        remove_calico_crds(admin, |_| true).await?;
    }
    Ok(())
}

// ---- the proxy ------------------------------------------------------------------------------

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let conn_shutdown = shutdown.clone();
        tokio::select! {
            r = listener.accept() => {
                let Ok((tcp, peer)) = r else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                tokio::spawn(connection(tcp, peer, shared.clone(), acceptor.clone(), conn_shutdown));
            }
            _ = stopped(&mut shutdown) => break,
        }
    }
}

type Upstream =
    Arc<tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>>;

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    if *shutdown.borrow() {
        return;
    }
    let tls = tokio::select! {
        r = acceptor.accept(tcp) => match r {
            Ok(t) => t,
            Err(_) => return,
        },
        _ = stopped(&mut shutdown) => return,
    };
    // One upstream connection per client connection, opened on first use.
    let upstream: Upstream = Arc::new(tokio::sync::Mutex::new(None));
    let svc = service_fn(move |req| serve_request(shared.clone(), upstream.clone(), peer, req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::select! {
        _ = conn => {}
        _ = stopped(&mut shutdown) => {}
    }
}

/// The service error that makes hyper close the connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(bytes: Vec<u8>) -> Body {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}

fn fault_response(code: u16, retry_after: Option<u32>) -> Response<Body> {
    let (reason, message) = match code {
        429 => (
            "TooManyRequests",
            "Too many requests, please try again later.",
        ),
        500 => ("InternalError", "Internal error occurred: injected fault"),
        503 => (
            "ServiceUnavailable",
            "The service is unavailable: injected fault",
        ),
        504 => ("Timeout", "The request timed out: injected fault"),
        _ => ("InternalError", "injected fault"),
    };
    let mut details = json!({});
    if let Some(secs) = retry_after {
        details["retryAfterSeconds"] = json!(secs);
    }
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    });
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(secs) = retry_after {
        b = b.header("retry-after", secs.to_string());
    }
    b.body(full(serde_json::to_vec(&body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(full(Vec::new())))
}

async fn open_upstream(
    shared: &Shared,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(shared.plane.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = shared
        .connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn serve_request(
    shared: Arc<Shared>,
    upstream: Upstream,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let start = Instant::now();
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let token = header("authorization")
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let mut entry = LogEntry {
        method: method.clone(),
        path: path.clone(),
        query,
        status: 0,
        user: shared.user_of(&token),
        user_agent: header("user-agent"),
        peer: Some(peer),
        content_type: header("content-type"),
        warnings: Vec::new(),
        duration: Duration::ZERO,
    };
    let finish = |mut entry: LogEntry, status: u16| {
        entry.status = status;
        entry.duration = start.elapsed();
        shared.log(entry);
    };

    if !shared.running.load(Ordering::SeqCst) {
        finish(entry, 0);
        return Err(Dropped);
    }
    {
        let mut stop_after = lock(&shared.stop_after);
        if let Some(n) = stop_after.as_mut() {
            if *n == 0 {
                *stop_after = None;
                drop(stop_after);
                shared.shutdown_now();
                finish(entry, 0);
                return Err(Dropped);
            }
            *n -= 1;
        }
    }
    let mut drop_response = false;
    if let Some(action) = shared.take_fault(&method, &path) {
        match action {
            FaultAction::DropResponse => drop_response = true,
            FaultAction::Drop => {
                finish(entry, 0);
                return Err(Dropped);
            }
            FaultAction::Delay(d) => tokio::time::sleep(d).await,
            FaultAction::Status { code, retry_after } => {
                finish(entry, code);
                return Ok(fault_response(code, retry_after));
            }
        }
    }
    let minor = shared.kubernetes_minor.load(Ordering::SeqCst);
    if minor != 0 && method == "GET" && path == "/version" {
        finish(entry, 200);
        let body = json!({
            "major": "1", "minor": minor.to_string(),
            "gitVersion": format!("v1.{minor}.0-calico-charm-test"),
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.26", "compiler": "gc",
            "platform": "linux/amd64",
        });
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(full(serde_json::to_vec(&body).unwrap_or_default()))
            .unwrap_or_else(|_| Response::new(full(Vec::new()))));
    }
    let latency = shared.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        finish(entry, 0);
        return Err(Dropped);
    };
    if !shared.running.load(Ordering::SeqCst) {
        finish(entry, 0);
        return Err(Dropped);
    }

    let mut forwarded = hyper::Request::from_parts(parts, Full::new(body));
    if shared.access.load(Ordering::SeqCst) == ACCESS_DENY && entry.user == "calico-charm" {
        let denied = format!("Bearer {}", shared.plane.token("denied"));
        if let Ok(v) = denied.parse() {
            forwarded.headers_mut().insert("authorization", v);
        }
    }
    let response = {
        let mut up = upstream.lock().await;
        if up.as_ref().is_none_or(|s| s.is_closed()) {
            match open_upstream(&shared).await {
                Ok(s) => *up = Some(s),
                Err(_) => {
                    finish(entry, 0);
                    return Err(Dropped);
                }
            }
        }
        let Some(sender) = up.as_mut() else {
            finish(entry, 0);
            return Err(Dropped);
        };
        if sender.ready().await.is_err() {
            *up = None;
            finish(entry, 0);
            return Err(Dropped);
        }
        match sender.send_request(forwarded).await {
            Ok(r) => r,
            Err(_) => {
                *up = None;
                finish(entry, 0);
                return Err(Dropped);
            }
        }
    };
    entry.warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let status = response.status().as_u16();
    if drop_response {
        // Let the request finish upstream, then tell the client nothing.
        let _ = response.into_body().collect().await;
        finish(entry, 0);
        return Err(Dropped);
    }
    finish(entry, status);
    Ok(response.map(|b| b.boxed()))
}
