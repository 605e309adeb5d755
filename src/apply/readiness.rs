//! Whether this node's calico-node pod is Running and Ready, and if not, why (read from the
//! pod). Pure: the caller lists the pods (label selector [`super::CALICO_NODE_SELECTOR`] in
//! [`super::NAMESPACE`], ideally with field selector `spec.nodeName=<node>`).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::render::workloads::{APP_LABEL, CALICO_NODE};

/// The cause for a pod that is not ready: `Waiting for calico-node on <node>: <reason>`.
pub fn waiting_message(node: &str, reason: &str) -> crate::problems::Cause {
    crate::problems::Cause::CalicoNode {
        node: node.to_string(),
        reason: reason.to_string(),
    }
}

fn is_calico_node(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(APP_LABEL))
        .is_some_and(|v| v == CALICO_NODE)
}

/// This node's calico-node pod among `pods`: labelled `k8s-app=calico-node` and scheduled
/// on `node`; a pod not being deleted is preferred, then the newest.
pub fn calico_node_pod<'a>(pods: &'a [Pod], node: &str) -> Option<&'a Pod> {
    pods.iter()
        .filter(|p| is_calico_node(p))
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .max_by(|a, b| {
            let key = |p: &Pod| {
                (
                    p.metadata.deletion_timestamp.is_none(),
                    p.metadata.creation_timestamp.clone(),
                )
            };
            key(a).cmp(&key(b))
        })
}

/// The first reason a container gives for not running: waiting reason, or how it ended.
fn container_reason(statuses: Option<&Vec<ContainerStatus>>, init: bool) -> Option<String> {
    for st in statuses.into_iter().flatten() {
        let Some(state) = st.state.as_ref() else {
            continue;
        };
        if let Some(reason) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty())
        {
            return Some(reason.to_string());
        }
        if let Some(t) = state.terminated.as_ref() {
            // A finished init container that succeeded is the normal case.
            if init && t.exit_code == 0 {
                continue;
            }
            let reason = t.reason.as_deref().filter(|r| !r.is_empty());
            return Some(match (init, reason) {
                (true, Some(r)) => format!("{} {r}", st.name),
                (true, None) => format!("{} exited with code {}", st.name, t.exit_code),
                (false, Some(r)) => r.to_string(),
                (false, None) => format!("exited with code {}", t.exit_code),
            });
        }
    }
    None
}

/// `Ok(())` when the pod is Running and Ready; otherwise the reason read from the pod: a
/// container's waiting reason (`ImagePullBackOff`, `CrashLoopBackOff`, …), how a container
/// ended, the phase, or `not ready`.
pub fn pod_ready(pod: &Pod) -> Result<(), String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Err("Terminating".to_string());
    }
    let Some(status) = pod.status.as_ref() else {
        return Err("Pending".to_string());
    };
    if let Some(reason) = container_reason(status.init_container_statuses.as_ref(), true)
        .or_else(|| container_reason(status.container_statuses.as_ref(), false))
    {
        return Err(reason);
    }
    match status.phase.as_deref() {
        Some("Running") => {}
        Some(phase) if !phase.is_empty() => return Err(phase.to_string()),
        _ => return Err("Pending".to_string()),
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        Ok(())
    } else {
        Err("not ready".to_string())
    }
}

/// Readiness of `node`'s calico-node pod among `pods`; `no calico-node pod` when there is
/// none (yet).
pub fn node_pod_ready(pods: &[Pod], node: &str) -> Result<(), String> {
    match calico_node_pod(pods, node) {
        Some(pod) => pod_ready(pod),
        None => Err("no calico-node pod".to_string()),
    }
}

/// Whether a DaemonSet (as stored, JSON) has settled with every pod it schedules updated,
/// ready and available: its controller has seen the current spec (`observedGeneration`),
/// and `desiredNumberScheduled` (at least one) equals `updatedNumberScheduled`,
/// `numberReady` and `numberAvailable`, with none unavailable. Then the calico-node pod of
/// any node it schedules is Running and Ready, and need not be listed. (A node the
/// controller has not scheduled a pod for yet is not counted: the leader's own node, the
/// only one this is asked for, is long scheduled.)
pub(crate) fn daemon_set_ready(live: &serde_json::Value) -> bool {
    let number = |path: &str| live.pointer(path).and_then(serde_json::Value::as_i64);
    let generation = number("/metadata/generation");
    let desired = number("/status/desiredNumberScheduled").unwrap_or(0);
    generation.is_some()
        && generation == number("/status/observedGeneration")
        && desired > 0
        && number("/status/updatedNumberScheduled") == Some(desired)
        && number("/status/numberReady") == Some(desired)
        && number("/status/numberAvailable") == Some(desired)
        && number("/status/numberUnavailable").unwrap_or(0) == 0
}

#[cfg(test)]
mod daemon_set_tests {
    use super::daemon_set_ready;
    use serde_json::json;

    #[test]
    fn only_a_settled_daemon_set_with_every_pod_ready_counts() {
        let ds = |generation: i64, observed: i64, ready: i64, unavailable: Option<i64>| {
            let mut status = json!({
                "observedGeneration": observed, "desiredNumberScheduled": 3,
                "updatedNumberScheduled": 3, "numberReady": ready, "numberAvailable": ready,
            });
            if let Some(u) = unavailable {
                status["numberUnavailable"] = json!(u);
            }
            json!({"metadata": {"generation": generation}, "status": status})
        };
        assert!(daemon_set_ready(&ds(2, 2, 3, None)));
        assert!(daemon_set_ready(&ds(2, 2, 3, Some(0))));
        assert!(!daemon_set_ready(&ds(2, 2, 2, Some(1))), "a pod not ready");
        assert!(
            !daemon_set_ready(&ds(3, 2, 3, None)),
            "the controller has not seen the spec"
        );
        assert!(
            !daemon_set_ready(&json!({"metadata": {"generation": 1}})),
            "no status"
        );
        let none = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 0, "updatedNumberScheduled": 0, "numberReady": 0, "numberAvailable": 0}});
        assert!(!daemon_set_ready(&none), "no pod scheduled at all");
    }
}
