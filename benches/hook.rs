//! `cargo bench --bench hook`: what one hook of the charm costs, measured on the release
//! binary run through `charm/dispatch` exactly as the Juju unit agent runs it (fresh
//! environment, `PATH` = a tools dir first, cwd = the charm dir), against the real
//! kube-apiserver + etcd of `tests/support/envtest.rs` (through the logging proxy of
//! `tests/support/apiserver`; needs `KUBEBUILDER_ASSETS`, as the tests do). See BENCHMARKS.md
//! for the method and the figures.
//!
//! Scenarios, for a cluster of 1 node and of `CALICO_BENCH_UNITS` nodes (default 500, each
//! with its calico unit converged first: its BGPPeers, Node annotations, calico-node pod and
//! IPAM block in the store):
//! - `update-status` after convergence (the no-op hook), and
//! - `config-changed` that adds or removes a global BGP peer (alternately), so each run
//!   applies or deletes one BGPPeer of the measured unit;
//!
//! for the leader (`calico/0`) and, in the large cluster, a non-leader in the middle.
//!
//! Per hook: wall time of the dispatch process (spawn to exit), the charm's own time (wall
//! minus the time the charm reports spending inside hook tools), peak RSS (`wait4`'s
//! `ru_maxrss` of the child: the maximum over the process and the hook tools it waited for;
//! taken by a small launcher process, see [`launch`]),
//! the Kubernetes requests by verb (the proxy's request log, and the real API server's audit
//! log by Kubernetes verb) and the hook-tool calls (the stand-in's call record). The leader's
//! first hook on the fresh one-node cluster (CRDs, pools, workloads) is measured once.
//!
//! Hook tools are a stand-in that answers at once: one POSIX sh script (dash) linked under
//! every tool name, answering from fixture files beside it with shell builtins only and
//! appending each call to a record. The Python emulator of the e2e tests costs tens of ms per
//! call, which would swamp the charm's own time.
//!
//! `CALICO_BENCH_SCALE=1` runs the 1000-node benchmark instead (`benches/scale.rs`).
//!
//! Knobs: `CALICO_BENCH_REQUESTS=1` (also list the requests of one run per scenario),
//! `CALICO_BENCH_RUNS` (measured runs per scenario, default 15), `CALICO_BENCH_UNITS`
//! (size of the large cluster, default 500), `CALICO_BENCH_QUICK=1` (3 runs, 50 units),
//! `CALICO_CHARM_BINARY` (the binary to run instead of the one cargo built for this bench).
//! Like the tests, it needs `KUBEBUILDER_ASSETS` (or `../shared/envtest` beside the project).

#[path = "../tests/support/mod.rs"]
#[allow(dead_code)]
mod support;

#[path = "scale/mod.rs"]
mod scale;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::apiserver::{LogEntry, Options, TestApiServer};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BINARY: &str = env!("CARGO_BIN_EXE_calico-charm");

/// The tools the charm may call; each is a link to the stand-in.
const TOOLS: &[&str] = &[
    "config-get",
    "network-get",
    "unit-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "status-set",
    "application-version-set",
    "juju-log",
    "state-get",
    "state-set",
    "action-get",
    "action-set",
    "action-fail",
    "resource-get",
];

/// The stand-in hook tool: answers from `<tool>.out` beside it (shell builtins only, no
/// fork), records every call in `calls`, juju-log messages in `log`, status-set in `status`.
const STAND_IN: &str = r#"#!/bin/sh
d=${0%/*}
t=${0##*/}
printf '%s\n' "$t" >>"$d/calls"
case $t in
juju-log) printf '%s\n' "$*" >>"$d/log" ;;
status-set) printf '%s\n' "$*" >>"$d/status" ;;
relation-ids)
    # The peer relation `calico` is not modelled: a lone unit has no peers to read; no
    # `etcd` relation (Calico's Kubernetes datastore).
    case " $* " in
    *" calico "*|*" etcd "*) printf '[]\n' ;;
    *) while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done <"$d/$t.out" ;;
    esac
    ;;
resource-get)
    # No calicoctl attached, as a charm deployed without --resource answers.
    printf 'ERROR could not download resource: HTTP request failed: resource#calico/%s not found\n' "$2" >&2
    exit 1
    ;;
