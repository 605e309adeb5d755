//! The charm's options as declared in the embedded `config.yaml`: names, types, defaults,
//! and merging a user's option file (as `juju config calico --file` takes it) over them.
//!
//! config.yaml is the one source of defaults: nothing here or elsewhere repeats them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::config::ConfigError;
use crate::text::{SHOWN, shorten};

/// The embedded config.yaml, the one source of option defaults.
pub(crate) const CONFIG_YAML: &str = include_str!("../../config.yaml");

/// Raw option values as `config-get --format=json` returns them (option name -> JSON value).
pub type RawConfig = BTreeMap<String, serde_json::Value>;

/// The type of a charm option, as config.yaml declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionType {
    String,
    Int,
    Boolean,
    Float,
}

impl OptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::String => "string",
            OptionType::Int => "int",
            OptionType::Boolean => "boolean",
            OptionType::Float => "float",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            OptionType::String => "expected a string",
            OptionType::Int => "expected an integer",
            OptionType::Boolean => "expected a boolean (true or false)",
            OptionType::Float => "expected a number",
        }
    }
}

/// One option of config.yaml.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionSpec {
    pub name: String,
    pub kind: OptionType,
    /// `None` when config.yaml gives no default (the option is unset until configured).
    pub default: Option<serde_json::Value>,
    pub description: String,
}

/// The embedded config.yaml could not be read (a build defect, caught by the tests).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("embedded config.yaml: {0}")]
pub struct EmbeddedConfigError(pub String);

/// A user's option file that cannot be used at all (as opposed to bad option values).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error(
        "expected a map of option names to values ({{option: value}} or {{calico: {{option: value}}}}), got {0}"
    )]
    NotAMap(String),
    #[error(transparent)]
    Embedded(#[from] EmbeddedConfigError),
}

/// A user's options merged over the defaults, with the problems found in individual options.
/// An option with a problem keeps its default in `raw`, so the rest can still be validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    pub raw: RawConfig,
    pub errors: Vec<ConfigError>,
}

fn parse_specs(text: &str) -> Result<Vec<OptionSpec>, EmbeddedConfigError> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| EmbeddedConfigError(one_line(&e.to_string())))?;
    let options = doc
        .get("options")
        .and_then(serde_yaml::Value::as_mapping)
        .ok_or_else(|| EmbeddedConfigError("no `options` map".into()))?;
    let mut specs = Vec::with_capacity(options.len());
    for (name, body) in options {
        let name = name
            .as_str()
            .ok_or_else(|| EmbeddedConfigError(format!("option name {name:?} is not a string")))?;
        let kind = match body.get("type").and_then(serde_yaml::Value::as_str) {
            Some("string") => OptionType::String,
            Some("int") => OptionType::Int,
            Some("boolean") => OptionType::Boolean,
            Some("float") => OptionType::Float,
            other => {
                return Err(EmbeddedConfigError(format!(
                    "{name}: unknown type {other:?}"
                )));
            }
        };
        let default = match body.get("default") {
            None | Some(serde_yaml::Value::Null) => None,
            Some(v) => Some(
                coerce_yaml(kind, v)
                    .map_err(|m| EmbeddedConfigError(format!("{name}: default: {m}")))?,
            ),
        };
        let description = body
            .get("description")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_string();
        specs.push(OptionSpec {
            name: name.to_string(),
            kind,
            default,
            description,
        });
    }
    Ok(specs)
}

/// Every option of the embedded config.yaml, in file order (parsed once).
pub fn specs() -> Result<&'static [OptionSpec], EmbeddedConfigError> {
    static SPECS: OnceLock<Result<Vec<OptionSpec>, EmbeddedConfigError>> = OnceLock::new();
    match SPECS.get_or_init(|| parse_specs(CONFIG_YAML)) {
        Ok(v) => Ok(v.as_slice()),
        Err(e) => Err(e.clone()),
    }
}

