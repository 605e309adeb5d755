//! The Calico version the workloads are rendered for, read from the `calico-node-image`
//! tag, and the releases at which what the charm renders changes.
//!
//! The charm's documented default is `calico/node:v3.6.1`; the newest release the objects
//! were checked against is v3.32.1. Both must work, so the pod and RBAC builders ask
//! [`CalicoVersion::at_least`] for each of the cut-over points below instead of keeping two
//! copies of the objects. Every cut-over names the upstream source it was read from; the
//! full list, with what each changes, is in `docs/workloads-versions.md`.

use std::fmt;

use crate::config::Image;

/// A Calico release `MAJOR.MINOR.PATCH`; ordered by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalicoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for CalicoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The newest release the charm's objects were checked against (Calico v3.32.1, its
/// manifests at <https://github.com/projectcalico/calico/tree/v3.32.1/manifests>); assumed
/// when the image tag says nothing usable.
pub(crate) const CURRENT: CalicoVersion = CalicoVersion::new(3, 32, 1);

/// The oldest line the charm renders for: its documented default image is v3.6.1.
pub(crate) const OLDEST_KNOWN: CalicoVersion = CalicoVersion::new(3, 6, 0);

// Cut-over points (first release that has the feature). Sources in docs/workloads-versions.md.

/// VXLAN encapsulation (`CALICO_IPV4POOL_VXLAN`, `FELIX_VXLANMTU`).
pub const VXLAN: CalicoVersion = CalicoVersion::new(3, 7, 0);
/// The first release after the v3.6 line: rendered with v3.32.1's RBAC rules and conflist
/// `cniVersion`; 3.6.x gets exactly what the v3.6 manifests have.
pub(crate) const AFTER_V3_6: CalicoVersion = CalicoVersion::new(3, 7, 0);
/// `CALICO_ROUTER_ID=hash` (a BGP router id for IPv6-only nodes).
pub(crate) const ROUTER_ID_HASH: CalicoVersion = CalicoVersion::new(3, 7, 0);
/// `calico-node -felix-live -bird-live` liveness probe (before: HTTP `/liveness` on 9099).
pub(crate) const EXEC_LIVENESS: CalicoVersion = CalicoVersion::new(3, 11, 0);
/// `install-cni` is the Go binary `/opt/cni/bin/install` (before: `/install-cni.sh`).
pub(crate) const GO_CNI_INSTALLER: CalicoVersion = CalicoVersion::new(3, 16, 0);
/// MTU auto-detection: `veth_mtu` "0" means detect (before: a number, default 1440).
pub(crate) const MTU_AUTODETECT: CalicoVersion = CalicoVersion::new(3, 17, 0);
/// `check-status -l` liveness flag in calico/kube-controllers.
pub(crate) const KUBE_CONTROLLERS_LIVENESS: CalicoVersion = CalicoVersion::new(3, 19, 0);
/// `calico-node -shutdown` pre-stop hook.
pub(crate) const SHUTDOWN_HOOK: CalicoVersion = CalicoVersion::new(3, 21, 0);
/// `IP_AUTODETECTION_METHOD=kubernetes-internal-ip`.
pub(crate) const K8S_INTERNAL_IP: CalicoVersion = CalicoVersion::new(3, 22, 0);
/// The CNI kubeconfig holds a TokenRequest token for `calico-node` (before: the pod's own
/// mounted token).
pub(crate) const CNI_TOKEN_REQUEST: CalicoVersion = CalicoVersion::new(3, 23, 0);
/// The CNI plugin has its own `calico-cni-plugin` ServiceAccount.
pub(crate) const CNI_PLUGIN_ACCOUNT: CalicoVersion = CalicoVersion::new(3, 26, 0);
/// `CALICO_IPV4POOL_CIDR=none` / `CALICO_IPV6POOL_CIDR=none` skip a default pool.
pub(crate) const POOL_CIDR_NONE: CalicoVersion = CalicoVersion::new(3, 27, 0);
/// BGPConfiguration `serviceExternalIPs` (projectcalico/calico `v3.10/reference/resources/bgpconfig.md`).
pub(crate) const SERVICE_EXTERNAL_IPS: CalicoVersion = CalicoVersion::new(3, 10, 0);
/// BGPConfiguration `serviceClusterIPs` (`v3.11/reference/resources/bgpconfig.md`; the v3.10
/// page lists only `serviceExternalIPs`).
pub(crate) const SERVICE_CLUSTER_IPS: CalicoVersion = CalicoVersion::new(3, 11, 0);
/// BGPConfiguration `serviceLoadBalancerIPs` (projectcalico/libcalico-go PR #1349,
/// projectcalico/confd PR #422; first released in v3.18).
pub(crate) const SERVICE_LOADBALANCER_IPS: CalicoVersion = CalicoVersion::new(3, 18, 0);
/// Felix's `ChecksumOffloadBroken` feature-detection override, which turns off checksum
/// offload on `vxlan.calico` (projectcalico/felix PR #2811, 2021-05; v3.20).
pub(crate) const CHECKSUM_OFFLOAD_OVERRIDE: CalicoVersion = CalicoVersion::new(3, 20, 0);
/// Typha's HTTP liveness/readiness probes on port 9098 (before: `calico-typha check ...`;
/// `_includes/v3.6` vs `v3.7/charts/calico/templates/calico-typha.yaml`).
pub(crate) const TYPHA_HTTP_PROBES: CalicoVersion = CalicoVersion::new(3, 7, 0);
/// Typha runs as non-root without privilege escalation (in the v3.10 manifest, not in v3.7).
pub(crate) const TYPHA_NON_ROOT: CalicoVersion = CalicoVersion::new(3, 10, 0);
/// Typha's graceful shutdown: `TYPHA_SHUTDOWNTIMEOUTSECS`, a 300 s grace period and a 100%
/// surge (projectcalico/calico PR #6973, tigera/operator PR #2303, 2022-11; v3.25).
pub(crate) const TYPHA_GRACEFUL_SHUTDOWN: CalicoVersion = CalicoVersion::new(3, 25, 0);
/// The first release whose RBAC the charm knows without the v2.6-migration reads
/// (`globalfelixconfigs`, `globalbgpconfigs`).
pub(crate) const NO_LEGACY_READS: CalicoVersion = CalicoVersion::new(3, 32, 0);

