//! The agent between hooks: `calico-charm agent`, one long-running process per unit, run by
//! systemd, that keeps what the last successful hook decided applied.
//!
//! ```text
//! hook: render -> converge -> write desired.json (0600, atomic) -> ensure the systemd unit
//! agent: read desired.json -> watch what the unit owns -> re-apply on drift -> state.json
//! hook (update-status): state.json healthy and in sync -> no Kubernetes request at all
//! ```
//!
//! - [`files`]: the desired state the hooks write and the agent's state the hooks read
//!   (JSON, written atomically, root-only).
//! - [`drift`]: pure: which objects the agent keeps, what counts as a drift (the desired
//!   fields as the server stores them, [`drift::project`]), the correction budget (debounce,
//!   backoff, the conflict bound) and who the other manager is.
//! - [`systemd`]: the unit file (rendered here, tested as text) and the `systemctl` calls
//!   the hooks make.
//! - [`run`]: the daemon: label-selected watches of what this unit owns (the leader also the
//!   global objects), resumed from the last resourceVersion, SIGTERM.
//! - [`hook`]: what the hooks do about the agent.
//!
//! The agent never reads Juju config, never runs hook tools and never becomes a dependency:
//! hooks converge exactly as without it, and a dead agent only means drift waits for the
//! next hook.

pub mod drift;
pub mod files;
pub mod hook;
pub mod run;
pub mod systemd;

use std::path::PathBuf;

/// Overrides the agent's directory (tests); default [`DEFAULT_DIR`].
pub const DIR_ENV: &str = "CALICO_CHARM_AGENT_DIR";
/// Where each unit's agent keeps `desired.json` and `state.json` (one subdirectory per unit).
pub(crate) const DEFAULT_DIR: &str = "/var/lib/calico-charm";

/// The agent directory of unit `owner` (`calico-0`): `$CALICO_CHARM_AGENT_DIR/<owner>` or
/// `/var/lib/calico-charm/<owner>`.
pub(crate) fn unit_dir(owner: &str) -> PathBuf {
    let base = std::env::var_os(DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    base.join(owner)
}
