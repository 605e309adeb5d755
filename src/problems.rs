//! Problems the charm reports, shared by config (which finds them), the edges (which meet
//! them) and status (which shows them), so that none depends on another.
//!
//! Everything an operator can be shown in `juju status` is a [`Cause`]: its `Display` is the
//! message, written here and nowhere else, and the README's status table has a row for every
//! variant (a test below checks it).

use std::fmt;
use std::net::IpAddr;

/// A problem with one option: `Display` is `<option>: <what is wrong and what is expected>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct ConfigError {
    pub option: String,
    pub message: String,
}

/// A valid but suspicious setting, same shape as [`ConfigError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct Warning {
    pub option: String,
    pub message: String,
}

/// One BGP session as calico-node reported it in its `CalicoNodeStatus`
/// ([`crate::nodestatus`] reads it and judges it into a [`Health`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub peer: std::net::IpAddr,
    /// BIRD's state; empty when calico-node does not know it.
    pub state: String,
}

/// Peers named in full in a status line; the rest are counted.
const MAX_NAMED: usize = 3;

/// A session that is not as the model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// Expected and reported, not established: BIRD's state (`Active`, `Connect`, ...).
    NotEstablished { peer: IpAddr, state: String },
    /// Expected, absent from calico-node's report.
    Missing { peer: IpAddr },
    /// Reported, not expected by the model.
    Unexpected { peer: IpAddr, state: String },
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::NotEstablished { peer, state } if state.is_empty() => {
                write!(f, "{peer} (state unknown)")
            }
            Trouble::NotEstablished { peer, state } => write!(f, "{peer} ({state})"),
            Trouble::Missing { peer } => {
                write!(f, "{peer} (missing: calico-node reports no such session)")
            }
            Trouble::Unexpected { peer, state } => {
                write!(
                    f,
                    "{peer} (unexpected: not in the model, {})",
                    or_unknown(state)
                )
            }
        }
    }
}

fn or_unknown(state: &str) -> &str {
    if state.is_empty() {
        "state unknown"
    } else {
        state
    }
}

/// The comparison of a report with the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Sessions counted: the expected ones (or, without a model, the reported ones).
    pub total: usize,
    /// Of those, established.
    pub established: usize,
    /// Every session not as expected, in peer-address order.
    pub troubles: Vec<Trouble>,
}

fn named(list: &[&Trouble]) -> String {
    let mut out: Vec<String> = list
        .iter()
        .take(MAX_NAMED)
        .map(ToString::to_string)
        .collect();
    if list.len() > MAX_NAMED {
        out.push(format!("+{} more", list.len() - MAX_NAMED));
    }
    out.join(", ")
}

impl Health {
    /// The operator's line: `BGP 4/4 established` when all is well, else `BGP: 1 of 4
    /// sessions not established: 10.0.0.1 (Active)`, with unexpected sessions after a `;`.
    pub fn message(&self) -> String {
        let not: Vec<&Trouble> = self
            .troubles
            .iter()
            .filter(|t| !matches!(t, Trouble::Unexpected { .. }))
            .collect();
        let unexpected: Vec<&Trouble> = self
            .troubles
            .iter()
            .filter(|t| matches!(t, Trouble::Unexpected { .. }))
            .collect();
        if not.is_empty() && unexpected.is_empty() {
            return format!("BGP {}/{} established", self.established, self.total);
        }
        let mut parts = Vec::new();
        if !not.is_empty() {
            let noun = if self.total == 1 {
                "session"
            } else {
                "sessions"
            };
            parts.push(format!(
                "{} of {} {noun} not established: {}",
                not.len(),
                self.total,
                named(&not)
            ));
        } else {
            parts.push(format!("{}/{} established", self.established, self.total));
        }
        if !unexpected.is_empty() {
            let noun = if unexpected.len() == 1 {
                "session"
            } else {
                "sessions"
            };
            parts.push(format!(
                "{} unexpected {noun}: {}",
                unexpected.len(),
                named(&unexpected)
            ));
        }
        format!("BGP: {}", parts.join("; "))
    }

