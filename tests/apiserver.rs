//! Tests of the test Kubernetes API server double, driven by a real kube client built from
//! the kubeconfig the server writes.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calico_charm::calico::{BGPConfiguration, BGPPeer, BGPPeerSpec, IPPool, IPPoolSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::apiserver::fields::{self, Pe};
use support::apiserver::selector::LabelSelector;
use support::apiserver::{Access, Options, TestApiServer};

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn status_of(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn client_from_file(server: &TestApiServer) -> Client {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).expect("write kubeconfig");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    assert!(
        config
            .cluster_url
            .to_string()
            .starts_with("https://127.0.0.1:")
    );
    Client::try_from(config).expect("client")
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn tls_and_bearer_token_from_the_written_kubeconfig() {
    let server = TestApiServer::start(Options::without_crds());
    let client = client_from_file(&server).await;
    let v = client.apiserver_version().await.expect("version");
    assert_eq!(v.major, "1");

    // A wrong token is refused with 401.
    let bad = server
        .kube_client_with_token("not-the-token")
        .await
        .expect("client");
    let err = Api::<Node>::all(bad)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(401));

    // A known but denied identity gets 403 with a Kubernetes-style message.
    server.add_token(
        "denied",
        "system:serviceaccount:kube-system:nobody",
        Access::Deny,
    );
    let denied = server
        .kube_client_with_token("denied")
        .await
        .expect("client");
    let s = status_of(Api::<Node>::all(denied).get("n1").await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert!(
        s.message.contains("cannot get resource \"nodes\""),
        "{}",
        s.message
    );

    // Read-only: reads pass, writes are forbidden; access can be restored.
    server.set_access(Access::ReadOnly);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.list(&ListParams::default())
        .await
        .expect("list allowed");
    let err = cms
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(403));
    server.set_access(Access::Full);
    cms.create(&PostParams::default(), &cm("x", &[]))
        .await
        .expect("create allowed");

    // A client that does not trust the server's CA cannot connect.
    let other = TestApiServer::start(Options::without_crds());
    let mut yaml = server.kubeconfig_yaml();
    let ca_line = |s: &TestApiServer| {
        s.kubeconfig_yaml()
            .lines()
            .find(|l| l.contains("certificate-authority-data"))
            .map(str::to_string)
            .expect("ca line")
    };
    yaml = yaml.replace(&ca_line(&server), &ca_line(&other));
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let untrusting = Client::try_from(config).expect("client");
    let err = untrusting.apiserver_version().await.unwrap_err();
    assert_eq!(
        code(&err),
        None,
        "a TLS failure, not an API answer: {err:?}"
    );
}

#[tokio::test]
async fn discovery_lists_core_builtin_and_calico_groups() {
    let server = TestApiServer::start(Options::default());
    let client = server.kube_client().await.expect("client");

    let core = client.list_core_api_versions().await.expect("/api");
    assert_eq!(core.versions, vec!["v1".to_string()]);
    let core_res = client.list_core_api_resources("v1").await.expect("/api/v1");
    let nodes = core_res
        .resources
        .iter()
        .find(|r| r.name == "nodes")
        .expect("nodes");
    assert!(!nodes.namespaced);
    assert_eq!(nodes.kind, "Node");
    let pods = core_res
        .resources
        .iter()
        .find(|r| r.name == "pods")
        .expect("pods");
    assert!(pods.namespaced);

    let groups = client.list_api_groups().await.expect("/apis");
    let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
    for g in [
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "crd.projectcalico.org",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    let calico = client
        .list_api_group_resources("crd.projectcalico.org/v1")
        .await
        .expect("calico resources");
    let ippools = calico
        .resources
        .iter()
        .find(|r| r.name == "ippools")
        .expect("ippools");
    assert_eq!(ippools.kind, "IPPool");
    assert!(!ippools.namespaced);
    assert!(calico.resources.iter().any(|r| r.name == "bgppeers"));

    // kube's own discovery, classic and aggregated.
    let d = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(d.has_group("crd.projectcalico.org"));
    let d = kube::discovery::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let (ar, caps) = d
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "crd.projectcalico.org",
            "v1",
            "BGPPeer",
        ))
        .expect("BGPPeer resolved");
    assert_eq!(ar.plural, "bgppeers");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let (ar, caps) = d
        .resolve_gvk(&kube::api::GroupVersionKind::gvk("apps", "v1", "DaemonSet"))
        .expect("DaemonSet resolved");
    assert_eq!(ar.plural, "daemonsets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);

    // Without the CRDs the group is not discovered at all.
    let bare = TestApiServer::start(Options::without_crds());
    let client = bare.kube_client().await.expect("client");
    let groups = client.list_api_groups().await.expect("/apis");
    assert!(
        !groups
            .groups
            .iter()
            .any(|g| g.name == "crd.projectcalico.org")
    );
    let err = client
        .list_api_group_resources("crd.projectcalico.org/v1")
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(404));
}

