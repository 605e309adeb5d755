//! Request routing and the Kubernetes REST verbs, executed synchronously against the store.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::fields::{self, Manager};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{self, ResourceType, Store, status};

/// A response: status code, JSON body, extra headers and the warnings sent.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub content_type: &'static str,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(code: u16, body: Value) -> Self {
        Reply {
            code,
            body,
            content_type: "application/json",
            warnings: Vec::new(),
        }
    }
}

/// An error answered with a `Status` body.
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: json!({}),
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn into_reply(self) -> Reply {
        Reply::ok(
            self.code,
            status(self.code, self.reason, &self.message, self.details),
        )
    }

    fn page_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", msg)
    }

    fn not_found(t: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", t.qualified()),
        )
        .with_details(json!({"name": name, "group": t.group, "kind": t.plural}))
    }

    fn conflict(t: &ResourceType, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                t.qualified()
            ),
        )
        .with_details(json!({"name": name, "group": t.group, "kind": t.plural}))
    }

    fn invalid(t: &ResourceType, name: &str, errs: &[String]) -> Self {
        let joined = if errs.len() == 1 {
            errs.join("")
        } else {
            format!("[{}]", errs.join(", "))
        };
        let causes: Vec<Value> = errs
            .iter()
            .map(|e| {
                let field = e.split(':').next().unwrap_or_default();
                json!({"reason": "FieldValueInvalid", "message": e, "field": field})
            })
            .collect();
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {joined}", t.qualified_kind()),
        )
        .with_details(json!({"name": name, "group": t.group, "kind": t.kind, "causes": causes}))
    }
}

type Res<T> = Result<T, ApiError>;

/// What the authenticated caller may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Everything.
    Full,
    /// get and list only; writes get 403.
    ReadOnly,
    /// Every request gets 403.
    Deny,
}

/// An incoming request, already read.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub content_type: &'a str,
    pub accept: &'a str,
    pub user_agent: &'a str,
    pub body: &'a [u8],
    pub user: &'a str,
    pub access: Access,
    pub server_address: &'a str,
}

/// Percent-decode a query component.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

enum Route {
    Root,
    Version,
    Api,
    Apis,
    Group(String),
    GroupVersion(String, String),
    Resource {
        group: String,
        version: String,
        plural: String,
        ns: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        [""] => return Some(Route::Root),
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::Api),
        ["apis"] => return Some(Route::Apis),
        ["api", v] => return Some(Route::GroupVersion(String::new(), v.to_string())),
        ["apis", g] => return Some(Route::Group(g.to_string())),
        ["apis", g, v] => return Some(Route::GroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return None,
    };
    let s = |x: &&str| Some(x.to_string());
    let (plural, ns, name, sub) = match rest {
        [p] => (p, None, None, None),
        [p, n] => (p, None, s(n), None),
        // /api/v1/namespaces/<ns>/<plural>, unless it is a namespace's subresource.
        ["namespaces", ns, p] if *p != "status" && *p != "finalize" => (p, s(ns), None, None),
        [p, n, sub] => (p, None, s(n), s(sub)),
        ["namespaces", ns, p, n] => (p, s(ns), s(n), None),
        ["namespaces", ns, p, n, sub] => (p, s(ns), s(n), s(sub)),
        _ => return None,
    };
    Some(Route::Resource {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        ns,
        name,
        sub,
    })
}

const VERBS_NS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn api_resource(t: &ResourceType) -> Value {
    let mut r = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": VERBS_NS,
    });
    if !t.short_names.is_empty()
        && let Some(m) = r.as_object_mut()
    {
        m.insert("shortNames".into(), json!(t.short_names));
    }
    r
}

fn wants_aggregated(accept: &str) -> bool {
    accept.contains("as=APIGroupDiscoveryList")
}

