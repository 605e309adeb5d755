//! End to end: the packed charm run as Juju runs it (charm/dispatch, a clean environment, the
//! hook-tool emulator on PATH) against the in-process test Kubernetes API server
//! (`KUBECONFIG`), asserting what lands in the server's store and what the unit told Juju.
//!
//! Every unit has its own node (`NODENAME`), bind address (`network-get cni`), CNI dir
//! (`CALICO_CHARM_CNI_DIR`), and fast retry settings (`CALICO_CHARM_API_BUDGET_SECS`,
//! `CALICO_CHARM_API_BASE_DELAY_MS`, `CALICO_CHARM_POOL_SETTLE_MS`) so that faults are quick
//! to run into. The expected objects are what `calico-charm render` prints for the same
//! options and unit (checked equal to the library's `render::desired(..).objects()`), plus
//! facts checked by hand against the seed's examples in `tests/golden/`.

mod juju_harness;

use juju_harness::assert_ok;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use calico_charm::calico::{
    AS_NUMBER_ANNOTATION, BGPPeer, BGPPeerSpec, MANAGED_BY, MANAGED_BY_LABEL, NODE_ANNOTATIONS,
    RR_CLUSTER_ID_ANNOTATION, UNIT_LABEL,
};
use juju_harness::{HookRun, PreparedHook, Unit};
use serde_json::{Map, Value, json};
use support::apiserver::{Fault, FaultAction, LogEntry, Options, TestApiServer};

const CALICO: &str = "crd.projectcalico.org/v1";
const BINARY: &str = env!("CARGO_BIN_EXE_calico-charm");
/// The retry budget every unit here gets (seconds): short, so that the fault tests that
/// spend it are quick, yet ample for a healthy hook on a loaded 2-core machine beside
/// another test.
const BUDGET_SECS: u64 = 5;
/// A calico-node image other than the default, to see it reach the DaemonSet.
const NODE_IMAGE: &str = "registry.example.com:5000/calico/node:v3.6.1";

type Opts = Map<String, Value>;

// ---- cluster and units ---------------------------------------------------------------------

/// A test API server with the Calico CRDs installed and no node yet.
fn server() -> Option<TestApiServer> {
    envtest!(Options::default())
}

/// Register `node` (with `annotations`) and a Running, Ready calico-node pod on it.
fn add_node(server: &TestApiServer, node: &str, annotations: Value) {
    server.add_ready_node(node, Some(annotations), NODE_IMAGE);
}

/// `network-get cni` answering with one interface holding `address` (in its /24).
fn network(address: &str) -> Value {
    let subnet = match address.rsplit_once('.') {
        Some((prefix, _)) => format!("{prefix}.0/24"),
        None => format!("{address}/128"),
    };
    json!({
        "bind-addresses": [{
            "mac-address": "00:16:3e:aa:bb:cc", "interface-name": "eth0",
            "addresses": [{"hostname": "", "value": address, "cidr": subnet}],
        }],
        "egress-subnets": [format!("{address}/32")],
        "ingress-addresses": [address],
    })
}

/// One calico unit on `node` with bind address `address`, related to its principal (which
/// published its kubeconfig-hash), talking to `server`, configured with `opts`.
struct TestUnit {
    unit: Unit,
    name: String,
    node: String,
    address: String,
    leader: bool,
}

impl TestUnit {
    fn new(
        server: &TestApiServer,
        name: &str,
        node: &str,
        address: &str,
        leader: bool,
        opts: &Opts,
    ) -> TestUnit {
        let mut unit = Unit::on_cluster(name, leader, node, |path| server.write_kubeconfig(path));
        unit.set_env("CALICO_CHARM_API_BUDGET_SECS", &BUDGET_SECS.to_string());
        unit.set_env("CALICO_CHARM_API_BASE_DELAY_MS", "20");
        unit.set_env("CALICO_CHARM_POOL_SETTLE_MS", "10");
        unit.set_network(Some(network(address)));
        let t = TestUnit {
            unit,
            name: name.to_string(),
            node: node.to_string(),
            address: address.to_string(),
            leader,
        };
        t.configure(opts);
        t
    }

    /// `juju config calico` with exactly `opts` set (every other option at its default).
    fn configure(&self, opts: &Opts) {
        for spec in calico_charm::config::options::specs().expect("config.yaml") {
            let value = opts
                .get(&spec.name)
                .cloned()
                .or_else(|| spec.default.clone())
                .unwrap_or(Value::Null);
            self.unit.set_config(&spec.name, value);
        }
    }

    fn hook(&self, hook: &str) -> HookRun {
        let run = self.unit.hook(hook);
        assert_ok(&self.unit, &run);
        run
    }

    fn status(&self) -> (String, String) {
        self.unit.status()
    }

    /// What `calico-charm render` prints for this unit with `opts`.
    fn rendered(&self, opts: &Opts) -> Vec<Value> {
        rendered(opts, &self.name, &self.address, &self.node, self.leader)
    }

    fn owner(&self) -> String {
        self.name.replace('/', "-")
    }

    fn cni_file(&self) -> PathBuf {
        self.unit.cni_dir().join("10-calico.conflist")
    }
}

/// A handled fault (retried, then `waiting`) is no ERROR in `juju debug-log`.
fn assert_no_error_logged(unit: &Unit) {
    let errors: Vec<String> = unit
        .logs()
        .into_iter()
        .filter(|l| l.level == "ERROR")
        .map(|l| format!("{}: {}", l.hook, l.message))
        .collect();
    assert_eq!(errors, Vec::<String>::new());
}

fn pair(status: &str, message: &str) -> (String, String) {
    (status.to_string(), message.to_string())
}

/// The options of a seed example in `tests/golden/<name>.yaml`, plus the test image.
fn golden(name: &str) -> Opts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.yaml"));
    let text = fs::read_to_string(&path).expect("read golden options");
    let mut opts: Opts = serde_yaml::from_str(&text).expect("golden options");
    opts.insert("calico-node-image".into(), json!(NODE_IMAGE));
    opts
}

/// Run hooks concurrently, at most `parallel` at a time; results in the order given.
fn run_all(jobs: Vec<PreparedHook>, parallel: usize) -> Vec<HookRun> {
    let queue = Mutex::new(jobs.into_iter().enumerate().rev().collect::<Vec<_>>());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel {
            scope.spawn(|| {
                loop {
                    let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    let Some((i, job)) = job else { break };
                    let run = job.run();
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, run));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, run)| run).collect()
}

// ---- what the charm should have applied ----------------------------------------------------

