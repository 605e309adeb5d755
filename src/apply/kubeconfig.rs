//! The principal's kubeconfig, read and checked by the charm before kube sees it.
//!
//! - The file is read up to [`MAX_KUBECONFIG`] bytes and parsed here (not by kube), so that a
//!   syntax error says where it is (file, line, column, key) and never quotes the content.
//! - Every secret value in it (tokens, passwords, client keys, exec plugin settings,
//!   auth-provider settings, URL passwords) is registered with [`crate::redact`] as soon as it
//!   is parsed: from then on it is redacted from everything the charm sends to Juju.
//! - The context in use is checked: its cluster must be `https://` (a bearer token is never
//!   sent in clear text), without `proxy-url` (the charm's Kubernetes client has no proxy
//!   support) and its user without `auth-provider` (the charm runs none); tokens must be
//!   valid in an HTTP header (no newline or control character).
//! - Credentials are resolved here, each within a deadline and size cap: a `tokenFile` is
//!   read and trimmed as Kubernetes' own clients do; an `exec` credential plugin is run
//!   ([`crate::juju::tools::run_process`]) with a timeout and an output cap; the result is a
//!   kubeconfig with inline credentials only, so kube never starts a process or reads a
//!   token file itself.
//!
//! Every error is a [`KubeconfigError`]: [`KubeconfigError::is_transient`] tells a file the
//! principal has not written yet (`waiting`) from a kubeconfig that cannot work as written
//! (`blocked`, naming what to fix).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{AuthInfo, Cluster, Kubeconfig, NamedAuthInfo};

use crate::redact::register_secret;
use crate::text::{SHOWN, shorten};

/// The largest kubeconfig the charm reads (real ones, certificates included, are a few KiB).
pub(crate) const MAX_KUBECONFIG: u64 = 1024 * 1024;
/// The largest token file, CA, certificate or key file the charm lets be read.
pub(crate) const MAX_CREDENTIAL_FILE: u64 = 1024 * 1024;
/// The most a credential plugin may print.
pub(crate) const MAX_PLUGIN_OUTPUT: usize = 1024 * 1024;
/// How long a credential plugin may run (never past the hook's deadline).
pub(crate) const PLUGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the kubeconfig cannot be used. `Display` names the file and what to fix, never a
/// value from it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig {path} does not exist yet")]
    Missing { path: String },
    #[error("cannot read kubeconfig {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("kubeconfig {path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("kubeconfig {path} is not valid YAML: {what}{place}")]
    Syntax {
        path: String,
        what: String,
        place: String,
    },
    #[error("kubeconfig {path}: {problem}")]
    Unusable { path: String, problem: String },
}

impl KubeconfigError {
    /// Whether it may heal by itself (the principal writes the file later).
    pub fn is_transient(&self) -> bool {
        matches!(self, KubeconfigError::Missing { .. })
    }
}