fn aggregated(types: &[&ResourceType], groups: &[(String, Vec<String>)]) -> Value {
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| &t.group == g && &t.version == v)
                        .map(|t| {
                            json!({
                                "resource": t.plural,
                                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular,
                                "verbs": VERBS_NS,
                                "shortNames": t.short_names,
                            })
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": vs})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// Non-core groups and their versions, in a stable order.
fn groups_of(store: &Store) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in store.types().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn group_json(g: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": vs, "preferredVersion": vs.first()})
}

/// Handle one request against the store (the caller holds the lock).
pub fn handle(store: &mut Store, req: &Request) -> Reply {
    match handle_inner(store, req) {
        Ok(r) => r,
        Err(e) => e.into_reply(),
    }
}

fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

fn handle_inner(store: &mut Store, req: &Request) -> Res<Reply> {
    let Some(r) = route(req.path) else {
        return Err(ApiError::page_not_found());
    };
    if req.access == Access::Deny || (req.access == Access::ReadOnly && is_write(req.method)) {
        return Err(forbidden(req, &r));
    }
    let get_only = |r: Reply| {
        if req.method == "GET" {
            Ok(r)
        } else {
            Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    match r {
        Route::Root => get_only(Reply::ok(
            200,
            json!({"paths": ["/api", "/api/v1", "/apis", "/version"]}),
        )),
        Route::Version => get_only(Reply::ok(
            200,
            json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-calico-charm-test",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
                "platform": "linux/amd64"
            }),
        )),
        Route::Api => {
            if wants_aggregated(req.accept) {
                let types: Vec<&ResourceType> = store.types().collect();
                let mut r = Reply::ok(
                    200,
                    aggregated(&types, &[(String::new(), vec!["v1".into()])]),
                );
                r.content_type =
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
                return get_only(r);
            }
            get_only(Reply::ok(
                200,
                json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": req.server_address}
                    ],
                }),
            ))
        }
        Route::Apis => {
            let groups = groups_of(store);
            if wants_aggregated(req.accept) {
                let types: Vec<&ResourceType> = store.types().collect();
                let mut r = Reply::ok(200, aggregated(&types, &groups));
                r.content_type =
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
                return get_only(r);
            }
            let gs: Vec<Value> = groups.iter().map(|(g, vs)| group_json(g, vs)).collect();
            get_only(Reply::ok(
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}),
            ))
        }
        Route::Group(g) => {
            let groups = groups_of(store);
            let (_, vs) = groups
                .iter()
                .find(|(name, _)| *name == g)
                .ok_or_else(ApiError::page_not_found)?;
            let mut body = group_json(&g, vs);
            if let Some(m) = body.as_object_mut() {
                m.insert("kind".into(), json!("APIGroup"));
                m.insert("apiVersion".into(), json!("v1"));
            }
            get_only(Reply::ok(200, body))
        }
        Route::GroupVersion(g, v) => {
            let resources: Vec<Value> = store
                .types()
                .filter(|t| t.group == g && t.version == v)
                .map(api_resource)
                .collect();
            if resources.is_empty() {
                return Err(ApiError::page_not_found());
            }
            let gv = if g.is_empty() { v } else { format!("{g}/{v}") };
            get_only(Reply::ok(
                200,
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
            ))
        }
        Route::Resource {
            group,
            version,
            plural,
            ns,
            name,
            sub,
        } => {
            let t = store
                .find_type(&group, &version, &plural)
                .ok_or_else(ApiError::page_not_found)?;
            let status_sub = match sub.as_deref() {
                None => false,
                Some("status") if t.status_subresource && name.is_some() => true,
                Some(_) => return Err(ApiError::page_not_found()),
            };
            // Namespaced types need a namespace except for listing across namespaces;
            // cluster-scoped types never take one.
            let all_namespaces = name.is_none() && req.method == "GET";
            if (!t.namespaced && ns.is_some()) || (t.namespaced && ns.is_none() && !all_namespaces)
            {
                return Err(ApiError::page_not_found());
            }
            let q = parse_query(req.query);
            let ns = ns.unwrap_or_default();
            match (req.method, name) {
                ("GET", None) => list(store, &t, &ns, &q).map(|r| as_metadata(r, req.accept)),
                ("POST", None) => create(store, &t, &ns, &q, req),
                ("DELETE", None) => delete_collection(store, &t, &ns, &q),
                ("GET", Some(n)) => store
                    .get(&t, &ns, &n)
                    .map(|o| as_metadata(Reply::ok(200, served(&t, o)), req.accept))
                    .ok_or_else(|| ApiError::not_found(&t, &n)),
                ("PUT" | "PATCH", Some(n)) if status_sub => write_status(store, &t, &ns, &n, req),
                ("PUT", Some(n)) => replace(store, &t, &ns, &n, &q, req),
                ("PATCH", Some(n)) => patch(store, &t, &ns, &n, &q, req),
                ("DELETE", Some(n)) => delete(store, &t, &ns, &n, &q, req),
                _ => Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                )),
            }
        }
    }
}

