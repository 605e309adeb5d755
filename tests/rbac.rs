//! The workloads' RBAC on the real API server: least privilege, proven by the authorizer.
//!
//! The control plane's static tokens include users named exactly as Calico's ServiceAccounts
//! (`system:serviceaccount:kube-system:calico-node`, `...:calico-kube-controllers`,
//! `...:calico-cni-plugin`, group `system:serviceaccounts`), so RBAC evaluates the charm's
//! ClusterRoleBindings for them as it would for the pods' own tokens. Each call below is
//! made for real with that identity (writes with `dryRun=All`): a call is allowed when the
//! answer is anything but 403 (a 404 or 422 comes after authorization), denied when it is
//! 403. A watch answers only when it ends, so for watches the identity asks the authorizer
//! itself (a SelfSubjectAccessReview with its own token, the same decision).
//!
//! The calls are the ones Calico's components make, by release, written from the reference
//! (calico.md §8, the v3.32 manifest's RBAC) and, for v3.6, from the v3.6 KDD manifest
//! (`_includes/v3.6/charts/calico/templates/rbac.yaml` in projectcalico/calico, see
//! docs/workloads-versions.md). kube-controllers runs only its node controller here
//! (`ENABLED_CONTROLLERS=node`), so the loadbalancer and policy controllers' calls are not
//! expected. In v3.6 the CNI plugin uses calico-node's token.

mod support;

#[path = "support/charm_config.rs"]
mod charm_config;

use calico_charm::config::CharmConfig;
use calico_charm::render::workloads;
use calico_charm::render::workloads::typha::TyphaPlan;
use support::apiserver::{Options, TestApiServer};
use support::envtest::BlockingClient;

const NODE: &str = "rbac-node-0";
const CALICO: &str = "/apis/crd.projectcalico.org/v1";