/// What `calico-charm render` prints (as JSON) for `opts` and this unit, checked equal to the
/// library's `render::desired(..).objects()` for the same config and facts.
fn rendered(opts: &Opts, unit: &str, address: &str, node: &str, leader: bool) -> Vec<Value> {
    let library = desired_objects(opts, unit, address, node, leader);
    let text = serde_yaml::to_string(&Value::Object(opts.clone())).expect("options yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("options.yaml");
    fs::write(&file, &text).expect("write options");
    let mut cmd = Command::new(BINARY);
    cmd.args(["render", "--format", "json", "--config"])
        .arg(&file)
        .args(["--unit", unit, "--address", address, "--node-name", node]);
    if leader {
        cmd.arg("--leader");
    }
    let out = cmd.output().expect("run calico-charm render");
    assert!(
        out.status.success(),
        "render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("render json");
    let printed = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(printed, library, "render prints what render::desired holds");
    printed
}

/// The library's `render::desired(..).objects()` for `opts` (over config.yaml's defaults)
/// and this unit.
fn desired_objects(opts: &Opts, unit: &str, address: &str, node: &str, leader: bool) -> Vec<Value> {
    let text = serde_yaml::to_string(&Value::Object(opts.clone())).expect("options yaml");
    let merged = calico_charm::config::options::merge_user_file(&text).expect("options file");
    assert!(merged.errors.is_empty(), "{:?}", merged.errors);
    let config = calico_charm::config::validate(&merged.raw)
        .expect("valid options")
        .config;
    let address = address.parse().expect("address");
    let facts =
        calico_charm::unit::UnitFacts::new(unit, node, address, leader).expect("unit facts");
    calico_charm::render::desired(&config, &facts).objects()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn names(objects: &[&Value]) -> BTreeSet<String> {
    objects.iter().map(|o| name_of(o)).collect()
}

fn store_names(server: &TestApiServer, kind: &str) -> BTreeSet<String> {
    server
        .list(CALICO, kind, None)
        .iter()
        .map(name_of)
        .collect()
}

fn calico(server: &TestApiServer, kind: &str, name: &str) -> Value {
    server
        .get(CALICO, kind, None, name)
        .unwrap_or_else(|| panic!("{kind}/{name} is not in the store"))
}

/// The peers in the store labelled as `owner`'s.
fn owned_peers(server: &TestApiServer, owner: &str) -> Vec<Value> {
    server
        .list(CALICO, "BGPPeer", None)
        .into_iter()
        .filter(|p| p["metadata"]["labels"][UNIT_LABEL] == owner)
        .collect()
}

fn node_annotations(server: &TestApiServer, node: &str) -> BTreeMap<String, String> {
    let live = server.get("v1", "Node", None, node).expect("node");
    serde_json::from_value(live["metadata"]["annotations"].clone()).unwrap_or_default()
}

/// The default the upstream Calico CRD (`../shared/calico-crds`, read at run time) gives
/// `spec.<field>` of `kind`: the API server fills it in on every write, as Kubernetes does.
fn schema_default(kind: &str, field: &str) -> Option<Value> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../shared/calico-crds/crd.projectcalico.org_{}s.yaml",
        kind.to_ascii_lowercase()
    ));
    let crd: Value = serde_yaml::from_str(&fs::read_to_string(file).ok()?).ok()?;
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find_map(|v| {
            v.pointer(&format!(
                "/schema/openAPIV3Schema/properties/spec/properties/{field}/default"
            ))
        })
        .cloned()
}

/// `live`'s spec holds exactly `want`'s spec, plus the fields named in `others` (set by
/// someone else, e.g. an admin) if present, and fields the charm does not set holding the
/// upstream CRD schema's default for them.
fn assert_spec(what: &str, live: &Value, want: &Value, others: &[&str]) {
    let kind = live["kind"].as_str().unwrap_or_default();
    let mut spec = live["spec"].as_object().cloned().unwrap_or_default();
    spec.retain(|field, value| {
        let set_by_charm = want["spec"].get(field).is_some();
        set_by_charm
            || !(others.contains(&field.as_str())
                || schema_default(kind, field).as_ref() == Some(value))
    });
    assert_eq!(Value::Object(spec), want["spec"], "{what}: spec");
}

/// The store holds this unit's rendered objects exactly: its peers (no more, no fewer, spec
/// and labels equal) and its Node's Calico annotations; for the leader also the pools (every
/// pool in the store), the BGPConfiguration (apart from fields in `others`) and the
/// calico-node DaemonSet with the configured image.
fn assert_applied(server: &TestApiServer, unit: &TestUnit, want: &[Value], others: &[&str]) {
    assert_unit_objects(server, &unit.owner(), &unit.node, want);
    if unit.leader {
        let pools = of_kind(want, "IPPool");
        assert!(!pools.is_empty(), "the leader renders pools");
        assert_eq!(store_names(server, "IPPool"), names(&pools), "pools");
        for pool in &pools {
            let name = name_of(pool);
            let got = calico(server, "IPPool", &name);
            assert_spec(&format!("IPPool/{name}"), &got, pool, &[]);
            assert_eq!(got["metadata"]["labels"], pool["metadata"]["labels"]);
        }
        assert_global(server, want, others);
    }
}

/// The unit's own objects: its peers exactly, its Node's Calico annotations exactly.
fn assert_unit_objects(server: &TestApiServer, owner: &str, node: &str, want: &[Value]) {
    let peers = of_kind(want, "BGPPeer");
    let live = owned_peers(server, owner);
    let live_refs: Vec<&Value> = live.iter().collect();
    assert_eq!(names(&live_refs), names(&peers), "{owner}'s peers");
    for peer in &peers {
        let name = name_of(peer);
        let got = calico(server, "BGPPeer", &name);
        assert_spec(&format!("BGPPeer/{name}"), &got, peer, &[]);
        assert_eq!(
            got["metadata"]["labels"], peer["metadata"]["labels"],
            "BGPPeer/{name} labels"
        );
    }

    let rendered_node = of_kind(want, "Node");
    assert_eq!(rendered_node.len(), 1, "one Node rendered");
    let wanted: BTreeMap<String, String> =
        serde_json::from_value(rendered_node[0]["metadata"]["annotations"].clone())
            .unwrap_or_default();
    let got = node_annotations(server, node);
    for key in NODE_ANNOTATIONS {
        assert_eq!(got.get(key), wanted.get(key), "annotation {key} of {node}");
    }
}

/// The leader's global objects other than pools: the one BGPConfiguration (apart from
/// fields in `others`) and the workloads (calico-node with the configured image).
fn assert_global(server: &TestApiServer, want: &[Value], others: &[&str]) {
    let configs = of_kind(want, "BGPConfiguration");
    assert_eq!(configs.len(), 1);
    assert_eq!(
        store_names(server, "BGPConfiguration"),
        BTreeSet::from(["default".to_string()])
    );
    let got = calico(server, "BGPConfiguration", "default");
    assert_spec("BGPConfiguration/default", &got, configs[0], others);
    assert_eq!(got["metadata"]["labels"], configs[0]["metadata"]["labels"]);

    let ds = server
        .get("apps/v1", "DaemonSet", Some("kube-system"), "calico-node")
        .expect("DaemonSet calico-node");
    let containers = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let node = containers
        .iter()
        .find(|c| c["name"] == "calico-node")
        .expect("calico-node container");
    assert_eq!(node["image"], NODE_IMAGE);
    assert!(
        server
            .get(
                "apps/v1",
                "Deployment",
                Some("kube-system"),
                "calico-kube-controllers"
            )
            .is_some(),
        "Deployment calico-kube-controllers"
    );
}

