//! Typed, validated charm configuration: one file per concern.
//!
//! - [`options`]: config.yaml, the one source of option names, types and defaults; raw values
//!   from Juju or a file, coerced to their declared types.
//! - [`image`], [`cidr`]: the parsers of image references and CIDRs.
//! - [`validate()`]: raw option values to a [`CharmConfig`] or every problem at once.
//! - [`warnings`]: valid but suspicious settings, of the whole config and of one unit.
//! - [`peers`]: what one unit's BGP peers and AS number are under a config.
//! - [`release`], [`support`]: what each Calico release supports, and on which Kubernetes.
//! - [`typha`]: the option `typha`.

pub mod cidr;
pub mod image;
pub mod options;
pub mod peers;
pub mod release;
pub mod support;
pub mod typha;
mod validate;
pub mod warnings;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use crate::asn::AsNumber;
pub use crate::problems::{ConfigError, Warning};
use crate::text::{SHOWN, shorten};

pub use image::Image;
pub(crate) use image::apply_registry;
pub(crate) use peers::{effective_peers, effective_peers_with_source, node_as_number};
pub use validate::validate;
pub use warnings::unit_warnings;

/// IPIP / VXLAN encapsulation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncapMode {
    Always,
    CrossSubnet,
    Never,
}

impl EncapMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EncapMode::Always => "Always",
            EncapMode::CrossSubnet => "CrossSubnet",
            EncapMode::Never => "Never",
        }
    }
    pub fn enabled(self) -> bool {
        self != EncapMode::Never
    }
}

/// One BGP peer: exactly an address and an AS number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    pub address: IpAddr,
    pub as_number: AsNumber,
}

/// The charm's configuration after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharmConfig {
    pub calico_node_image: Image,
    pub calico_policy_image: Image,
    pub ipip: EncapMode,
    pub vxlan: EncapMode,
    pub nat_outgoing: bool,
    /// Normalised CIDRs in configured order, at most one per IP family.
    pub cidrs: Vec<IpNetwork>,
    pub manage_pools: bool,
    pub global_as_number: AsNumber,
    pub subnet_as_numbers: Vec<(IpNetwork, AsNumber)>,
    pub unit_as_numbers: BTreeMap<u32, AsNumber>,
    pub node_to_node_mesh: bool,
    pub global_bgp_peers: Vec<Peer>,
    pub subnet_bgp_peers: Vec<(IpNetwork, Vec<Peer>)>,
    pub unit_bgp_peers: BTreeMap<u32, Vec<Peer>>,
    pub route_reflector_cluster_ids: BTreeMap<u32, Ipv4Addr>,
    pub veth_mtu: Option<u32>,
    /// Service IP ranges to advertise (BGPConfiguration `default`), each in configured order.
    pub bgp_service_cluster_ips: Vec<IpNetwork>,
    pub bgp_service_external_ips: Vec<IpNetwork>,
    pub bgp_service_loadbalancer_ips: Vec<IpNetwork>,
    /// Felix's `IgnoreLooseRPF`.
    pub ignore_loose_rpf: bool,
    /// Turn TX checksum offload off on `vxlan.calico` (only matters with VXLAN).
    pub disable_vxlan_tx_checksumming: bool,
    /// `image-registry`, without a trailing `/`; `None` when empty. The two image fields
    /// above already carry it (see [`apply_registry`]).
    pub image_registry: Option<String>,
    /// `typha`: whether the leader deploys calico-typha ([`typha::TyphaMode`]).
    pub typha: typha::TyphaMode,
}

/// A valid configuration and the warnings it raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub config: CharmConfig,
    pub warnings: Vec<Warning>,
}

impl EncapMode {
    /// Parse `Always`, `CrossSubnet` or `Never`; a near miss gets "did you mean ...".
    pub fn parse(text: &str) -> Result<EncapMode, String> {
        const ALL: [EncapMode; 3] = [EncapMode::Always, EncapMode::CrossSubnet, EncapMode::Never];
        if let Some(m) = ALL.into_iter().find(|m| m.as_str() == text) {
            return Ok(m);
        }
        let norm: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let meant = ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(&norm))
            .or(match norm.as_str() {
                "true" | "yes" | "on" | "enabled" | "enable" => Some(EncapMode::Always),
                "false" | "no" | "off" | "disabled" | "disable" | "none" => Some(EncapMode::Never),
                _ => None,
            });
        let shown = shorten(format!("{text:?}"), SHOWN);
        Err(match meant {
            Some(m) => format!(
                "{shown}: expected one of Always, CrossSubnet, Never (case matters): did you mean {:?}?",
                m.as_str()
            ),
            None => format!("{shown}: expected one of Always, CrossSubnet, Never"),
        })
    }
}

#[cfg(test)]
mod tests;
