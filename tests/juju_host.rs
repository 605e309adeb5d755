//! The packed charm on a machine: what it reads and changes on the node beside calico-node
//! (loose RPF, the vxlan.calico checksum offload), run through `dispatch` with the hook-tool
//! emulator, a test API server and a stand-in machine (`Unit::host_dir`).

mod juju_harness;

use juju_harness::assert_ok;
mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use juju_harness::{KUBECONFIG_HASH, Unit};
use serde_json::{Value, json};
use support::apiserver::{Options, TestApiServer};

/// A related unit on node `worker-0` of `server` (registered, calico-node of `image` ready).
fn unit_on(server: &TestApiServer, name: &str, leader: bool, image: &str) -> Unit {
    let mut unit = Unit::new(name);
    unit.set_leader(leader);
    unit.relate_cni(4, &[("kubeconfig-hash", KUBECONFIG_HASH)]);
    server
        .write_kubeconfig(&unit.kubeconfig())
        .expect("write kubeconfig");
    unit.set_env("NODENAME", "worker-0");
    server.add_ready_node("worker-0", None, image);
    unit
}

fn status(unit: &Unit) -> (String, String) {
    unit.status()
}

fn node_env(server: &TestApiServer) -> Vec<Value> {
    let ds = server
        .get("apps/v1", "DaemonSet", Some("kube-system"), "calico-node")
        .expect("calico-node DaemonSet");
    ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn env_value(env: &[Value], name: &str) -> Option<String> {
    env.iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

#[test]
fn loose_rpf_blocks_naming_the_option_and_the_sysctl_until_ignore_loose_rpf_is_set() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let unit = unit_on(&server, "calico/0", true, "docker.io/calico/node:v3.6.1");
    unit.set_rp_filter(2);
    assert_ok(&unit, &unit.hook("install"));
    let (kind, message) = status(&unit);
    assert_eq!(kind, "blocked", "{message}");
    assert_eq!(
        message,
        "ignore-loose-rpf is false but net.ipv4.conf.all.rp_filter is 2 (loose): Felix will \
         not run; set ignore-loose-rpf=true or net.ipv4.conf.all.rp_filter=1"
    );
    // Everything else was still applied: the block is about this node only.
    assert_eq!(env_value(&node_env(&server), "FELIX_IGNORELOOSERPF"), None);

    unit.set_config("ignore-loose-rpf", json!(true));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(status(&unit), ("active".into(), "Ready".into()));
    assert_eq!(
        env_value(&node_env(&server), "FELIX_IGNORELOOSERPF").as_deref(),
        Some("true")
    );

    // A strict node with the option false is fine too.
    unit.set_config("ignore-loose-rpf", json!(false));
    unit.set_rp_filter(1);
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(status(&unit), ("active".into(), "Ready".into()));
}

/// A stand-in `ethtool` that appends its arguments to `<dir>/ethtool.calls` and succeeds.
fn stand_in_ethtool(dir: &Path) -> std::path::PathBuf {
    let program = dir.join("ethtool");
    fs::write(
        &program,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n",
            dir.join("ethtool.calls").display()
        ),
    )
    .expect("write ethtool");
    fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).expect("chmod");
    program
}