#[tokio::test]
async fn crud_with_real_status_codes() {
    let server = TestApiServer::start(Options::without_crds());
    let client = server.kube_client().await.expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");

    let created = cms
        .create(&PostParams::default(), &cm("calico-config", &[("a", "1")]))
        .await
        .expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta
        .resource_version
        .as_deref()
        .unwrap_or("")
        .parse()
        .expect("rv");
    assert_eq!(meta.namespace.as_deref(), Some("kube-system"));

    let s = status_of(
        cms.create(&PostParams::default(), &cm("calico-config", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, "configmaps \"calico-config\" already exists");

    let got = cms.get("calico-config").await.expect("get");
    assert_eq!(
        got.data
            .as_ref()
            .and_then(|d| d.get("a"))
            .map(String::as_str),
        Some("1")
    );

    // Replace with the current resourceVersion works and bumps it.
    let mut next = got.clone();
    next.data = Some(BTreeMap::from([("a".to_string(), "2".to_string())]));
    let replaced = cms
        .replace("calico-config", &PostParams::default(), &next)
        .await
        .expect("replace");
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("")
        .parse()
        .expect("rv");
    assert!(rv2 > rv1);
    assert_eq!(replaced.metadata.uid, created.metadata.uid);

    // Replace with the stale one is a 409 Conflict.
    let s = status_of(
        cms.replace("calico-config", &PostParams::default(), &next)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("the object has been modified"),
        "{}",
        s.message
    );

    // A namespace that does not exist.
    let missing: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let s = status_of(
        missing
            .create(&PostParams::default(), &cm("x", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 404);
    assert_eq!(s.message, "namespaces \"nowhere\" not found");

    // Delete returns the object; a second delete and a get are 404.
    let deleted = cms
        .delete("calico-config", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_left());
    let s = status_of(
        cms.delete("calico-config", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "configmaps \"calico-config\" not found");
    assert_eq!(
        code(&cms.get("calico-config").await.unwrap_err()),
        Some(404)
    );
    assert!(
        cms.get_opt("calico-config")
            .await
            .expect("get_opt")
            .is_none()
    );

    // The direct store sees what the API did and vice versa.
    server
        .insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .expect("insert node");
    let node = Api::<Node>::all(client.clone())
        .get("n1")
        .await
        .expect("node");
    assert!(node.metadata.uid.is_some());
    assert!(server.get_as::<Node>(None, "n1").is_some());
    assert!(
        server
            .get("v1", "ConfigMap", Some("kube-system"), "calico-config")
            .is_none()
    );
}

#[tokio::test]
async fn calico_kinds_are_served_only_while_their_crd_exists() {
    let server = TestApiServer::start(Options::without_crds());
    let client = server.kube_client().await.expect("client");
    let pools: Api<IPPool> = Api::all(client.clone());
    let s = status_of(pools.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(code(&pools.get("p").await.unwrap_err()), Some(404));

    server.install_calico_crds().expect("install");
    assert!(
        pools
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let pool = IPPool::new(
        "pool-a",
        IPPoolSpec {
            cidr: "10.244.0.0/16".into(),
            ..Default::default()
        },
    );
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("create");

    // Deleting the CRD through the API removes the kind and its objects.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.delete("ippools.crd.projectcalico.org", &DeleteParams::default())
        .await
        .expect("delete crd");
    assert_eq!(
        code(&pools.list(&ListParams::default()).await.unwrap_err()),
        Some(404)
    );

    // A CRD created through the API makes its kind served (basic validation only).
    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        }))
        .expect("crd");
    let created = crds
        .create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    let status = created.status.expect("CRD status");
    let established = status.conditions.unwrap_or_default();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    assert_eq!(
        status.accepted_names.map(|n| n.kind).as_deref(),
        Some("Widget")
    );
    assert_eq!(status.stored_versions, Some(vec!["v1".to_string()]));
    let gvk = kube::api::GroupVersionKind::gvk("example.com", "v1", "Widget");
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "widgets");
    let widgets: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ar);
    let w: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"anything": ["goes"]}
    }))
    .expect("widget");
    widgets
        .create(&PostParams::default(), &w)
        .await
        .expect("create widget");
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "Bad_Name"}
    }))
    .expect("widget");
    let s = status_of(
        widgets
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));

    // A CRD whose name does not match plural.group is invalid.
    let mut wrong = crd.clone();
    wrong.metadata.name = Some("gadgets.example.com".into());
    assert_eq!(
        code(
            &crds
                .create(&PostParams::default(), &wrong)
                .await
                .unwrap_err()
        ),
        Some(422)
    );
}

fn annotations(node: &Node) -> BTreeMap<String, String> {
    node.metadata.annotations.clone().unwrap_or_default()
}