fn forbidden(req: &Request, r: &Route) -> ApiError {
    let verb = match req.method {
        "GET" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "access",
    };
    let msg = match r {
        Route::Resource {
            group,
            plural,
            ns,
            name,
            ..
        } => {
            let what = if group.is_empty() {
                plural.clone()
            } else {
                format!("{plural}.{group}")
            };
            let scope = match ns {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            let verb = if name.is_none() && verb == "get" {
                "list"
            } else {
                verb
            };
            format!(
                "{what}{} is forbidden: User \"{}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}",
                name.as_ref()
                    .map(|n| format!(" \"{n}\""))
                    .unwrap_or_default(),
                req.user
            )
        }
        _ => format!(
            "forbidden: User \"{}\" cannot {verb} path \"{}\"",
            req.user, req.path
        ),
    };
    ApiError::new(403, "Forbidden", msg)
}

/// An object as served at a version (multi-version CRDs share one stored object).
fn served(t: &ResourceType, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(t.api_version()));
    }
    o
}

fn list(store: &Store, t: &ResourceType, ns: &str, q: &HashMap<String, String>) -> Res<Reply> {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "watch is not supported by the test API server",
        ));
    }
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let scope = if ns.is_empty() { None } else { Some(ns) };
    let items: Vec<Value> = store
        .list(t, scope)
        .filter(|o| labels.matches(o) && fields.matches(o))
        .map(|o| served(t, o))
        .collect();
    Ok(Reply::ok(
        200,
        json!({
            "kind": format!("{}List", t.kind),
            "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": store.resource_version.to_string()},
            "items": items,
        }),
    ))
}

fn parse_body(req: &Request) -> Res<Value> {
    let v: Value = serde_json::from_slice(req.body)
        .or_else(|_| {
            std::str::from_utf8(req.body)
                .map_err(|e| e.to_string())
                .and_then(|s| serde_yaml::from_str::<Value>(s).map_err(|e| e.to_string()))
        })
        .map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON or YAML: {e}"))
        })?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(v)
}

/// The field manager of a non-apply write: `fieldManager`, else the user agent's first word.
fn update_manager(q: &HashMap<String, String>, req: &Request) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    let ua = req.user_agent.split('/').next().unwrap_or_default();
    if ua.is_empty() {
        "unknown".into()
    } else {
        ua.to_string()
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// Check `apiVersion`/`kind` of a body against the type (filling them in when absent).
fn check_type_meta(t: &ResourceType, obj: &mut Value) -> Res<()> {
    let av = t.api_version();
    match str_at(obj, "/apiVersion") {
        None => {}
        Some(v) if v == av => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({av})"
            )));
        }
    }
    match str_at(obj, "/kind") {
        None => {}
        Some(k) if k == t.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                t.kind
            )));
        }
    }
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(av));
        m.insert("kind".into(), Value::String(t.kind.clone()));
        let meta = m
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
    }
    Ok(())
}

fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    obj.get_mut("metadata").and_then(Value::as_object_mut)
}