impl CalicoVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> CalicoVersion {
        CalicoVersion {
            major,
            minor,
            patch,
        }
    }

    /// Whether this release has what `cut` introduced.
    pub fn at_least(self, cut: CalicoVersion) -> bool {
        self >= cut
    }

    /// Parse an image tag `[v]MAJOR.MINOR[.PATCH][-suffix|+suffix]` (`v3.6.1`,
    /// `v3.32.1-rc2`, `3.26`, `v3.27.0-amd64`). A pre-release suffix counts as its release.
    /// `None` for anything else (`latest`, `master`, a branch or build name).
    pub fn parse_tag(tag: &str) -> Option<CalicoVersion> {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        let core = t.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.');
        let number = |p: Option<&str>| -> Option<u32> {
            let p = p?;
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let major = number(parts.next())?;
        let minor = number(parts.next())?;
        let patch = match parts.next() {
            Some(p) => number(Some(p))?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(CalicoVersion::new(major, minor, patch))
    }

    /// The version of a `calico-node-image`: its tag when the tag is a version, else
    /// [`CURRENT`] with a warning saying so (digest-only reference, no tag, or a tag such
    /// as `latest`). A tag older than [`OLDEST_KNOWN`] is used, with a warning.
    pub fn of_image(image: &Image) -> (CalicoVersion, Option<String>) {
        let parsed = image.tag().and_then(CalicoVersion::parse_tag);
        match parsed {
            Some(v) if v < OLDEST_KNOWN => (
                v,
                Some(format!(
                    "calico-node-image: tag {v} is older than {OLDEST_KNOWN}, the oldest Calico \
                     release the charm renders workloads for; rendering as for {OLDEST_KNOWN}"
                )),
            ),
            Some(v) => (v, None),
            None => {
                let what = match (image.tag(), image.digest()) {
                    (Some(t), _) => format!("tag {t:?} is not a Calico version"),
                    (None, Some(_)) => "the reference has a digest but no tag".to_string(),
                    (None, None) => "the reference has no tag".to_string(),
                };
                (
                    CURRENT,
                    Some(format!(
                        "calico-node-image: {what}; assuming Calico {CURRENT} when rendering \
                         the workloads (use a vMAJOR.MINOR.PATCH tag to render for another \
                         release)"
                    )),
                )
            }
        }
    }
}

/// The version the workloads are rendered for (see [`CalicoVersion::of_image`]).
pub(crate) fn calico_version(image: &Image) -> CalicoVersion {
    CalicoVersion::of_image(image).0
}

/// The Calico version the workloads are rendered for: the calico-node image tag.
pub fn node_version(config: &crate::config::CharmConfig) -> CalicoVersion {
    calico_version(&config.calico_node_image)
}
