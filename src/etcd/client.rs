//! A small etcd v3 client: etcd's own JSON gateway (`POST /v3/kv/range|put|deleterange|txn`)
//! over HTTPS with the relation's client certificate.
//!
//! Why the gateway and not gRPC: every Rust gRPC client of etcd (`etcd-client`, `etcd-rs`)
//! generates its code from etcd's `.proto` files at build time with `prost-build`, which needs
//! a `protoc` binary; the gateway is part of every etcd v3 server (on by default since 3.4,
//! the release the etcd charm installs; `/v3beta` on 3.3) and speaks JSON over HTTP/1.1, so
//! this client needs nothing but the TLS and HTTP crates the Kubernetes client already brings
//! (rustls, hyper). The gateway reaches etcd's gRPC server with the server's own certificate;
//! the etcd charm's server certificates carry both `serverAuth` and `clientAuth` (EasyRSA's
//! server type as the easyrsa charm configures it), so it works with `client-cert-auth` on.
//!
//! Every call is bounded: a connect timeout, a per-request timeout, and a budget for the whole
//! hook ([`EtcdSettings`]; never past [`crate::deadline`]). Transient faults (connection
//! refused or reset, timeouts, 5xx) are retried on the next endpoint with a short backoff
//! until the budget runs out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::EtcdConfig;

/// The largest answer read (a range over every IPAM block of a big cluster stays far below).
pub(crate) const MAX_RESPONSE: usize = 64 << 20;

/// Timeouts of the etcd client.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdSettings {
    /// Total time a hook may spend on etcd (every request and retry).
    pub budget: Duration,
    /// TCP connect plus TLS handshake, per endpoint.
    pub connect_timeout: Duration,
    /// One request, answer body included.
    pub request_timeout: Duration,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        EtcdSettings {
            budget: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Environment variable: the etcd budget in seconds (tests; default 30).
pub const BUDGET_ENV: &str = "CALICO_CHARM_ETCD_BUDGET_SECS";
/// Environment variable: one request's timeout in seconds (tests; default 10).
pub const TIMEOUT_ENV: &str = "CALICO_CHARM_ETCD_TIMEOUT_SECS";

impl EtcdSettings {
    /// Defaults overridden by [`BUDGET_ENV`] and [`TIMEOUT_ENV`] (unparsable values ignored).
    pub fn from_env() -> Self {
        let secs = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0 && *v < 3600.0)
                .map(Duration::from_secs_f64)
        };
        let mut settings = EtcdSettings::default();
        if let Some(b) = secs(BUDGET_ENV) {
            settings.budget = b;
        }
        if let Some(t) = secs(TIMEOUT_ENV) {
            settings.request_timeout = t;
            settings.connect_timeout = settings.connect_timeout.min(t);
        }
        settings
    }
}

/// Why an etcd call failed, classified for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered in time (refused, reset, timed out, 5xx) within the budget.
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    /// etcd refused the client certificate (TLS alert) or the request (permission denied).
    #[error("etcd refused the credentials: {0}")]
    Denied(String),
    /// The relation's data cannot work as given: an unparsable certificate or key, a server
    /// certificate the relation's CA does not trust, a connection string that is not https.
    #[error("etcd: {0}")]
    Setup(String),
    /// etcd answered with something else (a bad request, an unreadable answer).
    #[error("etcd: {0}")]
    Other(String),
}

impl EtcdError {
    /// Whether a retry may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, EtcdError::Unavailable(_))
    }
}

/// One key and its value as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision of the key's last change (Calico's `resourceVersion`).
    pub mod_revision: i64,
    pub create_revision: i64,
}

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// A condition of a transaction: the key's mod revision equals `mod_revision` (`0`: the key
/// does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub mod_revision: i64,
}

/// What a transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// Every compare held and the writes were made.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
}