    /// Whether every session is as the model expects.
    pub(crate) fn healthy(&self) -> bool {
        self.troubles.is_empty()
    }
}

/// What a converge did and what is still pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Objects created or changed, as `Kind/name`.
    pub changed: Vec<String>,
    /// Objects deleted, as `Kind/name`.
    pub deleted: Vec<String>,
    /// What is still pending, once each: causes that wait for something outside the charm
    /// and causes the operator must act on (their [`Cause::kind`] says which).
    pub causes: Vec<Cause>,
    /// The BGP sessions calico-node reported in this node's `CalicoNodeStatus`, when it has
    /// written a report ([`crate::nodestatus`]; Calico 3.22 or later).
    pub bgp_sessions: Option<Vec<Reported>>,
    /// The workloads were applied with adoption on ([`crate::render::workloads::Workloads::adopt`])
    /// and every object is now the charm's alone: the leader remembers it.
    pub workloads_adopted: bool,
}

impl Outcome {
    /// An outcome of one pending cause.
    pub fn of(cause: Cause) -> Outcome {
        Outcome {
            causes: vec![cause],
            ..Outcome::default()
        }
    }

    /// Record a pending cause, once.
    pub fn push(&mut self, cause: Cause) {
        if !self.causes.contains(&cause) {
            self.causes.push(cause);
        }
    }

    /// Append another outcome's entries to this one.
    pub fn merge(&mut self, other: Outcome) {
        self.changed.extend(other.changed);
        self.deleted.extend(other.deleted);
        for cause in other.causes {
            self.push(cause);
        }
        if other.bgp_sessions.is_some() {
            self.bgp_sessions = other.bgp_sessions;
        }
        self.workloads_adopted |= other.workloads_adopted;
    }

    /// The causes that wait for something outside the charm (a later hook retries).
    pub fn waiting(&self) -> impl Iterator<Item = &Cause> {
        self.causes
            .iter()
            .filter(|c| c.kind() == StatusKind::Waiting)
    }

    /// The causes the operator must act on.
    pub fn blocked(&self) -> impl Iterator<Item = &Cause> {
        self.causes
            .iter()
            .filter(|c| c.kind() == StatusKind::Blocked)
    }

    /// The waiting causes as the operator reads them.
    pub fn waiting_messages(&self) -> Vec<String> {
        self.waiting().map(ToString::to_string).collect()
    }

    /// The blocked causes as the operator reads them.
    pub fn blocked_messages(&self) -> Vec<String> {
        self.blocked().map(ToString::to_string).collect()
    }

    /// Nothing pending.
    pub fn settled(&self) -> bool {
        self.causes.is_empty()
    }
}

/// The four statuses a charm may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusKind {
    Maintenance,
    Blocked,
    Waiting,
    Active,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Maintenance => "maintenance",
            StatusKind::Blocked => "blocked",
            StatusKind::Waiting => "waiting",
            StatusKind::Active => "active",
        }
    }
}

