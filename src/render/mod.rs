//! Pure rendering: (config, unit facts) -> the ordered objects this unit must own.
//!
//! - this module: the Calico objects ([`Desired`]: pools, BGP configuration, peers, the
//!   node's BGP settings);
//! - [`workloads`]: the Kubernetes objects that run Calico (leader only);
//! - [`cni`]: the CNI config document, and [`mtu`] the MTU it and the workloads carry.

pub mod cni;
pub mod etcd;
pub mod mtu;
pub mod workloads;

use std::collections::BTreeMap;

use kube::api::ObjectMeta;

use crate::calico::{
    self, BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec, IPPool, IPPoolSpec,
};
use crate::config::{CharmConfig, EncapMode, Peer, effective_peers, node_as_number};
use crate::unit::UnitFacts;
use workloads::Workloads;

/// What this unit wants of its Kubernetes Node: the Calico annotations it sets. Every key of
/// [`crate::calico::NODE_ANNOTATIONS`] missing here is to be removed from the Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBgp {
    pub node_name: String,
    pub annotations: BTreeMap<String, String>,
}

/// The pools the leader wants (pools are global).
#[derive(Clone, Debug)]
pub enum Pools {
    /// Leave every pool alone (manage-pools false, or this unit is not the leader).
    Unmanaged,
    /// Exactly these pools (matched by CIDR when applied).
    Managed(Vec<IPPool>),
}

/// Everything one unit wants applied, in apply order.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Value of [`crate::calico::UNIT_LABEL`] on this unit's objects (`calico-0`).
    pub owner: String,
    pub pools: Pools,
    /// Leader only.
    pub bgp_configuration: Option<BGPConfiguration>,
    pub peers: Vec<BGPPeer>,
    pub node: NodeBgp,
    /// Leader only: CRDs, RBAC, ConfigMap, calico-node, calico-kube-controllers.
    pub workloads: Option<Workloads>,
    /// This node's `CalicoNodeStatus` (Calico 3.22 or later, [`crate::nodestatus`]).
    pub node_status: Option<crate::calico::CalicoNodeStatus>,
}

/// The BGPPeer name: `calico-0-10.0.0.1-64512` (as the earlier Python charm named them).
pub(crate) fn peer_name(owner: &str, peer: &Peer) -> String {
    format!(
        "{owner}-{}-{}",
        peer.address.to_string().replace(':', "-"),
        peer.as_number
    )
}

fn meta(name: String, owner: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        labels: Some(calico::charm_labels(owner)),
        ..ObjectMeta::default()
    }
}

fn pools(config: &CharmConfig) -> Vec<IPPool> {
    let mut nets = config.cidrs.clone();
    // ipv4 before ipv6, whatever the configured order.
    nets.sort_by_key(|n| n.is_ipv6());
    nets.into_iter()
        .map(|net| {
            let v6 = net.is_ipv6();
            let ipip = if v6 { EncapMode::Never } else { config.ipip };
            IPPool {
                metadata: meta(if v6 { "ipv6" } else { "ipv4" }.to_string(), None),
                spec: IPPoolSpec {
                    cidr: net.to_string(),
                    ipip_mode: Some(ipip.as_str().to_string()),
                    vxlan_mode: Some(config.vxlan.as_str().to_string()),
                    nat_outgoing: Some(config.nat_outgoing),
                    disabled: Some(false),
                    block_size: None,
                    node_selector: None,
                },
            }
        })
        .collect()
}

/// A bgp-service-* option as a BGPConfiguration list; `None` (the field left to others)
/// when the option is empty.
fn service_blocks(nets: &[ipnetwork::IpNetwork]) -> Option<Vec<calico::ServiceIpBlock>> {
    (!nets.is_empty()).then(|| {
        nets.iter()
            .map(|n| calico::ServiceIpBlock {
                cidr: n.to_string(),
            })
            .collect()
    })
}

