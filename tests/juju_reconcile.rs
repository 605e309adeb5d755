//! The reconcile body (`reconcile::run`) with in-process doubles: hook tools that answer from
//! memory and a cluster seam that records what it was asked and answers a chosen Outcome.

use std::cell::RefCell;
use std::collections::BTreeMap;

use calico_charm::apply::Cluster;
use calico_charm::config::options::RawConfig;
use calico_charm::juju::{Event, HookEnv, HookTools, NetworkInfo, ToolError};
use calico_charm::problems::{Cause, Outcome};
use calico_charm::reconcile::{self, Fault};
use calico_charm::render::{Desired, Pools};
use calico_charm::status::{StatusKind, UnitStatus};
use serde_json::json;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// (relation id, settings) of one relation-set.
type RelationSet = (String, Vec<(String, String)>);

#[derive(Default)]
struct Tools {
    config: RawConfig,
    leader: bool,
    remote: BTreeMap<String, String>,
    missing: Option<&'static str>,
    calls: RefCell<Vec<String>>,
    statuses: RefCell<Vec<UnitStatus>>,
    sets: RefCell<Vec<RelationSet>>,
}

impl Tools {
    fn ready(leader: bool) -> Tools {
        Tools {
            leader,
            remote: [("kubeconfig-hash".to_string(), HASH.to_string())]
                .into_iter()
                .collect(),
            ..Tools::default()
        }
    }

    fn call(&self, tool: &'static str) -> Result<(), ToolError> {
        self.calls.borrow_mut().push(tool.to_string());
        if self.missing == Some(tool) {
            return Err(ToolError::Missing { tool: tool.into() });
        }
        Ok(())
    }
}