#[tokio::test]
async fn server_side_apply_tracks_ownership_per_manager() {
    let server = TestApiServer::start(Options::default());
    let client = server.kube_client().await.expect("client");
    server
        .insert(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "annotations": {"admin/note": "keep me"}, "labels": {"rack": "a"}}
        }))
        .expect("insert node");
    let nodes: Api<Node> = Api::all(client.clone());
    let charm = PatchParams::apply("calico-charm").force();
    let other = PatchParams::apply("other-tool");
    let apply = |annos: Value| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": annos}});

    // The charm sets two annotations; another manager sets a third.
    nodes
        .patch(
            "n1",
            &charm,
            &Patch::Apply(apply(json!({
                "projectcalico.org/ASNumber": "64512",
                "projectcalico.org/RouteReflectorClusterID": "244.0.0.1"
            }))),
        )
        .await
        .expect("charm apply");
    nodes
        .patch("n1", &other, &Patch::Apply(apply(json!({"other/x": "1"}))))
        .await
        .expect("other apply");
    let a = annotations(&nodes.get("n1").await.expect("get"));
    assert_eq!(a.len(), 4, "{a:?}");

    // managedFields name each manager with its own fields.
    let node = server.get("v1", "Node", None, "n1").expect("node");
    let managers = fields::managers_of(&node);
    let charm_fields = &managers
        .iter()
        .find(|m| m.manager == "calico-charm" && m.operation == "Apply")
        .expect("charm entry")
        .fields;
    let as_path = vec![
        Pe::F("metadata".into()),
        Pe::F("annotations".into()),
        Pe::F("projectcalico.org/ASNumber".into()),
    ];
    assert!(charm_fields.contains(&as_path));
    assert_eq!(charm_fields.len(), 2);
    assert!(managers.iter().any(|m| m.manager == "other-tool"));
    // The node was stored without managed fields: its fields went to "before-first-apply",
    // as the API server does on the first apply.
    let bfa = managers
        .iter()
        .find(|m| m.manager == "before-first-apply")
        .expect("before-first-apply");
    assert_eq!(bfa.operation, "Update");
    assert!(bfa.fields.contains(&vec![
        Pe::F("metadata".into()),
        Pe::F("annotations".into()),
        Pe::F("admin/note".into()),
    ]));
    let s = status_of(
        nodes
            .patch(
                "n1",
                &other,
                &Patch::Apply(apply(json!({"other/x": "1", "admin/note": "mine"}))),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        s.message.contains("conflict with \"before-first-apply\""),
        "{}",
        s.message
    );

    // The charm stops applying the RR cluster ID: it disappears; the others survive.
    let rv_before = node.pointer("/metadata/resourceVersion").cloned();
    nodes
        .patch(
            "n1",
            &charm,
            &Patch::Apply(apply(json!({"projectcalico.org/ASNumber": "64512"}))),
        )
        .await
        .expect("charm apply again");
    let got = nodes.get("n1").await.expect("get");
    let a = annotations(&got);
    assert!(
        !a.contains_key("projectcalico.org/RouteReflectorClusterID"),
        "{a:?}"
    );
    assert_eq!(
        a.get("projectcalico.org/ASNumber").map(String::as_str),
        Some("64512")
    );
    assert_eq!(a.get("other/x").map(String::as_str), Some("1"));
    assert_eq!(a.get("admin/note").map(String::as_str), Some("keep me"));
    assert_eq!(
        got.metadata
            .labels
            .unwrap_or_default()
            .get("rack")
            .map(String::as_str),
        Some("a")
    );
    assert_ne!(
        got.metadata.resource_version,
        rv_before.and_then(|v| v.as_str().map(str::to_string))
    );

    // The same apply again is a no-op: resourceVersion unchanged.
    let rv = got.metadata.resource_version.clone();
    let again = nodes
        .patch(
            "n1",
            &charm,
            &Patch::Apply(apply(json!({"projectcalico.org/ASNumber": "64512"}))),
        )
        .await
        .expect("no-op apply");
    assert_eq!(again.metadata.resource_version, rv);

    // Changing a field another manager owns without force: 409 naming the manager.
    let s = status_of(
        nodes
            .patch(
                "n1",
                &other,
                &Patch::Apply(apply(json!({"projectcalico.org/ASNumber": "65000"}))),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        "Apply failed with 1 conflict: conflict with \"calico-charm\" using v1: \
         .metadata.annotations.projectcalico.org/ASNumber"
    );
    let cause = &s.details.as_ref().expect("details").causes[0];
    assert_eq!(cause.reason, "FieldManagerConflict");
    assert_eq!(
        cause.field,
        ".metadata.annotations.projectcalico.org/ASNumber"
    );
    // Setting it to the same value is shared ownership, not a conflict.
    nodes
        .patch(
            "n1",
            &other,
            &Patch::Apply(apply(
                json!({"other/x": "1", "projectcalico.org/ASNumber": "64512"}),
            )),
        )
        .await
        .expect("same value, no conflict");
    // Now the charm dropping it leaves it in place: other-tool still owns it.
    nodes
        .patch("n1", &charm, &Patch::Apply(apply(json!({}))))
        .await
        .expect("charm applies nothing");
    let a = annotations(&nodes.get("n1").await.expect("get"));
    assert_eq!(
        a.get("projectcalico.org/ASNumber").map(String::as_str),
        Some("64512")
    );

    // With force the charm takes the field over.
    nodes
        .patch(
            "n1",
            &charm,
            &Patch::Apply(apply(json!({"projectcalico.org/ASNumber": "64999"}))),
        )
        .await
        .expect("forced apply");
    let node = server.get("v1", "Node", None, "n1").expect("node");
    let managers = fields::managers_of(&node);
    let other_fields = &managers
        .iter()
        .find(|m| m.manager == "other-tool")
        .expect("other")
        .fields;
    assert!(
        !other_fields.contains(&as_path),
        "ownership moved to the charm"
    );
    let a = annotations(&nodes.get("n1").await.expect("get"));
    assert_eq!(
        a.get("projectcalico.org/ASNumber").map(String::as_str),
        Some("64999")
    );

    // An apply without fieldManager is a 400.
    let pp = PatchParams::default();
    let err = nodes
        .patch("n1", &pp, &Patch::Apply(apply(json!({}))))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(400));
}

