//! `CALICO_BENCH_SCALE=1 cargo bench --bench hook`: the charm at 1000 nodes (issue 14).
//!
//! A real control plane (tests/support/envtest.rs, through the logging proxy) holding
//! `CALICO_BENCH_SCALE_NODES` (default 1000) Node objects, each with a Running and Ready
//! calico-node pod and an IPAM block, and as many units (`calico/0` the leader), each with
//! its own stand-in hook tools, CNI dir and agent dir. Hooks run through `charm/dispatch`
//! of the bench's release binary, 8 at a time (Juju runs hooks of different machines in
//! parallel; the leader's hook first, alone, so its requests are counted apart). Rounds:
//!
//! 1. deploy: `install` on every unit (fresh cluster but for the upstream CRDs: the leader
//!    applies CRDs, pools, workloads; every unit its peers and Node annotations);
//! 2. no-op: `update-status` on every unit;
//! 3. config change: `config-changed` after a global BGP peer is added (every unit applies
//!    one more BGPPeer);
//! 4. no-op again.
//!
//! Per round: requests of the hooks from the real API server's audit log (user
//! `calico-charm`, user agent `calico-charm/...`), in total, for the leader, and per
//! non-leader unit (total over the non-leaders divided by their number; every non-leader
//! does the same work), and how many were writes; the wall time of each hook (spawn to exit)
//! as median and p99; the round's wall time; the API server's own CPU time (utime + stime of
//! the kube-apiserver process from /proc) during the round.
//!
//! `CALICO_BENCH_SCALE_ROUNDS` picks the rounds after the deploy (`noop`, `config`,
//! `noop-again`, comma-separated; all by default). Each round's row is printed as soon as
//! it ends. In each round the leader's hook runs alone first, then the hook of the
//! non-leader whose agent runs (`calico/<nodes/2>`), each counted apart, then the others.
//!
//! Agents: after the deploy, the agents of the leader and of one non-leader run as processes
//! (as systemd would run them): their resident memory (VmRSS, VmHWM from /proc) with the
//! 1000 nodes in the cluster, their CPU time over an idle period, their own requests, and the
//! requests of those two units' update-status hooks while their agents are in sync.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BenchResult, Unit, charm_dir, cluster, config, hook_env, mkdir};

const PARALLEL: usize = 8;

struct Scale {
    charm: PathBuf,
    kubeconfig: PathBuf,
    root: PathBuf,
    server: support::apiserver::TestApiServer,
    api_pid: u32,
}

use super::support;

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the command.
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

