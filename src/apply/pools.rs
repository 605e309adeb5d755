//! Naming new IP pools (the CIDR helpers they are matched with are [`crate::config::cidr`]).

use std::collections::BTreeSet;

use ipnetwork::IpNetwork;

pub use crate::config::cidr::{contains, normalise_cidr, overlaps};

/// A DNS-1123-safe rendering of a CIDR: `10.1.0.0/16` → `10-1-0-0-16`, as Calico names IPAM
/// blocks.
pub(crate) fn cidr_slug(cidr: IpNetwork) -> String {
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