#[tokio::test]
async fn apply_keeps_an_admins_fields_on_calico_objects_and_creates_missing_ones() {
    let server = TestApiServer::start(Options::default());
    let client = server.kube_client().await.expect("client");
    let bgp: Api<BGPConfiguration> = Api::all(client.clone());
    let charm = PatchParams::apply("calico-charm").force();

    // Apply to a missing object creates it (201), with generation 1 and CRD defaults.
    let applied = bgp
        .patch(
            "default",
            &charm,
            &Patch::Apply(json!({
                "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
                "metadata": {"name": "default"},
                "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": false}
            })),
        )
        .await
        .expect("apply creates");
    assert_eq!(applied.metadata.generation, Some(1));
    assert_eq!(
        applied.spec.log_severity_screen.as_deref(),
        Some("Info"),
        "CRD default applied"
    );

    // An admin changes logSeverityScreen with a merge patch.
    bgp.patch(
        "default",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"logSeverityScreen": "Debug"}})),
    )
    .await
    .expect("admin merge patch");

    // The charm re-applies, then drops nodeToNodeMeshEnabled.
    let after = bgp
        .patch(
            "default",
            &charm,
            &Patch::Apply(json!({
                "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPConfiguration",
                "metadata": {"name": "default"}, "spec": {"asNumber": 64513}
            })),
        )
        .await
        .expect("apply");
    assert_eq!(after.spec.as_number, Some(64513));
    assert_eq!(after.spec.node_to_node_mesh_enabled, None);
    assert_eq!(after.spec.log_severity_screen.as_deref(), Some("Debug"));
    assert_eq!(
        after.metadata.generation,
        Some(3),
        "two spec changes after creation"
    );
}

#[tokio::test]
async fn status_is_written_only_through_its_subresource() {
    let server = TestApiServer::start(Options::without_crds());
    let client = server.kube_client().await.expect("client");
    let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client, "kube-system");
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "calico-node"},
        "spec": {"selector": {"matchLabels": {"k8s-app": "calico-node"}},
                 "template": {"metadata": {"labels": {"k8s-app": "calico-node"}},
                              "spec": {"containers": [{"name": "calico-node", "image": "calico/node:v3.32.1"}]}}},
        "status": {"numberReady": 5}
    });
    let pp = PatchParams::apply("calico-charm").force();
    let created = ds
        .patch("calico-node", &pp, &Patch::Apply(&obj))
        .await
        .expect("apply");
    assert!(
        created.status.is_none(),
        "status is ignored on the main resource"
    );
    let status = json!({"status": {"currentNumberScheduled": 3, "desiredNumberScheduled": 3,
        "numberMisscheduled": 0, "numberReady": 3}});
    let patched = ds
        .patch_status(
            "calico-node",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("patch status");
    assert_eq!(patched.status.map(|s| s.number_ready), Some(3));
    assert_eq!(patched.metadata.generation, Some(1));
    // Re-applying the main resource keeps the status.
    let again = ds
        .patch("calico-node", &pp, &Patch::Apply(&obj))
        .await
        .expect("apply");
    assert_eq!(again.status.map(|s| s.number_ready), Some(3));
    assert_eq!(
        again.metadata.resource_version, patched.metadata.resource_version,
        "no-op"
    );
}

