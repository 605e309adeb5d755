//! Whether a live object already holds what the charm would apply (pure), so that a hook
//! that changes nothing writes nothing.
//!
//! Two checks, both on plain JSON values:
//!
//! 1. **Values** ([`holds`]): every field the charm sets has, in the live object, the value
//!    the charm would set. Fields the charm does not set (defaults the server filled in,
//!    fields other managers own, `status`) are not looked at. Drift by anyone else in a
//!    field the charm sets fails this check, so the next hook corrects it.
//! 2. **Ownership** ([`owned_within`]): every field the charm's field manager
//!    ([`crate::calico::FIELD_MANAGER`], operation `Apply`) owns in the live object's
//!    `metadata.managedFields` is still one the charm sets. A field the charm set earlier
//!    and no longer wants fails this check: applying then drops it, as server-side apply
//!    does for a field its manager stops sending. A datastore that keeps no managed fields
//!    (etcd) gives none, and only the values are compared.
//!
//! The format of `fieldsV1` is the API server's (`f:<field>`, `k:<list-map key>`,
//! `v:<set value>`, `i:<index>`, `.` for the element itself):
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>.
//! Anything else makes the check fail, so that the charm applies as it always did.

use serde_json::{Map, Value};

use crate::calico::FIELD_MANAGER;

/// Whether applying `desired` (the object as the charm would send it) to `live` (the object
/// as read, with its `metadata.managedFields` when the datastore keeps them) would change
/// nothing.
pub(crate) fn up_to_date(desired: &Value, live: &Value) -> bool {
    holds(desired, live) && charm_fields(live).iter().all(|f| owned_within(f, desired))
}

/// Every field set in `desired` has the same value in `live` (lists: same length, element
/// by element). An empty list or map the charm sends matches an absent field: the API
/// server does not keep empty values.
pub fn holds(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, dv)| match (dv, l.get(key)) {
            (Value::Null, _) => true,
            (Value::Array(a), None) => a.is_empty(),
            (Value::Object(o), None) => o.is_empty(),
            (_, None) => false,
            (dv, Some(lv)) => holds(dv, lv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| holds(dv, lv))
        }
        (d, l) => d == l,
    }
}

/// The `fieldsV1` trees of the charm's own `Apply` entries in `metadata.managedFields`
/// (none when the datastore keeps no managed fields, or the charm never applied).
pub(crate) fn charm_fields(live: &Value) -> Vec<&Value> {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| {
            entry.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                && entry.get("operation").and_then(Value::as_str) == Some("Apply")
                && entry.get("subresource").is_none()
        })
        .filter_map(|entry| entry.get("fieldsV1"))
        .collect()
}

/// Every field of the `fieldsV1` tree `fields` is present in `desired`.
pub(crate) fn owned_within(fields: &Value, desired: &Value) -> bool {
    let Some(fields) = fields.as_object() else {
        return false;
    };
    fields.iter().all(|(key, sub)| {
        if key == "." {
            return true;
        }
        let Some((tag, rest)) = key.split_once(':') else {
            return false;
        };
        let child = match (tag, desired) {
            ("f", Value::Object(d)) => d.get(rest).filter(|v| !v.is_null()),
            ("k", Value::Array(items)) => match serde_json::from_str::<Map<String, Value>>(rest) {
                Ok(k) => items.iter().find(|item| matches_key(item, &k)),
                Err(_) => None,
            },
            ("v", Value::Array(items)) => match serde_json::from_str::<Value>(rest) {
                Ok(v) => return items.contains(&v),
                Err(_) => None,
            },
            ("i", Value::Array(items)) => rest.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match child {
            Some(child) => is_leaf(sub) || owned_within(sub, child),
            None => false,
        }
    })
}

/// A `fieldsV1` entry with nothing below it (`{}`, or only `.`).
fn is_leaf(sub: &Value) -> bool {
    sub.as_object().is_none_or(|m| m.keys().all(|k| k == "."))
}

/// Whether a list element is the one a list-map key names. Key fields the charm does not
/// send (a port's `protocol`, defaulted to `TCP` by the server) are not compared; at least
/// one must be.
fn matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    let mut compared = 0;
    for (field, value) in key {
        match item.get(field) {
            Some(v) if v == value => compared += 1,
            Some(_) => return false,
            None => {}
        }
    }
    compared > 0
}

