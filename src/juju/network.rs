//! `network-get` data, the unit's bind address, and the Kubernetes node name.

use std::net::IpAddr;

use serde::Deserialize;

/// `network-get <binding> --format=json`, as Juju writes it. Unknown keys are ignored and
/// every key is optional (Juju omits empty ones).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct NetworkInfo {
    #[serde(rename = "bind-addresses", default)]
    pub bind_addresses: Vec<BindAddress>,
    #[serde(rename = "ingress-addresses", default)]
    pub ingress_addresses: Vec<String>,
    #[serde(rename = "egress-subnets", default)]
    pub egress_subnets: Vec<String>,
}

/// One interface of a binding.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct BindAddress {
    #[serde(rename = "interface-name", alias = "interfacename", default)]
    pub interface_name: String,
    #[serde(rename = "mac-address", alias = "macaddress", default)]
    pub mac_address: String,
    #[serde(default)]
    pub addresses: Vec<InterfaceAddress>,
}

/// One address of an interface. Juju 2.9+ writes `value`; older agents wrote `address`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct InterfaceAddress {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub cidr: Option<String>,
}

impl InterfaceAddress {
    /// The address, whichever key carried it, if it parses as an IP.
    pub fn ip(&self) -> Option<IpAddr> {
        self.value
            .as_deref()
            .filter(|v| !v.is_empty())
            .or(self.address.as_deref())
            .and_then(|v| v.trim().parse().ok())
    }
}

/// Whether an interface is a Juju fan bridge, which Calico must not bind to.
pub fn is_fan(interface_name: &str) -> bool {
    interface_name.starts_with("fan-")
}

/// The bind address: the first address of the first interface whose name does not start with
/// `fan-`. `None` when there is no such interface or it has no parseable address.
pub fn bind_address(info: &NetworkInfo) -> Option<IpAddr> {
    info.bind_addresses
        .iter()
        .find(|b| !is_fan(&b.interface_name))
        .and_then(|b| b.addresses.iter().find_map(InterfaceAddress::ip))
}

/// [`bind_address`] with the prefix length of that address's `cidr` (`24` of
/// `10.0.0.0/24`), when Juju gave a parseable one.
pub(crate) fn bind_address_with_prefix(info: &NetworkInfo) -> Option<(IpAddr, Option<u8>)> {
    let iface = info
        .bind_addresses
        .iter()
        .find(|b| !is_fan(&b.interface_name))?;
    iface.addresses.iter().find_map(|a| {
        let ip = a.ip()?;
        let prefix = a
            .cidr
            .as_deref()
            .and_then(crate::config::cidr::normalise_cidr)
            .filter(|net| net.is_ipv4() == ip.is_ipv4() && net.contains(ip))
            .map(|net| net.prefix());
        Some((ip, prefix))
    })
}

/// The Kubernetes node name: `NODENAME` when set (Calico's convention), else the host name,
/// lower-cased as the kubelet does.
pub fn node_name(nodename_env: Option<&str>) -> Option<String> {
    if let Some(name) = nodename_env.map(str::trim).filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    host_name()
}

/// This machine's host name, lower-cased as the kubelet names its Node: the kernel's
/// (`/proc/sys/kernel/hostname`), else `/etc/hostname`. The one reader of it.
pub(crate) fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .find(|s| !s.is_empty())
}

