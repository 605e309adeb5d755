//! The `etcd` relation as this unit sees it, and the credentials it gives written to files of
//! mode 0600 for the CNI plugin and calicoctl.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

use super::{ENDPOINT, EtcdConfig, RelationDataError, from_relation};
use crate::juju::{HookTools, ToolError};
use crate::problems::Cause;

/// What the relation gives this hook.
#[derive(Clone, Debug, PartialEq)]
pub enum EtcdRelation {
    /// No `etcd` relation.
    Absent,
    /// Related, not (fully) published yet: the cause names what is missing.
    Waiting(Cause),
    /// Published, but unusable as given (the cause names the key).
    Invalid(Cause),
    Ready(EtcdConfig),
}

/// Read the relation: the first remote unit that published a connection string (every etcd
/// unit publishes the same data), else the first one with any data.
/// `broken` names a relation being broken this hook (Juju still lists it): it counts as gone.
pub fn read(tools: &impl HookTools, broken: Option<&str>) -> Result<EtcdRelation, ToolError> {
    let Some(rid) = tools
        .relation_ids(ENDPOINT)?
        .into_iter()
        .find(|r| Some(r.as_str()) != broken)
    else {
        return Ok(EtcdRelation::Absent);
    };
    let mut best: Option<std::collections::BTreeMap<String, String>> = None;
    for unit in tools.relation_list(&rid)? {
        let bag = tools.relation_get(&rid, &unit)?;
        let has_connection = bag
            .get(super::KEY_CONNECTION_STRING)
            .is_some_and(|v| !v.trim().is_empty());
        if has_connection {
            best = Some(bag);
            break;
        }
        if best.is_none() && !bag.is_empty() {
            best = Some(bag);
        }
    }
    let Some(bag) = best else {
        return Ok(EtcdRelation::Waiting(Cause::EtcdUnpublished));
    };
    Ok(match from_relation(&bag) {
        Ok(config) => EtcdRelation::Ready(config),
        Err(RelationDataError::Missing(keys)) if keys.len() == 4 => {
            EtcdRelation::Waiting(Cause::EtcdUnpublished)
        }
        Err(RelationDataError::Missing(keys)) => EtcdRelation::Waiting(Cause::EtcdIncomplete(keys)),
        Err(RelationDataError::Invalid(what)) => {
            EtcdRelation::Invalid(Cause::EtcdRelationInvalid(what))
        }
    })
}

/// Environment variable: the directory of the credential files (tests).
pub const DIR_ENV: &str = "CALICO_CHARM_ETCD_DIR";
/// Default directory of the credential files.
pub(crate) const DEFAULT_DIR: &str = "/etc/calico/etcd";
/// File names, as the earlier charm and Calico's manifests name the Secret's keys.
pub(crate) const CA_FILE: &str = "etcd-ca";
pub(crate) const CERT_FILE: &str = "etcd-cert";
pub(crate) const KEY_FILE: &str = "etcd-key";
/// The connection string, beside the credentials, so that `stop`/`remove` (which ask Juju
/// nothing) can reach etcd to clean up.
pub(crate) const ENDPOINTS_FILE: &str = "etcd-endpoints";

/// The credential files' directory: `CALICO_CHARM_ETCD_DIR`, else [`DEFAULT_DIR`].
pub(crate) fn credentials_dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR))
}

/// The three paths (CA, certificate, key) below `dir`.
pub(crate) fn credential_paths(dir: &Path) -> [PathBuf; 3] {
    [dir.join(CA_FILE), dir.join(CERT_FILE), dir.join(KEY_FILE)]
}

/// Write one file with mode 0600 (through a temporary file renamed into place) unless it
/// already holds `content` with that mode. `Ok(true)` when written.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<bool> {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o777 == 0o600
        && fs::read(path).is_ok_and(|old| old == content)
    {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(content)?;
    file.sync_all()?;
    drop(file);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path)?;
    Ok(true)
}

/// Write the relation's CA, certificate and key below `dir` (created 0700), each 0600.
/// `Ok(true)` when any file changed.
pub(crate) fn write_credentials(dir: &Path, config: &EtcdConfig) -> std::io::Result<bool> {
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let [ca, cert, key] = credential_paths(dir);
    let mut changed = write_private(&ca, config.ca_pem.as_bytes())?;
    changed |= write_private(&cert, config.cert_pem.as_bytes())?;
    changed |= write_private(&key, config.key_pem.expose_secret().as_bytes())?;
    changed |= write_private(
        &dir.join(ENDPOINTS_FILE),
        format!("{}\n", config.connection_string).as_bytes(),
    )?;
    Ok(changed)
}

/// The relation's data as the last hook wrote it below `dir` (for `stop`/`remove`); `None`
/// when the files are missing or unusable (the unit never ran in etcd mode).
pub(crate) fn read_credentials(dir: &Path) -> Option<EtcdConfig> {
    let [ca, cert, key] = credential_paths(dir);
    let read = |p: &Path| fs::read_to_string(p).ok();
    let mut data = std::collections::BTreeMap::new();
    data.insert(
        super::KEY_CONNECTION_STRING.to_string(),
        read(&dir.join(ENDPOINTS_FILE))?.trim().to_string(),
    );
    data.insert(super::KEY_CLIENT_CA.to_string(), read(&ca)?);
    data.insert(super::KEY_CLIENT_CERT.to_string(), read(&cert)?);
    data.insert(super::KEY_CLIENT_KEY.to_string(), read(&key)?);
    from_relation(&data).ok()
}

/// Remove the credential files (stop/remove). `Ok(true)` when any was there.
pub(crate) fn remove_credentials(dir: &Path) -> std::io::Result<bool> {
    let mut removed = false;
    let [ca, cert, key] = credential_paths(dir);
    for path in [ca, cert, key, dir.join(ENDPOINTS_FILE)] {
        match fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let _ = fs::remove_dir(dir);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn credentials_are_written_0600_once_and_removed() {
        let dir = std::env::temp_dir().join(format!(
            "calico-charm-etcd-creds-{}",
            super::super::layout::random_uuid()
        ));
        let config = EtcdConfig {
            endpoints: vec![],
            connection_string: "https://10.0.0.1:2379".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nCA\n".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\nCERT\n".into(),
            key_pem: SecretString::from("-----BEGIN PRIVATE KEY-----\nKEY\n"),
            version: String::new(),
        };
        assert!(write_credentials(&dir, &config).unwrap());
        for (path, text) in credential_paths(&dir).iter().zip([
            "-----BEGIN CERTIFICATE-----\nCA\n",
            "-----BEGIN CERTIFICATE-----\nCERT\n",
            "-----BEGIN PRIVATE KEY-----\nKEY\n",
        ]) {
            assert_eq!(fs::read_to_string(path).unwrap(), text);
            assert_eq!(
                fs::metadata(path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(!write_credentials(&dir, &config).unwrap());
        let back = read_credentials(&dir).expect("read back");
        assert_eq!(back.connection_string, "https://10.0.0.1:2379");
        assert_eq!(
            back.key_pem.expose_secret(),
            "-----BEGIN PRIVATE KEY-----\nKEY\n"
        );
        // A file someone made readable is rewritten private.
        let key = dir.join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(write_credentials(&dir, &config).unwrap());
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(remove_credentials(&dir).unwrap());
        assert!(!dir.exists());
        assert!(!remove_credentials(&dir).unwrap());
    }
}