*)
    if [ -f "$d/$t.out" ]; then
        while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done <"$d/$t.out"
    fi
    ;;
esac
"#;

const RELATION: &str = "cni:4";
const KUBECONFIG_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

type BenchResult<T> = Result<T, String>;

#[derive(Clone)]
struct Settings {
    runs: usize,
    units: usize,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("CALICO_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let number = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        Settings {
            runs: number("CALICO_BENCH_RUNS", if quick { 3 } else { 15 }),
            units: number("CALICO_BENCH_UNITS", if quick { 50 } else { 500 }),
            binary: std::env::var_os("CALICO_CHARM_BINARY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(BINARY)),
        }
    }
}

/// The charm's config: two global BGP peers (so every unit owns two BGPPeers), its node's AS
/// from subnet-as-numbers (a Node annotation), no full mesh. `extra_peer` adds a third.
fn config(extra_peer: bool) -> Value {
    let mut peers = vec![
        "{address: 10.1.0.1, as-number: 65000}",
        "{address: 10.1.0.2, as-number: 65000}",
    ];
    if extra_peer {
        peers.push("{address: 10.1.0.3, as-number: 65000}");
    }
    json!({
        "global-bgp-peers": format!("[{}]", peers.join(", ")),
        "subnet-as-numbers": "{10.0.0.0/16: 64513}",
        "node-to-node-mesh": false,
    })
}

/// The environment Juju gives `hook` of `unit` (and the charm's test knobs every bench sets):
/// `PATH` is the unit's hook tools, then `path`.
fn hook_env(
    charm: &Path,
    kubeconfig: &Path,
    unit: &Unit,
    hook: &str,
    path: &str,
) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![
        ("PATH", format!("{}:{path}", unit.tools.display()).into()),
        ("JUJU_DISPATCH_PATH", format!("hooks/{hook}").into()),
        ("JUJU_HOOK_NAME", hook.into()),
        ("JUJU_UNIT_NAME", unit.name().into()),
        ("JUJU_CHARM_DIR", charm.into()),
        (
            "JUJU_CONTEXT_ID",
            format!("calico/{}-{hook}-1", unit.index).into(),
        ),
        ("JUJU_MODEL_NAME", "bench".into()),
        ("JUJU_PRINCIPAL_UNIT", "kubernetes-worker/0".into()),
        ("JUJU_VERSION", "3.6.0".into()),
        ("KUBECONFIG", kubeconfig.into()),
        ("NODENAME", node_name(unit.index).into()),
        ("CALICO_CHARM_CNI_DIR", unit.cni.clone().into()),
    ]
}

fn node_name(index: usize) -> String {
    format!("worker-{index}")
}

fn address(index: usize) -> String {
    format!("10.0.{}.{}", index / 250, index % 250 + 1)
}

/// One unit: its stand-in tools dir (fixtures and records) and its CNI dir.
struct Unit {
    index: usize,
    tools: PathBuf,
    cni: PathBuf,
}

impl Unit {
    fn new(root: &Path, index: usize, leader: bool) -> BenchResult<Unit> {
        let dir = root.join(format!("unit-{index}"));
        let tools = dir.join("tools");
        let cni = dir.join("cni");
        mkdir(&tools)?;
        mkdir(&cni)?;
        let script = tools.join("hook-tool");
        write(&script, STAND_IN)?;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {}: {e}", script.display()))?;
        for tool in TOOLS {
            symlink("hook-tool", tools.join(tool)).map_err(|e| format!("link {tool}: {e}"))?;
        }
        let unit = Unit { index, tools, cni };
        let addr = address(index);
        unit.answer("is-leader", &json!(leader))?;
        unit.answer("relation-ids", &json!([RELATION]))?;
        unit.answer("relation-list", &json!(["kubernetes-worker/0"]))?;
        unit.answer(
            "relation-get",
            &json!({
                "kubeconfig-hash": KUBECONFIG_HASH,
                "egress-subnets": "10.0.200.1/32",
                "ingress-address": "10.0.200.1",
                "private-address": "10.0.200.1",
            }),
        )?;
        unit.answer(
            "network-get",
            &json!({
                "bind-addresses": [{
                    "interface-name": "eth0",
                    "mac-address": "00:16:3e:00:00:01",
                    "addresses": [{"hostname": "", "value": addr, "cidr": "10.0.0.0/16"}],
                }],
                "egress-subnets": [format!("{addr}/32")],
                "ingress-addresses": [addr],
            }),
        )?;
        unit.answer("unit-get", &json!(addr))?;
        unit.answer("state-get", &json!(""))?;
        unit.answer("config-get", &config(false))?;
        Ok(unit)
    }