#[test]
fn vxlan_checksum_offload_before_3_20_waits_for_the_device_then_runs_ethtool_on_every_hook() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let image = "docker.io/calico/node:v3.19.4";
    let mut unit = unit_on(&server, "calico/0", true, image);
    let ethtool = stand_in_ethtool(&unit.host_dir());
    unit.set_env("CALICO_CHARM_ETHTOOL", &ethtool.display().to_string());
    unit.set_config("calico-node-image", json!(image));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.19.4"),
    );
    unit.set_config("vxlan", json!("Always"));
    let calls = || fs::read_to_string(unit.host_dir().join("ethtool.calls")).unwrap_or_default();

    // calico-node has not created vxlan.calico yet: wait, run nothing.
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(
        status(&unit),
        (
            "waiting".into(),
            "Waiting for vxlan.calico to turn its TX checksum offload off \
             (disable-vxlan-tx-checksumming)"
                .into()
        )
    );
    assert_eq!(calls(), "");
    // No Felix override on 3.19.
    assert_eq!(
        env_value(&node_env(&server), "FELIX_FEATUREDETECTOVERRIDE"),
        None
    );

    // The device appears: the next hook turns the offload off and the unit is ready.
    fs::create_dir_all(unit.host_dir().join("sys-class-net/vxlan.calico")).expect("mkdir");
    assert_ok(&unit, &unit.hook("update-status"));
    assert_eq!(calls(), "-K vxlan.calico tx-checksum-ip-generic off\n");
    assert_eq!(status(&unit), ("active".into(), "Ready".into()));
    // Again on every hook (calico-node may have recreated the device).
    assert_ok(&unit, &unit.hook("update-status"));
    assert_eq!(calls().lines().count(), 2);

    // Option off: nothing more is run.
    unit.set_config("disable-vxlan-tx-checksumming", json!(false));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(calls().lines().count(), 2);

    // On 3.20 and later Felix does it: the DaemonSet carries the override, ethtool is not run.
    unit.set_config("disable-vxlan-tx-checksumming", json!(true));
    unit.set_config("calico-node-image", json!("docker.io/calico/node:v3.32.1"));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.32.1"),
    );
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(calls().lines().count(), 2);
    assert_eq!(
        env_value(&node_env(&server), "FELIX_FEATUREDETECTOVERRIDE").as_deref(),
        Some("ChecksumOffloadBroken=true")
    );
}

/// `network-get cni` of a machine whose cni binding is on its second interface: eth0 (the
/// machine's first interface, the address kubelet registers) is not in the cni space.
fn second_interface_binding(address: &str, cidr: &str) -> Value {
    json!({
        "bind-addresses": [{
            "mac-address": "00:16:3e:aa:bb:02", "interface-name": "eth1",
            "addresses": [{"hostname": "", "value": address, "cidr": cidr}],
        }],
        "egress-subnets": [format!("{address}/32")],
        "ingress-addresses": [address],
    })
}

fn node_annotations(server: &TestApiServer) -> Value {
    server.get("v1", "Node", None, "worker-0").expect("node")["metadata"]["annotations"].clone()
}

#[test]
fn calico_node_is_told_the_binding_address_on_a_machine_whose_binding_is_not_its_first_interface() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let unit = unit_on(&server, "calico/0", true, "docker.io/calico/node:v3.6.1");
    // kubelet registered the machine's first address; calico-node autodetected it too before
    // the unit's first hook (first-found on v3.6) and wrote it on the Node.
    let mut node = server.get("v1", "Node", None, "worker-0").expect("node");
    node["status"] = json!({"addresses": [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "Hostname", "address": "worker-0"},
    ]});
    node["metadata"]["annotations"] = json!({"projectcalico.org/IPv4Address": "10.0.0.5/24"});
    server.insert(node).expect("update node");
    unit.set_network(Some(second_interface_binding("10.1.0.5", "10.1.0.0/24")));
    unit.set_config(
        "subnet-as-numbers",
        json!("{10.0.0.0/24: 64512, 10.1.0.0/24: 64601, 10.1.7.0/24: 64607}"),
    );
    unit.set_config(
        "subnet-bgp-peers",
        json!("{10.1.0.0/24: [{address: 10.1.0.1, as-number: 64601}]}"),
    );
    unit.set_config("node-to-node-mesh", json!(false));

    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(status(&unit), ("active".into(), "Ready".into()));
    // The AS number, the peer and the address BGP is spoken from all come from the binding.
    let annotations = node_annotations(&server);
    assert_eq!(annotations["projectcalico.org/IPv4Address"], "10.1.0.5/24");
    assert_eq!(annotations["projectcalico.org/ASNumber"], "64601");
    let peers = server.list("crd.projectcalico.org/v1", "BGPPeer", None);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["spec"]["peerIP"], "10.1.0.1");
    // calico-node keeps that address: its DaemonSet sets no IP (and on v3.6 no method).
    let env = node_env(&server);
    assert!(env.iter().all(|e| e["name"] != "IP"), "{env:?}");
    assert!(
        env.iter().all(|e| e["name"] != "IP_AUTODETECTION_METHOD"),
        "{env:?}"
    );

    // The binding moves to another address: the next hook applies it, AS number included.
    unit.set_network(Some(second_interface_binding("10.1.7.9", "10.1.7.0/24")));
    assert_ok(&unit, &unit.hook("config-changed"));
    let annotations = node_annotations(&server);
    assert_eq!(annotations["projectcalico.org/IPv4Address"], "10.1.7.9/24");
    assert_eq!(annotations["projectcalico.org/ASNumber"], "64607");
    assert!(
        server
            .list("crd.projectcalico.org/v1", "BGPPeer", None)
            .is_empty(),
        "the 10.1.0.0/24 peer no longer applies"
    );
    // ... which the unit's warnings now say, about the new address.
    assert_eq!(
        status(&unit),
        (
            "active".into(),
            "Ready (1 config warning, see juju debug-log)".into()
        )
    );
    assert!(
        unit.logs()
            .iter()
            .any(|l| l.level == "WARNING"
                && l.message.contains("calico/0 (10.1.7.9) is off the mesh")),
        "{}",
        unit.transcript()
    );
    assert!(
        unit.logs()
            .iter()
            .any(|l| l.hook == "config-changed" && l.message.contains(" at 10.1.7.9;")),
        "{}",
        unit.transcript()
    );

    // A quiet hook changes nothing on the Node.
    let rv =
        server.get("v1", "Node", None, "worker-0").expect("node")["metadata"]["resourceVersion"]
            .clone();
    assert_ok(&unit, &unit.hook("update-status"));
    assert_eq!(
        server.get("v1", "Node", None, "worker-0").expect("node")["metadata"]["resourceVersion"],
        rv
    );
}

