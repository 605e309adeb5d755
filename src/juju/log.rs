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
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use super::tools::{LogLevel, run_tool};

/// Where formatted log lines go.
pub(crate) type Sink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

thread_local! {
    /// Set while the layer is writing an event: anything logged from inside the sink (for
    /// example by a library) is dropped instead of recursing.
    static IN_LAYER: Cell<bool> = const { Cell::new(false) };
}

/// Set once `juju-log` timed out: the rest of the process logs to stderr.
static JUJU_LOG_HUNG: AtomicBool = AtomicBool::new(false);

/// A tracing layer that hands every event (message and fields on one line) to a sink.
pub(crate) struct JujuLogLayer {
    sink: Sink,
}

impl JujuLogLayer {
    pub fn new(sink: Sink) -> JujuLogLayer {
        JujuLogLayer { sink }
    }

    /// The layer used in hooks: runs `juju-log`, falling back to stderr (which Juju logs at
    /// WARNING) when `juju-log` itself fails.
    ///
    /// Once `juju-log` has timed out, the rest of the hook logs to stderr: a hung `juju-log`
    /// must not cost a timeout per line.
    pub(crate) fn juju_log() -> JujuLogLayer {
        JujuLogLayer::new(Arc::new(|level, message| {
            if JUJU_LOG_HUNG.load(Ordering::Relaxed) {
                eprintln!("{} {message}", level.as_str());
                return;
            }
            let result = run_tool(
                "juju-log",
                &["--log-level", level.as_str(), "--", message],
                super::tools::DEFAULT_TIMEOUT,
            );
            if let Err(err) = result {
                if matches!(err, super::tools::ToolError::Timeout { .. }) {
                    JUJU_LOG_HUNG.store(true, Ordering::Relaxed);
                }
                eprintln!(
                    "{} {message} (juju-log failed: {})",
                    level.as_str(),
                    crate::redact::log_line(&err.to_string())
                );
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
pub(crate) fn juju_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warning,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

/// Text that stops growing at a cap: formatting into it stops there (a library that logs a
/// whole response body costs the cap, not the body).
#[derive(Default)]
struct Bounded {
    text: String,
    full: bool,
}

/// How much of one event is formatted before redaction and the final cut to
/// [`crate::redact::MAX_LOG_LINE`] (more than that, so a secret cut in half at the final
/// limit was still whole when it was redacted).
const FORMAT_CAP: usize = 4 * crate::redact::MAX_LOG_LINE;

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = FORMAT_CAP.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(s.get(..end).unwrap_or_default());
        self.full = true;
        Err(fmt::Error)
    }
}

/// Formats an event as `message key=value key=value`.
#[derive(Default)]
struct Line {
    message: Bounded,
    fields: Bounded,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = self.message.write_str(value);
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

/// One event as the line the layer writes: redacted, control characters blanked, at most
/// [`crate::redact::MAX_LOG_LINE`] bytes.
pub(crate) fn format_event(event: &Event<'_>) -> String {
    let mut line = Line::default();
    event.record(&mut line);
    let mut text = line.message.text;
    if line.message.full {
        text.push_str("… (cut)");
    }
    text.push_str(&line.fields.text);
    crate::redact::log_line(text.trim())
}

/// The one redaction of [`crate::redact`] (kept here for callers of the log module).
pub fn redact(line: &str) -> String {
    crate::redact::redact(line)
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

    #[test]
    fn a_huge_event_is_formatted_only_up_to_the_cap() {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = lines.clone();
        let layer = JujuLogLayer::new(Arc::new(move |_, msg: &str| {
            seen.lock().unwrap().push(msg.to_string());
        }));
        let body = "z".repeat(10 * 1024 * 1024);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "kube_client::client", "{}, {:?}", body, "error");
        });
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].len() <= crate::redact::MAX_LOG_LINE,
            "{}",
            lines[0].len()
        );
        assert!(lines[0].starts_with("zzz"));
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
