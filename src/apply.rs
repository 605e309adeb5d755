//! Applying a [`crate::render::Desired`] to the datastore. (Owned by the Kubernetes-apply work.)

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
}
