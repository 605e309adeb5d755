//! One holistic, idempotent reconcile per hook.
//!
//! ```text
//! status maintenance -> config-get (over config.yaml defaults) -> validate
//!   -> publish cidr/cni-conf-file on every cni relation, read kubeconfig-hash/service-cidr
//!   -> [invalid config: blocked, stop] -> [no kubeconfig-hash: waiting, stop]
//!   -> is-leader, network-get cni, node name -> render -> Cluster::converge -> status, version
//! ```
//!
//! Nothing depends on which event fired, so any hook repairs what an interrupted one left.
//! Invalid config and a cluster that cannot be reached end the hook with exit 0 (the status
//! says why); only an unexpected fault (a hook tool missing or failing) is an error.
//! Every input is read afresh from Juju each hook; `state-set` keeps only two decisions that
//! must not be made again: the datastore chosen at deployment ([`crate::mode`]) and, on the
//! leader, that the earlier charm's workload objects were adopted.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::apply::Cluster;
use crate::config::options::RawConfig;
use crate::config::{ConfigError, Image, Validated};
use crate::host::Host;
use crate::juju::env::UnknownDispatchPath;
use crate::juju::tools::ToolStats;
use crate::juju::{Event, HookEnv, HookTools, RelationKind, Subprocess, ToolError};
use crate::problems::{Cause, Outcome};
use crate::render::cni::CONFLIST_NAME;
use crate::status::{self, Shown, StatusKind, UnitStatus};
use crate::unit::UnitFacts;

/// The endpoint of the kubernetes-cni relation.
pub(crate) const CNI_ENDPOINT: &str = "cni";

/// An unexpected fault: the hook exits non-zero and Juju shows `hook failed`.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Dispatch(#[from] UnknownDispatchPath),
    #[error("JUJU_UNIT_NAME: {0}")]
    UnitName(#[from] crate::unit::UnitNameError),
    #[error(
        "no address for this unit: network-get cni gave none and unit-get private-address printed {0:?}"
    )]
    NoAddress(String),
    #[error(
        "cannot tell the Kubernetes node name: NODENAME is unset and the host name is unreadable"
    )]
    NoNodeName,
    #[error("the charm's embedded config.yaml is broken: {0}")]
    Embedded(String),
    /// `NODENAME` (or the host name) is no Kubernetes node name ([`Cause::NodeName`]):
    /// reported as `blocked`.
    #[error("{0}")]
    NodeName(Cause),
}

/// How many problems of one kind are logged in full; the rest are counted.
pub(crate) const MAX_LOGGED_PROBLEMS: usize = 20;

/// Log at most [`MAX_LOGGED_PROBLEMS`] problems in full, then one line counting the rest
/// (every problem is one juju-log process: 100,000 of them would take minutes).
fn log_bounded<T: std::fmt::Display>(problems: &[T], prefix: &str, error: bool) {
    for problem in problems.iter().take(MAX_LOGGED_PROBLEMS) {
        if error {
            tracing::error!("{prefix}: {problem}");
        } else {
            tracing::warn!("{prefix}: {problem}");
        }
    }
    if let Some(more) = problems
        .len()
        .checked_sub(MAX_LOGGED_PROBLEMS)
        .filter(|n| *n > 0)
    {
        let line = format!(
            "{prefix}: {more} more not logged (`calico-charm validate --config FILE` lists them all)"
        );
        if error {
            tracing::error!("{line}");
        } else {
            tracing::warn!("{line}");
        }
    }
}

/// What the principal published on the cni relation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// The first non-empty `kubeconfig-hash` of any remote unit.
    pub kubeconfig_hash: Option<String>,
    /// The first non-empty `service-cidr` (control-plane units only).
    pub service_cidr: Option<String>,
}

/// What one hook did, for tests and the final log line.
#[derive(Clone, Debug)]
pub struct Report {
    pub event: Event,
    /// The last status set, if any.
    pub status: Option<UnitStatus>,
    /// The version given to `application-version-set`, if any.
    pub version: Option<String>,
    /// Relation ids this unit published `cidr`/`cni-conf-file` on.
    pub published: Vec<String>,
    /// The `cidr` published (`None`: left as it was, the option being invalid).
    pub published_cidr: Option<String>,
    pub principal: Principal,
    pub config_errors: Vec<ConfigError>,
    pub facts: Option<UnitFacts>,
    /// What the cluster seam reported, when it ran.
    pub outcome: Option<Outcome>,
    /// Hook-tool calls and time so far, when the tools measure them (the summary's own
    /// `juju-log` is not in it).
    pub tools: Option<ToolStats>,
}

impl Report {
    fn new(event: &Event) -> Report {
        Report {
            event: event.clone(),
            status: None,
            version: None,
            published: Vec::new(),
            published_cidr: None,
            principal: Principal::default(),
            config_errors: Vec::new(),
            facts: None,
            outcome: None,
            tools: None,
        }
    }
}

/// Entry point of `calico-charm dispatch`: the thin edge around [`run`].
pub fn dispatch_main() -> anyhow::Result<ExitCode> {
    dispatch_with(
        &crate::apply::KubeCluster::from_env(),
        Some(&Host::from_env()),
    )
}

