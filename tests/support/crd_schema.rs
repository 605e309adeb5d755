//! A small validator for Kubernetes structural OpenAPI v3 schemas, enough to check the
//! objects the charm writes against Calico's upstream CRDs (read from `../shared/calico-crds`
//! at test time, never copied into the repository).
//!
//! What is checked, as the API server would:
//! - `type` (`object`, `array`, `string`, `integer`, `number`, `boolean`), `nullable`,
//!   `format: int32` / `int64` bounds on integers, `format: cidr` and `date-time` on strings
//!   (cidr only roughly: an IP, `/`, a prefix within the family's length);
//! - `properties`, `required`, `additionalProperties`, `items`, `enum`, `maxLength`,
//!   `maxItems`, `minimum`, `maximum`, `allOf` / `anyOf` (each branch holding only value
//!   validations, as structural schemas require);
//! - `x-kubernetes-preserve-unknown-fields` and `x-kubernetes-int-or-string`;
//! - fields not declared by the schema: the API server prunes them (or refuses them with
//!   `fieldValidation=Strict`); here they are reported as `unknown field`;
//! - `metadata`: `name` present, a DNS-1123 subdomain of at most 253 characters; `labels`
//!   and `annotations` maps of strings, label values at most 63 characters of the label
//!   value alphabet.
//!
//! `pattern` is checked only for the trivial shapes Calico uses for enumerations
//! (`^(?i)(A|B|C)?$`, `^(A|B)$`, `^.*`); every other pattern is not evaluated.
//!
//! CEL `x-kubernetes-validations` are not evaluated in general. These rules are implemented
//! by hand, recognised by their message, because they matter for objects the charm renders:
//! - IPPool: ipipMode and vxlanMode cannot both be enabled; IPIP on a cidr containing `:`;
//!   the two LoadBalancer rules;
//! - BGPPeer: node with nodeSelector; peerIP with peerSelector; asNumber with peerSelector;
//! - BGPConfiguration: nodeMeshPassword / nodeMeshMaxRestartTime with the mesh disabled;
//! - any transition rule written exactly `self == oldSelf` (IPPool `cidr`, `blockSize`),
//!   evaluated by [`CrdSchema::validate_update`].
//!
//! Every other CEL rule is listed by [`CrdSchema::unevaluated_rules`] and not evaluated.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

/// `../shared/calico-crds` relative to the crate root.
pub fn default_crd_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/calico-crds"
    ))
}

/// One CRD's identity and the schema of its `v1` version.
#[derive(Clone, Debug)]
pub struct CrdSchema {
    pub group: String,
    pub kind: String,
    pub plural: String,
    /// The version whose schema was loaded (`v1`, else the storage version).
    pub version: String,
    /// `Cluster` or `Namespaced`.
    pub scope: String,
    /// `spec.versions[v1].schema.openAPIV3Schema`.
    pub schema: Value,
}

/// Read a CRD manifest and extract the `v1` (else the storage) version's schema.
pub fn load_crd_schema(path: &Path) -> Result<CrdSchema, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read CRD {}: {e}", path.display()))?;
    let crd: Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("cannot parse CRD {}: {e}", path.display()))?;
    let spec = crd
        .get("spec")
        .ok_or_else(|| format!("{}: no spec", path.display()))?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let names = spec.get("names");
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{}: no spec.versions", path.display()))?;
    let version = versions
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some("v1"))
        .or_else(|| {
            versions
                .iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .ok_or_else(|| format!("{}: no v1 or storage version", path.display()))?;
    let schema = version
        .pointer("/schema/openAPIV3Schema")
        .cloned()
        .ok_or_else(|| format!("{}: no openAPIV3Schema", path.display()))?;
    Ok(CrdSchema {
        group: s(spec.get("group")),
        kind: s(names.and_then(|n| n.get("kind"))),
        plural: s(names.and_then(|n| n.get("plural"))),
        version: s(version.get("name")),
        scope: s(spec.get("scope")),
        schema,
    })
}

type Cache = Mutex<HashMap<(PathBuf, String), Arc<CrdSchema>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The CRD of `kind` in `crd_dir` (every `*.yaml` there is a CRD manifest); cached.
pub fn find_crd(crd_dir: &Path, kind: &str) -> Result<Arc<CrdSchema>, String> {
    let key = (crd_dir.to_path_buf(), kind.to_string());
    if let Some(found) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(found);
    }
    let entries = std::fs::read_dir(crd_dir)
        .map_err(|e| format!("cannot list {}: {e}", crd_dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()) == Some("yaml"))
        .collect();
    paths.sort();
    for path in paths {
        // Cheap pre-check before parsing the whole manifest.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !text.contains(&format!("kind: {kind}\n")) {
            continue;
        }
        let crd = Arc::new(load_crd_schema(&path)?);
        if crd.kind == kind {
            if let Ok(mut c) = cache().lock() {
                c.insert(key, crd.clone());
            }
            return Ok(crd);
        }
    }
    Err(format!("no CRD for kind {kind:?} in {}", crd_dir.display()))
}