/// One thing an operator can be told in `juju status`. `Display` is the operator's message,
/// written here and nowhere else; [`Cause::kind`] is the status it shows under. A cause of
/// kind `active` other than [`Cause::Ready`] is a note appended to `Ready`
/// ([`crate::status::Shown`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    // ---- the hook itself ---------------------------------------------------------------
    /// The hook is working.
    #[error("Configuring Calico")]
    Configuring,
    /// Everything applied.
    #[error("Ready")]
    Ready,
    /// The first of the config's errors (the status counts the others).
    #[error("Invalid config: {0}")]
    InvalidConfig(ConfigError),
    /// `NODENAME` (or the host name) is not a Kubernetes node name: `setting` says which.
    #[error("{setting} {problem}")]
    NodeName {
        setting: &'static str,
        problem: String,
    },
    /// A defect of the charm (a panic, caught at the dispatch edge).
    #[error("Internal error: {0} (see juju debug-log)")]
    Internal(String),
    /// A hook tool hung or printed too much: the hook ended at its deadline.
    #[error("{0}; the next hook retries")]
    HookTool(String),
    /// The unit has no cni relation (its principal is gone or not yet related).
    #[error("Waiting for cni relation")]
    NoCniRelation,
    /// The principal has not published `kubeconfig-hash` on the cni relation yet.
    #[error("Waiting for kubeconfig: the principal has not published kubeconfig-hash yet")]
    KubeconfigNotPublished,

    // ---- notes on an active unit -------------------------------------------------------
    /// A valid config with warnings (each is in `juju debug-log`).
    #[error("{}", count_of(*.0 as u64, "config warning", "config warnings", ", see juju debug-log"))]
    ConfigWarnings(usize),
    /// Every BGP session the model expects is Established, as calico-node reports it.
    #[error("BGP {established}/{total} established")]
    BgpEstablished { established: usize, total: usize },
    /// The leader's topology check names this unit in a problem that does not cut it off.
    #[error("BGP {}: {kind}{}, see the topology action", if *.error { "problem" } else { "warning" }, plus_more(*.more))]
    BgpNote {
        error: bool,
        kind: String,
        more: usize,
    },
    /// No agent state for too long.
    #[error("agent not running")]
    AgentNotRunning,
    /// The agent stopped correcting an object that someone else keeps changing.
    #[error("agent conflict: {object} keeps being changed by {manager}{}; not corrected", plus_more(*.more))]
    AgentConflict {
        object: String,
        manager: String,
        more: usize,
    },
    /// The agent's watches are down.
    #[error("agent watch down: {0}")]
    AgentWatchDown(String),
    /// The agent corrected drift.
    #[error("agent: {}, synced {age}s ago", count_of(*.corrections, "drift corrected", "drifts corrected", ""))]
    AgentCorrected { corrections: u64, age: u64 },
    /// An `etcd` relation added to a deployment on the Kubernetes datastore.
    #[error(
        "etcd relation ignored: the datastore is Kubernetes, chosen at deployment; remove the relation"
    )]
    EtcdIgnored,
    /// `typha=true` in etcd mode: Typha is not deployed (Calico advises against it on etcd).
    #[error(
        "typha=true ignored: Calico advises against Typha on etcd, which serves many clients itself; set typha=auto"
    )]
    TyphaOnEtcd,

    // ---- the datastore mode and the etcd relation --------------------------------------
    /// A remembered datastore the charm does not know (written by hand?).
    #[error(
        "unknown datastore {0:?} remembered by this unit (state-get datastore): expected kubernetes or etcd"
    )]
    UnknownDatastore(String),
    /// An etcd deployment without its etcd relation.
    #[error("etcd relation removed: Calico's data is in etcd")]
    EtcdRelationRemoved,
    /// Related to etcd, which has published nothing yet.
    #[error("Waiting for etcd")]
    EtcdUnpublished,
    /// etcd has published part of its data: the keys still missing.
    #[error("Waiting for etcd: no {} yet", .0.join(", "))]
    EtcdIncomplete(Vec<&'static str>),
    /// etcd's relation data cannot work as given.
    #[error("etcd relation: {0}")]
    EtcdRelationInvalid(String),
    /// The etcd client could not start its runtime.
    #[error("Cannot start the etcd client: {0}")]
    EtcdClientStart(String),
    /// The relation's credentials could not be written to this unit's files.
    #[error("Cannot write the etcd credentials in {dir}: {cause}")]
    EtcdCredentialsWrite { dir: String, cause: String },
    /// The relation's credentials could not be removed from this unit's files.
    #[error("Cannot remove the etcd credentials in {dir}: {cause}")]
    EtcdCredentialsRemove { dir: String, cause: String },
    /// A cluster seam without an etcd datastore was asked for one (test doubles).
    #[error("this cluster seam has no etcd datastore")]
    NoEtcdSeam,

    // ---- the Kubernetes client and the datastores --------------------------------------
    /// The kubeconfig file is not there (yet): it heals by itself.
    #[error("Waiting for kubeconfig: {0}")]
    KubeconfigPending(String),
    /// The kubeconfig cannot work as written.
    #[error("Unusable kubeconfig: {0}")]
    KubeconfigUnusable(String),
    /// No runtime for the Kubernetes client.
    #[error("Cannot start the Kubernetes client: {0}")]
    ClientStart(String),
    #[error("{datastore} unavailable: {cause}")]
    Unavailable { datastore: String, cause: String },
    #[error("{datastore} denied access: {cause}")]
    Denied { datastore: String, cause: String },
    #[error("{datastore} cannot be used: {cause}")]
    Unusable { datastore: String, cause: String },
    #[error("Waiting for Calico CRDs")]
    CrdsMissing,
    #[error("Waiting for {datastore} to serve {kind}")]
    KindNotServed { datastore: String, kind: String },
    #[error("{object} disappeared; will retry")]
    Disappeared { object: String },
    #[error("{object} rejected: {reason}")]
    Rejected { object: String, reason: String },
    #[error("{object} conflict: {reason}")]
    Conflict { object: String, reason: String },
    /// Anything else the API refused (400, 405, an unreadable answer).
    #[error("{object}: {reason}")]
    Refused { object: String, reason: String },
    #[error("Waiting for node {node} to register")]
    NodeUnregistered { node: String },
    #[error("BGPPeer/{name} exists and is not managed by {owner}; rename or delete it")]
    PeerTaken { name: String, owner: String },
    #[error("Draining IP pool {pool} ({cidr})")]
    Draining { pool: String, cidr: String },
    #[error("Waiting for calico-node on {node}: {reason}")]
    CalicoNode { node: String, reason: String },

    // ---- this machine ------------------------------------------------------------------
    #[error("Cannot write the CNI config: {0}")]
    CniWrite(String),
    #[error("Cannot remove the CNI config: {0}")]
    CniRemove(String),
    #[error("Cannot install calicoctl: {0}")]
    CalicoctlInstall(String),
    /// Loose reverse-path filtering, which Felix refuses unless told to ignore it.
    #[error(
        "ignore-loose-rpf is false but net.ipv4.conf.all.rp_filter is 2 (loose): Felix will not run; set ignore-loose-rpf=true or net.ipv4.conf.all.rp_filter=1"
    )]
    LooseRpf,
    /// VXLAN before Calico v3.20: calico-node has not created the device yet.
    #[error(
        "Waiting for vxlan.calico to turn its TX checksum offload off (disable-vxlan-tx-checksumming)"
    )]
    VxlanDevicePending,
    /// `ethtool` could not turn the offload off.
    #[error("Cannot turn off TX checksum offload on vxlan.calico: {0}")]
    VxlanChecksum(String),

    // ---- BGP ---------------------------------------------------------------------------
    /// calico-node's report shows a session not as the model expects.
    #[error("{}", .0.message())]
    BgpSessions(Health),
    /// The leader's topology check found this node cut off: `summary` is the head of its
    /// message, `kind` the problem's kind.
    #[error("BGP: {summary} ({kind})")]
    BgpCutOff { summary: String, kind: String },
}

