//! Typed, validated charm configuration.
//!
//! [`validate`] is a pure function from raw option values to a [`CharmConfig`] or the full
//! list of problems; [`unit_warnings`] adds the warnings that depend on one unit's facts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::asn::AsNumber;
use crate::options::{self, RawConfig, shorten, show};
use crate::render::UnitFacts;

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
    /// Service IP ranges to advertise (BGPConfiguration `default`), each in configured order.
    pub bgp_service_cluster_ips: Vec<IpNetwork>,
    pub bgp_service_external_ips: Vec<IpNetwork>,
    pub bgp_service_loadbalancer_ips: Vec<IpNetwork>,
    /// Felix's `IgnoreLooseRPF`.
    pub ignore_loose_rpf: bool,
    /// Turn TX checksum offload off on `vxlan.calico` (only matters with VXLAN).
    pub disable_vxlan_tx_checksumming: bool,
    /// `image-registry`, without a trailing `/`; `None` when empty. The two image fields
    /// above already carry it (see [`apply_registry`]).
    pub image_registry: Option<String>,
    /// `typha`: whether the leader deploys calico-typha ([`crate::workloads::typha`]).
    pub typha: crate::workloads::typha::TyphaMode,
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

impl EncapMode {
    /// Parse `Always`, `CrossSubnet` or `Never`; a near miss gets "did you mean ...".
    pub fn parse(text: &str) -> Result<EncapMode, String> {
        const ALL: [EncapMode; 3] = [EncapMode::Always, EncapMode::CrossSubnet, EncapMode::Never];
        if let Some(m) = ALL.into_iter().find(|m| m.as_str() == text) {
            return Ok(m);
        }
        let norm: String = text
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let meant = ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(&norm))
            .or(match norm.as_str() {
                "true" | "yes" | "on" | "enabled" | "enable" => Some(EncapMode::Always),
                "false" | "no" | "off" | "disabled" | "disable" | "none" => Some(EncapMode::Never),
                _ => None,
            });
        let shown = shorten(format!("{text:?}"));
        Err(match meant {
            Some(m) => format!(
                "{shown}: expected one of Always, CrossSubnet, Never (case matters): did you mean {:?}?",
                m.as_str()
            ),
            None => format!("{shown}: expected one of Always, CrossSubnet, Never"),
        })
    }
}

impl Image {
    /// Check a container image reference (`[registry[:port]/]path[:tag][@digest]`).
    pub fn parse(text: &str) -> Result<Image, String> {
        let shown = shorten(format!("{text:?}"));
        let fail = |why: &str| {
            Err(format!(
                "{shown}: {why}; expected an image reference like docker.io/calico/node:v3.6.1"
            ))
        };
        if text.is_empty() {
            return Err(
                "must not be empty; expected an image reference like docker.io/calico/node:v3.6.1"
                    .into(),
            );
        }
        if text.chars().any(char::is_whitespace) {
            return fail("contains whitespace");
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (text, None),
        };
        if let Some(d) = digest {
            let Some((algo, hex)) = d.split_once(':') else {
                return fail("the digest after @ must be algorithm:hex");
            };
            let algo_ok = !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            let hex_ok = hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !algo_ok || !hex_ok || (algo == "sha256" && hex.len() != 64) {
                return fail("invalid digest");
            }
        }
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            let b = tag.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 128
                && b.first()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
            if !ok {
                return fail("invalid tag");
            }
        }
        if name.is_empty() || name.len() > 255 {
            return fail("the repository name must be 1 to 255 characters");
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        if parts.len() > 1
            && parts.first().is_some_and(|d| {
                d.contains('.')
                    || d.contains(':')
                    || *d == "localhost"
                    || d.bytes().any(|b| b.is_ascii_uppercase())
            })
        {
            let domain = parts.remove(0);
            if !valid_domain(domain) {
                return fail("invalid registry host");
            }
        }
        for part in parts {
            if !valid_path_component(part) {
                return fail(&format!(
                    "invalid path component {part:?} (lowercase letters, digits and single separators . _ __ -)"
                ));
            }
        }
        Ok(Image {
            reference: text.to_string(),
        })
    }

    /// The tag (`v3.6.1` of `docker.io/calico/node:v3.6.1`), if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        let name_tag = self.reference.split('@').next().unwrap_or_default();
        let last = name_tag.rfind('/').map_or(0, |i| i + 1);
        let tail = name_tag.get(last..)?;
        tail.rfind(':').and_then(|i| tail.get(i + 1..))
    }

    /// The digest (`sha256:...`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.reference.split_once('@').map(|(_, d)| d)
    }

    /// What to show as the application version: the tag, else the digest, else `latest`.
    pub fn version(&self) -> &str {
        self.tag().or_else(|| self.digest()).unwrap_or("latest")
    }
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return false;
        };
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        (
            None,
            after
                .strip_prefix(':')
                .map(Some)
                .unwrap_or(if after.is_empty() { None } else { Some("") }),
        )
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                    && b.first().is_some_and(u8::is_ascii_alphanumeric)
                    && b.last().is_some_and(u8::is_ascii_alphanumeric)
            })
    })
}

fn valid_path_component(part: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = part.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if alnum(&c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-')) {
            return false;
        }
    }
    true
}

