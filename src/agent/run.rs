//! The daemon: `calico-charm agent --dir <dir>`.
//!
//! One single-threaded Tokio runtime. A session per desired generation: connect with the
//! kubeconfig the desired state names, then one watch per group of kept objects (same
//! apiVersion, kind and namespace), label-selected (`app.kubernetes.io/managed-by`, and for
//! BGPPeers the unit's own owner label) or, for this unit's Node and its calico-node pod,
//! field-selected: never every Node, never another unit's objects. Each watch lists once,
//! then watches from the list's resourceVersion; a dropped connection (an API server
//! restart) re-watches from the last resourceVersion seen (bookmarks keep it fresh), and
//! only "too old" (410) re-lists. Events go to one loop that compares each kept object with
//! what the server stored when the charm last applied it ([`super::drift`]) and corrects it
//! (server-side apply, the charm's field manager, forced) within the correction budget.
//!
//! The desired file is polled every [`POLL`]; a new generation ends the session and starts
//! another (an inactive one: the agent applies nothing and says so). SIGTERM or SIGINT ends
//! the process at once (exit 0).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, WatchEvent,
    WatchParams,
};
use kube::config::KubeConfigOptions;
use kube::{Client, Config};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::drift::{self, Budget, Decision, Key};
use super::files::{self, AgentDesired, AgentState, Conflict, DESIRED_FILE, HEARTBEAT, STATE_FILE};
use crate::calico::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL, UNIT_LABEL};

/// How often the desired file is looked at.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// How often the leader re-counts the Nodes (one `limit=1` list).
pub(crate) const COUNT_EVERY: Duration = Duration::from_secs(300);
/// Server-side watch timeout (the API server ends a watch after this; it is re-made from
/// the last resourceVersion).
pub(crate) const WATCH_TIMEOUT_SECS: u32 = 290;
/// At most this many corrections per second, all objects together.
pub(crate) const MAX_PER_SECOND: usize = 10;

/// `calico-charm agent`.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The unit's agent directory (desired.json, state.json).
    #[arg(long)]
    pub dir: PathBuf,
}

/// Run the agent until SIGTERM/SIGINT.
pub fn main(args: &AgentArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args.dir.clone()))?;
    Ok(ExitCode::SUCCESS)
}

/// What a session ended on.
enum End {
    Signal,
    NewDesired,
}

async fn run(dir: PathBuf) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut state = AgentState {
        pid: std::process::id(),
        ..AgentState::default()
    };
    loop {
        let desired: Option<AgentDesired> = match files::read_json(&dir.join(DESIRED_FILE)) {
            Ok(d) => d,
            Err(e) => {
                state.last_error = Some(crate::redact::status_line(&e.to_string()));
                None
            }
        };
        let end = match desired {
            Some(d) if d.active => {
                let mut session = Session::new(dir.clone(), d, state.clone());
                let end = session.run(&mut term, &mut int).await;
                state = session.state;
                end
            }
            other => {
                // Nothing to act on: say so and wait for a new desired state.
                state.acting = false;
                state.watches_healthy = false;
                state.generation = other.map(|d| d.generation).unwrap_or_default();
                idle(&dir, &mut state, &mut term, &mut int).await
            }
        };
        if matches!(end, End::Signal) {
            return Ok(());
        }
    }
}

fn write_state(dir: &Path, state: &mut AgentState) {
    state.heartbeat = files::now();
    if let Err(e) = files::write_json(&dir.join(STATE_FILE), state) {
        tracing::warn!("agent state: {e}");
    }
}

fn desired_generation(dir: &Path) -> Option<String> {
    files::read_json::<AgentDesired>(&dir.join(DESIRED_FILE))
        .ok()
        .flatten()
        .map(|d| d.generation)
}

