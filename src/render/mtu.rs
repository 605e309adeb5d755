//! The MTU the charm gives Calico: of the veths, of Felix's tunnels and of the CNI config.

use crate::config::CharmConfig;
use crate::config::release::{self as version, node_version};

/// IPIP header overhead.
pub(crate) const IPIP_OVERHEAD: u32 = 20;
/// VXLAN header overhead (IPv4).
pub(crate) const VXLAN_OVERHEAD: u32 = 50;

/// Calico's veth MTU: `veth-mtu` − 20 with IPIP, − 50 with VXLAN, unchanged otherwise;
/// `None` (Calico's auto-detection) when `veth-mtu` is unset, or smaller than the overhead.
pub fn veth_mtu(config: &CharmConfig) -> Option<u32> {
    let mtu = config.veth_mtu?;
    if config.ipip.enabled() {
        mtu.checked_sub(IPIP_OVERHEAD)
    } else if config.vxlan.enabled() {
        mtu.checked_sub(VXLAN_OVERHEAD)
    } else {
        Some(mtu)
    }
}

/// The MTU Calico's v3.6 manifest uses when none is configured (`veth_mtu: "1440"` in
/// `_includes/v3.6/manifests/calico-config.yaml`); Felix's own IPIP MTU default is the same.
pub(crate) const LEGACY_DEFAULT_MTU: u32 = 1440;

/// The MTU written to `veth_mtu`, Felix's tunnel MTUs and the CNI config: [`veth_mtu`];
/// when unset, 0 (auto-detection) from Calico 3.17, [`LEGACY_DEFAULT_MTU`] before (a 0 there
/// would be taken literally).
pub fn effective_mtu(config: &CharmConfig) -> u32 {
    match veth_mtu(config) {
        Some(m) => m,
        None if node_version(config).at_least(version::MTU_AUTODETECT) => 0,
        None => LEGACY_DEFAULT_MTU,
    }
}
