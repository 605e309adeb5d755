//! This machine, as the charm sees it beside calico-node: the kernel settings Felix depends
//! on, the `vxlan.calico` interface, the CNI config file ([`cni`]) and calicoctl. The
//! decisions are pure functions of values ([`rpf_blocked`], [`vxlan_checksum_step`]);
//! [`Host`] reads and changes the machine (paths overridable for tests), the node edge the
//! reconcile is given beside the cluster seam.

pub mod cni;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::CharmConfig;
use crate::problems::{Cause, Outcome};

/// Where the kernel's sysctls are (`/proc/sys`); tests point it elsewhere.
pub const PROC_SYS_ENV: &str = "CALICO_CHARM_PROC_SYS";
/// Where the network interfaces are listed (`/sys/class/net`); tests point it elsewhere.
pub const SYS_CLASS_NET_ENV: &str = "CALICO_CHARM_SYS_CLASS_NET";
/// The `ethtool` program to run (found on `PATH` by default); tests give a stand-in.
pub(crate) const ETHTOOL_ENV: &str = "CALICO_CHARM_ETHTOOL";

/// The sysctl Felix checks at start-up, as a path under `/proc/sys`.
pub const RP_FILTER: &str = "net/ipv4/conf/all/rp_filter";
/// The VXLAN device Felix creates.
pub(crate) const VXLAN_DEVICE: &str = "vxlan.calico";

/// The `blocked` cause when Felix would refuse to start on this node (its loose-RPF check,
/// projectcalico/felix PR #1322): `rp_filter` 2 while `ignore-loose-rpf` is false. `None`
/// when the value is unknown, 0 or 1, or the option allows it.
pub(crate) fn rpf_blocked(config: &CharmConfig, rp_filter: Option<u8>) -> Option<Cause> {
    (rp_filter == Some(2) && !config.ignore_loose_rpf).then_some(Cause::LooseRpf)
}

/// What to do about `vxlan.calico`'s TX checksum offload on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VxlanChecksumStep {
    /// Nothing: no VXLAN, the option is off, or Felix does it (Calico v3.20 and later).
    Nothing,
    /// Run `ethtool -K vxlan.calico tx-checksum-ip-generic off` (again on every hook: it is
    /// idempotent, and calico-node may have recreated the device).
    Disable,
}

/// The step for this configuration ([`crate::render::workloads::pods::node_disables_vxlan_checksum`]).
pub(crate) fn vxlan_checksum_step(config: &CharmConfig) -> VxlanChecksumStep {
    if crate::render::workloads::pods::node_disables_vxlan_checksum(config) {
        VxlanChecksumStep::Disable
    } else {
        VxlanChecksumStep::Nothing
    }
}

