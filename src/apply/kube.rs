//! [`Datastore`] on the Kubernetes API: Calico's Kubernetes datastore (KDD).
//!
//! Writes are server-side applies with field manager [`FIELD_MANAGER`], forced; deletes are
//! conditional on the uid last read; lists of per-unit objects are label-selected. Every
//! request goes through [`RetryLayer`], so transient faults are retried within the hook's
//! budget before an operation reports [`DatastoreError::Unavailable`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::KubeConfigOptions;
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::kubeconfig::KubeconfigError;
use super::readiness::{calico_node_pod, pod_ready};
use super::retry::{Budget, RetryLayer, RetrySettings, describe_error};
use super::workloads::{KubeWorkloads, NodeAgent, ObjectRef, WorkloadKind, WorkloadObject};
use crate::calico::{
    BGPConfiguration, BGPPeer, CalicoNodeStatus, FIELD_MANAGER, IPAMBlock, IPPool, NODE_ANNOTATIONS,
};
use crate::datastore::{CalicoDatastore, Created, DatastoreError, DsResult, Labels};
use crate::render::workloads::{CALICO_NODE_SELECTOR, NAMESPACE};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error("cannot make a Kubernetes client from kubeconfig {path}: {reason}")]
    Client { path: String, reason: String },
}

impl ApplyError {
    /// Whether it may heal by itself: only a kubeconfig the principal has not written yet.
    /// Anything else is a kubeconfig that cannot work as written.
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Kubeconfig(e) if e.is_transient())
    }
}

/// A client from the kubeconfig at `path`: TLS verified against the kubeconfig's CA, the
/// kubeconfig's token or client certificate, timeouts and retries per `settings`.
pub async fn connect_with(
    path: &Path,
    settings: RetrySettings,
) -> Result<KubeDatastore, ApplyError> {
    let shown = path.display().to_string();
    // Read, checked and with its credentials resolved by the charm (see `kubeconfig`): kube
    // gets inline credentials only.
    let kubeconfig = super::kubeconfig::load(path)?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| ApplyError::Client {
            path: shown.clone(),
            reason: crate::redact::redact(&describe_error(&e)),
        })?;
    if config.accept_invalid_certs {
        tracing::warn!("kubeconfig asks to skip TLS verification; verifying anyway");
        config.accept_invalid_certs = false;
    }
    // Our own retry layer replaces kube's (which would wait up to 1000 s).
    config.default_retry = false;
    config.connect_timeout = Some(settings.connect_timeout);
    config.read_timeout = Some(settings.attempt_timeout);
    config.write_timeout = Some(settings.attempt_timeout);
    config.reset_reader_on_write = true;
    // So an operator finds the charm's requests in the API server's audit log.
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(crate::USER_AGENT),
    ));
    let budget = Budget::new(settings);
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| ApplyError::Client {
            path: shown.clone(),
            reason: describe_error(&e),
        })?;
    let client = builder.with_layer(&RetryLayer::new(budget.clone())).build();
    Ok(KubeDatastore { client, budget })
}

/// Calico's Kubernetes datastore.
#[derive(Clone)]
pub struct KubeDatastore {
    client: Client,
    budget: Arc<Budget>,
}

impl KubeDatastore {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The hook's retry budget (what is left of it).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

/// What an operation was doing, to tell a missing kind from a missing object on a 404.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// List, apply or create: a 404 means the kind is not served.
    Kind,
    /// Patch or delete of one object: a 404 means the object is gone.
    Object,
}

/// The HTTP code of an API error, from the status or (when a server left it out) its reason.
fn status_code(status: &kube::core::Status) -> u16 {
    if status.code != 0 {
        return status.code;
    }
    match status.reason.as_str() {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "NotFound" => 404,
        "AlreadyExists" | "Conflict" => 409,
        "Invalid" => 422,
        "TooManyRequests" => 429,
        "InternalError" => 500,
        "ServiceUnavailable" => 503,
        "Timeout" | "ServerTimeout" => 504,
        _ => 0,
    }
}

