//! The CNI config `10-calico.conflist`: rendering and the atomic, change-only writer.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use calico_charm::config::{CharmConfig, EncapMode};
use calico_charm::host::cni::{self as cni_file, CniError};
use calico_charm::render::cni;
use calico_charm::render::workloads;
use serde_json::{Value, json};

#[path = "support/charm_config.rs"]
mod charm_config;

use charm_config::{current, defaults};

fn parsed(config: &CharmConfig, node: &str) -> Value {
    serde_json::from_str(&cni::render(config, node)).expect("the conflist is JSON")
}

#[test]
fn conflist_has_calico_with_calico_ipam_and_portmap() {
    let doc = parsed(&defaults(), "node-1");
    assert_eq!(doc["name"], "k8s-pod-network");
    // v3.6's own template says 0.3.0; the reference (v3.32) 0.3.1.
    assert_eq!(doc["cniVersion"], "0.3.0");
    assert_eq!(parsed(&current(), "node-1")["cniVersion"], "0.3.1");
    let plugins = doc["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 2);
    let calico = &plugins[0];
    assert_eq!(calico["type"], "calico");
    assert_eq!(calico["datastore_type"], "kubernetes");
    assert_eq!(calico["nodename"], "node-1");
    // Calico 3.6 has no MTU auto-detection: its manifest's default, 1440.
    assert_eq!(calico["mtu"], json!(1440), "unset veth-mtu on v3.6.1");
    assert_eq!(
        parsed(&current(), "node-1")["plugins"][0]["mtu"],
        json!(0),
        "unset veth-mtu on v3.32.1: auto-detection"
    );
    assert_eq!(calico["ipam"]["type"], "calico-ipam");
    assert_eq!(calico["policy"]["type"], "k8s");
    assert_eq!(
        calico["kubernetes"]["kubeconfig"],
        "/etc/cni/net.d/calico-kubeconfig"
    );
    assert_eq!(
        plugins[1],
        json!({"type": "portmap", "snat": true, "capabilities": {"portMappings": true}})
    );
}

#[test]
fn ip_families_follow_cidr() {
    let ipam = |cidrs: &[&str]| {
        let mut c = defaults();
        c.cidrs = cidrs.iter().map(|s| s.parse().unwrap()).collect();
        let doc = parsed(&c, "n");
        (
            doc["plugins"][0]["ipam"]["assign_ipv4"]
                .as_str()
                .unwrap()
                .to_string(),
            doc["plugins"][0]["ipam"]["assign_ipv6"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    assert_eq!(ipam(&["192.168.0.0/16"]), ("true".into(), "false".into()));
    assert_eq!(
        ipam(&["192.168.0.0/16", "fd00:c00b:1::/64"]),
        ("true".into(), "true".into())
    );
    assert_eq!(ipam(&["fd00:c00b:1::/64"]), ("false".into(), "true".into()));
}

#[test]
fn mtu_follows_veth_mtu_and_encapsulation() {
    let mtu = |veth: Option<u32>, ipip: EncapMode, vxlan: EncapMode| {
        let mut c = defaults();
        c.veth_mtu = veth;
        c.ipip = ipip;
        c.vxlan = vxlan;
        parsed(&c, "n")["plugins"][0]["mtu"].as_u64().unwrap()
    };
    assert_eq!(mtu(None, EncapMode::Always, EncapMode::Never), 1440);
    assert_eq!(mtu(Some(1500), EncapMode::Never, EncapMode::Never), 1500);
    assert_eq!(mtu(Some(1500), EncapMode::Always, EncapMode::Never), 1480);
    assert_eq!(
        mtu(Some(9000), EncapMode::Never, EncapMode::CrossSubnet),
        8950
    );
}

/// What install-cni writes: the ConfigMap template with its placeholders replaced by plain
/// text substitution; the shell installer (before 3.16) writes it through a here-document,
/// which adds a newline.
fn by_install_cni(c: &CharmConfig, node: &str, mtu: &str, shell: bool) -> String {
    let w = workloads::render(c);
    let template = &w.config_maps[0].data.as_ref().unwrap()["cni_network_config"];
    let mut out = template
        .replace("__KUBERNETES_NODE_NAME__", node)
        .replace("__CNI_MTU__", mtu)
        .replace(
            "__KUBECONFIG_FILEPATH__",
            "/etc/cni/net.d/calico-kubeconfig",
        );
    if shell {
        out.push('\n');
    }
    out
}

#[test]
fn both_installers_write_the_bytes_every_unit_writes() {
    for (c, shell, mtu) in [(defaults(), true, "1440"), (current(), false, "0")] {
        let written = by_install_cni(&c, "worker-3", mtu, shell);
        assert_eq!(
            written,
            cni::render(&c, "worker-3"),
            "shell installer: {shell}"
        );
        assert!(written.ends_with("}\n") && !written.ends_with("\n\n"));
        // install-cni's CNI_MTU is the value substituted for __CNI_MTU__.
        let w = workloads::render(&c);
        let init = &w.daemon_sets[0]
            .spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .init_containers;
        let env = init.as_ref().unwrap()[0].env.as_ref().unwrap();
        let cni_mtu = env.iter().find(|e| e.name == "CNI_MTU").unwrap();
        assert_eq!(cni_mtu.value.as_deref(), Some(mtu));
    }
}

#[test]
fn install_cni_renders_the_same_bytes_from_the_config_map_template() {
    // install-cni replaces its placeholders by plain text substitution; do the same with
    // the ConfigMap the leader applies and compare with what every unit writes.
    let mut c = current();
    c.veth_mtu = Some(1450);
    c.cidrs = vec!["10.1.0.0/16".parse().unwrap(), "fd00::/64".parse().unwrap()];
    let w = workloads::render(&c);
    let template = &w.config_maps[0].data.as_ref().unwrap()["cni_network_config"];
    assert!(
        template.contains("\"mtu\": __CNI_MTU__"),
        "the MTU placeholder is a bare number"
    );
    assert!(template.contains("__KUBERNETES_NODE_NAME__"));
    assert!(template.contains("__KUBECONFIG_FILEPATH__"));
    let by_install_cni = template
        .replace("__KUBERNETES_NODE_NAME__", "worker-3")
        .replace("__CNI_MTU__", "1450")
        .replace(
            "__KUBECONFIG_FILEPATH__",
            "/etc/cni/net.d/calico-kubeconfig",
        );
    assert_eq!(by_install_cni, cni::render(&c, "worker-3"));
}

#[test]
fn cni_dir_defaults_to_etc_cni_net_d_and_is_overridable() {
    assert_eq!(
        cni_file::cni_dir_from(None),
        PathBuf::from("/etc/cni/net.d")
    );
    assert_eq!(
        cni_file::cni_dir_from(Some(OsStr::new(""))),
        PathBuf::from("/etc/cni/net.d")
    );
    assert_eq!(
        cni_file::cni_dir_from(Some(OsStr::new("/srv/cni"))),
        PathBuf::from("/srv/cni")
    );
    assert_eq!(cni_file::CNI_DIR_ENV, "CALICO_CHARM_CNI_DIR");
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn writes_once_with_mode_0644_and_leaves_an_unchanged_file_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net.d");
    let content = cni::render(&defaults(), "node-1");
    assert!(
        cni_file::write_conflist(&dir, &content).unwrap(),
        "first write"
    );
    let path = dir.join("10-calico.conflist");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    assert_eq!(
        entries(&dir),
        ["10-calico.conflist"],
        "no temporary file left"
    );

    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(
        !cni_file::write_conflist(&dir, &content).unwrap(),
        "same content: no write"
    );
    let again = std::fs::metadata(&path).unwrap();
    assert_eq!(again.ino(), meta.ino());
    assert_eq!(again.mtime(), meta.mtime());
    assert_eq!(again.mtime_nsec(), meta.mtime_nsec());

    // A change replaces the file through a rename (new inode).
    let mut c = defaults();
    c.veth_mtu = Some(1500);
    let changed = cni::render(&c, "node-1");
    assert!(cni_file::write_conflist(&dir, &changed).unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), changed);
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), meta.ino());
    assert_eq!(entries(&dir), ["10-calico.conflist"]);
}

#[test]
fn a_wrong_mode_is_repaired_even_when_the_content_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("10-calico.conflist");
    let content = cni::render(&defaults(), "n");
    std::fs::write(&path, &content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(cni_file::write_conflist(tmp.path(), &content).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    assert!(!cni_file::write_conflist(tmp.path(), &content).unwrap());
}

#[test]
fn a_stale_temporary_file_does_not_block_the_write() {
    let tmp = tempfile::tempdir().unwrap();
    let stale = tmp
        .path()
        .join(format!(".10-calico.conflist.tmp-{}", std::process::id()));
    std::fs::write(&stale, "half a file").unwrap();
    assert!(cni_file::write_conflist(tmp.path(), "{}\n").unwrap());
    assert_eq!(entries(tmp.path()), ["10-calico.conflist"]);
}

#[test]
fn readers_never_see_a_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // Two large, different contents.
    let a = format!("{{\"a\": \"{}\"}}\n", "a".repeat(256 * 1024));
    let b = format!("{{\"b\": \"{}\"}}\n", "b".repeat(256 * 1024));
    cni_file::write_conflist(&dir, &a).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, dir, a, b) = (stop.clone(), dir.clone(), a.clone(), b.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let seen = std::fs::read_to_string(dir.join("10-calico.conflist")).unwrap();
                assert!(
                    seen == a || seen == b,
                    "partial content of {} bytes",
                    seen.len()
                );
                reads += 1;
            }
            reads
        })
    };
    for i in 0..40 {
        let next = if i % 2 == 0 { &b } else { &a };
        assert!(cni_file::write_conflist(&dir, next).unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    // The "directory" is a regular file.
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let err = cni_file::write_conflist(&not_a_dir, "{}").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&not_a_dir.display().to_string()), "{msg}");
    assert!(
        matches!(err, CniError::Read { .. } | CniError::CreateDir { .. }),
        "{err:?}"
    );
}

