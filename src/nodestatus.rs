//! Are this node's BGP sessions up? (Calico 3.22 or later.)
//!
//! Each unit keeps one `CalicoNodeStatus` for its node, asking calico-node for the `BGP`
//! class only; calico-node writes what BIRD reports into its `status.bgp`. Every hook that
//! reports status reads it back and compares the sessions with the ones the topology model
//! expects for this unit ([`crate::topology`]): all established is `Ready (BGP 4/4
//! established)`; any expected session that is not established, or missing from the report,
//! and any session the model does not expect, is `waiting`, each peer named.
//!
//! Pure: the object to keep, the reading of a report and the comparison. The Kubernetes edge
//! is in `apply::cluster`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kube::api::ObjectMeta;

use crate::calico::{self, CalicoNodeStatus, CalicoNodeStatusSpec, CalicoNodeStatusStatus};
use crate::config::release::CalicoVersion;
use crate::problems::Cause;
use crate::status::{Shown, StatusKind};

/// The first release with `CalicoNodeStatus`: Calico v3.22 introduced the resource (its
/// reference page, projectcalico/calico `reference/resources/caliconodestatus.md`, and the
/// `caliconodestatuses` CRD first appear in that release; see docs/workloads-versions.md).
pub(crate) const FIRST_RELEASE: CalicoVersion = CalicoVersion::new(3, 22, 0);

/// How often calico-node refreshes the report. Upstream warns that short periods on many
/// nodes load the API server (the resource page's "Notes": 10 nodes at 1 s cost 5% of a
/// vCPU each); the charm reads the report once per hook, at most every few minutes
/// (`update-status` runs every 5 minutes by default), so one refresh per minute keeps it
/// fresh for the reader at 1/60 of that load: 1000 nodes write about 17 times a second.
pub(crate) const UPDATE_PERIOD_SECONDS: u32 = 60;

/// The report class the charm asks for.
pub(crate) const BGP_CLASS: &str = "BGP";

/// The state BIRD reports for a working session.
pub(crate) const ESTABLISHED: &str = "Established";

/// Whether calico-node of this release writes `CalicoNodeStatus`.
pub fn supported(version: CalicoVersion) -> bool {
    version.at_least(FIRST_RELEASE)
}

/// The `CalicoNodeStatus` this unit keeps: named after its node (one per node), labelled as
/// the unit's own, `BGP` class, refreshed every [`UPDATE_PERIOD_SECONDS`].
pub fn desired(owner: &str, node_name: &str) -> CalicoNodeStatus {
    CalicoNodeStatus {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            labels: Some(calico::charm_labels(Some(owner))),
            ..ObjectMeta::default()
        },
        spec: CalicoNodeStatusSpec {
            node: Some(node_name.to_string()),
            classes: Some(vec![BGP_CLASS.to_string()]),
            update_period_seconds: Some(UPDATE_PERIOD_SECONDS),
        },
        status: None,
    }
}

/// Whether the live object already is what [`desired`] gives: same spec, and the charm's
/// labels present (others' labels are left alone). Then nothing needs writing.
pub fn matches(live: &CalicoNodeStatus, want: &CalicoNodeStatus) -> bool {
    let live_labels = live.metadata.labels.clone().unwrap_or_default();
    live.spec == want.spec
        && want
            .metadata
            .labels
            .iter()
            .flatten()
            .all(|(k, v)| live_labels.get(k) == Some(v))
}

/// Whether this unit owns the object (its unit label), so that it may delete it.
pub(crate) fn owned_by(live: &CalicoNodeStatus, owner: &str) -> bool {
    live.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(calico::UNIT_LABEL))
        .is_some_and(|o| o == owner)
}

pub use crate::problems::{Health, Reported, Trouble};

/// The sessions in a report (IPv4 and IPv6), or `None` when calico-node has not written one
/// yet. Entries without a readable peer address are left out.
pub fn reported(status: Option<&CalicoNodeStatusStatus>) -> Option<Vec<Reported>> {
    let bgp = status?.bgp.as_ref()?;
    let peers = bgp
        .peers_v4
        .iter()
        .chain(bgp.peers_v6.iter())
        .flatten()
        .filter_map(|p| {
            let peer = p.peer_ip.as_deref()?.trim().parse().ok()?;
            Some(Reported {
                peer,
                state: p.state.clone().unwrap_or_default(),
            })
        })
        .collect();
    Some(peers)
}

