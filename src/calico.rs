//! Calico's `crd.projectcalico.org/v1` resources as typed kube custom resources.
//!
//! Only the fields the charm writes or reads are modelled; every field is optional on the
//! wire so that server-side apply sends exactly the fields the charm owns. Kinds are
//! cluster-scoped, as upstream declares them.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group the charm writes (Calico's KDD storage group).
pub(crate) const GROUP: &str = "crd.projectcalico.org";
/// The API version the charm writes.
pub(crate) const VERSION: &str = "v1";
/// `apiVersion` of every Calico object the charm writes.
pub(crate) const API_VERSION: &str = "crd.projectcalico.org/v1";

/// Label every object the charm writes carries.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "calico-charm";
/// Label naming the unit that owns a per-unit object (`calico-0` for `calico/0`).
pub const UNIT_LABEL: &str = "calico.juju.is/unit";
/// The labels that mark an object as the charm's: [`MANAGED_BY_LABEL`], and for a per-unit
/// object (a unit's BGP peers) [`UNIT_LABEL`] naming its owner. The one place they are
/// made. Rendering sets them on every object it renders and the planner applies them as
/// rendered; converge and the agent select by them.
pub fn charm_labels(owner: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    if let Some(owner) = owner {
        labels.insert(UNIT_LABEL.to_string(), owner.to_string());
    }
    labels
}

/// Field manager used for server-side apply.
pub(crate) const FIELD_MANAGER: &str = "calico-charm";

/// Node annotation holding the node's AS number (Calico KDD).
pub const AS_NUMBER_ANNOTATION: &str = "projectcalico.org/ASNumber";
/// Node annotation holding the node's route reflector cluster ID (Calico KDD).
pub const RR_CLUSTER_ID_ANNOTATION: &str = "projectcalico.org/RouteReflectorClusterID";
/// Every Node annotation the charm may set and removes when it does not want it.
pub const NODE_ANNOTATIONS: [&str; 2] = [AS_NUMBER_ANNOTATION, RR_CLUSTER_ID_ANNOTATION];
/// Node annotation holding the node's BGP address (`spec.bgp.ipv4Address`), with prefix.
pub(crate) const IPV4_ADDRESS_ANNOTATION: &str = "projectcalico.org/IPv4Address";
/// Node annotations the charm sets but never removes: calico-node owns them too (it writes
/// its own value when it starts on a node without one), so a unit that stops wanting one
/// leaves calico-node's choice in place.
pub(crate) const NODE_SET_ONLY_ANNOTATIONS: [&str; 1] = [IPV4_ADDRESS_ANNOTATION];

/// Whether the charm reads and sets this Node annotation ([`NODE_ANNOTATIONS`] or
/// [`NODE_SET_ONLY_ANNOTATIONS`]).
pub(crate) fn is_charm_node_annotation(key: &str) -> bool {
    NODE_ANNOTATIONS.contains(&key) || NODE_SET_ONLY_ANNOTATIONS.contains(&key)
}

/// Spec of an `IPPool`.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "IPPool",
    plural = "ippools"
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
}

/// Spec of a `BGPPeer`.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "BGPPeer",
    plural = "bgppeers"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// int32 on the wire, as Calico's CRD declares it (larger values are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub as_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
}

/// Spec of a `BGPConfiguration`.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// int32 on the wire, as Calico's CRD declares it (larger values are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub as_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_cluster_ips: Option<Vec<ServiceIpBlock>>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_external_ips: Option<Vec<ServiceIpBlock>>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_load_balancer_ips: Option<Vec<ServiceIpBlock>>,
}

/// One entry of a BGPConfiguration's service IP lists: `{cidr: 10.96.0.0/12}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ServiceIpBlock {
    pub cidr: String,
}

/// Spec of an `IPAMBlock` (read-only for the charm: it tells whether a pool still has
/// allocated addresses).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "IPAMBlock",
    plural = "ipamblocks"
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    pub cidr: String,
    #[serde(default)]
    pub allocations: Vec<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
}

impl IPAMBlockSpec {
    /// Whether any address of the block is still allocated.
    pub fn in_use(&self) -> bool {
        self.allocations.iter().any(Option::is_some)
    }
}

/// Spec of a `CalicoNodeStatus` (Calico 3.22 or later): which reports calico-node writes back
/// for one node, and how often. The charm keeps one per unit, for its node, requesting the
/// `BGP` class only ([`crate::nodestatus`]).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "CalicoNodeStatus",
    plural = "caliconodestatuses",
    status = "CalicoNodeStatusStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct CalicoNodeStatusSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "int32"))]
    pub update_period_seconds: Option<u32>,
}

/// What calico-node reports in a `CalicoNodeStatus` (the parts the charm reads).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CalicoNodeStatusStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
}

/// `status.bgp`: one entry per BGP session BIRD has configured.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBgpStatus {
    #[serde(default, rename = "peersV4", skip_serializing_if = "Option::is_none")]
    pub peers_v4: Option<Vec<BgpPeerStatus>>,
    #[serde(default, rename = "peersV6", skip_serializing_if = "Option::is_none")]
    pub peers_v6: Option<Vec<BgpPeerStatus>>,
}

/// One session as calico-node reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeerStatus {
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// BIRD's session state: `Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm`,
    /// `Established`, `Close`, or empty when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `NodeMesh`, `NodePeer` or `GlobalPeer`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}