/// One call: method and path (query included).
type Call = (&'static str, String);

fn get(path: impl Into<String>) -> Call {
    ("GET", path.into())
}

fn list_watch(path: &str) -> Vec<Call> {
    vec![get(path), get(format!("{path}?watch=1&timeoutSeconds=1"))]
}

fn read(path: &str, name: &str) -> Vec<Call> {
    let mut calls = list_watch(path);
    calls.push(get(format!("{path}/{name}")));
    calls
}

fn create(path: &str) -> Call {
    ("POST", format!("{path}?dryRun=All"))
}

fn update(path: &str, name: &str) -> Call {
    ("PUT", format!("{path}/{name}?dryRun=All"))
}

fn delete(path: &str, name: &str) -> Call {
    ("DELETE", format!("{path}/{name}?dryRun=All"))
}

fn patch(path: impl Into<String>) -> Call {
    ("PATCH", format!("{}?dryRun=All", path.into()))
}

fn calico(plural: &str) -> String {
    format!("{CALICO}/{plural}")
}

/// Get, list and create, update, delete (IPAM).
fn crud(plural: &str) -> Vec<Call> {
    let p = calico(plural);
    vec![
        get(&p),
        get(format!("{p}/x")),
        create(&p),
        update(&p, "x"),
        delete(&p, "x"),
    ]
}

/// What the CNI plugin calls (v3.26+: its own account; before: calico-node's).
fn cni_plugin_calls(current: bool) -> Vec<Call> {
    let mut calls = vec![
        get("/api/v1/namespaces/default/pods/p"),
        get(format!("/api/v1/nodes/{NODE}")),
        get("/api/v1/namespaces/default"),
        patch("/api/v1/namespaces/default/pods/p/status"),
        get(format!("{}/default", calico("clusterinformations"))),
        get(calico("ippools")),
    ];
    if current {
        // IPReservations came after v3.6.
        calls.push(get(calico("ipreservations")));
    }
    for plural in ["blockaffinities", "ipamblocks", "ipamhandles"] {
        calls.extend(crud(plural));
    }
    calls.push(get(format!("{}/default", calico("ipamconfigs"))));
    calls
}

/// What calico-node (startup, Felix, confd, install-cni) calls, by release.
fn calico_node_calls(current: bool) -> Vec<Call> {
    let mut calls = vec![
        get("/api/v1/namespaces/kube-system/pods/p"),
        get(format!("/api/v1/nodes/{NODE}")),
        get("/api/v1/namespaces/kube-system"),
        patch(format!("/api/v1/nodes/{NODE}/status")),
        ("PUT", format!("/api/v1/nodes/{NODE}/status?dryRun=All")),
        patch("/api/v1/namespaces/default/pods/p/status"),
        get("/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node"),
    ];
    calls.extend(read("/api/v1/nodes", NODE));
    for path in [
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/api/v1/serviceaccounts",
        "/api/v1/services",
        "/api/v1/endpoints",
        "/apis/networking.k8s.io/v1/networkpolicies",
    ] {
        calls.extend(list_watch(path));
    }
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
    if current {
        kinds.extend([
            "bgpfilters",
            "blockaffinities",
            "caliconodestatuses",
            "ipreservations",
            "tiers",
        ]);
    } else {
        // The v2.6 data-migration check at start-up.
        kinds.extend(["globalbgpconfigs", "globalfelixconfigs"]);
    }
    for kind in kinds {
        calls.extend(read(&calico(kind), "default"));
    }
    for kind in [
        "bgpconfigurations",
        "clusterinformations",
        "felixconfigurations",
        "ippools",
    ] {
        calls.push(create(&calico(kind)));
        calls.push(update(&calico(kind), "default"));
    }
    if current {
        calls.extend([
            (
                "POST",
                "/api/v1/namespaces/kube-system/serviceaccounts/calico-cni-plugin/token?dryRun=All"
                    .to_string(),
            ),
            get("/api/v1/namespaces/kube-system/configmaps/kubeadm-config"),
            update(&calico("caliconodestatuses"), NODE),
            create(&calico("tiers")),
            create(&calico("ipamconfigs")),
        ]);
        calls.extend(list_watch("/apis/discovery.k8s.io/v1/endpointslices"));
        calls.extend(list_watch(
            "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
        ));
    } else {
        // The CNI plugin runs with calico-node's token.
        calls.extend(cni_plugin_calls(false));
    }
    for plural in ["blockaffinities", "ipamblocks", "ipamhandles"] {
        calls.extend(crud(plural));
    }
    calls.push(get(format!("{}/default", calico("ipamconfigs"))));
    calls
}

/// What calico-kube-controllers' node controller calls, by release.
fn kube_controllers_calls(current: bool) -> Vec<Call> {
    let mut calls = read("/api/v1/nodes", NODE);
    calls.push(get("/api/v1/namespaces/default/pods/p"));
    calls.push(get(calico("ippools")));
    for plural in ["blockaffinities", "ipamblocks", "ipamhandles"] {
        calls.extend(crud(plural));
    }
    calls.push(get(format!("{}/default", calico("clusterinformations"))));
    calls.push(create(&calico("clusterinformations")));
    calls.push(update(&calico("clusterinformations"), "default"));
    if current {
        calls.extend(list_watch("/api/v1/pods"));
        calls.extend(read("/api/v1/namespaces", "default"));
        calls.extend(list_watch(&calico("ippools")));
        for plural in [
            "blockaffinities",
            "ipamblocks",
            "ipamhandles",
            "ipamconfigs",
            "hostendpoints",
        ] {
            calls.extend(crud(plural));
            calls.push(get(format!("{}?watch=1&timeoutSeconds=1", calico(plural))));
        }
        for plural in ["clusterinformations", "kubecontrollersconfigurations"] {
            calls.extend(read(&calico(plural), "default"));
            calls.push(create(&calico(plural)));
            calls.push(update(&calico(plural), "default"));
        }
        calls.extend(read(&calico("tiers"), "default"));
        calls.push(create(&calico("tiers")));
    }
    calls
}

/// What calico-typha calls: its syncers' reads (what calico-node would otherwise watch
/// itself), its own Service's endpoints (connection rebalancing) and the datastore
/// initialisation at start-up.
fn typha_calls(current: bool) -> Vec<Call> {
    let mut calls = Vec::new();
    for path in [
        "/api/v1/nodes",
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/api/v1/serviceaccounts",
        "/api/v1/services",
        "/api/v1/endpoints",
        "/apis/networking.k8s.io/v1/networkpolicies",
    ] {
        calls.extend(list_watch(path));
    }
    calls.push(get("/api/v1/namespaces/kube-system/endpoints/calico-typha"));
    calls.push(get("/api/v1/namespaces/kube-system/services/calico-typha"));
    for plural in [
        "bgpconfigurations",
        "bgppeers",
        "blockaffinities",
        "clusterinformations",
        "felixconfigurations",
        "globalnetworkpolicies",
        "globalnetworksets",
        "hostendpoints",
        "ipamblocks",
        "ippools",
        "networkpolicies",
    ] {
        calls.extend(read(&calico(plural), "default"));
    }
    calls.push(create(&calico("clusterinformations")));
    calls.push(update(&calico("clusterinformations"), "default"));
    if current {
        calls.extend(list_watch("/apis/discovery.k8s.io/v1/endpointslices"));
        for plural in [
            "bgpfilters",
            "ipreservations",
            "networksets",
            "tiers",
            "caliconodestatuses",
        ] {
            calls.extend(read(&calico(plural), "default"));
        }
        calls.push(create(&calico("tiers")));
    }
    calls
}

/// Calls Typha must not make: it only reads and fans out (no Node, pod, IPAM or policy
/// writes, unlike calico-node).
fn typha_forbidden_calls() -> Vec<Call> {
    let mut calls = forbidden_calls();
    calls.extend([
        patch(format!("/api/v1/nodes/{NODE}/status")),
        patch("/api/v1/namespaces/default/pods/p/status"),
        create(&calico("ipamblocks")),
        create(&calico("ippools")),
        update(&calico("felixconfigurations"), "default"),
        create(&calico("bgppeers")),
        get("/api/v1/namespaces/kube-system/configmaps/calico-config"),
    ]);
    calls
}

/// Calls no Calico component may make.
fn forbidden_calls() -> Vec<Call> {
    vec![
        get("/api/v1/namespaces/kube-system/secrets"),
        get("/api/v1/namespaces/kube-system/secrets/calico-etcd-secrets"),
        delete("/api/v1/nodes", NODE),
        create("/api/v1/namespaces/default/pods"),
        create("/apis/rbac.authorization.k8s.io/v1/clusterroles"),
        create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
        update(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "calico-node",
        ),
        delete(&calico("bgppeers"), "x"),
        create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
    ]
}

/// The status each call got, and the calls that got 403 (or, `want_denied`, did not).
fn check(client: &BlockingClient, calls: &[Call], want_denied: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    for (method, path) in calls {
        let body = match *method {
            "POST" | "PUT" => Some("{}"),
            "PATCH" => Some("{}"),
            _ => None,
        };
        let content_type = match *method {
            "PATCH" => "application/merge-patch+json",
            "POST" | "PUT" => "application/json",
            _ => "",
        };
        let status = if path.contains("watch=1") {
            watch_status(client, path)
        } else {
            client
                .request(method, path, content_type, body)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
        };
        if (status == 403) != want_denied {
            wrong.push(format!("{method} {path} -> {status}"));
        }
    }
    wrong
}

/// A watch is answered only when it ends: ask the authorizer about exactly that request
/// instead (a SelfSubjectAccessReview with the caller's own token), as 200 or 403.
fn watch_status(client: &BlockingClient, path: &str) -> u16 {
    let path = path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _v, rest @ ..] => ("", rest),
        ["apis", g, _v, rest @ ..] => (*g, rest),
        _ => panic!("unexpected path {path}"),
    };
    let (namespace, resource) = match rest {
        ["namespaces", ns, resource] => (*ns, *resource),
        [resource] => ("", *resource),
        _ => panic!("unexpected path {path}"),
    };
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {
            "group": group, "resource": resource, "namespace": namespace, "verb": "watch"}}});
    let (status, body) = client
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "application/json",
            Some(&review.to_string()),
        )
        .unwrap_or_else(|e| panic!("review of watch {path}: {e}"));
    assert_eq!(status, 201, "review of watch {path}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("review json");
    if answer["status"]["allowed"] == true {
        200
    } else {
        403
    }
}