/// `dispatch` with a given cluster seam and machine (`None`: leave this machine's files and
/// settings alone): read the environment, set up logging, start the
/// hook's deadline ([`crate::deadline`]), run the event.
///
/// - A fault is logged (juju-log) and returned, so `main` prints it on stderr and exits 1.
/// - A hook tool that does not answer within its (deadline-bound) timeout, or prints more
///   than the cap, ends the hook `waiting` with that cause and exit 0: the next hook retries.
/// - A panic (a defect) is caught here and reported as `blocked` with its cause, exit 0, so the
///   unit never stays in `maintenance` with a dead hook.
pub(crate) fn dispatch_with(
    cluster: &dyn Cluster,
    host: Option<&Host>,
) -> anyhow::Result<ExitCode> {
    let env = HookEnv::from_process();
    crate::juju::log::init(env.in_juju());
    let budget = crate::apply::retry::RetrySettings::from_env().budget;
    crate::deadline::start(crate::deadline::hook_total(budget));
    install_panic_hook();
    let tools = Subprocess::default();
    let argv0 = std::env::args().next();
    guarded(&tools, || {
        env.event(argv0.as_deref())
            .map_err(Fault::from)
            .and_then(|event| run(&event, &env, &tools, cluster, host))
    })
}

/// Run a hook's body at the dispatch edge: a fault is logged and returned (exit 1); a hook
/// tool that hung or overflowed ends the hook `waiting` (exit 0); a panic is caught and ends
/// it `blocked "Internal error: <cause> (see juju debug-log)"` (exit 0).
pub fn guarded(
    tools: &impl HookTools,
    body: impl FnOnce() -> Result<Report, Fault>,
) -> anyhow::Result<ExitCode> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    match result {
        Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
        Ok(Err(Fault::Tool(err)))
            if matches!(
                err,
                ToolError::Timeout { .. } | ToolError::OutputTooLarge { .. }
            ) =>
        {
            let cause = Cause::HookTool(err.to_string());
            tracing::warn!("{cause}");
            let _ = tools.status_set(&cause.into());
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(fault)) => {
            tracing::error!("hook failed: {fault}");
            Err(fault.into())
        }
        Err(payload) => {
            let cause = PANIC_MESSAGE
                .lock()
                .ok()
                .and_then(|mut m| m.take())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".to_string());
            let cause = crate::redact::status_line(&cause);
            tracing::error!("internal error (a defect of the charm): {cause}");
            let _ = tools.status_set(&Cause::Internal(cause).into());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The last panic's message and place, redacted (read by [`dispatch_with`]).
static PANIC_MESSAGE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Replace the default panic report (stderr, which Juju logs, unredacted) by a redacted one
/// line, remembered for the status.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = crate::redact::status_line(&format!("{payload}{place}"));
        eprintln!("calico-charm: internal error: {message}");
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(message);
        }
    }));
}

/// Handle one event: the testable body of `dispatch`. `cluster` is the Kubernetes edge,
/// `host` this machine's (the CNI config file, kernel settings, calicoctl); `None` leaves
/// the machine alone.
pub fn run(
    event: &Event,
    env: &HookEnv,
    tools: &impl HookTools,
    cluster: &dyn Cluster,
    host: Option<&Host>,
) -> Result<Report, Fault> {
    match event {
        Event::Install
        | Event::Start
        | Event::ConfigChanged
        | Event::UpgradeCharm
        | Event::UpdateStatus
        | Event::LeaderElected
        | Event::LeaderSettingsChanged => reconcile(event, env, tools, cluster, host),
        Event::Relation { endpoint, .. }
            if endpoint == CNI_ENDPOINT
                || endpoint == crate::peers::PEER_ENDPOINT
                || endpoint == crate::etcd::ENDPOINT =>
        {
            reconcile(event, env, tools, cluster, host)
        }
        Event::Stop | Event::Remove => stop(event, env, cluster, host),
        Event::Action(name) => action(event, name, env, tools, cluster),
        Event::Relation { .. } | Event::Other(_) => {
            tracing::info!("{event}: nothing to do");
            Ok(Report::new(event))
        }
    }
}