/// Validate an object against the CRD of its `kind` found in `crd_dir`. Errors read
/// `<path>: <problem>`, e.g. `spec.asNumber: Invalid value: 3000000000: must be of type int32`.
pub fn validate_object(crd_dir: &Path, obj: &Value) -> Result<(), Vec<String>> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| vec!["kind: Required value".to_string()])?;
    let crd = find_crd(crd_dir, kind).map_err(|e| vec![e])?;
    crd.validate(obj)
}

impl CrdSchema {
    /// `group/version`, the `apiVersion` objects of this CRD carry.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// Validate a whole object (create, or the new state of an update).
    pub fn validate(&self, obj: &Value) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v == self.api_version() => {}
            other => errs.push(format!(
                "apiVersion: Invalid value: {other:?}: expected {:?}",
                self.api_version()
            )),
        }
        if obj.get("kind").and_then(Value::as_str) != Some(self.kind.as_str()) {
            errs.push(format!("kind: Invalid value: expected {:?}", self.kind));
        }
        check_metadata(obj.get("metadata"), self.scope == "Namespaced", &mut errs);
        check(&self.schema, obj, "", &mut errs);
        self.check_rules(obj, &mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// Validate an update: everything [`CrdSchema::validate`] checks on `new`, plus the
    /// `self == oldSelf` transition rules between `old` and `new`.
    pub fn validate_update(&self, old: &Value, new: &Value) -> Result<(), Vec<String>> {
        let mut errs = match self.validate(new) {
            Ok(()) => Vec::new(),
            Err(e) => e,
        };
        check_immutable(&self.schema, Some(old), Some(new), "", &mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// Fill in the schema's `default`s where a field is absent (as the API server does).
    pub fn apply_defaults(&self, obj: &mut Value) {
        default_into(&self.schema, obj);
    }

    /// Remove every field the schema does not declare (as the API server prunes them).
    pub fn prune(&self, obj: &mut Value) {
        prune_into(&self.schema, obj, true);
    }

    /// Messages of the CEL rules this validator does not evaluate.
    pub fn unevaluated_rules(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_rules(&self.schema, &mut out);
        out.retain(|(rule, msg)| rule != "self == oldSelf" && !HANDLED.contains(&msg.as_str()));
        out.into_iter().map(|(_, m)| m).collect()
    }

    fn check_rules(&self, obj: &Value, errs: &mut Vec<String>) {
        let Some(spec) = obj.get("spec") else { return };
        let mut rules = Vec::new();
        collect_rules(&self.schema, &mut rules);
        for (_, message) in rules {
            if let Some(ok) = evaluate_rule(&message, spec)
                && !ok
            {
                errs.push(format!("spec: Forbidden: {message}"));
            }
        }
    }
}

const HANDLED: [&str; 9] = [
    "ipipMode and vxlanMode cannot both be enabled",
    "IPIP is not supported on IPv6 pools",
    "LoadBalancer IP pool cannot have IPIP or VXLAN enabled",
    "LoadBalancer cannot be combined with Workload or Tunnel allowed uses",
    "node and nodeSelector cannot both be set",
    "peerIP and peerSelector cannot both be set",
    "asNumber must be empty when peerSelector is set",
    "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false",
    "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false",
];

/// Evaluate one hand-implemented spec-level rule; `None` when the rule is not implemented.
fn evaluate_rule(message: &str, spec: &Value) -> Option<bool> {
    let set = |f: &str| {
        spec.get(f)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let enabled = |f: &str| {
        spec.get(f)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty() && s != "Never")
    };
    let uses = |u: &[&str]| {
        spec.get("allowedUses")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| u.contains(&s))))
    };
    let mesh_off = spec.get("nodeToNodeMeshEnabled").and_then(Value::as_bool) == Some(false);
    Some(match message {
        "ipipMode and vxlanMode cannot both be enabled" => {
            !(enabled("ipipMode") && enabled("vxlanMode"))
        }
        "IPIP is not supported on IPv6 pools" => {
            let v6 = spec
                .get("cidr")
                .and_then(Value::as_str)
                .is_some_and(|c| c.contains(':'));
            !(v6 && enabled("ipipMode"))
        }
        "LoadBalancer IP pool cannot have IPIP or VXLAN enabled" => {
            !uses(&["LoadBalancer"]) || !(enabled("ipipMode") || enabled("vxlanMode"))
        }
        "LoadBalancer cannot be combined with Workload or Tunnel allowed uses" => {
            !uses(&["LoadBalancer"]) || !uses(&["Workload", "Tunnel"])
        }
        "node and nodeSelector cannot both be set" => !(set("node") && set("nodeSelector")),
        "peerIP and peerSelector cannot both be set" => !(set("peerIP") && set("peerSelector")),
        "asNumber must be empty when peerSelector is set" => {
            !set("peerSelector")
                || spec
                    .get("asNumber")
                    .is_none_or(|a| a.as_i64() == Some(0) || a.is_null())
        }
        "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false" => {
            !(mesh_off && spec.get("nodeMeshPassword").is_some())
        }
        "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false" => {
            !(mesh_off && spec.get("nodeMeshMaxRestartTime").is_some())
        }
        _ => return None,
    })
}