fn writes(log: &[LogEntry]) -> Vec<String> {
    log.iter()
        .filter(|e| ["POST", "PUT", "PATCH", "DELETE"].contains(&e.method.as_str()))
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

/// An admin's own BGPPeer, created with a field manager of its own.
fn admin_peer(server: &TestApiServer, node: &str) {
    let peer = BGPPeer::new(
        "admin-tor",
        BGPPeerSpec {
            node: Some(node.to_string()),
            peer_ip: Some("10.9.9.9".into()),
            as_number: Some(65000),
            ..BGPPeerSpec::default()
        },
    );
    rt().block_on(async {
        let client = server.kube_client().await.expect("client");
        kube::Api::<BGPPeer>::all(client)
            .create(
                &kube::api::PostParams {
                    field_manager: Some("kubectl-create".into()),
                    ..Default::default()
                },
                &peer,
            )
            .await
            .expect("create admin peer");
    });
}

/// A merge patch by an admin (`kubectl edit`) on a cluster-scoped object.
fn admin_patch(server: &TestApiServer, api_version: &str, kind: &str, name: &str, patch: Value) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let resource = kube::api::ApiResource::from_gvk(&gvk);
    rt().block_on(async {
        let client = server.kube_client().await.expect("client");
        kube::Api::<kube::api::DynamicObject>::all_with(client, &resource)
            .patch(
                name,
                &kube::api::PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..Default::default()
                },
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect("admin patch");
    });
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- 1. objects appear exactly as rendered -------------------------------------------------

/// The seed's AS-per-rack example for the route reflector calico/0 (10.0.0.2, rack 0).
fn leader_unit(server: &TestApiServer) -> (TestUnit, Opts) {
    add_node(server, "node-0", json!({}));
    let opts = golden("as-per-rack");
    let unit = TestUnit::new(server, "calico/0", "node-0", "10.0.0.2", true, &opts);
    (unit, opts)
}

#[test]
fn install_and_config_changed_apply_exactly_what_render_prints() {
    let Some(server) = server() else { return };
    let (unit, opts) = leader_unit(&server);
    let started = Instant::now();
    unit.hook("install");
    unit.hook("config-changed");
    eprintln!("install + config-changed: {:?}", started.elapsed());
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_eq!(
        unit.unit.versions().last().map(String::as_str),
        Some("v3.6.1")
    );

    let want = unit.rendered(&opts);
    assert_applied(&server, &unit, &want, &[]);

    // By hand, from the seed's example: calico/0 at 10.0.0.2 peers with the other reflector
    // of its subnet (10.0.1.2, its own address skipped) and its ToR 10.0.0.1; AS 64512 and
    // cluster ID 0.0.0.0 on its node; one pool, the default cidr; the mesh off.
    assert_eq!(
        store_names(&server, "BGPPeer"),
        BTreeSet::from([
            "calico-0-10.0.1.2-64512".to_string(),
            "calico-0-10.0.0.1-64512".to_string(),
        ])
    );
    let tor = calico(&server, "BGPPeer", "calico-0-10.0.0.1-64512");
    assert_eq!(
        tor["spec"],
        json!({"node": "node-0", "peerIP": "10.0.0.1", "asNumber": 64512})
    );
    assert_eq!(tor["metadata"]["labels"][UNIT_LABEL], "calico-0");
    assert_eq!(tor["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY);
    let annotations = node_annotations(&server, "node-0");
    assert_eq!(annotations[AS_NUMBER_ANNOTATION], "64512");
    assert_eq!(annotations[RR_CLUSTER_ID_ANNOTATION], "0.0.0.0");
    assert_eq!(
        store_names(&server, "IPPool"),
        BTreeSet::from(["ipv4".into()])
    );
    let pool = calico(&server, "IPPool", "ipv4");
    assert_eq!(pool["spec"]["cidr"], "192.168.0.0/16");
    assert_eq!(pool["spec"]["disabled"], false);
    let config = calico(&server, "BGPConfiguration", "default");
    assert_eq!(config["spec"]["asNumber"], 64512);
    assert_eq!(config["spec"]["nodeToNodeMeshEnabled"], false);
    // Applied by the charm's field manager.
    assert!(
        config["metadata"]["managedFields"]
            .as_array()
            .is_some_and(|m| m.iter().any(|f| f["manager"] == "calico-charm"))
    );

    // The CNI config, world-readable, in this unit's CNI dir.
    let meta = fs::metadata(unit.cni_file()).expect("CNI config written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let conflist: Value =
        serde_json::from_str(&fs::read_to_string(unit.cni_file()).expect("read")).expect("json");
    assert_eq!(conflist["name"], "k8s-pod-network");

    // The published cidr on the cni relation.
    assert_eq!(
        unit.unit
            .local_data("cni:4")
            .get("cidr")
            .map(String::as_str),
        Some("192.168.0.0/16")
    );

    // A second hook is a no-op: the same applies, nothing changed, nothing deleted.
    server.reset_requests();
    let version = server.resource_version();
    let started = Instant::now();
    unit.hook("update-status");
    eprintln!(
        "no-op update-status: {:?}, {} requests",
        started.elapsed(),
        server.request_count()
    );
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_eq!(server.resource_version(), version);
    assert!(
        writes(&server.requests())
            .iter()
            .all(|w| w.starts_with("PATCH ")),
        "{:?}",
        writes(&server.requests())
    );
}

// ---- 2. a config change prunes; others' objects and fields survive -------------------------

#[test]
fn config_change_prunes_peers_and_annotations_and_spares_the_admins() {
    let Some(server) = server() else { return };
    let (unit, mut opts) = leader_unit(&server);
    admin_patch(
        &server,
        "v1",
        "Node",
        "node-0",
        json!({"metadata": {"annotations": {"example.com/rack": "r0"}}}),
    );
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    admin_peer(&server, "node-0");
    admin_patch(
        &server,
        CALICO,
        "BGPConfiguration",
        "default",
        json!({"spec": {"logSeverityScreen": "Debug"}}),
    );

    // Drop calico/0's ToR peer and the AS annotation's source (subnet-as-numbers).
    opts.insert(
        "unit-bgp-peers".into(),
        json!("1:\n- address: 10.0.1.1\n  as-number: 64512\n"),
    );
    opts.remove("subnet-as-numbers");
    unit.configure(&opts);
    unit.hook("config-changed");
    assert_eq!(unit.status(), pair("active", "Ready"));

    let want = unit.rendered(&opts);
    assert_applied(&server, &unit, &want, &["logSeverityScreen"]);
    assert!(
        server
            .get(CALICO, "BGPPeer", None, "calico-0-10.0.0.1-64512")
            .is_none()
    );
    assert!(
        server
            .get(CALICO, "BGPPeer", None, "calico-0-10.0.1.2-64512")
            .is_some()
    );
    let annotations = node_annotations(&server, "node-0");
    assert_eq!(annotations.get(AS_NUMBER_ANNOTATION), None);
    assert_eq!(annotations[RR_CLUSTER_ID_ANNOTATION], "0.0.0.0");
    // The admin's objects and fields.
    assert_eq!(annotations["example.com/rack"], "r0");
    let admin = calico(&server, "BGPPeer", "admin-tor");
    assert_eq!(admin["spec"]["peerIP"], "10.9.9.9");
    let config = calico(&server, "BGPConfiguration", "default");
    assert_eq!(config["spec"]["logSeverityScreen"], "Debug");
    assert_eq!(config["spec"]["asNumber"], 64512);
}

// ---- 3. a cidr change drains the old pool ----------------------------------------------------

fn ipam_block(server: &TestApiServer, cidr: &str, allocated: bool) {
    let allocations = if allocated {
        json!([0, null, null, null])
    } else {
        json!([null, null, null, null])
    };
    server
        .insert(json!({
            "apiVersion": CALICO,
            "kind": "IPAMBlock",
            "metadata": {"name": cidr.replace(['.', '/'], "-")},
            "spec": {"cidr": cidr, "affinity": "host:node-0", "allocations": allocations,
                     "unallocated": [1, 2, 3], "attributes": [], "strictAffinity": false},
        }))
        .expect("insert block");
}

#[test]
fn cidr_change_disables_the_old_pool_until_its_blocks_are_empty() {
    let Some(server) = server() else { return };
    let (unit, mut opts) = leader_unit(&server);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    ipam_block(&server, "192.168.7.0/30", true);

    opts.insert("cidr".into(), json!("10.2.0.0/16"));
    unit.configure(&opts);
    unit.hook("config-changed");
    // The old pool keeps its name and range, disabled; the new range gets a name of its own
    // ("ipv4" is taken).
    assert_eq!(
        unit.status(),
        pair("waiting", "Draining IP pool ipv4 (192.168.0.0/16)")
    );
    let old = calico(&server, "IPPool", "ipv4");
    assert_eq!(old["spec"]["cidr"], "192.168.0.0/16");
    assert_eq!(old["spec"]["disabled"], true);
    let pools = server.list(CALICO, "IPPool", None);
    assert_eq!(pools.len(), 2, "{pools:#?}");
    let new = pools
        .iter()
        .find(|p| p["spec"]["cidr"] == "10.2.0.0/16")
        .expect("new pool");
    assert_eq!(new["spec"]["disabled"], false);
    let new_name = name_of(new);
    // Published right away: kube-proxy follows the new range.
    assert_eq!(
        unit.unit
            .local_data("cni:4")
            .get("cidr")
            .map(String::as_str),
        Some("10.2.0.0/16")
    );

    // Still allocated: update-status keeps it.
    unit.hook("update-status");
    assert!(server.get(CALICO, "IPPool", None, "ipv4").is_some());
    assert_eq!(unit.status().0, "waiting");

    // The last address is released; the next hook deletes the old pool.
    ipam_block(&server, "192.168.7.0/30", false);
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_eq!(store_names(&server, "IPPool"), BTreeSet::from([new_name]));
    assert_eq!(
        unit.unit.statuses_in("update-status").last().cloned(),
        Some(pair("active", "Ready"))
    );
}

// ---- 4. API down, 5. throttling and server errors ------------------------------------------

#[test]
fn api_down_waits_within_the_budget_then_recovers() {
    let Some(server) = server() else { return };
    let (unit, opts) = leader_unit(&server);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));

    server.stop();
    let started = Instant::now();
    let run = unit.hook("update-status");
    let took = started.elapsed();
    assert!(run.ok());
    let (status, message) = unit.status();
    assert_eq!(status, "waiting", "{message}");
    assert!(
        message.starts_with("Kubernetes API unavailable: "),
        "{message}"
    );
    assert!(
        took < Duration::from_secs(BUDGET_SECS + 8),
        "the hook took {took:?} with a {BUDGET_SECS} s budget"
    );
    eprintln!("API down: {took:?}, {message}");
    assert_no_error_logged(&unit.unit);

    server.restart().expect("restart");
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
}

#[test]
fn throttling_and_server_errors_are_retried_within_the_hook() {
    let Some(server) = server() else { return };
    add_node(&server, "node-0", json!({}));
    let opts = golden("route-reflection");
    let mut unit = TestUnit::new(&server, "calico/2", "node-0", "10.0.0.12", true, &opts);
    // A budget that covers the two Retry-After waits (the default is 30 s).
    unit.unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "10");
    // Two 429s with Retry-After: 1, then three 503s, on the first requests of the hook.
    server.throttle_next(2, 1);
    server.fail_next(3, 503);
    let started = Instant::now();
    unit.hook("install");
    let took = started.elapsed();
    assert_eq!(unit.status(), pair("active", "Ready"));
    let log = server.requests();
    assert_eq!(log.iter().filter(|e| e.status == 429).count(), 2);
    assert_eq!(log.iter().filter(|e| e.status == 503).count(), 3);
    // Retry-After honoured: the two throttled answers cost a second each.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_no_error_logged(&unit.unit);
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
    // By hand: calico/2 at 10.0.0.12 peers with both reflectors.
    assert_eq!(
        store_names(&server, "BGPPeer"),
        BTreeSet::from([
            "calico-2-10.0.0.2-64512".to_string(),
            "calico-2-10.0.0.3-64512".to_string(),
        ])
    );
}

#[test]
fn dropped_connections_before_and_after_a_write_are_retried() {
    let Some(server) = server() else { return };
    let (unit, mut opts) = leader_unit(&server);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));

    // Remove calico/0's ToR peer and change the other's AS: one new peer, two deletions.
    opts.insert("unit-bgp-peers".into(), json!("{}"));
    opts.insert(
        "subnet-bgp-peers".into(),
        json!("10.0.0.0/24:\n- address: 10.0.1.2\n  as-number: 64513\n"),
    );
    unit.configure(&opts);
    // The list of owned peers is lost in transit; the new peer's create and the first prune
    // are executed but their answers lost (the create, retried, finds the peer there: it is
    // the unit's own, and applied).
    server.drop_next_matching(1, "/bgppeers");
    server.add_fault(Fault {
        path_contains: Some("/bgppeers".into()),
        method: Some("POST".into()),
        remaining: Some(1),
        action: FaultAction::DropResponse,
    });
    server.add_fault(Fault {
        path_contains: Some("/bgppeers/".into()),
        method: Some("DELETE".into()),
        remaining: Some(1),
        action: FaultAction::DropResponse,
    });
    server.reset_requests();
    unit.hook("config-changed");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let dropped = server.requests().iter().filter(|e| e.status == 0).count();
    assert_eq!(dropped, 3, "three answers lost");
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
    assert_eq!(
        store_names(&server, "BGPPeer"),
        BTreeSet::from(["calico-0-10.0.1.2-64513".to_string()])
    );
    assert_no_error_logged(&unit.unit);
}