/// The spec of one option.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    specs().ok()?.iter().find(|s| s.name == name)
}

/// Every option's default (options without a default are absent).
pub fn defaults() -> Result<RawConfig, EmbeddedConfigError> {
    Ok(specs()?
        .iter()
        .filter_map(|s| s.default.clone().map(|d| (s.name.clone(), d)))
        .collect())
}

/// Merge a user's option file (YAML text) over the defaults.
pub fn merge_user_file(text: &str) -> Result<Merged, FileError> {
    if let Some(problem) = yaml_nesting_problem(text) {
        return Err(FileError::Yaml(problem));
    }
    let doc = parse_loose(text).map_err(|e| FileError::Yaml(one_line(&e.to_string())))?;
    let mut raw = defaults()?;
    let map = match &doc {
        // An empty file sets nothing.
        serde_yaml::Value::Null => {
            return Ok(Merged {
                raw,
                errors: Vec::new(),
            });
        }
        serde_yaml::Value::Mapping(m) => m,
        other => return Err(FileError::NotAMap(yaml_kind(other).to_string())),
    };
    // `{calico: {option: value}}`: the application-keyed form of `juju config --file`.
    let map = match (map.len(), map.get("calico")) {
        (1, Some(serde_yaml::Value::Mapping(inner))) => inner,
        (1, Some(serde_yaml::Value::Null)) => {
            return Ok(Merged {
                raw,
                errors: Vec::new(),
            });
        }
        (1, Some(other)) => {
            return Err(FileError::NotAMap(format!(
                "calico: {} (expected a map of options under calico)",
                yaml_kind(other)
            )));
        }
        _ => map,
    };
    let mut errors = Vec::new();
    for (key, value) in map {
        let name = match key {
            serde_yaml::Value::String(s) => s.clone(),
            other => scalar_text(other).unwrap_or_else(|| yaml_kind(other).to_string()),
        };
        let Some(spec) = spec(&name) else {
            errors.push(ConfigError {
                message: format!("unknown option{}", suggestion(&name)),
                option: shown_name(&name),
            });
            continue;
        };
        if value.is_null() {
            // Juju treats a null value as "reset to the default".
            continue;
        }
        match coerce_yaml(spec.kind, value) {
            Ok(v) => {
                raw.insert(name, v);
            }
            Err(message) => errors.push(ConfigError {
                option: name,
                message,
            }),
        }
    }
    Ok(Merged { raw, errors })
}

/// An unknown option's name as an error shows it: as written when it is short and plain,
/// else quoted, escaped and cut.
fn shown_name(name: &str) -> String {
    if name.len() <= 64 && !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
        name.to_string()
    } else {
        shorten(format!("{name:?}"), SHOWN)
    }
}

fn suggestion(name: &str) -> String {
    // Only a near miss of a real option name gets a suggestion: the distance work is bounded
    // by the longest option name, whatever was typed.
    const MAX_SUGGESTED: usize = 64;
    if name.len() > MAX_SUGGESTED {
        return String::new();
    }
    let norm = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    let wanted = norm(name);
    specs()
        .ok()
        .and_then(|all| {
            all.iter()
                .map(|s| (edit_distance(&norm(&s.name), &wanted), s))
                .filter(|(d, _)| *d <= 2)
                .min_by_key(|(d, _)| *d)
                .map(|(_, s)| s)
        })
        .map(|s| format!(" (did you mean {:?}?)", s.name))
        .unwrap_or_default()
}

