//! Field paths, managed-field sets (`fieldsV1`), server-side apply, merge patch and JSON patch.
//!
//! Simplifications (documented in `mod.rs`): lists are atomic except a fixed set of well-known
//! associative lists ([`list_keys`]); maps are granular; empty maps and `null`s in an applied
//! configuration own nothing.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pe {
    /// A map field (`f:<name>`).
    F(String),
    /// An item of an associative list, by its canonical key JSON (`k:{...}`).
    K(String),
    /// Any other `fieldsV1` element (`v:`, `i:`), kept verbatim to round-trip.
    Other(String),
}

pub type Path = Vec<Pe>;
pub type FieldSet = BTreeSet<Path>;

/// Top-level fields never tracked in managed fields.
const IGNORED_TOP: [&str; 2] = ["apiVersion", "kind"];
/// `metadata` fields never tracked in managed fields.
const IGNORED_META: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// Key fields of the well-known associative lists, by the list's field name; `None` for an
/// atomic list.
pub fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let keys: &'static [&'static str] = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "ownerReferences" => &["uid"],
        "ports" => {
            let container = items.first().and_then(|i| i.get("containerPort")).is_some();
            if container {
                &["containerPort", "protocol"]
            } else {
                &["port", "protocol"]
            }
        }
        _ => return None,
    };
    // Every item must be an object carrying the first key field.
    let first = keys.first()?;
    if items
        .iter()
        .all(|i| i.as_object().is_some_and(|o| o.contains_key(*first)))
    {
        Some(keys)
    } else {
        None
    }
}

/// Canonical key (`{"name":"x"}`) of a list item; fields in key order, absent ones skipped.
fn item_key(keys: &[&str], item: &Value) -> Option<String> {
    let obj = item.as_object()?;
    let mut parts = Vec::new();
    for k in keys {
        if let Some(v) = obj.get(*k) {
            parts.push(format!(
                "{}:{}",
                Value::String((*k).to_string()),
                serde_json::to_string(v).ok()?
            ));
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("{{{}}}", parts.join(",")))
    }
}

/// The managed-field set of an object: every leaf it sets, and every associative-list item.
pub fn fieldset_of(obj: &Value, skip_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        if IGNORED_TOP.contains(&k.as_str()) || (skip_status && k == "status") {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if IGNORED_META.contains(&mk.as_str()) {
                        continue;
                    }
                    walk(
                        mv,
                        &mut vec![Pe::F(k.clone()), Pe::F(mk.clone())],
                        mk,
                        &mut out,
                    );
                }
            }
            continue;
        }
        walk(v, &mut vec![Pe::F(k.clone())], k, &mut out);
    }
    out
}