/// Compare calico-node's report with the sessions the model expects (`None`: this unit has
/// no model, e.g. too many units for the leader to publish every unit's sessions; then only
/// the report is judged). Duplicate report entries count once.
pub fn compare(expected: Option<&[IpAddr]>, reported: &[Reported]) -> Health {
    let mut by_peer: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for r in reported {
        let slot = by_peer.entry(r.peer).or_insert(r.state.as_str());
        // A peer reported twice (v4 and v6 lists, or a stale entry): established wins.
        if r.state == ESTABLISHED {
            *slot = ESTABLISHED;
        }
    }
    let mut troubles = Vec::new();
    let (total, established) = match expected {
        Some(expected) => {
            let mut want: Vec<IpAddr> = expected.to_vec();
            want.sort();
            want.dedup();
            let mut established = 0;
            for peer in &want {
                match by_peer.get(peer) {
                    Some(&ESTABLISHED) => established += 1,
                    Some(state) => troubles.push(Trouble::NotEstablished {
                        peer: *peer,
                        state: state.to_string(),
                    }),
                    None => troubles.push(Trouble::Missing { peer: *peer }),
                }
            }
            for (peer, state) in &by_peer {
                if !want.contains(peer) {
                    troubles.push(Trouble::Unexpected {
                        peer: *peer,
                        state: state.to_string(),
                    });
                }
            }
            (want.len(), established)
        }
        None => {
            let mut established = 0;
            for (peer, state) in &by_peer {
                if *state == ESTABLISHED {
                    established += 1;
                } else {
                    troubles.push(Trouble::NotEstablished {
                        peer: *peer,
                        state: state.to_string(),
                    });
                }
            }
            (by_peer.len(), established)
        }
    };
    Health {
        total,
        established,
        troubles,
    }
}

