//! What the leader reads on a hook (pure): everything on every hook but `update-status`;
//! on `update-status` (no agent answering it) the reads that matter every five minutes, and
//! the others in turn, so that the hook stays within issue 10's ten requests.
//!
//! Read on every hook: this unit's Node, the IP pools, its BGPPeers, the BGP configuration
//! (Calico's data: a drift there changes routing), the calico-node DaemonSet and the
//! calico-kube-controllers (and Typha) Deployments (what runs Calico; the DaemonSet's status
//! also tells whether calico-node is ready everywhere) and, unless that status says so,
//! this node's calico-node pod. The rest is in [`ROTATION`]: an `update-status` reads the
//! next of its four turns (at most three requests), so each is read at least every four
//! update-status hooks (20 minutes at Juju's default interval of 5 minutes), and by every
//! other hook. What is not read is left alone: a workload kind not listed is
//! neither applied nor pruned, the Kubernetes version and the Node count are the last ones
//! read ([`Memo`], a root-only file of the unit). A Calico CRD that went away is not left
//! for later: the pool, peer or BGP configuration read answers 404, and the converge is
//! then run again with every read ([`super::cluster`]).
//!
//! With a healthy agent an `update-status` reads nothing at all (the agent watches every
//! object the unit owns and corrects drift within seconds); this is the fallback without
//! one.

use serde::{Deserialize, Serialize};

use super::workloads::WorkloadKind;

/// A read that an `update-status` may leave to a later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Whether the workloads' CRDs are served (discovery of their API groups), and creating
    /// the missing ones.
    Crds,
    /// One labelled list of a workload kind: its drift corrected, its stale objects pruned.
    Kind(WorkloadKind),
    /// The API server's `/version` (the support-matrix warning).
    Version,
    /// The cluster's Node count (Typha: whether, and how many replicas).
    Nodes,
}

/// Workload kinds listed on every hook: what runs Calico.
pub const EVERY_HOOK: [WorkloadKind; 2] = [WorkloadKind::DaemonSet, WorkloadKind::Deployment];

/// Everything else, in turns: an `update-status` takes the next turn, at most three
/// requests (the CRD check is one discovery request per API group of the CRDs: two with
/// the releases that have `policy.networking.k8s.io` kinds).
pub const ROTATION: [&[Check]; 4] = [
    &[Check::Crds, Check::Kind(WorkloadKind::ServiceAccount)],
    &[
        Check::Kind(WorkloadKind::ClusterRole),
        Check::Kind(WorkloadKind::ClusterRoleBinding),
        Check::Kind(WorkloadKind::ConfigMap),
    ],
    &[
        Check::Version,
        Check::Kind(WorkloadKind::Secret),
        Check::Kind(WorkloadKind::Service),
    ],
    &[Check::Kind(WorkloadKind::PodDisruptionBudget), Check::Nodes],
];

/// What the leader's hooks remember between hooks (`hooks.json` in the unit's directory,
/// root-only): where the rotation stands, and the facts an `update-status` may not re-read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memo {
    /// The turn of [`ROTATION`] the next `update-status` takes.
    #[serde(default)]
    pub cursor: usize,
    /// The cluster's Kubernetes version (major, minor), as last read.
    #[serde(default)]
    pub kubernetes: Option<(u32, u32)>,
    /// The cluster's Node count, as last read.
    #[serde(default)]
    pub nodes: Option<u64>,
    /// [`fingerprint`] of the workloads the last settled hook converged: when the rendered
    /// workloads differ from it, the hook reads (and so applies) every kind at once.
    #[serde(default)]
    pub workloads: Option<String>,
}

/// A digest of the rendered workload objects and CRD names (what the leader applies).
pub fn fingerprint(workloads: &crate::render::workloads::Workloads) -> String {
    let mut text = Vec::new();
    for object in super::plan::workload_objects(workloads) {
        if let Some(json) = object.to_json() {
            text.extend(json.to_string().into_bytes());
        }
    }
    for crd in &workloads.crds {
        text.extend(crd.metadata.name.clone().unwrap_or_default().into_bytes());
    }
    crate::text::fingerprint(&text)
}

/// What one hook reads of what [`ROTATION`] holds (the rest is read on every hook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reads {
    pub crds: bool,
    /// The workload kinds listed, in [`WorkloadKind::ALL`] order.
    pub kinds: Vec<WorkloadKind>,
    pub version: bool,
    pub nodes: bool,
    /// What a live agent that watches this node's calico-node pod says of it (`ready`,
    /// `missing` or why it is not ready): the hook takes its word and does not list the
    /// pod. `None`: the pod is listed.
    pub pod_verdict: Option<String>,
}

impl Default for Reads {
    fn default() -> Self {
        Reads::all()
    }
}

impl Reads {
    /// Everything.
    pub fn all() -> Reads {
        Reads {
            crds: true,
            kinds: WorkloadKind::ALL.to_vec(),
            version: true,
            nodes: true,
            pod_verdict: None,
        }
    }