/// Parse a CIDR strictly: an address, `/`, a prefix length, no host bits set.
pub fn parse_cidr(text: &str) -> Result<IpNetwork, String> {
    let t = text.trim();
    let shown = shorten(format!("{t:?}"));
    let Some((addr, prefix)) = t.split_once('/') else {
        return Err(format!(
            "{shown}: expected a CIDR like 192.168.0.0/16 (address/prefix length)"
        ));
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Err(format!(
            "{shown}: {:?} is not an IP address; expected a CIDR like 192.168.0.0/16",
            shorten(addr.to_string())
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
fn ipv4_mapped(net: IpNetwork) -> Option<IpNetwork> {
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

fn overlaps(a: IpNetwork, b: IpNetwork) -> bool {
    a.is_ipv4() == b.is_ipv4() && (a.contains(b.network()) || b.contains(a.network()))
}

/// Ranges a pool may not overlap, with what they are.
fn reserved_ranges() -> impl Iterator<Item = (IpNetwork, &'static str)> {
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
const IPV4_BLOCK_PREFIX: u8 = 26;
const IPV6_BLOCK_PREFIX: u8 = 122;

/// Collects every problem while reading options.
struct Check<'a> {
    raw: &'a RawConfig,
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
    /// Peer entries read so far over global-, subnet- and unit-bgp-peers.
    peer_entries: usize,
}

/// The longest value of one option (bytes). The largest configurations within the limits
/// below stay far under it.
pub const MAX_OPTION_BYTES: usize = 512 * 1024;
/// The most BGP peer entries over global-bgp-peers, subnet-bgp-peers and unit-bgp-peers
/// together: so no unit ever has more peers than this (real deployments have a handful).
pub const MAX_PEER_ENTRIES: usize = 1000;
/// The most entries of one YAML map option (subnets or units).
pub const MAX_MAP_ENTRIES: usize = 5000;

impl Check<'_> {
    fn error(&mut self, option: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            option: option.to_string(),
            message: options::one_line(&message.into()),
        });
    }

    fn warn(&mut self, option: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            option: option.to_string(),
            message: options::one_line(&message.into()),
        });
    }

    /// The option's value (or its config.yaml default) coerced to its declared type;
    /// `Some(Value::Null)` when unset without a default.
    fn value(&mut self, option: &str) -> Option<Value> {
        let Some(spec) = options::spec(option) else {
            self.error(option, "not declared in config.yaml");
            return None;
        };
        let v = match self.raw.get(option) {
            Some(v) if !v.is_null() => v,
            _ => match &spec.default {
                Some(d) => d,
                None => return Some(Value::Null),
            },
        };
        match options::coerce(spec.kind, v) {
            Ok(v) => Some(v),
            Err(m) => {
                self.error(option, m);
                None
            }
        }
    }

    fn string(&mut self, option: &str) -> Option<String> {
        match self.value(option)? {
            Value::String(s) if s.len() > MAX_OPTION_BYTES => {
                self.error(
                    option,
                    format!(
                        "is {} bytes long: at most {MAX_OPTION_BYTES} bytes",
                        s.len()
                    ),
                );
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.error(option, "must be set");
                None
            }
        }
    }

    fn boolean(&mut self, option: &str) -> Option<bool> {
        match self.value(option)? {
            Value::Bool(b) => Some(b),
            _ => {
                self.error(option, "must be set to true or false");
                None
            }
        }
    }

    fn image(&mut self, option: &str) -> Option<Image> {
        let s = self.string(option)?;
        Image::parse(&s).map_err(|m| self.error(option, m)).ok()
    }

    fn typha(&mut self, option: &str) -> Option<crate::workloads::typha::TyphaMode> {
        let s = self.string(option)?;
        crate::workloads::typha::TyphaMode::parse(&s)
            .map_err(|m| self.error(option, m))
            .ok()
    }

    fn encap(&mut self, option: &str) -> Option<EncapMode> {
        let s = self.string(option)?;
        EncapMode::parse(&s).map_err(|m| self.error(option, m)).ok()
    }

    fn cidrs(&mut self, option: &str) -> Option<Vec<IpNetwork>> {
        let s = self.string(option)?;
        if s.trim().is_empty() {
            self.error(option, "must not be empty; expected a CIDR like 192.168.0.0/16, or one IPv4 and one IPv6 CIDR separated by a comma");
            return None;
        }
        let before = self.errors.len();
        let mut out: Vec<IpNetwork> = Vec::with_capacity(2);
        for entry in s.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                self.error(
                    option,
                    format!("{:?}: empty entry between commas", shorten(s.clone())),
                );
                continue;
            }
            let net = match parse_cidr(entry) {
                Ok(n) => n,
                Err(m) => {
                    self.error(option, m);
                    continue;
                }
            };
            let (family, room) = if net.is_ipv4() {
                ("IPv4", IPV4_BLOCK_PREFIX)
            } else {
                ("IPv6", IPV6_BLOCK_PREFIX)
            };
            if net.prefix() > room {
                self.error(
                    option,
                    format!("{net}: too small for Calico's default /{room} {family} block: use a prefix of /{room} or shorter"),
                );
            }
            let mapped = ipv4_mapped(net);
            for (range, what) in reserved_ranges() {
                if overlaps(net, range) {
                    self.error(
                        option,
                        format!("{net}: overlaps {what}, which Calico cannot use for pods"),
                    );
                } else if let Some(v4) = mapped
                    && overlaps(v4, range)
                {
                    self.error(
                        option,
                        format!(
                            "{net}: its IPv4-mapped addresses ({v4}) overlap {what}, which Calico cannot use for pods"
                        ),
                    );
                }
            }
            if let Some(prev) = out.iter().find(|p| p.is_ipv4() == net.is_ipv4()) {
                self.error(
                    option,
                    format!("{net}: at most one {family} CIDR (already have {prev})"),
                );
                continue;
            }
            out.push(net);
        }
        (self.errors.len() == before).then_some(out)
    }

    /// CIDRs separated by spaces and/or commas; empty text is an empty list.
    fn cidr_list(&mut self, option: &str) -> Option<Vec<IpNetwork>> {
        let s = self.string(option)?;
        let before = self.errors.len();
        let mut out: Vec<IpNetwork> = Vec::new();
        for entry in s.split(|c: char| c == ',' || c.is_whitespace()) {
            if entry.is_empty() {
                continue;
            }
            match parse_cidr(entry) {
                Ok(net) if out.contains(&net) => {
                    self.error(option, format!("{net} is listed twice"));
                }
                Ok(net) => out.push(net),
                Err(m) => self.error(option, format!("{m}; separate CIDRs with spaces or commas")),
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// `image-registry`: `None` when empty; a trailing `/` is dropped.
    fn image_registry(&mut self, option: &str) -> Option<Option<String>> {
        let s = self.string(option)?;
        let t = s.trim().trim_end_matches('/');
        if t.is_empty() {
            return Some(None);
        }
        let shown = shorten(format!("{s:?}"));
        if t.contains('@')
            || t.rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':') && t.contains('/'))
        {
            self.error(
                option,
                format!("{shown}: a registry has no tag or digest; expected host[:port][/path], e.g. registry.example.com:5000"),
            );
            return None;
        }
        // The registry is valid when an image under it is.
        match Image::parse(&format!("{t}/calico/node:v3.6.1")) {
            Ok(_) => Some(Some(t.to_string())),
            Err(_) => {
                self.error(
                    option,
                    format!("{shown}: expected a registry host[:port][/path], e.g. registry.example.com:5000 or rocks.canonical.com:443/cdk"),
                );
                None
            }
        }
    }

    /// The image `option` pulls under `registry`: an option still at its config.yaml
    /// default is moved to the registry (see [`apply_registry`]); one set to anything else
    /// is used as set.
    fn registry_image(&mut self, option: &str, image: Image, registry: &str) -> Option<Image> {
        let default = options::spec(option)
            .and_then(|s| s.default.as_ref())
            .and_then(Value::as_str);
        if default != Some(image.reference.as_str()) {
            return Some(image);
        }
        let moved = apply_registry(&image, registry);
        Image::parse(&moved)
            .map_err(|m| self.error("image-registry", format!("{option}: {m}")))
            .ok()
    }

    fn as_number_option(&mut self, option: &str) -> Option<AsNumber> {
        // An int option; asdot text is accepted too when it reaches us as a string.
        let v = match self.raw.get(option) {
            Some(Value::String(s)) if s.contains('.') => Value::String(s.clone()),
            _ => self.value(option)?,
        };
        let asn = AsNumber::from_json(&v)
            .map_err(|e| self.error(option, e.to_string()))
            .ok()?;
        self.int32_check(option, "", asn);
        Some(asn)
    }

    /// Calico's CRDs declare `asNumber` (BGPConfiguration, BGPPeer) as int32, and the API
    /// server refuses larger values there, so such an AS is an error where it would land in
    /// one. Node annotations are strings: subnet-as-numbers / unit-as-numbers carry any AS.
    fn int32_check(&mut self, option: &str, place: &str, asn: AsNumber) {
        if !asn.fits_int32() {
            self.error(
                option,
                format!(
                    "{place}AS number {asn} is above 2147483647: Calico's CRDs declare asNumber as int32 \
                     and the Kubernetes API server refuses larger values there; give nodes such an AS \
                     with subnet-as-numbers or unit-as-numbers (Node annotations, which carry any 32-bit AS)"
                ),
            );
        }
    }

    fn veth_mtu(&mut self, option: &str) -> Option<Option<u32>> {
        match self.value(option)? {
            Value::Null => Some(None),
            v => match v.as_i64() {
                Some(n) if (576..=65535).contains(&n) => {
                    if n > 9216 {
                        self.warn(option, format!("{n} is larger than the usual jumbo frame (9216): check the network really carries it"));
                    }
                    u32::try_from(n).ok().map(Some)
                }
                Some(0) => {
                    self.error(option, "0: expected an MTU from 576 to 65535; unset the option to let Calico auto-detect");
                    None
                }
                _ => {
                    self.error(
                        option,
                        format!("{}: expected an MTU from 576 to 65535", show(&v)),
                    );
                    None
                }
            },
        }
    }

    /// Parse a YAML-valued option: `None` on error, `Some(Null)` when empty.
    fn yaml(&mut self, option: &str) -> Option<serde_yaml::Value> {
        let s = self.string(option)?;
        if s.trim().is_empty() {
            return Some(serde_yaml::Value::Null);
        }
        // Bounded before the parser runs (its time grows with the square of the nesting).
        if let Some(problem) = options::yaml_nesting_problem(&s) {
            self.error(option, format!("not valid here: {problem}"));
            return None;
        }
        match serde_yaml::from_str::<serde_yaml::Value>(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(option, format!("not valid YAML: {e}"));
                None
            }
        }
    }

    fn mapping<'v>(
        &mut self,
        option: &str,
        v: &'v serde_yaml::Value,
        shape: &str,
    ) -> Option<Vec<(&'v serde_yaml::Value, &'v serde_yaml::Value)>> {
        match v {
            serde_yaml::Value::Null => Some(Vec::new()),
            serde_yaml::Value::Mapping(m) if m.len() > MAX_MAP_ENTRIES => {
                self.error(
                    option,
                    format!("has {} entries: at most {MAX_MAP_ENTRIES}", m.len()),
                );
                None
            }
            serde_yaml::Value::Mapping(m) => Some(m.iter().collect()),
            other => {
                self.error(
                    option,
                    format!("got {}: expected a YAML map of {shape}", yaml_desc(other)),
                );
                None
            }
        }
    }

    fn subnet_key(&mut self, option: &str, key: &serde_yaml::Value) -> Option<IpNetwork> {
        match key {
            serde_yaml::Value::String(s) => parse_cidr(s)
                .map_err(|m| self.error(option, format!("subnet {m}")))
                .ok(),
            other => {
                self.error(
                    option,
                    format!(
                        "subnet {}: expected a CIDR like 10.0.0.0/24",
                        yaml_desc(other)
                    ),
                );
                None
            }
        }
    }

    fn unit_key(&mut self, option: &str, key: &serde_yaml::Value) -> Option<u32> {
        let id = match key {
            serde_yaml::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_yaml::Value::String(s)
                if !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                s.parse::<u32>().ok()
            }
            _ => None,
        };
        if id.is_none() {
            let hint = match key {
                serde_yaml::Value::String(s) if s.contains('/') => {
                    " (the N of calico/N, without the application name)"
                }
                _ => " (the N of calico/N)",
            };
            self.error(
                option,
                format!(
                    "unit ID {}: expected a non-negative integer{hint}",
                    yaml_desc(key)
                ),
            );
        }
        id
    }

    fn as_number(
        &mut self,
        option: &str,
        place: &str,
        v: &serde_yaml::Value,
        crd: bool,
    ) -> Option<AsNumber> {
        let asn = AsNumber::from_yaml(v)
            .map_err(|e| self.error(option, format!("{place}{e}")))
            .ok()?;
        if crd {
            self.int32_check(option, place, asn);
        }
        Some(asn)
    }

    fn peers(&mut self, option: &str, place: &str, v: &serde_yaml::Value) -> Option<Vec<Peer>> {
        let items = match v {
            serde_yaml::Value::Sequence(s) => s,
            serde_yaml::Value::Null if place.is_empty() => return Some(Vec::new()),
            other => {
                self.error(option, format!("{place}got {}: expected a list of peers, each {{address: IP, as-number: AS}}", yaml_desc(other)));
                return None;
            }
        };
        let seen_before = self.peer_entries;
        self.peer_entries = self.peer_entries.saturating_add(items.len());
        if self.peer_entries > MAX_PEER_ENTRIES {
            // Reported once, on the option where the total passes the limit.
            if seen_before <= MAX_PEER_ENTRIES {
                self.error(
                    option,
                    format!(
                        "{place}more than {MAX_PEER_ENTRIES} BGP peer entries over global-bgp-peers, \
                         subnet-bgp-peers and unit-bgp-peers together: at most {MAX_PEER_ENTRIES}"
                    ),
                );
            }
            return None;
        }
        let before = self.errors.len();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let here = format!("{place}peer {}: ", i + 1);
            let Some(map) = item.as_mapping() else {
                self.error(
                    option,
                    format!(
                        "{here}got {}: expected a map {{address: IP, as-number: AS}}",
                        yaml_desc(item)
                    ),
                );
                continue;
            };
            let mut address = None;
            let mut asn = None;
            let mut ok = true;
            for (k, val) in map {
                match k.as_str() {
                    Some("address") => address = Some(val),
                    Some("as-number") => asn = Some(val),
                    _ => {
                        ok = false;
                        let name = k.as_str().map_or_else(
                            || yaml_desc(k),
                            |s| format!("{:?}", shorten(s.to_string())),
                        );
                        let norm: String = k
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_lowercase()
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .collect();
                        let hint = match norm.as_str() {
                            "asnumber" | "asn" | "as" | "remoteas" | "peeras" => {
                                " (did you mean \"as-number\"?)"
                            }
                            "ip" | "peerip" | "addr" | "ipaddress" | "peeraddress" | "host" => {
                                " (did you mean \"address\"?)"
                            }
                            _ => "",
                        };
                        self.error(option, format!("{here}unknown key {name}{hint}: a peer has exactly \"address\" and \"as-number\""));
                    }
                }
            }
            let address = match address {
                None => {
                    self.error(option, format!("{here}missing \"address\": a peer has exactly \"address\" and \"as-number\""));
                    None
                }
                Some(a) => self.peer_address(option, &here, a),
            };
            let asn = match asn {
                None => {
                    self.error(option, format!("{here}missing \"as-number\": a peer has exactly \"address\" and \"as-number\""));
                    None
                }
                Some(a) => self.as_number(option, &here, a, true),
            };
            if let (Some(address), Some(as_number), true) = (address, asn, ok) {
                out.push(Peer { address, as_number });
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn peer_address(&mut self, option: &str, here: &str, v: &serde_yaml::Value) -> Option<IpAddr> {
        let text = v.as_str();
        match text.map(str::parse::<IpAddr>) {
            // An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is checked as the IPv4 it maps to.
            Some(Ok(ip))
                if ip.to_canonical().is_unspecified()
                    || ip.to_canonical().is_multicast()
                    || ip.to_canonical().is_loopback() =>
            {
                let mapped = if ip.to_canonical() != ip {
                    format!(" (the IPv4 address {})", ip.to_canonical())
                } else {
                    String::new()
                };
                self.error(
                    option,
                    format!(
                        "{here}address {ip}{mapped}: a peer needs a unicast, non-loopback address"
                    ),
                );
                None
            }
            Some(Ok(ip)) => Some(ip),
            _ => {
                let shown =
                    text.map_or_else(|| yaml_desc(v), |t| format!("{:?}", shorten(t.to_string())));
                self.error(option, format!("{here}address {shown}: expected an IPv4 or IPv6 address (no port, no prefix)"));
                None
            }
        }
    }

    fn subnet_as_numbers(&mut self, option: &str) -> Option<Vec<(IpNetwork, AsNumber)>> {
        let doc = self.yaml(option)?;
        let entries = self.mapping(
            option,
            &doc,
            "subnets to AS numbers, e.g. {10.0.0.0/24: 64512}",
        )?;
        let before = self.errors.len();
        let mut out: Vec<(IpNetwork, AsNumber)> = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashSet::new();
        for (k, v) in entries {
            let net = self.subnet_key(option, k);
            let place = net.map(|n| format!("subnet {n}: ")).unwrap_or_default();
            // Node annotations are strings: no int32 limit there.
            let asn = self.as_number(option, &place, v, false);
            if let (Some(net), Some(asn)) = (net, asn) {
                if !seen.insert(net) {
                    self.error(option, format!("subnet {net} is listed twice"));
                    continue;
                }
                out.push((net, asn));
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn unit_as_numbers(&mut self, option: &str) -> Option<BTreeMap<u32, AsNumber>> {
        let doc = self.yaml(option)?;
        let entries = self.mapping(option, &doc, "unit IDs to AS numbers, e.g. {0: 64512}")?;
        let before = self.errors.len();
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let id = self.unit_key(option, k);
            let place = id.map(|n| format!("unit {n}: ")).unwrap_or_default();
            let asn = self.as_number(option, &place, v, false);
            if let (Some(id), Some(asn)) = (id, asn)
                && out.insert(id, asn).is_some()
            {
                self.error(option, format!("unit {id} is listed twice"));
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn global_bgp_peers(&mut self, option: &str) -> Option<Vec<Peer>> {
        let doc = self.yaml(option)?;
        self.peers(option, "", &doc)
    }

    fn subnet_bgp_peers(&mut self, option: &str) -> Option<Vec<(IpNetwork, Vec<Peer>)>> {
        let doc = self.yaml(option)?;
        let entries = self.mapping(option, &doc, "subnets to lists of peers")?;
        let before = self.errors.len();
        let mut out: Vec<(IpNetwork, Vec<Peer>)> = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashSet::new();
        for (k, v) in entries {
            let net = self.subnet_key(option, k);
            let place = net.map(|n| format!("subnet {n}: ")).unwrap_or_default();
            let peers = self.peers(option, &place, v);
            if let (Some(net), Some(peers)) = (net, peers) {
                if !seen.insert(net) {
                    self.error(option, format!("subnet {net} is listed twice"));
                    continue;
                }
                out.push((net, peers));
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn unit_bgp_peers(&mut self, option: &str) -> Option<BTreeMap<u32, Vec<Peer>>> {
        let doc = self.yaml(option)?;
        let entries = self.mapping(option, &doc, "unit IDs to lists of peers")?;
        let before = self.errors.len();
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let id = self.unit_key(option, k);
            let place = id.map(|n| format!("unit {n}: ")).unwrap_or_default();
            let peers = self.peers(option, &place, v);
            if let (Some(id), Some(peers)) = (id, peers)
                && out.insert(id, peers).is_some()
            {
                self.error(option, format!("unit {id} is listed twice"));
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn cluster_ids(&mut self, option: &str) -> Option<BTreeMap<u32, Ipv4Addr>> {
        let doc = self.yaml(option)?;
        let entries = self.mapping(
            option,
            &doc,
            "unit IDs to route reflector cluster IDs, e.g. {0: 0.0.0.0}",
        )?;
        let before = self.errors.len();
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let id = self.unit_key(option, k);
            let cid = match v.as_str().map(parse_dotted_quad) {
                Some(Some(ip)) => Some(ip),
                _ => {
                    let place = id.map(|n| format!("unit {n}: ")).unwrap_or_default();
                    let shown = v
                        .as_str()
                        .map_or_else(|| yaml_desc(v), |t| format!("{:?}", shorten(t.to_string())));
                    self.error(option, format!("{place}cluster ID {shown}: expected a dotted-quad IPv4 address like 0.0.0.1"));
                    None
                }
            };
            if let (Some(id), Some(cid)) = (id, cid)
                && out.insert(id, cid).is_some()
            {
                self.error(option, format!("unit {id} is listed twice"));
            }
        }
        (self.errors.len() == before).then_some(out)
    }
}

/// `reference` pulled from `registry`: the registry host (and any path before the image's
/// last two path components, `calico/node`) replaced, name and tag kept
/// (`docker.io/calico/node:v3.6.1` under `registry.example.com:5000` →
/// `registry.example.com:5000/calico/node:v3.6.1`).
pub fn apply_registry(image: &Image, registry: &str) -> String {
    let reference = image.reference.as_str();
    let parts: Vec<&str> = reference.split('/').collect();
    let keep = parts.len().min(2);
    let tail = parts[parts.len() - keep..].join("/");
    format!("{}/{tail}", registry.trim_end_matches('/'))
}

/// The first Calico release with each option the charm renders for a release; options set
/// while the configured release (the `calico-node-image` tag) lacks them are errors. Sources:
/// docs/workloads-versions.md.
fn release_errors(config: &CharmConfig, c: &mut Check<'_>) {
    use crate::workloads::version::{self, CalicoVersion};
    let v = CalicoVersion::of_image(&config.calico_node_image).0;
    let image = &config.calico_node_image.reference;
    if config.vxlan.enabled() && !v.at_least(version::VXLAN) {
        c.error(
            "vxlan",
            format!(
                "{:?}: Calico {v} (calico-node-image {image}) has no VXLAN encapsulation, which \
                 arrived in {}: set vxlan=Never, or use ipip, or a calico-node-image of {} or later",
                config.vxlan.as_str(),
                version::VXLAN,
                version::VXLAN
            ),
        );
    }
    let lists: [(&str, &[IpNetwork], CalicoVersion, &str); 3] = [
        (
            "bgp-service-cluster-ips",
            &config.bgp_service_cluster_ips,
            version::SERVICE_CLUSTER_IPS,
            "serviceClusterIPs",
        ),
        (
            "bgp-service-external-ips",
            &config.bgp_service_external_ips,
            version::SERVICE_EXTERNAL_IPS,
            "serviceExternalIPs",
        ),
        (
            "bgp-service-loadbalancer-ips",
            &config.bgp_service_loadbalancer_ips,
            version::SERVICE_LOADBALANCER_IPS,
            "serviceLoadBalancerIPs",
        ),
    ];
    for (option, nets, since, field) in lists {
        if !nets.is_empty() && !v.at_least(since) {
            let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
            c.error(
                option,
                format!(
                    "{:?}: Calico {v} (calico-node-image {image}) has no BGPConfiguration {field}, \
                     which arrived in {since}: leave the option empty or use a calico-node-image of \
                     {since} or later",
                    shown.join(" ")
                ),
            );
        }
    }
}

/// Exactly four decimal octets, each 0..=255.
fn parse_dotted_quad(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    text.parse().ok()
}

fn yaml_desc(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Null => "null".into(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => shorten(format!("{s:?}")),
        serde_yaml::Value::Sequence(_) => "a list".into(),
        serde_yaml::Value::Mapping(_) => "a map".into(),
        serde_yaml::Value::Tagged(t) => yaml_desc(&t.value),
    }
}

/// Validate raw option values (defaults already merged in, or missing options take the
/// config.yaml defaults), reporting every problem at once. Never panics.
pub fn validate(raw: &RawConfig) -> Result<Validated, Vec<ConfigError>> {
    let specs = match options::specs() {
        Ok(s) => s,
        Err(e) => {
            return Err(vec![ConfigError {
                option: "config.yaml".into(),
                message: e.to_string(),
            }]);
        }
    };
    let mut c = Check {
        raw,
        errors: Vec::new(),
        warnings: Vec::new(),
        peer_entries: 0,
    };
    for name in raw.keys() {
        if !specs.iter().any(|s| s.name == *name) {
            c.error(name, "unknown option");
        }
    }
    let calico_node_image = c.image("calico-node-image");
    let calico_policy_image = c.image("calico-policy-image");
    let ipip = c.encap("ipip");
    let vxlan = c.encap("vxlan");
    if let (Some(i), Some(v)) = (ipip, vxlan)
        && i.enabled()
        && v.enabled()
    {
        c.error(
            "vxlan",
            format!("{:?} together with ipip {:?}: a pool uses one encapsulation; set ipip or vxlan to Never", v.as_str(), i.as_str()),
        );
    }
    let nat_outgoing = c.boolean("nat-outgoing");
    let cidrs = c.cidrs("cidr");
    let manage_pools = c.boolean("manage-pools");
    let global_as_number = c.as_number_option("global-as-number");
    let subnet_as_numbers = c.subnet_as_numbers("subnet-as-numbers");
    let unit_as_numbers = c.unit_as_numbers("unit-as-numbers");
    let node_to_node_mesh = c.boolean("node-to-node-mesh");
    let global_bgp_peers = c.global_bgp_peers("global-bgp-peers");
    let subnet_bgp_peers = c.subnet_bgp_peers("subnet-bgp-peers");
    let unit_bgp_peers = c.unit_bgp_peers("unit-bgp-peers");
    let route_reflector_cluster_ids = c.cluster_ids("route-reflector-cluster-ids");
    let veth_mtu = c.veth_mtu("veth-mtu");
    let bgp_service_cluster_ips = c.cidr_list("bgp-service-cluster-ips");
    let bgp_service_external_ips = c.cidr_list("bgp-service-external-ips");
    let bgp_service_loadbalancer_ips = c.cidr_list("bgp-service-loadbalancer-ips");
    let ignore_loose_rpf = c.boolean("ignore-loose-rpf");
    let disable_vxlan_tx_checksumming = c.boolean("disable-vxlan-tx-checksumming");
    let image_registry = c.image_registry("image-registry");
    let typha = c.typha("typha");
    let (
        Some(calico_node_image),
        Some(calico_policy_image),
        Some(ipip),
        Some(vxlan),
        Some(nat_outgoing),
        Some(cidrs),
        Some(manage_pools),
        Some(global_as_number),
        Some(subnet_as_numbers),
        Some(unit_as_numbers),
        Some(node_to_node_mesh),
        Some(global_bgp_peers),
        Some(subnet_bgp_peers),
        Some(unit_bgp_peers),
        Some(route_reflector_cluster_ids),
        Some(veth_mtu),
        true,
    ) = (
        calico_node_image,
        calico_policy_image,
        ipip,
        vxlan,
        nat_outgoing,
        cidrs,
        manage_pools,
        global_as_number,
        subnet_as_numbers,
        unit_as_numbers,
        node_to_node_mesh,
        global_bgp_peers,
        subnet_bgp_peers,
        unit_bgp_peers,
        route_reflector_cluster_ids,
        veth_mtu,
        c.errors.is_empty(),
    )
    else {
        return Err(c.errors);
    };
    let (
        Some(bgp_service_cluster_ips),
        Some(bgp_service_external_ips),
        Some(bgp_service_loadbalancer_ips),
        Some(ignore_loose_rpf),
        Some(disable_vxlan_tx_checksumming),
        Some(image_registry),
        Some(typha),
    ) = (
        bgp_service_cluster_ips,
        bgp_service_external_ips,
        bgp_service_loadbalancer_ips,
        ignore_loose_rpf,
        disable_vxlan_tx_checksumming,
        image_registry,
        typha,
    )
    else {
        return Err(c.errors);
    };
    let (calico_node_image, calico_policy_image) = match &image_registry {
        Some(registry) => {
            let node = c.registry_image("calico-node-image", calico_node_image, registry);
            let policy = c.registry_image("calico-policy-image", calico_policy_image, registry);
            match (node, policy) {
                (Some(n), Some(p)) => (n, p),
                _ => return Err(c.errors),
            }
        }
        None => (calico_node_image, calico_policy_image),
    };
    let config = CharmConfig {
        calico_node_image,
        calico_policy_image,
        ipip,
        vxlan,
        nat_outgoing,
        cidrs,
        manage_pools,
        global_as_number,
        subnet_as_numbers,
        unit_as_numbers,
        node_to_node_mesh,
        global_bgp_peers,
        subnet_bgp_peers,
        unit_bgp_peers,
        route_reflector_cluster_ids,
        veth_mtu,
        bgp_service_cluster_ips,
        bgp_service_external_ips,
        bgp_service_loadbalancer_ips,
        ignore_loose_rpf,
        disable_vxlan_tx_checksumming,
        image_registry,
        typha,
    };
    release_errors(&config, &mut c);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    config_warnings(&config, &mut c);
    Ok(Validated {
        config,
        warnings: c.warnings,
    })
}

fn config_warnings(config: &CharmConfig, c: &mut Check<'_>) {
    if config.ipip.enabled()
        && let Some(v6) = config.cidrs.iter().find(|n| n.is_ipv6())
    {
        let v4 = config.cidrs.iter().any(IpNetwork::is_ipv4);
        c.warn(
            "ipip",
            if v4 {
                format!(
                    "{}: IPIP is IPv4-only: the IPv6 pool {v6} gets ipipMode Never",
                    config.ipip.as_str()
                )
            } else {
                format!(
                    "{}: IPIP is IPv4-only and cidr {v6} is IPv6: ipip has no effect",
                    config.ipip.as_str()
                )
            },
        );
    }
    let any_peers = !config.global_bgp_peers.is_empty()
        || config.subnet_bgp_peers.iter().any(|(_, p)| !p.is_empty())
        || config.unit_bgp_peers.values().any(|p| !p.is_empty());
    if !config.node_to_node_mesh && !any_peers {
        c.warn(
            "node-to-node-mesh",
            "false while no BGP peers are configured (global-bgp-peers, subnet-bgp-peers, unit-bgp-peers are empty): \
             nodes will not exchange pod routes",
        );
    }
    if config.node_to_node_mesh && !config.route_reflector_cluster_ids.is_empty() {
        let ids: Vec<String> = config
            .route_reflector_cluster_ids
            .keys()
            .map(u32::to_string)
            .collect();
        c.warn(
            "route-reflector-cluster-ids",
            format!(
                "units {} are route reflectors while node-to-node-mesh is true: route reflectors never join the mesh, \
                 so they reach other nodes only through BGP peers; set node-to-node-mesh=false for route reflection",
                ids.join(", ")
            ),
        );
    }
}

/// Warnings that depend on one unit: its address, id and the peers it ends up with.
pub fn unit_warnings(config: &CharmConfig, facts: &UnitFacts) -> Vec<Warning> {
    let mut out = Vec::new();
    let with_source = crate::render::effective_peers_with_source(config, facts);
    let peers: Vec<Peer> = with_source.iter().map(|(p, _)| *p).collect();
    let rr = config.route_reflector_cluster_ids.get(&facts.unit_id);
    if peers.is_empty() && (!config.node_to_node_mesh || rr.is_some()) {
        let (option, why) = if rr.is_some() {
            (
                "route-reflector-cluster-ids",
                "is a route reflector (route reflectors never join the mesh)",
            )
        } else {
            (
                "node-to-node-mesh",
                "is off the mesh (node-to-node-mesh is false)",
            )
        };
        out.push(Warning {
            option: option.into(),
            message: format!(
                "{} ({}) {why} and has no BGP peer: no global-bgp-peers, no subnet-bgp-peers subnet containing {}, \
                 no unit-bgp-peers entry {}: its pods are unreachable from other nodes",
                facts.unit_name, facts.address, facts.address, facts.unit_id
            ),
        });
    }
    // The first peer seen at each address (linear in the number of peers).
    let mut first: std::collections::HashMap<IpAddr, &Peer> = std::collections::HashMap::new();
    for (p, source) in &with_source {
        let other = *first.entry(p.address).or_insert(p);
        if other != p {
            out.push(Warning {
                option: (*source).into(),
                message: format!(
                    "{} gets peer {} with two AS numbers ({} and {}): Calico keeps only one session per peer address",
                    facts.unit_name, p.address, other.as_number, p.as_number
                ),
            });
        }
    }
    if !config.subnet_as_numbers.is_empty()
        && !config.unit_as_numbers.contains_key(&facts.unit_id)
        && !config
            .subnet_as_numbers
            .iter()
            .any(|(n, _)| n.contains(facts.address))
    {
        out.push(Warning {
            option: "subnet-as-numbers".into(),
            message: format!(
                "no subnet contains {} and unit-as-numbers has no entry {}: {} uses global-as-number {}",
                facts.address, facts.unit_id, facts.unit_name, config.global_as_number
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(pairs: &[(&str, Value)]) -> RawConfig {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn errors(pairs: &[(&str, Value)]) -> Vec<String> {
        match validate(&raw(pairs)) {
            Ok(v) => panic!("expected errors, got {v:?}"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn valid(pairs: &[(&str, Value)]) -> Validated {
        validate(&raw(pairs)).unwrap_or_else(|e| panic!("expected valid, got {e:?}"))
    }

    fn has(lines: &[String], want: &str) -> bool {
        lines.iter().any(|l| l == want)
    }

    #[test]
    fn defaults_are_valid_and_typed() {
        let v = valid(&[]);
        let c = &v.config;
        assert_eq!(c.calico_node_image.tag(), Some("v3.6.1"));
        assert_eq!(c.ipip, EncapMode::Never);
        assert_eq!(c.vxlan, EncapMode::Never);
        assert!(c.nat_outgoing && c.manage_pools && c.node_to_node_mesh);
        assert_eq!(c.cidrs, vec![parse_cidr("192.168.0.0/16").expect("cidr")]);
        assert_eq!(c.global_as_number, AsNumber(64512));
        assert!(c.subnet_as_numbers.is_empty() && c.global_bgp_peers.is_empty());
        assert_eq!(c.veth_mtu, None);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    }

    #[test]
    fn encapsulation_modes() {
        let e = errors(&[("ipip", json!("always")), ("vxlan", json!("crosssubnet"))]);
        assert!(
            has(
                &e,
                "ipip: \"always\": expected one of Always, CrossSubnet, Never (case matters): did you mean \"Always\"?"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "vxlan: \"crosssubnet\": expected one of Always, CrossSubnet, Never (case matters): did you mean \"CrossSubnet\"?"
            ),
            "{e:?}"
        );
        let e = errors(&[("ipip", json!("sometimes"))]);
        assert_eq!(
            e,
            vec!["ipip: \"sometimes\": expected one of Always, CrossSubnet, Never"]
        );
        let e = errors(&[("ipip", json!("Always")), ("vxlan", json!("CrossSubnet"))]);
        assert_eq!(
            e,
            vec![
                "vxlan: \"CrossSubnet\" together with ipip \"Always\": a pool uses one encapsulation; set ipip or vxlan to Never"
            ]
        );
        let v = valid(&[
            ("vxlan", json!("Always")),
            ("calico-node-image", json!("docker.io/calico/node:v3.7.0")),
        ]);
        assert_eq!(v.config.vxlan, EncapMode::Always);
    }

    #[test]
    fn cidr_rules() {
        let e = errors(&[("cidr", json!("192.168.1.0/16"))]);
        assert_eq!(
            e,
            vec!["cidr: \"192.168.1.0/16\": host bits are set: did you mean 192.168.0.0/16?"]
        );
        let e = errors(&[("cidr", json!("10.0.0.0/27"))]);
        assert_eq!(
            e,
            vec![
                "cidr: 10.0.0.0/27: too small for Calico's default /26 IPv4 block: use a prefix of /26 or shorter"
            ]
        );
        let e = errors(&[("cidr", json!("fd00::/123"))]);
        assert!(e[0].contains("/122"), "{e:?}");
        for (bad, what) in [
            ("169.254.0.0/16", "link-local"),
            ("fe80::/64", "link-local"),
            ("127.0.0.0/8", "loopback"),
            ("224.0.0.0/8", "multicast"),
            ("ff00::/16", "multicast"),
            ("0.0.0.0/0", "link-local"),
        ] {
            let e = errors(&[("cidr", json!(bad))]);
            assert!(
                e.iter()
                    .any(|l| l.starts_with("cidr: ") && l.contains(what)),
                "{bad}: {e:?}"
            );
        }
        let e = errors(&[("cidr", json!("10.0.0.0/16,10.1.0.0/16"))]);
        assert_eq!(
            e,
            vec!["cidr: 10.1.0.0/16: at most one IPv4 CIDR (already have 10.0.0.0/16)"]
        );
        let e = errors(&[("cidr", json!("10.0.0.0"))]);
        assert!(
            e[0].starts_with("cidr: \"10.0.0.0\": expected a CIDR"),
            "{e:?}"
        );
        let e = errors(&[("cidr", json!(""))]);
        assert!(e[0].starts_with("cidr: must not be empty"), "{e:?}");
        let e = errors(&[("cidr", json!("10.0.0.0/16,"))]);
        assert!(e[0].contains("empty entry"), "{e:?}");
        let v = valid(&[("cidr", json!(" fd00:c00b:1::/64 , 10.1.0.0/16 "))]);
        let shown: Vec<String> = v.config.cidrs.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["fd00:c00b:1::/64", "10.1.0.0/16"]);
    }

    #[test]
    fn as_numbers_everywhere() {
        let e = errors(&[("global-as-number", json!(0))]);
        assert!(
            e[0].starts_with(
                "global-as-number: 0 is out of range: expected an AS number from 1 to 4294967295"
            ),
            "{e:?}"
        );
        let e = errors(&[("global-as-number", json!(4294967296u64))]);
        assert!(
            e[0].starts_with("global-as-number: 4294967296 is out of range"),
            "{e:?}"
        );
        let v = valid(&[("global-as-number", json!("1.10"))]);
        assert_eq!(v.config.global_as_number, AsNumber(65546));
        let e = errors(&[
            ("global-as-number", json!(4200000000u64)),
            (
                "global-bgp-peers",
                json!("[{address: 10.0.0.1, as-number: '65535.0'}]"),
            ),
        ]);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("global-as-number: AS number 4200000000 is above 2147483647"),
            "{e:?}"
        );
        assert!(
            e[0].contains("subnet-as-numbers or unit-as-numbers"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("global-bgp-peers: peer 1: AS number 4294901760 is above 2147483647"),
            "{e:?}"
        );
        let v = valid(&[("global-as-number", json!(2147483647u64))]);
        assert_eq!(v.config.global_as_number, AsNumber(2147483647));
        // Node annotations are strings: no int32 limit there.
        let v = valid(&[
            ("unit-as-numbers", json!("{0: 4200000000}")),
            ("subnet-as-numbers", json!("{10.0.0.0/24: '64000.1'}")),
        ]);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        assert_eq!(
            v.config.unit_as_numbers.get(&0),
            Some(&AsNumber(4200000000))
        );
        assert_eq!(v.config.subnet_as_numbers[0].1, AsNumber(64000 * 65536 + 1));
        let e = errors(&[("unit-as-numbers", json!("{0: 1.10}"))]);
        assert!(
            e[0].starts_with("unit-as-numbers: unit 0: 1.1 was read as a decimal number")
                && e[0].contains("quote asdot"),
            "{e:?}"
        );
    }

    #[test]
    fn peers_have_exactly_address_and_as_number() {
        let e = errors(&[(
            "global-bgp-peers",
            json!(
                "- address: 10.0.0.1\n  as_number: 64512\n- {address: 10.0.0.2, asn: 1, as-number: 2}\n- {as-number: 5}\n"
            ),
        )]);
        assert!(
            has(
                &e,
                "global-bgp-peers: peer 1: unknown key \"as_number\" (did you mean \"as-number\"?): a peer has exactly \"address\" and \"as-number\""
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "global-bgp-peers: peer 1: missing \"as-number\": a peer has exactly \"address\" and \"as-number\""
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "global-bgp-peers: peer 2: unknown key \"asn\" (did you mean \"as-number\"?): a peer has exactly \"address\" and \"as-number\""
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "global-bgp-peers: peer 3: missing \"address\": a peer has exactly \"address\" and \"as-number\""
            ),
            "{e:?}"
        );
        assert_eq!(e.len(), 4, "{e:?}");
        let e = errors(&[(
            "subnet-bgp-peers",
            json!("10.0.0.0/24:\n- {address: 10.0.0.300, as-number: 1}\n10.0.1.1/24: []\n"),
        )]);
        assert!(
            has(
                &e,
                "subnet-bgp-peers: subnet 10.0.0.0/24: peer 1: address \"10.0.0.300\": expected an IPv4 or IPv6 address (no port, no prefix)"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "subnet-bgp-peers: subnet \"10.0.1.1/24\": host bits are set: did you mean 10.0.1.0/24?"
            ),
            "{e:?}"
        );
        let e = errors(&[(
            "unit-bgp-peers",
            json!("calico/0: [{address: 10.0.0.1, as-number: 1}]\n-1: []\n"),
        )]);
        assert!(
            has(
                &e,
                "unit-bgp-peers: unit ID \"calico/0\": expected a non-negative integer (the N of calico/N, without the application name)"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "unit-bgp-peers: unit ID -1: expected a non-negative integer (the N of calico/N)"
            ),
            "{e:?}"
        );
        let e = errors(&[(
            "global-bgp-peers",
            json!("{address: 10.0.0.1, as-number: 1}"),
        )]);
        assert!(
            e[0].starts_with("global-bgp-peers: got a map: expected a list of peers"),
            "{e:?}"
        );
        let e = errors(&[(
            "global-bgp-peers",
            json!("[{address: 0.0.0.0, as-number: 1}]"),
        )]);
        assert!(e[0].contains("unicast"), "{e:?}");
        let v = valid(&[
            (
                "unit-bgp-peers",
                json!("'7': [{address: 'fd00::1', as-number: '1.10'}]"),
            ),
            ("global-bgp-peers", json!("")),
        ]);
        assert_eq!(
            v.config.unit_bgp_peers[&7],
            vec![Peer {
                address: "fd00::1".parse().expect("ip"),
                as_number: AsNumber(65546)
            }]
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_checked_as_the_ipv4_they_map_to() {
        for bad in ["::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:224.0.0.5"] {
            let e = errors(&[(
                "global-bgp-peers",
                json!(format!("[{{address: '{bad}', as-number: 1}}]")),
            )]);
            assert!(
                e.len() == 1 && e[0].contains("the IPv4 address") && e[0].contains("unicast"),
                "{bad}: {e:?}"
            );
        }
        let v = valid(&[(
            "global-bgp-peers",
            json!("[{address: '::ffff:10.0.0.1', as-number: 1}]"),
        )]);
        assert_eq!(v.config.global_bgp_peers.len(), 1);
        for (bad, what) in [
            ("::ffff:127.0.0.0/104", "loopback"),
            ("::ffff:169.254.0.0/112", "link-local"),
            ("::ffff:224.0.0.0/100", "multicast"),
            ("::/64", "loopback"),
        ] {
            let e = errors(&[("cidr", json!(bad))]);
            assert!(
                e.iter()
                    .any(|l| l.contains("IPv4-mapped") && l.contains(what)),
                "{bad}: {e:?}"
            );
        }
        assert!(validate(&raw(&[("cidr", json!("fd00::/64"))])).is_ok());
    }

    #[test]
    fn object_counts_and_sizes_have_documented_limits() {
        let peers = |n: usize| {
            let mut s = String::new();
            for i in 0..n {
                s.push_str(&format!(
                    "- {{address: 10.{}.{}.1, as-number: 64512}}\n",
                    i / 250,
                    i % 250
                ));
            }
            s
        };
        assert!(
            validate(&raw(&[(
                "global-bgp-peers",
                json!(peers(MAX_PEER_ENTRIES))
            )]))
            .is_ok()
        );
        let e = errors(&[
            ("global-bgp-peers", json!(peers(600))),
            (
                "unit-bgp-peers",
                json!(format!("0:\n{}", peers(600).replace("- ", "  - "))),
            ),
        ]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("unit-bgp-peers: unit 0: more than 1000 BGP peer entries"),
            "{e:?}"
        );
        let mut map = String::new();
        for i in 0..=MAX_MAP_ENTRIES {
            map.push_str(&format!("{i}: 64512\n"));
        }
        let e = errors(&[("unit-as-numbers", json!(map))]);
        assert_eq!(
            e,
            vec![format!(
                "unit-as-numbers: has 5001 entries: at most {MAX_MAP_ENTRIES}"
            )]
        );
        let e = errors(&[("calico-node-image", json!("a".repeat(MAX_OPTION_BYTES + 1)))]);
        assert_eq!(
            e,
            vec![format!(
                "calico-node-image: is {} bytes long: at most {MAX_OPTION_BYTES} bytes",
                MAX_OPTION_BYTES + 1
            )]
        );
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = errors(&[("global-bgp-peers", json!(deep))]);
        assert!(e[0].contains("nested more than 32 deep"), "{e:?}");
    }

    #[test]
    fn the_largest_accepted_configuration_renders_in_linear_time() {
        // 1000 peers for one unit (the limit) and 5000 subnets: validation and rendering stay
        // fast (quadratic work over these counts took seconds before).
        let mut subnets = String::new();
        for i in 0..MAX_MAP_ENTRIES {
            subnets.push_str(&format!("10.{}.{}.0/24: 64512\n", i / 250, i % 250));
        }
        let mut peers = String::new();
        for i in 0..MAX_PEER_ENTRIES {
            peers.push_str(&format!(
                "- {{address: 172.16.{}.{}, as-number: 64512}}\n",
                i / 250,
                i % 250 + 1
            ));
        }
        let started = std::time::Instant::now();
        let v = valid(&[
            ("subnet-as-numbers", json!(subnets)),
            ("global-bgp-peers", json!(peers)),
            ("node-to-node-mesh", json!(false)),
        ]);
        let facts =
            UnitFacts::new("calico/0", "n", "10.0.0.9".parse().expect("ip"), false).expect("unit");
        let desired = crate::render::desired(&v.config, &facts);
        let _ = unit_warnings(&v.config, &facts);
        assert_eq!(desired.peers.len(), MAX_PEER_ENTRIES);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn yaml_options_parse_and_report_shape_errors() {
        let e = errors(&[
            ("subnet-as-numbers", json!("[1, 2]")),
            (
                "route-reflector-cluster-ids",
                json!("{0: 1.2.3, 1: 0.0.0.256, 2: 7}"),
            ),
            ("unit-as-numbers", json!("{0: [oops")),
        ]);
        assert!(
            has(
                &e,
                "subnet-as-numbers: got a list: expected a YAML map of subnets to AS numbers, e.g. {10.0.0.0/24: 64512}"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "route-reflector-cluster-ids: unit 0: cluster ID \"1.2.3\": expected a dotted-quad IPv4 address like 0.0.0.1"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "route-reflector-cluster-ids: unit 1: cluster ID \"0.0.0.256\": expected a dotted-quad IPv4 address like 0.0.0.1"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "route-reflector-cluster-ids: unit 2: cluster ID 7: expected a dotted-quad IPv4 address like 0.0.0.1"
            ),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("unit-as-numbers: not valid YAML: ")),
            "{e:?}"
        );
        assert!(e.iter().all(|l| !l.contains('\n')));
        let e = errors(&[(
            "subnet-as-numbers",
            json!("{10.0.0.0/24: 1, 10.0.0.0/024: 2}"),
        )]);
        assert_eq!(
            e,
            vec!["subnet-as-numbers: subnet 10.0.0.0/24 is listed twice"]
        );
        let v = valid(&[
            ("subnet-as-numbers", json!("  ")),
            ("route-reflector-cluster-ids", json!("~")),
        ]);
        assert!(
            v.config.subnet_as_numbers.is_empty()
                && v.config.route_reflector_cluster_ids.is_empty()
        );
    }

    #[test]
    fn images_and_mtu() {
        for ok in [
            "docker.io/calico/node:v3.6.1",
            "calico/node",
            "localhost:5000/calico/node:v3.6.1",
            "10.0.0.5:5000/calico/node:latest",
            "[fd00::1]:5000/calico/node:v1",
            "registry.example.com/a/b__c/d-e:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(Image::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/calico/node:v3.6.1",
            "calico/Node",
            "calico/node:",
            "calico node",
            "calico/node@sha256:xyz",
            "-a/b",
        ] {
            assert!(Image::parse(bad).is_err(), "{bad:?}");
        }
        let e = errors(&[
            ("calico-node-image", json!("/calico/node:v3.6.1")),
            ("calico-policy-image", json!("")),
        ]);
        assert!(
            e[0].starts_with(
                "calico-node-image: \"/calico/node:v3.6.1\": invalid path component \"\""
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("calico-policy-image: must not be empty"),
            "{e:?}"
        );
        let img = Image::parse("localhost:5000/calico/node").expect("image");
        assert_eq!((img.tag(), img.version()), (None, "latest"));
        let e = errors(&[("veth-mtu", json!(100))]);
        assert_eq!(e, vec!["veth-mtu: 100: expected an MTU from 576 to 65535"]);
        assert_eq!(
            valid(&[("veth-mtu", json!("9000"))]).config.veth_mtu,
            Some(9000)
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = errors(&[
            ("ipip", json!("ALWAYS")),
            ("cidr", json!("10.0.0.1/8")),
            ("nat-outgoing", json!("perhaps")),
            ("global-as-number", json!(-3)),
            ("node-to-node-mesh", json!(12)),
            ("bogus", json!(1)),
        ]);
        let options: Vec<&str> = e
            .iter()
            .map(|l| l.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            options,
            [
                "bogus",
                "ipip",
                "nat-outgoing",
                "cidr",
                "global-as-number",
                "node-to-node-mesh"
            ]
        );
    }

    #[test]
    fn config_level_warnings() {
        let v = valid(&[("node-to-node-mesh", json!(false))]);
        assert_eq!(v.warnings.len(), 1);
        assert!(
            v.warnings[0]
                .to_string()
                .starts_with("node-to-node-mesh: false while no BGP peers are configured")
        );
        let v = valid(&[("route-reflector-cluster-ids", json!("{0: 0.0.0.0}"))]);
        assert!(v.warnings[0].to_string().starts_with("route-reflector-cluster-ids: units 0 are route reflectors while node-to-node-mesh is true"));
        let v = valid(&[("ipip", json!("Always")), ("cidr", json!("fd00::/64"))]);
        assert_eq!(
            v.warnings[0].to_string(),
            "ipip: Always: IPIP is IPv4-only and cidr fd00::/64 is IPv6: ipip has no effect"
        );
    }

    #[test]
    fn service_ip_options_take_cidrs_separated_by_spaces_or_commas() {
        let current = ("calico-node-image", json!("docker.io/calico/node:v3.32.1"));
        let v = valid(&[
            current.clone(),
            ("bgp-service-cluster-ips", json!("10.152.183.0/24")),
            (
                "bgp-service-external-ips",
                json!(" 10.0.10.0/24,10.0.11.0/24  fd00:e::/64 "),
            ),
            ("bgp-service-loadbalancer-ips", json!("10.0.20.0/24")),
        ]);
        let shown = |n: &[IpNetwork]| n.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(&v.config.bgp_service_cluster_ips),
            ["10.152.183.0/24"]
        );
        assert_eq!(
            shown(&v.config.bgp_service_external_ips),
            ["10.0.10.0/24", "10.0.11.0/24", "fd00:e::/64"]
        );
        assert_eq!(
            shown(&v.config.bgp_service_loadbalancer_ips),
            ["10.0.20.0/24"]
        );
        assert!(valid(&[]).config.bgp_service_cluster_ips.is_empty());
        let e = errors(&[
            current.clone(),
            ("bgp-service-cluster-ips", json!("10.152.183.1/24")),
            (
                "bgp-service-external-ips",
                json!("10.0.10.0/24;10.0.11.0/24"),
            ),
            (
                "bgp-service-loadbalancer-ips",
                json!("10.0.20.0/24 10.0.20.0/24"),
            ),
        ]);
        assert_eq!(
            e,
            [
                "bgp-service-cluster-ips: \"10.152.183.1/24\": host bits are set: did you mean 10.152.183.0/24?; separate CIDRs with spaces or commas",
                "bgp-service-external-ips: \"10.0.10.0/24;10.0.11.0/24\": the prefix length must be 0 to 32; separate CIDRs with spaces or commas",
                "bgp-service-loadbalancer-ips: 10.0.20.0/24 is listed twice",
            ]
        );
    }

    #[test]
    fn options_the_release_cannot_honour_are_errors_naming_option_and_release() {
        // The default image is v3.6.1: no VXLAN, no service IP advertisement.
        let e = errors(&[
            ("vxlan", json!("Always")),
            ("bgp-service-cluster-ips", json!("10.152.183.0/24")),
            ("bgp-service-external-ips", json!("10.0.10.0/24")),
            ("bgp-service-loadbalancer-ips", json!("10.0.20.0/24")),
        ]);
        assert_eq!(
            e,
            [
                "vxlan: \"Always\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no VXLAN encapsulation, which arrived in v3.7.0: set vxlan=Never, or use ipip, or a calico-node-image of v3.7.0 or later",
                "bgp-service-cluster-ips: \"10.152.183.0/24\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no BGPConfiguration serviceClusterIPs, which arrived in v3.11.0: leave the option empty or use a calico-node-image of v3.11.0 or later",
                "bgp-service-external-ips: \"10.0.10.0/24\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no BGPConfiguration serviceExternalIPs, which arrived in v3.10.0: leave the option empty or use a calico-node-image of v3.10.0 or later",
                "bgp-service-loadbalancer-ips: \"10.0.20.0/24\": Calico v3.6.1 (calico-node-image docker.io/calico/node:v3.6.1) has no BGPConfiguration serviceLoadBalancerIPs, which arrived in v3.18.0: leave the option empty or use a calico-node-image of v3.18.0 or later",
            ]
        );
        // Each cut-over release itself is accepted, the one before refused.
        let at = |tag: &str, option: &str, value: &str| {
            validate(&raw(&[
                (
                    "calico-node-image",
                    json!(format!("docker.io/calico/node:{tag}")),
                ),
                (option, json!(value)),
            ]))
            .is_ok()
        };
        assert!(at("v3.7.0", "vxlan", "CrossSubnet") && !at("v3.6.9", "vxlan", "CrossSubnet"));
        assert!(at("v3.10.0", "bgp-service-external-ips", "10.0.0.0/24"));
        assert!(!at("v3.9.5", "bgp-service-external-ips", "10.0.0.0/24"));
        assert!(at("v3.11.0", "bgp-service-cluster-ips", "10.0.0.0/24"));
        assert!(!at("v3.10.3", "bgp-service-cluster-ips", "10.0.0.0/24"));
        assert!(at("v3.18.0", "bgp-service-loadbalancer-ips", "10.0.0.0/24"));
        assert!(!at(
            "v3.17.5",
            "bgp-service-loadbalancer-ips",
            "10.0.0.0/24"
        ));
        // Invalid values elsewhere are reported without the release check (nothing typed yet).
        let e = errors(&[("vxlan", json!("Always")), ("ipip", json!("bogus"))]);
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn image_registry_moves_default_images_and_keeps_explicit_ones() {
        let v = valid(&[("image-registry", json!("registry.example.com:5000/"))]);
        assert_eq!(
            v.config.calico_node_image.reference,
            "registry.example.com:5000/calico/node:v3.6.1"
        );
        assert_eq!(
            v.config.calico_policy_image.reference,
            "registry.example.com:5000/calico/kube-controllers:v3.6.1"
        );
        assert_eq!(
            v.config.image_registry.as_deref(),
            Some("registry.example.com:5000")
        );
        let v = valid(&[
            ("image-registry", json!("rocks.canonical.com:443/cdk")),
            ("calico-node-image", json!("quay.io/calico/node:v3.32.1")),
        ]);
        assert_eq!(
            v.config.calico_node_image.reference,
            "quay.io/calico/node:v3.32.1"
        );
        assert_eq!(
            v.config.calico_policy_image.reference,
            "rocks.canonical.com:443/cdk/calico/kube-controllers:v3.6.1"
        );
        assert_eq!(
            valid(&[("image-registry", json!(""))])
                .config
                .image_registry,
            None
        );
        for bad in [
            "registry.example.com/calico:v1",
            "reg@sha256:00",
            "Reg Istry",
            "a//b",
        ] {
            let e = errors(&[("image-registry", json!(bad))]);
            assert!(
                e.len() == 1 && e[0].starts_with(&format!("image-registry: {bad:?}: ")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn rpf_and_checksum_options_are_booleans() {
        let c = valid(&[]).config;
        assert!(!c.ignore_loose_rpf && c.disable_vxlan_tx_checksumming);
        let c = valid(&[
            ("ignore-loose-rpf", json!("true")),
            ("disable-vxlan-tx-checksumming", json!(false)),
        ])
        .config;
        assert!(c.ignore_loose_rpf && !c.disable_vxlan_tx_checksumming);
        let e = errors(&[("ignore-loose-rpf", json!("loose"))]);
        assert_eq!(
            e,
            ["ignore-loose-rpf: \"loose\": expected a boolean (true or false)"]
        );
    }

    #[test]
    fn unit_warnings_for_conflicting_peer_as_numbers() {
        let v = valid(&[
            (
                "global-bgp-peers",
                json!("[{address: 10.0.0.1, as-number: 1}]"),
            ),
            (
                "unit-bgp-peers",
                json!("{0: [{address: 10.0.0.1, as-number: 2}]}"),
            ),
        ]);
        let facts =
            UnitFacts::new("calico/0", "n", "10.0.0.9".parse().expect("ip"), false).expect("unit");
        let w: Vec<String> = unit_warnings(&v.config, &facts)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            w,
            [
                "unit-bgp-peers: calico/0 gets peer 10.0.0.1 with two AS numbers (1 and 2): Calico keeps only one session per peer address"
            ]
        );
    }
}
