//! Pure: what the agent keeps applied, what a drift is, and how often it may correct one.
//!
//! - Kept: the unit's BGPPeers and its Node's Calico annotations; the leader also the
//!   BGPConfiguration and every workload object (RBAC, ConfigMap, DaemonSet, Deployments,
//!   Typha's). Not kept: CRDs (created once, never updated), IP pools (adopted by CIDR and
//!   drained before deletion: a hook's job), CalicoNodeStatus (calico-node writes it).
//! - A drift: the desired fields, read from the live object ([`project`]), differ from what
//!   the server stored when the charm last applied them; or the object is gone; or a desired
//!   Node annotation is missing or changed. Comparing against the server's own answer, not the
//!   rendered JSON, makes defaulting and normalisation (`100m` vs `0.1`) no drift.
//! - Corrections ([`Budget`]): the first after [`DEBOUNCE`], then doubling per correction of
//!   the same object within [`WINDOW`]; the [`CONFLICT_BOUND`]th within the window is not made:
//!   the object is reported as a conflict with the other manager ([`other_manager`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::files::AgentDesired;
use crate::calico::FIELD_MANAGER;
use crate::render::Desired;

/// Wait this long after a change before correcting it (coalesces a burst of events).
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest wait between corrections of one object.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Corrections of one object counted over this window.
pub(crate) const WINDOW: Duration = Duration::from_secs(120);
/// This many corrections of one object within [`WINDOW`] means another manager fights the
/// charm: stop and report.
pub(crate) const CONFLICT_BOUND: usize = 4;

/// Kinds the agent does not keep (see the module doc).
const NOT_KEPT: &[&str] = &[
    "CustomResourceDefinition",
    "IPPool",
    "CalicoNodeStatus",
    "Node",
];