fn unusable(path: &str, problem: impl Into<String>) -> KubeconfigError {
    KubeconfigError::Unusable {
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// Read the kubeconfig at `path` (at most [`MAX_KUBECONFIG`] bytes), parse and check it, and
/// resolve the credentials of its current context. The result has inline credentials only.
pub fn load(path: &Path) -> Result<Kubeconfig, KubeconfigError> {
    let shown = path.display().to_string();
    let text = read_capped(path, MAX_KUBECONFIG).map_err(|e| match e {
        ReadError::Missing => KubeconfigError::Missing {
            path: shown.clone(),
        },
        ReadError::TooLarge => KubeconfigError::TooLarge {
            path: shown.clone(),
            limit: MAX_KUBECONFIG,
        },
        ReadError::Io(reason) => KubeconfigError::Unreadable {
            path: shown.clone(),
            reason,
        },
    })?;
    let mut config = parse(&text, &shown)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    absolutise(&mut config, dir);
    let selected = check(&config, &shown)?;
    resolve(config, &selected, &shown)
}

/// Parse kubeconfig text. Registers every secret value in it with [`crate::redact`], also
/// when the text does not parse as a whole (the values of secret-looking keys are found
/// line by line). Pure apart from that registration.
pub fn parse(text: &str, path: &str) -> Result<Kubeconfig, KubeconfigError> {
    register_line_secrets(text);
    let config: Kubeconfig = match serde_yaml::from_str(text) {
        Ok(config) => config,
        Err(err) => {
            let place = err
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            return Err(KubeconfigError::Syntax {
                path: path.to_string(),
                what: describe_yaml_error(&err.to_string()),
                place,
            });
        }
    };
    register_secrets(&config);
    Ok(config)
}

/// A YAML error's message without anything it quotes from the document: the location is
/// given apart, quoted values are replaced, field names the kubeconfig schema knows are kept.
pub fn describe_yaml_error(message: &str) -> String {
    // serde_yaml appends " at line L column C"; the location is reported separately.
    let message = match message.find(" at line ") {
        Some(at) => message.get(..at).unwrap_or(message),
        None => message,
    };
    let mut out = String::new();
    let mut rest = message;
    loop {
        let next = rest.find(['`', '"']);
        let Some(open) = next else {
            out.push_str(rest);
            break;
        };
        let quote = rest.get(open..open + 1).unwrap_or("`");
        out.push_str(rest.get(..open).unwrap_or_default());
        let after = rest.get(open + 1..).unwrap_or_default();
        // The closing quote; in a double-quoted span (Rust's escaping of a string), a
        // backslash escapes the next character.
        let close = if quote == "\"" {
            let mut escaped = false;
            after.char_indices().find_map(|(i, c)| {
                if escaped {
                    escaped = false;
                    None
                } else if c == '\\' {
                    escaped = true;
                    None
                } else {
                    (c == '"').then_some(i)
                }
            })
        } else {
            after.find(quote)
        };
        let Some(close) = close else {
            out.push_str("(a value)");
            break;
        };
        let quoted = after.get(..close).unwrap_or_default();
        if KNOWN_KEYS.contains(&quoted) {
            out.push('`');
            out.push_str(quoted);
            out.push('`');
        } else {
            out.push_str("(a value)");
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    crate::redact::one_line(&out)
}

/// Keys of the kubeconfig schema, which an error message may name.
const KNOWN_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "clusters",
    "users",
    "contexts",
    "current-context",
    "preferences",
    "extensions",
    "name",
    "cluster",
    "user",
    "context",
    "namespace",
    "server",
    "certificate-authority",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "proxy-url",
    "tls-server-name",
    "disable-compression",
    "token",
    "tokenFile",
    "username",
    "password",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
    "exec",
    "auth-provider",
    "command",
    "args",
    "env",
    "value",
    "config",
    "interactiveMode",
    "provideClusterInfo",
    "as",
    "as-groups",
];

/// The values of secret-looking keys, found line by line (so that even a kubeconfig that
/// does not parse has its secrets registered before any error is reported).
fn register_line_secrets(text: &str) {
    const KEYS: &[&str] = &[
        "token",
        "password",
        "client-key-data",
        "client-certificate-data",
        "id-token",
        "refresh-token",
        "access-token",
        "client-secret",
        "secret",
        "value",
        "proxy-url",
        "server",
    ];
    for line in text.lines().take(100_000) {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']);
        if !KEYS.contains(&key) {
            continue;
        }
        let value = value.trim().trim_matches(['"', '\'']);
        match key {
            // URLs: only the password in them is secret.
            "proxy-url" | "server" => register_url_password(value),
            _ => register_secret(value),
        }
    }
}

fn register_url_password(url: &str) {
    let Some((_, rest)) = url.split_once("://") else {
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((_, password)) => register_secret(password),
            None => register_secret(userinfo),
        }
    }
}

fn register_auth_info(auth: &AuthInfo) {
    use secrecy::ExposeSecret;
    if let Some(token) = &auth.token {
        register_secret(token.expose_secret());
    }
    if let Some(password) = &auth.password {
        register_secret(password.expose_secret());
    }
    if let Some(key) = &auth.client_key_data {
        register_secret(key.expose_secret());
    }
    if let Some(provider) = &auth.auth_provider {
        for value in provider.config.values() {
            register_secret(value);
        }
    }
    if let Some(exec) = &auth.exec {
        for env in exec.env.iter().flatten() {
            if let Some(value) = env.get("value") {
                register_secret(value);
            }
        }
        for arg in exec.args.iter().flatten() {
            if let Some((flag, value)) = arg.split_once('=') {
                let flag = flag.to_ascii_lowercase();
                if ["token", "secret", "password", "key"]
                    .iter()
                    .any(|k| flag.contains(k))
                {
                    register_secret(value);
                }
            }
        }
    }
}

fn register_secrets(config: &Kubeconfig) {
    for named in &config.auth_infos {
        if let Some(auth) = &named.auth_info {
            register_auth_info(auth);
        }
    }
    for named in &config.clusters {
        if let Some(cluster) = &named.cluster {
            for url in [&cluster.server, &cluster.proxy_url].into_iter().flatten() {
                register_url_password(url);
            }
        }
    }
}

/// Make the file references of a kubeconfig absolute, relative to its directory (as kube and
/// client-go do).
fn absolutise(config: &mut Kubeconfig, dir: &Path) {
    let abs = |p: &mut Option<String>| {
        if let Some(path) = p.as_mut()
            && Path::new(path).is_relative()
        {
            *path = dir.join(&*path).display().to_string();
        }
    };
    for named in &mut config.clusters {
        if let Some(cluster) = &mut named.cluster {
            abs(&mut cluster.certificate_authority);
        }
    }
    for named in &mut config.auth_infos {
        if let Some(auth) = &mut named.auth_info {
            abs(&mut auth.client_certificate);
            abs(&mut auth.client_key);
            abs(&mut auth.token_file);
            if let Some(exec) = &mut auth.exec
                && exec.command.as_deref().is_some_and(|c| c.contains('/'))
            {
                abs(&mut exec.command);
            }
        }
    }
}

/// The context in use: names of its cluster and user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selected {
    pub context: String,
    pub cluster: String,
    pub user: Option<String>,
}

/// Check the current context of a parsed kubeconfig (pure): it must exist and name a cluster
/// (and user) that exist; the cluster must be `https://`, without `proxy-url`; the user
/// without `auth-provider`; tokens, user names and passwords valid in an HTTP header.
pub fn check(config: &Kubeconfig, path: &str) -> Result<Selected, KubeconfigError> {
    let context_name = match config.current_context.as_deref() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => match config.contexts.as_slice() {
            [only] => only.name.clone(),
            _ => return Err(unusable(path, "no current-context is set")),
        },
    };
    let shown = |name: &str| shorten(format!("{name:?}"), SHOWN);
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| {
            unusable(
                path,
                format!("current-context {} names no context", shown(&context_name)),
            )
        })?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            unusable(
                path,
                format!(
                    "context {} names cluster {}, which is not in the file",
                    shown(&context_name),
                    shown(&context.cluster)
                ),
            )
        })?;
    check_cluster(cluster, &shown(&context.cluster), path)?;
    if let Some(user) = &context.user {
        let auth = config
            .auth_infos
            .iter()
            .find(|u| u.name == *user)
            .ok_or_else(|| {
                unusable(
                    path,
                    format!(
                        "context {} names user {}, which is not in the file",
                        shown(&context_name),
                        shown(user)
                    ),
                )
            })?;
        check_user(auth, &shown(user), path)?;
    }
    Ok(Selected {
        context: context_name,
        cluster: context.cluster.clone(),
        user: context.user.clone(),
    })
}

