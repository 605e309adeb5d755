//! Calico's etcd v3 datastore, reached over the `etcd` relation.
//!
//! - [`EtcdConfig`]: what the etcd charm publishes on the `etcd` interface (checked, pure);
//! - [`client`]: the etcd v3 client (HTTPS with the relation's client certificate);
//! - [`layout`]: Calico's etcdv3 key layout and value encoding (pure).
//!
//! What the etcd charm publishes (`charmed-kubernetes/layer-etcd` `src/reactive/etcd.py`,
//! `send_cluster_connection_details`, through `juju-solutions/interface-etcd`
//! `provides.py`): on each of its units' relation data `connection_string` (comma-separated
//! `https://<address>:<port>`, every member), `version` (etcd's), and `client_cert`,
//! `client_key`, `client_ca` (PEM text).

pub mod client;
pub mod datastore;
pub mod layout;
pub mod relation;
pub mod store;

use secrecy::{ExposeSecret, SecretString};

use crate::problems::Cause;

pub use client::{Compare, EtcdClient, EtcdError, EtcdSettings, Kv, Op, TxnResult};

/// The relation endpoint (metadata.yaml `requires: etcd`).
pub(crate) const ENDPOINT: &str = "etcd";

/// Relation keys the etcd charm sets.
pub(crate) const KEY_CONNECTION_STRING: &str = "connection_string";
pub(crate) const KEY_CLIENT_CERT: &str = "client_cert";
pub(crate) const KEY_CLIENT_KEY: &str = "client_key";
pub(crate) const KEY_CLIENT_CA: &str = "client_ca";
pub(crate) const KEY_VERSION: &str = "version";

/// One etcd client URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `https://host:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.authority())
    }
}

/// Why the relation's data cannot be used. Worded as the status words it
/// ([`Cause::EtcdIncomplete`], [`Cause::EtcdRelationInvalid`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelationDataError {
    /// Keys not published yet (the etcd charm sets them once its cluster is up).
    #[error("{}", Cause::EtcdIncomplete(.0.clone()))]
    Missing(Vec<&'static str>),
    /// A value that cannot work as given.
    #[error("{}", Cause::EtcdRelationInvalid(.0.clone()))]
    Invalid(String),
}

/// What the etcd relation gives: endpoints and TLS credentials. `Debug` leaves the key out.
#[derive(Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<Endpoint>,
    /// The connection string as published (for workloads and calicoctl).
    pub connection_string: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: SecretString,
    /// etcd's version as published (may be empty).
    pub version: String,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl PartialEq for EtcdConfig {
    fn eq(&self, other: &Self) -> bool {
        self.connection_string == other.connection_string
            && self.ca_pem == other.ca_pem
            && self.cert_pem == other.cert_pem
            && self.key_pem.expose_secret() == other.key_pem.expose_secret()
            && self.version == other.version
    }
}

/// Parse a connection string: comma-separated `https://host:port` URLs (a path, if any, is
/// ignored). Plain `http://` is refused: the relation's client certificate would be unused
/// and Calico's data would cross the network in the clear.
pub(crate) fn parse_connection_string(text: &str) -> Result<Vec<Endpoint>, RelationDataError> {
    let invalid = |m: String| RelationDataError::Invalid(m);
    let mut endpoints = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let shown: String = part.chars().take(80).collect();
        let rest = part.strip_prefix("https://").ok_or_else(|| {
            invalid(format!(
                "connection_string entry {shown:?} is not an https:// URL"
            ))
        })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(invalid(format!(
                "connection_string entry {shown:?} carries user information"
            )));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| invalid(format!("connection_string entry {shown:?}: bad IPv6")))?;
            let port = after.strip_prefix(':').unwrap_or("2379");
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (authority.to_string(), "2379"),
            }
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(format!("connection_string entry {shown:?}: bad port")))?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
        {
            return Err(invalid(format!(
                "connection_string entry {shown:?}: bad host"
            )));
        }
        endpoints.push(Endpoint { host, port });
    }
    if endpoints.is_empty() {
        return Err(RelationDataError::Missing(vec![KEY_CONNECTION_STRING]));
    }
    Ok(endpoints)
}

