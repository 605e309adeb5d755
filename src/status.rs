//! Mapping what happened in a hook to one Juju unit status.

use std::fmt;

pub use crate::problems::StatusKind;
use crate::problems::{Cause, ConfigError, Outcome};

/// A unit status: what `status-set` is called with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitStatus {
    pub kind: StatusKind,
    pub message: String,
}

impl UnitStatus {
    pub fn new(kind: StatusKind, message: impl Into<String>) -> Self {
        UnitStatus {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for UnitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind.as_str(), self.message)
    }
}

impl From<Cause> for UnitStatus {
    fn from(cause: Cause) -> Self {
        Shown::new(cause).unit_status()
    }
}

/// How actionable a status is: the higher wins when several hold at once
/// (blocked > maintenance > waiting > active).
pub(crate) fn precedence(kind: StatusKind) -> u8 {
    match kind {
        StatusKind::Blocked => 3,
        StatusKind::Maintenance => 2,
        StatusKind::Waiting => 1,
        StatusKind::Active => 0,
    }
}

/// The status while a hook is working.
pub(crate) fn working() -> UnitStatus {
    Cause::Configuring.into()
}

/// What a unit shows, as causes: the one that decides its status, how many more of the same
/// kind there are, and (on an active unit) the notes appended to `Ready`. Code decides on
/// these; [`Shown::unit_status`] words them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shown {
    pub cause: Cause,
    /// Causes of the same kind not shown (counted in the message).
    pub more: usize,
    /// Notes on `Ready`, in the order they were added.
    pub notes: Vec<Cause>,
}

impl Shown {
    pub fn new(cause: Cause) -> Self {
        Shown {
            cause,
            more: 0,
            notes: Vec::new(),
        }
    }

    pub fn kind(&self) -> StatusKind {
        self.cause.kind()
    }

    /// Append a note when the unit is active; any other status is more pressing and stays
    /// as it is.
    pub(crate) fn with_note(mut self, note: Cause) -> Self {
        if self.kind() == StatusKind::Active {
            self.notes.push(note);
        }
        self
    }

    /// The status as `status-set` takes it: `<cause>`, `<cause> (+N more, see juju
    /// debug-log)`, or `Ready (<note>; <note>) (<note>)`: the config, BGP session and
    /// topology notes share the first parentheses, the agent's and the datastore's stand in
    /// their own.
    pub(crate) fn unit_status(&self) -> UnitStatus {
        let mut message = self.cause.to_string();
        if self.more > 0 {
            message.push_str(&format!(" (+{} more, see juju debug-log)", self.more));
        }
        let mut joined = false;
        for note in &self.notes {
            if note.joins_notes() && joined {
                message.push_str(&format!("; {note}"));
            } else {
                message.push_str(&format!(" ({note})"));
                joined |= note.joins_notes();
            }
        }
        UnitStatus::new(self.kind(), message)
    }
}

/// What is known at the end of a reconcile, from which the unit's status follows.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Inputs<'a> {
    /// Every validation error (empty when the config is valid).
    pub config_errors: &'a [ConfigError],
    /// Number of validation warnings of a valid config.
    pub config_warnings: usize,
    /// The unit has at least one cni relation.
    pub cni_related: bool,
    /// A remote cni unit published a non-empty kubeconfig-hash.
    pub kubeconfig_ready: bool,
    /// What the apply step reported; `None` when it did not run.
    pub outcome: Option<&'a Outcome>,
}