/// Apply the workloads' accounts, roles and bindings for `config` as the admin.
fn install_rbac(server: &TestApiServer, config: &CharmConfig) {
    install_rbac_with(server, config, TyphaPlan::Absent);
}

/// The same, with Typha as `plan` says.
fn install_rbac_with(server: &TestApiServer, config: &CharmConfig, plan: TyphaPlan) {
    let w = workloads::render_for(config, plan);
    for sa in &w.service_accounts {
        server.insert(sa).expect("service account");
    }
    for role in &w.cluster_roles {
        server.insert(role).expect("cluster role");
    }
    for binding in &w.cluster_role_bindings {
        server.insert(binding).expect("cluster role binding");
    }
}

fn least_privilege(config: &CharmConfig, current: bool) {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    server.add_ready_node(NODE, None, "docker.io/calico/node:v3.6.1");
    let plane = server.plane();
    let client = |user: &str| plane.blocking_client(user).expect("client");

    // Before the charm's RBAC exists, Calico's identities may do nothing (the test is not
    // vacuous: the allowed calls below are allowed by the charm's bindings, nothing else).
    let before = check(&client("sa-calico-node"), &calico_node_calls(current), true);
    assert_eq!(
        before,
        Vec::<String>::new(),
        "denied before the bindings exist"
    );

    install_rbac(&server, config);
    let mut identities = vec![
        ("sa-calico-node", calico_node_calls(current)),
        (
            "sa-calico-kube-controllers",
            kube_controllers_calls(current),
        ),
    ];
    if current {
        identities.push(("sa-calico-cni-plugin", cni_plugin_calls(true)));
    }
    for (user, calls) in &identities {
        let denied = check(&client(user), calls, false);
        assert_eq!(
            denied,
            Vec::<String>::new(),
            "{user}: calls it makes were denied"
        );
        let allowed = check(&client(user), &forbidden_calls(), true);
        assert_eq!(
            allowed,
            Vec::<String>::new(),
            "{user}: calls it must not make were allowed"
        );
    }
    if !current {
        // No separate CNI account before v3.26: its identity gets nothing.
        let allowed = check(
            &client("sa-calico-cni-plugin"),
            &cni_plugin_calls(false),
            true,
        );
        assert_eq!(
            allowed,
            Vec::<String>::new(),
            "v3.6 grants calico-cni-plugin nothing"
        );
    }
}

