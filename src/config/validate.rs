//! [`validate`]: a pure function from raw option values to a [`CharmConfig`] or the full list
//! of problems.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::cidr::{
    IPV4_BLOCK_PREFIX, IPV6_BLOCK_PREFIX, ipv4_mapped, overlaps, parse_cidr_option, reserved_ranges,
};
use super::options::{self, RawConfig, show};
use super::warnings::config_warnings;
use super::{CharmConfig, ConfigError, EncapMode, Image, Peer, Validated, Warning, apply_registry};
use crate::asn::AsNumber;
use crate::text::{SHOWN, shorten};

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
pub(crate) const MAX_OPTION_BYTES: usize = 512 * 1024;
/// The most BGP peer entries over global-bgp-peers, subnet-bgp-peers and unit-bgp-peers
/// together: so no unit ever has more peers than this (real deployments have a handful).
pub(crate) const MAX_PEER_ENTRIES: usize = 1000;
/// The most entries of one YAML map option (subnets or units).
pub(crate) const MAX_MAP_ENTRIES: usize = 5000;

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
                    format!(
                        "{:?}: empty entry between commas",
                        shorten(s.clone(), SHOWN)
                    ),
                );
                continue;
            }
            let net = match parse_cidr_option(entry) {
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
            match parse_cidr_option(entry) {
                Ok(net) if out.contains(&net) => {
                    self.error(option, format!("{net} is listed twice"));
                }
                Ok(net) => out.push(net),
                Err(m) => self.error(option, format!("{m}; separate CIDRs with spaces or commas")),
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn typha(&mut self, option: &str) -> Option<super::typha::TyphaMode> {
        let s = self.string(option)?;
        super::typha::TyphaMode::parse(&s)
            .map_err(|m| self.error(option, m))
            .ok()
    }

    /// `image-registry`: `None` when empty; a trailing `/` is dropped.
    fn image_registry(&mut self, option: &str) -> Option<Option<String>> {
        let s = self.string(option)?;
        let t = s.trim().trim_end_matches('/');
        if t.is_empty() {
            return Some(None);
        }
        let shown = shorten(format!("{s:?}"), SHOWN);
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
            serde_yaml::Value::String(s) => parse_cidr_option(s)
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
                        let name = k
                            .as_str()
                            .map_or_else(|| yaml_desc(k), |s| format!("{:?}", shorten(s, SHOWN)));
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
                    text.map_or_else(|| yaml_desc(v), |t| format!("{:?}", shorten(t, SHOWN)));
                self.error(option, format!("{here}address {shown}: expected an IPv4 or IPv6 address (no port, no prefix)"));
                None
            }
        }
    }

    /// A YAML map option: every entry's key read as `K` and value by `value` (given the
    /// entry's place, `subnet 10.0.0.0/24: ` or `unit 3: `, for its messages), in document
    /// order; a key given twice is an error. `None` when any entry is wrong.
    fn yaml_map<K: MapKey, V>(
        &mut self,
        option: &str,
        shape: &str,
        mut value: impl FnMut(&mut Self, &str, &serde_yaml::Value) -> Option<V>,
    ) -> Option<Vec<(K, V)>> {
        let doc = self.yaml(option)?;
        let entries = self.mapping(option, &doc, shape)?;
        let before = self.errors.len();
        let mut out = Vec::with_capacity(entries.len());
        let mut seen = std::collections::HashSet::new();
        for (k, v) in entries {
            let key = K::read(self, option, k);
            let place = key
                .map(|k| format!("{} {k}: ", K::NOUN))
                .unwrap_or_default();
            let value = value(self, &place, v);
            if let (Some(key), Some(value)) = (key, value) {
                if !seen.insert(key) {
                    self.error(option, format!("{} {key} is listed twice", K::NOUN));
                    continue;
                }
                out.push((key, value));
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// Node annotations are strings: no int32 limit on these AS numbers.
    fn as_numbers<K: MapKey>(&mut self, option: &str, shape: &str) -> Option<Vec<(K, AsNumber)>> {
        self.yaml_map(option, shape, |c, place, v| {
            c.as_number(option, place, v, false)
        })
    }

    fn peer_map<K: MapKey>(&mut self, option: &str, shape: &str) -> Option<Vec<(K, Vec<Peer>)>> {
        self.yaml_map(option, shape, |c, place, v| c.peers(option, place, v))
    }

    fn global_bgp_peers(&mut self, option: &str) -> Option<Vec<Peer>> {
        let doc = self.yaml(option)?;
        self.peers(option, "", &doc)
    }

    fn cluster_ids(&mut self, option: &str) -> Option<BTreeMap<u32, Ipv4Addr>> {
        let entries = self.yaml_map(
            option,
            "unit IDs to route reflector cluster IDs, e.g. {0: 0.0.0.0}",
            |c, place, v| match v.as_str().map(parse_dotted_quad) {
                Some(Some(ip)) => Some(ip),
                _ => {
                    let shown = v
                        .as_str()
                        .map_or_else(|| yaml_desc(v), |t| format!("{:?}", shorten(t, SHOWN)));
                    c.error(option, format!("{place}cluster ID {shown}: expected a dotted-quad IPv4 address like 0.0.0.1"));
                    None
                }
            },
        )?;
        Some(entries.into_iter().collect())
    }

    /// `vxlan`, which a pool cannot use together with `ipip` (`ipip` as read before it).
    fn vxlan(&mut self, option: &str, ipip: Option<EncapMode>) -> Option<EncapMode> {
        let v = self.encap(option)?;
        if let Some(i) = ipip
            && i.enabled()
            && v.enabled()
        {
            self.error(
                option,
                format!("{:?} together with ipip {:?}: a pool uses one encapsulation; set ipip or vxlan to Never", v.as_str(), i.as_str()),
            );
        }
        Some(v)
    }
}

/// The key of a YAML map option: a subnet or a unit ID.
trait MapKey: Copy + Eq + std::hash::Hash + std::fmt::Display {
    /// What the key is called in messages.
    const NOUN: &'static str;
    fn read(c: &mut Check<'_>, option: &str, key: &serde_yaml::Value) -> Option<Self>;
}

impl MapKey for IpNetwork {
    const NOUN: &'static str = "subnet";
    fn read(c: &mut Check<'_>, option: &str, key: &serde_yaml::Value) -> Option<Self> {
        c.subnet_key(option, key)
    }
}

impl MapKey for u32 {
    const NOUN: &'static str = "unit";
    fn read(c: &mut Check<'_>, option: &str, key: &serde_yaml::Value) -> Option<Self> {
        c.unit_key(option, key)
    }
}

/// Read every option, in order, into a [`CharmConfig`]: one `field: read` line per option,
/// where a read may use the fields read before it. Every read runs (so every problem is
/// found); the config is built only when all of them succeeded.
macro_rules! read_config {
    ($($field:ident: $read:expr,)*) => {{
        $(let $field = $read;)*
        match ($($field,)*) {
            ($(Some($field),)*) => Some(CharmConfig { $($field,)* }),
            _ => None,
        }
    }};
}

/// The first Calico release with each option the charm renders for a release; options set
/// while the configured release (the `calico-node-image` tag) lacks them are errors. Sources:
/// docs/workloads-versions.md.
fn release_errors(config: &CharmConfig, c: &mut Check<'_>) {
    use super::release::{self as version, CalicoVersion};
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
        serde_yaml::Value::String(s) => shorten(format!("{s:?}"), SHOWN),
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
    let config = read_config! {
        calico_node_image: c.image("calico-node-image"),
        calico_policy_image: c.image("calico-policy-image"),
        ipip: c.encap("ipip"),
        vxlan: c.vxlan("vxlan", ipip),
        nat_outgoing: c.boolean("nat-outgoing"),
        cidrs: c.cidrs("cidr"),
        manage_pools: c.boolean("manage-pools"),
        global_as_number: c.as_number_option("global-as-number"),
        subnet_as_numbers: c.as_numbers(
            "subnet-as-numbers",
            "subnets to AS numbers, e.g. {10.0.0.0/24: 64512}",
        ),
        unit_as_numbers: c
            .as_numbers("unit-as-numbers", "unit IDs to AS numbers, e.g. {0: 64512}")
            .map(BTreeMap::from_iter),
        node_to_node_mesh: c.boolean("node-to-node-mesh"),
        global_bgp_peers: c.global_bgp_peers("global-bgp-peers"),
        subnet_bgp_peers: c.peer_map("subnet-bgp-peers", "subnets to lists of peers"),
        unit_bgp_peers: c
            .peer_map("unit-bgp-peers", "unit IDs to lists of peers")
            .map(BTreeMap::from_iter),
        route_reflector_cluster_ids: c.cluster_ids("route-reflector-cluster-ids"),
        veth_mtu: c.veth_mtu("veth-mtu"),
        bgp_service_cluster_ips: c.cidr_list("bgp-service-cluster-ips"),
        bgp_service_external_ips: c.cidr_list("bgp-service-external-ips"),
        bgp_service_loadbalancer_ips: c.cidr_list("bgp-service-loadbalancer-ips"),
        ignore_loose_rpf: c.boolean("ignore-loose-rpf"),
        disable_vxlan_tx_checksumming: c.boolean("disable-vxlan-tx-checksumming"),
        image_registry: c.image_registry("image-registry"),
        typha: c.typha("typha"),
    };
    let Some(mut config) = config.filter(|_| c.errors.is_empty()) else {
        return Err(c.errors);
    };
    // Images still at their config.yaml default move to the registry.
    if let Some(registry) = config.image_registry.clone() {
        let node = c.registry_image("calico-node-image", config.calico_node_image, &registry);
        let policy = c.registry_image("calico-policy-image", config.calico_policy_image, &registry);
        match (node, policy) {
            (Some(n), Some(p)) => (config.calico_node_image, config.calico_policy_image) = (n, p),
            _ => return Err(c.errors),
        }
    }
    release_errors(&config, &mut c);
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    c.warnings.extend(config_warnings(&config));
    Ok(Validated {
        config,
        warnings: c.warnings,
    })
}