/// Levenshtein distance (short option names only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Coerce a YAML value given for an option of type `kind`, the way Juju does.
fn coerce_yaml(kind: OptionType, value: &serde_yaml::Value) -> Result<serde_json::Value, String> {
    let json = match value {
        serde_yaml::Value::Null => serde_json::Value::Null,
        serde_yaml::Value::Bool(b) => serde_json::Value::Bool(*b),
        serde_yaml::Value::String(s) => serde_json::Value::String(s.clone()),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => serde_json::Value::Number(f),
                    None => return Err(format!("{n} is not a finite number: {}", kind.expected())),
                }
            }
        }
        serde_yaml::Value::Tagged(t) if t.tag == TOO_LARGE_TAG => {
            let digits = t.value.as_str().unwrap_or_default();
            return Err(format!(
                "{} is too large: {}",
                shorten(digits, SHOWN),
                kind.expected()
            ));
        }
        serde_yaml::Value::Tagged(t) => return coerce_yaml(kind, &t.value),
        serde_yaml::Value::Sequence(_) | serde_yaml::Value::Mapping(_) => {
            let hint = if kind == OptionType::String {
                "; a YAML-valued option takes YAML text: write it as a block string (option: |)"
            } else {
                ""
            };
            return Err(format!(
                "got {}: {}{hint}",
                yaml_kind(value),
                kind.expected()
            ));
        }
    };
    coerce(kind, &json)
}

/// Coerce a JSON value given for an option of type `kind` the way Juju does: booleans accept
/// `true`/`false` (and Go's `1`, `t`, `TRUE`, `0`, `f`, `FALSE`, ..., plus YAML 1.1's
/// `yes`/`no`/`on`/`off`) as strings; ints accept integer strings and integral numbers;
/// floats accept numbers and numeric strings; strings accept only strings.
/// The error is a message naming the value and what is expected.
pub fn coerce(kind: OptionType, value: &serde_json::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let bad = || format!("{}: {}", show(value), kind.expected());
    match (kind, value) {
        (OptionType::String, Value::String(_))
        | (OptionType::Boolean, Value::Bool(_))
        | (OptionType::Float, Value::Number(_)) => Ok(value.clone()),
        (OptionType::Boolean, Value::String(s)) => match s.trim() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Value::Bool(false)),
            other => match other.to_ascii_lowercase().as_str() {
                "yes" | "on" => Ok(Value::Bool(true)),
                "no" | "off" => Ok(Value::Bool(false)),
                _ => Err(bad()),
            },
        },
        // As Juju's int options (juju/schema Int): integers, and strings holding an integer
        // in Go's syntax (`"64512"`, `"0xFC00"`, `"0o175400"`, `"1_000"`); never a decimal
        // number, even an integral one (`64512.0`).
        (OptionType::Int, Value::Number(n)) => {
            if n.is_i64() || n.is_u64() {
                Ok(value.clone())
            } else {
                Err(format!(
                    "{}: a decimal number, expected an integer (write it without a fraction or exponent)",
                    show(value)
                ))
            }
        }
        (OptionType::Int, Value::String(s)) => match parse_go_int(s.trim()) {
            Some(i) => Ok(Value::from(i)),
            None => Err(bad()),
        },
        (OptionType::Float, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, which Juju applies to a string given for an int
/// option: optional sign; `0x`/`0X` hexadecimal, `0o`/`0O` or a leading `0` octal, `0b`/`0B`
/// binary, else decimal; `_` only between digits (or after the base prefix).
pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..)?.to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // Underscores: between digits, or right after a base prefix (Go's underscoreOK).
    let bytes = digits.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let after_prefix = i == 0 && prefixed;
            let before_ok = i > 0 && bytes.get(i - 1) != Some(&b'_');
            let after_ok = bytes.get(i + 1).is_some_and(|n| *n != b'_');
            if !(after_ok && (before_ok || after_prefix)) {
                return None;
            }
        }
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if clean.is_empty() || clean.starts_with(['+', '-']) {
        return None;
    }
    let magnitude = u64::from_str_radix(&clean, radix).ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// The tag given to an integer too large for 64 bits while a file is parsed: the option it
/// belongs to reports it, with every other problem.
pub(crate) const TOO_LARGE_TAG: &str = "!calico-charm/integer-too-large";