// ---- 6. a hook killed mid-reconcile ------------------------------------------------------------

/// Run `hook` and SIGKILL the charm once `ready()` holds; whether it was killed.
fn kill_when(unit: &TestUnit, hook: &str, ready: impl Fn() -> bool) -> bool {
    unit.unit.run_killed_when(hook, ready)
}

#[test]
fn a_hook_killed_mid_reconcile_is_converged_by_the_next() {
    let Some(server) = server() else { return };
    let (unit, first) = leader_unit(&server);
    admin_patch(
        &server,
        "v1",
        "Node",
        "node-0",
        json!({"metadata": {"annotations": {"example.com/rack": "r0"}}}),
    );
    admin_peer(&server, "node-0");
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let full = server.request_count();

    // A second configuration: other peers, another AS source, another cidr.
    let mut second = golden("route-reflection");
    second.insert("unit-as-numbers".into(), json!("0: 64600\n"));
    second.insert("cidr".into(), json!("10.3.0.0/16"));
    let configs = [&second, &first];

    // Killed while a peer's server-side apply is held by the server (which may still carry
    // it out, as a real API server may finish a request whose client went away).
    unit.configure(&second);
    server.reset_requests();
    server.add_fault(Fault {
        path_contains: Some("/bgppeers/".into()),
        method: Some("PATCH".into()),
        remaining: Some(1),
        action: FaultAction::Delay(Duration::from_millis(800)),
    });
    let listed = || server.count_requests("GET", "/bgppeers") >= 1;
    assert!(kill_when(&unit, "config-changed", || {
        listed() && {
            std::thread::sleep(Duration::from_millis(100));
            true
        }
    }));

    // Killed after n requests, for n through the whole reconcile, alternating configs.
    let mut kills = 0;
    for (i, n) in [3, 9, 17, 26, 36].into_iter().enumerate() {
        if n >= full {
            continue;
        }
        unit.configure(configs[i % 2]);
        server.reset_requests();
        kills += usize::from(kill_when(&unit, "config-changed", || {
            server.request_count() >= n
        }));
    }
    assert!(kills >= 3, "killed {kills} hooks");

    // The server going away after n requests (the hook ends waiting, exit 0).
    for n in [5, 15] {
        unit.configure(&second);
        server.stop_after(n);
        unit.hook("config-changed");
        assert_eq!(unit.status().0, "waiting");
        server.restart().expect("restart");
    }
    std::thread::sleep(Duration::from_millis(900)); // the held apply is over, either way

    // A normal hook converges to exactly the second configuration.
    unit.configure(&second);
    unit.hook("config-changed");
    let want = unit.rendered(&second);
    assert_applied_with_old_pools(&server, &unit, &want);
    assert_eq!(unit.status(), pair("active", "Ready"));
    // Killed hooks committed no relation data; the last one published the second cidr.
    assert_eq!(
        unit.unit
            .local_data("cni:4")
            .get("cidr")
            .map(String::as_str),
        Some("10.3.0.0/16")
    );
    // Nothing of the admin's was deleted.
    assert_eq!(
        calico(&server, "BGPPeer", "admin-tor")["spec"]["peerIP"],
        "10.9.9.9"
    );
    assert_eq!(
        node_annotations(&server, "node-0")["example.com/rack"],
        "r0"
    );
    assert_eq!(
        store_names(&server, "BGPPeer"),
        BTreeSet::from([
            "admin-tor".to_string(),
            "calico-0-10.0.0.3-64512".to_string()
        ])
    );
    assert_eq!(
        node_annotations(&server, "node-0")[AS_NUMBER_ANNOTATION],
        "64600"
    );
}

