//! The two files between the hooks and the agent, both JSON, written atomically (a temporary
//! file in the same directory, fsync, rename) with mode 0600 (the desired state holds no
//! credential, but it names the kubeconfig and is root's business only).
//!
//! - `desired.json` ([`AgentDesired`]): written by a hook that got as far as rendering (what
//!   it decided), or `active: false` with the reason when the config is invalid: the agent
//!   then applies nothing.
//! - `state.json` ([`AgentState`]): written by the agent on every change and every
//!   [`HEARTBEAT`]; the hooks read it for `juju status` and to skip update-status's requests.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problems::Cause;

/// The file name of the desired state.
pub(crate) const DESIRED_FILE: &str = "desired.json";
/// The file name of the agent's state.
pub const STATE_FILE: &str = "state.json";
/// The file name of what the leader's hooks remember between hooks
/// ([`crate::apply::checks::Memo`]).
pub const MEMO_FILE: &str = "hooks.json";
/// How often the agent rewrites its state when nothing changes.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(30);
/// A state older than this says the agent is not running (three heartbeats missed).
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(95);
/// Files larger than this are refused (a desired state is a few hundred KiB at most).
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What the last successful hook decided, for the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDesired {
    /// The format (1).
    pub version: u32,
    /// False: the agent must not act (invalid config, `reason` says why).
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `calico/0`.
    pub unit: String,
    /// `calico-0` (the owner label value).
    pub owner: String,
    pub leader: bool,
    /// The principal's kubeconfig.
    pub kubeconfig: PathBuf,
    /// This unit's Kubernetes Node.
    pub node: String,
    /// The Calico annotations the unit sets on its Node.
    #[serde(default)]
    pub node_annotations: BTreeMap<String, String>,
    /// The objects the agent keeps applied (server-side apply, the charm's field manager):
    /// the unit's BGPPeers; the leader's BGPConfiguration and workloads.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// A hash of everything above: what the agent reports it acts on.
    #[serde(default)]
    pub generation: String,
}

impl AgentDesired {
    /// The desired state with its `generation` computed.
    pub(crate) fn sealed(mut self) -> AgentDesired {
        self.generation = String::new();
        let text = serde_json::to_string(&self).unwrap_or_default();
        self.generation = crate::text::fingerprint(text.as_bytes());
        self
    }

    /// "Stop acting": the config is invalid (or the unit is going away).
    pub(crate) fn inactive(unit: &str, owner: &str, reason: &str) -> AgentDesired {
        AgentDesired {
            version: 1,
            active: false,
            reason: Some(reason.to_string()),
            unit: unit.to_string(),
            owner: owner.to_string(),
            leader: false,
            kubeconfig: PathBuf::new(),
            node: String::new(),
            node_annotations: BTreeMap::new(),
            objects: Vec::new(),
            generation: String::new(),
        }
        .sealed()
    }
}

/// An object the agent stopped correcting: another manager keeps reverting it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Conflict {
    /// `Kind/name`.
    pub object: String,
    /// The other manager, from the object's managed fields (`kubectl-edit`, ...).
    pub manager: String,
}

/// What the agent reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AgentState {
    pub pid: u32,
    /// Unix seconds of the last write (every [`HEARTBEAT`] at least).
    pub heartbeat: u64,
    /// The desired generation the agent acts on (empty: none yet).
    pub generation: String,
    /// Whether it acts (false: the desired state says stop, or there is none).
    pub acting: bool,
    /// Unix seconds when every watch last had its objects checked against the desired
    /// state (0: not yet).
    pub last_sync: u64,
    /// Corrections made since the agent started.
    pub corrections: u64,
    /// Objects left alone because another manager keeps reverting them.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
    /// Every watch is established.
    pub watches_healthy: bool,
    /// The last watch or apply error, if any (redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// This node's calico-node pod: `ready`, `missing` or the reason it is not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_agent: Option<String>,
    /// The leader's count of Nodes (for Typha), refreshed every few minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u64>,
    /// The API server's Kubernetes version (leader), read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<(u32, u32)>,
}

impl AgentState {
    /// Healthy and acting on `generation`, at `now` (unix seconds): a fresh heartbeat, every
    /// watch up, synced, no conflict. Only then may update-status skip the API.
    pub(crate) fn in_sync(&self, generation: &str, now: u64) -> bool {
        self.acting
            && self.generation == generation
            && self.watches_healthy
            && self.last_sync > 0
            && self.conflicts.is_empty()
            && self.node_agent.is_some()
            && now.saturating_sub(self.heartbeat) <= STALE_AFTER.as_secs()
    }

