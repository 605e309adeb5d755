//! Pure helpers for matching IP pools by CIDR and naming new ones.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Parse a CIDR and normalise it to its network address (`10.1.2.3/16` → `10.1.0.0/16`), so
/// that pools compare by the range they cover, not by spelling.
pub fn parse_cidr(text: &str) -> Option<IpNetwork> {
    let net: IpNetwork = text.trim().parse().ok()?;
    IpNetwork::new(net.network(), net.prefix()).ok()
}

/// Whether `outer` covers all of `inner` (same family).
pub fn contains(outer: IpNetwork, inner: IpNetwork) -> bool {
    let same_family = matches!(
        (outer.network(), inner.network()),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
    );
    same_family && outer.prefix() <= inner.prefix() && outer.contains(inner.network())
}

/// Whether two ranges share any address.
pub fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    contains(a, b) || contains(b, a)
}

/// A DNS-1123-safe rendering of a CIDR: `10.1.0.0/16` → `10-1-0-0-16`, as Calico names IPAM
/// blocks.
pub fn cidr_slug(cidr: IpNetwork) -> String {
    cidr.to_string()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The name for a new pool: the rendered name if no pool has it, else the rendered name
/// followed by the CIDR (`ipv4-10-2-0-0-16`), else that with a counter.
pub fn choose_pool_name(rendered: &str, cidr: IpNetwork, taken: &BTreeSet<String>) -> String {
    if !taken.contains(rendered) {
        return rendered.to_string();
    }
    let derived = format!("{rendered}-{}", cidr_slug(cidr));
    if !taken.contains(&derived) {
        return derived;
    }
    let mut n: u32 = 2;
    loop {
        let candidate = format!("{derived}-{n}");
        if !taken.contains(&candidate) {
            return candidate;
        }
        n = n.saturating_add(1);
    }
}
