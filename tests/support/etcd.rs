//! A real etcd for Calico's etcd datastore: TLS with client-certificate authentication, as
//! the etcd charm runs it (`client-cert-auth: true`, its own CA), on a free 127.0.0.1 port.
//!
//! One per test binary ([`Etcd::shared`]), binary found as the control plane's is
//! ([`super::envtest::assets_dir`]; Debian's `/usr/bin/etcd` from `etcd-server` otherwise). The
//! test makes its own CA, a server certificate (`serverAuth` and `clientAuth`, as the
//! easyrsa charm signs them), a client certificate, and a second CA with a client
//! certificate etcd does not trust. Stopped and its directory removed at exit (the same
//! `atexit` handler and `PR_SET_PDEATHSIG` as the control plane).
//!
//! The harness reads and writes etcd through its own small blocking client of etcd's JSON
//! gateway, independent of the charm's client, so tests check the charm's writes with
//! something the charm did not write.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tokio_rustls::rustls;

use super::envtest::{
    CHILDREN, DIRS, free_port, log_file, random_hex, register_cleanup, spawn_from_keeper, stop_pid,
    tail,
};
use super::tls::base64;

/// How long etcd gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd binary: the control plane's assets, else Debian's etcd-server.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(dir) = super::envtest::assets_dir() {
        return Some(dir.join("etcd"));
    }
    let debian = PathBuf::from("/usr/bin/etcd");
    debian.is_file().then_some(debian)
}

/// Whether etcd tests are skipped (as [`super::envtest::skip`]).
pub fn skip(test: &str) -> bool {
    if etcd_binary().is_some() {
        return false;
    }
    if std::env::var("CALICO_CHARM_SKIP_ENVTEST").as_deref() == Ok("1") {
        eprintln!("skipped {test}: CALICO_CHARM_SKIP_ENVTEST=1 and no etcd binary");
        return true;
    }
    panic!("{}", super::envtest::MISSING);
}

/// PEM certificate and key.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A running etcd with TLS and client-certificate authentication.
pub struct Etcd {
    pub url: String,
    pub addr: SocketAddr,
    peer_url: String,
    pub ca_pem: String,
    pub client: Pair,
    /// A client certificate signed by another CA: etcd refuses it.
    pub wrong_client: Pair,
    /// The other CA (a relation whose client_ca is this does not trust etcd's server).
    pub wrong_ca_pem: String,
    dir: PathBuf,
    binary: PathBuf,
    pid: Mutex<Option<u32>>,
    tls: Arc<rustls::ClientConfig>,
    lock: Mutex<()>,
}

fn ca(name: &str) -> Result<(rcgen::Issuer<'static, KeyPair>, String), String> {
    let err = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((rcgen::Issuer::new(params, key), cert.pem()))
}

