//! ServiceAccounts, ClusterRoles and ClusterRoleBindings with least privilege: only the
//! resources and verbs calico-node, its CNI plugin and calico-kube-controllers (node
//! controller only) use, per the reference's section 8. No wildcard anywhere.
//!
//! Only `crd.projectcalico.org` is granted, not `projectcalico.org`: the charm installs the
//! v1 CRDs, which keeps every Calico component in v1 mode (reference, section 1.3).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

use super::{CALICO_NODE, CNI_PLUGIN, KUBE_CONTROLLERS, NAMESPACE, meta};
use crate::calico::GROUP;

const CORE: &str = "";
const READ: &[&str] = &["get", "list", "watch"];
const LIST_WATCH: &[&str] = &["list", "watch"];
const CRUD: &[&str] = &["get", "list", "create", "update", "delete"];
const CRUD_WATCH: &[&str] = &["get", "list", "watch", "create", "update", "delete"];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

fn named_rule(group: &str, resources: &[&str], names: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(names.iter().map(|n| n.to_string()).collect()),
        ..rule(group, resources, verbs)
    }
}

/// The three ServiceAccounts, in `kube-system`.
pub fn service_accounts() -> Vec<ServiceAccount> {
    [CALICO_NODE, CNI_PLUGIN, KUBE_CONTROLLERS]
        .into_iter()
        .map(|name| ServiceAccount {
            metadata: meta(name, Some(NAMESPACE), &[]),
            ..ServiceAccount::default()
        })
        .collect()
}

/// calico-node: startup, Felix, confd/BIRD, and `install-cni` (same pod and account).
pub fn calico_node_rules() -> Vec<PolicyRule> {
    vec![
        // install-cni mints the CNI plugin's token (TokenRequest), only for that account.
        named_rule(CORE, &["serviceaccounts/token"], &[CNI_PLUGIN], &["create"]),
        // Startup reads its own Node, pods and namespaces by name.
        rule(CORE, &["pods", "nodes", "namespaces"], &["get"]),
        // Felix builds workload endpoints and profiles from pods, namespaces and service
        // accounts (labels).
        rule(CORE, &["pods", "namespaces", "serviceaccounts"], LIST_WATCH),
        // Felix and confd (service advertisement) follow services and their endpoints.
        rule(CORE, &["services", "endpoints"], LIST_WATCH),
        rule("discovery.k8s.io", &["endpointslices"], LIST_WATCH),
        // Startup reads kubeadm's ConfigMap (pod subnet) when it has to create a pool.
        rule(CORE, &["configmaps"], &["get"]),
        // The BGP syncer watches every Node (their Calico annotations).
        rule(CORE, &["nodes"], READ),
        // Calico writes its Node data (addresses, tunnel IPs) through UpdateStatus.
        rule(CORE, &["nodes/status"], &["patch", "update"]),
        // Pod IP annotations are patched on pod status.
        rule(CORE, &["pods/status"], &["patch"]),
        // Felix enforces Kubernetes network policies and cluster network policies.
        rule("networking.k8s.io", &["networkpolicies"], LIST_WATCH),
        rule(
            "policy.networking.k8s.io",
            &["clusternetworkpolicies"],
            LIST_WATCH,
        ),
        // Felix, confd and startup read every Calico configuration and policy kind.
        rule(
            GROUP,
            &[
                "bgpconfigurations",
                "bgpfilters",
                "bgppeers",
                "blockaffinities",
                "caliconodestatuses",
                "clusterinformations",
                "felixconfigurations",
                "globalnetworkpolicies",
                "globalnetworksets",
                "hostendpoints",
                "ipamblocks",
                "ippools",
                "ipreservations",
                "networkpolicies",
                "networksets",
                "stagedglobalnetworkpolicies",
                "stagedkubernetesnetworkpolicies",
                "stagednetworkpolicies",
                "tiers",
            ],
            READ,
        ),
        // Startup creates/updates the defaults: ClusterInformation `default`,
        // FelixConfiguration `default`/`node.<n>`, BGPConfiguration `default`, and the
        // default pools when the charm does not manage pools.
        rule(
            GROUP,
            &[
                "bgpconfigurations",
                "clusterinformations",
                "felixconfigurations",
                "ippools",
            ],
            &["create", "update"],
        ),
        // calico-node reports BGP status into CalicoNodeStatus objects.
        rule(GROUP, &["caliconodestatuses"], &["update"]),
        // calico-node allocates its tunnel addresses (IPIP/VXLAN) through Calico IPAM.
        rule(
            GROUP,
            &["blockaffinities", "ipamblocks", "ipamhandles"],
            CRUD,
        ),
        rule(GROUP, &["ipamconfigs"], &["get", "create"]),
        // Startup ensures the default tier exists.
        rule(GROUP, &["tiers"], &["create"]),
        // calico-node looks up its own DaemonSet.
        rule("apps", &["daemonsets"], &["get"]),
    ]
}

