//! The CNI config file `10-calico.conflist`. (Owned by the Calico-workloads work.)
//!
//! Two writers produce this file and must agree byte for byte, so that neither keeps
//! rewriting what the other wrote:
//! - every unit writes it with [`write_conflist`] from [`render`] (pure), so the node has a
//!   CNI config consistent with the charm's options even before calico-node runs;
//! - calico-node's `install-cni` init container renders the same text from the template
//!   [`template`] (carried in the `calico-config` ConfigMap, key `cni_network_config`),
//!   replacing its placeholders `__KUBERNETES_NODE_NAME__`, `__CNI_MTU__` and
//!   `__KUBECONFIG_FILEPATH__` by plain text substitution.
//!
//! [`render`] is exactly that substitution applied to [`template`], which keeps the two equal
//! (plus the newline the shell installer of Calico before 3.16 appends; the template then
//! has none, so the file ends in one newline either way).
//!
//! The directory is `/etc/cni/net.d`, or the value of the environment variable
//! [`CNI_DIR_ENV`] (`CALICO_CHARM_CNI_DIR`) when set and not empty (for tests).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde_json::json;

use crate::config::CharmConfig;

/// Name of the file in the CNI config directory.
pub const CONFLIST_NAME: &str = "10-calico.conflist";
/// Where the container runtime reads CNI configs.
pub const DEFAULT_CNI_DIR: &str = "/etc/cni/net.d";
/// Environment variable that overrides [`DEFAULT_CNI_DIR`] (for tests).
pub const CNI_DIR_ENV: &str = "CALICO_CHARM_CNI_DIR";
/// The kubeconfig Calico's CNI plugin uses; `install-cni` writes it (with a token for the
/// `calico-cni-plugin` service account) next to the conflist.
pub const CNI_KUBECONFIG: &str = "/etc/cni/net.d/calico-kubeconfig";
/// Where the Calico CNI plugin logs (the DaemonSet mounts it from the host).
pub const CNI_LOG_FILE: &str = "/var/log/calico/cni/cni.log";
/// Name of the CNI network.
pub const NETWORK_NAME: &str = "k8s-pod-network";
/// CNI spec version of the conflist (Calico 3.7 and later, as in the reference).
pub const CNI_VERSION: &str = "0.3.1";
/// CNI spec version of the conflist for Calico 3.6.x: the value of the v3.6 template
/// (`_includes/v3.6/manifests/calico-config.yaml` in projectcalico/calico).
pub const CNI_VERSION_V3_6: &str = "0.3.0";

/// The CNI spec version for the configured Calico release.
pub fn cni_version(config: &CharmConfig) -> &'static str {
    if crate::workloads::node_version(config).at_least(crate::workloads::version::AFTER_V3_6) {
        CNI_VERSION
    } else {
        CNI_VERSION_V3_6
    }
}

/// `install-cni` placeholder for the node name.
pub const PLACEHOLDER_NODE_NAME: &str = "__KUBERNETES_NODE_NAME__";
/// `install-cni` placeholder for the MTU (a bare JSON number after substitution).
pub const PLACEHOLDER_MTU: &str = "__CNI_MTU__";
/// `install-cni` placeholder for the kubeconfig path.
pub const PLACEHOLDER_KUBECONFIG: &str = "__KUBECONFIG_FILEPATH__";

/// File mode of the conflist.
pub const CONFLIST_MODE: u32 = 0o644;

/// Whether the config asks for IPv4 and IPv6 pod addresses.
fn families(config: &CharmConfig) -> (bool, bool) {
    let v4 = config.cidrs.iter().any(IpNetwork::is_ipv4);
    let v6 = config.cidrs.iter().any(IpNetwork::is_ipv6);
    (v4, v6)
}

/// The MTU written into the CNI config: the veth MTU; when unset, 0 from Calico 3.17
/// (auto-detection: the plugin then uses the MTU Felix detected), 1440 before (see
/// [`crate::workloads::effective_mtu`]).
pub fn cni_mtu(config: &CharmConfig) -> u32 {
    crate::workloads::effective_mtu(config)
}