#[test]
fn current_release_falls_back_to_kubernetes_internal_ip_only_until_the_node_has_an_address() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let unit = unit_on(&server, "calico/0", true, "docker.io/calico/node:v3.32.1");
    unit.set_config("calico-node-image", json!("docker.io/calico/node:v3.32.1"));
    unit.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.32.1"),
    );
    unit.set_network(Some(second_interface_binding("10.1.0.5", "10.1.0.0/24")));
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(
        node_annotations(&server)["projectcalico.org/IPv4Address"],
        "10.1.0.5/24"
    );
    let env = node_env(&server);
    assert!(env.iter().all(|e| e["name"] != "IP"), "{env:?}");
    assert_eq!(
        env_value(&env, "IP_AUTODETECTION_METHOD").as_deref(),
        Some("kubernetes-internal-ip")
    );
}

/// A stand-in calicoctl (not a real one): prints its version tag, the datastore settings it
/// received, its arguments and the first line of its stdin.
fn stand_in_calicoctl(path: &Path, tag: &str) {
    fs::write(
        path,
        format!(
            "#!/bin/sh\nread -r first || first=\"\"\n\
             echo \"{tag} DATASTORE_TYPE=$DATASTORE_TYPE KUBECONFIG=$KUBECONFIG args=$* stdin=$first\"\n"
        ),
    )
    .expect("write stand-in");
}