/// Everything this unit wants applied (pure, deterministic).
pub fn desired(config: &CharmConfig, facts: &UnitFacts) -> Desired {
    let owner = facts.owner();
    let pools = if facts.leader && config.manage_pools {
        Pools::Managed(pools(config))
    } else {
        Pools::Unmanaged
    };
    let bgp_configuration = facts.leader.then(|| BGPConfiguration {
        metadata: meta("default".to_string(), None),
        spec: BGPConfigurationSpec {
            as_number: Some(config.global_as_number.get()),
            node_to_node_mesh_enabled: Some(config.node_to_node_mesh),
            log_severity_screen: None,
            service_cluster_ips: service_blocks(&config.bgp_service_cluster_ips),
            service_external_ips: service_blocks(&config.bgp_service_external_ips),
            service_load_balancer_ips: service_blocks(&config.bgp_service_loadbalancer_ips),
        },
    });
    let peers = effective_peers(config, facts)
        .into_iter()
        .map(|p| BGPPeer {
            metadata: meta(peer_name(&owner, &p), Some(&owner)),
            spec: BGPPeerSpec {
                node: Some(facts.node_name.clone()),
                peer_ip: Some(p.address.to_string()),
                as_number: Some(p.as_number.get()),
                node_selector: None,
                peer_selector: None,
            },
        })
        .collect();
    let mut annotations = BTreeMap::new();
    if let Some(asn) = node_as_number(config, facts) {
        annotations.insert(calico::AS_NUMBER_ANNOTATION.to_string(), asn.to_string());
    }
    if let Some(id) = config.route_reflector_cluster_ids.get(&facts.unit_id) {
        annotations.insert(calico::RR_CLUSTER_ID_ANNOTATION.to_string(), id.to_string());
    }
    annotations.extend(node_address_annotations(config, facts));
    Desired {
        owner,
        pools,
        bgp_configuration,
        peers,
        node: NodeBgp {
            node_name: facts.node_name.clone(),
            annotations,
        },
        workloads: facts.leader.then(|| {
            let plan = workloads::typha::decide(config.typha, facts.cluster_nodes);
            workloads::render_for(config, plan)
        }),
        node_status: crate::nodestatus::supported(crate::render::workloads::node_version(config))
            .then(|| crate::nodestatus::desired(&facts.owner(), &facts.node_name)),
    }
}

/// The Node's BGP address: the unit's cni-binding address, the one subnet-as-numbers and
/// subnet-bgp-peers were matched against, written as `projectcalico.org/IPv4Address` with
/// the binding's prefix. calico-node keeps an address it finds on its Node when its `IP`
/// variable is unset, which is how the DaemonSet runs it for an IPv4 cidr (see
/// `workloads::pods`); so BGP is spoken from the address the charm chose, also on machines
/// with several networks (LP#2037236). Set only when the cidr has an IPv4 network and the
/// binding address is IPv4.
pub(crate) fn node_address_annotations(
    config: &CharmConfig,
    facts: &UnitFacts,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if config.cidrs.iter().any(ipnetwork::IpNetwork::is_ipv4)
        && let Some(address) = facts.bgp_ipv4_address()
    {
        out.insert(calico::IPV4_ADDRESS_ANNOTATION.to_string(), address);
    }
    out
}

/// What a stopping or removed unit wants: nothing of its own (its peers and annotations are
/// pruned), pools and the BGPConfiguration left alone, no workloads.
pub fn stopping(facts: &UnitFacts) -> Desired {
    Desired {
        owner: facts.owner(),
        pools: Pools::Unmanaged,
        bgp_configuration: None,
        peers: Vec::new(),
        node: NodeBgp {
            node_name: facts.node_name.clone(),
            annotations: BTreeMap::new(),
        },
        workloads: None,
        node_status: None,
    }
}

impl NodeBgp {
    /// The core v1 Node carrying exactly the annotations the charm sets.
    pub fn object(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "annotations": self.annotations},
        })
    }
}

