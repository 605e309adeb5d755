//! Charm configurations built by hand, shared by the tests that render from one.
//!
//! Included with `#[path = "support/charm_config.rs"] mod charm_config;` by the test files
//! that use it, so the other users of `tests/support/mod.rs` do not compile it.

use std::collections::BTreeMap;

use calico_charm::asn::AsNumber;
use calico_charm::config::{CharmConfig, EncapMode, Image};

/// The defaults of config.yaml, as a validated configuration.
pub fn defaults() -> CharmConfig {
    CharmConfig {
        calico_node_image: Image {
            reference: "docker.io/calico/node:v3.6.1".into(),
        },
        calico_policy_image: Image {
            reference: "docker.io/calico/kube-controllers:v3.6.1".into(),
        },
        ipip: EncapMode::Never,
        vxlan: EncapMode::Never,
        nat_outgoing: true,
        cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        manage_pools: true,
        global_as_number: AsNumber(64512),
        subnet_as_numbers: Vec::new(),
        unit_as_numbers: BTreeMap::new(),
        node_to_node_mesh: true,
        global_bgp_peers: Vec::new(),
        subnet_bgp_peers: Vec::new(),
        unit_bgp_peers: BTreeMap::new(),
        route_reflector_cluster_ids: BTreeMap::new(),
        veth_mtu: None,
        bgp_service_cluster_ips: Vec::new(),
        bgp_service_external_ips: Vec::new(),
        bgp_service_loadbalancer_ips: Vec::new(),
        ignore_loose_rpf: false,
        disable_vxlan_tx_checksumming: true,
        image_registry: None,
        typha: calico_charm::config::typha::TyphaMode::Auto,
    }
}

/// The defaults with Calico v3.32.1 images (the release the reference describes).
pub fn current() -> CharmConfig {
    let mut c = defaults();
    c.calico_node_image.reference = "docker.io/calico/node:v3.32.1".into();
    c.calico_policy_image.reference = "docker.io/calico/kube-controllers:v3.32.1".into();
    c
}
