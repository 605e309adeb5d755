//! Calico's etcdv3 layout (pure): where each resource lives and how its value is written.
//!
//! - v3 resources: `/calico/resources/v3/projectcalico.org/<plural>/<name>`, the value the
//!   full v3 object as JSON (`apiVersion: projectcalico.org/v3`, `kind`, `metadata` with
//!   `name`, `uid`, `creationTimestamp`, `labels`, `annotations`; `spec`). `resourceVersion`
//!   is not stored: it is the key's mod revision (projectcalico/calico
//!   `libcalico-go/lib/backend/model/resource.go`, `lib/backend/etcdv3/etcdv3.go`).
//! - IPAM blocks: `/calico/ipam/v2/assignment/ipv4/block/10.1.0.0-26` (the CIDR with `-` for
//!   `/`), the value `{cidr, affinity, allocations: [..], ...}`
//!   (`libcalico-go/lib/backend/model/block.go`).
//!
//! Ownership: the charm never rewrites a whole object. It records the spec fields it set in
//! the annotation [`OWNED_FIELDS`], merges exactly those into the stored object (keeping
//! every other field, label and annotation), and removes a field it set before and no longer
//! sets: the etcd counterpart of the field manager of server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// The key prefix of every v3 resource.
pub(crate) const RESOURCES: &str = "/calico/resources/v3/projectcalico.org/";
/// The key prefix of every IPAM block.
pub(crate) const IPAM_BLOCKS: &str = "/calico/ipam/v2/assignment/";
/// `apiVersion` of the stored objects.
pub(crate) const API_VERSION: &str = "projectcalico.org/v3";
/// Annotation listing the spec fields the charm owns on an object (dotted paths, sorted,
/// comma-separated: `bgp.asNumber,bgp.ipv4Address`).
pub(crate) const OWNED_FIELDS: &str = "calico.juju.is/owned-fields";

/// The v3 kinds the charm writes or reads in etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IPPool,
    BGPPeer,
    BGPConfiguration,
    Node,
    FelixConfiguration,
    ClusterInformation,
    CalicoNodeStatus,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IPPool => "IPPool",
            Kind::BGPPeer => "BGPPeer",
            Kind::BGPConfiguration => "BGPConfiguration",
            Kind::Node => "Node",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::ClusterInformation => "ClusterInformation",
            Kind::CalicoNodeStatus => "CalicoNodeStatus",
        }
    }

    /// The lower-case plural in the key.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::IPPool => "ippools",
            Kind::BGPPeer => "bgppeers",
            Kind::BGPConfiguration => "bgpconfigurations",
            Kind::Node => "nodes",
            Kind::FelixConfiguration => "felixconfigurations",
            Kind::ClusterInformation => "clusterinformations",
            // libcalico-go `lib/backend/model/resource.go`: registerResourceInfo of
            // KindCalicoNodeStatus, "caliconodestatuses" (cluster-scoped).
            Kind::CalicoNodeStatus => "caliconodestatuses",
        }
    }
}

/// The key of a (cluster-scoped) v3 resource.
pub fn key(kind: Kind, name: &str) -> String {
    format!("{RESOURCES}{}/{name}", kind.plural())
}

/// The prefix of every resource of a kind (`.../bgppeers/`), or of those whose name starts
/// with `name_prefix`.
pub fn prefix(kind: Kind, name_prefix: &str) -> String {
    format!("{RESOURCES}{}/{name_prefix}", kind.plural())
}

/// The name in a resource key of `kind` (`None` for another kind's key, or a namespaced one).
pub fn name_of(kind: Kind, key: &str) -> Option<&str> {
    key.strip_prefix(RESOURCES)?
        .strip_prefix(kind.plural())?
        .strip_prefix('/')
        .filter(|n| !n.is_empty() && !n.contains('/'))
}

/// The CIDR of an IPAM block key (`.../ipv4/block/10.1.0.0-26` → `10.1.0.0/26`).
pub(crate) fn block_cidr(key: &str) -> Option<String> {
    let rest = key.strip_prefix(IPAM_BLOCKS)?;
    let (_, cidr) = rest.rsplit_once("/block/")?;
    let (ip, len) = cidr.rsplit_once('-')?;
    Some(format!("{ip}/{len}"))
}

/// One IPAM block as stored: its CIDR and whether any address is allocated. A value that
/// cannot be read counts as allocated (the drain then waits rather than deletes).
pub(crate) fn block_in_use(value: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(value) {
        Ok(v) => match v.get("allocations").and_then(Value::as_array) {
            Some(a) => a.iter().any(|slot| !slot.is_null()),
            None => false,
        },
        Err(_) => true,
    }
}

fn set_path(spec: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut map = spec;
    for part in parts {
        let entry = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else { return };
        map = inner;
    }
    map.insert(last.to_string(), value);
}

fn remove_path(spec: &mut Map<String, Value>, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut map = spec;
    for part in parts {
        match map.get_mut(part) {
            Some(Value::Object(inner)) => map = inner,
            _ => return,
        }
    }
    map.remove(last);
}