/// Validate the name of a new object.
fn validate_name(t: &ResourceType, name: &str, obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let bad = |why: &str| format!("metadata.name: Invalid value: \"{name}\": {why}");
    if t.kind == "Namespace" {
        if !store::is_dns1123_label(name) {
            errs.push(bad("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
        }
    } else if t.group == "rbac.authorization.k8s.io" {
        if name == "." || name == ".." || name.contains('/') || name.contains('%') {
            errs.push(bad("may not contain '/' or '%' and may not be '.' or '..'"));
        }
    } else if !store::is_dns1123_subdomain(name) {
        errs.push(bad("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"));
    }
    if t.kind == "CustomResourceDefinition" {
        errs.extend(validate_crd(name, obj));
    }
    errs
}

fn validate_crd(name: &str, obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let group = str_at(obj, "/spec/group").unwrap_or_default();
    let plural = str_at(obj, "/spec/names/plural").unwrap_or_default();
    let kind = str_at(obj, "/spec/names/kind").unwrap_or_default();
    if group.is_empty() {
        errs.push("spec.group: Required value".into());
    }
    if plural.is_empty() {
        errs.push("spec.names.plural: Required value".into());
    }
    if kind.is_empty() {
        errs.push("spec.names.kind: Required value".into());
    }
    if !matches!(str_at(obj, "/spec/scope"), Some("Cluster" | "Namespaced")) {
        errs.push("spec.scope: Unsupported value: must be Cluster or Namespaced".into());
    }
    let versions = obj.pointer("/spec/versions").and_then(Value::as_array);
    if versions.is_none_or(|v| v.is_empty()) {
        errs.push(
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .into(),
        );
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        ));
    }
    errs
}

/// How managed fields are recorded for a write.
enum Managed {
    Update(String),
    Apply(Vec<Manager>),
}

