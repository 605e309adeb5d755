//! The CustomResourceDefinitions calico-node and calico-kube-controllers expect to exist.
//!
//! - Kinds the charm models ([`crate::calico`]: IPPool, BGPPeer, BGPConfiguration,
//!   IPAMBlock) come from kube's [`CustomResourceExt::crd`], then are opened up: `spec`
//!   carries `x-kubernetes-preserve-unknown-fields: true`, so the API server keeps every
//!   field calico-node, calicoctl or an admin writes that the charm does not model (the
//!   typed schema lists only the charm's fields). Schema `default`s are removed so the CRD
//!   never injects values into other writers' objects, and `spec` is not required at the
//!   root (Calico's own CRDs do not require it).
//! - Every other kind gets an open schema built here: `spec` (and `status` where Calico has
//!   one) is an object preserving unknown fields.
//!
//! None of Calico's `crd.projectcalico.org/v1` CRDs declares a status subresource, so none
//! is declared here: calico-node and kube-controllers write `status` with plain updates.
//!
//! `ClusterNetworkPolicy` (`policy.networking.k8s.io/v1alpha2`, the SIG network-policy-api
//! kind) is included although upstream Kubernetes owns it: Calico 3.32's calico-node lists
//! and watches it (its RBAC grants that), and its watch never syncs when the CRD is absent.
//! It is created only when absent, like every CRD here, so a real upstream CRD installed
//! before or after (by `kubectl apply`, which replaces the whole spec) wins. It keeps the
//! status subresource the upstream API declares.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceSubresourceStatus, CustomResourceSubresources,
    CustomResourceValidation, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use crate::calico::{BGPConfiguration, BGPPeer, GROUP, IPAMBlock, IPPool, VERSION};

/// `Cluster` or `Namespaced`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Namespaced,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cluster => "Cluster",
            Scope::Namespaced => "Namespaced",
        }
    }
}

/// A kind the charm never writes: identity only, open schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpenKind {
    /// Annotations upstream's CRD carries that the API server requires: a CRD in a
    /// protected group (`*.k8s.io`, `*.kubernetes.io`) must name its API review.
    pub annotations: &'static [(&'static str, &'static str)],
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub scope: Scope,
    /// Objects carry a `status` (kept as an open object).
    pub status: bool,
    /// The upstream API declares a status subresource.
    pub status_subresource: bool,
}

const fn calico(kind: &'static str, plural: &'static str, scope: Scope, status: bool) -> OpenKind {
    OpenKind {
        annotations: &[],
        group: GROUP,
        version: VERSION,
        kind,
        plural,
        scope,
        status,
        status_subresource: false,
    }
}

/// The kinds without a typed model in the charm (the CRDs of Calico v3.32.1's
/// `libcalico-go/config/crd/`, see `docs/workloads-versions.md`, "Sources").
pub(crate) const OPEN_KINDS: [OpenKind; 19] = [
    calico("BGPFilter", "bgpfilters", Scope::Cluster, false),
    calico("BlockAffinity", "blockaffinities", Scope::Cluster, false),
    calico(
        "CalicoNodeStatus",
        "caliconodestatuses",
        Scope::Cluster,
        true,
    ),
    calico(
        "ClusterInformation",
        "clusterinformations",
        Scope::Cluster,
        false,
    ),
    calico(
        "FelixConfiguration",
        "felixconfigurations",
        Scope::Cluster,
        false,
    ),
    calico(
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        Scope::Cluster,
        false,
    ),
    calico(
        "GlobalNetworkSet",
        "globalnetworksets",
        Scope::Cluster,
        false,
    ),
    calico("HostEndpoint", "hostendpoints", Scope::Cluster, false),
    calico("IPAMConfig", "ipamconfigs", Scope::Cluster, false),
    calico("IPAMHandle", "ipamhandles", Scope::Cluster, false),
    calico("IPReservation", "ipreservations", Scope::Cluster, false),
    calico(
        "KubeControllersConfiguration",
        "kubecontrollersconfigurations",
        Scope::Cluster,
        true,
    ),
    calico("NetworkPolicy", "networkpolicies", Scope::Namespaced, false),
    calico("NetworkSet", "networksets", Scope::Namespaced, false),
    calico(
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
        Scope::Cluster,
        false,
    ),
    calico(
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
        Scope::Namespaced,
        false,
    ),
    calico(
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
        Scope::Namespaced,
        false,
    ),
    calico("Tier", "tiers", Scope::Cluster, false),
    OpenKind {
        // The value of upstream's CRD (kubernetes-sigs/network-policy-api,
        // config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml, v0.1.7).
        annotations: &[(
            "api-approved.kubernetes.io",
            "https://github.com/kubernetes-sigs/network-policy-api/pull/300",
        )],
        group: "policy.networking.k8s.io",
        version: "v1alpha2",
        kind: "ClusterNetworkPolicy",
        plural: "clusternetworkpolicies",
        scope: Scope::Cluster,
        status: true,
        status_subresource: true,
    },
];

fn typed(t: &str) -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some(t.to_string()),
        ..JSONSchemaProps::default()
    }
}

fn open_object() -> JSONSchemaProps {
    JSONSchemaProps {
        type_: Some("object".to_string()),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..JSONSchemaProps::default()
    }
}

