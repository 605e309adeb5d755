//! Reading calico-node's readiness from its pod (pure).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::datastore::NodeAgent;

/// Label selector of calico-node's pods (the DaemonSet's pod template must carry it).
pub const CALICO_NODE_SELECTOR: &str = "k8s-app=calico-node";

/// The state of calico-node from its pod on the node (`None`: no pod there).
///
/// Ready only when the pod is Running and its `Ready` condition is true; otherwise the most
/// telling reason the pod gives: a container's waiting or terminated reason
/// (`ImagePullBackOff`, `CrashLoopBackOff`, ...), else the pod's own reason or phase, else the
/// `Ready` condition's reason.
pub fn node_agent_from_pods(pods: &[Pod], node: &str) -> NodeAgent {
    let mut on_node: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        .collect();
    // A rolling update can leave an old pod terminating beside the new one: judge the
    // live one.
    on_node.sort_by_key(|p| p.metadata.deletion_timestamp.is_some());
    match on_node.first() {
        None => NodeAgent::Missing,
        Some(pod) => node_agent_from_pod(pod),
    }
}

/// The state of calico-node from one pod.
pub fn node_agent_from_pod(pod: &Pod) -> NodeAgent {
    if pod.metadata.deletion_timestamp.is_some() {
        return NodeAgent::NotReady("Terminating".to_string());
    }
    let Some(status) = pod.status.as_ref() else {
        return NodeAgent::NotReady("Pending".to_string());
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let ready = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready");
    if phase == "Running" && ready.is_some_and(|c| c.status == "True") {
        return NodeAgent::Ready;
    }
    let containers = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default()
        .iter()
        .chain(status.container_statuses.as_deref().unwrap_or_default());
    for container in containers {
        if let Some(reason) = container_reason(container) {
            return NodeAgent::NotReady(reason);
        }
    }
    if let Some(reason) = status.reason.as_deref().filter(|r| !r.is_empty()) {
        return NodeAgent::NotReady(reason.to_string());
    }
    if phase != "Running" {
        return NodeAgent::NotReady(phase.to_string());
    }
    let reason = ready
        .and_then(|c| c.reason.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "not Ready".to_string());
    NodeAgent::NotReady(reason)
}

fn container_reason(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        return Some(
            waiting
                .reason
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| format!("container {} waiting", container.name)),
        );
    }
    if let Some(terminated) = &state.terminated {
        // A completed init container is fine.
        if terminated.exit_code == 0 && terminated.reason.as_deref() == Some("Completed") {
            return None;
        }
        return Some(
            terminated
                .reason
                .clone()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| {
                    format!(
                        "container {} exited {}",
                        container.name, terminated.exit_code
                    )
                }),
        );
    }
    None
}
