//! Arbitrary bytes as the output of every hook tool the charm reads, through the parser the
//! charm's `Subprocess` uses (`juju::tools::parse_json`, into each tool's type), and as text
//! on its way out to Juju (`redact::status_line`, `redact::log_line`, `redact::redact`).
//!
//! Besides "no panic": a parse error quotes at most 200 characters of the output; a status
//! line is one line of at most 240 characters; a log line at most 4096 bytes; redaction is
//! stable (redacting twice changes nothing more).
#![no_main]

use std::collections::BTreeMap;

use calico_charm::juju::network::NetworkInfo;
use calico_charm::juju::tools::parse_json;
use calico_charm::config::options::RawConfig;
use calico_charm::redact;
use libfuzzer_sys::fuzz_target;

fn bounded<T>(tool: &str, result: Result<T, calico_charm::juju::ToolError>) {
    if let Err(err) = result {
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("hook tool {tool} ")), "{shown}");
        // The detail (serde's message) is short; the output is cut at 200 characters.
        assert!(shown.chars().count() < 200 + 400, "{} chars", shown.chars().count());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    bounded("config-get", parse_json::<Option<RawConfig>>("config-get", text));
    bounded("network-get", parse_json::<NetworkInfo>("network-get", text));
    bounded("unit-get", parse_json::<String>("unit-get", text));
    bounded("is-leader", parse_json::<bool>("is-leader", text));
    bounded("relation-ids", parse_json::<Option<Vec<String>>>("relation-ids", text));
    bounded(
        "relation-get",
        parse_json::<Option<BTreeMap<String, String>>>("relation-get", text),
    );
    bounded("state-get", parse_json::<Option<String>>("state-get", text));
    bounded("action-get", parse_json::<serde_json::Value>("action-get", text));

    let status = redact::status_line(text);
    assert!(!status.contains('\n') && !status.contains('\r'), "{status:?}");
    assert!(status.chars().count() <= redact::MAX_STATUS_LEN);
    let line = redact::log_line(text);
    assert!(line.len() <= redact::MAX_LOG_LINE, "{}", line.len());
    let once = redact::redact(text);
    assert_eq!(redact::redact(&once), once, "redaction not stable");
});