/// [`assert_applied`] where the pools were renamed by a cidr change: every pool in the store
/// holds exactly a rendered pool's spec (matched by cidr).
fn assert_applied_with_old_pools(server: &TestApiServer, unit: &TestUnit, want: &[Value]) {
    let pools = of_kind(want, "IPPool");
    let live = server.list(CALICO, "IPPool", None);
    assert_eq!(live.len(), pools.len(), "{live:#?}");
    for pool in &pools {
        let got = live
            .iter()
            .find(|p| p["spec"]["cidr"] == pool["spec"]["cidr"])
            .unwrap_or_else(|| panic!("no pool for {}", pool["spec"]["cidr"]));
        assert_spec("IPPool", got, pool, &[]);
    }
    assert_unit_objects(server, &unit.owner(), &unit.node, want);
    assert_global(server, want, &[]);
}

// ---- 7. invalid config -----------------------------------------------------------------------

#[test]
fn invalid_config_blocks_and_writes_nothing() {
    let Some(server) = server() else { return };
    let (unit, mut opts) = leader_unit(&server);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let before: Vec<Vec<Value>> = ["IPPool", "BGPPeer", "BGPConfiguration"]
        .iter()
        .map(|k| server.list(CALICO, k, None))
        .collect();
    let node_before = server.get("v1", "Node", None, "node-0");
    let version = server.resource_version();

    opts.insert("ipip".into(), json!("Sometimes"));
    opts.insert("cidr".into(), json!("10.0.0.0/33"));
    unit.configure(&opts);
    server.reset_requests();
    unit.hook("config-changed");
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(message.starts_with("Invalid config: "), "{message}");
    assert!(message.contains("(+1 more"), "{message}");
    assert_eq!(writes(&server.requests()), Vec::<String>::new());
    assert_eq!(server.resource_version(), version);
    let after: Vec<Vec<Value>> = ["IPPool", "BGPPeer", "BGPConfiguration"]
        .iter()
        .map(|k| server.list(CALICO, k, None))
        .collect();
    assert_eq!(after, before);
    assert_eq!(server.get("v1", "Node", None, "node-0"), node_before);
}

// ---- 8. many units at once -------------------------------------------------------------------

/// Options for `n` units: the two reflectors calico/0 and calico/1 (10.0.0.2, 10.0.0.3) as
/// global peers, one ToR peer per unit (AS 65000+i, renamed in `round` 2 by a new AS), and an
/// AS per unit (every unit in round 1, even units only in round 2).
fn many_opts(n: u32, round: u32) -> Opts {
    let mut unit_peers = String::new();
    let mut unit_as = String::new();
    for i in 0..n {
        let asn = 65000 + i + if round == 2 { 1000 } else { 0 };
        unit_peers.push_str(&format!(
            "{i}:\n- address: 10.1.{i}.1\n  as-number: {asn}\n"
        ));
        if round == 1 || i % 2 == 0 {
            unit_as.push_str(&format!("{i}: {}\n", 64700 + i));
        }
    }
    let mut opts = golden("route-reflection");
    opts.insert("unit-bgp-peers".into(), json!(unit_peers));
    opts.insert("unit-as-numbers".into(), json!(unit_as));
    opts
}

fn many_units(server: &TestApiServer, n: u32) -> Vec<TestUnit> {
    (0..n)
        .map(|i| {
            let node = format!("node-{i}");
            add_node(server, &node, json!({"example.com/owner": "admin"}));
            TestUnit::new(
                server,
                &format!("calico/{i}"),
                &node,
                &format!("10.0.0.{}", i + 2),
                i == 0,
                &many_opts(n, 1),
            )
        })
        .map(|mut u| {
            // Many hooks at once on a small machine: the real API server shares its two
            // cores with them, so give each hook a budget no fault test needs to be short.
            u.unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "30");
            u
        })
        .collect()
}

fn converge_all(server: &TestApiServer, units: &[TestUnit], round: u32, parallel: usize) {
    let n = u32::try_from(units.len()).unwrap_or(u32::MAX);
    let opts = many_opts(n, round);
    for unit in units {
        unit.configure(&opts);
    }
    let started = Instant::now();
    let runs = run_all(
        units
            .iter()
            .map(|u| u.unit.prepare_hook("config-changed"))
            .collect(),
        parallel,
    );
    eprintln!(
        "{n} units, round {round}, {parallel} at a time: {:?}",
        started.elapsed()
    );
    for (unit, run) in units.iter().zip(&runs) {
        assert_ok(&unit.unit, run);
        assert_eq!(unit.status(), pair("active", "Ready"), "{}", unit.name);
    }

    let started = Instant::now();
    let mut all_peers = BTreeSet::new();
    for unit in units {
        // The library's render (the binary's `render` is checked equal to it elsewhere).
        let want = desired_objects(&opts, &unit.name, &unit.address, &unit.node, unit.leader);
        assert_applied(server, unit, &want, &[]);
        all_peers.extend(names(&of_kind(&want, "BGPPeer")));
        assert_eq!(
            node_annotations(server, &unit.node)["example.com/owner"],
            "admin"
        );
    }
    // Every unit's peers exactly once, nothing else; by hand: the two reflectors peer with
    // each other and their ToR, every other unit with both reflectors and its ToR.
    let peers = server.list(CALICO, "BGPPeer", None);
    assert_eq!(store_names(server, "BGPPeer"), all_peers);
    assert_eq!(peers.len(), 2 * 2 + (units.len() - 2) * 3);
    let annotated = units
        .iter()
        .filter(|u| node_annotations(server, &u.node).contains_key(AS_NUMBER_ANNOTATION))
        .count();
    assert_eq!(
        annotated,
        if round == 1 {
            units.len()
        } else {
            units.len().div_ceil(2)
        }
    );
    assert_eq!(server.list(CALICO, "BGPConfiguration", None).len(), 1);
    assert_eq!(
        store_names(server, "IPPool"),
        BTreeSet::from(["ipv4".into()])
    );
    eprintln!("{n} units checked: {:?}", started.elapsed());
}

#[test]
fn two_units_reconcile_concurrently() {
    let Some(server) = server() else { return };
    let units = many_units(&server, 2);
    converge_all(&server, &units, 1, 2);
    converge_all(&server, &units, 2, 2);
}

#[test]
fn fifty_units_reconcile_concurrently() {
    let Some(server) = envtest!(Options::alone()) else {
        return;
    };
    let started = Instant::now();
    let units = many_units(&server, 50);
    eprintln!("50 units set up: {:?}", started.elapsed());
    // Eight hooks at a time: the machine has two cores and every hook starts a dozen
    // hook-tool processes. One round (pruning under concurrency is the two-unit test's
    // second round): 50 hooks cost about 15 s of CPU, mostly in the Python emulator.
    converge_all(&server, &units, 1, 8);
}