fn leaf(issuer: &rcgen::Issuer<'_, KeyPair>, name: &str, server: bool) -> Result<Pair, String> {
    use rcgen::ExtendedKeyUsagePurpose as E;
    let err = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate().map_err(err)?;
    let sans = if server {
        vec!["127.0.0.1".to_string(), "localhost".to_string()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(sans).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // The easyrsa charm signs etcd's server certificates for both (etcd's gateway presents
    // the server certificate as a client to etcd itself).
    params.extended_key_usages = if server {
        vec![E::ServerAuth, E::ClientAuth]
    } else {
        vec![E::ClientAuth]
    };
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok(Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn tls_config(ca_pem: &str, client: &Pair) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client.cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Base64 decoding (standard alphabet, padding optional).
pub fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn range_end(prefix: &str) -> String {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    base64(&end)
}

impl Etcd {
    /// The test binary's etcd, started on first use. Panics (one line) when it cannot start:
    /// callers check [`skip`] first.
    pub fn shared() -> &'static Etcd {
        static ETCD: OnceLock<Result<Etcd, String>> = OnceLock::new();
        match ETCD.get_or_init(|| {
            let binary = etcd_binary().ok_or_else(|| super::envtest::MISSING.to_string())?;
            let mut last = String::new();
            for _ in 0..3 {
                match Etcd::create(&binary) {
                    Ok(etcd) => return Ok(etcd),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }) {
            Ok(etcd) => etcd,
            Err(e) => panic!("etcd: {e}"),
        }
    }

    /// Tests that use etcd take it one at a time (and find it running and empty of Calico's
    /// keys).
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.resume();
        if self.pid.lock().map(|p| p.is_none()).unwrap_or(true) {
            self.start().expect("restart etcd");
        }
        self.wipe();
        guard
    }

    fn create(binary: &Path) -> Result<Etcd, String> {
        let dir = std::env::temp_dir().join(format!("calico-charm-etcd-{}", random_hex()));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        DIRS.lock().map_err(|e| e.to_string())?.push(dir.clone());
        register_cleanup();
        let (issuer, ca_pem) = ca("calico-charm test etcd CA")?;
        let server = leaf(&issuer, "etcd", true)?;
        let client = leaf(&issuer, "calico-charm", false)?;
        let (wrong_issuer, wrong_ca_pem) = ca("another CA")?;
        let wrong_client = leaf(&wrong_issuer, "calico-charm", false)?;
        for (name, text) in [
            ("ca.crt", &ca_pem),
            ("server.crt", &server.cert),
            ("server.key", &server.key),
        ] {
            fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
        }
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let tls = Arc::new(tls_config(&ca_pem, &client)?);
        let etcd = Etcd {
            url: format!("https://127.0.0.1:{port}"),
            addr,
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            ca_pem,
            client,
            wrong_client,
            wrong_ca_pem,
            dir,
            binary: binary.to_path_buf(),
            pid: Mutex::new(None),
            tls,
            lock: Mutex::new(()),
        };
        etcd.start()?;
        Ok(etcd)
    }

    /// Start etcd (again) on the same port and data.
    pub fn start(&self) -> Result<(), String> {
        let log = self.dir.join("etcd.log");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--name=calico")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={}", self.url))
            .arg(format!("--advertise-client-urls={}", self.url))
            .arg(format!("--listen-peer-urls={}", self.peer_url))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url))
            .arg(format!("--initial-cluster=calico={}", self.peer_url))
            .arg(format!(
                "--cert-file={}",
                self.dir.join("server.crt").display()
            ))
            .arg(format!(
                "--key-file={}",
                self.dir.join("server.key").display()
            ))
            .arg("--client-cert-auth")
            .arg(format!(
                "--trusted-ca-file={}",
                self.dir.join("ca.crt").display()
            ))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?);
        let mut child = spawn_from_keeper(cmd)?;
        let pid = child.id();
        CHILDREN.lock().map_err(|e| e.to_string())?.push(pid);
        *self.pid.lock().map_err(|e| e.to_string())? = Some(pid);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.range("/", false).is_ok() {
                std::mem::forget(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("etcd exited ({status}): {}", tail(&log)));
            }
            if Instant::now() >= deadline {
                return Err(format!("etcd not ready: {}", tail(&log)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop etcd (SIGTERM, then SIGKILL): its port refuses connections until [`Etcd::start`].
    pub fn stop(&self) {
        if let Some(pid) = self.pid.lock().ok().and_then(|mut p| p.take()) {
            stop_pid(pid);
            if let Ok(mut children) = CHILDREN.lock() {
                children.retain(|p| *p != pid);
            }
        }
    }

    /// Freeze etcd (SIGSTOP): connections are accepted by the kernel, nothing answers.
    pub fn pause(&self) {
        if let Some(pid) = self.pid.lock().ok().and_then(|p| *p) {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGSTOP);
            }
        }
    }

    /// Undo [`Etcd::pause`].
    pub fn resume(&self) {
        if let Some(pid) = self.pid.lock().ok().and_then(|p| *p) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGCONT);
            }
        }
    }

    /// The relation data the etcd charm publishes for this etcd.
    pub fn relation_data(&self) -> BTreeMap<String, String> {
        self.relation_with(&self.client, &self.ca_pem)
    }

    /// The same with a client certificate etcd does not trust.
    pub fn wrong_cert_relation_data(&self) -> BTreeMap<String, String> {
        self.relation_with(&self.wrong_client, &self.ca_pem)
    }

    /// The relation data for `client` and a CA.
    pub fn relation_with(&self, client: &Pair, ca: &str) -> BTreeMap<String, String> {
        [
            ("connection_string", self.url.clone()),
            ("client_cert", client.cert.clone()),
            ("client_key", client.key.clone()),
            ("client_ca", ca.to_string()),
            ("version", "3.5.1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// One gateway call with the trusted client certificate: the answer's JSON.
    pub fn call(&self, method: &str, body: &Value) -> Result<Value, String> {
        use rustls::pki_types::ServerName;
        let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(self.tls.clone(), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let body = body.to_string();
        let request = format!(
            "POST /v3/{method} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        tls.write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| "no HTTP answer from etcd".to_string())?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{head}\n{rest}"));
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut out = String::new();
            let mut s = rest;
            while let Some((size, more)) = s.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 || more.len() < n {
                    break;
                }
                out.push_str(&more[..n]);
                s = more[n..].strip_prefix("\r\n").unwrap_or(&more[n..]);
            }
            out
        } else {
            rest.to_string()
        };
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    fn range(&self, prefix: &str, whole_prefix: bool) -> Result<Value, String> {
        let mut body = json!({"key": base64(prefix.as_bytes())});
        if whole_prefix {
            body["range_end"] = Value::String(range_end(prefix));
        }
        self.call("kv/range", &body)
    }

    /// Every key under `prefix` with its JSON value (non-JSON values as strings) and mod
    /// revision.
    pub fn dump(&self, prefix: &str) -> BTreeMap<String, (Value, i64)> {
        let answer = self.range(prefix, true).expect("etcd range");
        answer
            .get("kvs")
            .and_then(Value::as_array)
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        let key =
                            String::from_utf8_lossy(&unbase64(kv["key"].as_str().unwrap_or("")))
                                .to_string();
                        let raw = unbase64(kv["value"].as_str().unwrap_or(""));
                        let value = serde_json::from_slice(&raw).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&raw).to_string())
                        });
                        let rev = kv["mod_revision"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        (key, (value, rev))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One key's JSON value.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.dump(key).remove(key).map(|(v, _)| v)
    }

    /// Write `value` (JSON) at `key`.
    pub fn put(&self, key: &str, value: &Value) {
        self.put_raw(key, value.to_string().as_bytes());
    }

    /// Write raw bytes at `key`.
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        self.call(
            "kv/put",
            &json!({"key": base64(key.as_bytes()), "value": base64(value)}),
        )
        .expect("etcd put");
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        self.range("/", false).expect("etcd range")["header"]["revision"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Delete every key under `/calico/`.
    pub fn wipe(&self) {
        self.call(
            "kv/deleterange",
            &json!({"key": base64(b"/calico/"), "range_end": range_end("/calico/")}),
        )
        .expect("etcd wipe");
    }
}