/// Kubernetes' own components: the fields they write on an object (a Deployment's revision
/// annotation, by the deployment controller) stay theirs when the charm adopts the object.
pub(crate) const KUBERNETES_MANAGERS: &[&str] = &[
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-apiserver",
];

/// Whether a `managedFields` entry is the charm's own `Apply` entry.
fn is_charm_apply(entry: &Value) -> bool {
    entry.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
        && entry.get("operation").and_then(Value::as_str) == Some("Apply")
        && entry
            .get("subresource")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
}

/// Whether the charm takes this entry's fields over when it adopts the object: another
/// manager's (or the charm's own `Update`) entry on the main resource, of the object's API
/// version, that is not one of [`KUBERNETES_MANAGERS`]. Status (a subresource) stays its
/// writer's.
fn is_foreign(entry: &Value, api_version: Option<&str>) -> bool {
    let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("");
    !is_charm_apply(entry)
        && !KUBERNETES_MANAGERS.contains(&manager)
        && entry
            .get("subresource")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        && entry.get("apiVersion").and_then(Value::as_str) == api_version
        && entry.get("fieldsType").and_then(Value::as_str) == Some("FieldsV1")
        && entry.get("fieldsV1").is_some_and(Value::is_object)
}

/// Add every field of the `fieldsV1` tree `more` to `into` (a set union: both are trees of
/// objects whose leaves are `{}`).
fn union(into: &mut Map<String, Value>, more: &Map<String, Value>) {
    for (key, sub) in more {
        let slot = into
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let (Value::Object(slot), Value::Object(sub)) = (slot, sub) {
            union(slot, sub);
        }
    }
}

