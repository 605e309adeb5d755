//! The agent's systemd unit: rendered by the charm ([`unit_file`], tested as text), installed
//! and enabled by the hooks, disabled and removed on `stop`/`remove`. `systemctl` is the
//! machine's own, found on `PATH` (tests put a stand-in there that records its calls).
//!
//! One service per unit (`calico-charm-agent-calico-0.service`): two principals on one machine
//! get two calico units, each with its own agent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Overrides the unit-file directory (tests); default [`DEFAULT_SYSTEMD_DIR`].
pub const SYSTEMD_DIR_ENV: &str = "CALICO_CHARM_SYSTEMD_DIR";
/// Where unit files of local services go.
pub(crate) const DEFAULT_SYSTEMD_DIR: &str = "/etc/systemd/system";
/// How long one `systemctl` call may take.
pub(crate) const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// `calico-charm-agent-calico-0.service` for owner `calico-0`.
pub(crate) fn service_name(owner: &str) -> String {
    format!("calico-charm-agent-{owner}.service")
}

/// The unit-file directory.
pub fn systemd_dir() -> PathBuf {
    std::env::var_os(SYSTEMD_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSTEMD_DIR))
}

/// The unit file for the agent of `unit` (`calico/0`), running `binary` on `dir`.
///
/// - `Restart=always` with a 5 s pause: the agent is best effort, a crash only delays drift
///   correction.
/// - `KillSignal=SIGTERM`, `TimeoutStopSec=5`: the agent exits within a second of SIGTERM.
/// - Memory capped (`MemoryMax=64M`, its RSS target is 20 MiB) and a low CPU weight: it must
///   never compete with the node's workloads.
/// - `UMask=0077`: its state file is root's.
pub fn unit_file(unit: &str, binary: &Path, dir: &Path) -> String {
    format!(
        "# Rendered by the calico charm for {unit}; do not edit (the charm rewrites it).\n\
         [Unit]\n\
         Description=Calico charm agent for {unit}: keeps what the charm applied in place\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStart={} agent --dir {}\n\
         Restart=always\n\
         RestartSec=5\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=5\n\
         UMask=0077\n\
         MemoryMax=64M\n\
         CPUWeight=20\n\
         Nice=10\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        binary.display(),
        dir.display(),
    )
}

/// Why a `systemctl` step failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("systemctl {args}: {reason}")]
    Systemctl { args: String, reason: String },
}

fn systemctl(args: &[&str]) -> Result<(), SystemdError> {
    let shown = args.join(" ");
    let mut child = Command::new("systemctl")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| SystemdError::Systemctl {
            args: shown.clone(),
            reason: e.to_string(),
        })?;
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use std::io::Read;
                    let _ = s.by_ref().take(4096).read_to_string(&mut err);
                }
                return Err(SystemdError::Systemctl {
                    args: shown,
                    reason: format!("{status}: {}", err.trim()),
                });
            }
            Ok(None) if started.elapsed() > SYSTEMCTL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SystemdError::Systemctl {
                    args: shown,
                    reason: format!("did not finish within {SYSTEMCTL_TIMEOUT:?}"),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                return Err(SystemdError::Systemctl {
                    args: shown,
                    reason: e.to_string(),
                });
            }
        }
    }
}

/// Install (or update) and start the agent's service: when the unit file's content changed,
/// write it, `daemon-reload`, `enable` and `restart` (starts it, or restarts it on the new
/// file); otherwise only `restart` when asked (after an upgrade: a new binary). Returns
/// whether anything was done.
pub fn install(
    unit: &str,
    owner: &str,
    binary: &Path,
    dir: &Path,
    restart: bool,
) -> Result<bool, SystemdError> {
    let name = service_name(owner);
    let path = systemd_dir().join(&name);
    let text = unit_file(unit, binary, dir);
    let changed = std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str());
    if changed {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SystemdError::Io {
                path: parent.display().to_string(),
                source,
            })?;
        }
        std::fs::write(&path, &text).map_err(|source| SystemdError::Io {
            path: path.display().to_string(),
            source,
        })?;
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", &name])?;
    }
    if restart || changed {
        systemctl(&["restart", &name])?;
    }
    Ok(changed || restart)
}

/// Stop, disable and remove the agent's service (nothing when it was never installed).
pub fn remove(owner: &str) -> Result<bool, SystemdError> {
    let name = service_name(owner);
    let path = systemd_dir().join(&name);
    if !path.exists() {
        return Ok(false);
    }
    systemctl(&["disable", "--now", &name])?;
    std::fs::remove_file(&path).map_err(|source| SystemdError::Io {
        path: path.display().to_string(),
        source,
    })?;
    systemctl(&["daemon-reload"])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_file_runs_the_agent_for_its_unit_and_restarts_it() {
        let text = unit_file(
            "calico/0",
            Path::new("/var/lib/juju/agents/unit-calico-0/charm/bin/calico-charm"),
            Path::new("/var/lib/calico-charm/calico-0"),
        );
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "[Unit]",
            "[Service]",
            "[Install]",
            "Type=simple",
            "ExecStart=/var/lib/juju/agents/unit-calico-0/charm/bin/calico-charm agent --dir \
             /var/lib/calico-charm/calico-0",
            "Restart=always",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=5",
            "UMask=0077",
            "WantedBy=multi-user.target",
        ] {
            assert!(lines.contains(&want), "{want:?} missing from\n{text}");
        }
        // Sections in order, each key once.
        let sections: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with('['))
            .collect();
        assert_eq!(sections, ["[Unit]", "[Service]", "[Install]"]);
        let keys: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        assert_eq!(
            service_name("calico-0"),
            "calico-charm-agent-calico-0.service"
        );
    }
}