fn strip_times(mut v: Value) -> Value {
    if let Some(list) = v
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in list {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

/// Common tail of every write: server-set metadata, schema pruning/defaulting/validation,
/// generation, managed fields, no-op detection, resourceVersion, storage.
#[allow(clippy::too_many_arguments)]
fn commit(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    old: Option<&Value>,
    mut obj: Value,
    managed: Managed,
    q: &HashMap<String, String>,
) -> Res<(Value, bool, Vec<String>)> {
    let now = store::now_rfc3339();
    // Server-set metadata.
    if let Some(meta) = meta_mut(&mut obj) {
        meta.insert("name".into(), Value::String(name.into()));
        if t.namespaced {
            meta.insert("namespace".into(), Value::String(ns.into()));
        } else {
            meta.remove("namespace");
        }
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old.and_then(|o| o.pointer(&format!("/metadata/{k}"))) {
                Some(v) => {
                    meta.insert(k.into(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
    }
    if t.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        match old.and_then(|o| o.get("status")) {
            Some(s) => {
                m.insert("status".into(), s.clone());
            }
            None => {
                m.remove("status");
            }
        }
    }
    // Validation.
    let mut warnings = Vec::new();
    let mut errs = if old.is_none() {
        validate_name(t, name, &obj)
    } else if t.kind == "CustomResourceDefinition" {
        validate_crd(name, &obj)
    } else {
        Vec::new()
    };
    if let Some(schema) = &t.schema {
        let strict = q.get("fieldValidation").is_some_and(|v| v == "Strict");
        let result = match old {
            Some(o) => schema.validate_update(o, &obj),
            None => schema.validate(&obj),
        };
        for e in result.err().unwrap_or_default() {
            if !strict && e.contains("unknown field") {
                warnings.push(e);
            } else if !errs.contains(&e) {
                errs.push(e);
            }
        }
        if errs.is_empty() {
            schema.prune(&mut obj);
            schema.apply_defaults(&mut obj);
        }
    } else if t.custom && obj.get("spec").is_some_and(|s| !s.is_object()) {
        errs.push("spec: Invalid value: must be an object".into());
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(t, name, &errs));
    }
    if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
        crd_status(&mut obj);
    }
    // Generation.
    if t.has_generation {
        let gen_ = match old {
            None => 1,
            Some(o) => {
                let g = o
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if spec_changed(o, &obj) { g + 1 } else { g }
            }
        };
        if let Some(meta) = meta_mut(&mut obj) {
            meta.insert("generation".into(), json!(gen_));
        }
    }
    // Managed fields.
    let managers = match managed {
        Managed::Apply(m) => m,
        Managed::Update(manager) => {
            fields::record_update(old, &obj, &manager, t.status_subresource, &now)
        }
    };
    fields::set_managers(&mut obj, &managers);
    if let Some(o) = old
        && strip_times(o.clone()) == strip_times(obj.clone())
    {
        return Ok((o.clone(), false, warnings));
    }
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    if dry_run {
        return Ok((obj, old.is_none(), warnings));
    }
    let rv = store.next_rv();
    let uid = if old.is_none() {
        Some(store.new_uid())
    } else {
        None
    };
    if let Some(meta) = meta_mut(&mut obj) {
        meta.insert("resourceVersion".into(), Value::String(rv));
        if let Some(uid) = uid {
            meta.insert("uid".into(), Value::String(uid));
            meta.insert("creationTimestamp".into(), Value::String(now));
        }
    }
    // A deleted object whose last finalizer is gone disappears.
    let finalized = obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    if finalized {
        store.remove(t, ns, name);
        after_delete(store, t, ns, name);
    } else {
        store.put(t, ns, name, obj.clone());
        if t.kind == "CustomResourceDefinition" {
            store.register_crd(name, Some(&obj));
        }
    }
    Ok((obj, old.is_none(), warnings))
}

fn after_delete(store: &mut Store, t: &ResourceType, _ns: &str, name: &str) {
    if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
        store.register_crd(name, None);
    } else if t.kind == "Namespace" && t.group.is_empty() {
        store.purge_namespace(name);
    }
}

fn reply(code: u16, t: &ResourceType, obj: &Value, warnings: Vec<String>) -> Reply {
    let mut r = Reply::ok(code, served(t, obj));
    r.warnings = warnings;
    r
}

fn require_namespace(store: &Store, t: &ResourceType, ns: &str) -> Res<()> {
    if !t.namespaced {
        return Ok(());
    }
    let nst = store
        .find_type("", "v1", "namespaces")
        .ok_or_else(ApiError::page_not_found)?;
    if store.get(&nst, "", ns).is_none() {
        return Err(ApiError::not_found(&nst, ns));
    }
    Ok(())
}

fn check_namespace_in_body(t: &ResourceType, obj: &Value, ns: &str) -> Res<()> {
    if t.namespaced
        && let Some(n) = str_at(obj, "/metadata/namespace")
        && !n.is_empty()
        && n != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn create(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    q: &HashMap<String, String>,
    req: &Request,
) -> Res<Reply> {
    let mut obj = parse_body(req)?;
    check_type_meta(t, &mut obj)?;
    check_namespace_in_body(t, &obj, ns)?;
    let mut name = str_at(&obj, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        let prefix = str_at(&obj, "/metadata/generateName").unwrap_or_default();
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                t,
                "",
                &["metadata.name: Required value: name or generateName is required".into()],
            ));
        }
        let n = store.uid_counter.wrapping_mul(2_654_435_761) % 60_466_176;
        name = format!("{prefix}{}", base36(n, 5));
    }
    require_namespace(store, t, ns)?;
    if store.get(t, ns, &name).is_some() {
        return Err(ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.qualified()),
        )
        .with_details(json!({"name": name, "group": t.group, "kind": t.plural})));
    }
    if let Some(meta) = meta_mut(&mut obj) {
        meta.remove("managedFields");
    }
    let manager = update_manager(q, req);
    let (obj, _, warnings) = commit(store, t, ns, &name, None, obj, Managed::Update(manager), q)?;
    Ok(reply(201, t, &obj, warnings))
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut s = String::new();
    for _ in 0..width {
        let d = DIGITS
            .get((n % DIGITS.len() as u64) as usize)
            .copied()
            .unwrap_or(b'x');
        s.push(d as char);
        n /= DIGITS.len() as u64;
    }
    s
}

