//! An in-process HTTPS Kubernetes API server for integration tests and benches.
//!
//! ```ignore
//! let server = TestApiServer::start(Options::default());   // Calico CRDs preloaded
//! server.write_kubeconfig(&dir.path().join("kubeconfig"))?;  // CA data, URL, bearer token
//! server.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))?;
//! // ... run the charm with KUBECONFIG pointing at the file ...
//! let pools = server.list("crd.projectcalico.org/v1", "IPPool", None);
//! server.fail_next(3, 503);                                  // fault injection
//! ```
//!
//! It runs on its own tokio runtime thread(s), so blocking tests, async tests and
//! subprocesses can all talk to it. TLS (rustls, ring) with its own CA, HTTP/1.1 (hyper).
//!
//! Kubernetes semantics reproduced: discovery (`/api`, `/api/v1`, `/apis`, `/apis/<g>`,
//! `/apis/<g>/<v>`, also the aggregated `APIGroupDiscoveryList` form, `/version`); get, list
//! (label selectors `=`, `==`, `!=`, `in`, `notin`, `key`, `!key`; field selectors `=`/`!=`
//! on any dotted path), create (409 AlreadyExists, `generateName`), replace (409 Conflict on
//! a stale `resourceVersion`; custom resources require one), delete (the object is returned;
//! preconditions; finalizers hold the object with a `deletionTimestamp`), deletecollection,
//! JSON merge patch, JSON patch, strategic merge patch (built-in kinds only, treated as a
//! merge patch; 415 for custom resources), server-side apply with per-manager
//! `managedFields` (fieldsV1) and `force`; `dryRun=All`; `fieldValidation=Strict`.
//! `resourceVersion` is a global counter bumped by every write that changes something (a
//! no-op write or apply changes nothing, as in Kubernetes); `generation` starts at 1 and is
//! bumped when anything outside `metadata` and `status` changes (custom resources, apps,
//! CRDs). Writes to the main resource never change `status` of kinds with a status
//! subresource. Namespaced objects need their namespace to exist (`default`, `kube-system`,
//! `kube-public`, `kube-node-lease` exist at start).
//!
//! Simplifications: lists are atomic except the well-known associative lists `containers`,
//! `initContainers`, `ephemeralContainers`, `env`, `volumes`, `imagePullSecrets` (by
//! `name`), `volumeMounts` (`mountPath`), `volumeDevices` (`devicePath`), `ports`
//! (`containerPort`/`port` + `protocol`), `ownerReferences` (`uid`); the CRDs'
//! `x-kubernetes-list-type` markers are not read (Calico's two `set` lists, IPPool
//! `allowedUses` and BGPConfiguration `ignoredInterfaces`, are atomic here). Maps are
//! granular. Empty maps and `null`s in an applied configuration own nothing. A field a
//! manager stops applying is removed unless another manager owns it (or something under
//! it); parent maps left empty by such a removal (below the top level) are removed too. As
//! in Kubernetes, the first apply to an object without managed fields (one stored with
//! [`TestApiServer::insert`]) first gives all its fields to the Update manager
//! `before-first-apply`, so changing them needs force and a field the applier shares with
//! it survives when the applier drops it. Non-apply writes give the writer ownership of the
//! fields it changed, taking them from other managers. The `status` subresource (kinds that
//! have one) takes GET, PUT and PATCH and changes only `status` (not tracked in managed
//! fields; an apply there is merged like a merge patch); other subresources answer 404. A
//! CRD gets the status the API server gives an accepted one (`NamesAccepted` and
//! `Established` True, `acceptedNames`, `storedVersions`). `Accept:
//! ...;as=PartialObjectMetadata(List)` is honoured. No watch (405), no pagination (`limit`
//! is ignored; everything is returned), no admission, no defaulting of built-in kinds, no
//! garbage collection except: deleting a CRD deletes its objects and stops serving its
//! kind, deleting a Namespace deletes what is in it.
//!
//! Faults (see the methods): answer N requests (optionally matching a path) with a status
//! (500, 503, 429 with `Retry-After`), delay them, drop their connection before or after
//! executing them, add latency to every request, stop and restart on the same port, stop
//! after N more requests. Note that kube 5's default client retries 429/503/504 itself
//! ([`TestApiServer::kube_client_without_retry`] does not).
//!
//! Validation (422 Invalid): `metadata.name` is a DNS-1123 subdomain (namespaces: a label;
//! RBAC: a path segment); CRDs need group, names, scope, versions and the name
//! `<plural>.<group>`; objects of a kind whose CRD name matches an upstream Calico CRD in
//! `../shared/calico-crds` are checked against that upstream schema (support::crd_schema),
//! whether the CRD was preloaded or created through the API; unknown fields are pruned
//! with a `Warning` header (recorded in the request log), or refused with
//! `fieldValidation=Strict`; the schema's defaults are applied. Other custom resources get
//! only basic checks (name, `spec` an object).
#![allow(dead_code)]