/// How many characters of an API server's message a cause quotes.
const MAX_API_MESSAGE: usize = 300;

fn shorten(text: &str) -> String {
    crate::text::shorten(text.trim(), MAX_API_MESSAGE)
}

/// A TLS failure that retrying cannot fix, described for the operator: the server's
/// certificate is not signed by the kubeconfig's CA, names another host, has expired, or the
/// server refused the client certificate.
fn tls_problem(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            use rustls::CertificateError as C;
            return Some(match tls {
                rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
                    "TLS: the API server's certificate is not signed by the kubeconfig's \
                     certificate authority (certificate-authority-data): fix the kubeconfig"
                        .to_string()
                }
                rustls::Error::InvalidCertificate(C::BadSignature)
                | rustls::Error::InvalidCertificate(C::BadEncoding) => {
                    "TLS: the API server's certificate does not verify against the \
                     kubeconfig's certificate authority: fix the kubeconfig"
                        .to_string()
                }
                rustls::Error::InvalidCertificate(C::NotValidForName)
                | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => {
                    "TLS: the API server's certificate is for another host name: fix the \
                     kubeconfig's server (or tls-server-name)"
                        .to_string()
                }
                rustls::Error::InvalidCertificate(C::Expired)
                | rustls::Error::InvalidCertificate(C::ExpiredContext { .. }) => {
                    "TLS: the API server's certificate has expired".to_string()
                }
                rustls::Error::InvalidCertificate(other) => {
                    format!("TLS: the API server's certificate is refused ({other:?})")
                }
                rustls::Error::AlertReceived(alert) => format!(
                    "TLS: the API server refused the connection ({alert:?}): check the \
                     kubeconfig's client certificate"
                ),
                other => format!("TLS: {other}"),
            });
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static))
                .or_else(|| e.source()),
            None => e.source(),
        };
    }
    None
}

/// Classify a kube error for converge.
fn classify(err: kube::Error, object: &str, kind: &str, op: Op) -> DatastoreError {
    match err {
        kube::Error::Api(status) => {
            let code = status_code(&status);
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            let message = shorten(&message);
            match code {
                401 | 403 => DatastoreError::Denied(message),
                404 if op == Op::Kind => DatastoreError::KindMissing {
                    kind: kind.to_string(),
                },
                404 => DatastoreError::NotFound {
                    object: object.to_string(),
                },
                409 => DatastoreError::Conflict {
                    object: object.to_string(),
                    reason: message,
                },
                422 => DatastoreError::Invalid {
                    object: object.to_string(),
                    reason: message,
                },
                429 | 500..=599 => DatastoreError::Unavailable(format!("HTTP {code}: {message}")),
                _ => DatastoreError::Other {
                    object: object.to_string(),
                    reason: format!("HTTP {code}: {message}"),
                },
            }
        }
        kube::Error::Auth(e) => DatastoreError::Denied(describe_error(&e)),
        kube::Error::SerdeError(e) => DatastoreError::Other {
            object: object.to_string(),
            reason: format!("unreadable answer: {e}"),
        },
        other => match tls_problem(&other) {
            Some(problem) => DatastoreError::Setup(problem),
            None => DatastoreError::Unavailable(shorten(&describe_error(&other))),
        },
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn update_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

fn delete_params(uid: Option<String>) -> DeleteParams {
    DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// Server-side apply of a typed object.
async fn ssa<K>(api: &Api<K>, kind: &str, name: &str, object: &K) -> DsResult<K>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    api.patch(name, &apply_params(), &Patch::Apply(object))
        .await
        .map_err(|e| classify(e, &format!("{kind}/{name}"), kind, Op::Kind))
}

/// A merge patch of an object's metadata (its managed fields), as the charm's manager.
async fn patch_meta<K>(
    api: &Api<K>,
    kind: &str,
    name: &str,
    patch: &serde_json::Value,
) -> DsResult<()>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    api.patch(name, &update_params(), &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|e| classify(e, &format!("{kind}/{name}"), kind, Op::Object))
}

/// Delete an object if it is still the one we read (same uid). Gone already, or replaced by
/// another object of the same name, is not an error: nothing of ours is left to delete.
async fn delete_exact<K>(api: &Api<K>, kind: &str, name: &str, uid: Option<String>) -> DsResult<()>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    match api.delete(name, &delete_params(uid)).await {
        Ok(_) => Ok(()),
        Err(err) => match classify(err, &format!("{kind}/{name}"), kind, Op::Object) {
            DatastoreError::NotFound { .. } => Ok(()),
            DatastoreError::Conflict { object, reason } => {
                tracing::info!("not deleting {object}: it was replaced ({reason})");
                Ok(())
            }
            other => Err(other),
        },
    }
}