/// The one status a unit shows for what a hook found (pure).
///
/// Invalid config is reported alone (nothing else ran). Otherwise every condition is collected
/// and the most actionable kind wins; within a kind the first cause is shown and the others
/// are counted. With nothing pending the unit is `active "Ready"`, noting config warnings.
pub(crate) fn unit_status(inputs: &Inputs<'_>) -> Shown {
    if let Some((first, rest)) = inputs.config_errors.split_first() {
        return Shown {
            more: rest.len(),
            ..Shown::new(Cause::InvalidConfig(first.clone()))
        };
    }
    let mut conditions: Vec<&Cause> = Vec::new();
    let outcome = inputs.outcome.map(Outcome::blocked);
    conditions.extend(outcome.into_iter().flatten());
    if !inputs.cni_related {
        conditions.push(&Cause::NoCniRelation);
    } else if !inputs.kubeconfig_ready {
        conditions.push(&Cause::KubeconfigNotPublished);
    }
    let outcome = inputs.outcome.map(Outcome::waiting);
    conditions.extend(outcome.into_iter().flatten());
    let Some(top) = conditions
        .iter()
        .map(|c| c.kind())
        .max_by_key(|k| precedence(*k))
    else {
        let ready = Shown::new(Cause::Ready);
        return match inputs.config_warnings {
            0 => ready,
            n => ready.with_note(Cause::ConfigWarnings(n)),
        };
    };
    let mut same = conditions.into_iter().filter(|c| c.kind() == top);
    let first = same.next().cloned().unwrap_or(Cause::Ready);
    Shown {
        more: same.count(),
        ..Shown::new(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(inputs: &Inputs<'_>) -> UnitStatus {
        unit_status(inputs).unit_status()
    }

    fn err(option: &str, message: &str) -> ConfigError {
        ConfigError {
            option: option.into(),
            message: message.into(),
        }
    }

    fn ready() -> Inputs<'static> {
        Inputs {
            cni_related: true,
            kubeconfig_ready: true,
            ..Inputs::default()
        }
    }

    #[test]
    fn invalid_config_names_the_first_error_and_counts_the_rest() {
        let one = [err(
            "ipip",
            "expected one of Always, CrossSubnet, Never, got \"sometimes\"",
        )];
        let status = render(&Inputs {
            config_errors: &one,
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Blocked,
                "Invalid config: ipip: expected one of Always, CrossSubnet, Never, got \"sometimes\""
            )
        );
        let three = [err("cidr", "bad"), err("vxlan", "bad"), err("ipip", "bad")];
        let status = render(&Inputs {
            config_errors: &three,
            kubeconfig_ready: false,
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Blocked,
                "Invalid config: cidr: bad (+2 more, see juju debug-log)"
            )
        );
    }

    #[test]
    fn waiting_for_the_principal() {
        let status = render(&Inputs {
            kubeconfig_ready: false,
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Waiting,
                "Waiting for kubeconfig: the principal has not published kubeconfig-hash yet"
            )
        );
        let status = render(&Inputs {
            cni_related: false,
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(StatusKind::Waiting, "Waiting for cni relation")
        );
    }

    #[test]
    fn outcome_precedence() {
        let outcome = Outcome {
            causes: vec![Cause::Unavailable {
                datastore: "Kubernetes API".into(),
                cause: "connection refused".into(),
            }],
            ..Outcome::default()
        };
        let status = render(&Inputs {
            outcome: Some(&outcome),
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Waiting,
                "Kubernetes API unavailable: connection refused"
            )
        );
        let both = Outcome {
            causes: vec![
                Cause::NodeUnregistered { node: "n1".into() },
                Cause::Denied {
                    datastore: "Kubernetes API".into(),
                    cause: "forbidden".into(),
                },
                Cause::Rejected {
                    object: "BGPPeer/calico-0-10.0.0.1-64512".into(),
                    reason: "bad".into(),
                },
            ],
            ..Outcome::default()
        };
        let status = render(&Inputs {
            outcome: Some(&both),
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Blocked,
                "Kubernetes API denied access: forbidden (+1 more, see juju debug-log)"
            )
        );
    }

    #[test]
    fn active_when_nothing_is_pending() {
        let outcome = Outcome {
            changed: vec!["IPPool/ipv4".into()],
            ..Outcome::default()
        };
        let status = render(&Inputs {
            outcome: Some(&outcome),
            ..ready()
        });
        assert_eq!(status, UnitStatus::new(StatusKind::Active, "Ready"));
        let status = render(&Inputs {
            config_warnings: 2,
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Active,
                "Ready (2 config warnings, see juju debug-log)"
            )
        );
    }

    #[test]
    fn precedence_order() {
        let mut kinds = [
            StatusKind::Active,
            StatusKind::Blocked,
            StatusKind::Waiting,
            StatusKind::Maintenance,
        ];
        kinds.sort_by_key(|k| std::cmp::Reverse(precedence(*k)));
        assert_eq!(
            kinds,
            [
                StatusKind::Blocked,
                StatusKind::Maintenance,
                StatusKind::Waiting,
                StatusKind::Active
            ]
        );
    }
}