/// The relation data of one etcd unit, as `key -> value`, into an [`EtcdConfig`]. The key
/// value is registered for redaction as soon as it is read.
pub fn from_relation(
    data: &std::collections::BTreeMap<String, String>,
) -> Result<EtcdConfig, RelationDataError> {
    let get = |k: &str| data.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(key) = get(KEY_CLIENT_KEY) {
        crate::redact::register_secret(key);
    }
    let missing: Vec<&'static str> = [
        KEY_CONNECTION_STRING,
        KEY_CLIENT_CERT,
        KEY_CLIENT_KEY,
        KEY_CLIENT_CA,
    ]
    .into_iter()
    .filter(|k| get(k).is_none())
    .collect();
    if !missing.is_empty() {
        return Err(RelationDataError::Missing(missing));
    }
    let connection_string = get(KEY_CONNECTION_STRING).unwrap_or_default().to_string();
    let endpoints = parse_connection_string(&connection_string)?;
    let pem = |k: &str| -> Result<String, RelationDataError> {
        let v = get(k).unwrap_or_default();
        if !v.contains("-----BEGIN ") {
            return Err(RelationDataError::Invalid(format!("{k} is not PEM")));
        }
        Ok(format!("{v}\n"))
    };
    Ok(EtcdConfig {
        endpoints,
        connection_string: endpoints_string(&connection_string),
        ca_pem: pem(KEY_CLIENT_CA)?,
        cert_pem: pem(KEY_CLIENT_CERT)?,
        key_pem: SecretString::from(pem(KEY_CLIENT_KEY)?),
        version: get(KEY_VERSION).unwrap_or_default().to_string(),
    })
}

/// The connection string without blanks around its entries.
fn endpoints_string(text: &str) -> String {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn connection_strings_as_the_etcd_charm_writes_them() {
        let e = parse_connection_string("https://10.0.0.5:2379,https://10.0.0.6:2379").unwrap();
        assert_eq!(
            e,
            vec![
                Endpoint {
                    host: "10.0.0.5".into(),
                    port: 2379
                },
                Endpoint {
                    host: "10.0.0.6".into(),
                    port: 2379
                }
            ]
        );
        let v6 = parse_connection_string("https://[fd00::5]:2379").unwrap();
        assert_eq!(v6[0].host, "fd00::5");
        assert_eq!(v6[0].url(), "https://[fd00::5]:2379");
        assert_eq!(
            parse_connection_string("https://etcd.example:4001/")
                .unwrap()
                .first()
                .map(|e| e.port),
            Some(4001)
        );
    }

    #[test]
    fn plain_http_bad_ports_and_empty_strings_are_refused() {
        assert!(matches!(
            parse_connection_string("http://10.0.0.5:2379"),
            Err(RelationDataError::Invalid(m)) if m.contains("https://")
        ));
        assert!(matches!(
            parse_connection_string("https://10.0.0.5:99999"),
            Err(RelationDataError::Invalid(m)) if m.contains("port")
        ));
        assert!(matches!(
            parse_connection_string("https://u:p@10.0.0.5:2379"),
            Err(RelationDataError::Invalid(_))
        ));
        assert!(matches!(
            parse_connection_string(" , "),
            Err(RelationDataError::Missing(_))
        ));
    }

    #[test]
    fn missing_keys_are_named_and_the_key_never_shows() {
        let mut data = BTreeMap::new();
        data.insert(
            KEY_CONNECTION_STRING.to_string(),
            "https://10.0.0.5:2379".to_string(),
        );
        let err = from_relation(&data).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Waiting for etcd: no client_cert, client_key, client_ca yet"
        );
        let pem = "-----BEGIN X-----\nAAAA\n-----END X-----";
        for k in [KEY_CLIENT_CERT, KEY_CLIENT_CA] {
            data.insert(k.to_string(), pem.to_string());
        }
        data.insert(
            KEY_CLIENT_KEY.to_string(),
            "-----BEGIN PRIVATE KEY-----\nsecretsecret\n-----END PRIVATE KEY-----".to_string(),
        );
        let config = from_relation(&data).unwrap();
        assert!(!format!("{config:?}").contains("secretsecret"));
        assert_eq!(config.connection_string, "https://10.0.0.5:2379");
    }
}