#[tokio::test]
async fn merge_patch_and_json_patch() {
    let server = TestApiServer::start(Options::without_crds());
    let client = server.kube_client().await.expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("c", &[("a", "1"), ("b", "2")]))
        .await
        .expect("create");
    let patched = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"data": {"a": null, "c": "3"}, "metadata": {"labels": {"x": "y"}}}),
            ),
        )
        .await
        .expect("merge patch");
    let data = patched.data.unwrap_or_default();
    assert_eq!(data.get("a"), None);
    assert_eq!(data.get("b").map(String::as_str), Some("2"));
    assert_eq!(data.get("c").map(String::as_str), Some("3"));
    assert_eq!(
        patched
            .metadata
            .labels
            .unwrap_or_default()
            .get("x")
            .map(String::as_str),
        Some("y")
    );

    // A merge patch carrying a stale resourceVersion is a conflict.
    let err = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"d": "4"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(409));

    // Patching a missing object is 404.
    let err = cms
        .patch(
            "nope",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(404));

    let req = http::Request::patch("/api/v1/namespaces/default/configmaps/c")
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([
                {"op": "replace", "path": "/data/b", "value": "20"},
                {"op": "add", "path": "/data/e", "value": "5"}
            ]))
            .expect("body"),
        )
        .expect("request");
    let patched: ConfigMap = client.request(req).await.expect("json patch");
    let data = patched.data.unwrap_or_default();
    assert_eq!(data.get("b").map(String::as_str), Some("20"));
    assert_eq!(data.get("e").map(String::as_str), Some("5"));
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = TestApiServer::start(Options::default());
    let client = server.kube_client().await.expect("client");
    let peers: Api<BGPPeer> = Api::all(client.clone());
    for (name, labels) in [
        (
            "p1",
            json!({"app.kubernetes.io/managed-by": "calico-charm", "calico.juju.is/unit": "calico-0"}),
        ),
        (
            "p2",
            json!({"app.kubernetes.io/managed-by": "calico-charm", "calico.juju.is/unit": "calico-1"}),
        ),
        ("p3", json!({"tier": "tor"})),
    ] {
        let mut p = BGPPeer::new(
            name,
            BGPPeerSpec {
                peer_ip: Some("10.0.0.1".into()),
                as_number: Some(64512),
                ..Default::default()
            },
        );
        p.metadata.labels = serde_json::from_value(labels).expect("labels");
        peers
            .create(&PostParams::default(), &p)
            .await
            .expect("create");
    }
    let names = |l: kube::core::ObjectList<BGPPeer>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect()
    };
    let sel = |s: &str| ListParams::default().labels(s);
    let cases: [(&str, &[&str]); 8] = [
        ("app.kubernetes.io/managed-by=calico-charm", &["p1", "p2"]),
        ("calico.juju.is/unit==calico-0", &["p1"]),
        ("calico.juju.is/unit!=calico-0", &["p2", "p3"]),
        ("calico.juju.is/unit in (calico-1, calico-7)", &["p2"]),
        ("calico.juju.is/unit notin (calico-1)", &["p1", "p3"]),
        ("tier", &["p3"]),
        ("!tier", &["p1", "p2"]),
        (
            "app.kubernetes.io/managed-by=calico-charm,calico.juju.is/unit=calico-1",
            &["p2"],
        ),
    ];
    for (s, want) in cases {
        let got = names(peers.list(&sel(s)).await.expect("list"));
        assert_eq!(got, want, "selector {s}");
    }
    let meta = peers
        .list_metadata(&sel("calico.juju.is/unit"))
        .await
        .expect("metadata list");
    let meta_names: Vec<String> = meta
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(meta_names, ["p1", "p2"]);
    let one = peers.get_metadata("p3").await.expect("metadata get");
    assert_eq!(
        one.metadata
            .labels
            .unwrap_or_default()
            .get("tier")
            .map(String::as_str),
        Some("tor")
    );
    let got = names(
        peers
            .list(&ListParams::default().fields("metadata.name=p3"))
            .await
            .expect("list"),
    );
    assert_eq!(got, ["p3"]);
    let err = peers.list(&sel("a in b")).await.unwrap_err();
    assert_eq!(code(&err), Some(400));

    // The same selector on the request log: one list per call.
    assert_eq!(server.count_requests("GET", "/bgppeers"), 12);
}

#[tokio::test]
async fn schema_breaking_calico_objects_are_invalid() {
    let server = TestApiServer::start(Options::default());
    let client = server.kube_client().await.expect("client");
    let pools: Api<IPPool> = Api::all(client.clone());
    let raw: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<IPPool>(&()),
    );

    // An ipipMode outside the enumeration.
    let bad = IPPool::new(
        "pool-a",
        IPPoolSpec {
            cidr: "10.244.0.0/16".into(),
            ipip_mode: Some("Sometimes".into()),
            ..Default::default()
        },
    );
    let s = status_of(
        pools
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message
            .starts_with("IPPool.crd.projectcalico.org \"pool-a\" is invalid: "),
        "{}",
        s.message
    );
    assert!(s.message.contains("ipipMode"), "{}", s.message);

    // Both encapsulations enabled (a CEL rule), through server-side apply.
    let s = status_of(
        pools
            .patch(
                "pool-b",
                &PatchParams::apply("calico-charm"),
                &Patch::Apply(json!({
                    "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
                    "metadata": {"name": "pool-b"},
                    "spec": {"cidr": "10.1.0.0/16", "ipipMode": "Always", "vxlanMode": "Always"}
                })),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 422, "{}", s.message);
    assert!(
        server
            .get("crd.projectcalico.org/v1", "IPPool", None, "pool-b")
            .is_none()
    );

    // A required field missing.
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "pool-c"}, "spec": {"natOutgoing": true}
    }))
    .expect("obj");
    assert_eq!(
        code(&raw.create(&PostParams::default(), &obj).await.unwrap_err()),
        Some(422)
    );

    // A name that is not a DNS-1123 subdomain.
    let upper = IPPool::new(
        "Pool_A",
        IPPoolSpec {
            cidr: "10.2.0.0/16".into(),
            ..Default::default()
        },
    );
    let s = status_of(
        pools
            .create(&PostParams::default(), &upper)
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code, 422);
    assert!(s.message.contains("metadata.name"), "{}", s.message);

    // Unknown fields are pruned with a warning, or refused with Strict validation.
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "pool-d"}, "spec": {"cidr": "10.3.0.0/16", "bogus": 1}
    }))
    .expect("obj");
    let strict = PatchParams::apply("calico-charm").validation_strict();
    let err = raw
        .patch("pool-d", &strict, &Patch::Apply(&obj))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(422));
    let created = raw
        .create(&PostParams::default(), &obj)
        .await
        .expect("pruned");
    assert!(created.data.pointer("/spec/bogus").is_none());
    assert!(server
        .requests()
        .iter()
        .any(|e| e.path.ends_with("/ippools") && e.warnings.iter().any(|w| w.contains("bogus"))));

    // A good pool is accepted, and its cidr is immutable.
    let good = IPPool::new(
        "pool-e",
        IPPoolSpec {
            cidr: "10.4.0.0/16".into(),
            ..Default::default()
        },
    );
    pools
        .create(&PostParams::default(), &good)
        .await
        .expect("good pool");
    let err = pools
        .patch(
            "pool-e",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cidr": "10.5.0.0/16"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(422));
}