pub mod fields;
pub mod handler;
pub mod selector;
pub mod store;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use handler::Access;
use store::Store;

use super::crd_schema::{self, CrdSchema};

/// How to start the server.
#[derive(Clone, Debug)]
pub struct Options {
    /// Preload the upstream Calico CRDs (so their kinds are served from the start).
    pub calico_crds: bool,
    /// Where the upstream CRDs are read (at run time): `../shared/calico-crds`.
    pub crd_dir: PathBuf,
    /// The bearer token accepted with full access (random when `None`).
    pub token: Option<String>,
    /// Tokio worker threads of the server's runtime.
    pub worker_threads: usize,
    /// Namespaces that exist at start.
    pub namespaces: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            calico_crds: true,
            crd_dir: crd_schema::default_crd_dir(),
            token: None,
            worker_threads: 2,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Options {
    /// Default options without the Calico CRDs (their kinds answer 404 until installed).
    pub fn without_crds() -> Self {
        Options {
            calico_crds: false,
            ..Options::default()
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The status answered; 0 when the connection was dropped without an answer.
    pub status: u16,
    /// The authenticated user (empty when unauthenticated).
    pub user: String,
    pub user_agent: String,
    /// The client's address: requests of one client process share it while its connection
    /// lives (benches can group requests by it).
    pub peer: Option<SocketAddr>,
    pub content_type: String,
    /// `Warning` headers sent (e.g. unknown fields pruned).
    pub warnings: Vec<String>,
    /// Time from receipt to answer (including injected latency).
    pub duration: Duration,
}

/// What an injected fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Answer with this status and a `Status` body; 429 and 503 may carry `Retry-After`.
    Status { code: u16, retry_after: Option<u32> },
    /// Close the connection without answering (the request is not executed).
    Drop,
    /// Execute the request, then close the connection without answering: the write
    /// happened but the client never learns it (a hook killed mid-request).
    DropResponse,
    /// Wait, then serve the request normally.
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

struct Shared {
    store: Mutex<Store>,
    faults: Mutex<Vec<Fault>>,
    has_faults: AtomicBool,
    latency_us: AtomicU64,
    log: Mutex<Vec<LogEntry>>,
    tokens: Mutex<HashMap<String, (String, Access)>>,
    running: AtomicBool,
    stop_after: Mutex<Option<u64>>,
    shutdown: Mutex<Option<watch::Sender<bool>>>,
    server_address: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Stop serving: close the listener and every connection (non-blocking).
    fn shutdown_now(&self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(true);
        }
    }

    fn log(&self, e: LogEntry) {
        lock(&self.log).push(e);
    }

    /// The fault for this request, if any (decrementing its count).
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
}

/// The upstream CRDs of a directory: the CRD object and its parsed schema.
type Upstream = Vec<(Value, Arc<CrdSchema>)>;

fn load_upstream(dir: &Path) -> Result<Upstream, String> {
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
        if crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            continue;
        }
        let schema = crd_schema::load_crd_schema(&path)?;
        out.push((crd, Arc::new(schema)));
    }
    Ok(out)
}

fn upstream_cached(dir: &Path) -> Result<Upstream, String> {
    static DEFAULT: OnceLock<Result<Upstream, String>> = OnceLock::new();
    if dir == crd_schema::default_crd_dir() {
        DEFAULT.get_or_init(|| load_upstream(dir)).clone()
    } else {
        load_upstream(dir)
    }
}