#[test]
fn the_default_releases_roles_allow_what_calico_calls_and_nothing_else() {
    least_privilege(&charm_config::defaults(), false);
}

#[test]
fn the_current_releases_roles_allow_what_calico_calls_and_nothing_else() {
    least_privilege(&charm_config::current(), true);
}

/// Typha's own account may make exactly its calls; calico-node may find it (get its Service
/// and Endpoints) only once Typha is deployed.
fn typha_least_privilege(config: &CharmConfig, current: bool) {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    server.add_ready_node(NODE, None, "docker.io/calico/node:v3.6.1");
    let plane = server.plane();
    let client = |user: &str| plane.blocking_client(user).expect("client");
    let discovery = vec![
        get("/api/v1/namespaces/kube-system/endpoints/calico-typha"),
        get("/api/v1/namespaces/kube-system/services/calico-typha"),
    ];

    // Without Typha: its identity gets nothing, and calico-node no discovery.
    install_rbac(&server, config);
    let before = check(&client("sa-calico-typha"), &typha_calls(current), true);
    assert_eq!(before, Vec::<String>::new(), "typha allowed without Typha");
    let before = check(&client("sa-calico-node"), &discovery, true);
    assert_eq!(
        before,
        Vec::<String>::new(),
        "discovery allowed without Typha"
    );

    install_rbac_with(&server, config, TyphaPlan::Replicas(3));
    let denied = check(&client("sa-calico-typha"), &typha_calls(current), false);
    assert_eq!(
        denied,
        Vec::<String>::new(),
        "calls Typha makes were denied"
    );
    let allowed = check(&client("sa-calico-typha"), &typha_forbidden_calls(), true);
    assert_eq!(
        allowed,
        Vec::<String>::new(),
        "calls Typha must not make were allowed"
    );
    let denied = check(&client("sa-calico-node"), &discovery, false);
    assert_eq!(
        denied,
        Vec::<String>::new(),
        "calico-node cannot find Typha"
    );
    // calico-node keeps everything it had.
    let denied = check(
        &client("sa-calico-node"),
        &calico_node_calls(current),
        false,
    );
    assert_eq!(denied, Vec::<String>::new(), "calico-node lost a call");
}

#[test]
fn typhas_role_allows_what_typha_calls_and_nothing_else_in_the_default_release() {
    typha_least_privilege(&charm_config::defaults(), false);
}

#[test]
fn typhas_role_allows_what_typha_calls_and_nothing_else_in_the_current_release() {
    typha_least_privilege(&charm_config::current(), true);
}