#[tokio::test]
async fn injected_faults_are_seen_by_the_client() {
    let server = TestApiServer::start(Options::without_crds());
    let client = server.kube_client_without_retry().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());

    server.fail_next(1, 503);
    let s = status_of(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((s.code, s.reason.as_str()), (503, "ServiceUnavailable"));
    nodes
        .list(&ListParams::default())
        .await
        .expect("the fault was used up");

    // 429 with Retry-After, seen on the raw response.
    server.throttle_next(1, 7);
    let req = http::Request::get("/api/v1/nodes")
        .body(kube::client::Body::empty())
        .expect("req");
    let resp = client.send(req).await.expect("response");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );

    // Only requests matching a path.
    server.fail_next_matching(1, "/namespaces/", 500);
    nodes
        .list(&ListParams::default())
        .await
        .expect("nodes untouched");
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert_eq!(code(&nss.get("default").await.unwrap_err()), Some(500));

    // A dropped connection is a transport error, not an API answer.
    server.drop_next(1);
    let err = nodes.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(code(&err), None, "{err:?}");
    nodes.list(&ListParams::default()).await.expect("recovered");

    // The request is executed but its answer never arrives.
    server.drop_response_next_matching(1, "/namespaces/default/configmaps");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let err = cms
        .create(&PostParams::default(), &cm("lost-answer", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), None, "{err:?}");
    assert!(
        server
            .get("v1", "ConfigMap", Some("default"), "lost-answer")
            .is_some()
    );
    let err = cms
        .create(&PostParams::default(), &cm("lost-answer", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(409), "the retry finds it created");

    // Latency.
    server.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    nodes.list(&ListParams::default()).await.expect("slow list");
    assert!(t.elapsed() >= Duration::from_millis(150));
    server.clear_faults();

    // Stop: connections refused; restart on the same port: the store is intact.
    server
        .insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))
        .expect("node");
    server.stop();
    assert!(!server.is_running());
    let err = nodes.get("n1").await.unwrap_err();
    assert_eq!(code(&err), None, "{err:?}");
    server.restart().expect("restart");
    let fresh = server.kube_client_without_retry().await.expect("client");
    Api::<Node>::all(fresh)
        .get("n1")
        .await
        .expect("served again");

    // Stop after two more requests.
    let client = server.kube_client_without_retry().await.expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    server.stop_after(2);
    nodes.get("n1").await.expect("first");
    nodes.get("n1").await.expect("second");
    assert_eq!(code(&nodes.get("n1").await.unwrap_err()), None);
    assert!(!server.is_running());
    assert!(
        std::net::TcpStream::connect(server.addr()).is_err(),
        "port closed"
    );
    server.restart().expect("restart");
    let nodes: Api<Node> = Api::all(server.kube_client_without_retry().await.expect("client"));
    nodes.get("n1").await.expect("back");

    // The log records every request, the dropped ones with status 0.
    let log = server.requests();
    assert!(log.iter().any(|e| e.status == 429));
    assert!(log.iter().any(|e| e.status == 0));
    server.reset_requests();
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn kube_default_client_retries_503_and_honours_retry_after() {
    let server = TestApiServer::start(Options::without_crds());
    let nodes: Api<Node> = Api::all(server.kube_client().await.expect("client"));
    server.fail_next(2, 503);
    nodes
        .list(&ListParams::default())
        .await
        .expect("retried through");
    assert_eq!(server.count_requests("GET", "/api/v1/nodes"), 3);
    server.throttle_next(1, 1);
    let t = Instant::now();
    nodes
        .list(&ListParams::default())
        .await
        .expect("retried after 1 s");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn blocking_callers_and_many_concurrent_clients() {
    let server = TestApiServer::start(Options::default());
    // A blocking thread (as a test driving a subprocess would) can use the server's API.
    let token = server.token().to_string();
    let url = server.url();
    let insert = std::thread::spawn(move || (token.len(), url.len()));
    assert_eq!(insert.join().expect("thread"), (32, server.url().len()));

    let mut tasks = Vec::new();
    for i in 0..50 {
        let client = server.kube_client().await.expect("client");
        tasks.push(tokio::spawn(async move {
            let peers: Api<BGPPeer> = Api::all(client);
            let name = format!("peer-{i}");
            let p = json!({
                "apiVersion": "crd.projectcalico.org/v1", "kind": "BGPPeer",
                "metadata": {"name": name, "labels": {"calico.juju.is/unit": format!("calico-{i}")}},
                "spec": {"node": format!("node-{i}"), "peerIP": "10.0.0.254", "asNumber": 64513}
            });
            peers
                .patch(&name, &PatchParams::apply("calico-charm").force(), &Patch::Apply(p))
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("apply");
    }
    assert_eq!(server.list_as::<BGPPeer>(None).len(), 50);
    assert_eq!(server.count_requests("PATCH", "/bgppeers/"), 50);
}

#[test]
fn fields_v1_round_trip_with_associative_lists() {
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "calico-node", "namespace": "kube-system", "labels": {"k8s-app": "calico-node"}},
        "spec": {"template": {"spec": {
            "containers": [{"name": "calico-node", "image": "calico/node:v3", "env": [{"name": "A", "value": "1"}]}],
            "tolerations": [{"operator": "Exists"}]
        }}}
    });
    let set = fields::fieldset_of(&obj, true);
    let v1 = fields::to_fields_v1(&set);
    let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"calico-node\"}"];
    assert_eq!(c["."], json!({}));
    assert_eq!(c["f:image"], json!({}));
    assert_eq!(c["f:env"]["k:{\"name\":\"A\"}"]["f:value"], json!({}));
    // tolerations is atomic: one leaf.
    assert_eq!(
        v1["f:spec"]["f:template"]["f:spec"]["f:tolerations"],
        json!({})
    );
    assert_eq!(v1["f:metadata"]["f:labels"]["f:k8s-app"], json!({}));
    assert!(v1["f:metadata"].get("f:name").is_none());
    assert_eq!(fields::from_fields_v1(&v1), set);
}