/// Check a Kubernetes node name: a lowercase RFC 1123 subdomain of at most 253 characters.
/// The error says what is wrong (for `NODENAME` in status, for `--node-name` on the CLI).
pub(crate) fn check_node_name(s: &str) -> Result<(), String> {
    let shown = crate::text::shorten(format!("{s:?}"), crate::text::SHOWN);
    let why = if s.is_empty() {
        Some("is empty")
    } else if s.len() > 253 {
        Some("is longer than 253 characters")
    } else if !s.is_ascii() {
        Some("has non-ASCII characters")
    } else if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Some("has upper-case letters (Kubernetes node names are lower case)")
    } else if s.contains('/') {
        Some("contains '/'")
    } else {
        let ok = s.split('.').all(|label| {
            let b = label.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        });
        (!ok).then_some("has characters or labels not allowed in a node name")
    };
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "{shown} {why}: not a Kubernetes node name (lowercase letters, digits, '-' and '.', \
             labels starting and ending alphanumeric, at most 253 characters)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> NetworkInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn skips_fan_interfaces() {
        let info = parse(
            r#"{"bind-addresses":[
                {"mac-address":"","interface-name":"fan-252","addresses":[{"hostname":"","value":"252.0.5.1","cidr":"252.0.0.0/8"}]},
                {"mac-address":"00:16:3e:aa:bb:cc","interface-name":"eth0","addresses":[{"hostname":"","value":"10.0.0.5","cidr":"10.0.0.0/24"},{"hostname":"","value":"10.0.0.6","cidr":"10.0.0.0/24"}]}],
                "egress-subnets":["10.0.0.5/32"],"ingress-addresses":["10.0.0.5"]}"#,
        );
        assert_eq!(bind_address(&info), Some("10.0.0.5".parse().unwrap()));
    }

    #[test]
    fn the_prefix_comes_from_the_chosen_address_s_cidr() {
        let info = parse(
            r#"{"bind-addresses":[
                {"interface-name":"fan-252","addresses":[{"value":"252.0.5.1","cidr":"252.0.0.0/8"}]},
                {"interface-name":"eth1","addresses":[{"value":"10.1.0.5","cidr":"10.1.0.0/24"}]}]}"#,
        );
        assert_eq!(
            bind_address_with_prefix(&info),
            Some(("10.1.0.5".parse().unwrap(), Some(24)))
        );
        // A cidr that is missing, empty, of the other family or not containing the address
        // gives no prefix.
        for cidr in ["", "fd00::/64", "10.9.0.0/24", "x"] {
            let info = parse(&format!(
                r#"{{"bind-addresses":[{{"interface-name":"eth1","addresses":[{{"value":"10.1.0.5","cidr":"{cidr}"}}]}}]}}"#
            ));
            assert_eq!(
                bind_address_with_prefix(&info),
                Some(("10.1.0.5".parse().unwrap(), None)),
                "{cidr:?}"
            );
        }
    }

    #[test]
    fn accepts_the_older_address_key() {
        let info = parse(
            r#"{"bind-addresses":[{"interface-name":"ens3","addresses":[{"address":"fd00::5","cidr":"fd00::/64"}]}]}"#,
        );
        assert_eq!(bind_address(&info), Some("fd00::5".parse().unwrap()));
    }

    #[test]
    fn none_without_a_usable_interface() {
        assert_eq!(bind_address(&parse("{}")), None);
        let only_fan = parse(
            r#"{"bind-addresses":[{"interface-name":"fan-1","addresses":[{"value":"252.0.0.1"}]}]}"#,
        );
        assert_eq!(bind_address(&only_fan), None);
        let garbage =
            parse(r#"{"bind-addresses":[{"interface-name":"eth0","addresses":[{"value":"x"}]}]}"#);
        assert_eq!(bind_address(&garbage), None);
    }

    #[test]
    fn node_names_are_checked_as_kubernetes_names() {
        for ok in ["worker-0", "node.example.com", "a", "0"] {
            assert_eq!(check_node_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("../../api", "contains '/'"),
            ("Worker-0", "upper-case"),
            ("wörker", "non-ASCII"),
            ("-a", "not allowed"),
            ("a..b", "not allowed"),
        ] {
            let err = check_node_name(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(
            check_node_name(&"a".repeat(254))
                .unwrap_err()
                .contains("253")
        );
    }

    #[test]
    fn node_name_prefers_the_environment() {
        assert_eq!(node_name(Some(" worker-3 ")).as_deref(), Some("worker-3"));
        let host = node_name(None);
        if let Ok(raw) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            assert_eq!(host, Some(raw.trim().to_ascii_lowercase()));
        }
    }
}