/// `1 <one><tail>` or `N <many><tail>`.
fn count_of(n: u64, one: &str, many: &str, tail: &str) -> String {
    match n {
        1 => format!("1 {one}{tail}"),
        n => format!("{n} {many}{tail}"),
    }
}

/// ` +N more`, or nothing for none.
fn plus_more(more: usize) -> String {
    match more {
        0 => String::new(),
        n => format!(" +{n} more"),
    }
}

impl Cause {
    /// The status the cause shows under (for `active`: a note on `Ready`).
    pub fn kind(&self) -> StatusKind {
        use Cause::*;
        match self {
            Configuring => StatusKind::Maintenance,
            Ready
            | ConfigWarnings(_)
            | BgpEstablished { .. }
            | BgpNote { .. }
            | AgentNotRunning
            | AgentConflict { .. }
            | AgentWatchDown(_)
            | AgentCorrected { .. }
            | EtcdIgnored
            | TyphaOnEtcd => StatusKind::Active,
            InvalidConfig(_)
            | NodeName { .. }
            | Internal(_)
            | UnknownDatastore(_)
            | EtcdRelationRemoved
            | EtcdRelationInvalid(_)
            | EtcdCredentialsWrite { .. }
            | NoEtcdSeam
            | KubeconfigUnusable(_)
            | Denied { .. }
            | Unusable { .. }
            | Rejected { .. }
            | Refused { .. }
            | PeerTaken { .. }
            | CniWrite(_)
            | CalicoctlInstall(_)
            | LooseRpf
            | BgpCutOff { .. } => StatusKind::Blocked,
            HookTool(_)
            | NoCniRelation
            | KubeconfigNotPublished
            | EtcdUnpublished
            | EtcdIncomplete(_)
            | EtcdClientStart(_)
            | EtcdCredentialsRemove { .. }
            | KubeconfigPending(_)
            | ClientStart(_)
            | Unavailable { .. }
            | CrdsMissing
            | KindNotServed { .. }
            | Disappeared { .. }
            | Conflict { .. }
            | NodeUnregistered { .. }
            | Draining { .. }
            | CalicoNode { .. }
            | CniRemove(_)
            | VxlanDevicePending
            | VxlanChecksum(_)
            | BgpSessions(_) => StatusKind::Waiting,
        }
    }