/// The desired state for the agent from what a hook rendered.
pub(crate) fn agent_desired(
    desired: &Desired,
    unit: &str,
    leader: bool,
    kubeconfig: &std::path::Path,
) -> AgentDesired {
    let objects = desired
        .objects()
        .into_iter()
        .filter(|o| o["kind"].as_str().is_some_and(|k| !NOT_KEPT.contains(&k)))
        .collect();
    AgentDesired {
        version: 1,
        active: true,
        reason: None,
        unit: unit.to_string(),
        owner: desired.owner.clone(),
        leader,
        kubeconfig: kubeconfig.to_path_buf(),
        node: desired.node.node_name.clone(),
        node_annotations: desired
            .node
            .annotations
            .iter()
            .filter(|(k, _)| crate::calico::is_charm_node_annotation(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        objects,
        generation: String::new(),
    }
    .sealed()
}

/// Where an object lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub api_version: String,
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of(object: &Value) -> Option<Key> {
        Some(Key {
            api_version: object["apiVersion"].as_str()?.to_string(),
            kind: object["kind"].as_str()?.to_string(),
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: object["metadata"]["name"].as_str()?.to_string(),
        })
    }

    /// `Kind/name`.
    pub fn display(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The desired fields as `live` holds them: for every key of `desired` (objects, element by
/// element in lists of the same length), `live`'s value; `Null` where live has nothing.
/// Server-side bookkeeping (`metadata` but for labels and annotations, `status`) is left out.
pub fn project(desired: &Value, live: &Value) -> Value {
    fn walk(d: &Value, l: &Value) -> Value {
        match (d, l) {
            (Value::Object(dm), Value::Object(lm)) => Value::Object(
                dm.iter()
                    .map(|(k, dv)| (k.clone(), walk(dv, lm.get(k).unwrap_or(&Value::Null))))
                    .collect(),
            ),
            (Value::Array(da), Value::Array(la)) if da.len() == la.len() => {
                Value::Array(da.iter().zip(la).map(|(d, l)| walk(d, l)).collect())
            }
            (_, l) => l.clone(),
        }
    }
    let mut d = desired.clone();
    if let Some(obj) = d.as_object_mut() {
        obj.remove("status");
        obj.remove("apiVersion");
        obj.remove("kind");
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| k == "labels" || k == "annotations");
        }
    }
    walk(&d, live)
}

/// The annotations to apply on the Node: the desired ones, plus the set-only ones the unit no
/// longer sets but the Node has (applying without them would drop them, as in converge).
pub(crate) fn node_want(
    desired: &BTreeMap<String, String>,
    live: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut want = desired.clone();
    for key in crate::calico::NODE_SET_ONLY_ANNOTATIONS {
        if let (false, Some(v)) = (want.contains_key(key), live.get(key)) {
            want.insert(key.to_string(), v.clone());
        }
    }
    want
}

/// Whether the Node lacks a desired annotation or holds another value.
pub(crate) fn node_drifted(
    desired: &BTreeMap<String, String>,
    live: &BTreeMap<String, String>,
) -> bool {
    desired.iter().any(|(k, v)| live.get(k) != Some(v))
}

/// The annotations of a live object.
pub fn annotations(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The manager that last changed `live` other than the charm: the latest entry of its
/// managed fields whose manager is not [`FIELD_MANAGER`] (`kubectl-edit`, ...).
pub(crate) fn other_manager(live: &Value) -> Option<String> {
    live["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .filter(|f| f["manager"].as_str().is_some_and(|m| m != FIELD_MANAGER))
        .max_by(|a, b| {
            a["time"]
                .as_str()
                .unwrap_or_default()
                .cmp(b["time"].as_str().unwrap_or_default())
        })
        .and_then(|f| f["manager"].as_str().map(str::to_string))
}

/// The correction budget of one object.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    made: VecDeque<Instant>,
}

/// What to do about a drift of one object at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Correct it after this delay.
    After(Duration),
    /// Another manager keeps reverting it: do not correct, report a conflict.
    Conflict,
}

impl Budget {
    fn trim(&mut self, now: Instant) {
        while self
            .made
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > WINDOW)
        {
            self.made.pop_front();
        }
    }

    /// The decision for a drift seen at `now`.
    pub(crate) fn decide(&mut self, now: Instant) -> Decision {
        self.trim(now);
        let n = self.made.len();
        if n + 1 >= CONFLICT_BOUND {
            return Decision::Conflict;
        }
        let delay = DEBOUNCE.saturating_mul(1 << n.min(16)).min(MAX_BACKOFF);
        Decision::After(delay)
    }

    /// A correction was made at `now`.
    pub fn record(&mut self, now: Instant) {
        self.trim(now);
        self.made.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_projection_ignores_what_the_server_adds_and_sees_what_changed() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "kube-system", "labels": {"a": "1"}},
            "data": {"k": "v"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "kube-system", "uid": "u",
                         "resourceVersion": "7", "labels": {"a": "1", "other": "x"}},
            "data": {"k": "v", "extra": "y"}});
        let p = project(&desired, &live);
        assert_eq!(
            p,
            json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}})
        );
        let mut edited = live.clone();
        edited["data"]["k"] = json!("changed");
        assert_ne!(project(&desired, &edited), p);
        let mut unlabelled = live.clone();
        unlabelled["metadata"]["labels"] = json!({});
        assert_ne!(project(&desired, &unlabelled), p);
        // A list element defaulted by the server is no change; a removed element is.
        let d = json!({"spec": {"c": [{"name": "x"}]}});
        let l = json!({"spec": {"c": [{"name": "x", "defaulted": true}]}});
        assert_eq!(project(&d, &l), json!({"spec": {"c": [{"name": "x"}]}}));
        assert_eq!(
            project(&d, &json!({"spec": {"c": []}})),
            json!({"spec": {"c": []}})
        );
    }

    #[test]
    fn node_annotations_keep_set_only_keys_and_drift_when_a_desired_one_is_gone() {
        let desired = BTreeMap::from([(
            crate::calico::AS_NUMBER_ANNOTATION.to_string(),
            "64512".to_string(),
        )]);
        let mut live = desired.clone();
        live.insert("other".into(), "x".into());
        assert!(!node_drifted(&desired, &live));
        live.remove(crate::calico::AS_NUMBER_ANNOTATION);
        assert!(node_drifted(&desired, &live));
        for key in crate::calico::NODE_SET_ONLY_ANNOTATIONS {
            live.insert(key.to_string(), "10.0.0.5/24".into());
        }
        let want = node_want(&desired, &live);
        assert_eq!(
            want.len(),
            1 + crate::calico::NODE_SET_ONLY_ANNOTATIONS.len()
        );
        assert!(!want.contains_key("other"));
    }

    #[test]
    fn the_other_manager_is_the_latest_that_is_not_the_charm() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "calico-charm", "operation": "Apply", "time": "2026-01-01T00:00:09Z"},
            {"manager": "kube-controller", "operation": "Update", "time": "2026-01-01T00:00:01Z"},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-01-01T00:00:05Z"},
        ]}});
        assert_eq!(other_manager(&live).as_deref(), Some("kubectl-edit"));
        assert_eq!(other_manager(&json!({})), None);
    }

    #[test]
    fn corrections_back_off_then_end_in_a_conflict() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        assert_eq!(b.decide(t0), Decision::After(DEBOUNCE));
        b.record(t0);
        assert_eq!(b.decide(t0), Decision::After(DEBOUNCE * 2));
        b.record(t0);
        assert_eq!(b.decide(t0), Decision::After(DEBOUNCE * 4));
        b.record(t0);
        assert_eq!(b.decide(t0), Decision::Conflict);
        // Long after, the window is clear again.
        let later = t0 + WINDOW + Duration::from_secs(1);
        assert_eq!(b.decide(later), Decision::After(DEBOUNCE));
    }
}