async fn idle(
    dir: &Path,
    state: &mut AgentState,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> End {
    write_state(dir, state);
    let mut poll = tokio::time::interval(POLL);
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = term.recv() => return End::Signal,
            _ = int.recv() => return End::Signal,
            _ = beat.tick() => write_state(dir, state),
            _ = poll.tick() => {
                if desired_generation(dir).unwrap_or_default() != state.generation {
                    return End::NewDesired;
                }
            }
        }
    }
}

/// A client for a long-running process: no per-hook retry budget, no read timeout (a watch
/// is quiet for minutes), the charm's user agent.
pub async fn connect(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = crate::apply::kubeconfig::load(kubeconfig)?;
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.accept_invalid_certs = false;
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = None;
    config.write_timeout = Some(Duration::from_secs(15));
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("calico-charm-agent/", env!("CARGO_PKG_VERSION"))),
    ));
    Ok(Client::try_from(config)?)
}

/// A group of objects one watch covers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Group {
    api_version: String,
    kind: String,
    namespace: String,
    labels: Option<String>,
    fields: Option<String>,
}

impl Group {
    fn api(&self, client: &Client) -> Api<DynamicObject> {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", self.api_version.as_str()),
        };
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &self.kind));
        if self.namespace.is_empty() {
            Api::all_with(client.clone(), &ar)
        } else {
            Api::namespaced_with(client.clone(), &self.namespace, &ar)
        }
    }

    fn name(&self) -> String {
        if self.namespace.is_empty() {
            self.kind.clone()
        } else {
            format!("{}/{}", self.namespace, self.kind)
        }
    }
}

/// What a watch task tells the loop.
enum Msg {
    /// The group's objects as listed (a fresh list: anything kept and absent is gone).
    Listed(usize, Vec<Value>),
    Upsert(Value),
    Deleted(Value),
    /// The watch is up (true) or failing (false, with the cause).
    Health(usize, bool, Option<String>),
}

/// Report the group unhealthy with `cause`, then wait `backoff` and double it (up to 1 s).
/// False when the loop has gone (the task ends).
async fn failed(
    tx: &mpsc::Sender<Msg>,
    index: usize,
    cause: String,
    backoff: &mut Duration,
) -> bool {
    if tx
        .send(Msg::Health(index, false, Some(cause)))
        .await
        .is_err()
    {
        return false;
    }
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(1));
    true
}