/// Whether `install-cni` appends a newline to the template when it writes the file: the
/// shell installer of Calico before 3.16 writes it with a here-document
/// (`cat >$TMP_CONF <<EOF` / `${CNI_NETWORK_CONFIG}` / `EOF` in
/// `k8s-install/scripts/install-cni.sh`, projectcalico/cni-plugin), which ends in a newline
/// of its own; the Go installer writes the substituted template as it is.
fn installer_appends_newline(config: &CharmConfig) -> bool {
    !crate::workloads::node_version(config).at_least(crate::workloads::version::GO_CNI_INSTALLER)
}

/// The conflist with `install-cni`'s placeholders (pure, deterministic): the value of the
/// ConfigMap key `cni_network_config`.
pub fn template(config: &CharmConfig) -> String {
    template_for(config, None)
}

/// Where the CNI plugin finds Calico's etcd datastore (etcd mode): the endpoints and the
/// credential files the unit writes (the same paths on every node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniEtcd {
    pub endpoints: String,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

/// [`template`] for a datastore: `None` is the Kubernetes datastore; with `etcd` the plugin
/// reads and writes Calico's data in etcd (`etcd_endpoints`, `etcd_*_file` instead of
/// `datastore_type: kubernetes`) and still reads pods from Kubernetes for policy.
pub fn template_for(config: &CharmConfig, etcd: Option<&CniEtcd>) -> String {
    let (v4, v6) = families(config);
    let bool_str = |b: bool| if b { "true" } else { "false" };
    let mut doc = json!({
        "name": NETWORK_NAME,
        "cniVersion": cni_version(config),
        "plugins": [
            {
                "type": "calico",
                "log_level": "info",
                "log_file_path": CNI_LOG_FILE,
                "datastore_type": "kubernetes",
                "nodename": PLACEHOLDER_NODE_NAME,
                "mtu": PLACEHOLDER_MTU,
                "ipam": {
                    "type": "calico-ipam",
                    // Calico's CNI reads these as strings.
                    "assign_ipv4": bool_str(v4),
                    "assign_ipv6": bool_str(v6),
                },
                "policy": {"type": "k8s"},
                "kubernetes": {"kubeconfig": PLACEHOLDER_KUBECONFIG},
            },
            {
                "type": "portmap",
                "snat": true,
                "capabilities": {"portMappings": true},
            },
        ],
    });
    if let (Some(etcd), Some(map)) = (
        etcd,
        doc.pointer_mut("/plugins/0")
            .and_then(serde_json::Value::as_object_mut),
    ) {
        map.remove("datastore_type");
        map.insert("etcd_endpoints".into(), json!(etcd.endpoints));
        map.insert("etcd_key_file".into(), json!(etcd.key_file));
        map.insert("etcd_cert_file".into(), json!(etcd.cert_file));
        map.insert("etcd_ca_cert_file".into(), json!(etcd.ca_file));
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    // The MTU placeholder stands for a number: drop the quotes around it, as install-cni's
    // template does.
    let mut text = text.replace(&format!("\"{PLACEHOLDER_MTU}\""), PLACEHOLDER_MTU);
    // The file ends in exactly one newline, whichever installer writes it.
    if !installer_appends_newline(config) {
        text.push('\n');
    }
    text
}

/// The conflist for a node (pure, deterministic): [`template`] with its placeholders
/// replaced, exactly as `install-cni` replaces them.
pub fn render(config: &CharmConfig, node_name: &str) -> String {
    render_for(config, node_name, None)
}

/// [`render`] for a datastore (see [`template_for`]).
pub fn render_for(config: &CharmConfig, node_name: &str, etcd: Option<&CniEtcd>) -> String {
    // Node names are DNS subdomains; escape anyway so the result stays valid JSON.
    let quoted = serde_json::to_string(node_name).unwrap_or_default();
    let node = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_default();
    let mut text = template_for(config, etcd)
        .replace(PLACEHOLDER_NODE_NAME, node)
        .replace(PLACEHOLDER_MTU, &cni_mtu(config).to_string())
        .replace(PLACEHOLDER_KUBECONFIG, CNI_KUBECONFIG);
    if installer_appends_newline(config) {
        text.push('\n');
    }
    text
}

/// A failure writing the CNI config; `Display` names the path and what failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cannot create CNI config directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read CNI config {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write CNI config {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot replace CNI config {path}: {source}")]
    Rename { path: PathBuf, source: io::Error },
    #[error("cannot set mode of CNI config {path}: {source}")]
    Permissions { path: PathBuf, source: io::Error },
    #[error("cannot remove CNI config {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// The CNI config directory: `$CALICO_CHARM_CNI_DIR` when set and not empty, else
/// `/etc/cni/net.d`.
pub fn cni_dir() -> PathBuf {
    cni_dir_from(std::env::var_os(CNI_DIR_ENV).as_deref())
}

/// [`cni_dir`] given the variable's value (pure).
pub fn cni_dir_from(value: Option<&std::ffi::OsStr>) -> PathBuf {
    match value {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_CNI_DIR),
    }
}