#[test]
fn apply_merges_associative_lists_by_key_and_prunes_dropped_items() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:1"}]}}}
    });
    // Manager one applies containers a and b; manager two adds an env var to a. The live
    // object has no managed fields, so a's image belongs to "before-first-apply": changing it
    // needs force.
    let first = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}]}}}
    });
    let conflicts = fields::server_side_apply(Some(&live), &first, "one", false, true, "t")
        .err()
        .expect("conflict");
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].manager, "before-first-apply");
    assert_eq!(
        fields::display(&conflicts[0].path),
        ".spec.template.spec.containers[name=\"a\"].image"
    );
    let one = fields::server_side_apply(Some(&live), &first, "one", true, true, "t").expect("one");
    let mut obj = one.object.clone();
    fields::set_managers(&mut obj, &one.managers);
    let two = fields::server_side_apply(Some(&obj), &json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "y"}]}]}}}
    }), "two", false, true, "t").expect("two");
    let mut obj = two.object.clone();
    fields::set_managers(&mut obj, &two.managers);
    // Manager one drops both containers: b goes, a stays (two owns a field in it).
    let again = fields::server_side_apply(
        Some(&obj),
        &json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": []}}}
        }),
        "one",
        false,
        true,
        "t",
    )
    .expect("again");
    let containers = again
        .object
        .pointer("/spec/template/spec/containers")
        .expect("containers");
    assert_eq!(
        containers,
        &json!([{"name": "a", "env": [{"name": "X", "value": "y"}]}]),
        "a keeps the fields others own (its name: two and before-first-apply; env: two), \
         loses one's image; b, one's alone, is gone"
    );
}

#[test]
fn label_selector_parsing() {
    let obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    let m = |s: &str| LabelSelector::parse(s).expect(s).matches(&obj);
    assert!(m(""));
    assert!(m("a=1,b in (2,3)"));
    assert!(!m("a=1,b notin (2)"));
    assert!(m("c notin (1)"));
    assert!(m("c!=1"));
    assert!(!m("c"));
    assert!(m("!c"));
    assert!(LabelSelector::parse("a in 1").is_err());
    assert!(LabelSelector::parse("bad key=1").is_err());
}