fn check_rv(t: &ResourceType, name: &str, live: &Value, given: Option<&str>) -> Res<()> {
    if let Some(rv) = given.filter(|r| !r.is_empty())
        && Some(rv) != str_at(live, "/metadata/resourceVersion")
    {
        return Err(ApiError::conflict(
            t,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Ok(())
}

fn replace(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    req: &Request,
) -> Res<Reply> {
    let mut obj = parse_body(req)?;
    check_type_meta(t, &mut obj)?;
    check_namespace_in_body(t, &obj, ns)?;
    let body_name = str_at(&obj, "/metadata/name").unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let live = store
        .get(t, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(t, name))?;
    let given = str_at(&obj, "/metadata/resourceVersion").map(str::to_string);
    if given.as_deref().is_none_or(str::is_empty) && t.custom {
        return Err(ApiError::invalid(
            t,
            name,
            &[
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                    .into(),
            ],
        ));
    }
    check_rv(t, name, &live, given.as_deref())?;
    commit_update(store, t, ns, name, &live, obj, q, req)
}

/// Commit a non-apply write (replace or patch) of an existing object as the request's field
/// manager. managedFields the client sent are ignored: the server recomputes them from live.
#[allow(clippy::too_many_arguments)]
fn commit_update(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    live: &Value,
    mut obj: Value,
    q: &HashMap<String, String>,
    req: &Request,
) -> Res<Reply> {
    if let Some(meta) = meta_mut(&mut obj) {
        match live.pointer("/metadata/managedFields") {
            Some(m) => meta.insert("managedFields".into(), m.clone()),
            None => meta.remove("managedFields"),
        };
    }
    let manager = update_manager(q, req);
    let (obj, _, warnings) = commit(
        store,
        t,
        ns,
        name,
        Some(live),
        obj,
        Managed::Update(manager),
        q,
    )?;
    Ok(reply(200, t, &obj, warnings))
}

fn patch(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    req: &Request,
) -> Res<Reply> {
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let live = store.get(t, ns, name).cloned();
    match ct {
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            apply(store, t, ns, name, live, q, req)
        }
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => {
            if ct == "application/strategic-merge-patch+json" && t.custom {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            let live = live.ok_or_else(|| ApiError::not_found(t, name))?;
            let body: Value = serde_json::from_slice(req.body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            })?;
            let mut obj = live.clone();
            if ct == "application/json-patch+json" {
                fields::json_patch(&mut obj, &body)
                    .map_err(|e| ApiError::new(422, "Invalid", e))?;
            } else {
                if !body.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                check_rv(t, name, &live, str_at(&body, "/metadata/resourceVersion"))?;
                fields::merge_patch(&mut obj, &body);
            }
            if !obj.is_object() {
                return Err(ApiError::bad_request("the patched object is not an object"));
            }
            check_type_meta(t, &mut obj)?;
            commit_update(store, t, ns, name, &live, obj, q, req)
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            ),
        )),
    }
}

