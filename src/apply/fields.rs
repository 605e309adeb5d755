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
pub fn up_to_date(desired: &Value, live: &Value) -> bool {
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
pub fn charm_fields(live: &Value) -> Vec<&Value> {
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
pub fn owned_within(fields: &Value, desired: &Value) -> bool {
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
}