/// The `waiting` cause while `vxlan.calico` does not exist yet (calico-node creates it).
/// How long `ethtool` may run.
pub(crate) const ETHTOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The machine: sysctls, interfaces, `ethtool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub proc_sys: PathBuf,
    pub sys_class_net: PathBuf,
    pub ethtool: PathBuf,
    /// Where calicoctl is installed from the charm resource.
    pub calicoctl: crate::calicoctl::Install,
    /// This node's CNI config directory ([`cni::cni_dir`]).
    pub cni_dir: PathBuf,
}

impl Host {
    /// From [`PROC_SYS_ENV`], [`SYS_CLASS_NET_ENV`], [`ETHTOOL_ENV`], [`cni::CNI_DIR_ENV`],
    /// else the real places.
    pub fn from_env() -> Host {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Host {
            proc_sys: var(PROC_SYS_ENV, "/proc/sys"),
            sys_class_net: var(SYS_CLASS_NET_ENV, "/sys/class/net"),
            ethtool: var(ETHTOOL_ENV, "ethtool"),
            calicoctl: crate::calicoctl::Install::from_env(),
            cni_dir: cni::cni_dir(),
        }
    }

    /// `net.ipv4.conf.all.rp_filter`, `None` when unreadable or not a small number.
    pub fn rp_filter(&self) -> Option<u8> {
        read_number(&self.proc_sys.join(RP_FILTER))
    }

    /// Whether the interface exists.
    pub(crate) fn has_interface(&self, name: &str) -> bool {
        self.sys_class_net.join(name).exists()
    }

    /// `ethtool -K <device> tx-checksum-ip-generic off`, killed after [`ETHTOOL_TIMEOUT`]
    /// (never past the hook's deadline), its output capped.
    pub(crate) fn disable_tx_checksum(&self, device: &str) -> Result<(), String> {
        let mut command = Command::new(&self.ethtool);
        command
            .args(["-K", device, "tx-checksum-ip-generic", "off"])
            .stdin(Stdio::null());
        let name = self.ethtool.display().to_string();
        let output = crate::juju::tools::run_process(
            &name,
            command,
            crate::deadline::bound(ETHTOOL_TIMEOUT),
            64 * 1024,
        )
        .map_err(|e| match e {
            crate::juju::ToolError::Timeout { timeout, .. } => {
                format!("{name} did not finish within {timeout:?} and was killed")
            }
            crate::juju::ToolError::Missing { .. } => format!("cannot run {name}: not found"),
            crate::juju::ToolError::Spawn { source, .. } => format!("cannot run {name}: {source}"),
            other => format!("cannot run {name}: {other}"),
        })?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = &output.stderr;
            Err(format!(
                "{} -K {device} tx-checksum-ip-generic off failed ({}): {}",
                self.ethtool.display(),
                output.status,
                crate::text::shorten(stderr.trim(), crate::text::SHOWN)
            ))
        }
    }

    /// Check and adjust this node for `config`: what to wait for, what blocks.
    pub fn reconcile(&self, config: &CharmConfig) -> Outcome {
        let mut outcome = Outcome::default();
        let rp_filter = self.rp_filter();
        if let Some(cause) = rpf_blocked(config, rp_filter) {
            outcome.push(cause);
        }
        if vxlan_checksum_step(config) == VxlanChecksumStep::Disable {
            if !self.has_interface(VXLAN_DEVICE) {
                outcome.push(Cause::VxlanDevicePending);
            } else {
                match self.disable_tx_checksum(VXLAN_DEVICE) {
                    Ok(()) => tracing::info!("TX checksum offload off on {VXLAN_DEVICE}"),
                    // The device can vanish between the check and ethtool (calico-node
                    // restarting): a later hook retries.
                    Err(err) => outcome.push(Cause::VxlanChecksum(err)),
                }
            }
        }
        outcome
    }
}

fn read_number(path: &Path) -> Option<u8> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().ok(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, serde_json::Value)]) -> CharmConfig {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        crate::config::validate(&raw)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .config
    }

    #[test]
    fn loose_rpf_blocks_unless_the_option_allows_it() {
        let off = config(&[]);
        let on = config(&[("ignore-loose-rpf", serde_json::json!(true))]);
        assert_eq!(
            rpf_blocked(&off, Some(2)).map(|c| c.to_string()).as_deref(),
            Some(
                "ignore-loose-rpf is false but net.ipv4.conf.all.rp_filter is 2 (loose): Felix \
                 will not run; set ignore-loose-rpf=true or net.ipv4.conf.all.rp_filter=1"
            )
        );
        for value in [None, Some(0), Some(1)] {
            assert_eq!(rpf_blocked(&off, value), None, "{value:?}");
        }
        assert_eq!(rpf_blocked(&on, Some(2)), None);
    }

    #[test]
    fn host_reads_the_sysctl_and_waits_for_the_vxlan_device() {
        let dir = std::env::temp_dir().join(format!("calico-host-{}", std::process::id()));
        let proc_sys = dir.join("proc");
        std::fs::create_dir_all(proc_sys.join("net/ipv4/conf/all")).unwrap();
        std::fs::create_dir_all(dir.join("net")).unwrap();
        let host = Host {
            proc_sys: proc_sys.clone(),
            sys_class_net: dir.join("net"),
            ethtool: dir.join("no-ethtool"),
            calicoctl: crate::calicoctl::Install {
                wrapper: dir.join("bin/calicoctl"),
                dir: dir.join("lib"),
                kubeconfig: dir.join("kubeconfig"),
                etcd: None,
            },
            cni_dir: dir.join("cni"),
        };
        assert_eq!(host.rp_filter(), None);
        std::fs::write(proc_sys.join(RP_FILTER), "2\n").unwrap();
        assert_eq!(host.rp_filter(), Some(2));
        let old_vxlan = config(&[
            (
                "calico-node-image",
                serde_json::json!("calico/node:v3.19.4"),
            ),
            ("vxlan", serde_json::json!("Always")),
        ]);
        let o = host.reconcile(&old_vxlan);
        assert_eq!(o.blocked().count(), 1, "{o:?}");
        assert_eq!(
            o.waiting_messages(),
            [
                "Waiting for vxlan.calico to turn its TX checksum offload off (disable-vxlan-tx-checksumming)"
            ]
        );
        // The device appears; the ethtool named does not exist: a waiting cause naming it.
        std::fs::create_dir_all(dir.join("net").join(VXLAN_DEVICE)).unwrap();
        let o = host.reconcile(&old_vxlan);
        assert!(
            o.waiting_messages()[0]
                .starts_with("Cannot turn off TX checksum offload on vxlan.calico: cannot run "),
            "{o:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