fn crd_name(crd: &Value) -> String {
    crd.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Signals the runtime thread to finish when dropped.
struct RuntimeThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The test API server. Dropping it stops it.
pub struct TestApiServer {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    acceptor: TlsAcceptor,
    crd_dir: PathBuf,
    _runtime: RuntimeThread,
}

fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl TestApiServer {
    /// Start the server on 127.0.0.1 (a free port). Panics if it cannot (a test setup failure).
    pub fn start(options: Options) -> TestApiServer {
        match Self::try_start(options) {
            Ok(s) => s,
            Err(e) => panic!("test API server failed to start: {e}"),
        }
    }

    /// Start the server, or say why it cannot.
    pub fn try_start(options: Options) -> Result<TestApiServer, String> {
        let pki = tls::generate()?;
        let upstream = upstream_cached(&options.crd_dir).or_else(|e| {
            if options.calico_crds {
                Err(e)
            } else {
                Ok(Vec::new())
            }
        })?;
        let mut store = Store::new(
            upstream
                .iter()
                .map(|(crd, s)| (crd_name(crd), s.clone()))
                .collect(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let token = options.token.clone().unwrap_or_else(random_token);

        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let threads = options.worker_threads.max(1);
        std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("test-apiserver-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| e.to_string())?;
        let handle = handle_rx
            .recv()
            .map_err(|e| e.to_string())
            .and_then(|r| r)?;

        let server_address = addr.to_string();
        let mut tokens = HashMap::new();
        tokens.insert(token.clone(), ("test-admin".to_string(), Access::Full));
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            faults: Mutex::new(Vec::new()),
            has_faults: AtomicBool::new(false),
            latency_us: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            tokens: Mutex::new(tokens),
            running: AtomicBool::new(false),
            stop_after: Mutex::new(None),
            shutdown: Mutex::new(None),
            server_address,
        });
        // Populate the store through the direct API.
        std::mem::swap(&mut *lock(&shared.store), &mut store);
        let server = TestApiServer {
            shared,
            handle,
            addr,
            ca_pem: pki.ca_pem,
            token,
            acceptor: pki.acceptor,
            crd_dir: options.crd_dir.clone(),
            _runtime: RuntimeThread {
                stop: Some(stop_tx),
            },
        };
        for ns in &options.namespaces {
            server.insert(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
            }))?;
        }
        if options.calico_crds {
            for (crd, _) in &upstream {
                server.insert(crd)?;
            }
        }
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: std::net::TcpListener) {
        let (tx, rx) = watch::channel(false);
        *lock(&self.shared.shutdown) = Some(tx);
        self.shared.running.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        let acceptor = self.acceptor.clone();
        self.handle
            .spawn(accept_loop(listener, shared, acceptor, rx));
    }

    // ----- connection details -----

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token with full access.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig (YAML) for this server with the given bearer token.
    pub fn kubeconfig_yaml_with_token(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    certificate-authority-data: {}\n    server: {}\nusers:\n- name: test\n  user:\n    token: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\npreferences: {{}}\n",
            tls::base64(self.ca_pem.as_bytes()),
            self.url(),
            token
        )
    }

    /// A kubeconfig (YAML) for this server with the full-access token.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_with_token(&self.token)
    }

    /// Write a kubeconfig (CA data, server URL, bearer token) to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Write a kubeconfig using another token (see [`TestApiServer::add_token`]).
    pub fn write_kubeconfig_with_token(&self, path: &Path, token: &str) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml_with_token(token))
    }

    /// A kube client for this server, built from the kubeconfig.
    pub async fn kube_client(&self) -> Result<kube::Client, String> {
        self.kube_client_with_token(&self.token.clone()).await
    }

    /// A kube client using another token.
    pub async fn kube_client_with_token(&self, token: &str) -> Result<kube::Client, String> {
        let config = self.kube_config_with_token(token).await?;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// A kube client that does not retry by itself (kube 5's default client retries 429,
    /// 503 and 504 up to 15 times, honouring Retry-After): every fault reaches the caller.
    pub async fn kube_client_without_retry(&self) -> Result<kube::Client, String> {
        let mut config = self.kube_config_with_token(&self.token.clone()).await?;
        config.default_retry = false;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// The kube config (from the kubeconfig) for a token, to adjust before building a client.
    pub async fn kube_config_with_token(&self, token: &str) -> Result<kube::Config, String> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml_with_token(token))
            .map_err(|e| e.to_string())?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())
    }

    // ----- identities -----

    /// Accept another bearer token, as `user`, with the given access (`Deny` → 403).
    pub fn add_token(&self, token: &str, user: &str, access: Access) {
        lock(&self.shared.tokens).insert(token.to_string(), (user.to_string(), access));
    }

    /// Change the access of the default token (e.g. `Access::Deny` to make the API refuse
    /// the charm with 403, `Access::Full` to restore it).
    pub fn set_access(&self, access: Access) {
        if let Some(e) = lock(&self.shared.tokens).get_mut(&self.token) {
            e.1 = access;
        }
    }

    // ----- direct store access (no HTTP, no validation, no managed fields) -----

    /// Register `node` (with `annotations`, when given) and a Running, Ready calico-node pod
    /// on it that runs `image`.
    pub fn add_ready_node(&self, node: &str, annotations: Option<Value>, image: &str) {
        let mut metadata = serde_json::json!({
            "name": node, "labels": {"kubernetes.io/hostname": node},
        });
        if let Some(annotations) = annotations {
            metadata["annotations"] = annotations;
        }
        self.insert(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": metadata,
        }))
        .expect("insert node");
        self.insert(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("calico-node-{node}"),
                "namespace": "kube-system",
                "labels": {"k8s-app": "calico-node"},
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "calico-node", "image": image}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "calico-node", "ready": true, "restartCount": 0,
                    "image": image, "imageID": "", "state": {"running": {}},
                }],
            },
        }))
        .expect("insert calico-node pod");
    }

    /// Store an object as is (created or replaced), filling `uid`, `creationTimestamp`,
    /// `resourceVersion` (and `generation`) and the namespace (`default`) when absent.
    /// `managedFields` in the object are kept. A CRD makes its kind served.
    pub fn insert<T: Serialize>(&self, obj: T) -> Result<Value, String> {
        let mut obj = serde_json::to_value(obj).map_err(|e| e.to_string())?;
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut store = lock(&self.shared.store);
        let t = store
            .find_type_by_kind(&av, &kind)
            .ok_or_else(|| format!("{av} {kind} is not served"))?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or("metadata.name is required")?
            .to_string();
        let ns = if t.namespaced {
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        };
        let old = store.get(&t, &ns, &name).cloned();
        let rv = store.next_rv();
        let uid = store.new_uid();
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or("metadata must be an object")?;
        if t.namespaced {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        meta.insert("resourceVersion".into(), Value::String(rv));
        let keep = |k: &str| {
            old.as_ref()
                .and_then(|o| o.pointer(&format!("/metadata/{k}")))
        };
        if !meta.contains_key("uid") {
            let v = keep("uid").cloned().unwrap_or(Value::String(uid));
            meta.insert("uid".into(), v);
        }
        if !meta.contains_key("creationTimestamp") {
            let v = keep("creationTimestamp")
                .cloned()
                .unwrap_or_else(|| Value::String(store::now_rfc3339()));
            meta.insert("creationTimestamp".into(), v);
        }
        if t.has_generation && !meta.contains_key("generation") {
            meta.insert("generation".into(), serde_json::json!(1));
        }
        if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
            handler::crd_status(&mut obj);
        }
        store.put(&t, &ns, &name, obj.clone());
        if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
            store.register_crd(&name, Some(&obj));
        }
        Ok(obj)
    }

    /// An object by apiVersion, kind, namespace (`None` for cluster-scoped) and name.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = lock(&self.shared.store);
        let t = store.find_type_by_kind(api_version, kind)?;
        store.get(&t, ns.unwrap_or_default(), name).cloned()
    }

    /// Objects of a kind, in one namespace (`Some`) or all.
    pub fn list(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        let store = lock(&self.shared.store);
        let Some(t) = store.find_type_by_kind(api_version, kind) else {
            return Vec::new();
        };
        store.list(&t, ns).cloned().collect()
    }

    /// Remove an object; the removed object. Removing a CRD stops serving its kind.
    pub fn remove(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let mut store = lock(&self.shared.store);
        let t = store.find_type_by_kind(api_version, kind)?;
        let out = store.remove(&t, ns.unwrap_or_default(), name);
        store.next_rv();
        if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
            store.register_crd(name, None);
        }
        out
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
        for (crd, _) in upstream_cached(&self.crd_dir)? {
            self.insert(&crd)?;
        }
        Ok(())
    }

    /// Remove every upstream Calico CRD (and their objects).
    pub fn remove_calico_crds(&self) -> Result<(), String> {
        for (crd, _) in upstream_cached(&self.crd_dir)? {
            self.remove(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                &crd_name(&crd),
            );
        }
        Ok(())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.store).resource_version
    }

    // ----- request log -----

    /// Every request since start (or the last reset).
    pub fn requests(&self) -> Vec<LogEntry> {
        lock(&self.shared.log).clone()
    }

    /// Every request since start (or the last reset), clearing the log.
    pub fn take_requests(&self) -> Vec<LogEntry> {
        std::mem::take(&mut *lock(&self.shared.log))
    }

    /// How many requests were received since start (or the last reset).
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

    /// Clear the request log (counters restart at 0).
    pub fn reset_requests(&self) {
        lock(&self.shared.log).clear();
    }

    // ----- fault injection -----

    /// Add a fault rule (after the existing ones).
    pub fn add_fault(&self, fault: Fault) {
        let mut faults = lock(&self.shared.faults);
        faults.push(fault);
        self.shared.has_faults.store(true, Ordering::Relaxed);
    }

    /// Answer the next `n` requests with `code` (e.g. 500, 503).
    pub fn fail_next(&self, n: u64, code: u16) {
        self.fail_next_matching(n, "", code);
    }

    /// Answer the next `n` requests whose path contains `path_contains` with `code`.
    pub fn fail_next_matching(&self, n: u64, path_contains: &str, code: u16) {
        self.add_fault(Fault {
            path_contains: Some(path_contains.to_string()).filter(|p| !p.is_empty()),
            method: None,
            remaining: Some(n),
            action: FaultAction::Status {
                code,
                retry_after: None,
            },
        });
    }

    /// Answer the next `n` requests with 429 Too Many Requests and `Retry-After: secs`.
    pub fn throttle_next(&self, n: u64, retry_after_secs: u32) {
        self.throttle_next_matching(n, "", retry_after_secs);
    }

    /// Answer the next `n` requests whose path contains `path_contains` with 429 and
    /// `Retry-After: secs`.
    pub fn throttle_next_matching(&self, n: u64, path_contains: &str, retry_after_secs: u32) {
        self.add_fault(Fault {
            path_contains: Some(path_contains.to_string()).filter(|p| !p.is_empty()),
            method: None,
            remaining: Some(n),
            action: FaultAction::Status {
                code: 429,
                retry_after: Some(retry_after_secs),
            },
        });
    }

    /// Close the connection of the next `n` requests without answering.
    pub fn drop_next(&self, n: u64) {
        self.drop_next_matching(n, "");
    }

    /// Close the connection of the next `n` requests whose path contains `path_contains`.
    pub fn drop_next_matching(&self, n: u64, path_contains: &str) {
        self.add_fault(Fault {
            path_contains: Some(path_contains.to_string()).filter(|p| !p.is_empty()),
            method: None,
            remaining: Some(n),
            action: FaultAction::Drop,
        });
    }

    /// Execute the next `n` requests whose path contains `path_contains` (any if empty), but
    /// close their connection instead of answering.
    pub fn drop_response_next_matching(&self, n: u64, path_contains: &str) {
        self.add_fault(Fault {
            path_contains: Some(path_contains.to_string()).filter(|p| !p.is_empty()),
            method: None,
            remaining: Some(n),
            action: FaultAction::DropResponse,
        });
    }

    /// Delay the next `n` requests whose path contains `path_contains` (any if empty).
    pub fn delay_next_matching(&self, n: u64, path_contains: &str, delay: Duration) {
        self.add_fault(Fault {
            path_contains: Some(path_contains.to_string()).filter(|p| !p.is_empty()),
            method: None,
            remaining: Some(n),
            action: FaultAction::Delay(delay),
        });
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

    /// Whether the server is accepting requests.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Stop: close the listener (connections are refused) and every open connection.
    /// The store is kept.
    pub fn stop(&self) {
        self.shared.shutdown_now();
        // Wait until the port is actually closed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Start serving again on the same port (after [`TestApiServer::stop`] or
    /// [`TestApiServer::stop_after`]). No-op if running.
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

/// Resolves once the server is told to stop (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn is_stopped(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow()
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

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    if is_stopped(&shutdown) {
        return;
    }
    let tls = tokio::select! {
        r = acceptor.accept(tcp) => match r {
            Ok(t) => t,
            Err(_) => return,
        },
        _ = stopped(&mut shutdown) => return,
    };
    let svc = service_fn(move |req| serve_request(shared.clone(), peer, req));
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
        f.write_str("connection dropped by the test API server")
    }
}

