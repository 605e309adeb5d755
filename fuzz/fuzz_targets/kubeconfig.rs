//! Arbitrary bytes as the principal's kubeconfig, through the charm's own reading of it
//! (`apply::kubeconfig::parse`, then `check` of the current context), and as a credential
//! plugin's stdout (`parse_plugin_output`).
//!
//! Besides "no panic": every error is one line, names the file, and quotes no value of the
//! input: no double-quoted span survives `describe_yaml_error`, and an error never contains
//! a line of the input longer than 24 bytes that carries a secret-looking key's value.
#![no_main]

use calico_charm::apply::kubeconfig::{check, describe_yaml_error, parse, parse_plugin_output};
use libfuzzer_sys::fuzz_target;

const PATH: &str = "/root/.kube/config";

fn assert_clean(shown: &str, text: &str) {
    assert!(!shown.contains('\n'), "multi-line error: {shown:?}");
    assert!(shown.contains(PATH), "error without the file: {shown:?}");
    // The values of secret-looking keys never appear in an error.
    for line in text.lines() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        for key in ["token:", "password:", "client-key-data:", "value:"] {
            if let Some(value) = trimmed.strip_prefix(key) {
                let value = value.trim().trim_matches(['"', '\'']);
                if value.len() >= 12 && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    assert!(
                        !shown.contains(value),
                        "secret value {value:?} in error {shown:?}"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, PATH) {
        Ok(config) => {
            if let Err(err) = check(&config, PATH) {
                assert_clean(&err.to_string(), text);
            }
        }
        Err(err) => assert_clean(&err.to_string(), text),
    }
    let described = describe_yaml_error(text);
    assert!(!described.contains('\n'));
    // Whatever is quoted is replaced (schema keys in backticks excepted).
    assert!(
        described.matches('"').count() == 0,
        "quoted text kept: {described:?}"
    );
    let _ = parse_plugin_output(text);
});