// ---- 9. stop and remove ----------------------------------------------------------------------

#[test]
fn stop_then_remove_takes_away_only_what_the_unit_owned() {
    let Some(server) = server() else { return };
    let opts = golden("as-per-rack");
    add_node(&server, "node-0", json!({}));
    add_node(&server, "node-1", json!({"example.com/rack": "r0"}));
    let leader = TestUnit::new(&server, "calico/0", "node-0", "10.0.0.2", true, &opts);
    let other = TestUnit::new(&server, "calico/1", "node-1", "10.0.1.2", false, &opts);
    leader.hook("install");
    other.hook("install");
    assert_eq!(other.status(), pair("active", "Ready"));
    // By hand: calico/1 peers with calico/0 (10.0.0.2) and its ToR 10.0.1.1.
    assert_eq!(
        names(&owned_peers(&server, "calico-1").iter().collect::<Vec<_>>()),
        BTreeSet::from([
            "calico-1-10.0.0.2-64512".to_string(),
            "calico-1-10.0.1.1-64512".to_string()
        ])
    );
    assert_eq!(
        node_annotations(&server, "node-1")[AS_NUMBER_ANNOTATION],
        "64512"
    );
    assert!(other.cni_file().exists());

    other.hook("stop");
    assert!(owned_peers(&server, "calico-1").is_empty());
    let annotations = node_annotations(&server, "node-1");
    for key in NODE_ANNOTATIONS {
        assert!(!annotations.contains_key(key), "{key} left on node-1");
    }
    assert_eq!(annotations["example.com/rack"], "r0");
    other.hook("remove");
    assert!(!other.cni_file().exists(), "CNI config removed");

    // The leader's objects are intact.
    assert_applied(&server, &leader, &leader.rendered(&opts), &[]);
    assert!(leader.cni_file().exists());
}

// ---- beyond the happy path -----------------------------------------------------------------

#[test]
fn a_fresh_cluster_gets_its_crds_from_the_leader_while_a_follower_waits() {
    let Some(server) = envtest!(Options::without_crds()) else {
        return;
    };
    let opts = golden("as-per-rack");
    add_node(&server, "node-0", json!({}));
    add_node(&server, "node-1", json!({}));
    let leader = TestUnit::new(&server, "calico/0", "node-0", "10.0.0.2", true, &opts);
    let other = TestUnit::new(&server, "calico/1", "node-1", "10.0.1.2", false, &opts);

    other.hook("install");
    assert_eq!(other.status(), pair("waiting", "Waiting for Calico CRDs"));
    leader.hook("install");
    assert_eq!(leader.status(), pair("active", "Ready"));
    assert_applied(&server, &leader, &leader.rendered(&opts), &[]);
    other.hook("update-status");
    assert_eq!(other.status(), pair("active", "Ready"));
    assert_applied(&server, &other, &other.rendered(&opts), &[]);
}

#[test]
fn wrong_credentials_block_and_an_unregistered_node_waits() {
    let Some(server) = server() else { return };
    let opts = golden("as-per-rack");
    let unit = TestUnit::new(&server, "calico/1", "node-1", "10.0.1.2", false, &opts);
    unit.hook("install");
    let (status, message) = unit.status();
    assert_eq!(status, "waiting");
    // One cause: the calico-node readiness check is skipped for a node that is not there.
    assert_eq!(message, "Waiting for node node-1 to register");
    add_node(&server, "node-1", json!({}));
    server
        .write_kubeconfig_with_token(&unit.unit.kubeconfig(), "not-the-token")
        .expect("kubeconfig");
    unit.hook("update-status");
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(
        message.starts_with("Kubernetes API denied access: "),
        "{message}"
    );
    server
        .write_kubeconfig(&unit.unit.kubeconfig())
        .expect("kubeconfig");
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
}

#[test]
fn the_leader_going_away_leaves_the_global_objects() {
    let Some(server) = server() else { return };
    let (unit, opts) = leader_unit(&server);
    unit.hook("install");
    let want = unit.rendered(&opts);
    unit.hook("stop");
    unit.hook("remove");
    assert!(owned_peers(&server, "calico-0").is_empty());
    let annotations = node_annotations(&server, "node-0");
    assert!(
        NODE_ANNOTATIONS
            .iter()
            .all(|k| !annotations.contains_key(*k))
    );
    // Pools, the BGPConfiguration and the workloads are the application's, not the unit's:
    // the next leader keeps them.
    assert_eq!(
        store_names(&server, "IPPool"),
        names(&of_kind(&want, "IPPool"))
    );
    assert_global(&server, &want, &[]);
}

#[test]
fn stop_with_the_api_down_succeeds_and_remove_cleans_up_later() {
    let Some(server) = server() else { return };
    let (unit, _) = leader_unit(&server);
    unit.hook("install");
    let peers = owned_peers(&server, "calico-0").len();
    server.stop();
    // The unit is going away: the hook must not fail (Juju would retry it forever).
    unit.hook("stop");
    assert_eq!(owned_peers(&server, "calico-0").len(), peers);
    let logs = unit.unit.logs();
    assert!(logs.iter().any(|l| l.hook == "stop"
        && l.level == "WARNING"
        && l.message.contains("Kubernetes API unavailable: ")));
    assert_no_error_logged(&unit.unit);
    server.restart().expect("restart");
    unit.hook("remove");
    assert!(owned_peers(&server, "calico-0").is_empty());
    assert!(!unit.cni_file().exists());
}

#[test]
fn a_retry_after_beyond_the_budget_is_not_waited_for() {
    let Some(server) = server() else { return };
    let (unit, _) = leader_unit(&server);
    unit.hook("install");
    server.throttle_next(1, 60);
    let started = Instant::now();
    unit.hook("update-status");
    let took = started.elapsed();
    // The hook holds the machine lock: it gives up at once rather than sleep past its budget.
    assert!(took < Duration::from_secs(BUDGET_SECS + 8), "{took:?}");
    let (status, message) = unit.status();
    assert_eq!(status, "waiting");
    assert!(
        message.starts_with("Kubernetes API unavailable: HTTP 429"),
        "{message}"
    );
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
}

#[test]
fn the_earlier_charms_peer_and_pool_are_adopted_not_duplicated() {
    let Some(server) = server() else { return };
    add_node(&server, "node-0", json!({}));
    // As the earlier Python charm left them: same names, no labels.
    server
        .insert(json!({
            "apiVersion": CALICO, "kind": "BGPPeer",
            "metadata": {"name": "calico-0-10.0.0.1-64512"},
            "spec": {"node": "node-0", "peerIP": "10.0.0.1", "asNumber": 64512},
        }))
        .expect("insert peer");
    server
        .insert(json!({
            "apiVersion": CALICO, "kind": "IPPool",
            "metadata": {"name": "ipv4"},
            "spec": {"cidr": "192.168.0.0/16", "ipipMode": "Always", "natOutgoing": true},
        }))
        .expect("insert pool");
    let opts = golden("as-per-rack");
    let unit = TestUnit::new(&server, "calico/0", "node-0", "10.0.0.2", true, &opts);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
    assert_eq!(server.list(CALICO, "BGPPeer", None).len(), 2);
    assert!(
        unit.unit.logs().iter().any(|l| l
            .message
            .contains("BGPPeer/calico-0-10.0.0.1-64512 (adopted)")),
        "{}",
        unit.unit.transcript()
    );
    // The adopted objects are the charm's now: pruned when no longer wanted.
    let mut opts = opts;
    opts.insert("unit-bgp-peers".into(), json!("{}"));
    unit.configure(&opts);
    unit.hook("config-changed");
    assert!(
        server
            .get(CALICO, "BGPPeer", None, "calico-0-10.0.0.1-64512")
            .is_none()
    );
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
}