/// Run the installed `calicoctl` as `juju ssh calico/0 calicoctl ...` would: a login's
/// plain environment, no KUBECONFIG or DATASTORE_TYPE of its own.
fn run_calicoctl(wrapper: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(wrapper)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run calicoctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn calicoctl_from_the_resource_talks_to_this_cluster_and_is_replaced_when_the_resource_changes() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let unit = unit_on(&server, "calico/0", false, "docker.io/calico/node:v3.6.1");
    let wrapper = unit.host_dir().join("usr-local-bin/calicoctl");
    let binary = unit.host_dir().join("usr-local-lib/calicoctl");
    let ready = ("active".to_string(), "Ready".to_string());

    // No resource attached: the unit works, nothing is installed.
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(status(&unit), ready);
    assert!(!wrapper.exists() && !binary.exists());

    // Attached (Juju then runs upgrade-charm): installed, and the documentation's recipe
    // works with no flags: Kubernetes datastore, the principal's kubeconfig.
    let resource = unit.host_dir().join("resource-calicoctl");
    stand_in_calicoctl(&resource, "v1");
    unit.attach_resource("calicoctl", Some(&resource));
    assert_ok(&unit, &unit.hook("upgrade-charm"));
    assert_eq!(status(&unit), ready);
    let pool = "apiVersion: projectcalico.org/v3\nkind: IPPool\n";
    assert_eq!(
        run_calicoctl(&wrapper, &["apply", "-f", "-"], pool),
        format!(
            "v1 DATASTORE_TYPE=kubernetes KUBECONFIG={} args=apply -f - stdin=apiVersion: projectcalico.org/v3\n",
            unit.kubeconfig().display()
        )
    );
    assert_eq!(
        fs::metadata(&wrapper).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // The caller's own settings win.
    let out = std::process::Command::new(&wrapper)
        .args(["get", "ippools"])
        .env_clear()
        .env("KUBECONFIG", "/elsewhere/config")
        .env("DATASTORE_TYPE", "etcdv3")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "v1 DATASTORE_TYPE=etcdv3 KUBECONFIG=/elsewhere/config args=get ippools stdin=\n"
    );

    // Later hooks keep it; update-status does not even ask Juju for the resource.
    let installed_at = fs::metadata(&binary).unwrap().modified().unwrap();
    assert_ok(&unit, &unit.hook("update-status"));
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(
        fs::metadata(&binary).unwrap().modified().unwrap(),
        installed_at
    );
    let resource_gets = |hook: &str| {
        unit.calls()
            .iter()
            .filter(|c| c.hook == hook && c.tool == "resource-get")
            .count()
    };
    assert_eq!(resource_gets("update-status"), 0);
    assert_eq!(resource_gets("config-changed"), 1);

    // A new revision (new content): replaced on the next hook.
    stand_in_calicoctl(&resource, "v2");
    assert_ok(&unit, &unit.hook("upgrade-charm"));
    assert!(run_calicoctl(&wrapper, &["version"], "").starts_with("v2 "));

    // A file that is not a program is refused, naming why; the installed one stays.
    let bad = unit.host_dir().join("resource-calicoctl.tar.gz");
    fs::write(&bad, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    unit.attach_resource("calicoctl", Some(&bad));
    assert_ok(&unit, &unit.hook("upgrade-charm"));
    assert_eq!(
        status(&unit),
        (
            "blocked".into(),
            "Cannot install calicoctl: the calicoctl resource is a gzip archive, not the \
             calicoctl binary: attach the binary itself"
                .into()
        )
    );
    assert!(run_calicoctl(&wrapper, &["version"], "").starts_with("v2 "));

    // Nothing attached any more (or an empty placeholder): calicoctl stays installed.
    unit.attach_resource("calicoctl", None);
    assert_ok(&unit, &unit.hook("config-changed"));
    assert_eq!(status(&unit), ready);
    assert!(run_calicoctl(&wrapper, &["version"], "").starts_with("v2 "));
}

#[test]
fn the_leader_warns_when_the_calico_release_is_not_tested_on_the_cluster_s_kubernetes() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    server.set_kubernetes_minor(31);
    let leader = unit_on(&server, "calico/0", true, "docker.io/calico/node:v3.6.1");
    assert_ok(&leader, &leader.hook("install"));
    assert_eq!(
        status(&leader),
        (
            "active".into(),
            "Ready (1 config warning, see juju debug-log)".into()
        )
    );
    let warning = "Support warning: calico-node-image: Calico v3.6.1 is not tested on \
                   Kubernetes 1.31, this cluster's API server version (Calico v3.6 is tested \
                   on 1.11, 1.12, 1.13); set calico-node-image and calico-policy-image to a \
                   Calico release tested on Kubernetes 1.31 (v3.29)";
    assert!(
        leader
            .logs()
            .iter()
            .any(|l| l.level == "WARNING" && l.message == warning),
        "{}",
        leader.transcript()
    );
    assert_eq!(server.count_requests("GET", "/version"), 1);

    // A release tested on 1.31: Ready with nothing to say.
    leader.set_config("calico-node-image", json!("docker.io/calico/node:v3.29.2"));
    leader.set_config(
        "calico-policy-image",
        json!("docker.io/calico/kube-controllers:v3.29.2"),
    );
    assert_ok(&leader, &leader.hook("config-changed"));
    assert_eq!(status(&leader), ("active".into(), "Ready".into()));
}