    /// Whether every read is made.
    pub fn is_all(&self) -> bool {
        *self == Reads::all()
    }

    /// Whether workload kind `kind` is listed.
    pub fn lists(&self, kind: WorkloadKind) -> bool {
        self.kinds.contains(&kind)
    }
}

/// What this hook reads, and the rotation's position for the next `update-status`.
/// Everything on any hook but `update-status`, and whenever there is no memo (the first
/// hook, or an unreadable file). On `update-status`: [`EVERY_HOOK`], the memo's turn of
/// [`ROTATION`], and a fact the memo does not hold.
pub fn reads(update_status: bool, memo: Option<&Memo>) -> (Reads, usize) {
    let Some(memo) = memo.filter(|_| update_status) else {
        return (Reads::all(), memo.map_or(0, |m| m.cursor % ROTATION.len()));
    };
    let turn = memo.cursor % ROTATION.len();
    let due = ROTATION[turn];
    let kinds = WorkloadKind::ALL
        .into_iter()
        .filter(|k| EVERY_HOOK.contains(k) || due.contains(&Check::Kind(*k)))
        .collect();
    let reads = Reads {
        crds: due.contains(&Check::Crds),
        kinds,
        version: due.contains(&Check::Version) || memo.kubernetes.is_none(),
        nodes: due.contains(&Check::Nodes) || memo.nodes.is_none(),
        pod_verdict: None,
    };
    (reads, (turn + 1) % ROTATION.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memo(cursor: usize) -> Memo {
        Memo {
            cursor,
            kubernetes: Some((1, 36)),
            nodes: Some(3),
            workloads: None,
        }
    }

    /// The rotating reads of one hook, counted as requests (the CRD check as two: two API
    /// groups).
    fn rotating(r: &Reads) -> usize {
        2 * usize::from(r.crds)
            + usize::from(r.version)
            + usize::from(r.nodes)
            + r.kinds.iter().filter(|k| !EVERY_HOOK.contains(k)).count()
    }

    #[test]
    fn every_hook_but_update_status_reads_everything() {
        for m in [None, Some(&memo(2))] {
            let (r, next) = reads(false, m);
            assert!(r.is_all());
            assert_eq!(next, m.map_or(0, |m| m.cursor), "the rotation stays");
        }
        // No memo yet: update-status reads everything too.
        assert!(reads(true, None).0.is_all());
    }

    #[test]
    fn update_status_reads_at_most_three_more_and_every_check_within_four_hooks() {
        let mut cursor = 0;
        let mut seen_crds = false;
        let mut seen_version = false;
        let mut seen_nodes = false;
        let mut seen_kinds = std::collections::BTreeSet::new();
        for _ in 0..ROTATION.len() {
            let (r, next) = reads(true, Some(&memo(cursor)));
            assert!(rotating(&r) <= 3, "{r:?}");
            for k in EVERY_HOOK {
                assert!(r.lists(k), "{k:?} is listed on every hook");
            }
            seen_crds |= r.crds;
            seen_version |= r.version;
            seen_nodes |= r.nodes;
            seen_kinds.extend(r.kinds.iter().map(|k| k.as_str()));
            cursor = next;
        }
        assert_eq!(cursor, 0, "a round is four hooks");
        assert!(seen_crds && seen_version && seen_nodes);
        assert_eq!(
            seen_kinds.len(),
            WorkloadKind::ALL.len(),
            "every kind: {seen_kinds:?}"
        );
        // The first turn, by hand: the CRDs and the ServiceAccounts.
        let (r, next) = reads(true, Some(&memo(0)));
        assert!(r.crds && !r.version && !r.nodes);
        assert_eq!(
            r.kinds,
            vec![
                WorkloadKind::ServiceAccount,
                WorkloadKind::DaemonSet,
                WorkloadKind::Deployment
            ]
        );
        assert_eq!(next, 1);
        // It wraps around, whatever the file says.
        assert_eq!(reads(true, Some(&memo(3))).1, 0);
        assert_eq!(reads(true, Some(&memo(9))).1, 2);
    }

    #[test]
    fn a_fact_the_memo_lacks_is_read_whatever_the_turn() {
        let (r, _) = reads(
            true,
            Some(&Memo {
                cursor: 0,
                kubernetes: None,
                nodes: None,
                workloads: None,
            }),
        );
        assert!(r.version && r.nodes && r.crds);
    }

    #[test]
    fn the_memo_reads_back_from_older_or_partial_files() {
        let m: Memo = serde_json::from_str("{}").expect("empty");
        assert_eq!(m, Memo::default());
        let m: Memo =
            serde_json::from_str(r#"{"cursor":4,"kubernetes":[1,30],"nodes":7}"#).expect("full");
        assert_eq!(
            m,
            Memo {
                cursor: 4,
                kubernetes: Some((1, 30)),
                nodes: Some(7),
                workloads: None,
            }
        );
    }
}