/// The fields of `spec` as dotted paths to their values: objects are walked (so that the
/// charm owns `bgp.asNumber`, not the whole of `bgp`), anything else is a leaf.
pub fn leaves(spec: &Map<String, Value>) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, map: &Map<String, Value>, out: &mut BTreeMap<String, Value>) {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) if !inner.is_empty() => walk(&path, inner, out),
                other => {
                    out.insert(path, other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", spec, &mut out);
    out
}

/// The spec fields the charm owned on a stored object (its [`OWNED_FIELDS`] annotation).
pub(crate) fn owned_fields(object: &Value) -> BTreeSet<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(OWNED_FIELDS))
        .and_then(Value::as_str)
        .map(|s| {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The labels of a stored object.
pub fn labels(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What the charm wants on one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wanted {
    /// Labels to set (others' labels stay).
    pub labels: BTreeMap<String, String>,
    /// The spec fields the charm sets (a JSON object; nested objects are merged field by
    /// field).
    pub spec: Map<String, Value>,
}

/// Identity given to an object the charm creates: a uid and a creation time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub uid: String,
    /// RFC 3339, UTC, seconds (`2026-12-02T01:02:03Z`).
    pub timestamp: String,
}

impl Created {
    /// A random v4 UUID and the current time.
    pub fn now() -> Created {
        Created {
            uid: random_uuid(),
            timestamp: rfc3339(std::time::SystemTime::now()),
        }
    }
}

/// The object to store: `existing` (as stored, if any) with `wanted` merged in. Fields the
/// charm owned before and no longer sets are removed; everything else of `existing` stays.
/// `created` gives a new object its identity (unused when `existing` is given).
pub fn merge(
    kind: Kind,
    name: &str,
    existing: Option<&Value>,
    wanted: &Wanted,
    created: &Created,
) -> Value {
    let mut object = match existing {
        Some(v) if v.is_object() => v.clone(),
        _ => json!({
            "kind": kind.as_str(),
            "apiVersion": API_VERSION,
            "metadata": {
                "name": name,
                "uid": created.uid,
                "creationTimestamp": created.timestamp,
            },
            "spec": {},
        }),
    };
    let before = owned_fields(&object);
    let now = leaves(&wanted.spec);
    let Value::Object(root) = &mut object else {
        return object;
    };
    root.insert("kind".into(), Value::String(kind.as_str().into()));
    root.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = metadata {
        meta.insert("name".into(), Value::String(name.into()));
        // resourceVersion is the mod revision, never stored.
        meta.remove("resourceVersion");
        if !wanted.labels.is_empty() {
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            if let Value::Object(l) = labels {
                for (k, v) in &wanted.labels {
                    l.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !annotations.is_object() {
            *annotations = Value::Object(Map::new());
        }
        if let Value::Object(a) = annotations {
            if now.is_empty() {
                a.remove(OWNED_FIELDS);
            } else {
                let list: Vec<&str> = now.keys().map(String::as_str).collect();
                a.insert(OWNED_FIELDS.into(), Value::String(list.join(",")));
            }
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    let spec = root
        .entry("spec")
        .or_insert_with(|| Value::Object(Map::new()));
    if !spec.is_object() {
        *spec = Value::Object(Map::new());
    }
    if let Value::Object(spec) = spec {
        for gone in before.iter().filter(|p| !now.contains_key(*p)) {
            remove_path(spec, gone);
        }
        for (path, value) in &now {
            set_path(spec, path, value.clone());
        }
        // An object emptied by the removal leaves no empty shell behind (`bgp: {}`).
        let empties: Vec<String> = spec
            .iter()
            .filter(|(_, v)| v.as_object().is_some_and(Map::is_empty))
            .map(|(k, _)| k.clone())
            .filter(|k| before.iter().any(|p| p.starts_with(&format!("{k}."))))
            .collect();
        for k in empties {
            spec.remove(&k);
        }
    }
    object
}

/// The object without the charm's claim on it (its [`OWNED_FIELDS`] annotation and the
/// fields it lists), for a node the charm stops configuring. Labels are left.
pub fn release(object: &Value) -> Value {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = match object.get("kind").and_then(Value::as_str) {
        Some("Node") => Kind::Node,
        Some("IPPool") => Kind::IPPool,
        Some("BGPPeer") => Kind::BGPPeer,
        Some("CalicoNodeStatus") => Kind::CalicoNodeStatus,
        _ => Kind::BGPConfiguration,
    };
    merge(
        kind,
        &name,
        Some(object),
        &Wanted::default(),
        &Created {
            uid: String::new(),
            timestamp: String::new(),
        },
    )
}

/// The stored bytes of an object (compact JSON, as Calico writes it).
pub(crate) fn encode(object: &Value) -> Vec<u8> {
    serde_json::to_vec(object).unwrap_or_default()
}

/// A stored value as JSON (`None` when it is not a JSON object).
pub(crate) fn decode(value: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(value)
        .ok()
        .filter(Value::is_object)
}

/// A random version-4 UUID from the standard library's randomly seeded hasher.
pub(crate) fn random_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_usize(i);
        *w = h.finish();
    }
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_be_bytes());
    b[8..].copy_from_slice(&words[1].to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// RFC 3339 in UTC, whole seconds.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Created {
        Created {
            uid: "u-1".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn keys_follow_calicos_layout() {
        assert_eq!(
            key(Kind::IPPool, "ipv4"),
            "/calico/resources/v3/projectcalico.org/ippools/ipv4"
        );
        assert_eq!(
            key(Kind::BGPConfiguration, "default"),
            "/calico/resources/v3/projectcalico.org/bgpconfigurations/default"
        );
        assert_eq!(
            prefix(Kind::BGPPeer, "calico-1-"),
            "/calico/resources/v3/projectcalico.org/bgppeers/calico-1-"
        );
        assert_eq!(
            name_of(Kind::BGPPeer, &key(Kind::BGPPeer, "calico-1-x")),
            Some("calico-1-x")
        );
        assert_eq!(name_of(Kind::IPPool, &key(Kind::BGPPeer, "x")), None);
        assert_eq!(
            key(Kind::CalicoNodeStatus, "worker-0"),
            "/calico/resources/v3/projectcalico.org/caliconodestatuses/worker-0"
        );
        assert_eq!(
            block_cidr("/calico/ipam/v2/assignment/ipv4/block/10.1.0.0-26").as_deref(),
            Some("10.1.0.0/26")
        );
        assert_eq!(
            block_cidr("/calico/ipam/v2/assignment/ipv6/block/fd00:1::-122").as_deref(),
            Some("fd00:1::/122")
        );
    }

    #[test]
    fn a_new_object_is_a_full_v3_object() {
        let mut spec = Map::new();
        spec.insert("cidr".into(), json!("10.1.0.0/16"));
        let wanted = Wanted {
            labels: [(
                "app.kubernetes.io/managed-by".to_string(),
                "calico-charm".to_string(),
            )]
            .into(),
            spec,
        };
        let v = merge(Kind::IPPool, "ipv4", None, &wanted, &created());
        assert_eq!(
            v,
            json!({
                "kind": "IPPool",
                "apiVersion": "projectcalico.org/v3",
                "metadata": {
                    "name": "ipv4",
                    "uid": "u-1",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {"app.kubernetes.io/managed-by": "calico-charm"},
                    "annotations": {"calico.juju.is/owned-fields": "cidr"},
                },
                "spec": {"cidr": "10.1.0.0/16"},
            })
        );
    }

    #[test]
    fn merging_keeps_others_fields_and_drops_only_what_the_charm_stopped_setting() {
        let stored = json!({
            "kind": "Node", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": "n1", "uid": "x", "labels": {"a": "b"},
                         "annotations": {"calico.juju.is/owned-fields": "bgp.asNumber,bgp.routeReflectorClusterID"}},
            "spec": {"bgp": {"ipv4Address": "10.0.0.5/24", "asNumber": 64512,
                             "routeReflectorClusterID": "1.2.3.4"},
                     "orchRefs": [{"nodeName": "n1", "orchestrator": "k8s"}]},
        });
        let mut spec = Map::new();
        spec.insert("bgp".into(), json!({"asNumber": 64513}));
        let v = merge(
            Kind::Node,
            "n1",
            Some(&stored),
            &Wanted {
                labels: BTreeMap::new(),
                spec,
            },
            &created(),
        );
        assert_eq!(
            v["spec"]["bgp"],
            json!({"ipv4Address": "10.0.0.5/24", "asNumber": 64513})
        );
        assert_eq!(v["spec"]["orchRefs"], stored["spec"]["orchRefs"]);
        assert_eq!(v["metadata"]["uid"], "x");
        assert_eq!(v["metadata"]["labels"], json!({"a": "b"}));
        assert_eq!(owned_fields(&v), ["bgp.asNumber".to_string()].into());
        // Releasing drops the charm's fields and its annotation, nothing else.
        let r = release(&v);
        assert_eq!(r["spec"]["bgp"], json!({"ipv4Address": "10.0.0.5/24"}));
        assert!(r["metadata"].get("annotations").is_none());
        // The same wanted state twice is the same bytes: a no-op writes nothing.
        assert_eq!(
            encode(&merge(
                Kind::Node,
                "n1",
                Some(&v),
                &Wanted {
                    labels: BTreeMap::new(),
                    spec: {
                        let mut s = Map::new();
                        s.insert("bgp".into(), json!({"asNumber": 64513}));
                        s
                    }
                },
                &created()
            )),
            encode(&v)
        );
    }

    #[test]
    fn blocks_in_use_and_unreadable_blocks_count_as_allocated() {
        assert!(block_in_use(
            br#"{"cidr":"10.1.0.0/26","allocations":[null,0,null]}"#
        ));
        assert!(!block_in_use(
            br#"{"cidr":"10.1.0.0/26","allocations":[null,null]}"#
        ));
        assert!(block_in_use(b"not json"));
    }

    #[test]
    fn uuids_and_timestamps_have_their_formats() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        assert_eq!(rfc3339(t), "2026-05-28T20:26:40Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