fn object_ref<K: Resource<DynamicType = ()> + Serialize>(object: &K) -> ObjectRef {
    let meta = object.meta();
    ObjectRef {
        kind: K::kind(&()).to_string(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        labels: meta.labels.clone().unwrap_or_default(),
        live: serde_json::to_value(object).unwrap_or_default(),
    }
}

/// The Calico keys the charm sets among a node's annotations.
fn calico_annotations(node: &Node) -> BTreeMap<String, String> {
    node.annotations()
        .iter()
        .filter(|(k, _)| crate::calico::is_charm_node_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A label selector holding every one of `labels` (`k1=v1,k2=v2`).
fn selector(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl KubeDatastore {
    fn pools(&self) -> Api<IPPool> {
        Api::all(self.client.clone())
    }
    fn peers(&self) -> Api<BGPPeer> {
        Api::all(self.client.clone())
    }

    /// This node's `CalicoNodeStatus`, if there is one.
    pub(crate) async fn get_node_status(&self, name: &str) -> DsResult<Option<CalicoNodeStatus>> {
        Api::<CalicoNodeStatus>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| {
                classify(
                    e,
                    &format!("CalicoNodeStatus/{name}"),
                    "CalicoNodeStatus",
                    Op::Object,
                )
            })
    }

    /// Server-side apply of the charm's fields of a `CalicoNodeStatus` (its `status` is
    /// calico-node's and is left alone).
    pub(crate) async fn apply_node_status(
        &self,
        object: &CalicoNodeStatus,
    ) -> DsResult<CalicoNodeStatus> {
        let api = Api::<CalicoNodeStatus>::all(self.client.clone());
        ssa(&api, "CalicoNodeStatus", &object.name_any(), object).await
    }

    /// Delete a `CalicoNodeStatus` read before (same uid).
    pub(crate) async fn delete_node_status(&self, object: &CalicoNodeStatus) -> DsResult<()> {
        let api = Api::<CalicoNodeStatus>::all(self.client.clone());
        delete_exact(&api, "CalicoNodeStatus", &object.name_any(), object.uid()).await
    }

    async fn list_typed<K>(&self, api: Api<K>, kind: &str, lp: &ListParams) -> DsResult<Vec<K>>
    where
        K: Resource + DeserializeOwned + Clone + Debug,
    {
        api.list(lp)
            .await
            .map(|l| l.items)
            .map_err(|e| classify(e, kind, kind, Op::Kind))
    }

    async fn list_labelled<K>(&self, api: Api<K>, labels: &Labels) -> DsResult<Vec<ObjectRef>>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Serialize + Clone + Debug,
    {
        let kind = K::kind(&()).to_string();
        let lp = ListParams::default().labels(&selector(labels));
        Ok(self
            .list_typed(api, &kind, &lp)
            .await?
            .iter()
            .map(object_ref)
            .collect())
    }

    fn workload_ref(&self, object: &WorkloadObject, stored: ObjectRef) -> ObjectRef {
        let (namespace, _) = object.key();
        ObjectRef {
            namespace,
            ..stored
        }
    }
}

impl CalicoDatastore for KubeDatastore {
    fn name(&self) -> &'static str {
        "Kubernetes API"
    }

    async fn list_pools(&self) -> DsResult<Vec<IPPool>> {
        self.list_typed(self.pools(), "IPPool", &ListParams::default())
            .await
    }

    async fn apply_pool(&self, pool: &IPPool) -> DsResult<IPPool> {
        let name = pool.name_any();
        ssa(&self.pools(), "IPPool", &name, pool).await
    }

    async fn disable_pool(&self, pool: &IPPool) -> DsResult<()> {
        let name = pool.name_any();
        let patch = json!({"spec": {"disabled": true}});
        self.pools()
            .patch(&name, &update_params(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &format!("IPPool/{name}"), "IPPool", Op::Object))
    }

    async fn delete_pool(&self, pool: &IPPool) -> DsResult<()> {
        delete_exact(&self.pools(), "IPPool", &pool.name_any(), pool.uid()).await
    }

    async fn list_ipam_blocks(&self) -> DsResult<Vec<IPAMBlock>> {
        self.list_typed(
            Api::<IPAMBlock>::all(self.client.clone()),
            "IPAMBlock",
            &ListParams::default(),
        )
        .await
    }

    async fn list_peers(&self, labels: &Labels) -> DsResult<Vec<BGPPeer>> {
        let lp = ListParams::default().labels(&selector(labels));
        self.list_typed(self.peers(), "BGPPeer", &lp).await
    }

    async fn get_peer(&self, name: &str) -> DsResult<Option<BGPPeer>> {
        self.peers()
            .get_opt(name)
            .await
            .map_err(|e| classify(e, &format!("BGPPeer/{name}"), "BGPPeer", Op::Object))
    }

    async fn apply_peer(&self, peer: &BGPPeer) -> DsResult<BGPPeer> {
        let name = peer.name_any();
        ssa(&self.peers(), "BGPPeer", &name, peer).await
    }

    /// A `POST` (field manager [`FIELD_MANAGER`]): one request for a new peer. On `409
    /// AlreadyExists` the peer is read (and, gone again meanwhile, applied).
    async fn create_peer(&self, peer: &BGPPeer) -> DsResult<Created<BGPPeer>> {
        let name = peer.name_any();
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match self.peers().create(&params, peer).await {
            Ok(stored) => Ok(Created::New(stored)),
            Err(kube::Error::Api(status)) if status.reason == "AlreadyExists" => {
                match self.get_peer(&name).await? {
                    Some(existing) => Ok(Created::Exists(existing)),
                    None => self.apply_peer(peer).await.map(Created::New),
                }
            }
            Err(e) => Err(classify(e, &format!("BGPPeer/{name}"), "BGPPeer", Op::Kind)),
        }
    }

    async fn delete_peer(&self, peer: &BGPPeer) -> DsResult<()> {
        delete_exact(&self.peers(), "BGPPeer", &peer.name_any(), peer.uid()).await
    }

    async fn get_bgp_configuration(&self, name: &str) -> DsResult<Option<BGPConfiguration>> {
        Api::<BGPConfiguration>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| {
                classify(
                    e,
                    &format!("BGPConfiguration/{name}"),
                    "BGPConfiguration",
                    Op::Object,
                )
            })
    }

    async fn apply_bgp_configuration(
        &self,
        config: &BGPConfiguration,
    ) -> DsResult<BGPConfiguration> {
        let name = config.name_any();
        ssa(
            &Api::<BGPConfiguration>::all(self.client.clone()),
            "BGPConfiguration",
            &name,
            config,
        )
        .await
    }

    async fn get_node_bgp(&self, node: &str) -> DsResult<Option<BTreeMap<String, String>>> {
        Api::<Node>::all(self.client.clone())
            .get_opt(node)
            .await
            .map(|n| n.as_ref().map(calico_annotations))
            .map_err(|e| classify(e, &format!("Node/{node}"), "Node", Op::Object))
    }

    async fn apply_node_bgp(
        &self,
        node: &str,
        settings: &BTreeMap<String, String>,
    ) -> DsResult<BTreeMap<String, String>> {
        let mut metadata = json!({ "name": node });
        if !settings.is_empty() {
            metadata["annotations"] = json!(settings);
        }
        let patch = json!({"apiVersion": "v1", "kind": "Node", "metadata": metadata});
        Api::<Node>::all(self.client.clone())
            .patch(node, &apply_params(), &Patch::Apply(&patch))
            .await
            .map(|n| calico_annotations(&n))
            .map_err(|e| classify(e, &format!("Node/{node}"), "Node", Op::Object))
    }

    async fn remove_node_bgp(&self, node: &str, keys: &[String]) -> DsResult<()> {
        let nulls: serde_json::Map<String, serde_json::Value> = keys
            .iter()
            .filter(|k| NODE_ANNOTATIONS.contains(&k.as_str()))
            .map(|k| (k.clone(), serde_json::Value::Null))
            .collect();
        if nulls.is_empty() {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": nulls}});
        Api::<Node>::all(self.client.clone())
            .patch(node, &update_params(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|e| classify(e, &format!("Node/{node}"), "Node", Op::Object))
    }
}

impl KubeWorkloads for KubeDatastore {
    async fn missing_crds(&self, crds: &[CustomResourceDefinition]) -> DsResult<Vec<String>> {
        // One discovery request per group/version instead of one GET per CRD.
        let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut missing = Vec::new();
        for crd in crds {
            let group = &crd.spec.group;
            let Some(version) = crd
                .spec
                .versions
                .iter()
                .find(|v| v.served)
                .or(crd.spec.versions.first())
            else {
                continue;
            };
            let group_version = format!("{group}/{}", version.name);
            if !served.contains_key(&group_version) {
                let plurals = match self.client.list_api_group_resources(&group_version).await {
                    Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
                    Err(kube::Error::Api(status)) if status_code(&status) == 404 => BTreeSet::new(),
                    Err(e) => {
                        return Err(classify(e, &group_version, "APIResourceList", Op::Object));
                    }
                };
                served.insert(group_version.clone(), plurals);
            }
            let is_served = served
                .get(&group_version)
                .is_some_and(|p| p.contains(&crd.spec.names.plural));
            if !is_served {
                missing.push(crd.name_any());
            }
        }
        Ok(missing)
    }

    async fn create_crd(&self, crd: &CustomResourceDefinition) -> DsResult<bool> {
        let name = crd.name_any();
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let mut crd = crd.clone();
        crd.metadata.resource_version = None;
        crd.metadata.uid = None;
        crd.status = None;
        match Api::<CustomResourceDefinition>::all(self.client.clone())
            .create(&pp, &crd)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => match classify(
                err,
                &format!("CustomResourceDefinition/{name}"),
                "CustomResourceDefinition",
                Op::Kind,
            ) {
                // Created meanwhile (another leader, a retry): leave it as it is.
                DatastoreError::Conflict { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn apply_workload(&self, object: &WorkloadObject) -> DsResult<ObjectRef> {
        let (namespace, name) = object.key();
        let kind = object.kind().as_str();
        let c = self.client.clone();
        let stored = match object {
            WorkloadObject::ServiceAccount(o) => object_ref(
                &ssa(
                    &Api::<ServiceAccount>::namespaced(c, &namespace),
                    kind,
                    &name,
                    o,
                )
                .await?,
            ),
            WorkloadObject::ClusterRole(o) => {
                object_ref(&ssa(&Api::<ClusterRole>::all(c), kind, &name, o).await?)
            }
            WorkloadObject::ClusterRoleBinding(o) => {
                object_ref(&ssa(&Api::<ClusterRoleBinding>::all(c), kind, &name, o).await?)
            }
            WorkloadObject::ConfigMap(o) => object_ref(
                &ssa(&Api::<ConfigMap>::namespaced(c, &namespace), kind, &name, o).await?,
            ),
            WorkloadObject::Secret(o) => {
                object_ref(&ssa(&Api::<Secret>::namespaced(c, &namespace), kind, &name, o).await?)
            }
            WorkloadObject::DaemonSet(o) => object_ref(
                &ssa(&Api::<DaemonSet>::namespaced(c, &namespace), kind, &name, o).await?,
            ),
            WorkloadObject::Deployment(o) => object_ref(
                &ssa(
                    &Api::<Deployment>::namespaced(c, &namespace),
                    kind,
                    &name,
                    o,
                )
                .await?,
            ),
            WorkloadObject::Service(o) => {
                object_ref(&ssa(&Api::<Service>::namespaced(c, &namespace), kind, &name, o).await?)
            }
            WorkloadObject::PodDisruptionBudget(o) => object_ref(
                &ssa(
                    &Api::<PodDisruptionBudget>::namespaced(c, &namespace),
                    kind,
                    &name,
                    o,
                )
                .await?,
            ),
        };
        Ok(self.workload_ref(object, stored))
    }

    async fn list_workloads(
        &self,
        kind: WorkloadKind,
        labels: &Labels,
    ) -> DsResult<Vec<ObjectRef>> {
        let c = self.client.clone();
        match kind {
            WorkloadKind::ServiceAccount => {
                self.list_labelled(Api::<ServiceAccount>::namespaced(c, NAMESPACE), labels)
                    .await
            }
            WorkloadKind::ClusterRole => {
                self.list_labelled(Api::<ClusterRole>::all(c), labels).await
            }
            WorkloadKind::ClusterRoleBinding => {
                self.list_labelled(Api::<ClusterRoleBinding>::all(c), labels)
                    .await
            }
            WorkloadKind::ConfigMap => {
                self.list_labelled(Api::<ConfigMap>::namespaced(c, NAMESPACE), labels)
                    .await
            }
            WorkloadKind::Secret => {
                self.list_labelled(Api::<Secret>::namespaced(c, NAMESPACE), labels)
                    .await
            }
            WorkloadKind::DaemonSet => {
                self.list_labelled(Api::<DaemonSet>::namespaced(c, NAMESPACE), labels)
                    .await
            }
            WorkloadKind::Deployment => {
                self.list_labelled(Api::<Deployment>::namespaced(c, NAMESPACE), labels)
                    .await
            }
            WorkloadKind::Service => {
                self.list_labelled(Api::<Service>::namespaced(c, NAMESPACE), labels)
                    .await
            }
            WorkloadKind::PodDisruptionBudget => {
                self.list_labelled(Api::<PodDisruptionBudget>::namespaced(c, NAMESPACE), labels)
                    .await
            }
        }
    }

    async fn delete_workload(&self, object: &ObjectRef) -> DsResult<()> {
        let c = self.client.clone();
        let (ns, name, uid) = (&object.namespace, &object.name, object.uid.clone());
        let kind = object.kind.as_str();
        match kind {
            "ServiceAccount" => {
                delete_exact(&Api::<ServiceAccount>::namespaced(c, ns), kind, name, uid).await
            }
            "ClusterRole" => delete_exact(&Api::<ClusterRole>::all(c), kind, name, uid).await,
            "ClusterRoleBinding" => {
                delete_exact(&Api::<ClusterRoleBinding>::all(c), kind, name, uid).await
            }
            "ConfigMap" => {
                delete_exact(&Api::<ConfigMap>::namespaced(c, ns), kind, name, uid).await
            }
            "Secret" => delete_exact(&Api::<Secret>::namespaced(c, ns), kind, name, uid).await,
            "DaemonSet" => {
                delete_exact(&Api::<DaemonSet>::namespaced(c, ns), kind, name, uid).await
            }
            "Deployment" => {
                delete_exact(&Api::<Deployment>::namespaced(c, ns), kind, name, uid).await
            }
            "Service" => delete_exact(&Api::<Service>::namespaced(c, ns), kind, name, uid).await,
            "PodDisruptionBudget" => {
                delete_exact(
                    &Api::<PodDisruptionBudget>::namespaced(c, ns),
                    kind,
                    name,
                    uid,
                )
                .await
            }
            other => Err(DatastoreError::Other {
                object: object.display(),
                reason: format!("the charm does not delete objects of kind {other}"),
            }),
        }
    }

    async fn set_managed_fields(
        &self,
        object: &ObjectRef,
        managed_fields: Vec<serde_json::Value>,
    ) -> DsResult<()> {
        let c = self.client.clone();
        let (ns, name) = (object.namespace.as_str(), object.name.as_str());
        let kind = object.kind.as_str();
        // A merge patch replaces the list whole; its resourceVersion makes it conditional.
        let patch = json!({"metadata": {
            "resourceVersion": object.resource_version,
            "managedFields": managed_fields,
        }});
        match kind {
            "ServiceAccount" => {
                patch_meta(
                    &Api::<ServiceAccount>::namespaced(c, ns),
                    kind,
                    name,
                    &patch,
                )
                .await
            }
            "ClusterRole" => patch_meta(&Api::<ClusterRole>::all(c), kind, name, &patch).await,
            "ClusterRoleBinding" => {
                patch_meta(&Api::<ClusterRoleBinding>::all(c), kind, name, &patch).await
            }
            "ConfigMap" => {
                patch_meta(&Api::<ConfigMap>::namespaced(c, ns), kind, name, &patch).await
            }
            "Secret" => patch_meta(&Api::<Secret>::namespaced(c, ns), kind, name, &patch).await,
            "DaemonSet" => {
                patch_meta(&Api::<DaemonSet>::namespaced(c, ns), kind, name, &patch).await
            }
            "Deployment" => {
                patch_meta(&Api::<Deployment>::namespaced(c, ns), kind, name, &patch).await
            }
            "Service" => patch_meta(&Api::<Service>::namespaced(c, ns), kind, name, &patch).await,
            "PodDisruptionBudget" => {
                patch_meta(
                    &Api::<PodDisruptionBudget>::namespaced(c, ns),
                    kind,
                    name,
                    &patch,
                )
                .await
            }
            other => Err(DatastoreError::Other {
                object: object.display(),
                reason: format!("the charm does not adopt objects of kind {other}"),
            }),
        }
    }

    async fn node_agent(&self, node: &str) -> DsResult<NodeAgent> {
        let lp = ListParams::default()
            .labels(CALICO_NODE_SELECTOR)
            .fields(&format!("spec.nodeName={node}"));
        let pods = self
            .list_typed(
                Api::<Pod>::namespaced(self.client.clone(), NAMESPACE),
                "Pod",
                &lp,
            )
            .await?;
        // Readiness is read from the pod by the workloads' own rules.
        Ok(match calico_node_pod(&pods, node) {
            None => NodeAgent::Missing,
            Some(pod) => match pod_ready(pod) {
                Ok(()) => NodeAgent::Ready,
                Err(reason) => NodeAgent::NotReady(reason),
            },
        })
    }

    async fn kubernetes_version(&self) -> DsResult<Option<(u32, u32)>> {
        let info = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| classify(e, "/version", "Version", Op::Object))?;
        Ok(crate::config::support::parse_kubernetes_version(
            &info.major,
            &info.minor,
        ))
    }
}

impl KubeDatastore {
    /// How many Node objects the cluster has, for Typha's decision and replicas
    /// ([`crate::render::workloads::typha`]). One metadata-only list with `limit=1` answers it from
    /// `remainingItemCount`; when the server leaves that out, the metadata is paged through
    /// 500 at a time. Never reads every Node's full object.
    pub(crate) async fn count_nodes(&self) -> DsResult<u64> {
        count_nodes(&self.client).await
    }
}

/// [`KubeDatastore::count_nodes`] on any client (the agent's).
pub(crate) async fn count_nodes(client: &Client) -> DsResult<u64> {
    let api = Api::<Node>::all(client.clone());
    let fail = |e| classify(e, "Node", "Node", Op::Kind);
    let first = api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(fail)?;
    let seen = first.items.len() as u64;
    if let Some(rest) = first.metadata.remaining_item_count {
        return Ok(seen + u64::try_from(rest).unwrap_or(0));
    }
    let mut count = seen;
    let mut token = first.metadata.continue_.filter(|t| !t.is_empty());
    while let Some(t) = token {
        let page = api
            .list_metadata(&ListParams::default().limit(500).continue_token(&t))
            .await
            .map_err(fail)?;
        count += page.items.len() as u64;
        token = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    Ok(count)
}