    fn name(&self) -> String {
        format!("calico/{}", self.index)
    }

    fn answer(&self, tool: &str, value: &Value) -> BenchResult<()> {
        write(
            &self.tools.join(format!("{tool}.out")),
            &format!("{value}\n"),
        )
    }

    fn reset_records(&self) -> BenchResult<()> {
        for record in ["calls", "log", "status"] {
            let path = self.tools.join(record);
            if path.exists() {
                fs::remove_file(&path).map_err(|e| format!("rm {}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    fn record(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.tools.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A test API server holding `nodes` registered nodes, each with a Running and Ready
/// calico-node pod and an IPAM block affine to it.
fn cluster(nodes: usize) -> BenchResult<TestApiServer> {
    let server = TestApiServer::try_start(Options::default())?;
    for i in 0..nodes {
        let node = node_name(i);
        server.insert(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
            "status": {"addresses": [{"type": "InternalIP", "address": address(i)}]},
        }))?;
        server.insert(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("calico-node-{i:05}"),
                "namespace": "kube-system",
                "labels": {"k8s-app": "calico-node"},
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "calico-node", "image": "docker.io/calico/node:v3.6.1"}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{
                    "name": "calico-node", "ready": true, "restartCount": 0,
                    "image": "docker.io/calico/node:v3.6.1", "imageID": "",
                    "state": {"running": {}},
                }],
            },
        }))?;
        // One /26 per node out of the default pool 192.168.0.0/16, one address in use.
        let base = i * 64;
        let cidr = format!("192.168.{}.{}/26", base / 256, base % 256);
        let mut allocations = vec![Value::Null; 64];
        allocations[0] = json!(0);
        server.insert(json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "IPAMBlock",
            "metadata": {"name": format!("192-168-{}-{}-26", base / 256, base % 256)},
            "spec": {
                "cidr": cidr,
                "affinity": format!("host:{node}"),
                "allocations": allocations,
                "unallocated": (1..64).collect::<Vec<_>>(),
                "attributes": [{"handle_id": format!("k8s-pod-network.{i}"), "secondary": {}}],
                "strictAffinity": false,
                "deleted": false,
            },
        }))?;
    }
    Ok(server)
}

/// Everything the hooks of one cluster share.
struct Bench {
    settings: Settings,
    charm: PathBuf,
    kubeconfig: PathBuf,
    server: TestApiServer,
}

/// What one hook cost.
#[derive(Clone, Debug, Default)]
struct Sample {
    wall: Duration,
    /// Hook-tool time as the charm reports it in its summary line.
    tool_time: Option<Duration>,
    maxrss_kib: u64,
    tool_calls: Vec<String>,
    requests: BTreeMap<String, usize>,
    request_total: usize,
    /// The charm's summary line (its last juju-log).
    summary: Option<String>,
    /// `<verb> <path>?<query>` of every request, in order.
    request_lines: Vec<String>,
    /// The charm's requests as the real API server's audit log records them, by
    /// Kubernetes verb (get, list, patch, ...).
    audit: BTreeMap<String, usize>,
    status: Option<String>,
}

