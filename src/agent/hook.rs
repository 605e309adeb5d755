//! What the hooks do about the agent (only on a machine the hook manages, and unless
//! `CALICO_CHARM_AGENT=off`: [`enabled`]):
//!
//! - a hook that rendered (valid config, the principal's kubeconfig published) writes the
//!   desired state *before* it converges, so that the agent and the hook push the same state
//!   and never revert each other; the service is installed (or updated) when its unit file
//!   changes, and restarted on `upgrade-charm` (a new binary);
//! - a hook with an invalid config writes "stop acting";
//! - `stop`/`remove` disable and remove the service and the files;
//! - every hook reads the agent's state for `juju status` ([`status_note`]); update-status
//!   with an agent in sync with what the hook would apply makes no Kubernetes request.
//!
//! Any failure here is logged and otherwise ignored: the agent is never a dependency.

use std::path::Path;

use super::files::{self, AgentDesired, AgentState, DESIRED_FILE, MEMO_FILE, STATE_FILE};
use super::{systemd, unit_dir};
use crate::render::Desired;

/// `off` turns the agent off (the hooks then neither write its files nor call systemctl).
pub(crate) const AGENT_ENV: &str = "CALICO_CHARM_AGENT";

/// Whether the hooks run the agent: only when they manage this machine (`host`; test doubles
/// of the Juju side pass none) and `CALICO_CHARM_AGENT` is not `off`.
pub fn enabled(host: Option<&crate::host::Host>) -> bool {
    host.is_some() && std::env::var(AGENT_ENV).map_or(true, |v| v.trim() != "off")
}

/// The desired state for this hook's render.
pub(crate) fn desired_for(desired: &Desired, unit: &str, leader: bool) -> AgentDesired {
    super::drift::agent_desired(
        desired,
        unit,
        leader,
        &crate::apply::kubeconfig::kubeconfig_path(),
    )
}

/// Write the desired state and make sure the service runs (`restart`: after an upgrade).
pub fn publish(desired: &AgentDesired, restart: bool) {
    let dir = unit_dir(&desired.owner);
    match files::write_json(&dir.join(DESIRED_FILE), desired) {
        Ok(true) => tracing::debug!("agent: desired state {} written", desired.generation),
        Ok(false) => {}
        Err(e) => tracing::warn!("agent: cannot write its desired state: {e}"),
    }
    let binary = std::env::current_exe().unwrap_or_default();
    if let Err(e) = systemd::install(&desired.unit, &desired.owner, &binary, &dir, restart) {
        tracing::warn!("agent: cannot install its service: {e}");
    }
}

/// The config is invalid: the agent must stop acting (it keeps running, idle).
pub(crate) fn stop_acting(unit: &str, owner: &str, reason: &str) {
    let dir = unit_dir(owner);
    if !dir.join(DESIRED_FILE).exists() {
        return;
    }
    let d = AgentDesired::inactive(unit, owner, reason);
    if let Err(e) = files::write_json(&dir.join(DESIRED_FILE), &d) {
        tracing::warn!("agent: cannot tell it to stop acting: {e}");
    }
}

/// `stop`/`remove`: disable and remove the service, then its files.
pub(crate) fn uninstall(owner: &str) {
    match systemd::remove(owner) {
        Ok(true) => tracing::info!("agent: service {} removed", systemd::service_name(owner)),
        Ok(false) => {}
        Err(e) => tracing::warn!("agent: cannot remove its service: {e}"),
    }
    let dir = unit_dir(owner);
    for f in [DESIRED_FILE, STATE_FILE, MEMO_FILE] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir(&dir);
}

/// What the leader's hooks remembered ([`crate::apply::checks::Memo`]): `None` when there
/// is no such file or it cannot be read (the hook then reads everything).
pub fn read_memo(owner: &str) -> Option<crate::apply::checks::Memo> {
    match files::read_json(&unit_dir(owner).join(MEMO_FILE)) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("hook memo: {e}");
            None
        }
    }
}

/// Remember `memo` for the next hooks (root-only, atomic); a failure only costs reads.
pub fn write_memo(owner: &str, memo: &crate::apply::checks::Memo) {
    if let Err(e) = files::write_json(&unit_dir(owner).join(MEMO_FILE), memo) {
        tracing::warn!("hook memo: {e}");
    }
}

/// `stop`/`remove`: the memo goes with the unit (its directory too, once empty).
pub fn forget_memo(owner: &str) {
    let dir = unit_dir(owner);
    let _ = std::fs::remove_file(dir.join(MEMO_FILE));
    let _ = std::fs::remove_dir(&dir);
}

/// The agent's last state, if it wrote one.
pub(crate) fn read_state(owner: &str) -> Option<AgentState> {
    read_state_in(&unit_dir(owner))
}

/// The same from a directory.
pub(crate) fn read_state_in(dir: &Path) -> Option<AgentState> {
    match files::read_json(&dir.join(STATE_FILE)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("agent: {e}");
            None
        }
    }
}

/// What `juju status` says about the agent (appended to an active status).
pub(crate) fn status_note(state: Option<&AgentState>) -> Option<crate::problems::Cause> {
    state.and_then(|s| s.status_note(files::now()))
}