/// The holistic reconcile.
pub fn reconcile(
    event: &Event,
    env: &HookEnv,
    tools: &impl HookTools,
    cluster: &dyn Cluster,
    host: Option<&Host>,
) -> Result<Report, Fault> {
    let mut report = Report::new(event);
    // update-status is a periodic check: do not flap the status through maintenance every 5 min.
    if *event != Event::UpdateStatus {
        set_status(tools, &mut report, status::working())?;
    }

    let raw = gather_config(tools)?;
    let validated = crate::config::validate(&raw);
    let errors: &[ConfigError] = match &validated {
        Ok(_) => &[],
        Err(errors) => errors,
    };

    // The principal needs cidr and cni-conf-file whatever else is wrong, so publish first.
    let relations = cni_relations(event, env, tools)?;
    let cidr = match &validated {
        // The validated, normalised CIDRs (`FD00:0::/64` is published as `fd00::/64`).
        Ok(v) => Some(
            v.config
                .cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
        .filter(|c| !c.is_empty()),
        Err(_) => published_cidr(&raw, errors),
    };
    for id in &relations {
        let mut settings = vec![("cni-conf-file", CONFLIST_NAME)];
        if let Some(cidr) = cidr.as_deref() {
            settings.insert(0, ("cidr", cidr));
        }
        tools.relation_set(id, &settings)?;
        report.published.push(id.clone());
    }
    report.published_cidr = cidr;
    report.principal = read_principal(tools, &relations)?;

    let version = calico_version(&raw, errors);
    let validated = match validated {
        Err(errors) => {
            log_bounded(&errors, "Invalid config", true);
            if crate::agent::hook::enabled(host)
                && let Some(unit) = env.unit_name.as_deref()
            {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                crate::agent::hook::stop_acting(
                    unit,
                    &unit.replace('/', "-"),
                    &format!("invalid config: {first}"),
                );
            }
            report.config_errors = errors;
            let status = status::unit_status(&status::Inputs {
                config_errors: &report.config_errors,
                cni_related: !relations.is_empty(),
                ..status::Inputs::default()
            });
            return finish(tools, report, status, version);
        }
        Ok(validated) => validated,
    };
    let Validated { config, warnings } = validated;
    log_bounded(&warnings, "Config warning", false);

    let mut inputs = status::Inputs {
        config_warnings: warnings.len(),
        cni_related: !relations.is_empty(),
        kubeconfig_ready: report.principal.kubeconfig_hash.is_some(),
        ..status::Inputs::default()
    };
    if !inputs.cni_related || !inputs.kubeconfig_ready {
        let status = status::unit_status(&inputs);
        return finish(tools, report, status, version);
    }

    let facts = match unit_facts(env, tools) {
        Ok(facts) => facts,
        Err(Fault::NodeName(problem)) => {
            tracing::error!("{problem}");
            return finish(tools, report, Shown::new(problem), version);
        }
        Err(other) => return Err(other),
    };
    let unit_warnings = crate::config::unit_warnings(&config, &facts);
    for warning in &unit_warnings {
        tracing::warn!("Config warning: {warning}");
    }
    inputs.config_warnings += unit_warnings.len();
    if facts.leader {
        for warning in crate::render::workloads::warnings(&config) {
            tracing::warn!("Workload warning: {warning}");
        }
    }
    // DATASTORE: chosen once, at the first hook that gets this far (see `crate::mode`), and
    // never switched implicitly.
    let peer_relation = tools
        .relation_ids(crate::peers::PEER_ENDPOINT)?
        .into_iter()
        .next();
    let application = facts
        .unit_name
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let broken = match event {
        Event::Relation {
            endpoint,
            kind: RelationKind::Broken,
        } if endpoint == crate::etcd::ENDPOINT => env.relation_id.as_deref(),
        _ => None,
    };
    let (etcd, datastore_warning) = match crate::mode::select(
        tools,
        facts.leader,
        &application,
        peer_relation.as_deref(),
        broken,
    )? {
        crate::mode::Selected::Stop(cause) => {
            report.facts = Some(facts);
            return finish(tools, report, Shown::new(cause), version);
        }
        crate::mode::Selected::Kubernetes { warning } => (None, warning),
        crate::mode::Selected::Etcd(config) => (Some(config), None),
    };
    // The leader's Typha decision needs the cluster's node count (one small list).
    // A leader that cannot count waits (the next hook retries) rather than add or remove
    // Typha on a guess.
    // The agent converges the Kubernetes datastore: not in etcd mode.
    let agent_on = crate::agent::hook::enabled(host) && etcd.is_none();
    let agent_state = agent_on
        .then(|| crate::agent::hook::read_state(&facts.owner()))
        .flatten();
    let now = crate::agent::files::now();
    // update-status with a live agent: the Node count is the agent's (no request).
    let agent_nodes = agent_state
        .as_ref()
        .filter(|s| *event == Event::UpdateStatus && s.alive(now))
        .and_then(|s| s.nodes);
    // The leader on the Kubernetes datastore remembers between hooks what an update-status
    // may leave unread (`apply::checks`): the CRDs, most workload kinds, `/version` and the
    // Node count are read in turn there, three a hook; every other hook reads everything.
    let memo_on = host.is_some() && facts.leader && etcd.is_none();
    let mut memo = memo_on
        .then(|| crate::agent::hook::read_memo(&facts.owner()))
        .flatten();
    let (mut reads, next_cursor) =
        crate::apply::checks::reads(*event == Event::UpdateStatus, memo.as_ref());
    // A live agent watches this node's calico-node pod: its word spares the pod list.
    let agent_watches_pod = agent_state
        .as_ref()
        .is_some_and(|s| s.alive(now) && s.watches_healthy && s.node_agent.is_some());
    if agent_watches_pod {
        reads.pod_verdict = agent_state.as_ref().and_then(|s| s.node_agent.clone());
    }
    let remembered_nodes = memo.as_ref().and_then(|m| m.nodes).filter(|_| !reads.nodes);
    // Typha serves the Kubernetes datastore only: no count in etcd mode.
    let typha_count = facts.leader && config.typha.needs_node_count() && etcd.is_none();
    let facts = if typha_count && agent_nodes.is_some() {
        facts.with_cluster_nodes(agent_nodes)
    } else if typha_count && remembered_nodes.is_some() {
        facts.with_cluster_nodes(remembered_nodes)
    } else if typha_count {
        match cluster.node_count() {
            None => facts,
            Some(Ok(nodes)) => {
                if let Some(m) = memo.as_mut() {
                    m.nodes = Some(nodes);
                } else if memo_on {
                    memo = Some(crate::apply::checks::Memo {
                        nodes: Some(nodes),
                        ..Default::default()
                    });
                }
                facts.with_cluster_nodes(Some(nodes))
            }
            Some(Err(outcome)) => {
                log_outcome(&outcome);
                inputs.outcome = Some(&outcome);
                let status = status::unit_status(&inputs);
                report.facts = Some(facts);
                report.outcome = Some(outcome.clone());
                return finish(tools, report, status, version);
            }
        }
    } else {
        facts
    };
    // RENDER (pure) then APPLY through the seam; the CNI config file is this unit's own.
    let mut desired = crate::render::desired(&config, &facts);
    if let (Some(etcd), Some(workloads)) = (etcd.as_deref(), desired.workloads.as_mut()) {
        let cni = crate::render::workloads::etcd::cni_etcd(
            &etcd.connection_string,
            &crate::etcd::relation::credentials_dir(),
        );
        crate::render::workloads::etcd::for_etcd(workloads, &config, &cni, etcd);
    }
    // The agent gets what this hook decided before the hook applies it (both then push the
    // same state). With the agent in sync with it, update-status asks Kubernetes nothing.
    let mut agent_in_sync = false;
    if agent_on {
        let for_agent = crate::agent::hook::desired_for(&desired, &facts.unit_name, facts.leader);
        crate::agent::hook::publish(&for_agent, *event == Event::UpgradeCharm);
        agent_in_sync = *event == Event::UpdateStatus
            && agent_state
                .as_ref()
                .is_some_and(|s| s.in_sync(&for_agent.generation, now));
    }
    // The leader adopts the workload objects of others (today's Calico charm's) until it
    // has done so once: on any hook but update-status (which keeps its few tool calls;
    // upgrade-charm, leader-elected and config-changed come first anyway).
    let adopting = match desired.workloads.as_mut() {
        Some(workloads) if *event != Event::UpdateStatus => {
            let done = tools
                .state_get(crate::render::workloads::ADOPTED_STATE_KEY)?
                .is_some();
            workloads.adopt = !done;
            !done
        }
        _ => false,
    };
    // Rendered workloads other than the last settled hook's: read (and apply) every kind now.
    let rendered = desired
        .workloads
        .as_ref()
        .filter(|_| memo_on)
        .map(crate::apply::checks::fingerprint);
    if !reads.is_all() && rendered != memo.as_ref().and_then(|m| m.workloads.clone()) {
        tracing::debug!("the workloads changed: every kind is read");
        reads = crate::apply::checks::Reads {
            pod_verdict: reads.pod_verdict.take(),
            ..crate::apply::checks::Reads::all()
        };
    }
    let mut outcome = if agent_in_sync {
        tracing::debug!("agent in sync: no Kubernetes request this update-status");
        agent_outcome(agent_state.as_ref(), &facts.node_name)
    } else {
        match etcd.as_deref() {
            None => {
                cluster.set_reads(&reads);
                cluster.converge(&desired)
            }
            Some(etcd) => {
                // The CNI plugin and calicoctl read the credentials from files (0600).
                let mut outcome = match host {
                    Some(_) => write_etcd_credentials(etcd),
                    None => Outcome::default(),
                };
                outcome.merge(cluster.converge_etcd(&desired, etcd));
                outcome
            }
        }
    };
    if adopting && outcome.workloads_adopted {
        tools.state_set(crate::render::workloads::ADOPTED_STATE_KEY, "true")?;
    }
    if let Some(host) = host {
        outcome.merge(write_cni_config(
            &host.cni_dir,
            &config,
            &facts,
            etcd.as_deref(),
        ));
    }
    let server_version = if agent_in_sync {
        agent_state.as_ref().and_then(|s| s.kubernetes)
    } else if memo_on && !reads.version {
        memo.as_ref().and_then(|m| m.kubernetes)
    } else {
        cluster.server_version()
    };
    // What this hook read, for the next ones (an update-status the agent answered read
    // nothing and leaves the rotation where it is).
    if memo_on && !agent_in_sync {
        let mut next = memo.unwrap_or_default();
        next.cursor = next_cursor;
        // Only a hook that settled has applied what it rendered.
        if outcome.settled() {
            next.workloads = rendered;
        }
        if reads.version && server_version.is_some() {
            next.kubernetes = server_version;
        }
        crate::agent::hook::write_memo(&facts.owner(), &next);
    }
    if facts.leader
        && let Some(kubernetes) = server_version
        && let Some(warning) = crate::config::support::support_warning(
            crate::render::workloads::node_version(&config),
            kubernetes,
        )
    {
        tracing::warn!("Support warning: {warning}");
        inputs.config_warnings += 1;
    }
    if let Some(host) = host {
        outcome.merge(host.reconcile(&config));
        // update-status skips the tool call (one every 5 minutes on every unit); any other
        // hook installs or replaces calicoctl, and Juju runs upgrade-charm when a resource
        // is attached.
        if *event != Event::UpdateStatus {
            let resource = calicoctl_resource(tools)?;
            let mut calicoctl = host.calicoctl.clone();
            calicoctl.etcd = etcd.as_deref().map(calicoctl_etcd);
            outcome.merge(calicoctl.reconcile(resource.as_deref()));
        }
    }
    // The peer relation: publish this unit's BGP facts; the leader checks the whole topology.
    let bgp = crate::peers::sync_on(tools, &config, &facts, peer_relation.as_deref())?;
    log_outcome(&outcome);
    inputs.outcome = Some(&outcome);
    let status = with_sessions(event, &config, status::unit_status(&inputs), &outcome, &bgp);
    let mut status = crate::peers::status_with(status, &bgp);
    if let Some(note) = crate::agent::hook::status_note(agent_state.as_ref()) {
        status = status.with_note(note);
    }
    if let Some(warning) = datastore_warning {
        status = status.with_note(warning);
    }
    // Typha is never deployed in etcd mode; asking for it is a warning (`auto` is off).
    if etcd.is_some() && config.typha == crate::config::typha::TyphaMode::On {
        tracing::warn!("{}", Cause::TyphaOnEtcd);
        status = status.with_note(Cause::TyphaOnEtcd);
    }
    report.facts = Some(facts);
    report.outcome = Some(outcome.clone());
    finish(tools, report, status, version)
}

/// The outcome of an update-status the agent answered: calico-node's readiness as the
/// agent watches it (the same words as [`crate::apply::check_node_agent`]).
fn agent_outcome(state: Option<&crate::agent::files::AgentState>, node: &str) -> Outcome {
    match state.and_then(|s| s.node_agent.as_deref()) {
        Some(verdict) => crate::apply::cluster::node_agent_verdict(node, verdict),
        None => Outcome::default(),
    }
}

/// The status with this node's BGP sessions as calico-node reports them, compared with the
/// model's ([`crate::nodestatus`]). Releases without `CalicoNodeStatus` leave it as it is and
/// say so in the log, on every hook but `update-status` (whose every line is one more
/// `juju-log` process every 5 minutes on every unit; the `bgp-status` action says it too).
fn with_sessions(
    event: &Event,
    config: &crate::config::CharmConfig,
    status: Shown,
    outcome: &Outcome,
    bgp: &crate::peers::Bgp,
) -> Shown {
    let version = crate::render::workloads::node_version(config);
    if !crate::nodestatus::supported(version) {
        if *event != Event::UpdateStatus {
            tracing::info!(
                "BGP session state unavailable: calico-node {version} has no CalicoNodeStatus \
                 (Calico 3.22 or later)"
            );
        }
        return status;
    }
    let Some(reported) = &outcome.bgp_sessions else {
        return status;
    };
    let health = crate::nodestatus::compare(bgp.expected_peers.as_deref(), reported);
    if health.healthy() {
        tracing::debug!("{}", health.message());
    } else {
        tracing::warn!("{}", health.message());
    }
    crate::nodestatus::status_with(status, &health)
}

/// An action (`actions/<name>`): `topology` and `bgp-status` read the config, this unit's
/// facts and the peer relation; anything else fails the action (never the unit).
fn action(
    event: &Event,
    name: &str,
    env: &HookEnv,
    tools: &impl HookTools,
    cluster: &dyn Cluster,
) -> Result<Report, Fault> {
    let report = Report::new(event);
    if name != "topology" && name != "bgp-status" {
        tracing::warn!("unknown action {name:?}");
        tools.action_fail(&format!("unknown action {name:?}"))?;
        return Ok(report);
    }
    let config = match crate::config::validate(&gather_config(tools)?) {
        Ok(v) => v.config,
        Err(errors) => {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            tools.action_fail(&format!("invalid config: {first}"))?;
            return Ok(report);
        }
    };
    let facts = match unit_facts(env, tools) {
        Ok(facts) => facts,
        Err(Fault::NodeName(problem)) => {
            tools.action_fail(&problem.to_string())?;
            return Ok(report);
        }
        Err(other) => return Err(other),
    };
    if name == "topology" {
        crate::peers::action_topology(tools, &config, &facts)?;
    } else {
        // In etcd mode the report is in etcd (the datastore this unit remembers).
        let etcd = match tools.state_get(crate::mode::STATE_KEY)?.as_deref() {
            Some("etcd") => Some(match crate::etcd::relation::read(tools, None)? {
                crate::etcd::relation::EtcdRelation::Ready(config) => Ok(config),
                crate::etcd::relation::EtcdRelation::Absent => {
                    Err(Cause::EtcdRelationRemoved.to_string())
                }
                crate::etcd::relation::EtcdRelation::Waiting(cause)
                | crate::etcd::relation::EtcdRelation::Invalid(cause) => Err(cause.to_string()),
            }),
            _ => None,
        };
        let report = crate::nodestatus::supported(crate::render::workloads::node_version(&config))
            .then(|| match &etcd {
                Some(Ok(etcd)) => cluster.node_status_report_etcd(&facts.node_name, etcd),
                Some(Err(why)) => Some(Err(why.clone())),
                None => cluster.node_status_report(&facts.node_name),
            })
            .flatten();
        crate::peers::action_bgp_status(tools, &config, &facts, report)?;
    }
    Ok(report)
}

/// `stop` and `remove`: remove what this unit owns from the cluster, through the same seam.
/// Juju itself shows `maintenance` during these hooks; a cleanup the cluster could not finish
/// is logged and the hook still succeeds (a failing remove hook would wedge the removal).
pub fn stop(
    event: &Event,
    env: &HookEnv,
    cluster: &dyn Cluster,
    host: Option<&Host>,
) -> Result<Report, Fault> {
    let mut report = Report::new(event);
    // The stopping Desired depends only on the unit's name and node: no hook tool is needed
    // (a failing network-get must not wedge a removal), so leadership and address are not
    // asked for and are recorded as "not leader" and the unspecified address.
    let unit_name = env.unit_name.clone().unwrap_or_default();
    // The agent goes first: it would re-create what this hook removes.
    if crate::agent::hook::enabled(host) && !unit_name.is_empty() {
        crate::agent::hook::uninstall(&unit_name.replace('/', "-"));
    }
    if host.is_some() && !unit_name.is_empty() {
        crate::agent::hook::forget_memo(&unit_name.replace('/', "-"));
    }
    let node_name = match checked_node_name(env) {
        Ok(name) => name,
        Err(Fault::NodeName(problem)) => {
            // A removal must not wedge: without a usable node name nothing can be cleaned up.
            tracing::error!("{event}: {problem}: nothing cleaned up");
            return Ok(report);
        }
        Err(other) => return Err(other),
    };
    let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    let facts = UnitFacts::new(&unit_name, node_name, unspecified, false)?;
    let desired = crate::render::stopping(&facts);
    // etcd mode leaves the relation's data in this unit's files (asking Juju nothing here).
    let etcd_dir = crate::etcd::relation::credentials_dir();
    let etcd = host.and_then(|_| crate::etcd::relation::read_credentials(&etcd_dir));
    let mut outcome = match &etcd {
        Some(etcd) => cluster.stop_etcd(&desired, etcd),
        None => cluster.stop(&desired),
    };
    if let (Event::Remove, Some(_)) = (event, &etcd) {
        match crate::etcd::relation::remove_credentials(&etcd_dir) {
            Ok(true) => outcome
                .deleted
                .push(format!("files {}/etcd-*", etcd_dir.display())),
            Ok(false) => {}
            Err(err) => outcome.push(Cause::EtcdCredentialsRemove {
                dir: etcd_dir.display().to_string(),
                cause: err.to_string(),
            }),
        }
    }
    if let (Event::Remove, Some(host)) = (event, host) {
        outcome.merge(remove_cni_config(&host.cni_dir));
    }
    log_outcome(&outcome);
    if outcome.settled() {
        tracing::info!("{event}: removed what {} owned", facts.unit_name);
    } else {
        tracing::warn!(
            "{event}: cleanup of {} did not finish; objects it owned may remain",
            facts.unit_name
        );
    }
    report.facts = Some(facts);
    report.outcome = Some(outcome);
    Ok(report)
}

fn set_status(
    tools: &impl HookTools,
    report: &mut Report,
    status: UnitStatus,
) -> Result<(), ToolError> {
    tools.status_set(&status)?;
    report.status = Some(status);
    Ok(())
}

fn finish(
    tools: &impl HookTools,
    mut report: Report,
    status: Shown,
    version: Option<String>,
) -> Result<Report, Fault> {
    let status = status.unit_status();
    set_status(tools, &mut report, status.clone())?;
    if let Some(version) = version {
        tools.application_version_set(&version)?;
        report.version = Some(version);
    }
    // One line per hook says where it ended and on what facts (what debug-log readers want,
    // and one juju-log call instead of several).
    report.tools = tools.stats();
    let summary = report.summary();
    // Waiting is a normal phase of a deployment (INFO); blocked needs the operator (WARNING).
    if status.kind == StatusKind::Blocked {
        tracing::warn!("{summary}");
    } else {
        tracing::info!("{summary}");
    }
    Ok(report)
}

impl Report {
    /// `<event>: <status>; <unit facts>; <what was published>; <what the principal said>;
    /// <what the cluster did>`, with only the parts this hook got to. Hashes are shortened;
    /// nothing secret is in a report.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match &self.status {
            Some(status) => parts.push(format!("{}: {status}", self.event)),
            None => parts.push(self.event.to_string()),
        }
        if let Some(facts) = &self.facts {
            parts.push(format!(
                "{} ({}) on node {} at {}",
                facts.unit_name,
                if facts.leader { "leader" } else { "not leader" },
                facts.node_name,
                facts.address
            ));
        }
        if self.published.is_empty() {
            parts.push("no cni relation".to_string());
        } else {
            let cidr = match &self.published_cidr {
                Some(cidr) => format!("cidr={cidr} "),
                None => String::new(),
            };
            let kept = if self.published_cidr.is_none() {
                " (cidr unchanged: the option is invalid)"
            } else {
                ""
            };
            parts.push(format!(
                "published {cidr}cni-conf-file={CONFLIST_NAME} on {}{kept}",
                self.published.join(",")
            ));
            let mut principal = match &self.principal.kubeconfig_hash {
                Some(hash) => format!("principal kubeconfig-hash {}", short_hash(hash)),
                None => "no kubeconfig-hash from the principal yet".to_string(),
            };
            if let Some(service_cidr) = &self.principal.service_cidr {
                principal.push_str(&format!(" service-cidr {service_cidr}"));
            }
            parts.push(principal);
        }
        if let Some(outcome) = &self.outcome {
            parts.push(format!(
                "{} changed, {} deleted",
                outcome.changed.len(),
                outcome.deleted.len()
            ));
        }
        if let Some(tools) = &self.tools {
            parts.push(tools.to_string());
        }
        parts.join("; ")
    }
}

