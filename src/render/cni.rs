//! The CNI config document `10-calico.conflist` (pure; [`crate::host::cni`] writes it).
//!
//! Two writers produce this file and must agree byte for byte, so that neither keeps
//! rewriting what the other wrote:
//! - every unit writes it with [`crate::host::cni::write_conflist`] from [`render`] (pure), so the node has a
//!   CNI config consistent with the charm's options even before calico-node runs;
//! - calico-node's `install-cni` init container renders the same text from the template
//!   [`template`] (carried in the `calico-config` ConfigMap, key `cni_network_config`),
//!   replacing its placeholders `__KUBERNETES_NODE_NAME__`, `__CNI_MTU__` and
//!   `__KUBECONFIG_FILEPATH__` by plain text substitution.
//!
//! [`render`] is exactly that substitution applied to [`template`], which keeps the two equal
//! (plus the newline the shell installer of Calico before 3.16 appends; the template then
//! has none, so the file ends in one newline either way).

use ipnetwork::IpNetwork;
use serde_json::json;

use crate::config::CharmConfig;

/// Name of the file in the CNI config directory.
pub(crate) const CONFLIST_NAME: &str = "10-calico.conflist";
/// Where the container runtime reads CNI configs.
pub(crate) const DEFAULT_CNI_DIR: &str = "/etc/cni/net.d";
/// The kubeconfig Calico's CNI plugin uses; `install-cni` writes it (with a token for the
/// `calico-cni-plugin` service account) next to the conflist.
pub(crate) const CNI_KUBECONFIG: &str = "/etc/cni/net.d/calico-kubeconfig";
/// Where the Calico CNI plugin logs (the DaemonSet mounts it from the host).
pub(crate) const CNI_LOG_FILE: &str = "/var/log/calico/cni/cni.log";
/// Name of the CNI network.
pub(crate) const NETWORK_NAME: &str = "k8s-pod-network";
/// CNI spec version of the conflist (Calico 3.7 and later, as in Calico v3.32.1's
/// `manifests/calico.yaml`).
pub(crate) const CNI_VERSION: &str = "0.3.1";
/// CNI spec version of the conflist for Calico 3.6.x: the value of the v3.6 template
/// (`_includes/v3.6/manifests/calico-config.yaml` in projectcalico/calico).
pub(crate) const CNI_VERSION_V3_6: &str = "0.3.0";

/// The CNI spec version for the configured Calico release.
pub(crate) fn cni_version(config: &CharmConfig) -> &'static str {
    if crate::config::release::node_version(config).at_least(crate::config::release::AFTER_V3_6) {
        CNI_VERSION
    } else {
        CNI_VERSION_V3_6
    }
}

/// `install-cni` placeholder for the node name.
pub(crate) const PLACEHOLDER_NODE_NAME: &str = "__KUBERNETES_NODE_NAME__";
/// `install-cni` placeholder for the MTU (a bare JSON number after substitution).
pub(crate) const PLACEHOLDER_MTU: &str = "__CNI_MTU__";
/// `install-cni` placeholder for the kubeconfig path.
pub(crate) const PLACEHOLDER_KUBECONFIG: &str = "__KUBECONFIG_FILEPATH__";

/// File mode of the conflist.
pub(crate) const CONFLIST_MODE: u32 = 0o644;

/// Whether the config asks for IPv4 and IPv6 pod addresses.
fn families(config: &CharmConfig) -> (bool, bool) {
    let v4 = config.cidrs.iter().any(IpNetwork::is_ipv4);
    let v6 = config.cidrs.iter().any(IpNetwork::is_ipv6);
    (v4, v6)
}

/// The MTU written into the CNI config: the veth MTU; when unset, 0 from Calico 3.17
/// (auto-detection: the plugin then uses the MTU Felix detected), 1440 before (see
/// [`crate::render::mtu::effective_mtu`]).
pub fn cni_mtu(config: &CharmConfig) -> u32 {
    crate::render::mtu::effective_mtu(config)
}

/// Whether `install-cni` appends a newline to the template when it writes the file: the
/// shell installer of Calico before 3.16 writes it with a here-document
/// (`cat >$TMP_CONF <<EOF` / `${CNI_NETWORK_CONFIG}` / `EOF` in
/// `k8s-install/scripts/install-cni.sh`, projectcalico/cni-plugin), which ends in a newline
/// of its own; the Go installer writes the substituted template as it is.
fn installer_appends_newline(config: &CharmConfig) -> bool {
    !crate::config::release::node_version(config).at_least(crate::config::release::GO_CNI_INSTALLER)
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
pub(crate) fn template_for(config: &CharmConfig, etcd: Option<&CniEtcd>) -> String {
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