/// `(rule, message)` of every `x-kubernetes-validations` entry in the schema tree.
fn collect_rules(schema: &Value, out: &mut Vec<(String, String)>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(rules) = obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
            let msg = r.get("message").and_then(Value::as_str).unwrap_or(rule);
            out.push((rule.trim().to_string(), msg.trim().to_string()));
        }
    }
    for (k, v) in obj {
        match k.as_str() {
            "properties" => {
                if let Some(props) = v.as_object() {
                    for p in props.values() {
                        collect_rules(p, out);
                    }
                }
            }
            "items" | "additionalProperties" => collect_rules(v, out),
            _ => {}
        }
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn as_integer(v: &Value) -> Option<i128> {
    if let Some(i) = v.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = v.as_u64() {
        return Some(i128::from(u));
    }
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e30 => Some(f as i128),
        _ => None,
    }
}

fn check(schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        return;
    };
    let here = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if s.get("nullable").and_then(Value::as_bool) != Some(true) {
            errs.push(format!("{here}: Invalid value: null: must not be null"));
        }
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !(value.is_string() || as_integer(value).is_some()) {
            errs.push(format!(
                "{here}: Invalid value: {value}: must be an integer or a string"
            ));
            return;
        }
    } else if let Some(ty) = s.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "number" => value.is_number(),
            "integer" => as_integer(value).is_some(),
            _ => true,
        };
        if !ok {
            errs.push(format!(
                "{here}: Invalid value: {}: must be of type {ty}",
                type_name(value)
            ));
            return;
        }
    }
    if let Some(i) = as_integer(value) {
        let format = s.get("format").and_then(Value::as_str);
        let bounds = match format {
            Some("int32") => Some((i128::from(i32::MIN), i128::from(i32::MAX))),
            Some("int64") => Some((i128::from(i64::MIN), i128::from(i64::MAX))),
            _ => None,
        };
        if let (Some((lo, hi)), Some(f)) = (bounds, format)
            && (i < lo || i > hi)
        {
            errs.push(format!("{here}: Invalid value: {i}: must be of type {f}"));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errs.push(format!(
                "{here}: Invalid value: {value}: should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errs.push(format!(
                "{here}: Invalid value: {value}: should be less than or equal to {max}"
            ));
        }
    }
    if let Some(text) = value.as_str() {
        check_string(s, text, here, errs);
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errs.push(format!(
            "{here}: Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(branches) = s.get(key).and_then(Value::as_array) else {
            continue;
        };
        if key == "allOf" {
            for b in branches {
                check(b, value, path, errs);
            }
        } else {
            let passing = branches
                .iter()
                .filter(|b| {
                    let mut e = Vec::new();
                    check(b, value, path, &mut e);
                    e.is_empty()
                })
                .count();
            let ok = if key == "anyOf" {
                passing >= 1
            } else {
                passing == 1
            };
            if !ok && !int_or_string {
                errs.push(format!(
                    "{here}: Invalid value: {value}: must validate {key}"
                ));
            }
        }
    }
    match value {
        Value::Object(map) => check_object(s, map, path, errs),
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errs.push(format!(
                    "{here}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{here}[{i}]"), errs);
                }
            }
            if s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
                for (i, item) in items.iter().enumerate() {
                    if items.iter().take(i).any(|x| x == item) {
                        errs.push(format!("{here}[{i}]: Duplicate value: {item}"));
                    }
                }
            }
        }
        _ => {}
    }
}