impl Desired {
    /// Every object in apply order: the CRDs (so that the output can be applied as it is on
    /// a fresh cluster), pools, BGPConfiguration, peers, the Node, its CalicoNodeStatus, then
    /// the other workloads.
    pub fn objects(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let (crds, workloads) = match &self.workloads {
            Some(w) => (w.crd_objects(), w.objects_without_crds()),
            None => (Vec::new(), Vec::new()),
        };
        out.extend(crds);
        if let Pools::Managed(pools) = &self.pools {
            out.extend(pools.iter().filter_map(|p| serde_json::to_value(p).ok()));
        }
        if let Some(b) = &self.bgp_configuration {
            out.extend(serde_json::to_value(b).ok());
        }
        out.extend(
            self.peers
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok()),
        );
        out.push(self.node.object());
        out.extend(
            self.node_status
                .iter()
                .filter_map(|s| serde_json::to_value(s).ok()),
        );
        out.extend(workloads);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::asn::AsNumber;
    use crate::config::validate;
    use serde_json::json;

    fn config(pairs: &[(&str, serde_json::Value)]) -> CharmConfig {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        match validate(&raw) {
            Ok(v) => v.config,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn facts(unit: &str, address: &str) -> UnitFacts {
        let ip = address.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        match UnitFacts::new(unit, "node", ip, false) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn peers_merge_in_order_skip_self_and_collapse_duplicates() {
        let c = config(&[
            (
                "global-bgp-peers",
                json!("[{address: 10.0.0.9, as-number: 1}, {address: 10.0.0.5, as-number: 1}]"),
            ),
            (
                "subnet-bgp-peers",
                json!(
                    "{10.0.0.0/16: [{address: 10.0.0.8, as-number: 2}], 10.0.0.0/24: [{address: 10.0.0.9, as-number: 1}, {address: 10.0.0.7, as-number: 3}], 10.1.0.0/24: [{address: 10.1.0.1, as-number: 4}]}"
                ),
            ),
            (
                "unit-bgp-peers",
                json!(
                    "{4: [{address: 10.0.0.6, as-number: 5}], 5: [{address: 10.0.0.1, as-number: 6}]}"
                ),
            ),
        ]);
        let got: Vec<String> = effective_peers(&c, &facts("calico/4", "10.0.0.5"))
            .iter()
            .map(|p| format!("{}/{}", p.address, p.as_number))
            .collect();
        assert_eq!(
            got,
            ["10.0.0.9/1", "10.0.0.8/2", "10.0.0.7/3", "10.0.0.6/5"]
        );
    }

    #[test]
    fn peer_names_follow_the_python_charm() {
        let p = Peer {
            address: "10.0.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            as_number: AsNumber(64512),
        };
        assert_eq!(peer_name("calico-0", &p), "calico-0-10.0.0.1-64512");
        let p = Peer {
            address: "fd00::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            as_number: AsNumber(65546),
        };
        assert_eq!(peer_name("calico-12", &p), "calico-12-fd00--1-65546");
    }

    #[test]
    fn node_as_number_prefers_the_unit_then_the_most_specific_subnet() {
        let c = config(&[
            (
                "subnet-as-numbers",
                json!("{10.0.0.0/16: 1, 10.0.0.0/24: 2, 10.0.0.0/20: 3}"),
            ),
            ("unit-as-numbers", json!("{7: 9}")),
        ]);
        assert_eq!(
            node_as_number(&c, &facts("calico/1", "10.0.0.5")),
            Some(AsNumber(2))
        );
        assert_eq!(
            node_as_number(&c, &facts("calico/1", "10.0.9.5")),
            Some(AsNumber(3))
        );
        assert_eq!(
            node_as_number(&c, &facts("calico/1", "10.0.99.5")),
            Some(AsNumber(1))
        );
        assert_eq!(node_as_number(&c, &facts("calico/1", "10.1.0.5")), None);
        assert_eq!(
            node_as_number(&c, &facts("calico/7", "10.0.0.5")),
            Some(AsNumber(9))
        );
    }

    #[test]
    fn only_the_leader_renders_global_objects() {
        let c = config(&[]);
        let mut f = facts("calico/0", "10.0.0.5");
        let d = desired(&c, &f);
        assert!(matches!(d.pools, Pools::Unmanaged));
        assert!(d.bgp_configuration.is_none() && d.workloads.is_none());
        f.leader = true;
        let d = desired(&c, &f);
        assert!(matches!(&d.pools, Pools::Managed(p) if p.len() == 1));
        assert!(d.bgp_configuration.is_some() && d.workloads.is_some());
    }
}
