//! The memory ceiling of a hook (BENCHMARKS.md), measured through the packed charm with the
//! worst answers an API server can give: a body that never ends, and a body just under the
//! cap that is not JSON (kube then holds several copies of it and logs it). Its own test
//! binary: a hook's peak RSS starts at the RSS of the process that spawns it, so the
//! spawning test process must stay small.

mod juju_harness;
mod support;

use std::time::Duration;

use juju_harness::{KUBECONFIG_HASH, Unit};
use support::rawserver::{Behaviour, RawServer};

/// The ceiling stated in BENCHMARKS.md.
const CEILING_KIB: u64 = 160 * 1024;

fn unit() -> Unit {
    let mut unit = Unit::new("calico/0");
    unit.set_leader(true);
    unit.relate_cni(4, &[("kubeconfig-hash", KUBECONFIG_HASH)]);
    unit.set_env("NODENAME", "worker-0");
    unit.set_env("CALICO_CHARM_API_BUDGET_SECS", "6");
    unit.set_env("CALICO_CHARM_API_TIMEOUT_SECS", "6");
    unit
}

#[test]
fn the_worst_answers_stay_under_the_memory_ceiling() {
    let unit = unit();
    // The measurement's floor: the same hook without a kubeconfig (no API work at all).
    let floor = unit.prepare_hook("config-changed").run_measured();
    eprintln!("floor: peak RSS {} KiB", floor.max_rss_kib);

    let cap = calico_charm::apply::retry::MAX_RESPONSE_BODY as usize;
    for (what, behaviour, kind, phrase) in [
        (
            "endless body",
            Behaviour::Endless,
            "waiting",
            "larger than the charm's cap of 32 MiB",
        ),
        (
            "a body just under the cap, not JSON",
            Behaviour::Garbage { bytes: cap - 1 },
            "blocked",
            "unreadable answer",
        ),
    ] {
        let raw = RawServer::start(behaviour);
        std::fs::write(unit.kubeconfig(), raw.kubeconfig_yaml("memory-token-1")).unwrap();
        let measured = unit.prepare_hook("config-changed").run_measured();
        assert_eq!(measured.run.code, Some(0), "{what}: {measured:?}");
        let (status, message) = unit.status();
        assert_eq!(status, kind, "{what}: {message}");
        assert!(message.contains(phrase), "{what}: {message}");
        eprintln!(
            "{what}: hook {:?}, peak RSS {} KiB",
            measured.wall, measured.max_rss_kib
        );
        assert!(
            measured.max_rss_kib < CEILING_KIB,
            "{what}: peak RSS {} KiB",
            measured.max_rss_kib
        );
        assert!(measured.wall < Duration::from_secs(30), "{what}");
        // kube logs an undeserializable body at WARNING: never in full.
        for line in unit.logs() {
            assert!(
                line.message.len() <= 4096,
                "{what}: {} bytes",
                line.message.len()
            );
        }
        assert!(measured.run.stderr.len() < 64 * 1024, "{what}");
    }
}
