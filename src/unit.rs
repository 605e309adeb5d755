//! The unit a hook runs for: its Juju name and the facts about it that rendering and
//! validation need.

use std::net::IpAddr;

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
    /// The prefix length of the binding's subnet (`24` of `10.0.0.0/24`), when Juju gave it.
    pub address_prefix: Option<u8>,
    pub leader: bool,
    /// The cluster's Node count, when the leader read it (for Typha); `None` otherwise.
    pub cluster_nodes: Option<u64>,
}

/// A unit name that is not `<application>/<N>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unit name {0:?}: expected <application>/<N>, e.g. calico/0 (lowercase application name, \
     non-negative unit number)"
)]
pub struct UnitNameError(pub String);

/// Parse `calico/N` (any valid Juju application name) into the unit id `N`.
pub fn parse_unit_name(name: &str) -> Result<u32, UnitNameError> {
    let err = || UnitNameError(name.to_string());
    let (app, id) = name.split_once('/').ok_or_else(err)?;
    let app_ok = app.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && !app.ends_with('-')
        && !app.contains("--")
        && app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let id_ok = !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit());
    // The owner label value `<app>-<N>` must fit a label value (63 characters).
    if !app_ok || !id_ok || name.len() > 63 {
        return Err(err());
    }
    id.parse::<u32>().map_err(|_| err())
}

impl UnitFacts {
    /// Facts for unit `unit_name` (`calico/N`).
    pub fn new(
        unit_name: &str,
        node_name: impl Into<String>,
        address: IpAddr,
        leader: bool,
    ) -> Result<UnitFacts, UnitNameError> {
        let unit_id = parse_unit_name(unit_name)?;
        Ok(UnitFacts {
            unit_name: unit_name.to_string(),
            unit_id,
            node_name: node_name.into(),
            address,
            address_prefix: None,
            leader,
            cluster_nodes: None,
        })
    }

    /// The same facts with the cluster's Node count (the leader's, for Typha).
    pub(crate) fn with_cluster_nodes(mut self, nodes: Option<u64>) -> UnitFacts {
        self.cluster_nodes = nodes;
        self
    }

    /// The same facts with the binding subnet's prefix length (ignored when too long for the
    /// address family).
    pub fn with_prefix(mut self, prefix: Option<u8>) -> UnitFacts {
        let max = if self.address.is_ipv4() { 32 } else { 128 };
        self.address_prefix = prefix.filter(|p| *p <= max);
        self
    }

    /// The address calico-node must use for BGP on this node, as Calico stores it
    /// (`10.0.0.5/24`; `/32` when the binding's prefix is unknown). `None` for an IPv6
    /// binding: the charm sets only the IPv4 address (see [`crate::render::node_address_annotations`]).
    pub(crate) fn bgp_ipv4_address(&self) -> Option<String> {
        match self.address {
            IpAddr::V4(ip) => Some(format!("{ip}/{}", self.address_prefix.unwrap_or(32))),
            IpAddr::V6(_) => None,
        }
    }

    /// `calico-0` for `calico/0`: the owner label value and the BGPPeer name prefix.
    pub fn owner(&self) -> String {
        self.unit_name.replace('/', "-")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(unit: &str, address: &str) -> UnitFacts {
        let ip = address.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        match UnitFacts::new(unit, "node", ip, false) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(parse_unit_name("calico/0"), Ok(0));
        assert_eq!(parse_unit_name("calico-ipv6/12"), Ok(12));
        for bad in [
            "calico",
            "calico/",
            "calico/x",
            "Calico/0",
            "/0",
            "calico/0/1",
            "calico/-1",
            "1calico/0",
            "calico-/0",
        ] {
            assert!(parse_unit_name(bad).is_err(), "{bad}");
        }
        assert_eq!(facts("calico/3", "10.0.0.1").owner(), "calico-3");
    }
}