/// `config-get` merged over config.yaml's defaults (nulls from Juju mean "unset").
pub fn gather_config(tools: &impl HookTools) -> Result<RawConfig, Fault> {
    let mut raw = crate::config::options::defaults().map_err(|e| Fault::Embedded(e.to_string()))?;
    for (key, value) in tools.config_get()? {
        if !value.is_null() {
            raw.insert(key, value);
        }
    }
    Ok(raw)
}

/// The cni relations to publish on and read from. In `cni-relation-broken` the relation being
/// broken is left out: its data can no longer be written.
fn cni_relations(
    event: &Event,
    env: &HookEnv,
    tools: &impl HookTools,
) -> Result<Vec<String>, ToolError> {
    let mut ids = tools.relation_ids(CNI_ENDPOINT)?;
    let broken = matches!(
        event,
        Event::Relation {
            kind: RelationKind::Broken,
            ..
        }
    );
    if let (true, Some(broken)) = (broken, &env.relation_id) {
        ids.retain(|id| id != broken);
    }
    Ok(ids)
}

/// Read `kubeconfig-hash` and `service-cidr` from every remote unit; the first non-empty wins.
fn read_principal(tools: &impl HookTools, relations: &[String]) -> Result<Principal, ToolError> {
    let mut principal = Principal::default();
    for id in relations {
        for unit in tools.relation_list(id)? {
            let bag = tools.relation_get(id, &unit)?;
            let value = |key: &str| {
                bag.get(key)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            if principal.kubeconfig_hash.is_none() {
                principal.kubeconfig_hash = value("kubeconfig-hash");
            }
            if principal.service_cidr.is_none() {
                principal.service_cidr = value("service-cidr");
            }
        }
    }
    Ok(principal)
}

/// The `cidr` to publish while some option is invalid: the configured CIDRs comma-joined
/// without spaces, or `None` (keep what was published before) when `cidr` itself is invalid.
pub(crate) fn published_cidr(raw: &RawConfig, errors: &[ConfigError]) -> Option<String> {
    if errors.iter().any(|e| e.option == "cidr") {
        return None;
    }
    let text = raw.get("cidr")?.as_str()?;
    let parts: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The Calico version for `application-version-set`: the tag of calico-node-image
/// (`docker.io/calico/node:v3.6.1` -> `v3.6.1`, see [`Image::version`]). `None` while the
/// image option is invalid.
pub(crate) fn calico_version(raw: &RawConfig, errors: &[ConfigError]) -> Option<String> {
    if errors.iter().any(|e| e.option == "calico-node-image") {
        return None;
    }
    let image = Image::parse(raw.get("calico-node-image")?.as_str()?).ok()?;
    Some(image.version().to_string())
}

/// Facts about this unit: name and number, leadership, bind address, node name.
pub(crate) fn unit_facts(env: &HookEnv, tools: &impl HookTools) -> Result<UnitFacts, Fault> {
    let unit_name = env.unit_name.clone().unwrap_or_default();
    // Check the name before calling any tool: a bad name is a fault whatever Juju answers.
    crate::unit::parse_unit_name(&unit_name).map_err(Fault::UnitName)?;
    let leader = tools.is_leader()?;
    let (address, prefix) = bind_address_with_prefix(tools)?;
    let node_name = checked_node_name(env)?;
    UnitFacts::new(&unit_name, node_name, address, leader)
        .map(|f| f.with_prefix(prefix))
        .map_err(Fault::UnitName)
}

/// The node name from `NODENAME` (else the host name), checked as `--node-name` is: it goes
/// into request paths and object names.
pub(crate) fn checked_node_name(env: &HookEnv) -> Result<String, Fault> {
    let name = crate::juju::node_name(env.node_name.as_deref()).ok_or(Fault::NoNodeName)?;
    let source = if env.node_name.is_some() {
        "NODENAME"
    } else {
        "the host name"
    };
    crate::juju::network::check_node_name(&name).map_err(|problem| {
        Fault::NodeName(Cause::NodeName {
            setting: source,
            problem,
        })
    })?;
    Ok(name)
}

/// The address on the cni binding (first non-`fan-` interface), falling back to
/// `unit-get private-address` with a warning when network-get fails or names none.
pub fn bind_address(tools: &impl HookTools) -> Result<IpAddr, Fault> {
    bind_address_with_prefix(tools).map(|(address, _)| address)
}

/// [`bind_address`] with the binding subnet's prefix length (`None` from unit-get).
pub(crate) fn bind_address_with_prefix(
    tools: &impl HookTools,
) -> Result<(IpAddr, Option<u8>), Fault> {
    match tools.network_get(CNI_ENDPOINT) {
        Ok(info) => match crate::juju::bind_address_with_prefix(&info) {
            Some(found) => return Ok(found),
            None => tracing::warn!(
                "network-get {CNI_ENDPOINT} names no usable (non-fan) address; using unit-get private-address"
            ),
        },
        Err(err) => {
            tracing::warn!("{err}; using unit-get private-address")
        }
    }
    let private = tools.unit_get_private_address()?;
    private
        .trim()
        .parse()
        .map(|address| (address, None))
        .map_err(|_| Fault::NoAddress(private))
}

/// The attached `calicoctl` resource's path, `None` when nothing is attached (resource-get
/// exits 1, "could not download resource"). A missing or hung tool is a fault, like any.
fn calicoctl_resource(tools: &impl HookTools) -> Result<Option<PathBuf>, Fault> {
    match tools.resource_get(crate::calicoctl::RESOURCE) {
        Ok(path) if !path.trim().is_empty() => Ok(Some(PathBuf::from(path))),
        Ok(_) => Ok(None),
        Err(ToolError::Failed { stderr, .. }) => {
            tracing::debug!("no calicoctl resource: {stderr}");
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// calicoctl's etcd settings: the relation's endpoints and this unit's credential files.
fn calicoctl_etcd(etcd: &crate::etcd::EtcdConfig) -> crate::calicoctl::EtcdAccess {
    let [ca, cert, key] =
        crate::etcd::relation::credential_paths(&crate::etcd::relation::credentials_dir());
    crate::calicoctl::EtcdAccess {
        endpoints: etcd.connection_string.clone(),
        ca_file: ca,
        cert_file: cert,
        key_file: key,
    }
}

/// etcd mode: write the relation's credentials to this unit's files (0600).
fn write_etcd_credentials(etcd: &crate::etcd::EtcdConfig) -> Outcome {
    let dir = crate::etcd::relation::credentials_dir();
    match crate::etcd::relation::write_credentials(&dir, etcd) {
        Ok(true) => Outcome {
            changed: vec![format!("files {}/etcd-*", dir.display())],
            ..Outcome::default()
        },
        Ok(false) => Outcome::default(),
        Err(err) => Outcome::of(Cause::EtcdCredentialsWrite {
            dir: dir.display().to_string(),
            cause: err.to_string(),
        }),
    }
}

/// Write `10-calico.conflist` for this node when its content changed (atomically, 0644).
/// A failure is the operator's to look at (`blocked`): the node has no pod networking.
fn write_cni_config(
    dir: &Path,
    config: &crate::config::CharmConfig,
    facts: &UnitFacts,
    etcd: Option<&crate::etcd::EtcdConfig>,
) -> Outcome {
    let cni = etcd.map(|e| {
        crate::render::workloads::etcd::cni_etcd(
            &e.connection_string,
            &crate::etcd::relation::credentials_dir(),
        )
    });
    let content = crate::render::cni::render_for(config, &facts.node_name, cni.as_ref());
    match crate::host::cni::write_conflist(dir, &content) {
        Ok(true) => Outcome {
            changed: vec![format!("file {}", dir.join(CONFLIST_NAME).display())],
            ..Outcome::default()
        },
        Ok(false) => Outcome::default(),
        Err(err) => Outcome::of(Cause::CniWrite(err.to_string())),
    }
}

/// `remove`: take this unit's CNI config file away (the principal then reports a missing CNI).
fn remove_cni_config(dir: &Path) -> Outcome {
    match crate::host::cni::remove_conflist(dir) {
        Ok(true) => Outcome {
            deleted: vec![format!("file {}", dir.join(CONFLIST_NAME).display())],
            ..Outcome::default()
        },
        Ok(false) => Outcome::default(),
        Err(err) => Outcome::of(Cause::CniRemove(err.to_string())),
    }
}

fn log_outcome(outcome: &Outcome) {
    for object in &outcome.changed {
        tracing::info!("applied {object}");
    }
    for object in &outcome.deleted {
        tracing::info!("deleted {object}");
    }
    for cause in outcome.waiting() {
        tracing::warn!("waiting: {cause}");
    }
    for cause in outcome.blocked() {
        tracing::error!("blocked: {cause}");
    }
}

/// A hash shortened for logs.
fn short_hash(hash: &str) -> String {
    hash.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawConfig {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn version_is_the_node_image_tag() {
        let config = raw(&[(
            "calico-node-image",
            "registry.example.com:5000/calico/node:v3.26.1",
        )]);
        assert_eq!(calico_version(&config, &[]).as_deref(), Some("v3.26.1"));
        let image_error = [ConfigError {
            option: "calico-node-image".into(),
            message: "x".into(),
        }];
        assert_eq!(calico_version(&config, &image_error), None);
        assert_eq!(calico_version(&raw(&[]), &[]), None);
    }

    #[test]
    fn cidr_is_published_normalised_unless_invalid() {
        let config = raw(&[("cidr", " 192.168.0.0/16 , fd00::/64 ")]);
        assert_eq!(
            published_cidr(&config, &[]).as_deref(),
            Some("192.168.0.0/16,fd00::/64")
        );
        let other_error = [ConfigError {
            option: "ipip".into(),
            message: "x".into(),
        }];
        assert!(published_cidr(&config, &other_error).is_some());
        let cidr_error = [ConfigError {
            option: "cidr".into(),
            message: "x".into(),
        }];
        assert_eq!(published_cidr(&config, &cidr_error), None);
        assert_eq!(published_cidr(&raw(&[("cidr", " , ")]), &[]), None);
    }

    #[test]
    fn summary_ends_with_the_hook_tool_cost_when_measured() {
        let mut report = Report::new(&Event::UpdateStatus);
        report.status = Some(status::working());
        let plain = report.summary();
        assert!(!plain.contains("hook-tool"), "{plain}");
        report.tools = Some(ToolStats {
            calls: 9,
            time: std::time::Duration::from_micros(8_240),
        });
        let measured = report.summary();
        assert_eq!(
            measured,
            format!("{plain}; 9 hook-tool calls, 8.2 ms in hook tools")
        );
    }
}