fn check_cluster(cluster: &Cluster, name: &str, path: &str) -> Result<(), KubeconfigError> {
    let Some(server) = cluster.server.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Err(unusable(path, format!("cluster {name} has no server")));
    };
    let server_shown = shorten(crate::redact::redact(server), SHOWN);
    let scheme = server
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => {}
        Some("http") => {
            return Err(unusable(
                path,
                format!(
                    "cluster {name}: server {server_shown} is plain HTTP: the charm sends \
                     credentials only over verified TLS; use the API server's https:// address"
                ),
            ));
        }
        _ => {
            return Err(unusable(
                path,
                format!("cluster {name}: server {server_shown} is not an https:// URL"),
            ));
        }
    }
    if server.parse::<http::Uri>().is_err() {
        return Err(unusable(
            path,
            format!("cluster {name}: server {server_shown} is not a valid URL"),
        ));
    }
    if cluster.proxy_url.is_some() {
        return Err(unusable(
            path,
            format!(
                "cluster {name} sets proxy-url, which the charm does not support (its \
                 Kubernetes client has no proxy support): reach the API server directly"
            ),
        ));
    }
    for (key, file) in [("certificate-authority", &cluster.certificate_authority)] {
        if let Some(file) = file {
            check_file_size(file, key, name, path)?;
        }
    }
    Ok(())
}