/// The Calico CNI plugin (runs on the host with the `calico-cni-plugin` token).
pub fn cni_plugin_rules() -> Vec<PolicyRule> {
    vec![
        // Looks up the pod being networked, its namespace and node.
        rule(CORE, &["pods", "nodes", "namespaces"], &["get"]),
        // Records the pod's IPs as annotations on the pod status.
        rule(CORE, &["pods/status"], &["patch"]),
        // Calico IPAM: assign and release addresses.
        rule(
            GROUP,
            &[
                "blockaffinities",
                "ipamblocks",
                "ipamhandles",
                "ipamconfigs",
            ],
            CRUD,
        ),
        // Reads the datastore readiness, the pools and the reservations it allocates from.
        rule(
            GROUP,
            &["clusterinformations", "ippools", "ipreservations"],
            &["get", "list"],
        ),
    ]
}

/// calico-kube-controllers with `ENABLED_CONTROLLERS=node` (IPAM garbage collection, node
/// clean-up, optional automatic host endpoints).
pub fn kube_controllers_rules() -> Vec<PolicyRule> {
    vec![
        // The node controller follows nodes (deletion → clean-up), pods (IPAM GC) and
        // namespaces.
        rule(CORE, &["nodes", "pods", "namespaces"], READ),
        // IPAM garbage collection releases leaked addresses and blocks of deleted nodes.
        rule(
            GROUP,
            &[
                "blockaffinities",
                "ipamblocks",
                "ipamhandles",
                "ipamconfigs",
            ],
            CRUD_WATCH,
        ),
        // The IPAM controller reads the pools.
        rule(GROUP, &["ippools"], LIST_WATCH),
        // Automatic host endpoints (off by default; an admin may enable them in
        // KubeControllersConfiguration).
        rule(GROUP, &["hostendpoints"], CRUD_WATCH),
        // Reads the datastore readiness; creates `default` if absent.
        rule(
            GROUP,
            &["clusterinformations", "kubecontrollersconfigurations"],
            &["get", "list", "watch", "create", "update"],
        ),
        // Ensures the default tier exists.
        rule(GROUP, &["tiers"], &["get", "list", "watch", "create"]),
    ]
}

/// The three ClusterRoles, named after their ServiceAccounts.
pub fn cluster_roles() -> Vec<ClusterRole> {
    [
        (CALICO_NODE, calico_node_rules()),
        (CNI_PLUGIN, cni_plugin_rules()),
        (KUBE_CONTROLLERS, kube_controllers_rules()),
    ]
    .into_iter()
    .map(|(name, rules)| ClusterRole {
        metadata: meta(name, None, &[]),
        rules: Some(rules),
        ..ClusterRole::default()
    })
    .collect()
}

/// Each ClusterRole bound to the ServiceAccount of the same name in `kube-system`.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    [CALICO_NODE, CNI_PLUGIN, KUBE_CONTROLLERS]
        .into_iter()
        .map(|name| ClusterRoleBinding {
            metadata: meta(name, None, &[]),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".to_string()),
                kind: "ClusterRole".to_string(),
                name: name.to_string(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: name.to_string(),
                namespace: Some(NAMESPACE.to_string()),
                ..Subject::default()
            }]),
        })
        .collect()
}
