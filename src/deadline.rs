//! The one deadline of a hook.
//!
//! Juju has no hook timeout, and a hook holds the machine lock (the principal's hooks wait
//! while ours runs), so the charm gives itself one: [`start`] at the beginning of `dispatch`,
//! `API budget + HOOK_MARGIN` (30 s + 20 s by default). Everything the hook waits on draws
//! from it: each hook-tool call's timeout and each credential plugin's is at most what is
//! left ([`bound`]), and the Kubernetes API budget never runs past it. A hook whose deadline
//! passes ends `waiting`, naming what did not answer, with exit 0.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Time the hook allows beyond the Kubernetes API budget: the hook-tool calls before and
/// after the API work, the pool settle pause and local work (all normally milliseconds).
pub(crate) const HOOK_MARGIN: Duration = Duration::from_secs(20);

/// The least time a call still gets once the deadline has passed, so that the hook can still
/// report its status (a hook tool answers in milliseconds).
pub(crate) const FLOOR: Duration = Duration::from_secs(1);

static DEADLINE: OnceLock<Instant> = OnceLock::new();

/// Start the hook's clock: the deadline is `total` from now. Only the first call counts.
pub fn start(total: Duration) {
    let _ = DEADLINE.set(Instant::now() + total);
}

/// What is left of the hook's deadline; `None` when no deadline was started (tests, the
/// offline commands).
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .get()
        .map(|d| d.saturating_duration_since(Instant::now()))
}

/// A timeout for one wait: `timeout`, but no more than what is left of the deadline (and at
/// least [`FLOOR`]).
pub fn bound(timeout: Duration) -> Duration {
    match remaining() {
        Some(left) => timeout.min(left.max(FLOOR)),
        None => timeout,
    }
}

/// Environment variable: the margin in seconds (default 20; tests).
pub(crate) const MARGIN_ENV: &str = "CALICO_CHARM_HOOK_MARGIN_SECS";

/// The whole hook deadline for an API budget: the budget plus [`HOOK_MARGIN`] (or
/// `CALICO_CHARM_HOOK_MARGIN_SECS`).
pub(crate) fn hook_total(api_budget: Duration) -> Duration {
    let margin = std::env::var(MARGIN_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(HOOK_MARGIN, |s| Duration::from_secs(s.min(3600)));
    api_budget.saturating_add(margin)
}