fn check_string(
    s: &serde_json::Map<String, Value>,
    text: &str,
    here: &str,
    errs: &mut Vec<String>,
) {
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && text.chars().count() as u64 > max
    {
        errs.push(format!(
            "{here}: Too long: may not be more than {max} bytes"
        ));
    }
    match s.get("format").and_then(Value::as_str) {
        Some("cidr") if !is_cidr(text) => {
            errs.push(format!("{here}: Invalid value: {text:?}: must be a CIDR"));
        }
        Some("date-time") if !looks_like_date_time(text) => {
            errs.push(format!(
                "{here}: Invalid value: {text:?}: must be a date-time"
            ));
        }
        _ => {}
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && let Some(false) = trivial_pattern_matches(pattern, text)
    {
        errs.push(format!(
            "{here}: Invalid value: {text:?}: should match '{pattern}'"
        ));
    }
}

fn is_cidr(text: &str) -> bool {
    let Some((ip, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    prefix <= if ip.is_ipv4() { 32 } else { 128 }
}

fn looks_like_date_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20 && b.get(4) == Some(&b'-') && b.get(10) == Some(&b'T')
}

/// `Some(matches)` for the trivial pattern shapes, `None` when the pattern is not evaluated.
fn trivial_pattern_matches(pattern: &str, text: &str) -> Option<bool> {
    if pattern == "^.*" {
        return Some(true);
    }
    let inner = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let (case_insensitive, inner) = match inner.strip_prefix("(?i)") {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let (optional, inner) = match inner.strip_suffix('?') {
        Some(rest) => (true, rest),
        None => (false, inner),
    };
    let alts = inner.strip_prefix('(')?.strip_suffix(')')?;
    if alts
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '|'))
    {
        return None;
    }
    if optional && text.is_empty() {
        return Some(true);
    }
    Some(alts.split('|').any(|a| {
        if case_insensitive {
            a.eq_ignore_ascii_case(text)
        } else {
            a == text
        }
    }))
}

fn check_object(
    s: &serde_json::Map<String, Value>,
    map: &serde_json::Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    let here = if path.is_empty() { "<root>" } else { path };
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                errs.push(format!("{}: Required value", join(path, r)));
            }
        }
    }
    let preserve = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    // `metadata` at the root is validated by check_metadata; a bare `type: object` without
    // properties there is the API server's ObjectMeta.
    let is_root_metadata = path == "metadata";
    for (k, v) in map {
        let child = join(path, k);
        if let Some(p) = props.and_then(|p| p.get(k)) {
            check(p, v, &child, errs);
        } else if let Some(a) = additional {
            match a {
                Value::Bool(true) => {}
                Value::Bool(false) => errs.push(format!("{child}: unknown field {k:?}")),
                schema => check(schema, v, &child, errs),
            }
        } else if !preserve && !is_root_metadata {
            errs.push(format!("{child}: unknown field {k:?} in {here}"));
        }
    }
}

fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
                && b.last().is_some_and(|c| c.is_ascii_alphanumeric())
        })
}

fn is_label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
            && b.last().is_some_and(|c| c.is_ascii_alphanumeric()))
}

fn check_metadata(meta: Option<&Value>, namespaced: bool, errs: &mut Vec<String>) {
    let Some(meta) = meta.and_then(Value::as_object) else {
        errs.push("metadata: Required value".to_string());
        return;
    };
    match meta.get("name").and_then(Value::as_str) {
        None => errs.push("metadata.name: Required value: name is required".to_string()),
        Some(n) if !is_dns1123_subdomain(n) => errs.push(format!(
            "metadata.name: Invalid value: {n:?}: a lowercase RFC 1123 subdomain must consist of \
             lower case alphanumeric characters, '-' or '.', at most 253 characters"
        )),
        Some(_) => {}
    }
    if !namespaced
        && meta
            .get("namespace")
            .is_some_and(|n| n.as_str() != Some(""))
    {
        errs.push("metadata.namespace: Forbidden: not allowed on a cluster-scoped resource".into());
    }
    for field in ["labels", "annotations"] {
        let Some(m) = meta.get(field) else { continue };
        let Some(m) = m.as_object() else {
            errs.push(format!(
                "metadata.{field}: Invalid value: must be a map of strings"
            ));
            continue;
        };
        for (k, v) in m {
            let Some(v) = v.as_str() else {
                errs.push(format!(
                    "metadata.{field}.{k}: Invalid value: must be a string"
                ));
                continue;
            };
            if field == "labels" && !is_label_value(v) {
                errs.push(format!(
                    "metadata.labels: Invalid value: {v:?}: not a valid label value"
                ));
            }
        }
    }
}

fn check_immutable(
    schema: &Value,
    old: Option<&Value>,
    new: Option<&Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    let (Some(s), Some(old), Some(new)) = (schema.as_object(), old, new) else {
        return;
    };
    if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
        for r in rules {
            if r.get("rule").and_then(Value::as_str).map(str::trim) == Some("self == oldSelf")
                && old != new
            {
                let msg = r
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("immutable");
                errs.push(format!("{path}: Invalid value: {new}: {}", msg.trim()));
            }
        }
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            check_immutable(p, old.get(k), new.get(k), &join(path, k), errs);
        }
    }
}

fn default_into(schema: &Value, value: &mut Value) {
    let (Some(props), Some(map)) = (
        schema.get("properties").and_then(Value::as_object),
        value.as_object_mut(),
    ) else {
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array_mut()) {
            for v in arr {
                default_into(items, v);
            }
        }
        return;
    };
    for (k, p) in props {
        if !map.contains_key(k)
            && let Some(d) = p.get("default")
        {
            map.insert(k.clone(), d.clone());
        }
        if let Some(child) = map.get_mut(k) {
            default_into(p, child);
        }
    }
}

fn prune_into(schema: &Value, value: &mut Value, root: bool) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            map.retain(|k, _| {
                (root && k == "metadata")
                    || props.is_some_and(|p| p.contains_key(k))
                    || additional.is_some_and(|a| a != &Value::Bool(false))
                    || preserve
            });
            for (k, v) in map.iter_mut() {
                if root && k == "metadata" {
                    continue;
                }
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    prune_into(p, v, false);
                } else if let Some(a) = additional.filter(|a| a.is_object()) {
                    prune_into(a, v, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for v in items {
                    prune_into(item_schema, v, false);
                }
            }
        }
        _ => {}
    }
}
