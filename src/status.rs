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