fn check_file_size(file: &str, key: &str, owner: &str, path: &str) -> Result<(), KubeconfigError> {
    match std::fs::metadata(file) {
        Ok(meta) if meta.len() > MAX_CREDENTIAL_FILE => Err(unusable(
            path,
            format!("{owner}: {key} {file} is larger than {MAX_CREDENTIAL_FILE} bytes"),
        )),
        // A missing file is reported by kube when it reads it (naming the file).
        _ => Ok(()),
    }
}

/// Why a credential cannot go into an HTTP header, without showing it.
fn header_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_string());
    }
    value
        .bytes()
        .position(|b| !(0x21..=0x7e).contains(&b))
        .map(|at| {
            let what = match value.as_bytes().get(at) {
                Some(b'\n') | Some(b'\r') => "a line break",
                Some(b' ') | Some(b'\t') => "white space",
                Some(b) if *b < 0x20 || *b == 0x7f => "a control character",
                _ => "a non-ASCII character",
            };
            format!("contains {what} (at byte {at})")
        })
}

fn check_user(named: &NamedAuthInfo, name: &str, path: &str) -> Result<(), KubeconfigError> {
    use secrecy::ExposeSecret;
    let Some(auth) = &named.auth_info else {
        return Ok(());
    };
    if auth.auth_provider.is_some() {
        return Err(unusable(
            path,
            format!(
                "user {name} uses an auth-provider, which the charm does not support: use a \
                 token, a client certificate or an exec credential plugin"
            ),
        ));
    }
    if let Some(token) = &auth.token
        && let Some(problem) = header_problem(token.expose_secret())
    {
        return Err(unusable(
            path,
            format!(
                "user {name}: the token {problem}: a bearer token is one line of visible ASCII"
            ),
        ));
    }
    if let Some(user) = &auth.username
        && user.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        return Err(unusable(
            path,
            format!("user {name}: the username contains a control character"),
        ));
    }
    if let Some(password) = &auth.password
        && password
            .expose_secret()
            .bytes()
            .any(|b| b < 0x20 || b == 0x7f)
    {
        return Err(unusable(
            path,
            format!("user {name}: the password contains a control character"),
        ));
    }
    if let Some(exec) = &auth.exec
        && exec.command.as_deref().is_none_or(|c| c.trim().is_empty())
    {
        return Err(unusable(path, format!("user {name}: exec has no command")));
    }
    for (key, file) in [
        ("client-certificate", &auth.client_certificate),
        ("client-key", &auth.client_key),
        ("tokenFile", &auth.token_file),
    ] {
        if let Some(file) = file {
            check_file_size(file, key, &format!("user {name}"), path)?;
        }
    }
    Ok(())
}

