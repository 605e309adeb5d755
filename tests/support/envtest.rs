//! A real Kubernetes control plane for the tests: `etcd` and `kube-apiserver`, found as
//! Kubernetes' envtest convention finds them (`KUBEBUILDER_ASSETS`).
//!
//! A pool of control planes per test binary ([`ControlPlane::pooled`], two by default), each
//! started on first use, on free 127.0.0.1 ports, with its own CA and serving certificate,
//! static bearer tokens and RBAC, an audit log of every request, and a kubeconfig for the
//! cluster admin. Its processes are stopped when the test binary exits, also when tests
//! panic (an `atexit` handler), and die with it if it is killed (`PR_SET_PDEATHSIG`, set from
//! a thread that lives as long as the process).
//!
//! Where the binaries are looked for, in order: `$KUBEBUILDER_ASSETS`,
//! `/usr/local/kubebuilder/bin` (setup-envtest's default), `../shared/envtest` beside the
//! project. When none holds both, a test that needs them fails with one line saying how to
//! provide them; with `CALICO_CHARM_SKIP_ENVTEST=1` it is skipped instead, and says so.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::Value;

use super::tls::base64;

/// The most control planes one test binary may run at once.
const MAX_POOL: usize = 4;
/// Environment variable: how many control planes a test binary may run, 1 to 4 (default 2,
/// as many as tests run at once on a 2-core machine, where `cargo test` runs 2 threads).
pub const POOL_ENV: &str = "CALICO_CHARM_TEST_CLUSTERS";

