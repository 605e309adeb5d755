//! Arbitrary bytes as a `juju config calico --file` YAML file: merge over the defaults,
//! validate, and for a valid configuration render for several units, the CNI config and
//! the workloads.
#![no_main]

use calico_charm::config::options;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match options::merge_user_file(text) {
        Ok(merged) => {
            for e in &merged.errors {
                assert!(!e.to_string().is_empty());
            }
            // An option with a problem keeps its default in `raw`: the rest still validates,
            // as the charm does it.
            common::check_raw(&merged.raw);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