/// Write `content` to `dir/10-calico.conflist` atomically (temporary file in `dir`, fsync,
/// rename, fsync of the directory), mode 0644, only when the content or the mode differs.
/// Returns whether the file changed. Ownership is left to the caller's identity (root when
/// Juju runs the hook).
pub fn write_conflist(dir: &Path, content: &str) -> Result<bool, CniError> {
    remove_stale_temporaries(dir);
    let path = dir.join(CONFLIST_NAME);
    // Compared up to one byte more than the new content: a larger file differs anyway, and
    // one grown huge is never read whole.
    match read_prefix(&path, content.len() as u64 + 1) {
        Ok(existing) if existing == content.as_bytes() => {
            let meta = fs::metadata(&path).map_err(|source| CniError::Read {
                path: path.clone(),
                source,
            })?;
            if meta.permissions().mode() & 0o7777 == CONFLIST_MODE {
                return Ok(false);
            }
            fs::set_permissions(&path, Permissions::from_mode(CONFLIST_MODE))
                .map_err(|source| CniError::Permissions { path, source })?;
            return Ok(true);
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(CniError::Read { path, source }),
    }
    fs::create_dir_all(dir).map_err(|source| CniError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = dir.join(format!("{TEMPORARY_PREFIX}{}", std::process::id()));
    if let Err(e) = write_new(&tmp, content.as_bytes()) {
        let _ = fs::remove_file(&tmp);
        return Err(CniError::Write {
            path: tmp,
            source: e,
        });
    }
    if let Err(source) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(CniError::Rename { path, source });
    }
    // Make the rename durable; a failure here does not undo the (already visible) write.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

/// The prefix of the temporary files [`write_conflist`] writes (`.10-calico.conflist.tmp-<pid>`).
pub const TEMPORARY_PREFIX: &str = ".10-calico.conflist.tmp-";

/// Remove temporary files that earlier hooks, killed while writing, left in `dir`: any
/// [`TEMPORARY_PREFIX`] file but this process's own (hooks of one unit never run at once).
/// Best effort: what cannot be removed now is removed by a later hook.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let own = format!("{TEMPORARY_PREFIX}{}", std::process::id());
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMPORARY_PREFIX)
            && name != own
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// At most `limit` bytes of a file.
fn read_prefix(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Remove `dir/10-calico.conflist` (when the unit goes away). Returns whether a file was
/// removed; a missing file is not an error.
pub fn remove_conflist(dir: &Path) -> Result<bool, CniError> {
    let path = dir.join(CONFLIST_NAME);
    match fs::remove_file(&path) {
        Ok(()) => {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CniError::Remove { path, source }),
    }
}

/// Create `path` afresh (a stale temporary file from a killed hook is replaced) with mode
/// 0644, write `bytes` and fsync.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(CONFLIST_MODE)
        .open(path)?;
    // The umask may have narrowed the mode given at creation.
    f.set_permissions(Permissions::from_mode(CONFLIST_MODE))?;
    f.write_all(bytes)?;
    f.sync_all()
}
