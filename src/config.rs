//! Typed, validated charm configuration. (Owned by the charm-core work.)

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;

use crate::asn::AsNumber;
use crate::options::RawConfig;

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

/// A validated container image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The reference exactly as configured.
    pub reference: String,
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
}

/// A problem with one option: `Display` is `<option>: <what is wrong and what is expected>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct ConfigError {
    pub option: String,
    pub message: String,
}

/// A valid but suspicious setting, same shape as [`ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct Warning {
    pub option: String,
    pub message: String,
}

/// A valid configuration and the warnings it raised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub config: CharmConfig,
    pub warnings: Vec<Warning>,
}

/// Validate raw option values (defaults already merged in), reporting every problem at once.
pub fn validate(raw: &RawConfig) -> Result<Validated, Vec<ConfigError>> {
    let _ = raw;
    todo!("charm-core: validation")
}