/// Resolve the selected user's credentials: token file read and trimmed, exec plugin run.
/// Returns the kubeconfig with inline credentials only.
fn resolve(
    mut config: Kubeconfig,
    selected: &Selected,
    path: &str,
) -> Result<Kubeconfig, KubeconfigError> {
    let Some(user) = &selected.user else {
        return Ok(config);
    };
    let shown = shorten(format!("{user:?}"), SHOWN);
    let server = config
        .clusters
        .iter()
        .find(|c| c.name == selected.cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .unwrap_or_default();
    let Some(auth) = config
        .auth_infos
        .iter_mut()
        .find(|u| u.name == *user)
        .and_then(|u| u.auth_info.as_mut())
    else {
        return Ok(config);
    };
    if let Some(file) = auth.token_file.take()
        && auth.token.is_none()
    {
        let token = read_token_file(&file, &shown, path)?;
        auth.token = Some(token.into());
    }
    if let Some(exec) = auth.exec.take() {
        let credential = run_plugin(&exec, &server, &shown, path)?;
        if let Some(token) = credential.token {
            auth.token = Some(token.into());
        }
        if let (Some(cert), Some(key)) = (credential.cert, credential.key) {
            auth.client_certificate_data = Some(base64(cert.as_bytes()));
            auth.client_key_data = Some(base64(key.as_bytes()).into());
            auth.client_certificate = None;
            auth.client_key = None;
        }
    }
    Ok(config)
}

/// A token file's token: read (at most [`MAX_CREDENTIAL_FILE`] bytes), trimmed of
/// surrounding white space as client-go does, checked.
fn read_token_file(file: &str, user: &str, path: &str) -> Result<String, KubeconfigError> {
    let text = read_capped(Path::new(file), MAX_CREDENTIAL_FILE).map_err(|e| {
        unusable(
            path,
            match e {
                ReadError::Missing => format!("user {user}: tokenFile {file} does not exist"),
                ReadError::TooLarge => format!(
                    "user {user}: tokenFile {file} is larger than {MAX_CREDENTIAL_FILE} bytes"
                ),
                ReadError::Io(reason) => {
                    format!("user {user}: cannot read tokenFile {file}: {reason}")
                }
            },
        )
    })?;
    register_secret(&text);
    let token = text.trim().to_string();
    if let Some(problem) = header_problem(&token) {
        return Err(unusable(
            path,
            format!("user {user}: the token in tokenFile {file} {problem}"),
        ));
    }
    Ok(token)
}

/// What a credential plugin gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Credential {
    pub token: Option<String>,
    /// PEM.
    pub cert: Option<String>,
    /// PEM.
    pub key: Option<String>,
}

#[derive(serde::Deserialize)]
struct ExecOutput {
    status: Option<ExecStatus>,
}

#[derive(serde::Deserialize)]
struct ExecStatus {
    token: Option<String>,
    #[serde(rename = "clientCertificateData")]
    client_certificate_data: Option<String>,
    #[serde(rename = "clientKeyData")]
    client_key_data: Option<String>,
}

/// Parse a credential plugin's stdout (an `ExecCredential`, JSON). Registers what it holds
/// as secrets; errors never quote it.
pub fn parse_plugin_output(stdout: &str) -> Result<Credential, String> {
    for line in stdout.lines() {
        // Whatever the plugin printed may be a credential, even when it is not JSON.
        for word in line.split(|c: char| c.is_whitespace() || c == '"') {
            if word.len() >= 16 {
                register_secret(word);
            }
        }
    }
    let output: ExecOutput = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "printed something that is not an ExecCredential (JSON) at line {} column {}",
            e.line(),
            e.column()
        )
    })?;
    let status = output
        .status
        .ok_or_else(|| "printed an ExecCredential without status".to_string())?;
    for value in [
        &status.token,
        &status.client_certificate_data,
        &status.client_key_data,
    ]
    .into_iter()
    .flatten()
    {
        register_secret(value);
    }
    Ok(Credential {
        token: status.token,
        cert: status.client_certificate_data,
        key: status.client_key_data,
    })
}

