//! Which Kubernetes minor versions each Calico release is tested on, as Calico publishes it
//! ("System requirements", "Supported versions: We test Calico vX.Y against the following
//! Kubernetes versions"), and the warning when the configured release is not tested on the
//! cluster's Kubernetes (its API server's `/version`).
//!
//! Only releases whose list was read from a source are in the table; for any other release
//! the charm says nothing rather than guess.

use super::release::CalicoVersion;

/// One Calico minor release and the Kubernetes minors it is tested on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tested {
    pub calico: (u32, u32),
    pub kubernetes: &'static [(u32, u32)],
    /// Where the list was read.
    pub source: &'static str,
}

/// Calico's published test matrix (sources per row; also in docs/workloads-versions.md).
pub(crate) const TESTED: &[Tested] = &[
    Tested {
        calico: (3, 6),
        kubernetes: &[(1, 11), (1, 12), (1, 13)],
        source: "projectcalico/calico v3.6/getting-started/kubernetes/requirements.md",
    },
    Tested {
        calico: (3, 10),
        kubernetes: &[(1, 14), (1, 15), (1, 16)],
        source: "projectcalico/calico v3.10/getting-started/kubernetes/requirements.md",
    },
    Tested {
        calico: (3, 22),
        kubernetes: &[(1, 21), (1, 22), (1, 23)],
        source: "docs.projectcalico.org/archive/v3.22/getting-started/kubernetes/requirements",
    },
    Tested {
        calico: (3, 25),
        kubernetes: &[(1, 23), (1, 24), (1, 25), (1, 26)],
        source: "docs.tigera.io/calico/3.25/getting-started/kubernetes/requirements",
    },
    Tested {
        calico: (3, 26),
        kubernetes: &[(1, 24), (1, 25), (1, 26), (1, 27)],
        source: "docs.tigera.io/calico/3.26/getting-started/kubernetes/requirements",
    },
    Tested {
        calico: (3, 28),
        kubernetes: &[(1, 27), (1, 28), (1, 29), (1, 30)],
        source: "tigera/docs calico_versioned_docs/version-3.28/getting-started/kubernetes/requirements.mdx",
    },
    Tested {
        calico: (3, 29),
        kubernetes: &[(1, 29), (1, 30), (1, 31)],
        source: "docs.tigera.io/calico/3.29/getting-started/kubernetes/requirements",
    },
];

/// Parse the API server's `/version` `major`/`minor` (`"1"`, `"31+"` on some distributions).
pub(crate) fn parse_kubernetes_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<u32> {
        let d: String = s.trim().chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    Some((digits(major)?, digits(minor)?))
}

/// The warning when `calico` is known not to be tested on Kubernetes `kubernetes`, naming
/// both versions and the options to change. `None` when it is tested, or when the table has
/// no row for the release.
pub(crate) fn support_warning(calico: CalicoVersion, kubernetes: (u32, u32)) -> Option<String> {
    let row = TESTED
        .iter()
        .find(|t| t.calico == (calico.major, calico.minor))?;
    if row.kubernetes.contains(&kubernetes) {
        return None;
    }
    let (kmaj, kmin) = kubernetes;
    let list: Vec<String> = row
        .kubernetes
        .iter()
        .map(|(a, b)| format!("{a}.{b}"))
        .collect();
    let tested_on: Vec<String> = TESTED
        .iter()
        .filter(|t| t.kubernetes.contains(&kubernetes))
        .map(|t| format!("v{}.{}", t.calico.0, t.calico.1))
        .collect();
    let advice = if tested_on.is_empty() {
        format!("a Calico release tested on Kubernetes {kmaj}.{kmin}")
    } else {
        format!(
            "a Calico release tested on Kubernetes {kmaj}.{kmin} ({})",
            tested_on.join(", ")
        )
    };
    Some(format!(
        "calico-node-image: Calico {calico} is not tested on Kubernetes {kmaj}.{kmin}, this \
         cluster's API server version (Calico v{}.{} is tested on {}); set calico-node-image \
         and calico-policy-image to {advice}",
        row.calico.0,
        row.calico.1,
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_release_on_a_current_cluster_is_warned_about() {
        let w = support_warning(CalicoVersion::new(3, 6, 1), (1, 31)).expect("warning");
        assert_eq!(
            w,
            "calico-node-image: Calico v3.6.1 is not tested on Kubernetes 1.31, this cluster's \
             API server version (Calico v3.6 is tested on 1.11, 1.12, 1.13); set \
             calico-node-image and calico-policy-image to a Calico release tested on Kubernetes \
             1.31 (v3.29)"
        );
        assert_eq!(support_warning(CalicoVersion::new(3, 6, 1), (1, 13)), None);
        assert_eq!(support_warning(CalicoVersion::new(3, 29, 2), (1, 31)), None);
        // A release the table does not know: no guess.
        assert_eq!(support_warning(CalicoVersion::new(3, 32, 1), (1, 13)), None);
        let w = support_warning(CalicoVersion::new(3, 28, 0), (1, 40)).expect("warning");
        assert!(
            w.ends_with("to a Calico release tested on Kubernetes 1.40"),
            "{w}"
        );
    }

    #[test]
    fn versions_parse_as_api_servers_write_them() {
        assert_eq!(parse_kubernetes_version("1", "31"), Some((1, 31)));
        assert_eq!(parse_kubernetes_version("1", "27+"), Some((1, 27)));
        assert_eq!(parse_kubernetes_version("", "31"), None);
        assert_eq!(parse_kubernetes_version("1", "x"), None);
    }

    #[test]
    fn every_row_is_sorted_and_sourced() {
        for t in TESTED {
            assert!(!t.source.is_empty());
            assert!(t.kubernetes.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        }
        assert!(TESTED.windows(2).all(|w| w[0].calico < w[1].calico));
    }
}