    /// Whether the agent looks alive at `now` (a fresh heartbeat).
    pub fn alive(&self, now: u64) -> bool {
        now.saturating_sub(self.heartbeat) <= STALE_AFTER.as_secs()
    }

    /// The note `juju status` gets about the agent, `None` when it has nothing to say
    /// (healthy, nothing corrected).
    pub(crate) fn status_note(&self, now: u64) -> Option<Cause> {
        if !self.alive(now) {
            return Some(Cause::AgentNotRunning);
        }
        if !self.acting {
            return None;
        }
        if let Some(c) = self.conflicts.first() {
            return Some(Cause::AgentConflict {
                object: c.object.clone(),
                manager: c.manager.clone(),
                more: self.conflicts.len() - 1,
            });
        }
        if !self.watches_healthy {
            let cause = self.last_error.as_deref().unwrap_or("reconnecting");
            return Some(Cause::AgentWatchDown(cause.to_string()));
        }
        (self.corrections > 0).then(|| Cause::AgentCorrected {
            corrections: self.corrections,
            age: now.saturating_sub(self.last_sync),
        })
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why a file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON of its kind: {reason}")]
    Format { path: String, reason: String },
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Write `value` as JSON to `path` atomically with mode 0600 (the directory is created
/// 0700). Returns false when the file already held exactly this content (nothing written).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<bool, FileError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| FileError::Format {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if std::fs::read(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Read JSON of type `T` from `path`; `Ok(None)` when the file does not exist.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, FileError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.display().to_string(),
        });
    }
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| FileError::Format {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_atomically_root_only_and_only_when_changed() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("u/desired.json");
        let d = AgentDesired::inactive("calico/0", "calico-0", "invalid config");
        assert!(write_json(&path, &d).expect("write"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!write_json(&path, &d).expect("rewrite"), "same content");
        let back: AgentDesired = read_json(&path).expect("read").expect("some");
        assert_eq!(back, d);
        assert!(!back.generation.is_empty());
        assert_eq!(
            read_json::<AgentDesired>(&dir.path().join("none")).expect("absent"),
            None
        );
        std::fs::write(&path, "{").expect("garbage");
        assert!(matches!(
            read_json::<AgentDesired>(&path),
            Err(FileError::Format { .. })
        ));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("u"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn the_generation_follows_the_content() {
        let a = AgentDesired::inactive("calico/0", "calico-0", "x");
        let b = AgentDesired::inactive("calico/0", "calico-0", "y");
        assert_ne!(a.generation, b.generation);
        assert_eq!(a.clone().sealed(), a);
    }

    #[test]
    fn the_status_note_says_what_matters_most() {
        let now = 1_000_000;
        let healthy = AgentState {
            heartbeat: now - 5,
            generation: "g".into(),
            acting: true,
            last_sync: now - 12,
            watches_healthy: true,
            node_agent: Some("ready".into()),
            ..AgentState::default()
        };
        assert!(healthy.in_sync("g", now));
        assert!(!healthy.in_sync("other", now));
        assert_eq!(healthy.status_note(now), None);
        let corrected = AgentState {
            corrections: 3,
            ..healthy.clone()
        };
        assert_eq!(
            corrected.status_note(now).map(|c| c.to_string()).as_deref(),
            Some("agent: 3 drifts corrected, synced 12s ago")
        );
        let conflict = AgentState {
            conflicts: vec![Conflict {
                object: "BGPPeer/calico-0-10.0.0.1-64512".into(),
                manager: "kubectl-edit".into(),
            }],
            ..corrected.clone()
        };
        assert!(!conflict.in_sync("g", now));
        assert_eq!(
            conflict.status_note(now).map(|c| c.to_string()).as_deref(),
            Some(
                "agent conflict: BGPPeer/calico-0-10.0.0.1-64512 keeps being changed by \
                 kubectl-edit; not corrected"
            )
        );
        let stale = AgentState {
            heartbeat: now - 200,
            ..healthy.clone()
        };
        assert!(!stale.in_sync("g", now));
        assert_eq!(
            stale.status_note(now).map(|c| c.to_string()).as_deref(),
            Some("agent not running")
        );
        let down = AgentState {
            watches_healthy: false,
            last_error: Some("connection refused".into()),
            ..healthy
        };
        assert_eq!(
            down.status_note(now).map(|c| c.to_string()).as_deref(),
            Some("agent watch down: connection refused")
        );
    }
}
