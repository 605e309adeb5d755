//! ServiceAccounts, ClusterRoles and ClusterRoleBindings with least privilege: only the
//! resources and verbs calico-node, its CNI plugin and calico-kube-controllers (node
//! controller only) use. No wildcard anywhere.
//!
//! Only `crd.projectcalico.org` is granted, not `projectcalico.org`: the charm installs the
//! v1 CRDs, which keeps every Calico component in v1 mode (Calico's API group detection,
//! `libcalico-go/lib/backend/k8s/discovery.go` at v3.32.1: see `docs/workloads-versions.md`,
//! "Sources").
//!
//! The rules depend on the Calico release ([`CalicoVersion`], cut-overs in
//! [`super::version`], sources in `docs/workloads-versions.md`):
//! - 3.6.x: exactly what the v3.6 KDD manifest grants
//!   (`_includes/v3.6/charts/calico/templates/rbac.yaml` in projectcalico/calico), less the
//!   Typha discovery `get` (no Typha) and the v2.6-upgrade `create`/`update` on `bgppeers`
//!   (the charm owns peers). The CNI plugin runs with calico-node's own token, which
//!   `install-cni.sh` copies from the pod, so there is no `calico-cni-plugin` account.
//! - 3.7 and later: the rules of Calico v3.32.1's `manifests/calico.yaml`, a superset of what the
//!   releases in between use; granting a kind a release does not have grants nothing.
//! - The v2.6 data-migration check reads `globalfelixconfigs`/`globalbgpconfigs` (a denied
//!   read stops calico-node's start-up); granted below 3.32.
//! - 3.23 to 3.25: `install-cni` mints the CNI token for `calico-node` itself (TokenRequest).
//! - 3.26 and later: for the separate `calico-cni-plugin` account, which gets its own role.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

use super::{CALICO_NODE, CNI_PLUGIN, KUBE_CONTROLLERS, NAMESPACE, meta};
use crate::calico::GROUP;
use crate::config::release::{self as version, CalicoVersion};

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

/// The accounts for a release: `calico-node`, `calico-cni-plugin` (from 3.26) and
/// `calico-kube-controllers`.
pub(crate) fn account_names(v: CalicoVersion) -> Vec<&'static str> {
    if v.at_least(version::CNI_PLUGIN_ACCOUNT) {
        vec![CALICO_NODE, CNI_PLUGIN, KUBE_CONTROLLERS]
    } else {
        vec![CALICO_NODE, KUBE_CONTROLLERS]
    }
}

/// The ServiceAccounts ([`account_names`]), in `kube-system`.
pub fn service_accounts(v: CalicoVersion) -> Vec<ServiceAccount> {
    account_names(v)
        .into_iter()
        .map(|name| ServiceAccount {
            metadata: meta(name, Some(NAMESPACE), &[]),
            ..ServiceAccount::default()
        })
        .collect()
}

/// The Calico kinds calico-node reads (Felix, confd, startup) in a release.
pub(crate) fn calico_node_read_kinds(v: CalicoVersion) -> Vec<&'static str> {
    let mut kinds = vec![
        "bgpconfigurations",
        "bgppeers",
        "clusterinformations",
        "felixconfigurations",
        "globalnetworkpolicies",
        "globalnetworksets",
        "hostendpoints",
        "ipamblocks",
        "ippools",
        "networkpolicies",
    ];
    if v.at_least(version::AFTER_V3_6) {
        kinds.extend([
            "bgpfilters",
            "blockaffinities",
            "caliconodestatuses",
            "ipreservations",
            "networksets",
            "stagedglobalnetworkpolicies",
            "stagedkubernetesnetworkpolicies",
            "stagednetworkpolicies",
            "tiers",
        ]);
    } else {
        // confd watches block affinities for route aggregation (3.6: watch only; get and
        // list come with the IPAM rule).
        kinds.push("blockaffinities");
    }
    if !v.at_least(version::NO_LEGACY_READS) {
        // The v2.6 data-migration check at start-up.
        kinds.extend(["globalbgpconfigs", "globalfelixconfigs"]);
    }
    kinds.sort_unstable();
    kinds
}