/// Parse YAML into a value like `serde_yaml::from_str`, except that an integer too large for
/// 64 bits becomes a string tagged [`TOO_LARGE_TAG`] instead of failing the whole document.
pub(crate) fn parse_loose(text: &str) -> Result<serde_yaml::Value, serde_yaml::Error> {
    serde_yaml::from_str::<Loose>(text).map(|l| l.0)
}

/// The largest nesting of YAML flow collections (`{...}`, `[...]`) accepted before parsing:
/// the YAML parser's time grows with the square of that depth. Real values nest 3 deep.
pub(crate) const MAX_YAML_FLOW_DEPTH: usize = 32;

/// Why YAML text must not be parsed (flow collections nested deeper than
/// [`MAX_YAML_FLOW_DEPTH`]), found in one linear pass; `None` when it may be.
pub(crate) fn yaml_nesting_problem(text: &str) -> Option<String> {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut quote: Option<u8> = None;
    let mut prev = b'\n';
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match quote {
            Some(b'"') if b == b'\\' => {
                let _ = bytes.next();
            }
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' => quote = Some(b),
                b'#' if prev.is_ascii_whitespace() => {
                    // A comment: skip to the end of the line.
                    for c in bytes.by_ref() {
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                    if deepest > MAX_YAML_FLOW_DEPTH {
                        return Some(format!(
                            "flow collections ({{...}} or [...]) nested more than {MAX_YAML_FLOW_DEPTH} deep"
                        ));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = b;
    }
    None
}

struct Loose(serde_yaml::Value);

impl<'de> serde::Deserialize<'de> for Loose {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor).map(Loose)
    }
}

struct LooseVisitor;

impl<'de> serde::de::Visitor<'de> for LooseVisitor {
    type Value = serde_yaml::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Number(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Self::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => serde_yaml::Value::Number(v.into()),
            Err(_) => too_large(v.to_string()),
        })
    }
    fn visit_u128<E>(self, v: u128) -> Result<Self::Value, E> {
        Ok(match u64::try_from(v) {
            Ok(v) => serde_yaml::Value::Number(v.into()),
            Err(_) => too_large(v.to_string()),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Number(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_yaml::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Loose(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(serde_yaml::Value::Sequence(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_yaml::Mapping::new();
        while let Some((Loose(k), Loose(v))) = map.next_entry()? {
            out.insert(k, v);
        }
        Ok(serde_yaml::Value::Mapping(out))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        use serde::de::VariantAccess;
        let (tag, variant): (String, _) = data.variant()?;
        let Loose(value) = variant.newtype_variant()?;
        Ok(serde_yaml::Value::Tagged(Box::new(
            serde_yaml::value::TaggedValue {
                tag: serde_yaml::value::Tag::new(tag),
                value,
            },
        )))
    }
}

fn too_large(digits: String) -> serde_yaml::Value {
    serde_yaml::Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
        tag: serde_yaml::value::Tag::new(TOO_LARGE_TAG),
        value: serde_yaml::Value::String(digits),
    }))
}

/// A value as shown in an error: strings quoted and escaped, on one line, cut when long.
pub fn show(value: &serde_json::Value) -> String {
    let text = match value {
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Array(_) => "a list".to_string(),
        serde_json::Value::Object(_) => "a map".to_string(),
        other => other.to_string(),
    };
    shorten(text, SHOWN)
}

/// Errors from parsers may span lines; an operator reads one line per problem.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_yaml_declares_every_seed_option_with_its_type_and_default() {
        let specs = specs().expect("embedded config.yaml parses");
        let get = |n: &str| specs.iter().find(|s| s.name == n).expect(n);
        // The options as the charm documents them, written out by hand.
        let table: [(&str, OptionType, Option<serde_json::Value>); 23] = [
            (
                "calico-node-image",
                OptionType::String,
                Some(json!("docker.io/calico/node:v3.6.1")),
            ),
            (
                "calico-policy-image",
                OptionType::String,
                Some(json!("docker.io/calico/kube-controllers:v3.6.1")),
            ),
            ("ipip", OptionType::String, Some(json!("Never"))),
            ("nat-outgoing", OptionType::Boolean, Some(json!(true))),
            ("cidr", OptionType::String, Some(json!("192.168.0.0/16"))),
            ("manage-pools", OptionType::Boolean, Some(json!(true))),
            ("global-as-number", OptionType::Int, Some(json!(64512))),
            ("subnet-as-numbers", OptionType::String, Some(json!("{}"))),
            ("unit-as-numbers", OptionType::String, Some(json!("{}"))),
            ("node-to-node-mesh", OptionType::Boolean, Some(json!(true))),
            ("global-bgp-peers", OptionType::String, Some(json!("[]"))),
            ("subnet-bgp-peers", OptionType::String, Some(json!("{}"))),
            ("unit-bgp-peers", OptionType::String, Some(json!("{}"))),
            (
                "route-reflector-cluster-ids",
                OptionType::String,
                Some(json!("{}")),
            ),
            ("vxlan", OptionType::String, Some(json!("Never"))),
            ("veth-mtu", OptionType::Int, None),
            // Options today's Calico charm declares beyond those, as it declares them.
            (
                "bgp-service-cluster-ips",
                OptionType::String,
                Some(json!("")),
            ),
            (
                "bgp-service-external-ips",
                OptionType::String,
                Some(json!("")),
            ),
            (
                "bgp-service-loadbalancer-ips",
                OptionType::String,
                Some(json!("")),
            ),
            ("ignore-loose-rpf", OptionType::Boolean, Some(json!(false))),
            (
                "disable-vxlan-tx-checksumming",
                OptionType::Boolean,
                Some(json!(true)),
            ),
            ("image-registry", OptionType::String, Some(json!(""))),
            ("typha", OptionType::String, Some(json!("auto"))),
        ];
        assert_eq!(specs.len(), table.len());
        for (name, kind, default) in table {
            let s = get(name);
            assert_eq!(s.kind, kind, "{name}");
            assert_eq!(s.default, default, "{name}");
            assert!(s.description.contains("Example:"), "{name} has an example");
        }
    }

    #[test]
    fn merges_both_file_shapes_over_defaults() {
        let m = merge_user_file("ipip: Always\nglobal-as-number: '65000'\n").expect("file");
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        assert_eq!(m.raw["ipip"], json!("Always"));
        assert_eq!(m.raw["global-as-number"], json!(65000));
        assert_eq!(m.raw["cidr"], json!("192.168.0.0/16"));
        let m =
            merge_user_file("calico:\n  nat-outgoing: 'false'\n  veth-mtu: 9000\n").expect("file");
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        assert_eq!(m.raw["nat-outgoing"], json!(false));
        assert_eq!(m.raw["veth-mtu"], json!(9000));
        let m = merge_user_file("").expect("empty file");
        assert_eq!(m.raw, defaults().expect("defaults"));
    }

    #[test]
    fn int_options_take_what_juju_takes() {
        // Juju's int options (juju/schema Int): YAML integers in any notation YAML has,
        // strings in Go's ParseInt(s, 0, 64) syntax; decimal numbers never.
        let m = merge_user_file("global-as-number: 0xFC00\nveth-mtu: '0o21450'\n").expect("file");
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        assert_eq!(m.raw["global-as-number"], json!(64512));
        assert_eq!(m.raw["veth-mtu"], json!(9000));
        for (text, want) in [
            ("64512", Some(64512)),
            ("+64512", Some(64512)),
            ("-1", Some(-1)),
            ("0xFC00", Some(64512)),
            ("0XfC00", Some(64512)),
            ("0o175400", Some(64256)),
            ("0175400", Some(64256)),
            ("0b1111", Some(15)),
            ("1_000", Some(1000)),
            ("0x_FC00", Some(64512)),
            ("0", Some(0)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("1__000", None),
            ("_1000", None),
            ("1000_", None),
            ("64512.0", None),
            ("6.4512e4", None),
            ("0x", None),
            ("08", None),
            ("", None),
            ("--1", None),
            ("1.10", None),
        ] {
            assert_eq!(parse_go_int(text), want, "{text:?}");
        }
        for bad in ["64512.0", "6.4512e4"] {
            let m = merge_user_file(&format!("global-as-number: {bad}\n")).expect("file");
            assert_eq!(m.errors.len(), 1, "{bad}");
            assert!(
                m.errors[0].message.contains("a decimal number"),
                "{:?}",
                m.errors
            );
        }
    }

    #[test]
    fn an_integer_too_large_for_64_bits_is_that_options_error_alone() {
        let m = merge_user_file(
            "global-as-number: 99999999999999999999999\nipip: Always\nveth-mtu: -99999999999999999999\n",
        )
        .expect("the file as a whole parses");
        let lines: Vec<String> = m.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "global-as-number: 99999999999999999999999 is too large: expected an integer",
                "veth-mtu: -99999999999999999999 is too large: expected an integer",
            ]
        );
        assert_eq!(m.raw["ipip"], json!("Always"));
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!("{}{}", "{a: ".repeat(20_000), "}".repeat(20_000));
        // Refused by the nesting check before the parser sees it (the parser would recurse).
        assert!(yaml_nesting_problem(&deep).is_some());
        assert!(matches!(merge_user_file(&deep), Err(FileError::Yaml(_))));
        // Brackets inside quotes and comments do not count; real values pass.
        let quoted = format!(
            "a: '{}'\nb: \"{}\" # {}\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        assert_eq!(yaml_nesting_problem(&quoted), None);
        assert_eq!(
            yaml_nesting_problem("- {address: 10.0.0.1, as-number: [1]}\n"),
            None
        );
    }

    #[test]
    fn a_huge_unknown_option_name_costs_no_distance_work() {
        let name = "x".repeat(5 * 1024 * 1024);
        // Beyond the longest option name no distance is computed (an O(n·m) table of a
        // 5 MiB name would not finish): no suggestion, and the name shown is cut short.
        assert_eq!(suggestion(&name), "");
        // An explicit key (`? key`): a plain key is limited to 1024 characters by YAML.
        let m = merge_user_file(&format!("? {name}\n: 1\n")).expect("file");
        assert_eq!(m.errors.len(), 1);
        assert!(
            m.errors[0].option.len() < 200,
            "{}",
            m.errors[0].option.len()
        );
        assert_eq!(m.errors[0].message, "unknown option");
    }

    #[test]
    fn reports_unknown_options_and_bad_types_by_name() {
        let m = merge_user_file(
            "ipip-mode: Always\nnat-outgoing: maybe\nglobal-as-number: 1.5\nsubnet-as-numbers: {10.0.0.0/24: 1}\n",
        )
        .expect("file");
        let lines: Vec<String> = m.errors.iter().map(ToString::to_string).collect();
        assert!(
            lines.contains(&"ipip-mode: unknown option".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"nat-outgoing: \"maybe\": expected a boolean (true or false)".to_string()
            ),
            "{lines:?}"
        );
        assert!(
            lines.contains(
                &"global-as-number: 1.5: a decimal number, expected an integer (write it without a fraction or exponent)"
                    .to_string()
            ),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("subnet-as-numbers: got a map: expected a string")),
            "{lines:?}"
        );
        // Options in error keep their defaults.
        assert_eq!(m.raw["nat-outgoing"], json!(true));
        assert_eq!(
            merge_user_file("- a\n"),
            Err(FileError::NotAMap("a list".into()))
        );
        assert!(matches!(merge_user_file("a: [\n"), Err(FileError::Yaml(_))));
        let m = merge_user_file("node-to-node-meshes: false\n").expect("file");
        assert_eq!(
            m.errors[0].to_string(),
            "node-to-node-meshes: unknown option (did you mean \"node-to-node-mesh\"?)"
        );
    }
}
