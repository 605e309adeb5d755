//! `charm/pack` writes a .charm Juju can deploy: root-relative entries, Unix modes, the
//! binary at bin/calico-charm, dispatch and a hooks/ entry per hook.

mod juju_harness;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use juju_harness::{REPO, pack_into, python3, unpack};

/// (name, unix mode, is_unix) of every entry, read with python3's zipfile.
fn entries(archive: &Path) -> Vec<(String, u32, bool)> {
    let script = "import sys, zipfile\n\
                  for i in zipfile.ZipFile(sys.argv[1]).infolist():\n\
                  \x20   print('%s %o %d' % (i.filename, i.external_attr >> 16, i.create_system))\n";
    let out = Command::new(python3())
        .args(["-c", script])
        .arg(archive)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let mut parts = line.rsplitn(3, ' ');
            let system = parts.next().unwrap_or_default();
            let mode = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            (
                name.to_string(),
                u32::from_str_radix(mode, 8).unwrap_or(0),
                system == "3",
            )
        })
        .collect()
}

#[test]
fn archive_layout_and_modes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = pack_into(dir.path());
    let entries = entries(&archive);
    let by_name: BTreeMap<&str, u32> = entries.iter().map(|(n, m, _)| (n.as_str(), *m)).collect();

    for (name, _, unix) in &entries {
        assert!(*unix, "{name} was not written with Unix attributes");
        assert!(
            !name.starts_with("./") && !name.starts_with('/'),
            "{name} is not root-relative"
        );
    }
    for name in [
        "metadata.yaml",
        "config.yaml",
        "actions.yaml",
        "manifest.yaml",
        "README.md",
    ] {
        assert_eq!(by_name.get(name), Some(&0o100644), "{name}");
    }
    assert_eq!(by_name.get("dispatch"), Some(&0o100755));
    assert_eq!(by_name.get("bin/calico-charm"), Some(&0o100755));

    // One executable hooks/ entry per hook the charm knows, each a copy of dispatch.
    let mut hooks: Vec<&str> = by_name
        .keys()
        .filter_map(|n| n.strip_prefix("hooks/"))
        .filter(|n| !n.is_empty())
        .collect();
    hooks.sort_unstable();
    let mut expected = vec![
        "install",
        "start",
        "config-changed",
        "upgrade-charm",
        "stop",
        "remove",
        "leader-elected",
        "leader-settings-changed",
        "update-status",
        "pre-series-upgrade",
        "post-series-upgrade",
        "cni-relation-created",
        "cni-relation-joined",
        "cni-relation-changed",
        "cni-relation-departed",
        "cni-relation-broken",
        "calico-relation-created",
        "calico-relation-joined",
        "calico-relation-changed",
        "calico-relation-departed",
        "calico-relation-broken",
    ];
    expected.sort_unstable();
    assert_eq!(hooks, expected);
    for hook in &hooks {
        assert_eq!(
            by_name.get(format!("hooks/{hook}").as_str()),
            Some(&0o100755)
        );
    }

    // Nothing else: no target/, no sources, no stray files.
    let allowed = |n: &str| {
        matches!(
            n,
            "metadata.yaml"
                | "config.yaml"
                | "actions.yaml"
                | "manifest.yaml"
                | "README.md"
                | "dispatch"
                | "hooks/"
                | "bin/"
                | "bin/calico-charm"
        ) || n.starts_with("hooks/")
    };
    for name in by_name.keys() {
        assert!(allowed(name), "unexpected entry {name}");
    }

    // Expanded as Juju does, the files carry those modes and the same bytes.
    let expanded = dir.path().join("expanded");
    std::fs::create_dir(&expanded).unwrap();
    unpack(&archive, &expanded);
    let mode = |p: &str| {
        std::fs::metadata(expanded.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("dispatch"), 0o755);
    assert_eq!(mode("hooks/install"), 0o755);
    assert_eq!(mode("bin/calico-charm"), 0o755);
    assert_eq!(mode("metadata.yaml"), 0o644);
    let dispatch = std::fs::read(Path::new(REPO).join("charm/dispatch")).unwrap();
    assert_eq!(std::fs::read(expanded.join("dispatch")).unwrap(), dispatch);
    assert_eq!(
        std::fs::read(expanded.join("hooks/cni-relation-changed")).unwrap(),
        dispatch
    );
    assert_eq!(
        std::fs::read(expanded.join("metadata.yaml")).unwrap(),
        std::fs::read(Path::new(REPO).join("metadata.yaml")).unwrap()
    );
    let binary = std::fs::metadata(expanded.join("bin/calico-charm")).unwrap();
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_calico-charm")).unwrap();
    assert_eq!(binary.len(), built.len());
}

#[test]
fn pack_refuses_a_binary_that_is_not_executable() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("calico-charm");
    std::fs::write(&fake, b"not a program").unwrap();
    let out = Command::new(Path::new(REPO).join("charm/pack"))
        .arg(dir.path())
        .env("CALICO_CHARM_BINARY", &fake)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an executable file"));
    assert!(!dir.path().join("calico.charm").exists());
}