impl std::error::Error for Dropped {}

fn fault_reason(code: u16) -> (&'static str, &'static str) {
    match code {
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
        401 => ("Unauthorized", "Unauthorized"),
        403 => ("Forbidden", "forbidden: injected fault"),
        409 => ("Conflict", "conflict: injected fault"),
        _ => ("InternalError", "injected fault"),
    }
}

fn respond(
    code: u16,
    content_type: &str,
    body: &Value,
    headers: &[(&str, String)],
) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .header("cache-control", "no-cache, private");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn serve_request(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let start = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let user_agent = header("user-agent");
    let content_type = header("content-type");
    let accept = header("accept");
    let authorization = header("authorization");
    let mut entry = LogEntry {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        status: 0,
        user: String::new(),
        user_agent,
        peer: Some(peer),
        content_type: content_type.clone(),
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
                let (reason, message) = fault_reason(code);
                let mut body = store::status(code, reason, message, serde_json::json!({}));
                let mut headers = Vec::new();
                if let Some(secs) = retry_after {
                    headers.push(("retry-after", secs.to_string()));
                    if let Some(d) = body.get_mut("details").and_then(Value::as_object_mut) {
                        d.insert("retryAfterSeconds".into(), serde_json::json!(secs));
                    }
                }
                finish(entry, code);
                return Ok(respond(code, "application/json", &body, &headers));
            }
        }
    }
    let latency = shared.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        finish(entry, 0);
        return Err(Dropped);
    };
    if !shared.running.load(Ordering::SeqCst) {
        finish(entry, 0);
        return Err(Dropped);
    }

    let identity = authorization
        .strip_prefix("Bearer ")
        .and_then(|t| lock(&shared.tokens).get(t.trim()).cloned());
    let Some((user, access)) = identity else {
        let body = store::status(401, "Unauthorized", "Unauthorized", serde_json::json!({}));
        finish(entry, 401);
        return Ok(respond(401, "application/json", &body, &[]));
    };
    entry.user = user.clone();
    let request = handler::Request {
        method: &method,
        path: &path,
        query: &query,
        content_type: &content_type,
        accept: &accept,
        user_agent: &entry.user_agent,
        body: &body,
        user: &user,
        access,
        server_address: &shared.server_address,
    };
    let reply = {
        let mut store = lock(&shared.store);
        handler::handle(&mut store, &request)
    };
    if drop_response {
        entry.warnings = reply.warnings;
        finish(entry, 0);
        return Err(Dropped);
    }
    let headers: Vec<(&str, String)> = reply
        .warnings
        .iter()
        .map(|w| ("warning", format!("299 - {:?}", w)))
        .collect();
    let response = respond(reply.code, reply.content_type, &reply.body, &headers);
    entry.warnings = reply.warnings;
    finish(entry, reply.code);
    Ok(response)
}
