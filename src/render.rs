//! Pure rendering: (config, unit facts) -> the ordered objects this unit must own.
//! (Owned by the charm-core work.)

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::calico::{BGPConfiguration, BGPPeer, IPPool};
use crate::workloads::Workloads;

/// Facts about the unit a hook runs for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitFacts {
    /// `calico/0`
    pub unit_name: String,
    /// `0` for `calico/0`
    pub unit_id: u32,
    /// Kubernetes node name of this machine.
    pub node_name: String,
    /// This unit's address on the `cni` binding.
    pub address: IpAddr,
    pub leader: bool,
}

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
}
