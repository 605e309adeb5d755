//! Runs the packed charm as the Juju unit agent does, against the hook-tool emulator in
//! `tests/hooktools/hooktool.py`.
//!
//! Once per test process the charm is packed with `charm/pack` (the debug binary, via
//! `CALICO_CHARM_BINARY`) and expanded as Juju expands it (modes from the archive). Each
//! [`Unit`] gets its own charm dir (a copy of the expanded charm, the binary linked), a tools
//! dir (every tool name linked to the emulator) and a state dir (the emulator's "agent": config,
//! relations, leadership, charm state, and the records of every call).
//!
//! A hook runs with a fresh environment (no HOME), `PATH` = tools dir first, cwd = charm dir,
//! handler chosen as Juju does (`dispatch` if present, which must be executable, else
//! `hooks/<name>`, else skipped), and buffered relation-set/state-set committed only on exit 0.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BINARY: &str = env!("CARGO_BIN_EXE_calico-charm");
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// Every tool the emulator implements.
pub const TOOLS: &[&str] = &[
    "config-get",
    "network-get",
    "unit-get",
    "is-leader",
    "relation-ids",
    "relation-list",
    "relation-get",
    "relation-set",
    "status-set",
    "status-get",
    "application-version-set",
    "juju-log",
    "state-get",
    "state-set",
    "state-delete",
    "leader-get",
    "leader-set",
    "action-get",
    "action-set",
    "action-fail",
    "action-log",
    "resource-get",
];

/// A kubeconfig-hash as the principal publishes it (SHA-256 hex of its /root/.kube/config).
pub const KUBECONFIG_HASH: &str =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The absolute path of a python3 interpreter binary (hooks run with a PATH of system dirs
/// only). Wrapper scripts such as pyenv shims are skipped: they cost ~200 ms per tool call.
pub fn python3() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let is_binary = |p: &PathBuf| {
            let mut magic = [0u8; 2];
            fs::File::open(p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok_and(|()| &magic != b"#!")
        };
        std::iter::once(PathBuf::from("/usr/bin/python3"))
            .chain(
                std::env::var_os("PATH")
                    .iter()
                    .flat_map(std::env::split_paths)
                    .map(|dir| dir.join("python3")),
            )
            .find(|p| p.is_file() && is_binary(p))
            .unwrap_or_else(|| PathBuf::from("python3"))
    })
}

/// Pack the charm with `charm/pack` into `dir`, using the debug binary. Returns the archive.
pub fn pack_into(dir: &Path) -> PathBuf {
    let out = Command::new(Path::new(REPO).join("charm/pack"))
        .arg(dir)
        .env("CALICO_CHARM_BINARY", BINARY)
        .env("CALICO_CHARM_COMPRESSLEVEL", "1")
        .output()
        .expect("run charm/pack");
    assert!(
        out.status.success(),
        "charm/pack failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("calico.charm")
}

/// Expand an archive as Juju does (entry modes honoured).
pub fn unpack(archive: &Path, dest: &Path) {
    let out = Command::new(python3())
        .arg(Path::new(REPO).join("tests/hooktools/unpack.py"))
        .arg(archive)
        .arg(dest)
        .output()
        .expect("run unpack.py");
    assert!(
        out.status.success(),
        "unpack failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The packed and expanded charm, shared by every unit of this test process. It lives in
/// cargo's per-target temporary dir, one dir per test process; dirs of processes that have
/// exited are removed first, so runs do not accumulate 100 MB copies of the binary.
fn pristine_charm() -> &'static Path {
    static CHARM: OnceLock<PathBuf> = OnceLock::new();
    CHARM.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("juju-charm");
        fs::create_dir_all(&root).expect("mkdir");
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let alive = Path::new("/proc").join(&name).exists();
                if name.parse::<u32>().is_ok() && !alive {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).expect("mkdir");
        let archive = pack_into(&dir);
        let expanded = dir.join("charm");
        fs::create_dir(&expanded).expect("mkdir");
        unpack(&archive, &expanded);
        let _ = fs::remove_file(&archive);
        expanded
    })
}

/// Copy a directory tree keeping modes; `bin/calico-charm` is linked, not copied (100 MB).
fn copy_charm(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read charm dir") {
        let entry = entry.expect("dir entry");
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src).expect("stat");
        if meta.is_dir() {
            copy_charm(&src, &dst);
            fs::set_permissions(&dst, meta.permissions()).expect("chmod");
        } else if src.ends_with("bin/calico-charm") {
            symlink(&src, &dst).expect("link binary");
        } else {
            fs::copy(&src, &dst).expect("copy");
            fs::set_permissions(&dst, meta.permissions()).expect("chmod");
        }
    }
}

/// The result of one hook run.
#[derive(Debug)]
pub struct HookRun {
    pub hook: String,
    /// The handler's exit code; `None` when it could not be run or was killed.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// How the agent chose the handler: `dispatch`, `hooks/<name>`, or `missing`.
    pub handler: String,
}

impl HookRun {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// One status-set (by the charm) or status change made by Juju itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub hook: String,
    pub status: String,
    pub message: String,
    /// `charm` or `juju`.
    pub by: String,
}

/// One juju-log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub hook: String,
    pub level: String,
    pub message: String,
    /// As `juju debug-log` prints it.
    pub line: String,
}