#[test]
fn a_peer_of_the_same_name_on_another_node_is_not_taken() {
    let Some(server) = server() else { return };
    add_node(&server, "node-0", json!({}));
    server
        .insert(json!({
            "apiVersion": CALICO, "kind": "BGPPeer",
            "metadata": {"name": "calico-0-10.0.0.1-64512"},
            "spec": {"node": "node-7", "peerIP": "10.0.0.1", "asNumber": 64512},
        }))
        .expect("insert peer");
    let opts = golden("as-per-rack");
    let unit = TestUnit::new(&server, "calico/0", "node-0", "10.0.0.2", false, &opts);
    unit.hook("install");
    let (status, message) = unit.status();
    assert_eq!(status, "blocked");
    assert!(
        message
            .starts_with("BGPPeer/calico-0-10.0.0.1-64512 exists and is not managed by calico-0"),
        "{message}"
    );
    let peer = calico(&server, "BGPPeer", "calico-0-10.0.0.1-64512");
    assert_eq!(peer["spec"]["node"], "node-7");
    assert_eq!(peer["metadata"].get("labels"), None);
    // The unit's other peer is applied all the same.
    assert!(
        server
            .get(CALICO, "BGPPeer", None, "calico-0-10.0.1.2-64512")
            .is_some()
    );
}

// ---- the real control plane: a whole deploy, idempotence, drift ------------------------------

/// The AS-per-rack example's eight units (tests/golden/as-per-rack.yaml): (unit, address).
const RACK_UNITS: [(&str, &str); 8] = [
    ("calico/0", "10.0.0.2"),
    ("calico/1", "10.0.1.2"),
    ("calico/2", "10.0.2.2"),
    ("calico/3", "10.0.3.2"),
    ("calico/4", "10.0.0.10"),
    ("calico/5", "10.0.1.10"),
    ("calico/6", "10.0.2.10"),
    ("calico/7", "10.0.3.10"),
];

