//! The object store and the registry of served resource types.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::super::crd_schema::CrdSchema;

/// A served resource type (one group/version/plural).
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Defined by a CustomResourceDefinition.
    pub custom: bool,
    /// Has a `status` subresource: writes to the main resource never change `status`.
    pub status_subresource: bool,
    /// `metadata.generation` is maintained.
    pub has_generation: bool,
    /// The upstream Calico schema objects of this kind are validated against.
    pub schema: Option<Arc<CrdSchema>>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `ippools.crd.projectcalico.org`, or `nodes` for the core group.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `IPPool.crd.projectcalico.org`, or `Node` for the core group (as in 422 messages).
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn key(&self) -> ResKey {
        (self.group.clone(), self.plural.clone())
    }
}

/// Objects of one type are keyed by group and plural (one stored version).
pub type ResKey = (String, String);
/// `(namespace, name)`; namespace empty for cluster-scoped objects.
pub type ObjKey = (String, String);

fn builtin(
    group: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        custom: false,
        status_subresource: status,
        has_generation: generation,
        schema: None,
    }
}

/// The built-in types the test server serves.
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin("", "Node", "nodes", false, &["no"], true, false),
        builtin("", "Pod", "pods", true, &["po"], true, false),
        builtin("", "Namespace", "namespaces", false, &["ns"], true, false),
        builtin(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            false,
        ),
        builtin("", "ConfigMap", "configmaps", true, &["cm"], false, false),
        builtin("", "Secret", "secrets", true, &[], false, false),
        builtin("", "Service", "services", true, &["svc"], true, false),
        builtin("apps", "DaemonSet", "daemonsets", true, &["ds"], true, true),
        builtin(
            "apps",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
            true,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "Role",
            "roles",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
            true,
        ),
    ]
}

/// The resource types a CRD object defines (one per served version).
pub fn types_of_crd(crd: &Value, schema: Option<Arc<CrdSchema>>) -> Vec<ResourceType> {
    let s = |p: &str| {
        crd.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = s("/spec/group");
    let kind = s("/spec/names/kind");
    let plural = s("/spec/names/plural");
    let mut singular = s("/spec/names/singular");
    if singular.is_empty() {
        singular = kind.to_ascii_lowercase();
    }
    let namespaced = s("/spec/scope") == "Namespaced";
    let short_names: Vec<String> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) != Some(false))
        .map(|v| ResourceType {
            group: group.clone(),
            version: v
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced,
            short_names: short_names.clone(),
            custom: true,
            status_subresource: v.pointer("/subresources/status").is_some(),
            has_generation: true,
            schema: schema.clone(),
        })
        .collect()
}

/// The store: objects by type, and the served types.
#[derive(Default)]
pub struct Store {
    pub objects: HashMap<ResKey, BTreeMap<ObjKey, Value>>,
    pub builtin_types: Vec<ResourceType>,
    /// Types defined by CRDs, by CRD name.
    pub crd_types: BTreeMap<String, Vec<ResourceType>>,
    /// Upstream schemas by CRD name (`ippools.crd.projectcalico.org`).
    pub upstream: HashMap<String, Arc<CrdSchema>>,
    pub resource_version: u64,
    pub uid_counter: u64,
}

impl Store {
    pub fn new(upstream: HashMap<String, Arc<CrdSchema>>) -> Self {
        Store {
            builtin_types: builtins(),
            upstream,
            ..Default::default()
        }
    }

    pub fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub fn new_uid(&mut self) -> String {
        self.uid_counter += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default() as u64;
        let a = nanos ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(self.uid_counter);
        let b = self.uid_counter;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            (a & 0xfff) as u16,
            (b >> 48) as u16 & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Every served type.
    pub fn types(&self) -> impl Iterator<Item = &ResourceType> {
        self.builtin_types
            .iter()
            .chain(self.crd_types.values().flatten())
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn find_type_by_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    /// Re-derive the types of one CRD after it was written (`None`: deleted).
    pub fn register_crd(&mut self, name: &str, crd: Option<&Value>) {
        match crd {
            Some(crd) => {
                let schema = self.upstream.get(name).cloned();
                self.crd_types
                    .insert(name.to_string(), types_of_crd(crd, schema));
            }
            None => {
                if let Some(types) = self.crd_types.remove(name)
                    && let Some(t) = types.first()
                {
                    self.objects.remove(&t.key());
                }
            }
        }
    }

    pub fn get(&self, t: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&t.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    pub fn put(&mut self, t: &ResourceType, ns: &str, name: &str, obj: Value) {
        self.objects
            .entry(t.key())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj);
    }

    pub fn remove(&mut self, t: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get_mut(&t.key())
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
    }

    /// Objects of a type, in one namespace (`Some`) or all (`None`).
    pub fn list<'a>(
        &'a self,
        t: &ResourceType,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(&t.key())
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(move |((n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    /// Remove every namespaced object in a namespace.
    pub fn purge_namespace(&mut self, ns: &str) {
        for m in self.objects.values_mut() {
            m.retain(|(n, _), _| n != ns);
        }
    }
}

/// The current time in RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Whether `name` is a DNS-1123 subdomain (at most 253 characters).
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_dns1123_label_lax)
}

fn is_dns1123_label_lax(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(|c| *c != b'-')
        && b.last().is_some_and(|c| *c != b'-')
}

/// Whether `name` is a DNS-1123 label (at most 63 characters).
pub fn is_dns1123_label(name: &str) -> bool {
    name.len() <= 63 && is_dns1123_label_lax(name)
}

/// A `Status` object.
pub fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    })
}