/// One hook-tool call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub hook: String,
    pub tool: String,
    pub args: Vec<String>,
    pub exit: i64,
    /// The tool's `ERROR ...` line, empty when it succeeded.
    pub stderr: String,
}

static CONTEXTS: AtomicU64 = AtomicU64::new(1);

/// A simulated unit of the calico application on one machine.
pub struct Unit {
    _tmp: tempfile::TempDir,
    pub name: String,
    pub principal: String,
    pub charm_dir: PathBuf,
    pub tools_dir: PathBuf,
    pub state_dir: PathBuf,
    extra_env: BTreeMap<String, String>,
    /// Run hooks as Juju < 2.8 does: `hooks/<name>` directly, no JUJU_DISPATCH_PATH.
    pub legacy: bool,
    /// Things that must live as long as the unit (e.g. its test API server).
    keep: Vec<Box<dyn std::any::Any>>,
}

impl Unit {
    /// A unit with the charm's default config, not leader, the network-get fixture (a fan
    /// interface first, then eth0 10.0.0.5), and no relations yet.
    pub fn new(name: &str) -> Unit {
        Unit::create(name, true)
    }

    /// A unit on node `node`, leader or not, related to its principal over `cni` (relation 4,
    /// `kubeconfig-hash` published), whose kubeconfig `write` puts in place: how every
    /// whole-charm test on a cluster starts.
    pub fn on_cluster(
        name: &str,
        leader: bool,
        node: &str,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Unit {
        let mut unit = Unit::new(name);
        unit.set_leader(leader);
        unit.relate_cni(4, &[("kubeconfig-hash", KUBECONFIG_HASH)]);
        write(&unit.kubeconfig()).expect("write kubeconfig");
        unit.set_env("NODENAME", node);
        unit
    }

    /// The same unit without a charm dir: for driving the hook tools directly.
    pub fn tools_only(name: &str) -> Unit {
        Unit::create(name, false)
    }

    fn create(name: &str, with_charm: bool) -> Unit {
        let tmp = tempfile::Builder::new()
            .prefix("calico-unit")
            .tempdir()
            .expect("tempdir");
        let charm_dir = tmp.path().join("charm");
        let tools_dir = tmp.path().join("tools");
        let state_dir = tmp.path().join("agent");
        if with_charm {
            copy_charm(pristine_charm(), &charm_dir);
        }
        fs::create_dir(&tools_dir).expect("mkdir tools");
        fs::create_dir(&state_dir).expect("mkdir state");

        let script = fs::read_to_string(Path::new(REPO).join("tests/hooktools/hooktool.py"))
            .expect("read hooktool.py");
        let body = script.split_once('\n').map_or("", |(_, rest)| rest);
        let emulator = tools_dir.join(".hooktool");
        // -S: skip site-packages (the emulator uses the standard library only), faster start.
        fs::write(&emulator, format!("#!{} -S\n{body}", python3().display())).expect("write");
        fs::set_permissions(&emulator, fs::Permissions::from_mode(0o755)).expect("chmod");
        for tool in TOOLS {
            symlink(".hooktool", tools_dir.join(tool)).expect("link tool");
        }
        // A stand-in systemctl (first on PATH) that records its calls, one line each, in
        // `systemctl.calls` beside the unit's dirs: the charm installs its agent's service
        // with it, and no test touches this machine's systemd.
        let systemctl = tools_dir.join("systemctl");
        fs::write(
            &systemctl,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >>{}\n",
                tmp.path().join("systemctl.calls").display()
            ),
        )
        .expect("write systemctl");
        fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).expect("chmod");

        // Never touch this machine's CNI dir or a real cluster: the CNI config goes to a dir
        // of this unit and the kubeconfig is this unit's own file (absent until a test writes
        // it, e.g. one for a test API server). The only variables Juju would not set.
        let cni_dir = tmp.path().join("cni-net.d");
        fs::create_dir(&cni_dir).expect("mkdir cni dir");
        let mut extra_env = BTreeMap::new();
        extra_env.insert(
            calico_charm::host::cni::CNI_DIR_ENV.to_string(),
            cni_dir.display().to_string(),
        );
        extra_env.insert(
            "KUBECONFIG".to_string(),
            tmp.path().join("kubeconfig").display().to_string(),
        );
        // The agent's files and unit file go to this unit's dirs too.
        extra_env.insert(
            calico_charm::agent::DIR_ENV.to_string(),
            tmp.path().join("calico-agent").display().to_string(),
        );
        extra_env.insert(
            calico_charm::agent::systemd::SYSTEMD_DIR_ENV.to_string(),
            tmp.path().join("systemd").display().to_string(),
        );
        // Nor this machine's sysctls and interfaces: a strict rp_filter and no vxlan.calico
        // unless a test says otherwise (Unit::set_rp_filter, Unit::host_dir).
        let proc_sys = tmp.path().join("host/proc-sys");
        fs::create_dir_all(proc_sys.join("net/ipv4/conf/all")).expect("mkdir proc-sys");
        fs::write(proc_sys.join(calico_charm::host::RP_FILTER), "1\n").expect("rp_filter");
        fs::create_dir_all(tmp.path().join("host/sys-class-net")).expect("mkdir net");
        for (var, dir) in [
            (calico_charm::host::PROC_SYS_ENV, "host/proc-sys"),
            (calico_charm::host::SYS_CLASS_NET_ENV, "host/sys-class-net"),
            // calicoctl goes to this unit's stand-in /usr/local/bin and /usr/local/lib.
            (
                calico_charm::calicoctl::WRAPPER_ENV,
                "host/usr-local-bin/calicoctl",
            ),
            (calico_charm::calicoctl::DIR_ENV, "host/usr-local-lib"),
        ] {
            extra_env.insert(var.to_string(), tmp.path().join(dir).display().to_string());
        }