/// An HTTP/1.1 connection to one endpoint.
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An etcd client for one hook. Cheap to share by reference; calls are serialised on one
/// connection (a hook makes a few dozen calls at most).
pub struct EtcdClient {
    tls: Arc<rustls::ClientConfig>,
    endpoints: Vec<super::Endpoint>,
    settings: EtcdSettings,
    started: Instant,
    conn: tokio::sync::Mutex<Option<(usize, Sender)>>,
    /// `/v3` (etcd ≥ 3.4) or `/v3beta` (3.3), found on the first answer.
    api: Mutex<&'static str>,
    /// The endpoint to try first (the last one that answered).
    preferred: Mutex<usize>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn setup(problem: impl Into<String>) -> EtcdError {
    EtcdError::Setup(problem.into())
}

/// A rustls client configuration that trusts only `config`'s CA and presents its client
/// certificate.
fn tls_config(config: &EtcdConfig) -> Result<rustls::ClientConfig, EtcdError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(config.ca_pem.as_bytes()) {
        let cert = cert.map_err(|_| setup("client_ca is not a PEM certificate"))?;
        roots
            .add(cert)
            .map_err(|e| setup(format!("client_ca: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(setup("client_ca holds no PEM certificate"));
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(config.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| setup("client_cert is not a PEM certificate"))?;
    if chain.is_empty() {
        return Err(setup("client_cert holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(config.key_pem.expose_secret().as_bytes())
        .map_err(|_| setup("client_key is not a PEM private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| setup(format!("client_cert and client_key: {e}")))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// A failure of one attempt, before it is classified across endpoints.
enum Attempt {
    /// Try again (another endpoint, or later).
    Transient(String),
    Fatal(EtcdError),
}

/// Classify an I/O error of the TLS connection: a certificate problem is fatal, the rest
/// transient.
fn classify_io(err: &std::io::Error, endpoint: &str) -> Attempt {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Attempt::Fatal(classify_tls(tls, endpoint));
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    Attempt::Transient(format!("{endpoint}: {err}"))
}

fn classify_tls(err: &rustls::Error, endpoint: &str) -> EtcdError {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateRequired
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::DecryptError,
        ) => EtcdError::Denied(format!(
            "{endpoint} rejected the client certificate ({err}): is client_cert signed by etcd's CA?"
        )),
        rustls::Error::InvalidCertificate(reason) => EtcdError::Setup(format!(
            "{endpoint}'s server certificate is not trusted with the relation's client_ca: {reason:?}"
        )),
        other => EtcdError::Setup(format!("TLS with {endpoint}: {other}")),
    }
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

fn unb64(v: Option<&Value>) -> Result<Vec<u8>, EtcdError> {
    match v.and_then(Value::as_str) {
        None => Ok(Vec::new()),
        Some(s) => B64
            .decode(s)
            .map_err(|_| EtcdError::Other("an answer holds invalid base64".into())),
    }
}

/// The first key after every key that starts with `prefix` (etcd's `range_end` of a prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn kv_of(item: &Value) -> Result<Kv, EtcdError> {
    let key = unb64(item.get("key"))?;
    Ok(Kv {
        key: String::from_utf8(key).map_err(|_| EtcdError::Other("a key is not UTF-8".into()))?,
        value: unb64(item.get("value"))?,
        mod_revision: int(item.get("mod_revision")),
        create_revision: int(item.get("create_revision")),
    })
}

impl EtcdClient {
    /// A client for `config` (no connection is made yet). Fails when the certificates or key
    /// cannot be parsed.
    pub fn new(config: &EtcdConfig, settings: EtcdSettings) -> Result<EtcdClient, EtcdError> {
        let tls = tls_config(config)?;
        if config.endpoints.is_empty() {
            return Err(setup("connection_string names no endpoint"));
        }
        Ok(EtcdClient {
            tls: Arc::new(tls),
            endpoints: config.endpoints.clone(),
            settings,
            started: Instant::now(),
            conn: tokio::sync::Mutex::new(None),
            api: Mutex::new("/v3"),
            preferred: Mutex::new(0),
        })
    }

    /// Time left of the budget (and of the hook's deadline).
    fn remaining(&self) -> Duration {
        let own = self.settings.budget.saturating_sub(self.started.elapsed());
        match crate::deadline::remaining() {
            Some(hook) => own.min(hook),
            None => own,
        }
    }

    async fn connect(&self, index: usize) -> Result<Sender, Attempt> {
        let endpoint = &self.endpoints[index];
        let shown = endpoint.url();
        let timeout = self.settings.connect_timeout.min(self.remaining());
        let work = async {
            let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| Attempt::Transient(format!("{shown}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(endpoint.host.clone())
                .map_err(|_| Attempt::Fatal(setup(format!("{shown}: not a host name"))))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| classify_io(&e, &shown))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| Attempt::Transient(format!("{shown}: {e}")))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(sender)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Attempt::Transient(format!(
                "{shown}: no connection within {timeout:?}"
            ))),
        }
    }

    /// One request on one endpoint: the answer's status and body.
    async fn attempt(&self, index: usize, path: &str, body: &[u8]) -> Result<Value, Attempt> {
        let mut guard = self.conn.lock().await;
        let reuse = matches!(&*guard, Some((i, s)) if *i == index && !s.is_closed());
        if !reuse {
            *guard = None;
            let sender = self.connect(index).await?;
            *guard = Some((index, sender));
        }
        let Some((_, sender)) = guard.as_mut() else {
            return Err(Attempt::Transient("no connection".into()));
        };
        let endpoint = &self.endpoints[index];
        let shown = endpoint.url();
        let request = http::Request::post(path)
            .header(http::header::HOST, endpoint.authority())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, crate::USER_AGENT)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| Attempt::Fatal(EtcdError::Other(e.to_string())))?;
        let timeout = self.settings.request_timeout.min(self.remaining());
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| Attempt::Transient(format!("{shown}: {e}")))?;
            let response = sender.send_request(request).await.map_err(|e| {
                // A TLS alert (client certificate refused) arrives on the first read in TLS 1.3.
                let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
                while let Some(c) = cur {
                    if let Some(io) = c.downcast_ref::<std::io::Error>() {
                        return classify_io(io, &shown);
                    }
                    cur = c.source();
                }
                Attempt::Transient(format!("{shown}: {e}"))
            })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| Attempt::Transient(format!("{shown}: reading the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        let (status, bytes) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                *guard = None;
                return Err(e);
            }
            Err(_) => {
                *guard = None;
                return Err(Attempt::Transient(format!(
                    "{shown}: no answer within {timeout:?}"
                )));
            }
        };
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("message")
            .or_else(|| value.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let code = int(value.get("code"));
        let what = format!("{shown}: {status} {message}");
        // gRPC codes: 7 permission denied, 16 unauthenticated; 4, 8, 10, 14 retryable.
        Err(match (status.as_u16(), code) {
            (401 | 403, _) | (_, 7 | 16) => Attempt::Fatal(EtcdError::Denied(what)),
            (404, _) => Attempt::Fatal(EtcdError::Other(format!("{what} (no v3 gateway?)"))),
            (500..=599, _) | (_, 4 | 8 | 10 | 14) | (429, _) => Attempt::Transient(what),
            _ => Attempt::Fatal(EtcdError::Other(what)),
        })
    }

    /// POST `body` to `/v3/<method>`, on each endpoint in turn until one answers, retrying
    /// transient faults within the budget.
    async fn call(&self, method: &str, body: Value) -> Result<Value, EtcdError> {
        let body = serde_json::to_vec(&body).map_err(|e| EtcdError::Other(e.to_string()))?;
        let mut delay = Duration::from_millis(100);
        let mut last = String::from("no endpoint tried");
        let mut switched_api = false;
        loop {
            let first = self.preferred.lock().map(|p| *p).unwrap_or(0);
            for offset in 0..self.endpoints.len() {
                if self.remaining().is_zero() {
                    return Err(EtcdError::Unavailable(last));
                }
                let index = (first + offset) % self.endpoints.len();
                let api = self.api.lock().map(|a| *a).unwrap_or("/v3");
                match self.attempt(index, &format!("{api}/{method}"), &body).await {
                    Ok(answer) => {
                        if let Ok(mut p) = self.preferred.lock() {
                            *p = index;
                        }
                        return Ok(answer);
                    }
                    Err(Attempt::Fatal(EtcdError::Other(m)))
                        if m.contains("404") && !switched_api =>
                    {
                        // etcd 3.3 serves the gateway under /v3beta only.
                        switched_api = true;
                        if let Ok(mut a) = self.api.lock() {
                            *a = "/v3beta";
                        }
                        last = m;
                    }
                    Err(Attempt::Fatal(e)) => return Err(e),
                    Err(Attempt::Transient(m)) => last = m,
                }
            }
            let pause = delay.min(self.remaining());
            if pause.is_zero() {
                return Err(EtcdError::Unavailable(last));
            }
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// The store's current revision (a cheap call that proves etcd answers).
    pub async fn revision(&self) -> Result<i64, EtcdError> {
        let answer = self
            .call(
                "kv/range",
                json!({"key": b64(b"/calico/"), "count_only": true, "limit": 1}),
            )
            .await?;
        Ok(int(answer.pointer("/header/revision")))
    }

    /// One key.
    pub async fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let answer = self
            .call("kv/range", json!({"key": b64(key.as_bytes())}))
            .await?;
        match answer
            .get("kvs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            Some(item) => kv_of(item).map(Some),
            None => Ok(None),
        }
    }

    /// Every key that starts with `prefix`, in key order.
    pub async fn list_prefix(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        let answer = self
            .call(
                "kv/range",
                json!({
                    "key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_end(prefix.as_bytes())),
                }),
            )
            .await?;
        answer
            .get("kvs")
            .and_then(Value::as_array)
            .map(|items| items.iter().map(kv_of).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Every key that starts with `prefix`, keys only (no values).
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, EtcdError> {
        let answer = self
            .call(
                "kv/range",
                json!({
                    "key": b64(prefix.as_bytes()),
                    "range_end": b64(&prefix_end(prefix.as_bytes())),
                    "keys_only": true,
                }),
            )
            .await?;
        answer
            .get("kvs")
            .and_then(Value::as_array)
            .map(|items| items.iter().map(|i| kv_of(i).map(|kv| kv.key)).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Write `ops` only if every compare holds, in one transaction.
    pub async fn txn(&self, compares: &[Compare], ops: &[Op]) -> Result<TxnResult, EtcdError> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| {
                json!({
                    "key": b64(c.key.as_bytes()),
                    "target": "MOD",
                    "result": "EQUAL",
                    "mod_revision": c.mod_revision.to_string(),
                })
            })
            .collect();
        let success: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => {
                    json!({"request_put": {"key": b64(key.as_bytes()), "value": b64(value)}})
                }
                Op::Delete { key } => {
                    json!({"request_delete_range": {"key": b64(key.as_bytes())}})
                }
            })
            .collect();
        let answer = self
            .call(
                "kv/txn",
                json!({"compare": compare, "success": success, "failure": []}),
            )
            .await?;
        Ok(TxnResult {
            succeeded: answer
                .get("succeeded")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            revision: int(answer.pointer("/header/revision")),
        })
    }

    /// Write `value` at `key` only if the key's mod revision is `expected` (`0`: absent).
    /// `Ok(false)`: it changed under us.
    pub async fn put_if(&self, key: &str, value: &[u8], expected: i64) -> Result<bool, EtcdError> {
        self.txn(
            &[Compare {
                key: key.to_string(),
                mod_revision: expected,
            }],
            &[Op::Put {
                key: key.to_string(),
                value: value.to_vec(),
            }],
        )
        .await
        .map(|r| r.succeeded)
    }

    /// Delete `key` only if its mod revision is `expected`. `Ok(false)`: it changed under us
    /// (or is already gone, when `expected` is not 0).
    pub async fn delete_if(&self, key: &str, expected: i64) -> Result<bool, EtcdError> {
        self.txn(
            &[Compare {
                key: key.to_string(),
                mod_revision: expected,
            }],
            &[Op::Delete {
                key: key.to_string(),
            }],
        )
        .await
        .map(|r| r.succeeded)
    }

    /// Write `value` at `key` unconditionally (tests and seeding).
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), EtcdError> {
        self.call(
            "kv/put",
            json!({"key": b64(key.as_bytes()), "value": b64(value)}),
        )
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/calico/"), b"/calico0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn gateway_integers_are_strings_or_numbers() {
        assert_eq!(int(Some(&json!("42"))), 42);
        assert_eq!(int(Some(&json!(7))), 7);
        assert_eq!(int(None), 0);
    }
}