fn apply(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    live: Option<Value>,
    q: &HashMap<String, String>,
    req: &Request,
) -> Res<Reply> {
    let manager = q
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("PATCH requests with apply content type require fieldManager")
        })?
        .clone();
    let force = q.get("force").is_some_and(|f| f == "true");
    let applied = parse_body(req)?;
    if str_at(&applied, "/apiVersion").is_none() || str_at(&applied, "/kind").is_none() {
        return Err(ApiError::bad_request(
            "apiVersion and kind are required in an apply configuration",
        ));
    }
    let mut applied = applied;
    check_type_meta(t, &mut applied)?;
    check_namespace_in_body(t, &applied, ns)?;
    let body_name = str_at(&applied, "/metadata/name").unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(l) = &live {
        check_rv(t, name, l, str_at(&applied, "/metadata/resourceVersion"))?;
    } else {
        require_namespace(store, t, ns)?;
    }
    if let Some(meta) = meta_mut(&mut applied) {
        meta.remove("managedFields");
    }
    let now = store::now_rfc3339();
    let result = fields::server_side_apply(
        live.as_ref(),
        &applied,
        &manager,
        force,
        t.status_subresource,
        &now,
    );
    let out = match result {
        Ok(out) => out,
        Err(conflicts) => {
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                        "field": fields::display(&c.path),
                    })
                })
                .collect();
            let msg = conflict_message(&conflicts);
            return Err(ApiError::new(409, "Conflict", msg).with_details(
                json!({"name": name, "group": t.group, "kind": t.plural, "causes": causes}),
            ));
        }
    };
    let (obj, created, warnings) = commit(
        store,
        t,
        ns,
        name,
        live.as_ref(),
        out.object,
        Managed::Apply(out.managers),
        q,
    )?;
    Ok(reply(if created { 201 } else { 200 }, t, &obj, warnings))
}

fn delete(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    q: &HashMap<String, String>,
    req: &Request,
) -> Res<Reply> {
    let live = store
        .get(t, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(t, name))?;
    let opts: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    if let Some(uid) = str_at(&opts, "/preconditions/uid")
        && Some(uid) != str_at(&live, "/metadata/uid")
    {
        return Err(ApiError::conflict(
            t,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                str_at(&live, "/metadata/uid").unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = str_at(&opts, "/preconditions/resourceVersion")
        && Some(rv) != str_at(&live, "/metadata/resourceVersion")
    {
        return Err(ApiError::conflict(
            t,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                str_at(&live, "/metadata/resourceVersion").unwrap_or_default()
            ),
        ));
    }
    if q.get("dryRun").is_some_and(|v| v == "All") {
        return Ok(reply(200, t, &live, Vec::new()));
    }
    let has_finalizers = live
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        let mut obj = live.clone();
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            let rv = store.next_rv();
            if let Some(meta) = meta_mut(&mut obj) {
                meta.insert(
                    "deletionTimestamp".into(),
                    Value::String(store::now_rfc3339()),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                meta.insert("resourceVersion".into(), Value::String(rv));
            }
            store.put(t, ns, name, obj.clone());
        }
        return Ok(reply(200, t, &obj, Vec::new()));
    }
    store.remove(t, ns, name);
    store.next_rv();
    after_delete(store, t, ns, name);
    Ok(reply(200, t, &live, Vec::new()))
}

fn delete_collection(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    q: &HashMap<String, String>,
) -> Res<Reply> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let scope = if ns.is_empty() { None } else { Some(ns) };
    let doomed: Vec<Value> = store
        .list(t, scope)
        .filter(|o| labels.matches(o) && fields.matches(o))
        .cloned()
        .collect();
    for o in &doomed {
        let n = str_at(o, "/metadata/name").unwrap_or_default();
        let ons = str_at(o, "/metadata/namespace").unwrap_or_default();
        store.remove(t, ons, n);
        after_delete(store, t, ons, n);
    }
    if !doomed.is_empty() {
        store.next_rv();
    }
    Ok(Reply::ok(
        200,
        json!({
            "kind": format!("{}List", t.kind),
            "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": store.resource_version.to_string()},
            "items": doomed.iter().map(|o| served(t, o)).collect::<Vec<_>>(),
        }),
    ))
}