        let principal = "kubernetes-worker/0".to_string();
        let unit = Unit {
            _tmp: tmp,
            name: name.to_string(),
            principal,
            charm_dir,
            tools_dir,
            state_dir,
            extra_env,
            legacy: false,
            keep: Vec::new(),
        };
        unit.write(
            "model.json",
            &json!({"unit": name, "leader": false, "private-address": "10.0.0.5",
                    "public-address": "203.0.113.5", "fail": {}}),
        );
        // Every option of config.yaml, null when it has no default: config-get omits those
        // unless --all, as Juju does.
        let options: serde_json::Map<String, Value> = calico_charm::config::options::specs()
            .expect("embedded config.yaml")
            .iter()
            .map(|spec| {
                (
                    spec.name.clone(),
                    spec.default.clone().unwrap_or(Value::Null),
                )
            })
            .collect();
        unit.write("config.json", &Value::Object(options));
        unit.write("network.json", &json!({"cni": fan_first_network()}));
        unit.write("relations.json", &json!({}));
        // metadata.yaml declares the calicoctl resource; nothing is attached.
        unit.write("resources.json", &json!({"calicoctl": null}));
        unit
    }

    /// Attach `path` as resource `name` (what `juju attach-resource` leaves on the unit);
    /// `None` detaches it again (resource-get then fails as when nothing was uploaded).
    pub fn attach_resource(&self, name: &str, path: Option<&Path>) {
        self.update("resources.json", |r| {
            r[name] = path.map_or(Value::Null, |p| json!(p.display().to_string()));
        });
    }

    fn write(&self, file: &str, value: &Value) {
        fs::write(
            self.state_dir.join(file),
            serde_json::to_string_pretty(value).expect("json"),
        )
        .expect("write state");
    }

    fn read(&self, file: &str) -> Value {
        match fs::read_to_string(self.state_dir.join(file)) {
            Ok(text) => serde_json::from_str(&text).expect("state json"),
            Err(_) => Value::Null,
        }
    }

    /// One of the emulator's state files (`relations.json`, ...), as JSON.
    pub fn state(&self, file: &str) -> Value {
        self.read(file)
    }

    /// Change one of the emulator's state files (e.g. to relate units on a peer relation).
    pub fn edit_state(&self, file: &str, change: impl FnOnce(&mut Value)) {
        self.update(file, change);
    }

    fn update(&self, file: &str, change: impl FnOnce(&mut Value)) {
        let mut value = self.read(file);
        change(&mut value);
        self.write(file, &value);
    }

    pub fn set_leader(&self, leader: bool) {
        self.update("model.json", |m| m["leader"] = json!(leader));
    }

    /// Set an option as `juju config calico key=value` does.
    pub fn set_config(&self, key: &str, value: Value) {
        self.update("config.json", |c| c[key] = value);
    }

    /// `juju config calico --reset key`: back to the default (or unset).
    pub fn reset_config(&self, key: &str) {
        let default = calico_charm::config::options::defaults()
            .expect("defaults")
            .get(key)
            .cloned();
        self.update("config.json", |c| c[key] = default.unwrap_or(Value::Null));
    }

    /// Replace what `network-get cni` answers (`None`: no network config for the binding).
    pub fn set_network(&self, info: Option<Value>) {
        self.write("network.json", &json!({"cni": info}));
    }

    /// Make a tool fail with exit 1 and `ERROR <message>`.
    pub fn fail_tool(&self, tool: &str, message: &str) {
        self.update("model.json", |m| m["fail"][tool] = json!(message));
    }

    /// Remove a tool from the tools dir.
    pub fn remove_tool(&self, tool: &str) {
        fs::remove_file(self.tools_dir.join(tool)).expect("remove tool");
    }

    /// Keep `thing` alive as long as this unit.
    pub fn keep_alive(&mut self, thing: impl std::any::Any) {
        self.keep.push(Box::new(thing));
    }

    /// The calls the stand-in `systemctl` received, one per line (`enable calico-...`).
    pub fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self._tmp.path().join("systemctl.calls"))
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// This unit's agent directory (desired.json, state.json).
    pub fn agent_dir(&self) -> PathBuf {
        self._tmp
            .path()
            .join("calico-agent")
            .join(self.name.replace('/', "-"))
    }

    /// This unit's systemd unit-file directory.
    pub fn systemd_dir(&self) -> PathBuf {
        self._tmp.path().join("systemd")
    }

    /// Where the charm writes its CNI config in this unit's hooks.
    pub fn cni_dir(&self) -> PathBuf {
        self._tmp.path().join("cni-net.d")
    }

    /// This unit's stand-in machine: `proc-sys/` (sysctls) and `sys-class-net/` (interfaces).
    pub fn host_dir(&self) -> PathBuf {
        self._tmp.path().join("host")
    }

    /// Set this machine's `net.ipv4.conf.all.rp_filter` as later hooks read it.
    pub fn set_rp_filter(&self, value: u8) {
        fs::write(
            self.host_dir()
                .join("proc-sys")
                .join(calico_charm::host::RP_FILTER),
            format!("{value}\n"),
        )
        .expect("write rp_filter");
    }

    /// The kubeconfig path this unit's hooks use (KUBECONFIG); absent until written.
    pub fn kubeconfig(&self) -> PathBuf {
        self._tmp.path().join("kubeconfig")
    }

    /// Set an extra environment variable for every later hook (e.g. NODENAME, KUBECONFIG).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.insert(key.to_string(), value.to_string());
    }

    /// Create the cni relation `cni:<id>` with the principal unit, whose bag holds Juju's
    /// address keys plus `remote` (e.g. kubeconfig-hash). This unit's bag gets Juju's own keys.
    pub fn relate_cni(&self, id: u32, remote: &[(&str, &str)]) -> String {
        let rid = format!("cni:{id}");
        let mut remote_bag = json!({
            "private-address": "10.0.0.7",
            "ingress-address": "10.0.0.7",
            "egress-subnets": "10.0.0.7/32",
        });
        for (k, v) in remote {
            remote_bag[*k] = json!(v);
        }
        let app = self
            .principal
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let principal = self.principal.clone();
        self.update("relations.json", |r| {
            r[&rid] = json!({
                "endpoint": "cni",
                "remote-app": app,
                "remote-units": {principal: remote_bag},
                "local": {
                    "private-address": "10.0.0.5",
                    "ingress-address": "10.0.0.5",
                    "egress-subnets": "10.0.0.5/32",
                },
                "app": {},
                "remote-app-data": {},
            })
        });
        rid
    }

    /// Create relation `<endpoint>:<id>` with one remote unit of another application (the
    /// `etcd` relation with `etcd/0`), whose bag holds Juju's address keys plus `remote`.
    pub fn relate(
        &self,
        endpoint: &str,
        id: u32,
        remote_unit: &str,
        remote: &BTreeMap<String, String>,
    ) -> String {
        let rid = format!("{endpoint}:{id}");
        let mut remote_bag = json!({
            "private-address": "10.0.0.9",
            "ingress-address": "10.0.0.9",
            "egress-subnets": "10.0.0.9/32",
        });
        for (k, v) in remote {
            remote_bag[k] = json!(v);
        }
        let app = remote_unit
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let endpoint = endpoint.to_string();
        let remote_unit = remote_unit.to_string();
        self.update("relations.json", |r| {
            r[&rid] = json!({
                "endpoint": endpoint,
                "remote-app": app,
                "remote-units": {remote_unit: remote_bag},
                "local": {
                    "private-address": "10.0.0.5",
                    "ingress-address": "10.0.0.5",
                    "egress-subnets": "10.0.0.5/32",
                },
                "app": {},
                "remote-app-data": {},
            })
        });
        rid
    }

    /// Replace the whole bag of `remote_unit` on relation `rid` (Juju's address keys kept).
    pub fn set_remote_bag(&self, rid: &str, remote_unit: &str, bag: &BTreeMap<String, String>) {
        let remote_unit = remote_unit.to_string();
        self.update("relations.json", |r| {
            let mut new = json!({
                "private-address": "10.0.0.9",
                "ingress-address": "10.0.0.9",
                "egress-subnets": "10.0.0.9/32",
            });
            for (k, v) in bag {
                new[k] = json!(v);
            }
            r[rid]["remote-units"][&remote_unit] = new;
        });
    }

    /// Run `<endpoint>-relation-<kind>` for relation `rid` with `remote_unit`.
    pub fn endpoint_hook(
        &self,
        endpoint: &str,
        kind: &str,
        rid: &str,
        remote_unit: &str,
    ) -> HookRun {
        let hook = format!("{endpoint}-relation-{kind}");
        let remote = match kind {
            "created" | "broken" => String::new(),
            _ => remote_unit.to_string(),
        };
        let mut env = BTreeMap::new();
        env.insert("JUJU_RELATION".to_string(), endpoint.to_string());
        env.insert("JUJU_RELATION_ID".to_string(), rid.to_string());
        env.insert("JUJU_REMOTE_UNIT".to_string(), remote);
        env.insert(
            "JUJU_REMOTE_APP".to_string(),
            remote_unit
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        if kind == "departed" {
            env.insert("JUJU_DEPARTING_UNIT".to_string(), remote_unit.to_string());
        }
        self.run(&hook, env)
    }

    /// Change a key in the principal's bag (empty value deletes it).
    pub fn set_remote(&self, rid: &str, key: &str, value: &str) {
        let principal = self.principal.clone();
        self.update("relations.json", |r| {
            let bag = &mut r[rid]["remote-units"][&principal];
            if value.is_empty() {
                if let Some(map) = bag.as_object_mut() {
                    map.remove(key);
                }
            } else {
                bag[key] = json!(value);
            }
        });
    }

    /// Drop a relation entirely (after -broken).
    pub fn remove_relation(&self, rid: &str) {
        self.update("relations.json", |r| {
            if let Some(map) = r.as_object_mut() {
                map.remove(rid);
            }
        });
    }

    /// This unit's committed bag on a relation.
    pub fn local_data(&self, rid: &str) -> BTreeMap<String, String> {
        let relations = self.read("relations.json");
        serde_json::from_value(relations[rid]["local"].clone()).unwrap_or_default()
    }

    /// Run a unit hook (`install`, `config-changed`, ...).
    pub fn hook(&self, hook: &str) -> HookRun {
        self.run(hook, BTreeMap::new())
    }

    /// Run a relation hook `cni-relation-<kind>` for relation `rid`.
    pub fn relation_hook(&self, kind: &str, rid: &str) -> HookRun {
        let hook = format!("cni-relation-{kind}");
        let remote = match kind {
            "created" | "broken" => String::new(),
            _ => self.principal.clone(),
        };
        let mut env = BTreeMap::new();
        env.insert("JUJU_RELATION".to_string(), "cni".to_string());
        env.insert("JUJU_RELATION_ID".to_string(), rid.to_string());
        env.insert("JUJU_REMOTE_UNIT".to_string(), remote);
        env.insert(
            "JUJU_REMOTE_APP".to_string(),
            self.principal
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        if kind == "departed" {
            env.insert("JUJU_DEPARTING_UNIT".to_string(), self.principal.clone());
        }
        self.run(&hook, env)
    }

    fn base_env(&self, hook: &str) -> BTreeMap<String, String> {
        let n = CONTEXTS.fetch_add(1, Ordering::Relaxed);
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.tools_dir.display()
        );
        let charm = self.charm_dir.display().to_string();
        let pairs: Vec<(&str, String)> = vec![
            ("JUJU_CHARM_DIR", charm.clone()),
            ("CHARM_DIR", charm),
            ("JUJU_CONTEXT_ID", format!("{}-{hook}-{n:032x}", self.name)),
            (
                "JUJU_AGENT_SOCKET_ADDRESS",
                self.state_dir.join("agent.socket").display().to_string(),
            ),
            ("JUJU_AGENT_SOCKET_NETWORK", "unix".into()),
            ("JUJU_HOOK_NAME", hook.into()),
            ("JUJU_UNIT_NAME", self.name.clone()),
            ("JUJU_MODEL_NAME", "k8s".into()),
            (
                "JUJU_MODEL_UUID",
                "4f1c5a3e-9d0b-4a57-8f3e-0c6d2b7a1e90".into(),
            ),
            ("JUJU_API_ADDRESSES", "10.0.0.2:17070".into()),
            ("JUJU_MACHINE_ID", "1".into()),
            ("JUJU_PRINCIPAL_UNIT", self.principal.clone()),
            ("JUJU_AVAILABILITY_ZONE", String::new()),
            ("CLOUD_API_VERSION", String::new()),
            ("JUJU_VERSION", "3.6.4".into()),
            ("JUJU_CHARM_HTTP_PROXY", String::new()),
            ("JUJU_CHARM_HTTPS_PROXY", String::new()),
            ("JUJU_CHARM_FTP_PROXY", String::new()),
            ("JUJU_CHARM_NO_PROXY", String::new()),
            ("APT_LISTCHANGES_FRONTEND", "none".into()),
            ("DEBIAN_FRONTEND", "noninteractive".into()),
            ("LANG", "C.UTF-8".into()),
            ("TERM", "tmux-256color".into()),
            ("PATH", path),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Start a hook context by hand (for driving tools directly, without the charm).
    pub fn begin(&self, hook: &str) {
        emulator_harness(&self.state_dir, &["begin", hook]);
    }

    /// End a hook context: exit 0 commits buffered relation-set/state-set, else discards.
    pub fn end(&self, hook: &str, code: i32) {
        emulator_harness(&self.state_dir, &["end", hook, &code.to_string()]);
    }

    /// The environment Juju gives a hook (plus extra variables set on this unit).
    pub fn hook_env(&self, hook: &str) -> BTreeMap<String, String> {
        let mut env = self.base_env(hook);
        env.extend(self.extra_env.clone());
        env
    }

    /// Run an action through dispatch (`JUJU_DISPATCH_PATH=actions/<name>`).
    pub fn action(&self, name: &str, params: Value) -> HookRun {
        self.write("action.json", &json!({ "params": params }));
        let mut env = self.hook_env("");
        env.insert("JUJU_DISPATCH_PATH".into(), format!("actions/{name}"));
        env.insert("JUJU_ACTION_NAME".into(), name.into());
        env.insert("JUJU_ACTION_UUID".into(), "7".into());
        env.insert("JUJU_ACTION_TAG".into(), "action-7".into());
        let label = format!("actions/{name}");
        self.begin(&label);
        let run = self.spawn(
            &label,
            &self.charm_dir.join("dispatch"),
            &env,
            "dispatch".into(),
        );
        self.narrate_output(&label, &run);
        self.end(&label, run.code.unwrap_or(-1));
        run
    }

    /// Records of action-set / action-fail / action-log.
    pub fn action_records(&self) -> Vec<Value> {
        self.records("action")
    }

    fn run(&self, hook: &str, relation_env: BTreeMap<String, String>) -> HookRun {
        let mut env = self.hook_env(hook);
        env.extend(relation_env);

        self.begin(hook);
        let dispatch = self.charm_dir.join("dispatch");
        let hook_file = self.charm_dir.join("hooks").join(hook);
        let metadata = self.charm_dir.join("metadata.yaml").is_file();
        let (handler, program) = if !metadata {
            ("charm missing from disk".to_string(), None)
        } else if !self.legacy && dispatch.exists() {
            env.insert("JUJU_DISPATCH_PATH".into(), format!("hooks/{hook}"));
            ("dispatch".to_string(), Some(dispatch))
        } else if hook_file.exists() {
            if !self.legacy {
                env.insert("JUJU_DISPATCH_PATH".into(), format!("hooks/{hook}"));
            }
            (format!("hooks/{hook}"), Some(hook_file))
        } else {
            ("missing".to_string(), None)
        };

        let run = match program {
            None if handler == "missing" => HookRun {
                hook: hook.into(),
                code: Some(0),
                stdout: String::new(),
                stderr: format!("skipped \"{hook}\" hook (missing)"),
                handler,
            },
            None => HookRun {
                hook: hook.into(),
                code: None,
                stdout: String::new(),
                stderr: handler.clone(),
                handler,
            },
            Some(program) => self.spawn(hook, &program, &env, handler),
        };
        self.narrate_output(hook, &run);
        self.end(hook, run.code.unwrap_or(-1));
        run
    }

    /// Juju logs a hook's stdout at DEBUG and its stderr at WARNING, under
    /// `unit.<unit>.<hook>`: put them in the transcript as debug-log would show them.
    fn narrate_output(&self, hook: &str, run: &HookRun) {
        let tag = format!("unit-{}", self.name.replace('/', "-"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() % 86_400);
        let time = format!("{:02}:{:02}:{:02}", now / 3600, now / 60 % 60, now % 60);
        let mut text = String::new();
        for (level, output) in [("DEBUG", &run.stdout), ("WARNING", &run.stderr)] {
            for line in output.lines().filter(|l| !l.trim().is_empty()) {
                text.push_str(&format!(
                    "  debug-log: {tag}: {time} {level} unit.{}.{hook} {line}\n",
                    self.name
                ));
            }
        }
        // The uniter's own line about the run (juju.worker.uniter.operation).
        let via = match run.handler.as_str() {
            "dispatch" => "via hook dispatching script: dispatch".to_string(),
            other => format!("via explicit, bespoke hook script: {other}"),
        };
        let kind = if hook.starts_with("actions/") {
            "action"
        } else {
            "hook"
        };
        let name = hook.trim_start_matches("actions/");
        text.push_str(&match run.code {
            _ if run.handler == "missing" => format!(
                "  debug-log: {tag}: {time} INFO juju.worker.uniter.operation skipped \"{name}\" hook (missing)\n"
            ),
            Some(0) => format!(
                "  debug-log: {tag}: {time} INFO juju.worker.uniter.operation ran \"{name}\" {kind} ({via})\n"
            ),
            Some(code) => format!(
                "  debug-log: {tag}: {time} ERROR juju.worker.uniter.operation {kind} \"{name}\" ({via}) failed: exit status {code}\n"
            ),
            None => format!(
                "  debug-log: {tag}: {time} ERROR juju.worker.uniter.operation {kind} \"{name}\" ({via}) failed: {}\n",
                run.stderr.trim()
            ),
        });
        use std::io::Write;
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("transcript.log"))
            .expect("open transcript");
        file.write_all(text.as_bytes()).expect("write transcript");
    }

    fn spawn(
        &self,
        hook: &str,
        program: &Path,
        env: &BTreeMap<String, String>,
        handler: String,
    ) -> HookRun {
        let child = Command::new(program)
            .env_clear()
            .envs(env)
            .current_dir(&self.charm_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(child) => child,
            // Juju: exec fails (e.g. no exec bit) and the hook fails.
            Err(err) => {
                return HookRun {
                    hook: hook.into(),
                    code: None,
                    stdout: String::new(),
                    stderr: format!("fork/exec {}: {err}", program.display()),
                    handler,
                };
            }
        };
        let started = Instant::now();
        let id = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output());
        while !waiter.is_finished() {
            if started.elapsed() > HOOK_TIMEOUT {
                let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = waiter.join().expect("wait thread").expect("wait hook");
        HookRun {
            hook: hook.into(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            handler,
        }
    }

    fn records(&self, name: &str) -> Vec<Value> {
        match fs::read_to_string(self.state_dir.join(format!("{name}.jsonl"))) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("record json"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn text(value: &Value) -> String {
        value.as_str().unwrap_or_default().to_string()
    }

    /// The unit's workload status history, oldest first (charm and Juju changes).
    pub fn statuses(&self) -> Vec<Status> {
        self.records("status")
            .iter()
            .map(|r| Status {
                hook: Self::text(&r["hook"]),
                status: Self::text(&r["status"]),
                message: Self::text(&r["message"]),
                by: Self::text(&r["by"]),
            })
            .collect()
    }

    /// What `juju status` shows now: (status, message).
    pub fn status(&self) -> (String, String) {
        self.statuses()
            .last()
            .map(|s| (s.status.clone(), s.message.clone()))
            .unwrap_or_else(|| ("unknown".into(), String::new()))
    }

    /// Statuses set during one hook (the most recent run of that hook name).
    pub fn statuses_in(&self, hook: &str) -> Vec<(String, String)> {
        let all = self.statuses();
        let start = all
            .iter()
            .rposition(|s| s.hook == hook)
            .map(|last| {
                all[..=last]
                    .iter()
                    .rposition(|s| s.hook != hook)
                    .map_or(0, |i| i + 1)
            })
            .unwrap_or(all.len());
        all[start..]
            .iter()
            .take_while(|s| s.hook == hook)
            .map(|s| (s.status.clone(), s.message.clone()))
            .collect()
    }

    pub fn logs(&self) -> Vec<LogLine> {
        self.records("log")
            .iter()
            .map(|r| LogLine {
                hook: Self::text(&r["hook"]),
                level: Self::text(&r["level"]),
                message: Self::text(&r["message"]),
                line: Self::text(&r["line"]),
            })
            .collect()
    }

    /// Every application-version-set, oldest first.
    pub fn versions(&self) -> Vec<String> {
        self.records("version")
            .iter()
            .map(|r| Self::text(&r["version"]))
            .collect()
    }

    /// Every hook-tool call, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.records("calls")
            .iter()
            .map(|r| Call {
                hook: Self::text(&r["hook"]),
                tool: Self::text(&r["tool"]),
                args: r["args"]
                    .as_array()
                    .map(|a| a.iter().map(Self::text).collect())
                    .unwrap_or_default(),
                exit: r["exit"].as_i64().unwrap_or(-1),
                stderr: Self::text(&r["stderr"]),
            })
            .collect()
    }

    /// Every relation-set call (committed or not): (hook, relation id, settings).
    pub fn relation_sets(&self) -> Vec<(String, String, BTreeMap<String, String>)> {
        self.records("relation-set")
            .iter()
            .map(|r| {
                (
                    Self::text(&r["hook"]),
                    Self::text(&r["relation"]),
                    serde_json::from_value(r["settings"].clone()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The committed charm state (state-set).
    pub fn charm_state(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.read("charm-state.json")).unwrap_or_default()
    }

    /// What a reviewer reads: per hook, the `juju status` changes, `juju debug-log` lines,
    /// relation-set calls, failed tool calls, and what was committed.
    pub fn transcript(&self) -> String {
        fs::read_to_string(self.state_dir.join("transcript.log")).unwrap_or_default()
    }
}

/// network-get data as Juju 3.x prints it, with a fan bridge listed first.
pub fn fan_first_network() -> Value {
    json!({
        "bind-addresses": [
            {"mac-address": "", "interface-name": "fan-252",
             "addresses": [{"hostname": "", "value": "252.0.5.1", "cidr": "252.0.0.0/8"}]},
            {"mac-address": "00:16:3e:aa:bb:cc", "interface-name": "eth0",
             "addresses": [{"hostname": "", "value": "10.0.0.5", "cidr": "10.0.0.0/24"}]}
        ],
        "egress-subnets": ["10.0.0.5/32"],
        "ingress-addresses": ["10.0.0.5"]
    })
}

/// A hook prepared on a [`Unit`] that can run on another thread (a `Unit` itself is not
/// `Send`): for many units reconciling at once, or for killing a hook partway. It runs as
/// [`Unit::hook`] does (fresh environment, dispatch, buffered changes committed only on
/// exit 0), without the transcript narration.
#[derive(Debug)]
pub struct PreparedHook {
    pub hook: String,
    state_dir: PathBuf,
    charm_dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Unit {
    /// Prepare unit hook `hook` (`install`, `config-changed`, ...) through dispatch.
    pub fn prepare_hook(&self, hook: &str) -> PreparedHook {
        let mut env = self.hook_env(hook);
        env.insert("JUJU_DISPATCH_PATH".into(), format!("hooks/{hook}"));
        PreparedHook {
            hook: hook.to_string(),
            state_dir: self.state_dir.clone(),
            charm_dir: self.charm_dir.clone(),
            env,
        }
    }

    /// The path of this unit's charm binary as dispatch executes it: the program name of
    /// its hook processes (so a test can find, and kill, the one it started).
    pub fn binary_path(&self) -> PathBuf {
        self.charm_dir.join("bin").join("calico-charm")
    }
}

/// Tell the hook-tool emulator that keeps its state in `state_dir` that a hook begins or ends.
fn emulator_harness(state_dir: &Path, args: &[&str]) {
    let out = Command::new(python3())
        .arg(Path::new(REPO).join("tests/hooktools/hooktool.py"))
        .arg("harness")
        .arg(state_dir)
        .args(args)
        .output()
        .expect("run emulator harness");
    assert!(
        out.status.success(),
        "emulator harness {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hook run with its wall time and peak memory.
#[derive(Debug)]
pub struct MeasuredRun {
    pub run: HookRun,
    pub wall: Duration,
    /// `ru_maxrss` of the dispatch process tree (dispatch's sh, then the exec'd charm, and the
    /// hook tools it waited for), KiB. Its floor is the test process's own high-water mark
    /// (a child starts from its parent's, see BENCHMARKS.md).
    pub max_rss_kib: u64,
}

impl PreparedHook {
    /// Run the hook to its end, measuring wall time and peak RSS (`wait4`).
    // The child is reaped by `wait4`, which `Child` does not know about.
    #[allow(clippy::zombie_processes)]
    pub fn run_measured(self) -> MeasuredRun {
        use std::io::Read;
        emulator_harness(&self.state_dir, &["begin", &self.hook]);
        let started = Instant::now();
        let mut child = Command::new(self.charm_dir.join("dispatch"))
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.charm_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dispatch");
        let mut out_pipe = child.stdout.take().expect("stdout");
        let mut err_pipe = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out_pipe.read_to_end(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err_pipe.read_to_end(&mut s);
            s
        });
        let pid = child.id() as libc::pid_t;
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for our own child with valid out-pointers.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(waited, pid, "wait4");
        let wall = started.elapsed();
        let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        emulator_harness(
            &self.state_dir,
            &["end", &self.hook, &code.unwrap_or(-1).to_string()],
        );
        MeasuredRun {
            run: HookRun {
                hook: self.hook,
                code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                handler: "dispatch".into(),
            },
            wall,
            max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        }
    }

    /// Add an environment variable (e.g. JUJU_RELATION_ID for a relation hook).
    pub fn with_env(mut self, key: &str, value: &str) -> PreparedHook {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Run the hook to its end (or until it is killed).
    pub fn run(self) -> HookRun {
        emulator_harness(&self.state_dir, &["begin", &self.hook]);
        let out = Command::new(self.charm_dir.join("dispatch"))
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.charm_dir)
            .stdin(Stdio::null())
            .output()
            .expect("run dispatch");
        let code = out.status.code();
        emulator_harness(
            &self.state_dir,
            &["end", &self.hook, &code.unwrap_or(-1).to_string()],
        );
        HookRun {
            hook: self.hook,
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            handler: "dispatch".into(),
        }
    }
}

/// The hook succeeded; otherwise fail with its exit code, stderr and the unit's transcript.
pub fn assert_ok(unit: &Unit, run: &HookRun) {
    assert!(
        run.ok(),
        "hook {} exited {:?}\nstderr: {}\ntranscript:\n{}",
        run.hook,
        run.code,
        run.stderr,
        unit.transcript()
    );
}

/// The peer relation's id (endpoint `calico`) in the tests' units.
pub const PEER_RELATION: &str = "calico:9";

impl Unit {
    /// Bind `cni` to `address` (`IP/PREFIX`) on `eth0`, as `network-get cni` reports it.
    pub fn bind_cni_at(&self, address: &str) {
        let (ip, prefix) = address.split_once('/').expect("IP/PREFIX");
        let net: ipnetwork::IpNetwork = address.parse().expect("address");
        self.set_network(Some(json!({
            "bind-addresses": [{"interface-name": "eth0", "mac-address": "00:16:3e:00:00:01",
                "addresses": [{"hostname": "", "value": ip,
                               "cidr": format!("{}/{prefix}", net.network())}]}],
            "ingress-addresses": [ip],
        })));
    }

    /// Join the peer relation, with no peer data yet.
    pub fn join_peer_relation(&self) {
        self.edit_state("relations.json", |r| {
            r[PEER_RELATION] = json!({"endpoint": "calico", "remote-app": "calico",
                "remote-units": {}, "local": {}, "app": {}, "remote-app-data": {}});
        });
    }
}

/// Carry every unit's committed peer bag to the others, and the leader's application bag
/// to all (one application bag for the application's units: the leader writes it).
pub fn share_peer_data(units: &[&Unit]) {
    let bags: Vec<(String, Value, Value)> = units
        .iter()
        .map(|u| {
            let r = u.state("relations.json");
            (
                u.name.clone(),
                r[PEER_RELATION]["local"].clone(),
                r[PEER_RELATION]["app"].clone(),
            )
        })
        .collect();
    let app = bags
        .iter()
        .map(|b| b.2.clone())
        .find(|a| a.as_object().is_some_and(|m| !m.is_empty()))
        .unwrap_or_else(|| json!({}));
    for u in units {
        u.edit_state("relations.json", |r| {
            let mut remote = serde_json::Map::new();
            for (name, bag, _) in &bags {
                if *name != u.name {
                    remote.insert(name.clone(), bag.clone());
                }
            }
            r[PEER_RELATION]["remote-units"] = Value::Object(remote);
            r[PEER_RELATION]["app"] = app.clone();
            r[PEER_RELATION]["remote-app-data"] = app.clone();
        });
    }
}

/// The processes running `binary` (a unit's charm, which the test started).
fn pids_of(binary: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                cmd.split(|b| *b == 0).next() == Some(binary.as_os_str().as_encoded_bytes())
            })
        })
        .collect()
}

impl Unit {
    /// Run `hook` and SIGKILL the charm once `ready()` holds (or let it finish if it never
    /// does before the hook ends). Returns whether it was killed.
    pub fn run_killed_when(&self, hook: &str, ready: impl Fn() -> bool) -> bool {
        let job = self.prepare_hook(hook);
        let binary = self.binary_path();
        let handle = std::thread::spawn(move || job.run());
        let mut killed = false;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !handle.is_finished() && Instant::now() < deadline {
            if ready() {
                for pid in pids_of(&binary) {
                    let status = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    killed |= status.is_ok_and(|s| s.success());
                }
                if killed {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let run = handle.join().expect("hook thread");
        assert_eq!(run.code.is_none(), killed, "{run:?}");
        killed
    }
}
