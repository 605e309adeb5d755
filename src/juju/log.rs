//! Logging: under Juju every tracing event goes to `juju-log --log-level <LEVEL>` (what
//! `juju debug-log --include=calico` shows); outside Juju, to stderr.
//!
//! Rules for callers: log paths, hashes, counts and names, never contents of secrets
//! (kubeconfig, tokens, passwords). Events of other crates (kube, hyper, rustls) pass only at
//! WARN and above, so their debug output (which may carry request headers) never reaches the
//! model's log.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use super::tools::{LogLevel, run_tool};

/// Where formatted log lines go.
pub type Sink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

thread_local! {
    /// Set while the layer is writing an event: anything logged from inside the sink (for
    /// example by a library) is dropped instead of recursing.
    static IN_LAYER: Cell<bool> = const { Cell::new(false) };
}

/// A tracing layer that hands every event (message and fields on one line) to a sink.
pub struct JujuLogLayer {
    sink: Sink,
}

impl JujuLogLayer {
    pub fn new(sink: Sink) -> JujuLogLayer {
        JujuLogLayer { sink }
    }

    /// The layer used in hooks: runs `juju-log`, falling back to stderr (which Juju logs at
    /// WARNING) when `juju-log` itself fails.
    pub fn juju_log() -> JujuLogLayer {
        JujuLogLayer::new(Arc::new(|level, message| {
            let result = run_tool(
                "juju-log",
                &["--log-level", level.as_str(), "--", message],
                super::tools::DEFAULT_TIMEOUT,
            );
            if let Err(err) = result {
                eprintln!("{} {message} (juju-log failed: {err})", level.as_str());
            }
        }))
    }
}

/// kube's HTTP trace layer: it reports every failed attempt at ERROR, below the charm's
/// retry layer, which reports the same attempts (DEBUG) and their outcome (WARNING) itself.
const KUBE_TRACE_TARGET: &str = "kube_client::client::builder";

/// Which events reach the log: the charm's own from DEBUG up, everything else from WARN up,
/// except kube's per-attempt failure reports (a retried, handled fault is no ERROR).
pub fn wanted(metadata: &Metadata<'_>) -> bool {
    if metadata.target().starts_with(KUBE_TRACE_TARGET) {
        return false;
    }
    let own = metadata.target().starts_with("calico_charm");
    let level = *metadata.level();
    if own {
        level <= Level::DEBUG
    } else {
        level <= Level::WARN
    }
}

/// The juju-log level for a tracing level.
pub fn juju_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warning,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Formats an event as `message key=value key=value`.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

/// One event as the line the layer writes, with anything that looks like a secret redacted.
pub fn format_event(event: &Event<'_>) -> String {
    let mut line = Line::default();
    event.record(&mut line);
    let mut text = line.message;
    text.push_str(&line.fields);
    redact(text.trim())
}

/// Keys whose values are never logged (kubeconfig fields, tokens, passwords).
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "client-key-data",
    "client-certificate-data",
    "certificate-authority-data",
];

const REDACTED: &str = "[redacted]";

/// A last line of defence: callers must not log secrets, but an error message from a library
/// might echo one. Redacts PEM blocks, `Bearer <token>`, and the value after any key of
/// [`SECRET_KEYS`] followed by `:` or `=` (`token: abc`, `"password"="x"`).
pub fn redact(line: &str) -> String {
    let mut out = redact_pem(line);
    out = redact_values(&out, "bearer ", false);
    for key in SECRET_KEYS {
        out = redact_values(&out, key, true);
    }
    out
}

fn redact_pem(line: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some((before, after)) = rest.split_once(BEGIN) {
        out.push_str(before);
        out.push_str("[redacted PEM block]");
        // The block ends with the dashes that close the END line, else with the text.
        rest = after
            .split_once(END)
            .and_then(|(_, tail)| tail.split_once("-----"))
            .map_or("", |(_, remainder)| remainder);
    }
    out.push_str(rest);
    out
}