/// How many control planes the test binary may run at once ([`POOL_ENV`]).
pub fn pool_size() -> usize {
    std::env::var(POOL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(2, |n| n.clamp(1, MAX_POOL))
}

/// How long etcd and the API server get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopping process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The API server's ServiceAccount issuer (as a real cluster's).
const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The identities the control plane knows: (user, token, groups).
///
/// `admin` is the tests' own; `charm` is the identity the charm's kubeconfig carries (a
/// cluster admin, as the principal's kubeconfig is); `denied` authenticates but RBAC grants
/// it nothing (403 on everything); the `system:serviceaccount:...` users are Calico's
/// components, so that RBAC evaluates the charm's bindings for them exactly as it would for
/// the real ServiceAccounts.
pub const USERS: &[(&str, &str, &str)] = &[
    ("test-admin", "admin", "system:masters"),
    ("calico-charm", "charm", "system:masters"),
    ("calico-charm-denied", "denied", ""),
    (
        "system:serviceaccount:kube-system:calico-node",
        "sa-calico-node",
        "system:serviceaccounts,system:serviceaccounts:kube-system",
    ),
    (
        "system:serviceaccount:kube-system:calico-kube-controllers",
        "sa-calico-kube-controllers",
        "system:serviceaccounts,system:serviceaccounts:kube-system",
    ),
    (
        "system:serviceaccount:kube-system:calico-cni-plugin",
        "sa-calico-cni-plugin",
        "system:serviceaccounts,system:serviceaccounts:kube-system",
    ),
    (
        "system:serviceaccount:kube-system:calico-typha",
        "sa-calico-typha",
        "system:serviceaccounts,system:serviceaccounts:kube-system",
    ),
];

/// The bearer token of a user in [`USERS`] (random per control plane).
fn token_for(secret: &str, name: &str) -> String {
    format!("{name}-{secret}")
}

/// One line saying how to provide the binaries.
pub const MISSING: &str = "the real Kubernetes control plane is missing: set KUBEBUILDER_ASSETS to a directory holding \
     `etcd` and `kube-apiserver` (`setup-envtest use -p path`, or `../shared/envtest` beside the \
     project), or set CALICO_CHARM_SKIP_ENVTEST=1 to skip these tests";

/// The directory holding `etcd` and `kube-apiserver`, if any.
pub fn assets_dir() -> Option<PathBuf> {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/envtest");
    let candidates = std::env::var_os("KUBEBUILDER_ASSETS")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/local/kubebuilder/bin"), beside]);
    for dir in candidates {
        let dir = if dir.is_relative() {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
        } else {
            dir
        };
        if dir.join("etcd").is_file() && dir.join("kube-apiserver").is_file() {
            return Some(dir);
        }
    }
    None
}

/// Whether the envtest tests are to be skipped: `CALICO_CHARM_SKIP_ENVTEST=1` and no binaries.
/// Without the variable, missing binaries fail the test with [`MISSING`].
pub fn skip(test: &str) -> bool {
    if assets_dir().is_some() {
        return false;
    }
    if std::env::var("CALICO_CHARM_SKIP_ENVTEST").as_deref() == Ok("1") {
        eprintln!("skipped {test}: CALICO_CHARM_SKIP_ENVTEST=1 and no Kubernetes control plane");
        return true;
    }
    panic!("{MISSING}");
}

/// A running etcd + kube-apiserver.
pub struct ControlPlane {
    pub url: String,
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub ca_cert_pem: String,
    ca_key_pem: String,
    secret: String,
    pub dir: PathBuf,
    audit_log: PathBuf,
    pub etcd_url: String,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

/// The pids to stop at exit, and the temporary directory to remove.
pub static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
pub static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Stop every registered child and remove every registered directory when the test binary
/// exits (registered once).
pub fn register_cleanup() {
    // SAFETY: registering a plain extern "C" function with no captured state.
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| unsafe {
        libc::atexit(stop_children);
    });
}

extern "C" fn stop_children() {
    let pids: Vec<u32> = CHILDREN
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    // API server first, then etcd (the order they were started in, reversed).
    for pid in pids.iter().rev() {
        stop_pid(*pid);
    }
    if let Ok(mut dirs) = DIRS.lock() {
        for dir in dirs.drain(..) {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

pub fn stop_pid(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: signalling a child we started; waitpid reaps it.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        let mut status = 0;
        // SAFETY: non-blocking wait for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || r < 0 {
            return;
        }
        if Instant::now() >= deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free port on 127.0.0.1 (bound and released; the small race is retried by the caller).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Processes are started from one thread that lives as long as the test binary, so that
/// `PR_SET_PDEATHSIG` (which fires when the *thread* that forked exits) only fires when the
/// binary dies.
pub fn spawn_from_keeper(mut cmd: Command) -> Result<Child, String> {
    type Job = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("envtest-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static: this loop never ends before the process.
            })
            .expect("keeper thread");
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child
    // when the keeper thread (hence this test binary) goes away.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    keeper
        .lock()
        .map_err(|_| "keeper poisoned".to_string())?
        .send((cmd, tx))
        .map_err(|e| e.to_string())?;
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Wait until `ready` holds, or fail with the last lines of the process's log.
fn wait_until(
    what: &str,
    child: &mut Child,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if ready() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status}): {}", tail(log)));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{what} not ready after {READY_TIMEOUT:?}: {}",
                tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

struct Pki {
    issuer: rcgen::Issuer<'static, KeyPair>,
    ca_cert_pem: String,
    ca_key_pem: String,
    serving_cert_pem: String,
    serving_key_pem: String,
    sa_public_pem: String,
    sa_private_pem: String,
}

/// A new CA, a serving certificate for 127.0.0.1 signed by it, and a ServiceAccount key.
fn pki() -> Result<Pki, String> {
    let err = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "calico-charm envtest CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let (serving_cert_pem, serving_key_pem) = serving_cert(&issuer, "kube-apiserver")?;
    let sa = KeyPair::generate().map_err(err)?;
    Ok(Pki {
        issuer,
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem,
        serving_cert_pem,
        serving_key_pem,
        sa_public_pem: sa.public_key_pem(),
        sa_private_pem: sa.serialize_pem(),
    })
}

/// A serving certificate (IP SAN 127.0.0.1, DNS localhost) signed by `issuer`: PEM cert, key.
pub fn serving_cert(
    issuer: &rcgen::Issuer<'_, KeyPair>,
    common_name: &str,
) -> Result<(String, String), String> {
    let err = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl ControlPlane {
    /// Control plane `slot` of the test binary's pool (below [`pool_size`]), started on
    /// first use. Panics (one line) when it cannot start: callers check [`skip`] first.
    pub fn pooled(slot: usize) -> &'static ControlPlane {
        static PLANES: [OnceLock<Result<ControlPlane, String>>; MAX_POOL] =
            [const { OnceLock::new() }; MAX_POOL];
        match PLANES[slot.min(MAX_POOL - 1)].get_or_init(|| {
            let Some(assets) = assets_dir() else {
                return Err(MISSING.to_string());
            };
            // Ports are free when probed; another process may take one first: retry.
            let mut last = String::new();
            for _ in 0..3 {
                match ControlPlane::start(&assets) {
                    Ok(plane) => return Ok(plane),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }) {
            Ok(plane) => plane,
            Err(e) => panic!("envtest: {e}"),
        }
    }

    fn start(assets: &Path) -> Result<ControlPlane, String> {
        let dir = std::env::temp_dir().join(format!("calico-charm-envtest-{}", random_hex()));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        DIRS.lock().map_err(|e| e.to_string())?.push(dir.clone());
        register_cleanup();

        let pki = pki()?;
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path)
        };
        let ca = write("ca.crt", &pki.ca_cert_pem)?;
        let cert = write("apiserver.crt", &pki.serving_cert_pem)?;
        let key = write("apiserver.key", &pki.serving_key_pem)?;
        let sa_pub = write("sa.pub", &pki.sa_public_pem)?;
        let sa_key = write("sa.key", &pki.sa_private_pem)?;
        let secret = random_hex();
        let tokens: String = USERS
            .iter()
            .enumerate()
            .map(|(i, (user, name, groups))| {
                format!("{},{user},uid-{i},\"{groups}\"\n", token_for(&secret, name))
            })
            .collect();
        let tokens = write("tokens.csv", &tokens)?;
        let policy = write(
            "audit-policy.yaml",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )?;
        let audit_log = dir.join("audit.log");

        // etcd.
        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_log = dir.join("etcd.log");
        let mut etcd = Command::new(assets.join("etcd"));
        etcd.arg("--name=envtest")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=envtest={peer_url}"))
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(log_file(&etcd_log)?)
            .stderr(log_file(&etcd_log)?);
        let mut etcd = spawn_from_keeper(etcd)?;
        CHILDREN.lock().map_err(|e| e.to_string())?.push(etcd.id());
        let etcd_addr: SocketAddr = format!("127.0.0.1:{client_port}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        wait_until("etcd", &mut etcd, &etcd_log, || {
            TcpStream::connect_timeout(&etcd_addr, Duration::from_millis(200)).is_ok()
        })?;

        // kube-apiserver.
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let api_log = dir.join("kube-apiserver.log");
        let mut api = Command::new(assets.join("kube-apiserver"));
        api.arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!("--tls-cert-file={}", cert.display()))
            .arg(format!("--tls-private-key-file={}", key.display()))
            .arg(format!("--client-ca-file={}", ca.display()))
            .arg(format!("--service-account-key-file={}", sa_pub.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg(format!("--service-account-issuer={SA_ISSUER}"))
            .arg("--service-cluster-ip-range=10.152.183.0/24")
            .arg("--authorization-mode=RBAC")
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--anonymous-auth=false")
            .arg("--allow-privileged=true")
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--audit-policy-file={}", policy.display()))
            .arg(format!("--audit-log-path={}", audit_log.display()))
            .arg("--audit-log-mode=blocking")
            .stdin(Stdio::null())
            .stdout(log_file(&api_log)?)
            .stderr(log_file(&api_log)?);
        let mut api = spawn_from_keeper(api)?;
        CHILDREN.lock().map_err(|e| e.to_string())?.push(api.id());

        let plane = ControlPlane {
            url: format!("https://{addr}"),
            addr,
            ca_pem: pki.ca_cert_pem.clone(),
            ca_cert_pem: pki.ca_cert_pem,
            ca_key_pem: pki.ca_key_pem,
            secret,
            dir: dir.clone(),
            audit_log,
            etcd_url,
            issuer: pki.issuer,
        };
        let client = plane.blocking_client("admin")?;
        wait_until("kube-apiserver", &mut api, &api_log, || {
            client.get("/readyz") == Ok((200, "ok".to_string()))
                && client.get("/api/v1/namespaces/kube-system").map(|r| r.0) == Ok(200)
        })?;
        // Children are reaped by the atexit handler; keep the Child handles from killing
        // nothing on drop (std does not kill on drop).
        std::mem::forget(etcd);
        std::mem::forget(api);
        Ok(plane)
    }

    /// The bearer token of a user named in [`USERS`] by its short name (`admin`, `charm`,
    /// `denied`, `sa-calico-node`, ...).
    pub fn token(&self, name: &str) -> String {
        token_for(&self.secret, name)
    }

    /// A serving certificate for 127.0.0.1 signed by the cluster's CA (the fault proxy's):
    /// PEM certificate, PEM key.
    pub fn serving_cert(&self, common_name: &str) -> Result<(String, String), String> {
        serving_cert(&self.issuer, common_name)
    }

    /// A kubeconfig for `server` (this API server, or a proxy in front of it) with a token.
    pub fn kubeconfig_yaml(&self, server: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: envtest\n  cluster:\n    certificate-authority-data: {}\n    server: {server}\nusers:\n- name: envtest\n  user:\n    token: {token}\ncontexts:\n- name: envtest\n  context:\n    cluster: envtest\n    user: envtest\n    namespace: default\ncurrent-context: envtest\npreferences: {{}}\n",
            base64(self.ca_pem.as_bytes()),
        )
    }

    /// A kube client for a user of [`USERS`], straight to the API server.
    pub async fn kube_client(&self, user: &str) -> Result<kube::Client, String> {
        let kc = kube::config::Kubeconfig::from_yaml(
            &self.kubeconfig_yaml(&self.url, &self.token(user)),
        )
        .map_err(|e| e.to_string())?;
        let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        config.default_retry = false;
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }

    /// A minimal blocking HTTPS client (for readiness and RBAC checks).
    pub fn blocking_client(&self, user: &str) -> Result<BlockingClient, String> {
        BlockingClient::new(self.addr, &self.ca_pem, &self.token(user))
    }

    /// Every audit event since the start (ResponseComplete stage), in order.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        let Ok(file) = fs::File::open(&self.audit_log) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .filter(|e| e["stage"] == "ResponseComplete")
            .map(|e| AuditEvent {
                verb: e["verb"].as_str().unwrap_or_default().to_string(),
                uri: e["requestURI"].as_str().unwrap_or_default().to_string(),
                user: e["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                user_agent: e["userAgent"].as_str().unwrap_or_default().to_string(),
                code: e["responseStatus"]["code"].as_u64().unwrap_or_default() as u16,
            })
            .collect()
    }

    /// How many audit events there are now (a mark for [`ControlPlane::audit_since`]).
    pub fn audit_mark(&self) -> usize {
        self.audit_events().len()
    }

    /// The audit events after `mark`.
    pub fn audit_since(&self, mark: usize) -> Vec<AuditEvent> {
        self.audit_events().into_iter().skip(mark).collect()
    }
}

/// One request as the real API server's audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Kubernetes' verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub uri: String,
    pub user: String,
    pub user_agent: String,
    pub code: u16,
}

impl AuditEvent {
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

pub fn log_file(path: &Path) -> Result<fs::File, String> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A tiny blocking HTTPS/1.1 client over rustls: one request per connection.
pub struct BlockingClient {
    addr: SocketAddr,
    config: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    token: String,
}

/// A rustls client config trusting only `ca_pem`.
pub fn client_tls(ca_pem: &str) -> Result<tokio_rustls::rustls::ClientConfig, String> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl BlockingClient {
    pub fn new(addr: SocketAddr, ca_pem: &str, token: &str) -> Result<Self, String> {
        Ok(BlockingClient {
            addr,
            config: std::sync::Arc::new(client_tls(ca_pem)?),
            token: token.to_string(),
        })
    }

    /// `GET path`: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        self.request("GET", path, "", None)
    }

    /// Any request: (status, body). `content_type` is used when a body is given.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        use std::io::{Read, Write};
        use tokio_rustls::rustls::pki_types::ServerName;
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let conn = tokio_rustls::rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::rustls::StreamOwned::new(conn, tcp);
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            self.token,
            body.len()
        );
        if !content_type.is_empty() {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        if path.contains("watch=1") {
            // A watch streams until its timeout: the status line is the answer.
            let mut buf = [0u8; 4096];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
            }
        } else {
            // The server closes the connection (Connection: close); rustls may report the
            // missing close_notify as an error after all data arrived.
            let _ = tls.read_to_end(&mut raw);
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP answer from {}", self.addr))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {head}"))?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Ok((status, body))
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