/// PUT or PATCH on the `status` subresource: only `status` changes (no managed fields, no
/// generation). An apply there merges the applied `status` like a merge patch.
fn write_status(
    store: &mut Store,
    t: &ResourceType,
    ns: &str,
    name: &str,
    req: &Request,
) -> Res<Reply> {
    let live = store
        .get(t, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(t, name))?;
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let candidate = if req.method == "PUT" {
        let body = parse_body(req)?;
        check_rv(t, name, &live, str_at(&body, "/metadata/resourceVersion"))?;
        body
    } else {
        let mut obj = live.clone();
        match ct {
            "application/json-patch+json" => {
                let body: Value = serde_json::from_slice(req.body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
                fields::json_patch(&mut obj, &body)
                    .map_err(|e| ApiError::new(422, "Invalid", e))?;
            }
            "application/apply-patch+yaml" => {
                let body = parse_body(req)?;
                let status = body.get("status").cloned().unwrap_or(Value::Null);
                fields::merge_patch(&mut obj, &json!({ "status": status }));
            }
            _ => {
                let body = parse_body(req)?;
                check_rv(t, name, &live, str_at(&body, "/metadata/resourceVersion"))?;
                fields::merge_patch(&mut obj, &body);
            }
        }
        obj
    };
    let mut obj = live.clone();
    if let Some(m) = obj.as_object_mut() {
        match candidate.get("status") {
            Some(st) if !st.is_null() => {
                m.insert("status".into(), st.clone());
            }
            _ => {
                m.remove("status");
            }
        }
    }
    if obj == live {
        return Ok(reply(200, t, &live, Vec::new()));
    }
    let rv = store.next_rv();
    if let Some(meta) = meta_mut(&mut obj) {
        meta.insert("resourceVersion".into(), Value::String(rv));
    }
    store.put(t, ns, name, obj.clone());
    Ok(reply(200, t, &obj, Vec::new()))
}

/// Answer `PartialObjectMetadata(List)` when the client asks for it in `Accept`.
fn as_metadata(mut r: Reply, accept: &str) -> Reply {
    if !accept.contains("as=PartialObjectMetadata") {
        return r;
    }
    let partial = |o: &Value| {
        json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })
    };
    if let Some(items) = r.body.get("items").and_then(Value::as_array) {
        let items: Vec<Value> = items.iter().map(partial).collect();
        r.body = json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": r.body.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "items": items,
        });
        r.content_type = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    } else {
        r.body = partial(&r.body);
        r.content_type = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    }
    r
}

/// The API server's wording: `Apply failed with 1 conflict: conflict with "m" using v1: .a`,
/// or for several, one block per manager: `conflicts with "m" using v1:\n- .a\n- .b`.
fn conflict_message(conflicts: &[fields::Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            c.manager,
            c.api_version,
            fields::display(&c.path)
        );
    }
    let mut by_manager: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for c in conflicts {
        let p = fields::display(&c.path);
        match by_manager.iter_mut().find(|(m, _, _)| *m == c.manager) {
            Some((_, _, paths)) => paths.push(p),
            None => by_manager.push((&c.manager, &c.api_version, vec![p])),
        }
    }
    let blocks: Vec<String> = by_manager
        .iter()
        .map(|(m, v, paths)| {
            let word = if paths.len() == 1 {
                "conflict"
            } else {
                "conflicts"
            };
            let list: Vec<String> = paths.iter().map(|p| format!("- {p}")).collect();
            format!("{word} with \"{m}\" using {v}:\n{}", list.join("\n"))
        })
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        blocks.join("\n")
    )
}

/// Give a CRD the status of an accepted, established one (kept if already so).
pub fn crd_status(crd: &mut Value) {
    let names = crd
        .pointer("/spec/names")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    if let Some(old) = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
    {
        for v in old {
            if !stored.contains(v) {
                stored.insert(0, v.clone());
            }
        }
    }
    let established = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    let conditions = if established {
        crd.pointer("/status/conditions")
            .cloned()
            .unwrap_or_default()
    } else {
        let now = store::now_rfc3339();
        json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ])
    };
    if let Some(m) = crd.as_object_mut() {
        m.insert(
            "status".into(),
            json!({"conditions": conditions, "acceptedNames": names, "storedVersions": stored}),
        );
    }
}