fn walk(v: &Value, path: &mut Path, field: &str, out: &mut FieldSet) {
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, child) in m {
                path.push(Pe::F(k.clone()));
                walk(child, path, k, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_keys(field, items) {
            Some(keys) => {
                for item in items {
                    let Some(key) = item_key(keys, item) else {
                        continue;
                    };
                    path.push(Pe::K(key));
                    out.insert(path.clone());
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            path.push(Pe::F(k.clone()));
                            walk(child, path, k, out);
                            path.pop();
                        }
                    }
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`, if any.
pub fn get<'a>(obj: &'a Value, path: &[Pe]) -> Option<&'a Value> {
    let mut cur = obj;
    let mut field = "";
    for pe in path {
        match pe {
            Pe::F(name) => {
                cur = cur.get(name.as_str())?;
                field = name;
            }
            Pe::K(key) => {
                let items = cur.as_array()?;
                let keys = list_keys(field, items)?;
                cur = items
                    .iter()
                    .find(|i| item_key(keys, i).as_deref() == Some(key.as_str()))?;
            }
            Pe::Other(_) => return None,
        }
    }
    Some(cur)
}

/// Remove the value at `path`; whether something was removed.
pub fn remove(obj: &mut Value, path: &[Pe]) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    let field = match parent_path.last() {
        Some(Pe::F(f)) => f.clone(),
        _ => String::new(),
    };
    let Some(parent) = get_mut(obj, parent_path) else {
        return false;
    };
    match last {
        Pe::F(name) => parent
            .as_object_mut()
            .is_some_and(|m| m.remove(name).is_some()),
        Pe::K(key) => {
            let Some(items) = parent.as_array_mut() else {
                return false;
            };
            let Some(keys) = list_keys(&field, items) else {
                return false;
            };
            let before = items.len();
            items.retain(|i| item_key(keys, i).as_deref() != Some(key.as_str()));
            items.len() != before
        }
        Pe::Other(_) => false,
    }
}

fn get_mut<'a>(obj: &'a mut Value, path: &[Pe]) -> Option<&'a mut Value> {
    let mut cur = obj;
    let mut field = String::new();
    for pe in path {
        match pe {
            Pe::F(name) => {
                cur = cur.get_mut(name.as_str())?;
                field = name.clone();
            }
            Pe::K(key) => {
                let items = cur.as_array_mut()?;
                let keys = list_keys(&field, items)?;
                cur = items
                    .iter_mut()
                    .find(|i| item_key(keys, i).as_deref() == Some(key.as_str()))?;
            }
            Pe::Other(_) => return None,
        }
    }
    Some(cur)
}

/// `fieldsV1` JSON of a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert_path(&mut root, path);
    }
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[Pe]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let key = match first {
        Pe::F(n) => format!("f:{n}"),
        Pe::K(k) => format!("k:{k}"),
        Pe::Other(o) => o.clone(),
    };
    let entry = node.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let Value::Object(next) = entry else { return };
    if rest.is_empty() {
        if matches!(first, Pe::K(_)) {
            next.insert(".".into(), Value::Object(Map::new()));
        }
    } else {
        insert_path(next, rest);
    }
}

/// Set of a `fieldsV1` JSON tree.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    parse_node(v, &mut Vec::new(), &mut out);
    out
}

fn parse_node(v: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(m) = v.as_object() else {
        return;
    };
    for (k, child) in m {
        if k == "." {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            continue;
        }
        let pe = if let Some(n) = k.strip_prefix("f:") {
            Pe::F(n.to_string())
        } else if let Some(n) = k.strip_prefix("k:") {
            Pe::K(n.to_string())
        } else {
            Pe::Other(k.clone())
        };
        path.push(pe);
        if child.as_object().is_none_or(Map::is_empty) {
            out.insert(path.clone());
        } else {
            parse_node(child, path, out);
        }
        path.pop();
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct Manager {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

/// Parse `metadata.managedFields` of an object.
pub fn managers_of(obj: &Value) -> Vec<Manager> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let s = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    list.iter()
        .map(|e| Manager {
            manager: s(e, "manager"),
            operation: s(e, "operation"),
            api_version: s(e, "apiVersion"),
            time: s(e, "time"),
            subresource: e
                .get("subresource")
                .and_then(Value::as_str)
                .map(str::to_string),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

/// Write `managers` into `metadata.managedFields` (dropping empty sets; none → field removed).
pub fn set_managers(obj: &mut Value, managers: &[Manager]) {
    let list: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = Map::new();
            e.insert("manager".into(), Value::String(m.manager.clone()));
            e.insert("operation".into(), Value::String(m.operation.clone()));
            e.insert("apiVersion".into(), Value::String(m.api_version.clone()));
            e.insert("time".into(), Value::String(m.time.clone()));
            e.insert("fieldsType".into(), Value::String("FieldsV1".into()));
            e.insert("fieldsV1".into(), to_fields_v1(&m.fields));
            if let Some(sub) = &m.subresource {
                e.insert("subresource".into(), Value::String(sub.clone()));
            }
            Value::Object(e)
        })
        .collect();
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Human form of a path, as the API server prints it in conflicts: `.spec.cidr`,
/// `.metadata.annotations.x`, `.spec.containers[name="c"].image`.
pub fn display(path: &[Pe]) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            Pe::F(n) => {
                s.push('.');
                s.push_str(n);
            }
            Pe::K(k) => {
                let inner = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|_| k.clone());
                s.push_str(&format!("[{inner}]"));
            }
            Pe::Other(o) => {
                s.push('.');
                s.push_str(o);
            }
        }
    }
    s
}

/// Remove every `null` (an applied `null` sets nothing).
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                strip_nulls(v);
            }
        }
        Value::Array(items) => {
            for v in items {
                strip_nulls(v);
            }
        }
        _ => {}
    }
}

/// Merge an applied configuration into the live object: maps recursively, associative
/// lists by key, everything else replaced.
pub fn apply_merge(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => apply_merge(lv, av, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let keys = list_keys(field, a).filter(|_| list_keys(field, l).is_some());
            match keys {
                Some(keys) => {
                    for ai in a {
                        let key = item_key(keys, ai);
                        match l
                            .iter_mut()
                            .find(|li| key.is_some() && item_key(keys, li) == key)
                        {
                            Some(li) => apply_merge(li, ai, ""),
                            None => l.push(ai.clone()),
                        }
                    }
                }
                None => *l = a.clone(),
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// A conflict: another manager owns `path` with a different value.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    /// The apiVersion the other manager wrote with.
    pub api_version: String,
    pub path: Path,
}

/// Outcome of [`server_side_apply`].
pub struct Applied {
    pub object: Value,
    pub managers: Vec<Manager>,
}

/// Server-side apply of `applied` by `manager` over `live` (`None`: the object is new).
/// `live` and `applied` are whole objects; the result keeps `live`'s server-set metadata.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    skip_status: bool,
    now: &str,
) -> Result<Applied, Vec<Conflict>> {
    let mut applied = applied.clone();
    strip_nulls(&mut applied);
    let set = fieldset_of(&applied, skip_status);
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let empty = Value::Object(Map::new());
    let base = live.unwrap_or(&empty);
    let mut managers = managers_of(base);
    if live.is_some() && managers.is_empty() {
        // As the API server does for an object without managed fields (one stored directly
        // by a test): everything in it belongs to "before-first-apply".
        let fields = fieldset_of(base, skip_status);
        if !fields.is_empty() {
            managers.push(Manager {
                manager: "before-first-apply".into(),
                operation: "Update".into(),
                api_version: base
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: now.to_string(),
                subresource: None,
                fields,
            });
        }
    }

    // Conflicts: leaves another manager owns whose value would change.
    let mut conflicts = Vec::new();
    for m in &managers {
        if m.manager == manager {
            continue;
        }
        for p in set.intersection(&m.fields) {
            if matches!(p.last(), Some(Pe::K(_))) {
                continue;
            }
            if get(base, p) != get(&applied, p) {
                conflicts.push(Conflict {
                    manager: m.manager.clone(),
                    api_version: m.api_version.clone(),
                    path: p.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for c in &conflicts {
        for m in managers.iter_mut().filter(|m| m.manager == c.manager) {
            m.fields.remove(&c.path);
        }
    }

    let previous: FieldSet = managers
        .iter()
        .filter(|m| m.manager == manager && m.operation == "Apply")
        .flat_map(|m| m.fields.iter().cloned())
        .collect();

    let mut object = base.clone();
    if let Some(meta) = applied.get("metadata").and_then(Value::as_object) {
        // Server-set metadata is never taken from the applied configuration.
        let mut meta = meta.clone();
        for k in IGNORED_META {
            if k != "name" && k != "namespace" {
                meta.remove(k);
            }
        }
        if let Some(a) = applied.as_object_mut() {
            a.insert("metadata".into(), Value::Object(meta));
        }
    }
    if skip_status && let Some(a) = applied.as_object_mut() {
        a.remove("status");
    }
    apply_merge(&mut object, &applied, "");

    // Fields this manager stops applying are removed unless someone else owns them.
    let others: Vec<&FieldSet> = managers
        .iter()
        .filter(|m| !(m.manager == manager && m.operation == "Apply"))
        .map(|m| &m.fields)
        .collect();
    // In order: an associative-list item comes before its fields, so it is removed whole
    // when no one else owns anything in it.
    for p in previous.difference(&set) {
        let replaced = (1..p.len()).any(|n| p.get(..n).is_some_and(|pre| set.contains(pre)));
        let owned = others.iter().any(|s| {
            s.range(p.clone()..)
                .next()
                .is_some_and(|q| q.starts_with(p))
        });
        if replaced || owned {
            continue;
        }
        if remove(&mut object, p) {
            prune_empty_parents(&mut object, p);
        }
    }

    managers.retain(|m| !(m.manager == manager && m.operation == "Apply"));
    managers.push(Manager {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version,
        time: now.to_string(),
        subresource: None,
        fields: set,
    });
    managers.retain(|m| !m.fields.is_empty());
    Ok(Applied { object, managers })
}

/// After removing `path`, remove parent maps (deeper than the top level) left empty.
fn prune_empty_parents(obj: &mut Value, path: &[Pe]) {
    for n in (2..path.len()).rev() {
        let Some(pre) = path.get(..n) else { continue };
        let empty = get(obj, pre).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if !empty || !matches!(pre.last(), Some(Pe::F(_))) {
            return;
        }
        remove(obj, pre);
    }
}

/// Managed fields after a non-apply write (create, update, patch) by `manager`: fields it
/// changed become its own (taken from others), fields removed are dropped from every set.
pub fn record_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    skip_status: bool,
    now: &str,
) -> Vec<Manager> {
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let old_set = fieldset_of(old, skip_status);
    let new_set = fieldset_of(new, skip_status);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| !old_set.contains(*p) || get(old, p) != get(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    let mut managers = managers_of(old);
    for m in &mut managers {
        m.fields
            .retain(|p| !removed.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        let api_version = new
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match managers
            .iter_mut()
            .find(|m| m.manager == manager && m.operation == "Update")
        {
            Some(m) => {
                m.fields.extend(changed);
                m.time = now.to_string();
                m.api_version = api_version;
            }
            None => managers.push(Manager {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version,
                time: now.to_string(),
                subresource: None,
                fields: changed,
            }),
        }
    }
    managers.retain(|m| !m.fields.is_empty());
    managers
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("op is required")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("path is required")?;
        let value = || op.get("value").cloned().ok_or("value is required");
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or("from is required")
        };
        match kind {
            "add" => pointer_add(target, path, value()?)?,
            "remove" => {
                pointer_remove(target, path)?;
            }
            "replace" => {
                pointer_remove(target, path)?;
                pointer_add(target, path, value()?)?;
            }
            "move" => {
                let v = pointer_remove(target, from()?)?;
                pointer_add(target, path, v)?;
            }
            "copy" => {
                let v = target
                    .pointer(from()?)
                    .cloned()
                    .ok_or("copy: from does not exist")?;
                pointer_add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&value()?) {
                    return Err(format!("test failed at {path}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    let parent = path.get(..idx).unwrap_or_default().to_string();
    let last = path
        .get(idx + 1..)
        .unwrap_or_default()
        .replace("~1", "/")
        .replace("~0", "~");
    Ok((parent, last))
}

fn pointer_add(target: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("add: parent of {path} does not exist"))?;
    match p {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("add: bad index in {path}"))?;
            if i > a.len() {
                return Err(format!("add: index out of range in {path}"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("add: parent of {path} is not a container")),
    }
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("remove: {path} does not exist"))?;
    match p {
        Value::Object(m) => m
            .remove(&last)
            .ok_or_else(|| format!("remove: {path} does not exist")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("remove: bad index in {path}"))?;
            if i >= a.len() {
                return Err(format!("remove: index out of range in {path}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("remove: {path} does not exist")),
    }
}
