//! The `calico` peer relation and the `topology` / `bgp-status` actions, through the packed
//! charm (dispatch, hook-tool emulator, the test API server as the cluster).
//!
//! Juju shares peer data between units; here each unit has its own emulated agent, so the
//! test carries every unit's committed bag to the others and the leader's application bag to
//! everyone, as the controller would between hooks.

mod juju_harness;
mod support;

use juju_harness::{HookRun, PEER_RELATION, Unit, share_peer_data};
use serde_json::{Value, json};
use support::apiserver::{Options, TestApiServer};

fn assert_ok(unit: &Unit, run: &HookRun) {
    assert!(run.ok(), "{}: {run:?}\n{}", unit.name, unit.transcript());
}

/// A unit at `address` (`IP/PREFIX`) on node `node`, related to its principal, with the
/// shared test API server as its cluster and the peer relation (no peer data yet).
fn peer_unit(name: &str, address: &str, node: &str, leader: bool, server: &TestApiServer) -> Unit {
    let unit = Unit::on_cluster(name, leader, node, |path| server.write_kubeconfig(path));
    unit.bind_cni_at(address);
    unit.join_peer_relation();
    unit
}

fn hooks(units: &[&Unit], hook: &str) {
    for u in units {
        assert_ok(u, &u.hook(hook));
    }
}

/// The cluster with `nodes` registered; `None` when the envtest tests are skipped.
fn server_for(nodes: &[&str]) -> Option<TestApiServer> {
    let server = envtest!(Options::default())?;
    for n in nodes {
        server.add_ready_node(n, None, "docker.io/calico/node:v3.6.1");
    }
    Some(server)
}

fn problems(unit: &Unit) -> Value {
    let r = unit.state("relations.json");
    serde_json::from_str(
        r[PEER_RELATION]["app"]["topology-problems"]
            .as_str()
            .unwrap_or("null"),
    )
    .unwrap_or(Value::Null)
}