/// Redact the value after each case-insensitive occurrence of `key`. With `separator`, the key
/// must start a word and be followed by an optional quote and `:` or `=`.
fn redact_values(line: &str, key: &str, separator: bool) -> String {
    let lower = line.to_ascii_lowercase();
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower.get(from..).and_then(|rest| rest.find(key)) {
        let at = from + found;
        let mut i = at + key.len();
        from = i;
        if separator {
            let before = at.checked_sub(1).and_then(|p| bytes.get(p));
            let word_start = !before.is_some_and(u8::is_ascii_alphanumeric);
            if !word_start {
                continue;
            }
            if bytes.get(i) == Some(&b'"') || bytes.get(i) == Some(&b'\'') {
                i += 1;
            }
            if !matches!(bytes.get(i), Some(b':') | Some(b'=')) {
                continue;
            }
            i += 1;
        }
        while matches!(bytes.get(i), Some(b' ') | Some(b'"') | Some(b'\'')) {
            i += 1;
        }
        let value_end = bytes
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|b| matches!(b, b' ' | b'"' | b'\'' | b',' | b'}' | b'\n' | b';'))
            .map_or(bytes.len(), |p| i + p);
        if value_end == i {
            continue;
        }
        out.push_str(line.get(copied..i).unwrap_or_default());
        out.push_str(REDACTED);
        copied = value_end;
        from = value_end;
    }
    out.push_str(line.get(copied..).unwrap_or_default());
    out
}

impl<S: Subscriber> Layer<S> for JujuLogLayer {
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        wanted(metadata)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !wanted(event.metadata()) || IN_LAYER.with(Cell::get) {
            return;
        }
        IN_LAYER.with(|flag| flag.set(true));
        let line = format_event(event);
        if !line.is_empty() {
            (self.sink)(juju_level(event.metadata().level()), &line);
        }
        IN_LAYER.with(|flag| flag.set(false));
    }
}

/// Install the global subscriber: juju-log under Juju, stderr otherwise. Safe to call twice
/// (the second call does nothing).
pub fn init(in_juju: bool) {
    if in_juju {
        let _ = tracing_subscriber::registry()
            .with(JujuLogLayer::juju_log())
            .try_init();
    } else {
        let stderr = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(tracing_subscriber::filter::filter_fn(wanted));
        let _ = tracing_subscriber::registry().with(stderr).try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    proptest::proptest! {
        #[test]
        fn redaction_never_panics(line in "(?s).{0,80}(token|Bearer |-----BEGIN |password)?.{0,40}") {
            let _ = redact(&line);
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            (
                "request failed: Authorization: Bearer eyJhbGciOi.x-y_z rejected",
                "request failed: Authorization: Bearer [redacted] rejected",
            ),
            (
                "user: admin, token: 0123abcd",
                "user: admin, token: [redacted]",
            ),
            (
                r#"{"password":"hunter2","user":"x"}"#,
                r#"{"password":"[redacted]","user":"x"}"#,
            ),
            ("client-key-data=LS0tLS1CRUd", "client-key-data=[redacted]"),
            (
                "cert -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE----- ok",
                "cert [redacted PEM block] ok",
            ),
            (
                "truncated -----BEGIN RSA PRIVATE KEY-----\nMIIE",
                "truncated [redacted PEM block]",
            ),
            // Not secrets: hashes, counts, words that merely contain a key.
            (
                "principal kubeconfig-hash 9f86d081884c",
                "principal kubeconfig-hash 9f86d081884c",
            ),
            ("tokens: 3 secretary=x", "tokens: 3 secretary=x"),
            ("no token here", "no token here"),
            ("ünïcode token=åäö done", "ünïcode token=[redacted] done"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn events_reach_the_sink_with_juju_levels() {
        let lines: Arc<Mutex<Vec<(LogLevel, String)>>> = Arc::default();
        let seen = lines.clone();
        let layer = JujuLogLayer::new(Arc::new(move |level, msg: &str| {
            seen.lock().unwrap().push((level, msg.to_string()));
            // Logging from inside the sink must not recurse.
            tracing::error!("from inside the sink");
        }));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(relation = "cni:1", "published cidr");
            tracing::warn!("network-get failed");
            tracing::debug!(count = 2, "peers");
            tracing::trace!("dropped: below DEBUG");
            tracing::debug!(target: "hyper::proto", "dropped: another crate's debug");
            tracing::warn!(target: "kube_client", "kept: another crate's warning");
            tracing::error!(
                target: "kube_client::client::builder",
                "dropped: failed with error client error (Connect)"
            );
        });
        let lines = lines.lock().unwrap();
        assert_eq!(
            *lines,
            vec![
                (
                    LogLevel::Info,
                    "published cidr relation=\"cni:1\"".to_string()
                ),
                (LogLevel::Warning, "network-get failed".to_string()),
                (LogLevel::Debug, "peers count=2".to_string()),
                (
                    LogLevel::Warning,
                    "kept: another crate's warning".to_string()
                ),
            ]
        );
    }
}