async fn watch_group(index: usize, group: Group, client: Client, tx: mpsc::Sender<Msg>) {
    let api = group.api(&client);
    let mut lp = ListParams::default();
    let mut wp = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    if let Some(l) = &group.labels {
        lp = lp.labels(l);
        wp = wp.labels(l);
    }
    if let Some(f) = &group.fields {
        lp = lp.fields(f);
        wp = wp.fields(f);
    }
    let mut backoff = Duration::from_millis(100);
    let mut rv: Option<String> = None;
    loop {
        if rv.is_none() {
            match api.list(&lp).await {
                Ok(list) => {
                    rv = list.metadata.resource_version.clone();
                    let items = list
                        .items
                        .into_iter()
                        .filter_map(|o| serde_json::to_value(o).ok())
                        .map(|v| with_type(v, &group))
                        .collect();
                    if tx.send(Msg::Listed(index, items)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let cause = format!("list {}: {}", group.name(), e);
                    if !failed(&tx, index, cause, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let from = rv.clone().unwrap_or_default();
        let stream = match api.watch(&wp, &from).await {
            Ok(s) => s,
            Err(e) => {
                let cause = format!("watch {}: {}", group.name(), e);
                if !failed(&tx, index, cause, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        if tx.send(Msg::Health(index, true, None)).await.is_err() {
            return;
        }
        backoff = Duration::from_millis(100);
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let msg = match event {
                Ok(WatchEvent::Added(o)) | Ok(WatchEvent::Modified(o)) => {
                    rv = o.metadata.resource_version.clone().or(rv);
                    serde_json::to_value(o)
                        .ok()
                        .map(|v| Msg::Upsert(with_type(v, &group)))
                }
                Ok(WatchEvent::Deleted(o)) => {
                    rv = o.metadata.resource_version.clone().or(rv);
                    serde_json::to_value(o)
                        .ok()
                        .map(|v| Msg::Deleted(with_type(v, &group)))
                }
                Ok(WatchEvent::Bookmark(b)) => {
                    rv = Some(b.metadata.resource_version);
                    None
                }
                Ok(WatchEvent::Error(e)) if e.code == 410 => {
                    // Too old: list again.
                    rv = None;
                    break;
                }
                Ok(WatchEvent::Error(e)) => Some(Msg::Health(
                    index,
                    false,
                    Some(format!("watch {}: {}", group.name(), e.message)),
                )),
                Err(e) => Some(Msg::Health(
                    index,
                    false,
                    Some(format!("watch {}: {}", group.name(), e)),
                )),
            };
            if let Some(msg) = msg
                && tx.send(msg).await.is_err()
            {
                return;
            }
        }
        // The stream ended (server timeout, or the connection dropped): watch again from the
        // last resourceVersion after a short pause.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Watch events carry objects without `apiVersion`/`kind` for dynamic types: put them back.
fn with_type(mut v: Value, group: &Group) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), json!(group.api_version));
        o.insert("kind".into(), json!(group.kind));
    }
    v
}

struct Session {
    dir: PathBuf,
    desired: AgentDesired,
    state: AgentState,
    /// Kept objects by key.
    wanted: BTreeMap<Key, Value>,
    node_key: Key,
    live: HashMap<Key, Value>,
    /// The desired fields as the server stored them after the charm's last apply.
    expected: HashMap<Key, Value>,
    budgets: HashMap<Key, Budget>,
    due: BTreeMap<Key, Instant>,
    conflicted: BTreeSet<Key>,
    groups: Vec<Group>,
    listed: Vec<bool>,
    healthy: Vec<bool>,
    recent: std::collections::VecDeque<Instant>,
    dirty: bool,
}

impl Session {
    fn new(dir: PathBuf, desired: AgentDesired, mut state: AgentState) -> Session {
        let wanted: BTreeMap<Key, Value> = desired
            .objects
            .iter()
            .filter_map(|o| Key::of(o).map(|k| (k, o.clone())))
            .collect();
        let node_key = Key {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: String::new(),
            name: desired.node.clone(),
        };
        let mut groups: BTreeSet<Group> = wanted
            .keys()
            .map(|k| Group {
                api_version: k.api_version.clone(),
                kind: k.kind.clone(),
                namespace: k.namespace.clone(),
                labels: Some(if k.kind == "BGPPeer" {
                    format!(
                        "{MANAGED_BY_LABEL}={MANAGED_BY},{UNIT_LABEL}={}",
                        desired.owner
                    )
                } else {
                    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
                }),
                fields: None,
            })
            .collect();
        // Peers are watched even when the unit has none (the hook may have decided none).
        groups.insert(Group {
            api_version: format!("{}/{}", crate::calico::GROUP, crate::calico::VERSION),
            kind: "BGPPeer".into(),
            namespace: String::new(),
            labels: Some(format!(
                "{MANAGED_BY_LABEL}={MANAGED_BY},{UNIT_LABEL}={}",
                desired.owner
            )),
            fields: None,
        });
        let mut groups: Vec<Group> = groups.into_iter().collect();
        groups.push(Group {
            api_version: "v1".into(),
            kind: "Node".into(),
            namespace: String::new(),
            labels: None,
            fields: Some(format!("metadata.name={}", desired.node)),
        });
        groups.push(Group {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: crate::render::workloads::NAMESPACE.into(),
            labels: Some(crate::render::workloads::CALICO_NODE_SELECTOR.into()),
            fields: Some(format!("spec.nodeName={}", desired.node)),
        });
        state.generation = desired.generation.clone();
        state.acting = true;
        state.watches_healthy = false;
        state.conflicts.clear();
        state.last_sync = 0;
        state.node_agent = None;
        let n = groups.len();
        Session {
            dir,
            desired,
            state,
            wanted,
            node_key,
            live: HashMap::new(),
            expected: HashMap::new(),
            budgets: HashMap::new(),
            due: BTreeMap::new(),
            conflicted: BTreeSet::new(),
            groups,
            listed: vec![false; n],
            healthy: vec![false; n],
            recent: std::collections::VecDeque::new(),
            dirty: true,
        }
    }

    async fn run(
        &mut self,
        term: &mut tokio::signal::unix::Signal,
        int: &mut tokio::signal::unix::Signal,
    ) -> End {
        write_state(&self.dir, &mut self.state);
        let mut poll = tokio::time::interval(POLL);
        // Connect (retrying) while still answering signals and new desired states.
        let client = loop {
            match connect(&self.desired.kubeconfig).await {
                Ok(c) => break c,
                Err(e) => {
                    self.state.last_error = Some(crate::redact::status_line(&format!("{e:#}")));
                    write_state(&self.dir, &mut self.state);
                }
            }
            let wait = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = term.recv() => return End::Signal,
                    _ = int.recv() => return End::Signal,
                    _ = &mut wait => break,
                    _ = poll.tick() => {
                        if desired_generation(&self.dir).unwrap_or_default() != self.desired.generation {
                            return End::NewDesired;
                        }
                    }
                }
            }
        };
        if self.desired.leader {
            self.leader_facts(&client).await;
        }
        let (tx, mut rx) = mpsc::channel(256);
        let mut tasks = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            tasks.push(tokio::spawn(watch_group(
                i,
                g.clone(),
                client.clone(),
                tx.clone(),
            )));
        }
        drop(tx);
        let abort = |tasks: &mut Vec<tokio::task::JoinHandle<()>>| {
            for t in tasks.drain(..) {
                t.abort();
            }
        };
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut count = tokio::time::interval(COUNT_EVERY);
        count.tick().await;
        loop {
            let next_due = self.due.values().min().copied();
            let sleep = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term.recv() => { abort(&mut tasks); return End::Signal; }
                _ = int.recv() => { abort(&mut tasks); return End::Signal; }
                msg = rx.recv() => match msg {
                    Some(m) => self.handle(&client, m).await,
                    None => { abort(&mut tasks); return End::NewDesired; }
                },
                _ = sleep => self.correct_due(&client).await,
                _ = beat.tick() => self.dirty = true,
                _ = count.tick() => {
                    if self.desired.leader {
                        self.leader_facts(&client).await;
                    }
                }
                _ = poll.tick() => {
                    if desired_generation(&self.dir).unwrap_or_default() != self.desired.generation {
                        abort(&mut tasks);
                        return End::NewDesired;
                    }
                }
            }
            if self.dirty {
                self.dirty = false;
                self.refresh_sync();
                write_state(&self.dir, &mut self.state);
            }
        }
    }

    async fn leader_facts(&mut self, client: &Client) {
        if let Ok(n) = crate::apply::kube::count_nodes(client).await {
            self.state.nodes = Some(n);
        }
        if self.state.kubernetes.is_none()
            && let Ok(info) = client.apiserver_version().await
        {
            self.state.kubernetes =
                crate::config::support::parse_kubernetes_version(&info.major, &info.minor);
        }
        self.dirty = true;
    }

    fn refresh_sync(&mut self) {
        let all_up = self.healthy.iter().all(|h| *h) && self.listed.iter().all(|l| *l);
        self.state.watches_healthy = all_up;
        if all_up && self.due.is_empty() {
            self.state.last_sync = files::now();
            self.state.last_error = None;
        }
        self.state.conflicts = self
            .conflicted
            .iter()
            .map(|k| Conflict {
                object: k.display(),
                manager: self
                    .live
                    .get(k)
                    .and_then(drift::other_manager)
                    .unwrap_or_else(|| "another manager".into()),
            })
            .collect();
    }

    async fn handle(&mut self, client: &Client, msg: Msg) {
        match msg {
            Msg::Health(i, up, cause) => {
                if let Some(h) = self.healthy.get_mut(i) {
                    *h = up;
                }
                if let Some(c) = cause {
                    tracing::warn!("agent: {c}");
                    self.state.last_error = Some(crate::redact::status_line(&c));
                }
                self.dirty = true;
            }
            Msg::Listed(i, items) => {
                let group = self.groups[i].clone();
                if let Some(l) = self.listed.get_mut(i) {
                    *l = true;
                }
                if let Some(h) = self.healthy.get_mut(i) {
                    *h = true;
                }
                let seen: BTreeSet<Key> = items.iter().filter_map(Key::of).collect();
                // What this group covers and is no longer listed is gone.
                let gone: Vec<Key> = self
                    .live
                    .keys()
                    .filter(|k| {
                        k.kind == group.kind
                            && k.namespace == group.namespace
                            && k.api_version == group.api_version
                            && !seen.contains(k)
                    })
                    .cloned()
                    .collect();
                for k in gone {
                    self.live.remove(&k);
                }
                for item in items {
                    self.observe(item);
                }
                let keys: Vec<Key> = self
                    .wanted
                    .keys()
                    .filter(|k| {
                        k.kind == group.kind
                            && k.namespace == group.namespace
                            && k.api_version == group.api_version
                    })
                    .cloned()
                    .collect();
                for k in keys {
                    self.check(client, &k).await;
                }
                if group.kind == "Node" {
                    let k = self.node_key.clone();
                    self.check(client, &k).await;
                }
                self.dirty = true;
            }
            Msg::Upsert(v) => {
                if let Some(k) = self.observe(v) {
                    self.check(client, &k).await;
                }
            }
            Msg::Deleted(v) => {
                if let Some(k) = Key::of(&v) {
                    if k.kind == "Pod" {
                        self.state.node_agent = Some("missing".into());
                        self.dirty = true;
                    }
                    self.live.remove(&k);
                    self.check(client, &k).await;
                }
            }
        }
    }

    /// Record a live object; returns its key.
    fn observe(&mut self, v: Value) -> Option<Key> {
        let k = Key::of(&v)?;
        if k.kind == "Pod" {
            let verdict = serde_json::from_value::<Pod>(v.clone())
                .map(|p| match crate::apply::readiness::pod_ready(&p) {
                    Ok(()) => "ready".to_string(),
                    Err(reason) => reason,
                })
                .unwrap_or_else(|e| e.to_string());
            if self.state.node_agent.as_deref() != Some(verdict.as_str()) {
                self.state.node_agent = Some(verdict);
                self.dirty = true;
            }
            return None;
        }
        self.live.insert(k.clone(), v);
        Some(k)
    }

    fn drifted(&self, k: &Key) -> Option<bool> {
        if *k == self.node_key {
            let live = self.live.get(k)?;
            return Some(drift::node_drifted(
                &self.desired.node_annotations,
                &drift::annotations(live),
            ));
        }
        let want = self.wanted.get(k)?;
        let Some(live) = self.live.get(k) else {
            return Some(true);
        };
        let expected = self.expected.get(k)?;
        Some(drift::project(want, live) != *expected)
    }

    async fn check(&mut self, client: &Client, k: &Key) {
        if self.conflicted.contains(k) {
            return;
        }
        if self.wanted.contains_key(k)
            && !self.expected.contains_key(k)
            && self.live.contains_key(k)
        {
            // No baseline yet (first sight since start): what would the server store? A
            // dry-run apply says, without writing.
            self.baseline(client, k).await;
        }
        if self.drifted(k) != Some(true) {
            if self.due.remove(k).is_some() {
                self.dirty = true;
            }
            return;
        }
        let now = Instant::now();
        match self.budgets.entry(k.clone()).or_default().decide(now) {
            Decision::After(delay) => {
                let at = now + delay;
                let slot = self.due.entry(k.clone()).or_insert(at);
                if *slot > at {
                    *slot = at;
                }
            }
            Decision::Conflict => {
                let manager = self
                    .live
                    .get(k)
                    .and_then(drift::other_manager)
                    .unwrap_or_else(|| "another manager".into());
                tracing::warn!(
                    "agent: {} keeps being changed by {manager}: not corrected again until the \
                     next hook",
                    k.display()
                );
                self.conflicted.insert(k.clone());
                self.due.remove(k);
            }
        }
        self.dirty = true;
    }

    fn object_api(&self, client: &Client, k: &Key) -> Api<DynamicObject> {
        Group {
            api_version: k.api_version.clone(),
            kind: k.kind.clone(),
            namespace: k.namespace.clone(),
            labels: None,
            fields: None,
        }
        .api(client)
    }

    fn body(&self, k: &Key) -> Option<Value> {
        if *k == self.node_key {
            let live = self.live.get(k)?;
            let want = drift::node_want(&self.desired.node_annotations, &drift::annotations(live));
            return Some(json!({"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": k.name, "annotations": want}}));
        }
        self.wanted.get(k).cloned()
    }

    async fn baseline(&mut self, client: &Client, k: &Key) {
        let Some(body) = self.body(k) else { return };
        let mut pp = PatchParams::apply(FIELD_MANAGER).force();
        pp.dry_run = true;
        match self
            .object_api(client, k)
            .patch(&k.name, &pp, &Patch::Apply(&body))
            .await
        {
            Ok(stored) => {
                if let Ok(v) = serde_json::to_value(stored) {
                    self.expected.insert(k.clone(), drift::project(&body, &v));
                }
            }
            Err(e) => {
                self.state.last_error = Some(crate::redact::status_line(&format!(
                    "dry-run {}: {e}",
                    k.display()
                )));
                self.dirty = true;
            }
        }
    }

    async fn correct_due(&mut self, client: &Client) {
        let now = Instant::now();
        let ready: Vec<Key> = self
            .due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ready {
            while self
                .recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= MAX_PER_SECOND {
                // Rate limit: try again in a while.
                self.due.insert(k, now + Duration::from_millis(200));
                continue;
            }
            self.due.remove(&k);
            if self.drifted(&k) != Some(true) {
                continue;
            }
            self.apply(client, &k).await;
        }
        self.dirty = true;
    }

    async fn apply(&mut self, client: &Client, k: &Key) {
        let Some(body) = self.body(k) else { return };
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let api = self.object_api(client, k);
        let now = Instant::now();
        self.recent.push_back(now);
        self.budgets.entry(k.clone()).or_default().record(now);
        match api.patch(&k.name, &pp, &Patch::Apply(&body)).await {
            Ok(stored) => {
                self.state.corrections += 1;
                tracing::info!("agent: corrected {}", k.display());
                if let Ok(v) = serde_json::to_value(stored) {
                    let v = with_type(
                        v,
                        &Group {
                            api_version: k.api_version.clone(),
                            kind: k.kind.clone(),
                            namespace: k.namespace.clone(),
                            labels: None,
                            fields: None,
                        },
                    );
                    self.expected.insert(k.clone(), drift::project(&body, &v));
                    self.live.insert(k.clone(), v);
                }
            }
            Err(e) => {
                let cause = format!("apply {}: {e}", k.display());
                tracing::warn!("agent: {cause}");
                self.state.last_error = Some(crate::redact::status_line(&cause));
                // Try again later, within the same budget.
                let delay = drift::MAX_BACKOFF.min(Duration::from_secs(2));
                self.due.insert(k.clone(), now + delay);
            }
        }
    }
}