#[test]
fn only_the_leader_asks_for_the_kubernetes_version() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    server.set_kubernetes_minor(31);
    let follower = unit_on(&server, "calico/1", false, "docker.io/calico/node:v3.6.1");
    assert_ok(&follower, &follower.hook("install"));
    assert_eq!(status(&follower), ("active".into(), "Ready".into()));
    assert_eq!(server.count_requests("GET", "/version"), 0);
}

#[test]
fn the_real_api_server_accepts_the_service_ip_lists_and_the_node_address() {
    // The upstream BGPConfiguration schema, enforced by the real kube-apiserver: the fields
    // land exactly as rendered.
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let unit = unit_on(&server, "calico/0", true, "docker.io/calico/node:v3.32.1");
    for (option, value) in [
        ("calico-node-image", "docker.io/calico/node:v3.32.1"),
        (
            "calico-policy-image",
            "docker.io/calico/kube-controllers:v3.32.1",
        ),
        ("bgp-service-cluster-ips", "10.152.183.0/24"),
        (
            "bgp-service-external-ips",
            "10.0.10.0/24 10.0.11.0/24, fd00:e::/64",
        ),
        ("bgp-service-loadbalancer-ips", "10.0.20.0/24"),
    ] {
        unit.set_config(option, json!(value));
    }
    unit.set_network(Some(second_interface_binding("10.1.0.5", "10.1.0.0/24")));
    assert_ok(&unit, &unit.hook("install"));
    assert_eq!(status(&unit), ("active".into(), "Ready".into()));
    let conf = server
        .get(
            "crd.projectcalico.org/v1",
            "BGPConfiguration",
            None,
            "default",
        )
        .expect("BGPConfiguration default");
    assert_eq!(
        conf["spec"]["serviceClusterIPs"],
        json!([{"cidr": "10.152.183.0/24"}])
    );
    assert_eq!(
        conf["spec"]["serviceExternalIPs"],
        json!([{"cidr": "10.0.10.0/24"}, {"cidr": "10.0.11.0/24"}, {"cidr": "fd00:e::/64"}])
    );
    assert_eq!(
        conf["spec"]["serviceLoadBalancerIPs"],
        json!([{"cidr": "10.0.20.0/24"}])
    );
    assert_eq!(
        node_annotations(&server)["projectcalico.org/IPv4Address"],
        "10.1.0.5/24"
    );
    // An option emptied: the charm's field manager drops the list (nobody else set it).
    unit.set_config("bgp-service-external-ips", json!(""));
    assert_ok(&unit, &unit.hook("config-changed"));
    let conf = server
        .get(
            "crd.projectcalico.org/v1",
            "BGPConfiguration",
            None,
            "default",
        )
        .expect("BGPConfiguration default");
    assert!(conf["spec"].get("serviceExternalIPs").is_none(), "{conf}");
    assert_eq!(
        conf["spec"]["serviceLoadBalancerIPs"],
        json!([{"cidr": "10.0.20.0/24"}])
    );
}

#[test]
fn stop_removes_the_charm_s_annotations_but_leaves_the_node_address() {
    let Some(server) = envtest!(Options::default()) else {
        return;
    };
    let unit = unit_on(&server, "calico/0", false, "docker.io/calico/node:v3.6.1");
    unit.set_config("unit-as-numbers", json!("{0: 64600}"));
    assert_ok(&unit, &unit.hook("install"));
    let annotations = node_annotations(&server);
    assert_eq!(annotations["projectcalico.org/ASNumber"], "64600");
    assert_eq!(annotations["projectcalico.org/IPv4Address"], "10.0.0.5/24");
    assert_ok(&unit, &unit.hook("stop"));
    let annotations = node_annotations(&server);
    assert!(
        annotations.get("projectcalico.org/ASNumber").is_none(),
        "{annotations}"
    );
    // calico-node may still run there: its BGP address stays.
    assert_eq!(annotations["projectcalico.org/IPv4Address"], "10.0.0.5/24");
}
