//! Problems the charm reports, shared by config (which finds them), the edges (which meet
//! them) and status (which shows them), so that none depends on another.

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
/// ([`crate::nodestatus`] reads and judges them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub peer: std::net::IpAddr,
    /// BIRD's state; empty when calico-node does not know it.
    pub state: String,
}

/// What a converge did and what is still pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Objects created or changed, as `Kind/name`.
    pub changed: Vec<String>,
    /// Objects deleted, as `Kind/name`.
    pub deleted: Vec<String>,
    /// Something outside the charm is not ready yet; short operator-facing causes.
    pub waiting: Vec<String>,
    /// The operator must act (access denied, an object refused); short causes.
    pub blocked: Vec<String>,
    /// The BGP sessions calico-node reported in this node's `CalicoNodeStatus`, when it has
    /// written a report ([`crate::nodestatus`]; Calico 3.22 or later).
    pub bgp_sessions: Option<Vec<Reported>>,
    /// The workloads were applied with adoption on ([`crate::render::workloads::Workloads::adopt`])
    /// and every object is now the charm's alone: the leader remembers it.
    pub workloads_adopted: bool,
}

impl Outcome {
    /// Append another outcome's entries to this one.
    pub fn merge(&mut self, other: Outcome) {
        self.changed.extend(other.changed);
        self.deleted.extend(other.deleted);
        for w in other.waiting {
            if !self.waiting.contains(&w) {
                self.waiting.push(w);
            }
        }
        for b in other.blocked {
            if !self.blocked.contains(&b) {
                self.blocked.push(b);
            }
        }
        if other.bgp_sessions.is_some() {
            self.bgp_sessions = other.bgp_sessions;
        }
        self.workloads_adopted |= other.workloads_adopted;
    }

    /// Nothing pending: no `waiting`, no `blocked`.
    pub fn settled(&self) -> bool {
        self.waiting.is_empty() && self.blocked.is_empty()
    }
}

/// Whether a [`Cause`] waits for something outside the charm (a later hook retries) or
/// needs the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Waiting,
    Blocked,
}

/// One thing an operator can be told about the cluster side of a hook. `Display` is the
/// operator's message, written here and nowhere else; the README's status table lists
/// every variant (a test checks it against [`Cause::template`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// The principal has not published `kubeconfig-hash` on the cni relation yet.
    #[error("Waiting for Kubernetes config.")]
    KubeconfigNotPublished,
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
}

impl Cause {
    /// Waiting (a later hook retries) or blocked (the operator must act).
    pub fn severity(&self) -> Severity {
        match self {
            Cause::KubeconfigUnusable(_)
            | Cause::Denied { .. }
            | Cause::Unusable { .. }
            | Cause::Rejected { .. }
            | Cause::Refused { .. }
            | Cause::PeerTaken { .. } => Severity::Blocked,
            Cause::KubeconfigNotPublished
            | Cause::KubeconfigPending(_)
            | Cause::ClientStart(_)
            | Cause::Unavailable { .. }
            | Cause::CrdsMissing
            | Cause::KindNotServed { .. }
            | Cause::Disappeared { .. }
            | Cause::Conflict { .. }
            | Cause::NodeUnregistered { .. }
            | Cause::Draining { .. }
            | Cause::CalicoNode { .. } => Severity::Waiting,
        }
    }

    /// The message as the README's status table writes it, `<...>` for what varies.
    pub fn template(&self) -> &'static str {
        match self {
            Cause::KubeconfigNotPublished => "Waiting for Kubernetes config.",
            Cause::KubeconfigPending(_) => "Waiting for kubeconfig: <cause>",
            Cause::KubeconfigUnusable(_) => "Unusable kubeconfig: <cause>",
            Cause::ClientStart(_) => "Cannot start the Kubernetes client: <cause>",
            Cause::Unavailable { .. } => "<datastore> unavailable: <cause>",
            Cause::Denied { .. } => "<datastore> denied access: <cause>",
            Cause::Unusable { .. } => "<datastore> cannot be used: <cause>",
            Cause::CrdsMissing => "Waiting for Calico CRDs",
            Cause::KindNotServed { .. } => "Waiting for <datastore> to serve <kind>",
            Cause::Disappeared { .. } => "<Kind>/<name> disappeared; will retry",
            Cause::Rejected { .. } => "<Kind>/<name> rejected: <reason>",
            Cause::Conflict { .. } => "<Kind>/<name> conflict: <reason>",
            Cause::Refused { .. } => "<Kind>/<name>: <reason>",
            Cause::NodeUnregistered { .. } => "Waiting for node <name> to register",
            Cause::PeerTaken { .. } => {
                "BGPPeer/<name> exists and is not managed by <unit>; rename or delete it"
            }
            Cause::Draining { .. } => "Draining IP pool <name> (<cidr>)",
            Cause::CalicoNode { .. } => "Waiting for calico-node on <node>: <reason>",
        }
    }

    /// One value of every variant (for the README check).
    pub fn examples() -> Vec<Cause> {
        let s = |v: &str| v.to_string();
        vec![
            Cause::KubeconfigNotPublished,
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
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_in_the_readme_status_table_as_it_reads() {
        let readme = include_str!("../README.md");
        let examples = Cause::examples();
        let templates: std::collections::BTreeSet<&str> =
            examples.iter().map(Cause::template).collect();
        assert_eq!(templates.len(), examples.len(), "one example per variant");
        for cause in examples {
            let kind = match cause.severity() {
                Severity::Waiting => "waiting",
                Severity::Blocked => "blocked",
            };
            let row = format!("| {kind} | `{}` |", cause.template());
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