#[test]
fn remove_deletes_only_the_conflist_and_tolerates_its_absence() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("calico-kubeconfig"), "k").unwrap();
    assert!(cni_file::write_conflist(tmp.path(), "{}\n").unwrap());
    assert!(cni_file::remove_conflist(tmp.path()).unwrap());
    assert_eq!(entries(tmp.path()), ["calico-kubeconfig"]);
    assert!(!cni_file::remove_conflist(tmp.path()).unwrap());
}

#[test]
fn temporary_files_of_killed_hooks_are_removed_on_the_next_write() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".10-calico.conflist.tmp-4242"), "{half").unwrap();
    std::fs::write(tmp.path().join(".10-calico.conflist.tmp-7"), "").unwrap();
    std::fs::write(tmp.path().join("calico-kubeconfig"), "k").unwrap();
    assert!(cni_file::write_conflist(tmp.path(), "{}\n").unwrap());
    assert_eq!(
        entries(tmp.path()),
        ["10-calico.conflist", "calico-kubeconfig"]
    );
    // Also when the conflist itself is already right.
    std::fs::write(tmp.path().join(".10-calico.conflist.tmp-99"), "{half").unwrap();
    assert!(!cni_file::write_conflist(tmp.path(), "{}\n").unwrap());
    assert_eq!(
        entries(tmp.path()),
        ["10-calico.conflist", "calico-kubeconfig"]
    );
}