#[test]
fn each_unit_publishes_its_facts_and_the_leader_publishes_every_units_problems() {
    let Some(server) = server_for(&["node-0", "node-1", "node-2"]) else {
        return;
    };
    // calico/2 is made a route reflector while the mesh is on and no peer is configured: it
    // has no BGP session at all.
    let u0 = peer_unit("calico/0", "10.0.0.2/24", "node-0", true, &server);
    let u1 = peer_unit("calico/1", "10.0.0.3/24", "node-1", false, &server);
    let u2 = peer_unit("calico/2", "10.0.0.4/24", "node-2", false, &server);
    let all = [&u0, &u1, &u2];
    for u in all {
        u.set_config("route-reflector-cluster-ids", json!("2: 244.0.0.1"));
    }
    hooks(&all, "config-changed");
    assert_eq!(
        u2.local_data(PEER_RELATION),
        [
            ("address", "10.0.0.4/24"),
            ("as", "64512"),
            ("cluster-id", "244.0.0.1"),
            ("node-name", "node-2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    );
    // Not a reflector: no cluster-id (an empty value deletes the key, as in Juju).
    assert!(!u1.local_data(PEER_RELATION).contains_key("cluster-id"));
    // The leader sees the others on its next hook.
    share_peer_data(&all);
    hooks(&[&u0], "update-status");
    let p = problems(&u0);
    let kinds: Vec<&str> = p["calico/2"]
        .as_array()
        .expect("calico/2's problems")
        .iter()
        .filter_map(|x| x["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["isolated-node", "route-reflector-without-clients"],
        "{p}"
    );
    assert_eq!(p["calico/2"][0]["cut_off"], json!(true));
    assert!(
        p.get("calico/0").is_none() && p.get("calico/1").is_none(),
        "{p}"
    );
    assert!(
        u0.logs().iter().any(|l| l.level == "DEBUG" && l.message.contains("\ncalico/2 node-2 10.0.0.4/24 AS 64512 (route reflector, cluster ID 244.0.0.1)\n")),
        "the leader logs the topology at debug"
    );
    assert_eq!(
        u0.status(),
        (
            "active".to_string(),
            "Ready (1 config warning, see juju debug-log)".to_string()
        )
    );
    // Every unit shows its own: calico/2 is cut off, calico/1 has nothing.
    share_peer_data(&all);
    hooks(&[&u1, &u2], "update-status");
    assert_eq!(
        u2.status(),
        (
            "blocked".to_string(),
            "BGP: calico/2 (10.0.0.4) has no BGP session at all (isolated-node)".to_string()
        )
    );
    assert_eq!(u1.status().0, "active");
    assert!(!u1.status().1.contains("BGP"), "{:?}", u1.status());
}

#[test]
fn a_unit_that_joins_or_leaves_changes_the_result_on_the_next_hook() {
    let Some(server) = server_for(&["node-0", "node-1", "node-2"]) else {
        return;
    };
    // Route reflection without the mesh: calico/0 reflects for everyone listed.
    let u0 = peer_unit("calico/0", "10.0.0.2/24", "node-0", true, &server);
    let u1 = peer_unit("calico/1", "10.0.0.3/24", "node-1", false, &server);
    let all = [&u0, &u1];
    for u in all {
        u.set_config("node-to-node-mesh", json!(false));
        u.set_config("route-reflector-cluster-ids", json!("0: 0.0.0.0"));
        u.set_config(
            "global-bgp-peers",
            json!("[{address: 10.0.0.2, as-number: 64512}]"),
        );
    }
    hooks(&all, "config-changed");
    share_peer_data(&all);
    hooks(&[&u0], "update-status");
    // With two units: only the 0.0.0.0 warning, for the reflector.
    let kinds = |p: &Value, unit: &str| -> Vec<String> {
        p[unit]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["kind"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(kinds(&problems(&u0), "calico/0"), ["rr-cluster-id-zero"]);
    assert_eq!(
        u0.status().1,
        "Ready (1 config warning, see juju debug-log); BGP warning: rr-cluster-id-zero, see the topology action"
    );
    // calico/2 joins: a second client of the reflector, seen on the leader's next hook.
    let u2 = peer_unit("calico/2", "10.0.0.4/24", "node-2", false, &server);
    let all = [&u0, &u1, &u2];
    for u in all {
        u.set_config("node-to-node-mesh", json!(false));
        u.set_config("route-reflector-cluster-ids", json!("0: 0.0.0.0"));
        u.set_config(
            "global-bgp-peers",
            json!("[{address: 10.0.0.2, as-number: 64512}]"),
        );
    }
    hooks(&[&u2], "config-changed");
    share_peer_data(&all);
    let joined = u0
        .prepare_hook("calico-relation-changed")
        .with_env("JUJU_RELATION", "calico")
        .with_env("JUJU_RELATION_ID", PEER_RELATION)
        .with_env("JUJU_REMOTE_UNIT", "calico/2")
        .with_env("JUJU_REMOTE_APP", "calico")
        .run();
    assert_ok(&u0, &joined);
    let p = problems(&u0);
    assert!(
        p.get("calico/2").is_none(),
        "calico/2 is a client like calico/1: {p}"
    );
    let t = topology_action(&u0);
    assert_eq!(t["nodes"].as_array().map(Vec::len), Some(3));
    // calico/1 leaves: the leader's next hook drops it.
    u0.edit_state("relations.json", |r| {
        if let Some(m) = r[PEER_RELATION]["remote-units"].as_object_mut() {
            m.remove("calico/1");
        }
    });
    let departed = u0
        .prepare_hook("calico-relation-departed")
        .with_env("JUJU_RELATION", "calico")
        .with_env("JUJU_RELATION_ID", PEER_RELATION)
        .with_env("JUJU_REMOTE_UNIT", "calico/1")
        .with_env("JUJU_REMOTE_APP", "calico")
        .with_env("JUJU_DEPARTING_UNIT", "calico/1")
        .run();
    assert_ok(&u0, &departed);
    let t = topology_action(&u0);
    let units: Vec<&str> = t["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["unit"].as_str())
        .collect();
    assert_eq!(units, ["calico/0", "calico/2"]);
}

/// Run `topology` on `unit` and return its JSON result.
fn topology_action(unit: &Unit) -> Value {
    let run = unit.action("topology", json!({}));
    assert_ok(unit, &run);
    let records = unit.action_records();
    let last = records.last().expect("an action record");
    assert!(last.get("fail").is_none(), "{last}");
    let text = last["set"]["text"].as_str().expect("text result");
    assert!(text.contains("reach: "), "{text}");
    serde_json::from_str(last["set"]["json"].as_str().expect("json result")).expect("json")
}

#[test]
fn topology_runs_on_the_leader_and_bgp_status_on_any_unit() {
    let Some(server) = server_for(&["node-0", "node-1"]) else {
        return;
    };
    let u0 = peer_unit("calico/0", "10.0.0.2/24", "node-0", true, &server);
    let u1 = peer_unit("calico/1", "10.0.0.3/24", "node-1", false, &server);
    let all = [&u0, &u1];
    hooks(&all, "config-changed");
    share_peer_data(&all);
    let t = topology_action(&u0);
    assert_eq!(t["problems"], json!([]));
    assert_eq!(t["reach"].as_array().map(Vec::len), Some(2));
    let set = u0.action_records().last().expect("record")["set"].clone();
    assert_eq!(set["errors"], json!("false"));
    // The units, as `calico-charm topology --units` reads them.
    assert_eq!(
        set["units"],
        json!(
            "- {unit: calico/0, address: 10.0.0.2/24, node-name: node-0}\n- {unit: calico/1, address: 10.0.0.3/24, node-name: node-1}"
        )
    );
    let parsed = calico_charm::topology::parse_units(set["units"].as_str().expect("units"))
        .expect("the units result is a UNITS.yaml");
    assert_eq!(parsed.len(), 2);
    // Not on a non-leader: the action fails, the unit does not.
    let run = u1.action("topology", json!({}));
    assert_ok(&u1, &run);
    let fail = u1.action_records().last().expect("record")["fail"].clone();
    assert_eq!(
        fail,
        json!("calico/1 is not the leader: run the topology action on the leader")
    );
    // bgp-status: the mesh session the model expects, and why the actual state is unknown.
    let run = u1.action("bgp-status", json!({}));
    assert_ok(&u1, &run);
    let set = u1.action_records().last().expect("record")["set"].clone();
    assert_eq!(
        set["expected"],
        json!("Mesh_10_0_0_2 10.0.0.2 AS 64512 iBGP calico/0")
    );
    assert_eq!(
        set["actual"],
        json!("unavailable: calico-node v3.6.1 has no CalicoNodeStatus (Calico 3.22 or later)")
    );
    assert_eq!(set["problems"], json!("none"));
    // On calico/0 the same session is the passive side.
    let run = u0.action("bgp-status", json!({}));
    assert_ok(&u0, &run);
    let set = u0.action_records().last().expect("record")["set"].clone();
    assert_eq!(
        set["expected"],
        json!("Mesh_10_0_0_3 10.0.0.3 AS 64512 iBGP calico/1 passive")
    );
}

const V3_32: &str = "docker.io/calico/node:v3.32.1";

/// A peer unit running Calico v3.32.1 (which has CalicoNodeStatus).
fn current_unit(
    name: &str,
    address: &str,
    node: &str,
    leader: bool,
    server: &TestApiServer,
) -> Unit {
    let unit = peer_unit(name, address, node, leader, server);
    unit.set_config("calico-node-image", json!(V3_32));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.32.1"),
    );
    unit
}

const NODE_STATUS: &str = "/apis/crd.projectcalico.org/v1/caliconodestatuses";

/// Write `status.bgp` of `CalicoNodeStatus/<node>` as calico-node does: a plain update (the
/// CRD declares no status subresource; calico-node's status reporter calls `Update`) with
/// calico-node's own identity, so that RBAC checks the grant the charm gives it.
fn report_as_calico_node(server: &TestApiServer, node: &str, peers: &[(&str, &str)]) {
    let (code, body) = write_report(server, "sa-calico-node", node, "", peers);
    assert_eq!(
        code, 200,
        "calico-node may update its CalicoNodeStatus: {body}"
    );
}

/// PUT `CalicoNodeStatus/<node>`, as read, with calico-node's report for `peers` (BIRD's
/// states) in `status`, to the object (`subresource` empty) or to its `/status`, as `user`.
fn write_report(
    server: &TestApiServer,
    user: &str,
    node: &str,
    subresource: &str,
    peers: &[(&str, &str)],
) -> (u16, String) {
    let path = format!("{NODE_STATUS}/{node}{subresource}");
    let client = server.plane().blocking_client(user).expect("client");
    let (code, body) = client.get(&format!("{NODE_STATUS}/{node}")).expect("get");
    assert_eq!(code, 200, "{user} reads CalicoNodeStatus/{node}: {body}");
    let mut object: Value = serde_json::from_str(&body).expect("json");
    let established = peers.iter().filter(|p| p.1 == "Established").count();
    object["status"] = json!({
        "lastUpdated": "2026-12-02T00:00:00Z",
        "bgp": {
            "numberEstablishedV4": established,
            "numberNotEstablishedV4": peers.len() - established,
            "numberEstablishedV6": 0,
            "numberNotEstablishedV6": 0,
            "peersV4": peers.iter().map(|(ip, state)| json!({
                "peerIP": ip, "state": state, "type": "NodeMesh", "since": "00:00:00"
            })).collect::<Vec<_>>(),
        },
    });
    client
        .request("PUT", &path, "application/json", Some(&object.to_string()))
        .expect("put")
}

/// `CalicoNodeStatus/<name>`, if it exists.
fn node_status(server: &TestApiServer, name: &str) -> Option<Value> {
    server.get("crd.projectcalico.org/v1", "CalicoNodeStatus", None, name)
}

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn calico_node_status_shows_whether_the_sessions_are_up_and_goes_with_the_unit() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    for n in ["node-0", "node-1", "node-2"] {
        server.add_ready_node(n, None, V3_32);
    }
    let u0 = current_unit("calico/0", "10.0.0.2/24", "node-0", true, &server);
    let u1 = current_unit("calico/1", "10.0.0.3/24", "node-1", false, &server);
    let u2 = current_unit("calico/2", "10.0.0.4/24", "node-2", false, &server);
    let all = [&u0, &u1, &u2];
    // The leader first: it creates Calico's CRDs and calico-node's RBAC.
    hooks(&all, "config-changed");
    share_peer_data(&all);
    hooks(&[&u0], "update-status");
    share_peer_data(&all);
    hooks(&[&u1], "update-status");
    // Each unit keeps one for its node, asking for the BGP class.
    let status = node_status(&server, "node-1").expect("CalicoNodeStatus/node-1");
    assert_eq!(
        status["spec"],
        json!({"node": "node-1", "classes": ["BGP"], "updatePeriodSeconds": 60})
    );
    assert_eq!(
        status["metadata"]["labels"]["calico.juju.is/unit"],
        json!("calico-1")
    );
    // No report yet: the status says nothing about sessions.
    assert_eq!(u1.status(), ("active".to_string(), "Ready".to_string()));

    // calico-node reports the mesh session to calico/2 still Active.
    report_as_calico_node(
        &server,
        "node-1",
        &[("10.0.0.2", "Established"), ("10.0.0.4", "Active")],
    );
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        (
            "waiting".to_string(),
            "BGP: 1 of 2 sessions not established: 10.0.0.4 (Active)".to_string()
        )
    );
    // Both up: Ready with the count; the charm's hook writes nothing to the object, and
    // calico-node's report survives it.
    report_as_calico_node(
        &server,
        "node-1",
        &[("10.0.0.2", "Established"), ("10.0.0.4", "Established")],
    );
    let before = node_status(&server, "node-1").expect("object");
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        (
            "active".to_string(),
            "Ready (BGP 2/2 established)".to_string()
        )
    );
    hooks(&[&u1], "config-changed");
    let after = node_status(&server, "node-1").expect("object");
    assert_eq!(resource_version(&before), resource_version(&after));
    assert_eq!(after["status"]["bgp"]["numberEstablishedV4"], json!(2));
    // A session calico-node has that the model does not expect is named as such.
    report_as_calico_node(
        &server,
        "node-1",
        &[
            ("10.0.0.2", "Established"),
            ("10.0.0.4", "Established"),
            ("10.0.0.9", "Connect"),
        ],
    );
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        (
            "waiting".to_string(),
            "BGP: 2/2 established; 1 unexpected session: 10.0.0.9 (unexpected: not in the model, Connect)"
                .to_string()
        )
    );
    // bgp-status shows both sides.
    let run = u1.action("bgp-status", json!({}));
    assert_ok(&u1, &run);
    let set = u1.action_records().last().expect("record")["set"].clone();
    assert_eq!(
        set["actual"],
        json!(
            "10.0.0.2 Established\n10.0.0.4 Established\n10.0.0.9 Connect\nBGP: 2/2 established; 1 unexpected session: 10.0.0.9 (unexpected: not in the model, Connect)"
        )
    );

    // An operator's own CalicoNodeStatus for the same node is left alone; calico/1's goes
    // with it.
    server
        .insert(json!({
            "apiVersion": "crd.projectcalico.org/v1", "kind": "CalicoNodeStatus",
            "metadata": {"name": "node-1-debug"},
            "spec": {"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10},
        }))
        .expect("insert");
    assert_ok(&u1, &u1.hook("stop"));
    assert!(
        node_status(&server, "node-1").is_none(),
        "the stopped unit's CalicoNodeStatus is deleted"
    );
    assert!(node_status(&server, "node-1-debug").is_some());
    assert!(
        node_status(&server, "node-2").is_some(),
        "other units' stay"
    );
}

/// Upstream's `crd.projectcalico.org` CRD for CalicoNodeStatus declares no status
/// subresource, and calico-node writes its report with a plain update (the test above). A
/// cluster whose CRD does serve `/status` (an operator's, or a later release's) gets the same
/// result: the report written through the subresource is read the same, and the charm's own
/// writes to the object, which then cannot touch `status`, leave it in place.
#[test]
fn a_report_written_through_the_status_subresource_is_read_the_same() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    for n in ["node-0", "node-1"] {
        server.add_ready_node(n, None, V3_32);
    }
    let u0 = current_unit("calico/0", "10.0.0.2/24", "node-0", true, &server);
    let u1 = current_unit("calico/1", "10.0.0.3/24", "node-1", false, &server);
    let all = [&u0, &u1];
    hooks(&all, "config-changed");
    // The leader created the CRD; give it the status subresource.
    let admin = server.plane().blocking_client("admin").expect("client");
    let crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/caliconodestatuses.crd.projectcalico.org";
    let (code, body) = admin.get(crd_path).expect("get crd");
    assert_eq!(code, 200, "{body}");
    let mut crd: Value = serde_json::from_str(&body).expect("json");
    crd["spec"]["versions"][0]["subresources"] = json!({"status": {}});
    let (code, body) = admin
        .request("PUT", crd_path, "application/json", Some(&crd.to_string()))
        .expect("put crd");
    assert_eq!(code, 200, "{body}");
    share_peer_data(&all);
    hooks(&[&u0], "update-status");
    share_peer_data(&all);
    hooks(&[&u1], "update-status");
    assert!(
        node_status(&server, "node-1").is_some(),
        "the unit keeps one"
    );

    // Through /status (served once the API server has rebuilt the kind's handler).
    let report = [("10.0.0.2", "Active")];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, body) = write_report(&server, "admin", "node-1", "/status", &report);
        if code == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/status never served: {code} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The subresource is in effect: a plain update of the object no longer changes status.
    let (code, body) = write_report(
        &server,
        "admin",
        "node-1",
        "",
        &[("10.0.0.2", "Established")],
    );
    assert_eq!(code, 200, "{body}");
    let stored = node_status(&server, "node-1").expect("object");
    assert_eq!(
        stored["status"]["bgp"]["peersV4"][0]["state"],
        json!("Active")
    );
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        (
            "waiting".to_string(),
            "BGP: 1 of 1 session not established: 10.0.0.2 (Active)".to_string()
        )
    );
    let (code, body) = write_report(
        &server,
        "admin",
        "node-1",
        "/status",
        &[("10.0.0.2", "Established")],
    );
    assert_eq!(code, 200, "{body}");
    // A config change re-applies what the charm owns; the report stays.
    hooks(&[&u1], "config-changed");
    hooks(&[&u1], "update-status");
    assert_eq!(
        u1.status(),
        (
            "active".to_string(),
            "Ready (BGP 1/1 established)".to_string()
        )
    );
    let stored = node_status(&server, "node-1").expect("object");
    assert_eq!(stored["status"]["bgp"]["numberEstablishedV4"], json!(1));
}

#[test]
fn releases_without_calico_node_status_log_that_session_state_is_unavailable() {
    let Some(server) = server_for(&["node-0"]) else {
        return;
    };
    let u0 = peer_unit("calico/0", "10.0.0.2/24", "node-0", true, &server);
    hooks(&[&u0], "config-changed");
    assert!(
        u0.logs().iter().any(|l| l.message
            == "BGP session state unavailable: calico-node v3.6.1 has no CalicoNodeStatus (Calico 3.22 or later)"),
        "{}",
        u0.transcript()
    );
    assert!(
        server
            .list("crd.projectcalico.org/v1", "CalicoNodeStatus", None)
            .is_empty(),
        "no CalicoNodeStatus on 3.6.1"
    );
    assert_eq!(u0.status().0, "active");
}
