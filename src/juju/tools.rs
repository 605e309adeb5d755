//! Hook tools (`config-get`, `relation-set`, ...) as subprocesses, behind a small trait.
//!
//! Every call has a timeout (the child is killed when it expires), passes `--format=json`
//! where the tool prints data, and fails with a [`ToolError`] that names the tool. Nothing
//! here emits tracing events: the juju-log tracing layer runs `juju-log` through
//! [`run_tool`], and an event emitted there would feed back into the layer.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::config::options::RawConfig;
use crate::status::UnitStatus;

use super::network::NetworkInfo;

/// Default timeout of one hook-tool call. Tools answer in milliseconds; one that hangs holds
/// the machine lock, so give up well before Juju would. Never more than what is left of the
/// hook's deadline ([`crate::deadline::bound`]).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a hook tool failed. `Display` names the tool: it is what lands in the hook's output.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("hook tool {tool} not found on PATH (is this running inside a Juju hook?)")]
    Missing { tool: String },
    #[error("hook tool {tool} could not be started: {source}")]
    Spawn {
        tool: String,
        #[source]
        source: io::Error,
    },
    #[error("hook tool {tool} did not finish within {timeout:?} and was killed")]
    Timeout { tool: String, timeout: Duration },
    #[error("hook tool {tool} printed more than {limit} bytes and was stopped")]
    OutputTooLarge { tool: String, limit: usize },
    #[error("hook tool {tool} failed ({status}): {stderr}")]
    Failed {
        tool: String,
        status: String,
        stderr: String,
    },
    /// `output` is the start of what the tool printed, quoted and escaped, at most about 200
    /// characters.
    #[error("hook tool {tool} printed output that is not the expected JSON ({detail}): {output}")]
    BadOutput {
        tool: String,
        detail: String,
        output: String,
    },
}

impl ToolError {
    /// The tool this error is about.
    pub fn tool(&self) -> &str {
        match self {
            ToolError::Missing { tool }
            | ToolError::Spawn { tool, .. }
            | ToolError::Timeout { tool, .. }
            | ToolError::OutputTooLarge { tool, .. }
            | ToolError::Failed { tool, .. }
            | ToolError::BadOutput { tool, .. } => tool,
        }
    }
}

/// Log levels `juju-log --log-level` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
}

/// Juju's hook tools, one method per call the charm makes.
pub trait HookTools {
    /// `config-get --format=json`: option values (unset options without default are absent).
    fn config_get(&self) -> Result<RawConfig, ToolError>;
    /// `network-get <binding> --format=json`.
    fn network_get(&self, binding: &str) -> Result<NetworkInfo, ToolError>;
    /// `unit-get private-address --format=json`.
    fn unit_get_private_address(&self) -> Result<String, ToolError>;
    /// `is-leader --format=json`.
    fn is_leader(&self) -> Result<bool, ToolError>;
    /// `relation-ids <endpoint> --format=json`: `["cni:12"]`.
    fn relation_ids(&self, endpoint: &str) -> Result<Vec<String>, ToolError>;
    /// `relation-list -r <id> --format=json`: remote unit names.
    fn relation_list(&self, relation_id: &str) -> Result<Vec<String>, ToolError>;
    /// `relation-get -r <id> --format=json - <unit>`: the unit's whole bag.
    fn relation_get(
        &self,
        relation_id: &str,
        unit: &str,
    ) -> Result<BTreeMap<String, String>, ToolError>;
    /// `relation-set -r <id> key=value ...` on this unit's bag (`key=` deletes).
    fn relation_set(&self, relation_id: &str, settings: &[(&str, &str)]) -> Result<(), ToolError>;
    /// `relation-set -r <id> --app key=value ...` on the application's bag (leader only).
    fn relation_set_app(
        &self,
        relation_id: &str,
        settings: &[(&str, &str)],
    ) -> Result<(), ToolError>;
    /// `relation-get -r <id> --app --format=json - <application>`: the application's bag.
    fn relation_get_app(
        &self,
        relation_id: &str,
        application: &str,
    ) -> Result<BTreeMap<String, String>, ToolError>;
    /// `status-set <status> <message>`.
    fn status_set(&self, status: &UnitStatus) -> Result<(), ToolError>;
    /// `application-version-set <version>`.
    fn application_version_set(&self, version: &str) -> Result<(), ToolError>;
    /// `state-get --format=json <key>`: `None` when the key is absent.
    fn state_get(&self, key: &str) -> Result<Option<String>, ToolError>;
    /// `state-set key=value`.
    fn state_set(&self, key: &str, value: &str) -> Result<(), ToolError>;
    /// `action-set key=value ...`.
    fn action_set(&self, results: &[(&str, &str)]) -> Result<(), ToolError>;
    /// `action-fail <message>`.
    fn action_fail(&self, message: &str) -> Result<(), ToolError>;
    /// `resource-get <name>`: the local path of the attached file (Juju prints it with no
    /// newline). Exit 1 `could not download resource: ...` (nothing attached) is a
    /// [`ToolError::Failed`].
    fn resource_get(&self, name: &str) -> Result<String, ToolError>;
    /// How many tool calls this process made so far and the wall time spent in them, when
    /// the implementation measures it (the hook's summary line reports it).
    fn stats(&self) -> Option<ToolStats> {
        None
    }
}