/// The unit's status with its sessions: an `active` unit becomes `Ready (BGP 4/4
/// established)` (the count added to its message), or `waiting` naming the sessions that
/// are not as expected. Any other status stays as it is: it names a cause that comes first.
/// A node with no session expected and none reported gets nothing added (the topology's
/// problems already say a node without sessions is cut off).
pub(crate) fn status_with(status: Shown, health: &Health) -> Shown {
    if status.kind() != StatusKind::Active || (health.total == 0 && health.healthy()) {
        return status;
    }
    if !health.healthy() {
        return Shown::new(Cause::BgpSessions(health.clone()));
    }
    status.with_note(Cause::BgpEstablished {
        established: health.established,
        total: health.total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn rep(peer: &str, state: &str) -> Reported {
        Reported {
            peer: ip(peer),
            state: state.into(),
        }
    }

    use crate::status::UnitStatus;

    fn ready() -> Shown {
        Shown::new(Cause::Ready)
    }

    #[test]
    fn all_established_is_ready_with_the_count() {
        let expected = [
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        ];
        let reported = [
            rep("10.0.0.4", "Established"),
            rep("10.0.0.1", "Established"),
            rep("10.0.0.2", "Established"),
            rep("10.0.0.3", "Established"),
        ];
        let health = compare(Some(&expected), &reported);
        assert!(health.healthy());
        assert_eq!(
            status_with(ready(), &health).unit_status(),
            UnitStatus::new(StatusKind::Active, "Ready (BGP 4/4 established)")
        );
    }

    #[test]
    fn one_not_established_is_waiting_naming_it_with_birds_state() {
        let expected = [
            ip("10.0.0.1"),
            ip("10.0.0.2"),
            ip("10.0.0.3"),
            ip("10.0.0.4"),
        ];
        let reported = [
            rep("10.0.0.1", "Active"),
            rep("10.0.0.2", "Established"),
            rep("10.0.0.3", "Established"),
            rep("10.0.0.4", "Established"),
        ];
        let health = compare(Some(&expected), &reported);
        assert_eq!(
            status_with(ready(), &health).unit_status(),
            UnitStatus::new(
                StatusKind::Waiting,
                "BGP: 1 of 4 sessions not established: 10.0.0.1 (Active)"
            )
        );
    }

    #[test]
    fn missing_and_unexpected_sessions_are_named_as_such() {
        let expected = [ip("10.0.0.1"), ip("10.0.0.2")];
        let reported = [
            rep("10.0.0.2", "Established"),
            rep("10.0.0.9", "Established"),
        ];
        let health = compare(Some(&expected), &reported);
        assert_eq!(
            health.message(),
            "BGP: 1 of 2 sessions not established: 10.0.0.1 (missing: calico-node reports no \
             such session); 1 unexpected session: 10.0.0.9 (unexpected: not in the model, \
             Established)"
        );
        // Only an unexpected one: the count of the expected, then the stranger.
        let health = compare(Some(&[ip("10.0.0.2")]), &reported);
        assert_eq!(
            health.message(),
            "BGP: 1/1 established; 1 unexpected session: 10.0.0.9 (unexpected: not in the \
             model, Established)"
        );
        assert_eq!(status_with(ready(), &health).kind(), StatusKind::Waiting);
    }

    #[test]
    fn many_troubles_are_counted_after_three() {
        let expected: Vec<IpAddr> = (1..=6).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        let health = compare(Some(&expected), &[]);
        assert_eq!(
            health.message(),
            "BGP: 6 of 6 sessions not established: 10.0.0.1 (missing: calico-node reports no \
             such session), 10.0.0.2 (missing: calico-node reports no such session), 10.0.0.3 \
             (missing: calico-node reports no such session), +3 more"
        );
    }

    #[test]
    fn without_a_model_only_the_report_is_judged() {
        let reported = [rep("10.0.0.1", "Established"), rep("10.0.0.2", "Connect")];
        let health = compare(None, &reported);
        assert_eq!(
            health.message(),
            "BGP: 1 of 2 sessions not established: 10.0.0.2 (Connect)"
        );
        let health = compare(None, &reported[..1]);
        assert_eq!(health.message(), "BGP 1/1 established");
    }

    #[test]
    fn other_statuses_and_sessionless_nodes_are_left_alone() {
        let waiting = Shown::new(Cause::CrdsMissing);
        let health = compare(Some(&[ip("10.0.0.1")]), &[]);
        assert_eq!(status_with(waiting.clone(), &health), waiting);
        let blocked = Shown::new(Cause::Denied {
            datastore: "Kubernetes API".into(),
            cause: "forbidden".into(),
        });
        assert_eq!(status_with(blocked.clone(), &health), blocked);
        assert_eq!(status_with(ready(), &compare(Some(&[]), &[])), ready());
        let warned = ready().with_note(Cause::ConfigWarnings(1));
        assert_eq!(
            warned.unit_status().message,
            "Ready (1 config warning, see juju debug-log)"
        );
        let health = compare(Some(&[ip("10.0.0.1")]), &[rep("10.0.0.1", "Established")]);
        assert_eq!(
            status_with(warned, &health).unit_status().message,
            "Ready (1 config warning, see juju debug-log); BGP 1/1 established"
        );
    }

    #[test]
    fn a_report_is_read_from_both_families_skipping_unreadable_entries() {
        let status: CalicoNodeStatusStatus = serde_json::from_value(serde_json::json!({
            "bgp": {
                "numberEstablishedV4": 1, "numberNotEstablishedV4": 1,
                "numberEstablishedV6": 1, "numberNotEstablishedV6": 0,
                "peersV4": [
                    {"peerIP": "10.0.0.1", "state": "Established", "type": "NodeMesh", "since": "09:23:22"},
                    {"peerIP": "not-an-ip", "state": "Established"},
                    {"peerIP": "10.0.0.2", "type": "GlobalPeer"}
                ],
                "peersV6": [{"peerIP": "fd00::1", "state": "Established", "type": "NodePeer"}]
            },
            "lastUpdated": "2026-12-02T00:00:00Z"
        }))
        .expect("status");
        assert_eq!(
            reported(Some(&status)),
            Some(vec![
                rep("10.0.0.1", "Established"),
                rep("10.0.0.2", ""),
                rep("fd00::1", "Established"),
            ])
        );
        assert_eq!(reported(Some(&CalicoNodeStatusStatus::default())), None);
        assert_eq!(reported(None), None);
        let health = compare(None, &reported(Some(&status)).unwrap_or_default());
        assert_eq!(
            health.message(),
            "BGP: 1 of 3 sessions not established: 10.0.0.2 (state unknown)"
        );
    }

    #[test]
    fn the_object_asks_for_bgp_for_its_node_and_is_labelled() {
        let want = desired("calico-3", "node-3");
        let json = serde_json::to_value(&want).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "crd.projectcalico.org/v1",
                "kind": "CalicoNodeStatus",
                "metadata": {"name": "node-3", "labels": {
                    "app.kubernetes.io/managed-by": "calico-charm",
                    "calico.juju.is/unit": "calico-3"
                }},
                "spec": {"node": "node-3", "classes": ["BGP"], "updatePeriodSeconds": 60}
            })
        );
        let mut live = want.clone();
        assert!(matches(&live, &want) && owned_by(&live, "calico-3"));
        assert!(!owned_by(&live, "calico-4"));
        live.metadata
            .labels
            .get_or_insert_default()
            .insert("team".into(), "net".into());
        live.status = Some(CalicoNodeStatusStatus::default());
        assert!(
            matches(&live, &want),
            "others' labels and the status do not matter"
        );
        live.spec.update_period_seconds = Some(1);
        assert!(!matches(&live, &want));
    }
}