/// Formats the Kubernetes API server knows; schemars also emits others (`uint32`, …).
const KNOWN_FORMATS: [&str; 8] = [
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
    "cidr",
];

/// Remove every `default` (recursively), so the CRD never injects values, and every
/// `format` Kubernetes does not know.
fn strip_defaults(s: &mut JSONSchemaProps) {
    s.default = None;
    if s.format
        .as_deref()
        .is_some_and(|f| !KNOWN_FORMATS.contains(&f))
    {
        s.format = None;
    }
    if let Some(props) = s.properties.as_mut() {
        props.values_mut().for_each(strip_defaults);
    }
    match s.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(i)) => strip_defaults(i),
        Some(JSONSchemaPropsOrArray::Schemas(v)) => v.iter_mut().for_each(strip_defaults),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(a)) = s.additional_properties.as_mut() {
        strip_defaults(a);
    }
    for list in [&mut s.all_of, &mut s.any_of, &mut s.one_of]
        .into_iter()
        .flatten()
    {
        list.iter_mut().for_each(strip_defaults);
    }
}

/// Root properties every object has; the API server implies them, they are spelled out
/// for readers and validators.
fn add_object_basics(root: &mut JSONSchemaProps) {
    let props = root.properties.get_or_insert_with(BTreeMap::new);
    props.insert("apiVersion".into(), typed("string"));
    props.insert("kind".into(), typed("string"));
    props.insert("metadata".into(), typed("object"));
}

/// Open up a CRD derived from a typed kind (see the module doc).
fn open_typed(mut crd: CustomResourceDefinition, status: bool) -> CustomResourceDefinition {
    let kind = crd.spec.names.kind.clone();
    crd.spec.names.list_kind = Some(format!("{kind}List"));
    crd.spec.names.singular = Some(kind.to_lowercase());
    crd.metadata.labels = Some(super::labels(&[]));
    for v in &mut crd.spec.versions {
        v.served = true;
        v.storage = true;
        v.subresources = None;
        let Some(root) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        strip_defaults(root);
        root.required = None;
        root.title = None;
        root.description = None;
        add_object_basics(root);
        let props = root.properties.get_or_insert_with(BTreeMap::new);
        if let Some(spec) = props.get_mut("spec") {
            spec.x_kubernetes_preserve_unknown_fields = Some(true);
            spec.nullable = None;
        } else {
            props.insert("spec".into(), open_object());
        }
        if status {
            props.entry("status".into()).or_insert_with(open_object);
        }
    }
    crd
}

/// The CRD of an open kind.
pub(crate) fn open_crd(k: &OpenKind) -> CustomResourceDefinition {
    let mut root = typed("object");
    add_object_basics(&mut root);
    let props = root.properties.get_or_insert_with(BTreeMap::new);
    props.insert("spec".into(), open_object());
    if k.status {
        props.insert("status".into(), open_object());
    }
    let mut metadata = super::meta(&format!("{}.{}", k.plural, k.group), None, &[]);
    if !k.annotations.is_empty() {
        metadata.annotations = Some(
            k.annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    CustomResourceDefinition {
        metadata,
        spec: CustomResourceDefinitionSpec {
            group: k.group.to_string(),
            names: CustomResourceDefinitionNames {
                kind: k.kind.to_string(),
                list_kind: Some(format!("{}List", k.kind)),
                plural: k.plural.to_string(),
                singular: Some(k.kind.to_lowercase()),
                ..CustomResourceDefinitionNames::default()
            },
            scope: k.scope.as_str().to_string(),
            versions: vec![CustomResourceDefinitionVersion {
                name: k.version.to_string(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(root),
                }),
                subresources: k.status_subresource.then(|| CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
                    ..CustomResourceSubresources::default()
                }),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// Every CRD, sorted by name (deterministic apply order).
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut out = vec![
        open_typed(BGPConfiguration::crd(), false),
        open_typed(BGPPeer::crd(), false),
        open_typed(IPAMBlock::crd(), false),
        open_typed(IPPool::crd(), false),
    ];
    out.extend(OPEN_KINDS.iter().map(open_crd));
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// What the apply layer does with one CRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrdPlan {
    /// Absent from the cluster: create it.
    Create,
    /// Present and serving the version Calico uses: leave it exactly as it is (never
    /// update, downgrade or clobber what another installer, or a newer Calico, put there).
    Keep,
    /// Present but not serving the version Calico uses: leave it alone too, and report
    /// this operator-facing cause (a `waiting`/`blocked` reason).
    Unusable(String),
}

/// Decide what to do with `desired` given the cluster's CRD of the same name, if any
/// (pure). The charm only ever creates CRDs.
pub fn plan_crd(
    desired: &CustomResourceDefinition,
    existing: Option<&CustomResourceDefinition>,
) -> CrdPlan {
    let Some(existing) = existing else {
        return CrdPlan::Create;
    };
    let name = desired.metadata.name.as_deref().unwrap_or_default();
    let missing: Vec<&str> = desired
        .spec
        .versions
        .iter()
        .filter(|want| {
            !existing
                .spec
                .versions
                .iter()
                .any(|have| have.name == want.name && have.served)
        })
        .map(|v| v.name.as_str())
        .collect();
    if missing.is_empty() {
        CrdPlan::Keep
    } else {
        CrdPlan::Unusable(format!("CRD {name} does not serve {}", missing.join(", ")))
    }
}
