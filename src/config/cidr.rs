//! CIDRs as options spell them: the strict parser (no host bits, no loose forms) and the
//! ranges a pool may not take.

use std::net::{IpAddr, Ipv4Addr};

use crate::text::{SHOWN, shorten};
use ipnetwork::IpNetwork;

/// Parse a CIDR strictly: an address, `/`, a prefix length, no host bits set.
pub(crate) fn parse_cidr_option(text: &str) -> Result<IpNetwork, String> {
    let t = text.trim();
    let shown = shorten(format!("{t:?}"), SHOWN);
    let Some((addr, prefix)) = t.split_once('/') else {
        return Err(format!(
            "{shown}: expected a CIDR like 192.168.0.0/16 (address/prefix length)"
        ));
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Err(format!(
            "{shown}: {:?} is not an IP address; expected a CIDR like 192.168.0.0/16",
            shorten(addr, SHOWN)
        ));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') => p,
        _ => return Err(format!("{shown}: the prefix length must be 0 to {max}")),
    };
    let net = IpNetwork::new(ip, prefix).map_err(|e| format!("{shown}: {e}"))?;
    if net.network() != ip {
        return Err(format!(
            "{shown}: host bits are set: did you mean {}/{prefix}?",
            net.network()
        ));
    }
    IpNetwork::new(net.network(), prefix).map_err(|e| format!("{shown}: {e}"))
}

/// The IPv4 addresses an IPv6 network holds as IPv4-mapped addresses (`::ffff:a.b.c.d`), as
/// an IPv4 network: `None` when it holds none.
pub(super) fn ipv4_mapped(net: IpNetwork) -> Option<IpNetwork> {
    let IpNetwork::V6(v6) = net else {
        return None;
    };
    let mapped_range = IpNetwork::new(
        IpAddr::V6(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0)),
        96,
    )
    .ok()?;
    if !overlaps(net, mapped_range) {
        return None;
    }
    if v6.prefix() < 96 {
        // It holds the whole mapped range: every IPv4 address.
        return IpNetwork::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).ok();
    }
    let v4 = v6.network().to_ipv4_mapped()?;
    IpNetwork::new(IpAddr::V4(v4), v6.prefix() - 96).ok()
}

/// A CIDR as a datastore stores it, read leniently and normalised to its network address
/// (`10.1.2.3/16` → `10.1.0.0/16`), so that pools compare by the range they cover, not by
/// spelling. `None` when it is no CIDR at all. (Options are read by the strict
/// [`parse_cidr_option`].)
pub fn normalise_cidr(text: &str) -> Option<IpNetwork> {
    let net: IpNetwork = text.trim().parse().ok()?;
    IpNetwork::new(net.network(), net.prefix()).ok()
}

/// Whether `outer` covers all of `inner` (same family).
pub fn contains(outer: IpNetwork, inner: IpNetwork) -> bool {
    outer.is_ipv4() == inner.is_ipv4()
        && outer.prefix() <= inner.prefix()
        && outer.contains(inner.network())
}

/// Whether two ranges share any address.
pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    contains(a, b) || contains(b, a)
}

/// Ranges a pool may not overlap, with what they are.
pub(super) fn reserved_ranges() -> impl Iterator<Item = (IpNetwork, &'static str)> {
    [
        ("169.254.0.0/16", "the link-local range 169.254.0.0/16"),
        ("fe80::/10", "the link-local range fe80::/10"),
        ("127.0.0.0/8", "the loopback range 127.0.0.0/8"),
        ("::1/128", "the loopback address ::1/128"),
        ("224.0.0.0/4", "the multicast range 224.0.0.0/4"),
        ("ff00::/8", "the multicast range ff00::/8"),
    ]
    .into_iter()
    .filter_map(|(net, what)| net.parse::<IpNetwork>().ok().map(|n| (n, what)))
}

/// Calico's default block sizes: a pool must be at least this large.
pub(super) const IPV4_BLOCK_PREFIX: u8 = 26;
pub(super) const IPV6_BLOCK_PREFIX: u8 = 122;
