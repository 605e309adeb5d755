//! Problems the charm reports, shared by config (which finds them) and status (which shows
//! them), so that neither depends on the other.

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
    pub bgp_sessions: Option<Vec<crate::nodestatus::Reported>>,
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
    }

    /// Nothing pending: no `waiting`, no `blocked`.
    pub fn settled(&self) -> bool {
        self.waiting.is_empty() && self.blocked.is_empty()
    }
}