impl HookTools for Tools {
    fn config_get(&self) -> Result<RawConfig, ToolError> {
        self.call("config-get")?;
        Ok(self.config.clone())
    }
    fn network_get(&self, _binding: &str) -> Result<NetworkInfo, ToolError> {
        self.call("network-get")?;
        Ok(serde_json::from_value(json!({"bind-addresses": [
            {"interface-name": "eth0", "addresses": [{"value": "10.0.0.5"}]}
        ]}))
        .unwrap())
    }
    fn unit_get_private_address(&self) -> Result<String, ToolError> {
        self.call("unit-get")?;
        Ok("10.0.0.5".into())
    }
    fn is_leader(&self) -> Result<bool, ToolError> {
        self.call("is-leader")?;
        Ok(self.leader)
    }
    fn relation_ids(&self, endpoint: &str) -> Result<Vec<String>, ToolError> {
        self.call("relation-ids")?;
        // Only the cni relation: no peer relation in these tests (see tests/juju_peers.rs).
        Ok(if endpoint == "cni" {
            vec!["cni:1".into()]
        } else {
            Vec::new()
        })
    }
    fn relation_list(&self, _relation_id: &str) -> Result<Vec<String>, ToolError> {
        self.call("relation-list")?;
        Ok(vec!["kubernetes-control-plane/0".into()])
    }
    fn relation_get(
        &self,
        _relation_id: &str,
        _unit: &str,
    ) -> Result<BTreeMap<String, String>, ToolError> {
        self.call("relation-get")?;
        Ok(self.remote.clone())
    }
    fn relation_set(&self, relation_id: &str, settings: &[(&str, &str)]) -> Result<(), ToolError> {
        self.call("relation-set")?;
        self.sets.borrow_mut().push((
            relation_id.into(),
            settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        Ok(())
    }
    fn relation_set_app(
        &self,
        _relation_id: &str,
        _settings: &[(&str, &str)],
    ) -> Result<(), ToolError> {
        self.call("relation-set")
    }
    fn relation_get_app(
        &self,
        _relation_id: &str,
        _application: &str,
    ) -> Result<BTreeMap<String, String>, ToolError> {
        self.call("relation-get")?;
        Ok(BTreeMap::new())
    }
    fn status_set(&self, status: &UnitStatus) -> Result<(), ToolError> {
        self.call("status-set")?;
        self.statuses.borrow_mut().push(status.clone());
        Ok(())
    }
    fn application_version_set(&self, _version: &str) -> Result<(), ToolError> {
        self.call("application-version-set")
    }
    fn state_get(&self, _key: &str) -> Result<Option<String>, ToolError> {
        self.call("state-get")?;
        Ok(None)
    }
    fn state_set(&self, _key: &str, _value: &str) -> Result<(), ToolError> {
        self.call("state-set")
    }
    fn action_set(&self, _results: &[(&str, &str)]) -> Result<(), ToolError> {
        self.call("action-set")
    }
    fn action_fail(&self, _message: &str) -> Result<(), ToolError> {
        self.call("action-fail")
    }
    fn resource_get(&self, name: &str) -> Result<String, ToolError> {
        self.call("resource-get")?;
        Err(ToolError::Failed {
            tool: "resource-get".into(),
            status: "exit status: 1".into(),
            stderr: format!("ERROR could not download resource: resource {name:?} not found"),
        })
    }
}

/// A cluster seam that records every Desired and answers a fixed Outcome.
#[derive(Default)]
struct Recorder {
    answer: Outcome,
    converged: RefCell<Vec<Desired>>,
    stopped: RefCell<Vec<Desired>>,
}

impl Cluster for Recorder {
    fn converge(&self, desired: &Desired) -> Outcome {
        self.converged.borrow_mut().push(desired.clone());
        self.answer.clone()
    }
    fn stop(&self, desired: &Desired) -> Outcome {
        self.stopped.borrow_mut().push(desired.clone());
        self.answer.clone()
    }
}

fn env(unit: &str) -> HookEnv {
    let vars: BTreeMap<String, String> = [
        ("JUJU_UNIT_NAME", unit),
        ("NODENAME", "worker-1"),
        ("JUJU_DISPATCH_PATH", "hooks/config-changed"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    HookEnv::from_map(&vars)
}

#[test]
fn the_cluster_gets_what_render_wants_and_active_follows_a_settled_outcome() {
    let tools = Tools::ready(true);
    let cluster = Recorder {
        answer: Outcome {
            changed: vec!["IPPool/ipv4".into()],
            ..Outcome::default()
        },
        ..Recorder::default()
    };
    let report = reconcile::run(
        &Event::ConfigChanged,
        &env("calico/0"),
        &tools,
        &cluster,
        None,
    )
    .unwrap();
    assert_eq!(
        report.status,
        Some(UnitStatus::new(StatusKind::Active, "Ready"))
    );
    let converged = cluster.converged.borrow();
    assert_eq!(converged.len(), 1);
    let desired = &converged[0];
    assert_eq!(desired.owner, "calico-0");
    assert_eq!(desired.node.node_name, "worker-1");
    // The leader manages the default pool from config.yaml's cidr.
    match &desired.pools {
        Pools::Managed(pools) => assert_eq!(pools.len(), 1),
        Pools::Unmanaged => panic!("leader with manage-pools true must manage pools"),
    }
    assert!(desired.bgp_configuration.is_some());
    assert_eq!(report.principal.kubeconfig_hash.as_deref(), Some(HASH));
    assert!(cluster.stopped.borrow().is_empty());
}

#[test]
fn unreachable_api_is_waiting_with_the_cause_and_not_a_fault() {
    let tools = Tools::ready(false);
    let cluster = Recorder {
        answer: Outcome {
            causes: vec![Cause::Unavailable {
                datastore: "Kubernetes API".into(),
                cause: "connection refused".into(),
            }],
            ..Outcome::default()
        },
        ..Recorder::default()
    };
    let report = reconcile::run(
        &Event::UpdateStatus,
        &env("calico/2"),
        &tools,
        &cluster,
        None,
    )
    .unwrap();
    assert_eq!(
        report.status,
        Some(UnitStatus::new(
            StatusKind::Waiting,
            "Kubernetes API unavailable: connection refused"
        ))
    );
    // update-status sets only the final status.
    assert_eq!(tools.statuses.borrow().len(), 1);
    // A non-leader wants no global objects.
    let converged = cluster.converged.borrow();
    assert!(matches!(converged[0].pools, Pools::Unmanaged));
    assert!(converged[0].bgp_configuration.is_none());
    assert!(converged[0].workloads.is_none());
}

#[test]
fn denied_access_is_blocked() {
    let tools = Tools::ready(true);
    let cluster = Recorder {
        answer: Outcome {
            causes: vec![
                Cause::Denied {
                    datastore: "Kubernetes API".into(),
                    cause: "forbidden".into(),
                },
                Cause::NodeUnregistered {
                    node: "worker-1".into(),
                },
            ],
            ..Outcome::default()
        },
        ..Recorder::default()
    };
    let report = reconcile::run(&Event::Start, &env("calico/0"), &tools, &cluster, None).unwrap();
    assert_eq!(
        report.status,
        Some(UnitStatus::new(
            StatusKind::Blocked,
            "Kubernetes API denied access: forbidden"
        ))
    );
}

#[test]
fn nothing_reaches_the_cluster_before_the_kubeconfig_hash_or_with_invalid_config() {
    let cluster = Recorder::default();
    let waiting = Tools::default();
    let report =
        reconcile::run(&Event::Install, &env("calico/0"), &waiting, &cluster, None).unwrap();
    assert_eq!(
        report.status,
        Some(UnitStatus::new(
            StatusKind::Waiting,
            "Waiting for kubeconfig: the principal has not published kubeconfig-hash yet"
        ))
    );
    let mut invalid = Tools::ready(true);
    invalid.config.insert("vxlan".into(), json!("Always"));
    invalid.config.insert("ipip".into(), json!("Always"));
    let report = reconcile::run(
        &Event::ConfigChanged,
        &env("calico/0"),
        &invalid,
        &cluster,
        None,
    )
    .unwrap();
    let status = report.status.unwrap();
    assert_eq!(status.kind, StatusKind::Blocked);
    assert!(status.message.starts_with("Invalid config: "), "{status}");
    assert!(!report.config_errors.is_empty());
    assert!(cluster.converged.borrow().is_empty());
    // Relation data was still published in both hooks.
    assert_eq!(waiting.sets.borrow().len(), 1);
    assert_eq!(invalid.sets.borrow().len(), 1);
}

#[test]
fn stop_converges_to_the_stopping_desired_through_stop() {
    let tools = Tools::ready(true);
    let cluster = Recorder::default();
    for event in [Event::Stop, Event::Remove] {
        reconcile::run(&event, &env("calico/5"), &tools, &cluster, None).unwrap();
    }
    let stopped = cluster.stopped.borrow();
    assert_eq!(stopped.len(), 2);
    for desired in stopped.iter() {
        assert_eq!(desired.owner, "calico-5");
        assert!(desired.peers.is_empty());
        assert!(desired.node.annotations.is_empty());
        assert!(matches!(desired.pools, Pools::Unmanaged));
        assert!(desired.workloads.is_none());
    }
    assert!(cluster.converged.borrow().is_empty());
    // No hook tool at all while going away: nothing that can fail and wedge the removal.
    assert!(
        tools.calls.borrow().is_empty(),
        "{:?}",
        tools.calls.borrow()
    );
}

#[test]
fn a_missing_tool_is_a_fault_naming_it() {
    let tools = Tools {
        missing: Some("relation-ids"),
        ..Tools::ready(true)
    };
    let err = reconcile::run(
        &Event::ConfigChanged,
        &env("calico/0"),
        &tools,
        &Recorder::default(),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, Fault::Tool(ToolError::Missing { ref tool }) if tool == "relation-ids"));
    assert!(err.to_string().contains("relation-ids"));
}

#[test]
fn a_bad_unit_name_is_a_fault() {
    let tools = Tools::ready(true);
    let err = reconcile::run(
        &Event::ConfigChanged,
        &env("Calico"),
        &tools,
        &Recorder::default(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("JUJU_UNIT_NAME: "), "{err}");
}

#[test]
fn unknown_hooks_call_no_tool() {
    let tools = Tools::ready(true);
    let report = reconcile::run(
        &Event::Other("secret-rotate".into()),
        &env("calico/0"),
        &tools,
        &Recorder::default(),
        None,
    )
    .unwrap();
    assert!(report.status.is_none());
    assert!(tools.calls.borrow().is_empty());
}

#[test]
fn the_published_cidr_is_the_normalised_one() {
    let mut tools = Tools::ready(false);
    tools
        .config
        .insert("cidr".into(), json!(" 10.1.0.0/16 ,FD00:0:0::/64"));
    reconcile::run(
        &Event::ConfigChanged,
        &env("calico/0"),
        &tools,
        &Recorder::default(),
        None,
    )
    .unwrap();
    let sets = tools.sets.borrow();
    assert_eq!(
        sets[0],
        (
            "cni:1".to_string(),
            vec![
                ("cidr".to_string(), "10.1.0.0/16,fd00::/64".to_string()),
                (
                    "cni-conf-file".to_string(),
                    "10-calico.conflist".to_string()
                ),
            ]
        )
    );
}

/// A cluster seam with a defect: it panics.
struct Panicking;

impl Cluster for Panicking {
    fn converge(&self, _desired: &Desired) -> Outcome {
        panic!("index out of bounds near token: panic-secret-token-1234");
    }
}

#[test]
fn a_panic_is_caught_at_the_edge_and_reported_blocked_with_its_cause() {
    let tools = Tools::ready(false);
    let env = env("calico/0");
    let result = reconcile::guarded(&tools, || {
        reconcile::run(&Event::ConfigChanged, &env, &tools, &Panicking, None)
    });
    assert!(result.is_ok(), "exit 0, not a failed hook: {result:?}");
    let statuses = tools.statuses.borrow();
    // Configuring first, then not stuck there: blocked, naming the cause, redacted.
    assert_eq!(
        statuses.first().map(|s| s.kind),
        Some(StatusKind::Maintenance)
    );
    let last = statuses.last().expect("a status");
    assert_eq!(last.kind, StatusKind::Blocked, "{last:?}");
    assert_eq!(
        last.message,
        "Internal error: index out of bounds near token: [redacted] (see juju debug-log)"
    );
}

#[test]
fn a_hung_hook_tool_ends_the_hook_waiting_not_failed() {
    let tools = Tools::ready(false);
    let result = reconcile::guarded(&tools, || {
        Err(Fault::Tool(ToolError::Timeout {
            tool: "network-get".into(),
            timeout: std::time::Duration::from_secs(30),
        }))
    });
    assert!(result.is_ok());
    let statuses = tools.statuses.borrow();
    assert_eq!(
        statuses.last(),
        Some(&UnitStatus::new(
            StatusKind::Waiting,
            "hook tool network-get did not finish within 30s and was killed; the next hook retries"
        ))
    );
    // A missing tool is still a fault (exit 1).
    assert!(
        reconcile::guarded(&tools, || Err(Fault::Tool(ToolError::Missing {
            tool: "is-leader".into()
        })))
        .is_err()
    );
}