/// Hook-tool calls made by this process and the wall time spent waiting for them (spawn to
/// exit), counted by [`run_tool_with`]: every tool, `juju-log` included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolStats {
    pub calls: u64,
    pub time: Duration,
}

impl std::fmt::Display for ToolStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.time.as_secs_f64() * 1000.0;
        let plural = if self.calls == 1 { "" } else { "s" };
        write!(
            f,
            "{} hook-tool call{plural}, {ms:.1} ms in hook tools",
            self.calls
        )
    }
}

static TOOL_CALLS: AtomicU64 = AtomicU64::new(0);
static TOOL_NANOS: AtomicU64 = AtomicU64::new(0);

/// The hook-tool calls of this process so far (see [`ToolStats`]).
pub(crate) fn tool_stats() -> ToolStats {
    ToolStats {
        calls: TOOL_CALLS.load(Ordering::Relaxed),
        time: Duration::from_nanos(TOOL_NANOS.load(Ordering::Relaxed)),
    }
}

/// The real hook tools: subprocesses found on `PATH`, as Juju provides them.
#[derive(Clone, Debug)]
pub struct Subprocess {
    pub timeout: Duration,
    /// Extra environment for every tool (a `PATH` set here is also used to find the tool).
    /// Empty under Juju, where the hook's own environment is what the tools need.
    pub env: Vec<(String, String)>,
}

impl Default for Subprocess {
    fn default() -> Self {
        Subprocess {
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
    }
}

/// Run one tool with arguments and return its stdout; non-zero exit is an error carrying
/// stderr. Emits no tracing events (see the module docs).
pub(crate) fn run_tool(tool: &str, args: &[&str], timeout: Duration) -> Result<String, ToolError> {
    run_tool_with(tool, args, timeout, &[])
}

/// [`run_tool`] with extra environment variables for the child.
pub fn run_tool_with(
    tool: &str,
    args: &[&str],
    timeout: Duration,
    env: &[(String, String)],
) -> Result<String, ToolError> {
    let started = Instant::now();
    let result = run_tool_unmeasured(tool, args, timeout, env);
    let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    TOOL_CALLS.fetch_add(1, Ordering::Relaxed);
    TOOL_NANOS.fetch_add(nanos, Ordering::Relaxed);
    result
}

fn run_tool_unmeasured(
    tool: &str,
    args: &[&str],
    timeout: Duration,
    env: &[(String, String)],
) -> Result<String, ToolError> {
    let mut command = Command::new(tool);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let output = run_process(
        tool,
        command,
        crate::deadline::bound(timeout),
        MAX_TOOL_OUTPUT,
    )?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let stderr = output.stderr.trim();
        Err(ToolError::Failed {
            tool: tool.to_string(),
            status: output.status.to_string(),
            stderr: if stderr.is_empty() {
                "no error output".to_string()
            } else {
                stderr.to_string()
            },
        })
    }
}