/// Adoption of an object another manager made (pure): the `metadata.managedFields` with every
/// foreign entry's fields ([`is_foreign`]) moved into the charm's own `Apply` entry, so that
/// the charm's next server-side apply removes each of those fields it does not set (nobody
/// else owns them any more), as kubectl's client-side to server-side apply migration hands
/// fields over. `None` when no foreign manager owns anything: nothing to take over.
pub(crate) fn take_over(live: &Value) -> Option<Vec<Value>> {
    let api_version = live.get("apiVersion").and_then(Value::as_str);
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    if !entries.iter().any(|e| is_foreign(e, api_version)) {
        return None;
    }
    let mut taken = Map::new();
    let mut out = Vec::new();
    let mut charm_at = None;
    for entry in entries {
        if is_foreign(entry, api_version) {
            if let Some(fields) = entry.get("fieldsV1").and_then(Value::as_object) {
                union(&mut taken, fields);
            }
        } else {
            if is_charm_apply(entry) && charm_at.is_none() {
                charm_at = Some(out.len());
            }
            out.push(entry.clone());
        }
    }
    let at = match charm_at {
        Some(at) => at,
        None => {
            out.push(serde_json::json!({
                "manager": FIELD_MANAGER,
                "operation": "Apply",
                "apiVersion": api_version.unwrap_or_default(),
                "fieldsType": "FieldsV1",
                "fieldsV1": {},
            }));
            out.len() - 1
        }
    };
    let entry = out[at].as_object_mut()?;
    let fields = entry
        .entry("fieldsV1")
        .or_insert_with(|| Value::Object(Map::new()));
    if !fields.is_object() {
        *fields = Value::Object(Map::new());
    }
    if let Value::Object(fields) = fields {
        union(fields, &taken);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn managed(fields: Value) -> Value {
        json!([{"manager": "calico-charm", "operation": "Apply", "fieldsV1": fields}])
    }

    #[test]
    fn values_the_charm_sets_must_match_and_others_are_ignored() {
        let desired = json!({"spec": {"cidr": "10.1.0.0/16", "natOutgoing": true}});
        let cases = [
            (
                json!({"spec": {"cidr": "10.1.0.0/16", "natOutgoing": true}}),
                true,
            ),
            // The server's defaults and other managers' fields do not matter.
            (
                json!({"spec": {"cidr": "10.1.0.0/16", "natOutgoing": true, "blockSize": 26}, "status": {}}),
                true,
            ),
            // Drift in a field the charm sets does.
            (
                json!({"spec": {"cidr": "10.1.0.0/16", "natOutgoing": false}}),
                false,
            ),
            (json!({"spec": {"cidr": "10.1.0.0/16"}}), false),
            (json!({}), false),
        ];
        for (live, want) in cases {
            assert_eq!(holds(&desired, &live), want, "{live}");
        }
    }

    #[test]
    fn lists_match_element_by_element_and_empty_values_match_absent_ones() {
        let desired = json!({"c": [{"name": "a", "args": []}], "e": {}, "n": null});
        assert!(holds(&desired, &json!({"c": [{"name": "a", "x": 1}]})));
        assert!(!holds(&desired, &json!({"c": [{"name": "b"}]})));
        assert!(!holds(
            &desired,
            &json!({"c": [{"name": "a"}, {"name": "b"}]})
        ));
        assert!(!holds(&json!({"c": [1]}), &json!({})));
    }

    #[test]
    fn a_field_the_charm_owns_and_no_longer_sets_is_a_change() {
        let desired = json!({
            "metadata": {"name": "default", "labels": {"app.kubernetes.io/managed-by": "calico-charm"}},
            "spec": {"asNumber": 64512},
        });
        let owned_now = json!({"f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}}},
                               "f:spec": {"f:asNumber": {}}});
        let owned_before = json!({"f:spec": {"f:asNumber": {}, "f:serviceClusterIPs": {}}});
        let live = |fields: Value| {
            json!({
                "metadata": {"name": "default", "labels": {"app.kubernetes.io/managed-by": "calico-charm"},
                             "managedFields": managed(fields)},
                "spec": {"asNumber": 64512, "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}]},
            })
        };
        assert!(up_to_date(&desired, &live(owned_now)));
        assert!(!up_to_date(&desired, &live(owned_before)));
        // Another manager's fields are its own business.
        let mut other = live(json!({}));
        other["metadata"]["managedFields"] = json!([
            {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:serviceClusterIPs": {}}}}
        ]);
        assert!(up_to_date(&desired, &other));
        // No managed fields at all (a datastore that keeps none): values only.
        let mut bare = live(json!({}));
        bare["metadata"]
            .as_object_mut()
            .map(|m| m.remove("managedFields"));
        assert!(up_to_date(&desired, &bare));
    }

    #[test]
    fn list_map_keys_sets_and_indexes_are_followed() {
        let desired = json!({"spec": {
            "containers": [{"name": "calico-node", "ports": [{"containerPort": 9099}], "args": ["-x"]}],
        }});
        let key = |k: &str| format!("k:{k}");
        let owned = json!({"f:spec": {"f:containers": {
            key(r#"{"name":"calico-node"}"#): {".": {}, "f:name": {},
                "f:ports": {key(r#"{"containerPort":9099,"protocol":"TCP"}"#): {".": {}, "f:containerPort": {}}},
                "f:args": {}},
        }}});
        assert!(owned_within(&owned, &desired));
        // The container once had a probe the charm no longer renders.
        let mut probe = owned.clone();
        probe["f:spec"]["f:containers"][key(r#"{"name":"calico-node"}"#)]["f:livenessProbe"] =
            json!({});
        assert!(!owned_within(&probe, &desired));
        // A container the charm no longer renders.
        let gone = json!({"f:spec": {"f:containers": {key(r#"{"name":"old"}"#): {}}}});
        assert!(!owned_within(&gone, &desired));
        // Sets and indexes.
        assert!(owned_within(&json!({"v:\"-x\"": {}}), &json!(["-x"])));
        assert!(!owned_within(&json!({"v:\"-y\"": {}}), &json!(["-x"])));
        assert!(owned_within(&json!({"i:0": {}}), &json!(["-x"])));
        assert!(!owned_within(&json!({"i:1": {}}), &json!(["-x"])));
        // What it cannot read is a change (the charm then applies, as it always did).
        assert!(!owned_within(&json!({"x:1": {}}), &desired));
        assert!(!owned_within(&json!([]), &desired));
    }

    #[test]
    fn adoption_moves_a_foreign_managers_fields_into_the_charms_apply_entry() {
        let live = json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "calico-node", "managedFields": [
                {"manager": "calico-calico", "operation": "Apply", "apiVersion": "apps/v1",
                 "fieldsType": "FieldsV1", "time": "2024-01-01T00:00:00Z",
                 "fieldsV1": {"f:metadata": {"f:labels": {"f:juju.io/manifest": {}}},
                              "f:spec": {"f:template": {"f:spec": {"f:volumes": {
                                  "k:{\"name\":\"flexvol\"}": {".": {}, "f:name": {}}}}}}}},
                {"manager": "calico-charm", "operation": "Apply", "apiVersion": "apps/v1",
                 "fieldsType": "FieldsV1", "time": "2026-01-01T00:00:00Z",
                 "fieldsV1": {"f:metadata": {"f:labels": {"f:k8s-app": {}}}}},
                {"manager": "kube-controller-manager", "operation": "Update",
                 "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:x": {}}}}},
                {"manager": "calico-calico", "operation": "Update", "apiVersion": "apps/v1",
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:numberReady": {}}}},
            ]},
        });
        let fields = take_over(&live).expect("a foreign manager");
        let managers: Vec<(&str, &str)> = fields
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap(),
                    e["operation"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            managers,
            [
                ("calico-charm", "Apply"),
                ("kube-controller-manager", "Update"),
                ("calico-calico", "Update")
            ]
        );
        assert_eq!(
            fields[0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:k8s-app": {}, "f:juju.io/manifest": {}}},
                   "f:spec": {"f:template": {"f:spec": {"f:volumes": {
                       "k:{\"name\":\"flexvol\"}": {".": {}, "f:name": {}}}}}}})
        );
        assert_eq!(fields[0]["time"], "2026-01-01T00:00:00Z");
        // Then the next plan applies again, and the apply drops what the charm does not set.
        let mut taken = live.clone();
        taken["metadata"]["managedFields"] = Value::Array(fields);
        assert_eq!(take_over(&taken), None, "nothing left to take");
        let desired =
            json!({"metadata": {"name": "calico-node", "labels": {"k8s-app": "calico-node"}}});
        assert!(
            !charm_fields(&taken)
                .iter()
                .all(|f| owned_within(f, &desired))
        );
    }

    #[test]
    fn adoption_without_an_entry_of_the_charms_makes_one_and_nothing_foreign_is_none() {
        let live = json!({"apiVersion": "v1", "metadata": {"managedFields": [
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]}});
        let fields = take_over(&live).unwrap();
        assert_eq!(
            fields,
            vec![
                json!({"manager": "calico-charm", "operation": "Apply", "apiVersion": "v1",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}})
            ]
        );
        assert_eq!(
            take_over(&json!({"apiVersion": "v1", "metadata": {}})),
            None
        );
        let ours = json!({"apiVersion": "v1", "metadata": {"managedFields": [
            {"manager": "calico-charm", "operation": "Apply", "apiVersion": "v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]}});
        assert_eq!(take_over(&ours), None);
    }
}