impl Bench {
    /// Run `hook` for `unit` through charm/dispatch; measure it.
    fn hook(&self, unit: &Unit, hook: &str) -> BenchResult<Sample> {
        unit.reset_records()?;
        self.server.reset_requests();
        let audit_mark = self.server.plane().audit_mark();
        let path = format!("/usr/bin:/bin:{}", "/usr/sbin:/sbin");
        let out = unit.tools.parent().unwrap_or(&unit.tools).join("hook.out");
        let stderr =
            fs::File::create(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let launched = Command::new(launcher()?)
            .arg(LAUNCH)
            .arg(self.charm.join("dispatch"))
            .current_dir(&self.charm)
            .env_clear()
            .envs(hook_env(&self.charm, &self.kubeconfig, unit, hook, &path))
            // The agent is measured by benches/scale.rs; these figures are the hooks' alone
            // (the leader's hooks still keep their memo in the unit's own directory).
            .env("CALICO_CHARM_AGENT", "off")
            .env(
                "CALICO_CHARM_AGENT_DIR",
                unit.tools.parent().unwrap_or(&unit.tools).join("agent"),
            )
            .stdin(Stdio::null())
            .stderr(stderr)
            .output()
            .map_err(|e| format!("spawn the launcher: {e}"))?;
        let (code, maxrss_kib, wall) = launched_figures(&launched.stdout)?;
        if code != 0 {
            let output = fs::read_to_string(&out).unwrap_or_default();
            return Err(format!(
                "{hook} of {} exited {code}: {output}\njuju-log: {:?}",
                unit.name(),
                unit.record("log")
            ));
        }
        let log = self.server.requests();
        let mut audit = BTreeMap::new();
        for event in self.server.plane().audit_since(audit_mark) {
            if event.user == "calico-charm" {
                *audit.entry(event.verb).or_insert(0) += 1;
            }
        }
        let mut requests = BTreeMap::new();
        for entry in &log {
            *requests.entry(verb(entry)).or_insert(0) += 1;
        }
        let (tool_calls_reported, tool_time) = unit
            .record("log")
            .iter()
            .rev()
            .find_map(|line| reported_tool_cost(line))
            .map_or((None, None), |(n, t)| (Some(n), Some(t)));
        let tool_calls = unit.record("calls");
        // The summary line is the hook's last tool call: it counts every call before it.
        if tool_calls_reported.map(|n| n + 1) != u64::try_from(tool_calls.len()).ok() {
            eprintln!(
                "note: {hook} of {}: the charm reported {tool_calls_reported:?} hook-tool calls before its summary, the stand-in saw {}",
                unit.name(),
                tool_calls.len()
            );
        }
        Ok(Sample {
            wall,
            tool_time,
            maxrss_kib,
            tool_calls,
            requests,
            request_total: log.len(),
            summary: unit.record("log").last().cloned(),
            request_lines: log
                .iter()
                .map(|e| {
                    let query = if e.query.is_empty() {
                        String::new()
                    } else {
                        format!("?{}", e.query)
                    };
                    format!("{} {}{query}", verb(e), e.path)
                })
                .collect(),
            status: unit.record("status").last().cloned(),
            audit,
        })
    }
}

/// The argument that makes this binary the launcher (see [`launch`]).
const LAUNCH: &str = "--launch-hook";

/// This bench binary, run again as the launcher of one hook.
fn launcher() -> BenchResult<PathBuf> {
    std::env::current_exe().map_err(|e| format!("current_exe: {e}"))
}

/// Launcher mode, `hook --launch-hook PROGRAM`: run PROGRAM with this process's environment,
/// cwd and stderr (its stdout goes to stderr too), and print `<exit code> <peak RSS KiB>
/// <wall ns>`. Why a launcher: a child's `ru_maxrss` starts from the high-water mark of the
/// memory it was spawned from (Rust spawns with vfork semantics, and exec records the old
/// address space's peak), so spawned from the bench process, which holds the test API
/// server's store, every hook would report at least the bench's own RSS. The launcher is a
/// fresh, small process; its floor is printed by the bench (`/bin/true` launched).
fn launch(program: &str) -> BenchResult<()> {
    let started = Instant::now();
    let child = Command::new(program)
        .stdout(Stdio::from(std::io::stderr()))
        .spawn()
        .map_err(|e| format!("spawn {program}: {e}"))?;
    let (code, maxrss_kib) = wait4(child.id())?;
    let wall = started.elapsed();
    println!("{code} {maxrss_kib} {}", wall.as_nanos());
    Ok(())
}

/// The launcher's output: exit code, peak RSS in KiB, wall time.
fn launched_figures(stdout: &[u8]) -> BenchResult<(i32, u64, Duration)> {
    let text = String::from_utf8_lossy(stdout);
    let mut fields = text.split_whitespace();
    let mut next = || {
        fields
            .next()
            .ok_or_else(|| format!("launcher printed {text:?}"))
    };
    let code = next()?.parse().map_err(|e| format!("exit code: {e}"))?;
    let maxrss = next()?.parse().map_err(|e| format!("maxrss: {e}"))?;
    let nanos: u64 = next()?.parse().map_err(|e| format!("wall: {e}"))?;
    Ok((code, maxrss, Duration::from_nanos(nanos)))
}

/// Wait for `pid` with wait4: its exit code and peak RSS in KiB.
fn wait4(pid: u32) -> BenchResult<(i32, u64)> {
    let pid = libc::pid_t::try_from(pid).map_err(|e| e.to_string())?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unwaited child; status and usage are valid for writes.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if got != pid {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

/// `N hook-tool calls, X ms in hook tools` from the charm's summary line.
fn reported_tool_cost(line: &str) -> Option<(u64, Duration)> {
    let (head, _) = line.split_once(" ms in hook tools")?;
    let (calls_part, ms) = head.rsplit_once(", ")?;
    let calls = calls_part.rsplit("; ").next()?.split_whitespace().next()?;
    let ms: f64 = ms.trim().parse().ok()?;
    Some((calls.parse().ok()?, Duration::from_secs_f64(ms / 1000.0)))
}

/// The Kubernetes verb of a request: get, list, apply, patch, create, update, delete,
/// discovery.
fn verb(entry: &LogEntry) -> String {
    let path = entry.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let collection = rest.len() == 1;
    match entry.method.as_str() {
        _ if rest.is_empty() && entry.method == "GET" => "discovery",
        "GET" if collection => "list",
        "GET" => "get",
        "PATCH" if entry.content_type.contains("apply-patch") => "apply",
        "PATCH" => "patch",
        "POST" => "create",
        "PUT" => "update",
        "DELETE" if collection => "deletecollection",
        "DELETE" => "delete",
        other => other,
    }
    .to_string()
}

fn mkdir(path: &Path) -> BenchResult<()> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> BenchResult<()> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A charm dir as Juju unpacks it, as far as a hook needs: the repository's `dispatch` and
/// `bin/calico-charm` (a link to the binary under test).
fn charm_dir(root: &Path, binary: &Path) -> BenchResult<PathBuf> {
    let charm = root.join("charm");
    mkdir(&charm.join("bin"))?;
    fs::copy(
        Path::new(REPO).join("charm/dispatch"),
        charm.join("dispatch"),
    )
    .map_err(|e| format!("copy dispatch: {e}"))?;
    fs::set_permissions(charm.join("dispatch"), fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod dispatch: {e}"))?;
    let binary = binary
        .canonicalize()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    symlink(&binary, charm.join("bin/calico-charm")).map_err(|e| format!("link binary: {e}"))?;
    for name in ["metadata.yaml", "config.yaml"] {
        fs::copy(Path::new(REPO).join(name), charm.join(name))
            .map_err(|e| format!("copy {name}: {e}"))?;
    }
    Ok(charm)
}

/// The figures of one scenario.
struct Row {
    cluster: usize,
    unit: String,
    hook: &'static str,
    samples: Vec<Sample>,
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Row {
    fn stat(&self, f: impl Fn(&Sample) -> f64) -> (f64, f64) {
        let values: Vec<f64> = self.samples.iter().map(f).collect();
        (percentile(values.clone(), 50.0), percentile(values, 90.0))
    }

    fn requests(&self) -> String {
        // Requests per verb are the same every run of a scenario unless noted (max shown).
        let mut verbs: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for sample in &self.samples {
            for (verb, n) in &sample.requests {
                let e = verbs.entry(verb).or_insert((usize::MAX, 0));
                e.0 = e.0.min(*n);
                e.1 = e.1.max(*n);
            }
        }
        let runs = self.samples.len();
        verbs
            .iter()
            .map(|(verb, (lo, hi))| {
                let seen = self
                    .samples
                    .iter()
                    .filter(|s| s.requests.contains_key(*verb));
                let lo = if seen.count() < runs { 0 } else { *lo };
                if lo == *hi {
                    format!("{hi} {verb}")
                } else {
                    format!("{lo}-{hi} {verb}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `total (writes): n verb, ...` from the audit log (max over the runs).
    fn audit(&self) -> String {
        let mut verbs: BTreeMap<&str, usize> = BTreeMap::new();
        for sample in &self.samples {
            for (verb, n) in &sample.audit {
                let e = verbs.entry(verb).or_insert(0);
                *e = (*e).max(*n);
            }
        }
        let total: usize = verbs.values().sum();
        let writes: usize = verbs
            .iter()
            .filter(|(v, _)| ["create", "update", "patch", "delete"].contains(v))
            .map(|(_, n)| n)
            .sum();
        let by_verb: Vec<String> = verbs.iter().map(|(v, n)| format!("{n} {v}")).collect();
        format!(
            "| {} | {} | {} | {total} | {writes} | {} |",
            self.cluster,
            self.unit,
            self.hook,
            by_verb.join(", ")
        )
    }

    fn print(&self) {
        let (wall, wall90) = self.stat(|s| ms(s.wall));
        let (tool, tool90) = self.stat(|s| s.tool_time.map_or(f64::NAN, ms));
        let (own, own90) =
            self.stat(|s| ms(s.wall.saturating_sub(s.tool_time.unwrap_or_default())));
        let (rss, rss90) = self.stat(|s| s.maxrss_kib as f64 / 1024.0);
        let (calls, calls90) = self.stat(|s| s.tool_calls.len() as f64);
        let (reqs, reqs90) = self.stat(|s| s.request_total as f64);
        println!(
            "| {} | {} | {} | {wall:.1} / {wall90:.1} | {tool:.1} / {tool90:.1} | {own:.1} / {own90:.1} | {rss:.1} / {rss90:.1} | {calls} / {calls90} | {reqs} / {reqs90} | {} |",
            self.cluster,
            self.unit,
            self.hook,
            self.requests()
        );
    }
}

fn header() {
    println!(
        "| nodes | unit | hook | wall ms (median / p90) | in hook tools ms | charm without hook tools ms | peak RSS MiB | hook-tool calls | k8s requests | requests by verb |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
}

/// Measure the no-op hook and the config change for `unit`.
fn measure(bench: &Bench, unit: &Unit, nodes: usize) -> BenchResult<Vec<Row>> {
    let runs = bench.settings.runs;
    // Converge (and warm the page cache) first.
    unit.answer("config-get", &config(false))?;
    bench.hook(unit, "config-changed")?;
    bench.hook(unit, "update-status")?;
    let mut noop = Vec::new();
    for _ in 0..runs {
        let sample = bench.hook(unit, "update-status")?;
        expect_ready(unit, &sample)?;
        noop.push(sample);
    }
    let mut change = Vec::new();
    for run in 0..runs {
        // Runs 0, 2, 4, ... add the third peer; runs 1, 3, ... remove it again.
        unit.answer("config-get", &config(run % 2 == 0))?;
        let sample = bench.hook(unit, "config-changed")?;
        expect_ready(unit, &sample)?;
        change.push(sample);
    }
    unit.answer("config-get", &config(false))?;
    bench.hook(unit, "config-changed")?;
    let who = format!(
        "{}{}",
        unit.name(),
        if unit.index == 0 { " (leader)" } else { "" }
    );
    Ok(vec![
        Row {
            cluster: nodes,
            unit: who.clone(),
            hook: "update-status (no-op)",
            samples: noop,
        },
        Row {
            cluster: nodes,
            unit: who,
            hook: "config-changed (+/- 1 peer)",
            samples: change,
        },
    ])
}

fn expect_ready(unit: &Unit, sample: &Sample) -> BenchResult<()> {
    match sample.status.as_deref() {
        Some(status) if status.contains("active") => Ok(()),
        other => Err(format!(
            "{} is not active after the hook: {other:?}; juju-log: {:?}",
            unit.name(),
            unit.record("log")
        )),
    }
}

fn cluster_rows(settings: &Settings, root: &Path, nodes: usize) -> BenchResult<Vec<Row>> {
    let dir = root.join(format!("cluster-{nodes}"));
    mkdir(&dir)?;
    let started = Instant::now();
    let server = cluster(nodes)?;
    let kubeconfig = dir.join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig)
        .map_err(|e| format!("kubeconfig: {e}"))?;
    let bench = Bench {
        settings: settings.clone(),
        charm: charm_dir(&dir, &settings.binary)?,
        kubeconfig,
        server,
    };
    let units: Vec<Unit> = (0..nodes)
        .map(|i| Unit::new(&dir, i, i == 0))
        .collect::<BenchResult<_>>()?;
    // Every unit converges once: the leader first (CRDs, pools, workloads), then the others.
    // On the fresh one-node cluster the leader's first hook is measured too (one run).
    let mut rows = Vec::new();
    for unit in &units {
        let hook = if unit.index == 0 {
            "install"
        } else {
            "config-changed"
        };
        let sample = bench.hook(unit, hook)?;
        if nodes == 1 && unit.index == 0 {
            rows.push(Row {
                cluster: nodes,
                unit: unit.name(),
                hook: "install (fresh cluster, 1 run)",
                samples: vec![sample],
            });
        }
    }
    eprintln!(
        "cluster of {nodes}: seeded and every unit converged in {:.1} s; {} BGPPeers in the store",
        started.elapsed().as_secs_f64(),
        bench
            .server
            .list("crd.projectcalico.org/v1", "BGPPeer", None)
            .len()
    );
    let mut measured = vec![0];
    if nodes > 1 {
        measured.push(nodes / 2);
    }
    for index in measured {
        if let Some(unit) = units.get(index) {
            rows.extend(measure(&bench, unit, nodes)?);
        }
    }
    Ok(rows)
}

/// What an instant hook tool costs on this machine: the stand-in run directly.
fn stand_in_cost(root: &Path) -> BenchResult<Duration> {
    let unit = Unit::new(&root.join("probe"), 0, true)?;
    let mut times = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let status = Command::new(unit.tools.join("is-leader"))
            .arg("--format=json")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("stand-in: {e}"))?;
        if !status.success() {
            return Err(format!("stand-in failed: {status}"));
        }
        times.push(ms(started.elapsed()));
    }
    Ok(Duration::from_secs_f64(percentile(times, 50.0) / 1000.0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.as_slice() {
        [_, flag, program] if flag == LAUNCH => launch(program),
        _ => run(),
    };
    if let Err(err) = result {
        eprintln!("bench failed: {err}");
        std::process::exit(1);
    }
}

fn run() -> BenchResult<()> {
    let settings = Settings::from_env();
    if std::env::var("CALICO_BENCH_SCALE").is_ok_and(|v| !v.is_empty() && v != "0") {
        return scale::run(&settings.binary);
    }
    let root = tempfile::Builder::new()
        .prefix("calico-bench-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let binary_size = fs::metadata(&settings.binary)
        .map_err(|e| format!("{}: {e}", settings.binary.display()))?
        .len();
    println!(
        "binary: {} ({:.1} MiB); {} measured runs per scenario",
        settings.binary.display(),
        binary_size as f64 / (1024.0 * 1024.0),
        settings.runs
    );
    let probe = stand_in_cost(root.path())?;
    println!(
        "one stand-in hook-tool call (fork + exec of /bin/sh): {:.2} ms median",
        ms(probe)
    );
    let floor = Command::new(launcher()?)
        .args([LAUNCH, "/bin/true"])
        .output()
        .map_err(|e| format!("launcher: {e}"))?;
    let (_, floor_kib, _) = launched_figures(&floor.stdout)?;
    println!(
        "peak RSS floor of the measurement (/bin/true launched): {:.1} MiB",
        floor_kib as f64 / 1024.0
    );
    let mut rows = cluster_rows(&settings, root.path(), 1)?;
    rows.extend(cluster_rows(&settings, root.path(), settings.units)?);
    println!();
    header();
    for row in &rows {
        row.print();
    }
    println!(
        "\nThe charm's requests as the real API server's audit log records them (max over the runs):\n"
    );
    println!("| nodes | unit | hook | requests | writes | by verb |");
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.audit());
    }
    println!("\nThe charm's summary line of the last run of each scenario:");
    for row in &rows {
        if let Some(summary) = row.samples.last().and_then(|s| s.summary.as_deref()) {
            // The stand-in records `--log-level LEVEL -- MESSAGE`.
            let message = summary.split_once(" -- ").map_or(summary, |(_, m)| m);
            println!("- {message}");
        }
    }
    if std::env::var_os("CALICO_BENCH_REQUESTS").is_some() {
        for row in &rows {
            println!("\n{} nodes, {}, {}:", row.cluster, row.unit, row.hook);
            let first = row.samples.first().map(|s| s.request_lines.as_slice());
            for line in first.unwrap_or_default() {
                println!("  {line}");
            }
        }
    }
    Ok(())
}