/// The most a hook tool (or a credential plugin) may print on stdout: `config-get` of the
/// largest configuration the charm accepts is far below it.
pub(crate) const MAX_TOOL_OUTPUT: usize = 16 * 1024 * 1024;
/// The most of a process's stderr that is kept (the rest is read and dropped).
pub(crate) const MAX_TOOL_STDERR: usize = 64 * 1024;

/// What a finished process printed.
#[derive(Debug)]
pub(crate) struct ProcessOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run a prepared command (stdout and stderr are piped here) within `timeout`, keeping at
/// most `max_stdout` bytes of stdout: a process that prints more is killed
/// ([`ToolError::OutputTooLarge`]), one that runs longer is killed ([`ToolError::Timeout`]).
/// Emits no tracing events.
pub(crate) fn run_process(
    name: &str,
    mut command: Command,
    timeout: Duration,
    max_stdout: usize,
) -> Result<ProcessOutput, ToolError> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ToolError::Missing {
                tool: name.to_string(),
            },
            _ => ToolError::Spawn {
                tool: name.to_string(),
                source,
            },
        })?;
    // Drain both pipes on threads so a chatty tool never blocks on a full pipe. The tool
    // closing its stdout (normally: exiting) wakes this thread at once; it polls for the exit
    // status only after that, so a tool that answers in 1 ms costs about 1 ms, not a polling
    // step.
    let deadline = Instant::now() + timeout;
    let (closed_tx, closed_rx) = mpsc::channel();
    let overflow = Arc::new(AtomicBool::new(false));
    let stdout = drain(
        child.stdout.take(),
        Some(closed_tx),
        max_stdout,
        Some(overflow.clone()),
    );
    let stderr = drain(child.stderr.take(), None, MAX_TOOL_STDERR, None);
    let _ = closed_rx.recv_timeout(timeout);
    let kill = |child: &mut Child| {
        let _ = child.kill();
        let _ = child.wait();
    };
    if overflow.load(Ordering::SeqCst) {
        kill(&mut child);
        return Err(ToolError::OutputTooLarge {
            tool: name.to_string(),
            limit: max_stdout,
        });
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let status = match wait_with_timeout(&mut child, remaining) {
        Ok(Some(status)) => status,
        Ok(None) => {
            kill(&mut child);
            return Err(ToolError::Timeout {
                tool: name.to_string(),
                timeout,
            });
        }
        Err(source) => {
            kill(&mut child);
            return Err(ToolError::Spawn {
                tool: name.to_string(),
                source,
            });
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if overflow.load(Ordering::SeqCst) {
        return Err(ToolError::OutputTooLarge {
            tool: name.to_string(),
            limit: max_stdout,
        });
    }
    Ok(ProcessOutput {
        status,
        stdout,
        stderr,
    })
}

/// Read a pipe to its end on a thread, keeping at most `max` bytes; `closed` is told when it
/// ends. With `overflow`, reading stops (and the pipe is closed) once the cap is passed, and
/// the flag is set; otherwise the rest is read and dropped.
fn drain(
    pipe: Option<impl Read + Send + 'static>,
    closed: Option<mpsc::Sender<()>>,
    max: usize,
    overflow: Option<Arc<AtomicBool>>,
) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = max.saturating_sub(buf.len());
                        buf.extend_from_slice(chunk.get(..n.min(room)).unwrap_or_default());
                        if n > room
                            && let Some(flag) = &overflow
                        {
                            flag.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        }
        if let Some(closed) = closed {
            let _ = closed.send(());
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn wait_with_timeout(
    child: &mut Child,
    timeout: Duration,
) -> io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Parse a hook tool's `--format=json` output into the type the charm reads from it (the
/// parser [`Subprocess`] uses; public for the fuzz targets). The error quotes at most 200
/// characters of the output.
pub fn parse_json<T: DeserializeOwned>(tool: &str, output: &str) -> Result<T, ToolError> {
    serde_json::from_str(output.trim()).map_err(|err| ToolError::BadOutput {
        tool: tool.to_string(),
        detail: err.to_string(),
        // Escaped first, then cut: control characters do not multiply the length.
        output: crate::text::shorten(
            format!("{:?}", crate::text::shorten(output.trim(), 200)),
            200,
        ),
    })
}

/// `key=value` arguments, values redacted (the edge of relation-set and action-set).
fn pairs(settings: &[(&str, &str)]) -> Vec<String> {
    settings
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::redact::redact(v)))
        .collect()
}

impl Subprocess {
    fn run(&self, tool: &str, args: &[&str]) -> Result<String, ToolError> {
        run_tool_with(tool, args, self.timeout, &self.env)
    }

    fn json<T: DeserializeOwned>(&self, tool: &str, args: &[&str]) -> Result<T, ToolError> {
        let mut all = vec!["--format=json"];
        all.extend_from_slice(args);
        let output = self.run(tool, &all)?;
        parse_json(tool, &output)
    }
}

impl HookTools for Subprocess {
    fn config_get(&self) -> Result<RawConfig, ToolError> {
        let value: Option<RawConfig> = self.json("config-get", &[])?;
        Ok(value.unwrap_or_default())
    }

    fn network_get(&self, binding: &str) -> Result<NetworkInfo, ToolError> {
        self.json("network-get", &["--", binding])
    }

    fn unit_get_private_address(&self) -> Result<String, ToolError> {
        self.json("unit-get", &["--", "private-address"])
    }

    fn is_leader(&self) -> Result<bool, ToolError> {
        self.json("is-leader", &[])
    }

    fn relation_ids(&self, endpoint: &str) -> Result<Vec<String>, ToolError> {
        let ids: Option<Vec<String>> = self.json("relation-ids", &["--", endpoint])?;
        Ok(ids.unwrap_or_default())
    }

    fn relation_list(&self, relation_id: &str) -> Result<Vec<String>, ToolError> {
        let units: Option<Vec<String>> = self.json("relation-list", &["-r", relation_id])?;
        Ok(units.unwrap_or_default())
    }

    fn relation_get(
        &self,
        relation_id: &str,
        unit: &str,
    ) -> Result<BTreeMap<String, String>, ToolError> {
        let bag: Option<BTreeMap<String, String>> =
            self.json("relation-get", &["-r", relation_id, "--", "-", unit])?;
        Ok(bag.unwrap_or_default())
    }

    fn relation_set(&self, relation_id: &str, settings: &[(&str, &str)]) -> Result<(), ToolError> {
        let pairs = pairs(settings);
        let mut args = vec!["-r", relation_id, "--"];
        args.extend(pairs.iter().map(String::as_str));
        self.run("relation-set", &args).map(drop)
    }

    fn relation_set_app(
        &self,
        relation_id: &str,
        settings: &[(&str, &str)],
    ) -> Result<(), ToolError> {
        let pairs = pairs(settings);
        let mut args = vec!["-r", relation_id, "--app", "--"];
        args.extend(pairs.iter().map(String::as_str));
        self.run("relation-set", &args).map(drop)
    }

    fn relation_get_app(
        &self,
        relation_id: &str,
        application: &str,
    ) -> Result<BTreeMap<String, String>, ToolError> {
        let bag: Option<BTreeMap<String, String>> = self.json(
            "relation-get",
            &["-r", relation_id, "--app", "--", "-", application],
        )?;
        Ok(bag.unwrap_or_default())
    }

    fn status_set(&self, status: &UnitStatus) -> Result<(), ToolError> {
        let message = crate::redact::status_line(&status.message);
        self.run("status-set", &["--", status.kind.as_str(), &message])
            .map(drop)
    }

    fn application_version_set(&self, version: &str) -> Result<(), ToolError> {
        self.run("application-version-set", &["--", version])
            .map(drop)
    }

    fn state_get(&self, key: &str) -> Result<Option<String>, ToolError> {
        // A missing key prints `""` (or `null`): both mean absent here.
        let value: Option<String> = self.json("state-get", &["--", key])?;
        Ok(value.filter(|v| !v.is_empty()))
    }

    fn state_set(&self, key: &str, value: &str) -> Result<(), ToolError> {
        let pair = format!("{key}={value}");
        self.run("state-set", &["--", &pair]).map(drop)
    }

    fn action_set(&self, results: &[(&str, &str)]) -> Result<(), ToolError> {
        let pairs = pairs(results);
        let mut args = vec!["--"];
        args.extend(pairs.iter().map(String::as_str));
        self.run("action-set", &args).map(drop)
    }

    fn action_fail(&self, message: &str) -> Result<(), ToolError> {
        let message = crate::redact::log_line(message);
        self.run("action-fail", &["--", &message]).map(drop)
    }

    fn resource_get(&self, name: &str) -> Result<String, ToolError> {
        let out = self.run("resource-get", &["--", name])?;
        Ok(out.trim_end_matches(['\n', '\r']).to_string())
    }

    fn stats(&self) -> Option<ToolStats> {
        Some(tool_stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_is_named() {
        let err = run_tool("calico-charm-no-such-tool", &[], Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, ToolError::Missing { .. }), "{err:?}");
        assert_eq!(err.tool(), "calico-charm-no-such-tool");
        assert!(err.to_string().contains("calico-charm-no-such-tool"));
    }

    #[test]
    fn failure_carries_stderr() {
        let err = run_tool(
            "sh",
            &["-c", "echo 'ERROR relation not found' >&2; exit 2"],
            Duration::from_secs(5),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hook tool sh failed"), "{text}");
        assert!(text.contains("exit status: 2"), "{text}");
        assert!(text.contains("ERROR relation not found"), "{text}");
    }

    #[test]
    fn timeout_kills_the_child() {
        let started = Instant::now();
        let err = run_tool("sleep", &["10"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_tool_that_closes_stdout_and_keeps_running_is_still_waited_for() {
        let started = Instant::now();
        let out = run_tool(
            "sh",
            &["-c", "printf done; exec >&-; sleep 0.3"],
            Duration::from_secs(5),
        );
        assert_eq!(out.unwrap(), "done");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn a_tool_that_closes_stdout_and_hangs_still_times_out() {
        let started = Instant::now();
        let err = run_tool(
            "sh",
            &["-c", "exec >&-; sleep 10"],
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stdout_is_returned() {
        let out = run_tool(
            "sh",
            &["-c", "printf '[\"cni:1\"]\\n'"],
            Duration::from_secs(5),
        );
        let ids: Vec<String> = parse_json("relation-ids", &out.unwrap()).unwrap();
        assert_eq!(ids, vec!["cni:1".to_string()]);
    }

    #[test]
    fn every_call_is_counted_with_its_wall_time() {
        // Other tests of this binary run tools concurrently, so the counters can only grow
        // by more than this test's own calls.
        let before = tool_stats();
        run_tool("sleep", &["0.05"], Duration::from_secs(5)).unwrap();
        let _ = run_tool("calico-charm-no-such-tool", &[], Duration::from_secs(5));
        let after = tool_stats();
        assert!(after.calls >= before.calls + 2, "{before:?} -> {after:?}");
        assert!(
            after.time >= before.time + Duration::from_millis(50),
            "{before:?} -> {after:?}"
        );
        assert_eq!(
            Subprocess::default()
                .stats()
                .map(|s| s.calls >= after.calls),
            Some(true)
        );
    }

    #[test]
    fn stats_read_as_a_log_phrase() {
        let stats = ToolStats {
            calls: 10,
            time: Duration::from_micros(12_345),
        };
        assert_eq!(
            stats.to_string(),
            "10 hook-tool calls, 12.3 ms in hook tools"
        );
        let one = ToolStats {
            calls: 1,
            time: Duration::from_micros(400),
        };
        assert_eq!(one.to_string(), "1 hook-tool call, 0.4 ms in hook tools");
    }

    #[test]
    fn bad_json_names_the_tool() {
        let err = parse_json::<bool>("is-leader", "True\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("hook tool is-leader printed output")
        );
    }
}
