//! Mapping what happened in a hook to one Juju unit status.

use std::fmt;

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

/// How actionable a status is: the higher wins when several hold at once
/// (blocked > maintenance > waiting > active).
pub fn precedence(kind: StatusKind) -> u8 {
    match kind {
        StatusKind::Blocked => 3,
        StatusKind::Maintenance => 2,
        StatusKind::Waiting => 1,
        StatusKind::Active => 0,
    }
}

/// The status while a hook is working.
pub fn working() -> UnitStatus {
    UnitStatus::new(StatusKind::Maintenance, "Configuring Calico")
}

/// Message while no remote cni unit has published a kubeconfig-hash
/// ([`crate::problems::Cause::KubeconfigNotPublished`]).
pub const WAITING_FOR_KUBECONFIG: &str = "Waiting for Kubernetes config.";
/// Message while the unit has no cni relation (its principal is gone or not yet related).
pub const WAITING_FOR_CNI: &str = "Waiting for cni relation";
/// Message when everything was applied.
pub const READY: &str = "Ready";

/// What is known at the end of a reconcile, from which the unit's status follows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inputs<'a> {
    /// Every validation error (empty when the config is valid).
    pub config_errors: &'a [crate::problems::ConfigError],
    /// Number of validation warnings of a valid config.
    pub config_warnings: usize,
    /// The unit has at least one cni relation.
    pub cni_related: bool,
    /// A remote cni unit published a non-empty kubeconfig-hash.
    pub kubeconfig_ready: bool,
    /// What the apply step reported; `None` when it did not run.
    pub outcome: Option<&'a crate::problems::Outcome>,
}

/// `"<first>"`, or `"<first> (+N more, see juju debug-log)"`.
fn first_and_count(first: &str, more: usize) -> String {
    if more == 0 {
        first.to_string()
    } else {
        format!("{first} (+{more} more, see juju debug-log)")
    }
}

/// The one status a unit shows for what a hook found (pure).
///
/// Invalid config is reported alone (nothing else ran). Otherwise every condition is collected
/// and the most actionable kind wins; within a kind the first cause is shown and the others
/// are counted. With nothing pending the unit is `active "Ready"`, noting config warnings.
pub fn unit_status(inputs: &Inputs<'_>) -> UnitStatus {
    if let Some((first, rest)) = inputs.config_errors.split_first() {
        return UnitStatus::new(
            StatusKind::Blocked,
            first_and_count(&format!("Invalid config: {first}"), rest.len()),
        );
    }
    let mut conditions: Vec<(StatusKind, &str)> = Vec::new();
    if let Some(outcome) = inputs.outcome {
        conditions.extend(
            outcome
                .blocked
                .iter()
                .map(|m| (StatusKind::Blocked, m.as_str())),
        );
    }
    if !inputs.cni_related {
        conditions.push((StatusKind::Waiting, WAITING_FOR_CNI));
    } else if !inputs.kubeconfig_ready {
        conditions.push((StatusKind::Waiting, WAITING_FOR_KUBECONFIG));
    }
    if let Some(outcome) = inputs.outcome {
        conditions.extend(
            outcome
                .waiting
                .iter()
                .map(|m| (StatusKind::Waiting, m.as_str())),
        );
    }
    let Some(top) = conditions
        .iter()
        .map(|(k, _)| *k)
        .max_by_key(|k| precedence(*k))
    else {
        let message = match inputs.config_warnings {
            0 => READY.to_string(),
            1 => format!("{READY} (1 config warning, see juju debug-log)"),
            n => format!("{READY} ({n} config warnings, see juju debug-log)"),
        };
        return UnitStatus::new(StatusKind::Active, message);
    };
    let mut same = conditions
        .iter()
        .filter(|(k, _)| *k == top)
        .map(|(_, m)| *m);
    let first = same.next().unwrap_or_default();
    UnitStatus::new(top, first_and_count(first, same.count()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::ConfigError;
    use crate::problems::Outcome;

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
        let status = unit_status(&Inputs {
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
        let status = unit_status(&Inputs {
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
        let status = unit_status(&Inputs {
            kubeconfig_ready: false,
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(StatusKind::Waiting, "Waiting for Kubernetes config.")
        );
        let status = unit_status(&Inputs {
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
            waiting: vec!["Kubernetes API unreachable: connection refused".into()],
            ..Outcome::default()
        };
        let status = unit_status(&Inputs {
            outcome: Some(&outcome),
            ..ready()
        });
        assert_eq!(
            status,
            UnitStatus::new(
                StatusKind::Waiting,
                "Kubernetes API unreachable: connection refused"
            )
        );
        let both = Outcome {
            waiting: vec!["Waiting for node n1 to register".into()],
            blocked: vec![
                "Kubernetes API denied access: forbidden".into(),
                "BGPPeer calico-0-10.0.0.1-64512 refused: bad".into(),
            ],
            ..Outcome::default()
        };
        let status = unit_status(&Inputs {
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
    fn the_kubeconfig_wait_is_the_cause_of_the_same_name() {
        assert_eq!(
            WAITING_FOR_KUBECONFIG,
            crate::problems::Cause::KubeconfigNotPublished.to_string()
        );
    }

    #[test]
    fn active_when_nothing_is_pending() {
        let outcome = Outcome {
            changed: vec!["IPPool/ipv4".into()],
            ..Outcome::default()
        };
        let status = unit_status(&Inputs {
            outcome: Some(&outcome),
            ..ready()
        });
        assert_eq!(status, UnitStatus::new(StatusKind::Active, "Ready"));
        let status = unit_status(&Inputs {
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
