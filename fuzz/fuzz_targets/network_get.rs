//! Arbitrary bytes as hook-tool JSON output, deserialised exactly as the charm's
//! `Subprocess` tools do it (`serde_json::from_str` of the trimmed output, into the type each
//! tool returns): `network-get cni --format=json` -> `NetworkInfo` -> the bind address;
//! `relation-get`, `relation-ids`/`relation-list`, `config-get` (then validated and rendered
//! like the charm's `gather_config`), `is-leader`.
#![no_main]

use std::collections::BTreeMap;

use calico_charm::juju::network::{self, NetworkInfo};
use calico_charm::config::options::{self, RawConfig};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let out = text.trim();
    if let Ok(info) = serde_json::from_str::<NetworkInfo>(out) {
        let addr = network::bind_address(&info);
        if let Some(a) = addr {
            // The bind address is one of the addresses of a non-fan interface.
            assert!(
                info.bind_addresses
                    .iter()
                    .any(|b| !network::is_fan(&b.interface_name)
                        && b.addresses.iter().any(|x| x.ip() == Some(a)))
            );
        }
        for b in &info.bind_addresses {
            for a in &b.addresses {
                let _ = a.ip();
            }
        }
    }
    let _ = network::node_name(Some(text));
    let _ = serde_json::from_str::<Option<BTreeMap<String, String>>>(out);
    let _ = serde_json::from_str::<Option<Vec<String>>>(out);
    let _ = serde_json::from_str::<bool>(out);
    if let Ok(Some(got)) = serde_json::from_str::<Option<RawConfig>>(out) {
        // As reconcile::gather_config does it (a HookTools double is not worth it here).
        let Ok(mut raw) = options::defaults() else {
            panic!("embedded config.yaml");
        };
        for (key, value) in got {
            if !value.is_null() {
                raw.insert(key, value);
            }
        }
        common::check_raw(&raw);
    }
});