/// calico-node: startup, Felix, confd/BIRD, and `install-cni` (same pod and account); before
/// 3.26 also the CNI plugin, which uses calico-node's token.
pub(crate) fn calico_node_rules(v: CalicoVersion) -> Vec<PolicyRule> {
    let after_v3_6 = v.at_least(version::AFTER_V3_6);
    let mut rules = Vec::new();
    if v.at_least(version::CNI_PLUGIN_ACCOUNT) {
        // install-cni mints the CNI plugin's token (TokenRequest), only for that account.
        rules.push(named_rule(
            CORE,
            &["serviceaccounts/token"],
            &[CNI_PLUGIN],
            &["create"],
        ));
    } else if v.at_least(version::CNI_TOKEN_REQUEST) {
        // install-cni mints the CNI token for calico-node itself.
        rules.push(named_rule(
            CORE,
            &["serviceaccounts/token"],
            &[CALICO_NODE],
            &["create"],
        ));
    }
    rules.extend([
        // Startup (and the CNI plugin) reads its own Node, pods and namespaces by name.
        rule(CORE, &["pods", "nodes", "namespaces"], &["get"]),
        // Felix builds workload endpoints and profiles from pods, namespaces and service
        // accounts (labels).
        rule(CORE, &["pods", "namespaces", "serviceaccounts"], LIST_WATCH),
        // Felix and confd (service advertisement) follow services and their endpoints.
        rule(CORE, &["services", "endpoints"], LIST_WATCH),
    ]);
    if after_v3_6 {
        rules.extend([
            rule("discovery.k8s.io", &["endpointslices"], LIST_WATCH),
            // Startup reads kubeadm's ConfigMap (pod subnet) when it has to create a pool.
            rule(CORE, &["configmaps"], &["get"]),
        ]);
    }
    rules.extend([
        // The BGP syncer watches every Node (their Calico annotations).
        rule(CORE, &["nodes"], READ),
        // Calico writes its Node data (addresses, tunnel IPs) through UpdateStatus.
        rule(CORE, &["nodes/status"], &["patch", "update"]),
        // Pod IP annotations are patched on pod status (the CNI plugin).
        rule(CORE, &["pods/status"], &["patch"]),
        // Felix enforces Kubernetes network policies.
        rule("networking.k8s.io", &["networkpolicies"], LIST_WATCH),
    ]);
    if after_v3_6 {
        // ... and cluster network policies.
        rules.push(rule(
            "policy.networking.k8s.io",
            &["clusternetworkpolicies"],
            LIST_WATCH,
        ));
    }
    rules.extend([
        // Felix, confd and startup read every Calico configuration and policy kind.
        rule(GROUP, &calico_node_read_kinds(v), READ),
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
    ]);
    if after_v3_6 {
        // calico-node reports BGP status into CalicoNodeStatus objects.
        rules.push(rule(GROUP, &["caliconodestatuses"], &["update"]));
    }
    rules.extend([
        // calico-node allocates its tunnel addresses (IPIP/VXLAN) through Calico IPAM, and
        // before 3.26 the CNI plugin assigns pod addresses with this account.
        rule(
            GROUP,
            &["blockaffinities", "ipamblocks", "ipamhandles"],
            CRUD,
        ),
        rule(
            GROUP,
            &["ipamconfigs"],
            if after_v3_6 {
                &["get", "create"]
            } else {
                &["get"]
            },
        ),
    ]);
    if after_v3_6 {
        // Startup ensures the default tier exists.
        rules.push(rule(GROUP, &["tiers"], &["create"]));
    }
    // calico-node (the host-local IPAM upgrade check) looks up its own DaemonSet.
    rules.push(rule("apps", &["daemonsets"], &["get"]));
    rules
}

/// The Calico CNI plugin (runs on the host with the `calico-cni-plugin` token).
pub(crate) fn cni_plugin_rules() -> Vec<PolicyRule> {
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
pub(crate) fn kube_controllers_rules(v: CalicoVersion) -> Vec<PolicyRule> {
    if !v.at_least(version::AFTER_V3_6) {
        // The v3.6 node controller: watches nodes for deletions, checks pods exist, and
        // releases the deleted nodes' IPAM data.
        return vec![
            rule(CORE, &["nodes"], READ),
            rule(CORE, &["pods"], &["get"]),
            rule(GROUP, &["ippools"], &["list"]),
            rule(
                GROUP,
                &["blockaffinities", "ipamblocks", "ipamhandles"],
                CRUD,
            ),
            rule(
                GROUP,
                &["clusterinformations"],
                &["get", "create", "update"],
            ),
        ];
    }
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

/// The ClusterRoles, named after their ServiceAccounts ([`account_names`]).
pub fn cluster_roles(v: CalicoVersion) -> Vec<ClusterRole> {
    account_names(v)
        .into_iter()
        .map(|name| {
            let rules = match name {
                CALICO_NODE => calico_node_rules(v),
                CNI_PLUGIN => cni_plugin_rules(),
                _ => kube_controllers_rules(v),
            };
            (name, rules)
        })
        .map(|(name, rules)| ClusterRole {
            metadata: meta(name, None, &[]),
            rules: Some(rules),
            ..ClusterRole::default()
        })
        .collect()
}

/// Each ClusterRole bound to the ServiceAccount of the same name in `kube-system`.
pub fn cluster_role_bindings(v: CalicoVersion) -> Vec<ClusterRoleBinding> {
    account_names(v).into_iter().map(binding).collect()
}

/// ClusterRole `name` bound to the ServiceAccount `name` in `kube-system`.
pub(crate) fn binding(name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
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
    }
}