    /// A note on `Ready` that joins the first note's parentheses (`Ready (a); b`), rather
    /// than standing in its own (`Ready (a) (b)`).
    pub(crate) fn joins_notes(&self) -> bool {
        matches!(
            self,
            Cause::ConfigWarnings(_) | Cause::BgpEstablished { .. } | Cause::BgpNote { .. }
        )
    }

    /// The message as the README's status table writes it, `<...>` for what varies (a note
    /// on `Ready` is written in the table as `Ready (<its template>)`).
    pub fn template(&self) -> &'static str {
        use Cause::*;
        match self {
            Configuring => "Configuring Calico",
            Ready => "Ready",
            InvalidConfig(_) => "Invalid config: <option>: <what is wrong>",
            NodeName { .. } => {
                "<NODENAME or the host name> \"<value>\" <what is wrong>: not a Kubernetes node name <the rule>"
            }
            Internal(_) => "Internal error: <cause> (see juju debug-log)",
            HookTool(_) => {
                "hook tool <tool> <did not finish or printed too much>; the next hook retries"
            }
            NoCniRelation => "Waiting for cni relation",
            KubeconfigNotPublished => {
                "Waiting for kubeconfig: the principal has not published kubeconfig-hash yet"
            }
            ConfigWarnings(_) => "<N> config warnings, see juju debug-log",
            BgpEstablished { .. } => "BGP <established>/<total> established",
            BgpNote { .. } => "BGP <warning or problem>: <kind>< +N more>, see the topology action",
            AgentNotRunning => "agent not running",
            AgentConflict { .. } => {
                "agent conflict: <Kind>/<name> keeps being changed by <manager>< +N more>; not corrected"
            }
            AgentWatchDown(_) => "agent watch down: <cause>",
            AgentCorrected { .. } => "agent: <N> drifts corrected, synced <N>s ago",
            EtcdIgnored => {
                "etcd relation ignored: the datastore is Kubernetes, chosen at deployment; remove the relation"
            }
            TyphaOnEtcd => {
                "typha=true ignored: Calico advises against Typha on etcd, which serves many clients itself; set typha=auto"
            }
            UnknownDatastore(_) => {
                "unknown datastore \"<value>\" remembered by this unit (state-get datastore): expected kubernetes or etcd"
            }
            EtcdRelationRemoved => "etcd relation removed: Calico's data is in etcd",
            EtcdUnpublished => "Waiting for etcd",
            EtcdIncomplete(_) => "Waiting for etcd: no <keys> yet",
            EtcdRelationInvalid(_) => "etcd relation: <what is wrong>",
            EtcdClientStart(_) => "Cannot start the etcd client: <cause>",
            EtcdCredentialsWrite { .. } => "Cannot write the etcd credentials in <dir>: <cause>",
            EtcdCredentialsRemove { .. } => "Cannot remove the etcd credentials in <dir>: <cause>",
            NoEtcdSeam => "this cluster seam has no etcd datastore",
            KubeconfigPending(_) => "Waiting for kubeconfig: <cause>",
            KubeconfigUnusable(_) => "Unusable kubeconfig: <cause>",
            ClientStart(_) => "Cannot start the Kubernetes client: <cause>",
            Unavailable { .. } => "<datastore> unavailable: <cause>",
            Denied { .. } => "<datastore> denied access: <cause>",
            Unusable { .. } => "<datastore> cannot be used: <cause>",
            CrdsMissing => "Waiting for Calico CRDs",
            KindNotServed { .. } => "Waiting for <datastore> to serve <kind>",
            Disappeared { .. } => "<Kind>/<name> disappeared; will retry",
            Rejected { .. } => "<Kind>/<name> rejected: <reason>",
            Conflict { .. } => "<Kind>/<name> conflict: <reason>",
            Refused { .. } => "<Kind>/<name>: <reason>",
            NodeUnregistered { .. } => "Waiting for node <name> to register",
            PeerTaken { .. } => {
                "BGPPeer/<name> exists and is not managed by <unit>; rename or delete it"
            }
            Draining { .. } => "Draining IP pool <name> (<cidr>)",
            CalicoNode { .. } => "Waiting for calico-node on <node>: <reason>",
            CniWrite(_) => "Cannot write the CNI config: <cause>",
            CniRemove(_) => "Cannot remove the CNI config: <cause>",
            CalicoctlInstall(_) => "Cannot install calicoctl: <cause>",
            LooseRpf => {
                "ignore-loose-rpf is false but net.ipv4.conf.all.rp_filter is 2 (loose): Felix will not run; set ignore-loose-rpf=true or net.ipv4.conf.all.rp_filter=1"
            }
            VxlanDevicePending => {
                "Waiting for vxlan.calico to turn its TX checksum offload off (disable-vxlan-tx-checksumming)"
            }
            VxlanChecksum(_) => "Cannot turn off TX checksum offload on vxlan.calico: <cause>",
            BgpSessions(_) => "BGP: <N> of <N> sessions not established: <peer> (<state>)<, ...>",
            BgpCutOff { .. } => "BGP: <what is wrong> (<kind>)",
        }
    }

    /// One value of every variant (for the README check).
    pub fn examples() -> Vec<Cause> {
        let s = |v: &str| v.to_string();
        let ip = |v: &str| v.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        vec![
            Cause::Configuring,
            Cause::Ready,
            Cause::InvalidConfig(ConfigError {
                option: s("ipip"),
                message: s("expected one of Always, CrossSubnet, Never, got \"sometimes\""),
            }),
            Cause::NodeName {
                setting: "NODENAME",
                problem: s(
                    "\"Node_1\" has upper-case letters (Kubernetes node names are lower case): not a Kubernetes node name (lowercase letters, digits, '-' and '.')",
                ),
            },
            Cause::Internal(s("index out of bounds at src/peers.rs:10")),
            Cause::HookTool(s(
                "hook tool relation-get did not finish within 10s and was killed",
            )),
            Cause::NoCniRelation,
            Cause::KubeconfigNotPublished,
            Cause::ConfigWarnings(2),
            Cause::BgpEstablished {
                established: 4,
                total: 4,
            },
            Cause::BgpNote {
                error: false,
                kind: s("single-route-reflector"),
                more: 1,
            },
            Cause::AgentNotRunning,
            Cause::AgentConflict {
                object: s("BGPPeer/calico-0-10.0.0.1-64512"),
                manager: s("kubectl-edit"),
                more: 0,
            },
            Cause::AgentWatchDown(s("connection refused")),
            Cause::AgentCorrected {
                corrections: 3,
                age: 12,
            },
            Cause::EtcdIgnored,
            Cause::TyphaOnEtcd,
            Cause::UnknownDatastore(s("consul")),
            Cause::EtcdRelationRemoved,
            Cause::EtcdUnpublished,
            Cause::EtcdIncomplete(vec!["client_cert", "client_key"]),
            Cause::EtcdRelationInvalid(s(
                "connection_string entry \"http://10.0.0.1:2379\" is not an https:// URL",
            )),
            Cause::EtcdClientStart(s("out of threads")),
            Cause::EtcdCredentialsWrite {
                dir: s("/etc/calico/etcd"),
                cause: s("read-only file system"),
            },
            Cause::EtcdCredentialsRemove {
                dir: s("/etc/calico/etcd"),
                cause: s("read-only file system"),
            },
            Cause::NoEtcdSeam,
            Cause::KubeconfigPending(s("kubeconfig /root/.kube/config does not exist yet")),
            Cause::KubeconfigUnusable(s("kubeconfig /root/.kube/config: no current-context")),
            Cause::ClientStart(s("out of threads")),
            Cause::Unavailable {
                datastore: s("Kubernetes API"),
                cause: s("connection refused"),
            },
            Cause::Denied {
                datastore: s("Kubernetes API"),
                cause: s("forbidden"),
            },
            Cause::Unusable {
                datastore: s("Kubernetes API"),
                cause: s("TLS: unknown issuer"),
            },
            Cause::CrdsMissing,
            Cause::KindNotServed {
                datastore: s("Kubernetes API"),
                kind: s("PodDisruptionBudget"),
            },
            Cause::Disappeared {
                object: s("Node/n1"),
            },
            Cause::Rejected {
                object: s("BGPPeer/calico-0-10.0.0.1-64512"),
                reason: s("spec.asNumber: Invalid value"),
            },
            Cause::Conflict {
                object: s("IPPool/ipv4"),
                reason: s("the object has been modified"),
            },
            Cause::Refused {
                object: s("IPPool/ipv4"),
                reason: s("the server rejected our request"),
            },
            Cause::NodeUnregistered { node: s("n1") },
            Cause::PeerTaken {
                name: s("calico-0-10.0.0.1-64512"),
                owner: s("calico-0"),
            },
            Cause::Draining {
                pool: s("ipv4"),
                cidr: s("10.1.0.0/16"),
            },
            Cause::CalicoNode {
                node: s("n1"),
                reason: s("ImagePullBackOff"),
            },
            Cause::CniWrite(s("/etc/cni/net.d: read-only file system")),
            Cause::CniRemove(s("/etc/cni/net.d: read-only file system")),
            Cause::CalicoctlInstall(s("the resource is not an executable")),
            Cause::LooseRpf,
            Cause::VxlanDevicePending,
            Cause::VxlanChecksum(s("cannot run ethtool: not found")),
            Cause::BgpSessions(Health {
                total: 4,
                established: 3,
                troubles: vec![Trouble::NotEstablished {
                    peer: ip("10.0.0.1"),
                    state: s("Active"),
                }],
            }),
            Cause::BgpCutOff {
                summary: s("calico/3 has no BGP session"),
                kind: s("isolated-node"),
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variants of [`Cause`], counted from this file's text (every variant has exactly
    /// one `#[error(...)]`), so that a new variant without an example fails the check below.
    fn variants() -> usize {
        let text = include_str!("problems.rs");
        let start = text.find("pub enum Cause {").expect("the enum");
        let end = start + text[start..].find("\n}\n").expect("its end");
        text[start..end].matches("#[error(").count()
    }

    #[test]
    fn every_cause_is_in_the_readme_status_table_as_it_reads() {
        let readme = include_str!("../README.md");
        let examples = Cause::examples();
        let kinds: std::collections::BTreeSet<String> = examples
            .iter()
            .map(|c| format!("{:?}", std::mem::discriminant(c)))
            .collect();
        assert_eq!(kinds.len(), examples.len(), "one example per variant");
        assert_eq!(examples.len(), variants(), "an example of every variant");
        for cause in examples {
            let row = if cause.kind() == StatusKind::Active && cause != Cause::Ready {
                format!("| active | `Ready ({})` |", cause.template())
            } else {
                format!("| {} | `{}` |", cause.kind().as_str(), cause.template())
            };
            assert!(readme.contains(&row), "the README status table lacks {row}");
            // The message is the template with its <...> parts filled in.
            let message = cause.to_string();
            let mut rest = message.as_str();
            for part in cause.template().split(['<', '>']).step_by(2) {
                match rest.find(part) {
                    Some(i) => rest = &rest[i + part.len()..],
                    None => panic!("{message:?} does not read as {:?}", cause.template()),
                }
            }
        }
    }
}