fn run_plugin(
    exec: &kube::config::ExecConfig,
    server: &str,
    user: &str,
    path: &str,
) -> Result<Credential, KubeconfigError> {
    let command = exec.command.clone().unwrap_or_default();
    let shown_command = shorten(command.clone(), SHOWN);
    let fail = |what: String| {
        unusable(
            path,
            format!("user {user}: credential plugin {shown_command} {what}"),
        )
    };
    let mut cmd = std::process::Command::new(&command);
    cmd.args(exec.args.iter().flatten());
    let env: HashMap<&str, &str> = exec
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.get("name")?.as_str(), e.get("value")?.as_str())))
        .collect();
    cmd.envs(env);
    for name in exec.drop_env.iter().flatten() {
        cmd.env_remove(name);
    }
    let mut info = serde_json::json!({
        "apiVersion": exec.api_version.clone().unwrap_or_else(|| "client.authentication.k8s.io/v1".into()),
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    if exec.provide_cluster_info {
        info["spec"]["cluster"] = serde_json::json!({"server": server});
    }
    cmd.env("KUBERNETES_EXEC_INFO", info.to_string());
    cmd.stdin(std::process::Stdio::null());
    let output = crate::juju::tools::run_process(
        &command,
        cmd,
        crate::deadline::bound(PLUGIN_TIMEOUT),
        MAX_PLUGIN_OUTPUT,
    )
    .map_err(|e| match e {
        crate::juju::ToolError::Missing { .. } => fail("is not installed".to_string()),
        crate::juju::ToolError::Timeout { timeout, .. } => {
            fail(format!("did not finish within {timeout:?} and was killed"))
        }
        crate::juju::ToolError::OutputTooLarge { limit, .. } => {
            fail(format!("printed more than {limit} bytes and was stopped"))
        }
        other => fail(format!(
            "could not be run: {}",
            crate::redact::redact(&other.to_string())
        )),
    })?;
    if !output.status.success() {
        let stderr = crate::redact::redact(output.stderr.trim());
        let stderr = shorten(crate::redact::one_line(&stderr), SHOWN);
        return Err(fail(format!("failed ({}): {stderr}", output.status)));
    }
    let Credential { token, cert, key } = parse_plugin_output(&output.stdout).map_err(fail)?;
    if let Some(token) = &token
        && let Some(problem) = header_problem(token)
    {
        return Err(fail(format!("gave a token that {problem}")));
    }
    if token.is_none() && (cert.is_none() || key.is_none()) {
        return Err(fail(
            "gave neither a token nor a client certificate and key".to_string(),
        ));
    }
    Ok(Credential { token, cert, key })
}

enum ReadError {
    Missing,
    TooLarge,
    Io(String),
}

/// Read a file of at most `limit` bytes as UTF-8 (lossy).
fn read_capped(path: &Path, limit: u64) -> Result<String, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::Missing,
        _ => ReadError::Io(e.to_string()),
    })?;
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ReadError::Io(e.to_string()))?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where the principal writes the kubeconfig when `KUBECONFIG` is not set (hooks have no
/// `HOME`, so `~` means nothing).
pub(crate) const DEFAULT_KUBECONFIG: &str = "/root/.kube/config";

/// The kubeconfig to use: `KUBECONFIG` if set (its first entry), else [`DEFAULT_KUBECONFIG`].
pub(crate) fn kubeconfig_path() -> PathBuf {
    kubeconfig_path_from(std::env::var_os("KUBECONFIG"))
}

/// [`kubeconfig_path`] for a given value of `KUBECONFIG`.
pub fn kubeconfig_path_from(var: Option<std::ffi::OsString>) -> PathBuf {
    var.as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECONFIG))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/root/.kube/config";

    fn config(server: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: {server}\n\
             users:\n- name: u\n  user:\n{user}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
             current-context: c\n"
        )
    }

    fn checked(text: &str) -> Result<Selected, KubeconfigError> {
        let parsed = parse(text, PATH)?;
        check(&parsed, PATH)
    }

    #[test]
    fn a_plain_token_config_is_accepted() {
        let sel = checked(&config(
            "https://10.0.0.1:6443",
            "    token: abcdef0123456789",
        ))
        .unwrap();
        assert_eq!(sel.cluster, "k");
        assert_eq!(sel.user.as_deref(), Some("u"));
    }

    #[test]
    fn syntax_errors_say_where_and_never_quote() {
        let text = "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: kc-secret-token-771\n   bad: [\n";
        let err = parse(text, PATH).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("line"), "{shown}");
        assert!(!shown.contains("kc-secret-token-771"), "{shown}");
        assert!(!shown.contains('\n'));
        // A type error quotes nothing of the value either.
        let err = parse(
            "users:\n- name: u\n  user:\n    token: [kc-secret-772]\n",
            PATH,
        )
        .unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("kc-secret-772"), "{shown}");
        assert!(shown.contains("line 4"), "{shown}");
        // And the secret was registered anyway.
        assert_eq!(
            crate::redact::redact("x kc-secret-token-771 y"),
            "x [redacted] y"
        );
    }

    #[test]
    fn plain_http_proxies_and_auth_providers_are_refused_by_name() {
        let err = checked(&config(
            "http://10.0.0.1:8080",
            "    token: abcdef0123456789",
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("server http://10.0.0.1:8080 is plain HTTP"),
            "{err}"
        );
        let text = config("https://10.0.0.1:6443", "    token: abcdef0123456789").replace(
            "    server:",
            "    proxy-url: http://admin:pw-4242-secret@proxy:3128\n    server:",
        );
        let err = checked(&text).unwrap_err().to_string();
        assert!(err.contains("cluster \"k\" sets proxy-url"), "{err}");
        assert!(!err.contains("pw-4242-secret"), "{err}");
        let err = checked(&config(
            "https://10.0.0.1:6443",
            "    auth-provider:\n      name: oidc\n      config:\n        id-token: oidc-id-token-5150",
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("user \"u\" uses an auth-provider"),
            "{err}"
        );
    }

    #[test]
    fn a_token_with_a_line_break_is_refused_without_showing_it() {
        let err = checked(&config(
            "https://10.0.0.1:6443",
            "    token: \"abc-secret-9\\ndef\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the token contains a line break (at byte 12)"),
            "{err}"
        );
        assert!(!err.contains("abc-secret-9"), "{err}");
    }

    #[test]
    fn missing_contexts_and_clusters_are_named() {
        let err = checked("apiVersion: v1\nkind: Config\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no current-context"), "{err}");
        let text =
            config("https://x", "    token: abcdef0123").replace("cluster: k\n", "cluster: gone\n");
        let err = checked(&text).unwrap_err().to_string();
        assert!(
            err.contains("names cluster \"gone\", which is not in the file"),
            "{err}"
        );
    }

    #[test]
    fn yaml_error_descriptions_keep_only_schema_words() {
        assert_eq!(
            describe_yaml_error("users[0].user: missing field `name` at line 3 column 5"),
            "users[0].user: missing field `name`"
        );
        assert_eq!(
            describe_yaml_error("invalid type: string \"s3cr3t\", expected a sequence"),
            "invalid type: string (a value), expected a sequence"
        );
        assert_eq!(
            describe_yaml_error("unknown variant `zzz"),
            "unknown variant (a value)"
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