#[tokio::test]
async fn finalizers_generate_name_dry_run_and_delete_collection() {
    let server = TestApiServer::start(Options::without_crds());
    let client = server.kube_client().await.expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // generateName.
    let mut gen_cm = cm("", &[]);
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("calico-".into());
    let created = cms
        .create(&PostParams::default(), &gen_cm)
        .await
        .expect("create");
    let name = created.metadata.name.expect("name");
    assert!(
        name.starts_with("calico-") && name.len() == "calico-".len() + 5,
        "{name}"
    );

    // dryRun creates nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("dry", &[])).await.expect("dry run");
    assert!(cms.get_opt("dry").await.expect("get").is_none());

    // Replacing a missing object is 404.
    let err = cms
        .replace("ghost", &PostParams::default(), &cm("ghost", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), Some(404));

    // A finalizer holds a deleted object until it is removed.
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held)
        .await
        .expect("create");
    cms.delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let still = cms.get("held").await.expect("still there");
    assert!(still.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert!(cms.get_opt("held").await.expect("get").is_none());

    // Delete with a stale precondition is a conflict.
    let c = cms
        .create(&PostParams::default(), &cm("pre", &[]))
        .await
        .expect("create");
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        }),
        ..Default::default()
    };
    assert_eq!(code(&cms.delete("pre", &dp).await.unwrap_err()), Some(409));
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            resource_version: c.metadata.resource_version.clone(),
            uid: c.metadata.uid.clone(),
        }),
        ..Default::default()
    };
    cms.delete("pre", &dp)
        .await
        .expect("matching preconditions");

    // deletecollection by label.
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let mut o = cm(n, &[]);
        o.metadata.labels = Some(BTreeMap::from([("set".to_string(), l.to_string())]));
        cms.create(&PostParams::default(), &o)
            .await
            .expect("create");
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("set=x"),
    )
    .await
    .expect("delete collection");
    let left: Vec<String> = cms
        .list(&ListParams::default().labels("set"))
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(left, ["c"]);

    // Listing across namespaces; a namespaced object addressed without a namespace is 404.
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default().labels("set"))
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    let req = http::Request::get("/api/v1/configmaps/c")
        .body(Vec::new())
        .expect("request");
    let err = client.request::<ConfigMap>(req).await.unwrap_err();
    assert_eq!(code(&err), Some(404));

    // Watches are not served.
    let req = http::Request::get("/api/v1/namespaces/default/configmaps?watch=true")
        .body(Vec::new())
        .expect("request");
    assert_eq!(
        code(&client.request_text(req).await.unwrap_err()),
        Some(405)
    );
}

mod ssa_model {
    //! Server-side apply on a granular map (annotations) checked against a small model of
    //! the ownership rules, over random sequences of applies by three managers.
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::fields;

    #[derive(Clone, Debug)]
    struct Step {
        manager: usize,
        force: bool,
        annotations: BTreeMap<String, String>,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            0..3usize,
            any::<bool>(),
            prop::collection::btree_map("k[0-3]", "v[0-1]", 0..4),
        )
            .prop_map(|(manager, force, annotations)| Step {
                manager,
                force,
                annotations,
            })
    }

    fn object(annotations: &BTreeMap<String, String>) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "m", "annotations": annotations}})
    }

    proptest! {
        #[test]
        fn applies_follow_the_ownership_model(steps in prop::collection::vec(step(), 1..12)) {
            let names = ["a", "b", "c"];
            // The live object starts with one field no manager touches, stored with a
            // manager of its own (created by an Update).
            let mut live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "m", "annotations": {"admin": "x"}}});
            let created = fields::record_update(None, &live, "admin-tool", false, "t");
            fields::set_managers(&mut live, &created);
            let mut values: BTreeMap<String, String> = BTreeMap::from([("admin".into(), "x".into())]);
            let mut owners: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
            for s in steps {
                let me = s.manager;
                let result = fields::server_side_apply(
                    Some(&live), &object(&s.annotations), names[me], s.force, false, "t");
                // Model: a conflict is a key whose value would change and that someone else owns.
                let conflict = s.annotations.iter().any(|(k, v)| {
                    values.get(k) != Some(v)
                        && owners.get(k).is_some_and(|o| o.iter().any(|m| *m != me))
                });
                if conflict && !s.force {
                    prop_assert!(result.is_err());
                    continue;
                }
                let out = result.map_err(|c| TestCaseError::fail(format!("{c:?}")))?;
                for (k, v) in &s.annotations {
                    let o = owners.entry(k.clone()).or_default();
                    if values.get(k) != Some(v) {
                        o.clear();
                    }
                    o.insert(me);
                    values.insert(k.clone(), v.clone());
                }
                let dropped: Vec<String> = owners
                    .iter()
                    .filter(|(k, o)| o.contains(&me) && !s.annotations.contains_key(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in dropped {
                    let o = owners.entry(k.clone()).or_default();
                    o.remove(&me);
                    if o.is_empty() {
                        owners.remove(&k);
                        values.remove(&k);
                    }
                }
                live = out.object;
                fields::set_managers(&mut live, &out.managers);
                let got: BTreeMap<String, String> = live
                    .pointer("/metadata/annotations")
                    .cloned()
                    .map(|a| serde_json::from_value(a).expect("annotations"))
                    .unwrap_or_default();
                prop_assert_eq!(&got, &values);
                // managedFields, read back from the object, agree with the model.
                for (i, name) in names.iter().enumerate() {
                    let owned: BTreeSet<String> = fields::managers_of(&live)
                        .iter()
                        .filter(|m| m.manager == *name)
                        .flat_map(|m| m.fields.iter().filter_map(|p| match p.as_slice() {
                            [_, _, fields::Pe::F(k)] => Some(k.clone()),
                            _ => None,
                        }))
                        .collect();
                    let want: BTreeSet<String> = owners
                        .iter()
                        .filter(|(_, o)| o.contains(&i))
                        .map(|(k, _)| k.clone())
                        .collect();
                    prop_assert_eq!(owned, want, "manager {}", name);
                }
            }
        }
    }
}
