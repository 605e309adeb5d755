//! Structured configurations: a `RawConfig` (option name -> JSON value, as `config-get
//! --format=json` gives it) built from a dictionary of interesting fragments (CIDRs, asdot
//! numbers, YAML maps and lists, unit ids, peer maps, images), then validate and render.
#![no_main]

use arbitrary::Arbitrary;
use calico_charm::config::options::{self, RawConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[path = "common.rs"]
mod common;

const NAMES: &[&str] = &[
    "calico-node-image",
    "calico-policy-image",
    "ipip",
    "vxlan",
    "nat-outgoing",
    "cidr",
    "manage-pools",
    "global-as-number",
    "subnet-as-numbers",
    "unit-as-numbers",
    "node-to-node-mesh",
    "global-bgp-peers",
    "subnet-bgp-peers",
    "unit-bgp-peers",
    "route-reflector-cluster-ids",
    "veth-mtu",
    "no-such-option",
];

const FRAGMENTS: &[&str] = &[
    // CIDRs and addresses
    "192.168.0.0/16",
    "10.0.0.0/24",
    "10.0.1.0/24",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.300",
    "10.0.0.1/33",
    "fd00::/64",
    "fd00::/48",
    "::/0",
    "fd00::1",
    "::ffff:10.0.0.1",
    "fe80::1%eth0",
    "192.168.0.0/33",
    "192.168.1.0/16",
    "/",
    // AS numbers
    "64512",
    "64513",
    "1.10",
    "'1.10'",
    "\"1.10\"",
    "0.1",
    "65535.65535",
    "65536.0",
    "4294967295",
    "4294967296",
    "2147483648",
    "0",
    "-1",
    "1e3",
    "0x10",
    // unit ids
    "0",
    "1",
    "2",
    "07",
    "4294967295",
    "-3",
    // route reflector cluster ids
    "0.0.0.0",
    "0.0.0.1",
    "224.0.0.1",
    "255.255.255.255",
    // YAML structure
    "{",
    "}",
    "[",
    "]",
    ": ",
    ":",
    ", ",
    "\n",
    "\n  ",
    "\n- ",
    "- ",
    "address: ",
    "as-number: ",
    "as_number: ",
    "{address: 10.0.0.1, as-number: 64512}",
    "[{address: 10.0.0.1, as-number: 64512}]",
    "{10.0.0.0/24: 64512}",
    "{0: 64512, 1: '1.10'}",
    "{10.0.0.0/24: [{address: 10.0.0.2, as-number: 64512}]}",
    "{0: [{address: fd00::1, as-number: 64513}]}",
    "{0: 0.0.0.0, 1: 0.0.0.1}",
    "{}",
    "[]",
    "~",
    "null",
    "true",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "? ",
    "<<: ",
    "#",
    "'",
    "\"",
    " ",
    "\t",
    "\u{feff}",
    "é",
    // modes and images
    "Never",
    "Always",
    "CrossSubnet",
    "always",
    "docker.io/calico/node:v3.6.1",
    "calico/node",
    "localhost:5000/calico/node:v3.32.0@sha256:",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "registry.example:443/",
    "@",
    "/",
    ",",
    "1500",
    "65535",
    "68",
];

#[derive(Arbitrary, Debug)]
enum Piece {
    Frag(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Gen {
    Text(Vec<Piece>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<Gen>),
    Map(Vec<(Vec<Piece>, Gen)>),
}

fn text(pieces: &[Piece]) -> String {
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Frag(i) => s.push_str(FRAGMENTS[usize::from(*i) % FRAGMENTS.len()]),
            Piece::Raw(r) => s.push_str(r),
        }
    }
    s
}

fn value(g: &Gen, depth: u32) -> Value {
    match g {
        Gen::Text(p) => Value::String(text(p)),
        Gen::Int(i) => Value::from(*i),
        Gen::UInt(u) => Value::from(*u),
        Gen::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Gen::Bool(b) => Value::Bool(*b),
        Gen::Null => Value::Null,
        Gen::List(items) if depth < 4 => {
            Value::Array(items.iter().map(|i| value(i, depth + 1)).collect())
        }
        Gen::Map(items) if depth < 4 => Value::Object(
            items
                .iter()
                .map(|(k, v)| (text(k), value(v, depth + 1)))
                .collect(),
        ),
        Gen::List(_) | Gen::Map(_) => Value::Null,
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Start from config.yaml's defaults (as the charm does) or from nothing.
    defaults: bool,
    options: Vec<(u8, Gen)>,
}

fuzz_target!(|input: Input| {
    let mut raw: RawConfig = if input.defaults {
        options::defaults().unwrap_or_default()
    } else {
        RawConfig::new()
    };
    for (name, g) in &input.options {
        let name = NAMES[usize::from(*name) % NAMES.len()];
        raw.insert(name.to_string(), value(g, 0));
    }
    common::check_raw(&raw);
    // Each option value through the type coercion `juju config` applies.
    for (name, v) in &raw {
        if let Some(spec) = options::spec(name) {
            let _ = options::coerce(spec.kind, v);
        }
        let _ = options::show(v);
    }
});