/// The objects of a hand-written golden file (`tests/golden/<dir>/<file>.yaml`).
fn golden_objects(dir: &str, file: &str) -> Vec<Value> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{dir}/{file}.yaml"));
    let text = fs::read_to_string(&path).expect("read golden objects");
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("golden yaml"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Every upstream CRD as the cluster holds it: name -> (resourceVersion, managedFields).
fn upstream_crds(server: &TestApiServer) -> BTreeMap<String, (Value, Value)> {
    server
        .list("apiextensions.k8s.io/v1", "CustomResourceDefinition", None)
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["test.calico-charm/upstream"] == "true")
        .map(|c| {
            (
                name_of(&c),
                (
                    c["metadata"]["resourceVersion"].clone(),
                    c["metadata"]["managedFields"].clone(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_as_per_rack_example_deploys_eight_units_as_written_and_a_second_round_changes_nothing() {
    let Some(server) = server() else { return };
    let opts = golden("as-per-rack");
    let crds_before = upstream_crds(&server);
    assert_eq!(crds_before.len(), 7, "the upstream CRDs are installed");
    let units: Vec<TestUnit> = RACK_UNITS
        .iter()
        .enumerate()
        .map(|(i, (name, address))| {
            let node = format!("node-{i}");
            add_node(&server, &node, json!({}));
            TestUnit::new(&server, name, &node, address, i == 0, &opts)
        })
        .collect();
    let audit = server.plane().audit_mark();
    for unit in &units {
        unit.hook("install");
    }
    for unit in &units {
        assert_eq!(unit.status(), pair("active", "Ready"), "{}", unit.name);
        // Exactly what `render` prints ...
        assert_applied(&server, unit, &unit.rendered(&opts), &[]);
        // ... and what the documentation's example says, as written by hand.
        let file = match unit.name.as_str() {
            "calico/0" => "calico-0-leader".to_string(),
            name => name.replace('/', "-"),
        };
        let want = golden_objects("as-per-rack", &file);
        assert_unit_objects(&server, &unit.owner(), &unit.node, &want);
        if unit.leader {
            for kind in ["IPPool", "BGPConfiguration"] {
                for obj in of_kind(&want, kind) {
                    let live = calico(&server, kind, &name_of(obj));
                    assert_spec(&format!("{kind}/{}", name_of(obj)), &live, obj, &[]);
                }
            }
        }
    }
    // The operator's upstream CRDs are left exactly as they were.
    assert_eq!(upstream_crds(&server), crds_before);
    // Every request the real server saw from the charm names it.
    let charm: Vec<_> = server
        .plane()
        .audit_since(audit)
        .into_iter()
        .filter(|e| e.user == "calico-charm")
        .collect();
    assert!(!charm.is_empty());
    let agents: BTreeSet<&str> = charm.iter().map(|e| e.user_agent.as_str()).collect();
    assert_eq!(
        agents,
        BTreeSet::from([concat!("calico-charm/", env!("CARGO_PKG_VERSION"))])
    );

    // A second round of every hook changes no object's resourceVersion.
    let version = server.resource_version();
    for hook in ["update-status", "config-changed"] {
        for unit in &units {
            unit.hook(hook);
            assert_eq!(
                unit.status(),
                pair("active", "Ready"),
                "{} {hook}",
                unit.name
            );
        }
    }
    assert_eq!(
        server.resource_version(),
        version,
        "a no-op round changed an object"
    );
}

#[test]
fn a_fresh_cluster_without_calico_crds_ends_with_the_leader_active() {
    let Some(server) = envtest!(Options::without_crds()) else {
        return;
    };
    let (unit, opts) = leader_unit(&server);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
    // Every CRD of the charm's release was accepted, the protected-group one included.
    let names: BTreeSet<String> = server
        .list("apiextensions.k8s.io/v1", "CustomResourceDefinition", None)
        .iter()
        .map(name_of)
        .collect();
    assert!(names.contains("clusternetworkpolicies.policy.networking.k8s.io"));
    assert!(names.contains("ippools.crd.projectcalico.org"));
    // The next hook creates nothing again.
    server.reset_requests();
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_eq!(
        server.count_requests("POST", "customresourcedefinitions"),
        0,
        "CRDs are created once"
    );
}

#[test]
fn drift_in_charm_owned_fields_is_reverted_and_other_managers_node_fields_survive() {
    let Some(server) = server() else { return };
    let (unit, opts) = leader_unit(&server);
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    // Another manager (the kubelet, say) owns a label and an annotation on the Node.
    admin_patch(
        &server,
        "v1",
        "Node",
        "node-0",
        json!({"metadata": {"labels": {"example.com/zone": "z1"},
                            "annotations": {"example.com/owner": "kubelet"}}}),
    );
    // An admin edits what the charm owns: the mesh flag, a peer's AS, the node's AS.
    admin_patch(
        &server,
        CALICO,
        "BGPConfiguration",
        "default",
        json!({"spec": {"nodeToNodeMeshEnabled": true}}),
    );
    admin_patch(
        &server,
        CALICO,
        "BGPPeer",
        "calico-0-10.0.0.1-64512",
        json!({"spec": {"asNumber": 65099}}),
    );
    admin_patch(
        &server,
        "v1",
        "Node",
        "node-0",
        json!({"metadata": {"annotations": {AS_NUMBER_ANNOTATION: "65099"}}}),
    );
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &unit.rendered(&opts), &[]);
    let node = server.get("v1", "Node", None, "node-0").expect("node");
    assert_eq!(node["metadata"]["labels"]["example.com/zone"], "z1");
    assert_eq!(
        node["metadata"]["annotations"]["example.com/owner"],
        "kubelet"
    );

    // Back to the default config: the charm's annotations go, the other manager's stay.
    let mut defaults = Opts::new();
    defaults.insert("calico-node-image".into(), json!(NODE_IMAGE));
    unit.configure(&defaults);
    unit.hook("config-changed");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let annotations = node_annotations(&server, "node-0");
    for key in NODE_ANNOTATIONS {
        assert!(
            !annotations.contains_key(key),
            "{key} pruned: {annotations:?}"
        );
    }
    assert_eq!(
        annotations.get("example.com/owner").map(String::as_str),
        Some("kubelet")
    );
    let node = server.get("v1", "Node", None, "node-0").expect("node");
    assert_eq!(node["metadata"]["labels"]["example.com/zone"], "z1");
    assert!(owned_peers(&server, "calico-0").is_empty());
}

// ---- issue 10: a no-op leader hook without an agent, counted by the real API server -------

/// The charm's requests since `mark`, from the real API server's audit log.
fn charm_audit(server: &TestApiServer, mark: usize) -> Vec<support::envtest::AuditEvent> {
    server
        .plane()
        .audit_since(mark)
        .into_iter()
        .filter(|e| e.user == "calico-charm")
        .collect()
}

/// Issue 10's target for the leader's no-op update-status without an agent: at most 10
/// requests and no write, on every turn of the rotation (`apply::checks`). Drift is still
/// corrected: in what every hook reads (Calico's objects, the DaemonSet) by the next hook,
/// in the other workload kinds within one round of the rotation (4 update-status hooks),
/// and a Calico CRD that went away by the next hook too (the 404 on its kind makes the hook
/// check the CRDs at once).
#[test]
fn a_no_op_leader_hook_reads_at_most_ten_and_drift_is_still_corrected() {
    let Some(server) = server() else { return };
    let (mut unit, opts) = leader_unit(&server);
    // No fault here: a budget that a loaded machine does not run out of.
    unit.unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "20");
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let want = unit.rendered(&opts);
    // Two rounds of the rotation.
    let mut counts = Vec::new();
    for _ in 0..8 {
        let mark = server.plane().audit_mark();
        unit.hook("update-status");
        assert_eq!(unit.status(), pair("active", "Ready"));
        let events = charm_audit(&server, mark);
        let writes: Vec<&str> = events
            .iter()
            .filter(|e| e.is_write())
            .map(|e| e.uri.as_str())
            .collect();
        assert!(writes.is_empty(), "a no-op wrote: {writes:?}");
        assert!(
            events.len() <= 10,
            "{} requests: {:?}",
            events.len(),
            events.iter().map(|e| &e.uri).collect::<Vec<_>>()
        );
        counts.push(events.len());
    }
    eprintln!("leader no-op update-status requests, two rounds: {counts:?}");
    // Any other hook reads everything (more than an update-status does).
    let mark = server.plane().audit_mark();
    unit.hook("config-changed");
    let full = charm_audit(&server, mark);
    assert!(
        full.iter().all(|e| !e.is_write()),
        "config-changed of a converged unit"
    );
    assert!(full.len() > 10, "{} requests", full.len());
    eprintln!(
        "leader no-op config-changed (every read): {} requests: {:?}",
        full.len(),
        full.iter().map(|e| &e.uri).collect::<Vec<_>>()
    );

    // Drift in what every update-status reads: corrected by the next one.
    server
        .remove("apps/v1", "DaemonSet", Some("kube-system"), "calico-node")
        .expect("the charm's DaemonSet");
    admin_patch(
        &server,
        CALICO,
        "BGPPeer",
        "calico-0-10.0.0.1-64512",
        json!({"spec": {"asNumber": 65099}}),
    );
    admin_patch(
        &server,
        CALICO,
        "BGPConfiguration",
        "default",
        json!({"spec": {"nodeToNodeMeshEnabled": true}}),
    );
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &want, &[]);

    // A ClusterRole deleted: restored within one round of the rotation.
    server
        .remove(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "calico-node",
        )
        .expect("the charm's ClusterRole");
    let mut hooks = 0;
    while server
        .get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "calico-node",
        )
        .is_none()
    {
        assert!(hooks < 4, "not restored within 4 update-status hooks");
        unit.hook("update-status");
        assert_eq!(unit.status(), pair("active", "Ready"));
        hooks += 1;
    }
    assert_applied(&server, &unit, &want, &[]);

    // A Calico CRD deleted (and with it the BGP configuration): the next update-status
    // sees its kind missing, checks the CRDs and puts both back.
    server
        .remove(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "bgpconfigurations.crd.projectcalico.org",
        )
        .expect("the CRD");
    unit.hook("update-status");
    assert_eq!(unit.status(), pair("active", "Ready"));
    assert_applied(&server, &unit, &want, &[]);
}

/// Issue 14's config change on a non-leader: a new global peer costs its Node, its peers,
/// the create of the new peer (no read by name first) and its calico-node pod: 4 requests
/// without an agent, one of them the write.
#[test]
fn a_new_peer_costs_a_non_leader_one_create_and_no_read_by_name() {
    let Some(server) = server() else { return };
    let (mut leader, mut opts) = leader_unit(&server);
    leader.unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "20");
    leader.hook("install");
    add_node(&server, "node-1", json!({}));
    let mut unit = TestUnit::new(&server, "calico/1", "node-1", "10.0.1.2", false, &opts);
    unit.unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "20");
    unit.hook("install");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let before = owned_peers(&server, "calico-1").len();

    let mut peers: Vec<Value> = serde_json::from_str(
        opts.get("global-bgp-peers")
            .and_then(Value::as_str)
            .unwrap_or("[]"),
    )
    .unwrap_or_default();
    peers.push(json!({"address": "10.0.9.9", "as-number": 64999}));
    opts.insert(
        "global-bgp-peers".into(),
        json!(serde_json::to_string(&peers).unwrap()),
    );
    unit.configure(&opts);
    let mark = server.plane().audit_mark();
    unit.hook("config-changed");
    assert_eq!(unit.status(), pair("active", "Ready"));
    let events = charm_audit(&server, mark);
    let verbs: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.verb.as_str(), e.uri.as_str()))
        .collect();
    eprintln!("non-leader config-changed, a peer added: {verbs:?}");
    assert_eq!(events.len(), 4, "{verbs:?}");
    let writes: Vec<_> = events.iter().filter(|e| e.is_write()).collect();
    assert_eq!(writes.len(), 1, "{verbs:?}");
    assert_eq!(writes[0].verb, "create", "{verbs:?}");
    assert!(
        !events
            .iter()
            .any(|e| e.verb == "get" && e.uri.contains("bgppeers/")),
        "no read of the new peer by name: {verbs:?}"
    );
    let owned = owned_peers(&server, "calico-1");
    assert_eq!(owned.len(), before + 1);
    let new = calico(&server, "BGPPeer", "calico-1-10.0.9.9-64999");
    assert_eq!(
        new["spec"],
        json!({"node": "node-1", "peerIP": "10.0.9.9", "asNumber": 64999})
    );
    assert_eq!(new["metadata"]["labels"][UNIT_LABEL], "calico-1");
    // The next update-status writes nothing: a created peer matches as an applied one.
    let mark = server.plane().audit_mark();
    unit.hook("update-status");
    let events = charm_audit(&server, mark);
    assert!(events.iter().all(|e| !e.is_write()), "{events:?}");
    assert_eq!(events.len(), 3);
}