/// `VmRSS` and `VmHWM` of `pid` in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl Scale {
    fn agent_dir(&self, unit: &Unit) -> PathBuf {
        self.root
            .join("agent")
            .join(format!("calico-{}", unit.index))
    }

    fn command(&self, unit: &Unit, hook: &str) -> Command {
        let mut c = Command::new(self.charm.join("dispatch"));
        c.current_dir(&self.charm)
            .env_clear()
            .envs(hook_env(
                &self.charm,
                &self.kubeconfig,
                unit,
                hook,
                "/usr/bin:/bin",
            ))
            .env("CALICO_CHARM_AGENT_DIR", self.root.join("agent"))
            .env(
                "CALICO_CHARM_SYSTEMD_DIR",
                unit.tools.parent().unwrap_or(&unit.tools).join("systemd"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Run `hook` on `units`, `parallel` at a time: the wall time of each.
    fn round(&self, units: &[&Unit], hook: &str, parallel: usize) -> BenchResult<Vec<Duration>> {
        let queue = Mutex::new(units.iter().rev().copied().collect::<Vec<_>>());
        let times = Mutex::new(Vec::new());
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..parallel {
                scope.spawn(|| {
                    while let Some(unit) = queue.lock().ok().and_then(|mut q| q.pop()) {
                        let started = Instant::now();
                        let status = self.command(unit, hook).status();
                        let took = started.elapsed();
                        match status {
                            Ok(s) if s.success() => {
                                if let Ok(mut t) = times.lock() {
                                    t.push(took);
                                }
                            }
                            other => {
                                if let Ok(mut f) = failures.lock() {
                                    f.push(format!("{hook} of {}: {other:?}", unit.name()));
                                }
                            }
                        }
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap_or_default();
        if let Some(f) = failures.first() {
            return Err(format!("{} hooks failed, first: {f}", failures.len()));
        }
        Ok(times.into_inner().unwrap_or_default())
    }

    /// The hooks' audit events since `mark`: (total, writes, by verb).
    fn hook_requests(&self, mark: usize) -> (usize, usize, BTreeMap<String, usize>) {
        let mut by_verb = BTreeMap::new();
        let (mut total, mut writes) = (0, 0);
        for e in self.server.plane().audit_since(mark) {
            if e.user == "calico-charm" && e.user_agent.starts_with("calico-charm/") {
                total += 1;
                if e.is_write() {
                    writes += 1;
                }
                *by_verb.entry(e.verb).or_insert(0) += 1;
            }
        }
        (total, writes, by_verb)
    }
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    times.sort_unstable();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i.min(times.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct RoundRow {
    name: &'static str,
    leader: (usize, usize),
    /// The non-leader whose agent runs (after the deploy), its hook run alone.
    agent_unit: (usize, usize),
    others: (usize, usize),
    non_leaders: usize,
    median: Duration,
    p99: Duration,
    wall: Duration,
    api_cpu: f64,
    by_verb: BTreeMap<String, usize>,
}

impl RoundRow {
    /// The row of the figures table.
    fn line(&self) -> String {
        // Every non-leader: the agent-backed one and the rest.
        let n = self.non_leaders.max(1) as f64;
        let total = self.others.0 + self.agent_unit.0;
        let writes = self.others.1 + self.agent_unit.1;
        format!(
            "| {} | {} ({}) | {:.2} ({:.2}) | {} ({}) | {} | {:.0} ms | {:.0} ms | {:.1} s | {:.1} s |",
            self.name,
            self.leader.0,
            self.leader.1,
            total as f64 / n,
            writes as f64 / n,
            self.agent_unit.0,
            self.agent_unit.1,
            self.leader.0 + total,
            ms(self.median),
            ms(self.p99),
            self.wall.as_secs_f64(),
            self.api_cpu
        )
    }
}

const HEADER: &str = "| round | leader requests (writes) | per non-leader unit (writes) | the non-leader with its agent (writes) | total | hook wall median | p99 | round wall | API server CPU |\n|---|---|---|---|---|---|---|---|---|";

/// One round: the leader's hook alone, then `solo`'s (the agent-backed non-leader) alone,
/// then every other unit's, [`PARALLEL`] at a time. The row is printed at once, so that a
/// run stopped early still leaves its figures.
fn measure_round(
    s: &Scale,
    units: &[Unit],
    solo: usize,
    name: &'static str,
    hook: &str,
) -> BenchResult<RoundRow> {
    let cpu0 = cpu_seconds(s.api_pid);
    let started = Instant::now();
    let mark = s.server.plane().audit_mark();
    let mut times = s.round(&[&units[0]], hook, 1)?;
    let (lt, lw, _) = s.hook_requests(mark);
    let mark1 = s.server.plane().audit_mark();
    times.extend(s.round(&[&units[solo]], hook, 1)?);
    let (at, aw, _) = s.hook_requests(mark1);
    let mark2 = s.server.plane().audit_mark();
    let rest: Vec<&Unit> = units[1..].iter().filter(|u| u.index != solo).collect();
    times.extend(s.round(&rest, hook, PARALLEL)?);
    let wall = started.elapsed();
    // The audit log is written as requests complete: give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let api_cpu = cpu_seconds(s.api_pid) - cpu0;
    let (ot, ow, by_verb) = s.hook_requests(mark2);
    let mut sorted = times.clone();
    let row = RoundRow {
        name,
        leader: (lt, lw),
        agent_unit: (at, aw),
        others: (ot, ow),
        non_leaders: rest.len() + 1,
        median: percentile(&mut sorted, 0.5),
        p99: percentile(&mut sorted, 0.99),
        wall,
        api_cpu,
        by_verb,
    };
    eprintln!(
        "{name}: {:.1} s, leader {lt} requests, calico/{solo} {at}, other non-leaders {ot} requests ({ow} writes)",
        wall.as_secs_f64()
    );
    println!("{}", row.line());
    let verbs: Vec<String> = row
        .by_verb
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!("  (other non-leaders by verb: {})", verbs.join(", "));
    Ok(row)
}

/// Whether round `name` runs: `CALICO_BENCH_SCALE_ROUNDS` lists the rounds after the
/// deploy (`noop`, `config`, `noop-again`), comma-separated; unset: all of them.
fn wanted(name: &str) -> bool {
    match std::env::var("CALICO_BENCH_SCALE_ROUNDS") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|r| r.trim() == name),
        _ => true,
    }
}

fn start_agent(binary: &Path, dir: &Path) -> BenchResult<Child> {
    Command::new(binary)
        .args(["agent", "--dir"])
        .arg(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start agent: {e}"))
}

fn agent_state(dir: &Path) -> Value {
    fs::read_to_string(dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn wait_synced(dir: &Path, limit: Duration) -> BenchResult<Value> {
    let started = Instant::now();
    loop {
        let s = agent_state(dir);
        if s["acting"] == true
            && s["watches_healthy"] == true
            && s["last_sync"].as_u64() > Some(0)
            && s["node_agent"].is_string()
        {
            return Ok(s);
        }
        if started.elapsed() > limit {
            return Err(format!("agent in {} not synced: {s}", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the scale benchmark and print its figures (Markdown).
pub fn run(binary: &Path) -> BenchResult<()> {
    let nodes: usize = std::env::var("CALICO_BENCH_SCALE_NODES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 1)
        .unwrap_or(1000);
    let tmp = tempfile::Builder::new()
        .prefix("calico-scale-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let root = tmp.path().to_path_buf();
    let seeded = Instant::now();
    let server = cluster(nodes)?;
    let api_pid = support::envtest::CHILDREN
        .lock()
        .ok()
        .and_then(|c| c.last().copied())
        .ok_or("no kube-apiserver pid")?;
    let kubeconfig = root.join("kubeconfig");
    server
        .write_kubeconfig(&kubeconfig)
        .map_err(|e| format!("kubeconfig: {e}"))?;
    let s = Scale {
        charm: charm_dir(&root, binary)?,
        kubeconfig,
        root: root.clone(),
        server,
        api_pid,
    };
    mkdir(&root.join("agent"))?;
    let units: Vec<Unit> = (0..nodes)
        .map(|i| Unit::new(&root, i, i == 0))
        .collect::<BenchResult<_>>()?;
    for u in &units {
        // systemctl is answered by the stand-in too (it records the call, does nothing).
        symlink("hook-tool", u.tools.join("systemctl")).map_err(|e| format!("link: {e}"))?;
    }
    eprintln!(
        "{nodes} nodes and units seeded in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    println!("\n## {nodes} nodes, {nodes} units, hooks {PARALLEL} at a time\n");
    println!("{HEADER}");
    let solo = nodes / 2;
    let mut rows = vec![measure_round(
        &s,
        &units,
        solo,
        "deploy (install)",
        "install",
    )?];

    // Two agents, as systemd would run them, with every node in the cluster.
    let measured = [0, solo];
    let agent_mark = s.server.plane().audit_mark();
    let agent_started = Instant::now();
    let mut agents = Vec::new();
    for &i in &measured {
        agents.push((i, start_agent(binary, &s.agent_dir(&units[i]))?));
    }
    for &i in &measured {
        wait_synced(&s.agent_dir(&units[i]), Duration::from_secs(60))?;
    }
    let sync_time = agent_started.elapsed();
    let agent_start_requests = s
        .server
        .plane()
        .audit_since(agent_mark)
        .iter()
        .filter(|e| e.user_agent.starts_with("calico-charm-agent/"))
        .count();
    if wanted("noop") {
        rows.push(measure_round(
            &s,
            &units,
            solo,
            "no-op (update-status)",
            "update-status",
        )?);
    }
    for u in &units {
        u.answer("config-get", &config(true))?;
    }
    if wanted("config") {
        rows.push(measure_round(
            &s,
            &units,
            solo,
            "config change (a global peer added)",
            "config-changed",
        )?);
    }
    if wanted("noop-again") {
        rows.push(measure_round(
            &s,
            &units,
            solo,
            "no-op again",
            "update-status",
        )?);
    }

    // The agent-backed units' update-status: in sync, no request.
    for &i in &measured {
        wait_synced(&s.agent_dir(&units[i]), Duration::from_secs(30))?;
    }
    let mark = s.server.plane().audit_mark();
    for &i in &measured {
        s.round(&[&units[i]], "update-status", 1)?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let (with_agent, _, _) = s.hook_requests(mark);
    // Idle agents: CPU over 20 s, requests in that time.
    let idle_mark = s.server.plane().audit_mark();
    let cpu0: Vec<f64> = agents.iter().map(|(_, c)| cpu_seconds(c.id())).collect();
    std::thread::sleep(Duration::from_secs(20));
    let cpu1: Vec<f64> = agents.iter().map(|(_, c)| cpu_seconds(c.id())).collect();
    let idle_requests = s
        .server
        .plane()
        .audit_since(idle_mark)
        .iter()
        .filter(|e| e.user_agent.starts_with("calico-charm-agent/"))
        .count();
    let memory: Vec<(usize, (u64, u64))> = agents
        .iter()
        .map(|(i, c)| (*i, memory_kib(c.id())))
        .collect();
    for (_, mut c) in agents {
        let _ = c.kill();
        let _ = c.wait();
    }

    println!("\n## {nodes} nodes, {nodes} units, hooks {PARALLEL} at a time (again)\n");
    println!("{HEADER}");
    for r in &rows {
        println!("{}", r.line());
    }
    println!("\nNon-leaders' requests by verb:\n");
    for r in &rows {
        let verbs: Vec<String> = r.by_verb.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!("- {}: {}", r.name, verbs.join(", "));
    }
    println!(
        "\n## The agents ({} and {})\n",
        units[0].name(),
        units[nodes / 2].name()
    );
    println!(
        "- started and synced in {:.1} s with {agent_start_requests} requests (lists, watches, dry-run applies)",
        sync_time.as_secs_f64()
    );
    for ((i, (rss, hwm)), (c0, c1)) in memory.iter().zip(cpu0.iter().zip(&cpu1)) {
        println!(
            "- calico/{i}: RSS {:.1} MiB (peak {:.1} MiB); CPU {:.3} s over 20 s idle",
            *rss as f64 / 1024.0,
            *hwm as f64 / 1024.0,
            c1 - c0
        );
    }
    println!("- requests of both agents over those 20 s idle: {idle_requests}");
    println!(
        "- update-status of these two units with their agents in sync: {with_agent} requests in total"
    );
    Ok(())
}
