//! The one redaction every string passes before it leaves the process for Juju: `status-set`,
//! `relation-set`, `action-set`, `action-fail`, `juju-log` and the charm's stderr (which Juju
//! logs).
//!
//! It removes, in this order:
//! - every secret value registered with [`register_secret`]: the charm registers the values of
//!   the kubeconfig actually in use (bearer tokens, token file contents, passwords, client key
//!   data, exec plugin output, auth-provider settings) as soon as it reads them, so they are
//!   caught even where no key name is next to them;
//! - PEM blocks, `Bearer <token>`, `Basic <credentials>`;
//! - the password of any `scheme://user:password@host` URL;
//! - the value after a secret-looking key (`token: x`, `"password"="x"`, `client-key-data=x`).
//!
//! [`status_line`] also makes a status message one line of bounded length; [`bound_line`]
//! bounds a log line.

use std::sync::RwLock;

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not registered: a two-letter "secret" would redact every
/// occurrence of those letters. Real tokens and keys are far longer.
pub(crate) const MIN_SECRET_LEN: usize = 6;

/// At most this many secrets are remembered (a kubeconfig with thousands of users must not
/// make every log line slow); the first ones, from the context in use, are registered first.
const MAX_SECRETS: usize = 256;

/// The longest status message: Juju shows it on one line of `juju status`.
pub const MAX_STATUS_LEN: usize = 240;

/// The longest log line handed to `juju-log` (an argument, so also well under Linux's 128 KiB
/// limit on one argument).
pub const MAX_LOG_LINE: usize = 4096;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember a secret value: from now on it is redacted from everything the charm sends.
/// Surrounding whitespace is ignored; values shorter than [`MIN_SECRET_LEN`] are ignored.
pub(crate) fn register_secret(value: &str) {
    let value = value.trim();
    if value.chars().count() < MIN_SECRET_LEN {
        return;
    }
    if let Ok(mut secrets) = SECRETS.write() {
        if secrets.len() >= MAX_SECRETS || secrets.iter().any(|s| s == value) {
            return;
        }
        secrets.push(value.to_string());
        // Longest first, so a secret containing another is redacted whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
    // Each line of a multi-line secret (a PEM key pasted whole) on its own too: an error
    // message may quote one line of it.
    if value.contains('\n') {
        for line in value.lines() {
            register_secret(line);
        }
    }
}

/// Redact `text` (see the module docs). Never panics, linear in the text for each secret.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    if let Ok(secrets) = SECRETS.read() {
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
    }
    out = redact_pem(&out);
    out = redact_url_passwords(&out);
    out = redact_values(&out, "bearer ", false);
    out = redact_values(&out, "basic ", false);
    for key in SECRET_KEYS {
        out = redact_values(&out, key, true);
    }
    out
}

/// A status message: redacted, on one line (every run of whitespace or control characters
/// becomes one space), at most [`MAX_STATUS_LEN`] characters.
pub fn status_line(text: &str) -> String {
    crate::text::shorten(one_line(&redact(text)), MAX_STATUS_LEN)
}

/// A log line: redacted, at most [`MAX_LOG_LINE`] bytes (cut on a character boundary, the cut
/// said so). Control characters other than newline and tab are shown as spaces.
pub fn log_line(text: &str) -> String {
    let bounded = bound_line(text, MAX_LOG_LINE * 4);
    let redacted = redact(&bounded);
    let clean: String = redacted
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    bound_line(&clean, MAX_LOG_LINE)
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `… (N bytes cut)`.
pub(crate) fn bound_line(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(40);
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = text.get(..end).unwrap_or_default();
    format!("{head}… ({} bytes cut)", text.len() - end)
}

/// Every run of whitespace and control characters becomes one space; trimmed.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// Keys whose values are never logged (kubeconfig fields, tokens, passwords).
const SECRET_KEYS: &[&str] = &[
    "token",
    "tokenfile",
    "password",
    "passwd",
    "secret",
    "client-key-data",
    "client-key",
    "client-certificate-data",
    "certificate-authority-data",
    "id-token",
    "refresh-token",
    "access-token",
    "clientkeydata",
    "client_secret",
];

fn redact_pem(line: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "-----END ";
    if !line.contains(BEGIN) {
        return line.to_string();
    }
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

/// `https://user:secret@host` -> `https://user:[redacted]@host` (also without a user name).
fn redact_url_passwords(line: &str) -> String {
    if !line.contains("://") {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#', whitespace or quote, and before the
        // scheme of a next URL (`...@hosthttps://`), which is then redacted on its own.
        let mut end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        if let Some(next) = tail.find("://") {
            end = end.min(next);
        }
        let authority = tail.get(..end).unwrap_or_default();
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = authority.get(..userinfo_end).unwrap_or_default();
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(REDACTED);
                    }
                    // A user name alone may itself be a token (`https://TOKEN@host`).
                    None => out.push_str(REDACTED),
                }
                out.push_str(authority.get(userinfo_end..).unwrap_or_default());
            }
            None => out.push_str(authority),
        }
        rest = tail.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Redact the value after each case-insensitive occurrence of `key`. With `separator`, the key
/// must start a word and be followed by an optional quote and `:` or `=`.
fn redact_values(line: &str, key: &str, separator: bool) -> String {
    let lower = line.to_ascii_lowercase();
    if !lower.contains(key) {
        return line.to_string();
    }
    let bytes = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower.get(from..).and_then(|rest| rest.find(key)) {
        let at = from + found;
        let mut i = at + key.len();
        from = i;
        let before = at.checked_sub(1).and_then(|p| bytes.get(p));
        let word_start = !before.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'-');
        if separator {
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
        } else if !word_start {
            continue;
        }
        while matches!(bytes.get(i), Some(b' ') | Some(b'"') | Some(b'\'')) {
            i += 1;
        }
        let value_end = bytes
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|b| {
                matches!(
                    b,
                    b' ' | b'"' | b'\'' | b',' | b'}' | b']' | b'\n' | b';' | b')'
                )
            })
            .map_or(bytes.len(), |p| i + p);
        if value_end == i || !line.is_char_boundary(i) || !line.is_char_boundary(value_end) {
            continue;
        }
        // `[redacted]` itself is not a value to redact again.
        if line.get(i..).is_some_and(|rest| rest.starts_with(REDACTED)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn redaction_never_panics(line in "(?s).{0,80}(token|Bearer |-----BEGIN |password|://a:b@)?.{0,40}") {
            let _ = redact(&line);
            let status = status_line(&line);
            proptest::prop_assert!(!status.contains('\n'));
            proptest::prop_assert!(status.chars().count() <= MAX_STATUS_LEN);
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
            (
                "proxy http://admin:s3cr3t@proxy.example:3128/ refused",
                "proxy http://admin:[redacted]@proxy.example:3128/ refused",
            ),
            (
                "server https://abcdefTOKEN@10.0.0.1:6443",
                "server https://[redacted]@10.0.0.1:6443",
            ),
            (
                "Authorization: Basic YWRtaW46cHc=",
                "Authorization: Basic [redacted]",
            ),
            // Not secrets: hashes, counts, words that merely contain a key.
            (
                "principal kubeconfig-hash 9f86d081884c",
                "principal kubeconfig-hash 9f86d081884c",
            ),
            ("tokens: 3 secretary=x", "tokens: 3 secretary=x"),
            ("no token here", "no token here"),
            (
                "server https://10.0.0.1:6443/api",
                "server https://10.0.0.1:6443/api",
            ),
            ("ünïcode token=åäö done", "ünïcode token=[redacted] done"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn registered_values_are_redacted_wherever_they_appear() {
        register_secret("  zq-registered-secret-4711\n");
        register_secret("ab"); // too short to register
        let text = "yaml error near zq-registered-secret-4711 at line 3; ab";
        assert_eq!(redact(text), "yaml error near [redacted] at line 3; ab");
        register_secret("line-one-of-a-key-81\nline-two-of-a-key-82");
        assert_eq!(redact("x line-two-of-a-key-82 y"), "x [redacted] y");
    }

    #[test]
    fn urls_run_together_have_both_passwords_redacted() {
        let out = redact("a https://u:p1-secret@hostXhttps://v:p2-secret@h/ b");
        assert!(
            !out.contains("p1-secret") && !out.contains("p2-secret"),
            "{out}"
        );
    }

    #[test]
    fn redaction_is_stable() {
        for text in [
            "token: abc",
            "Bearer xyz",
            "https://u:p@h/ x",
            "https://tok@h",
            "password=\"a\"",
            // Found by the hook_tool_output fuzz target: two URLs run together.
            "token: xyzccess-tokenhttps://u:p@hccess-tokenhttps://u:p@h/",
        ] {
            let once = redact(text);
            assert_eq!(redact(&once), once, "{text}");
        }
    }

    #[test]
    fn status_lines_are_one_bounded_line() {
        let long = format!("first\nsecond\r\n\tthird \u{7} {}", "x".repeat(1000));
        let line = status_line(&long);
        assert!(line.starts_with("first second third x"), "{line}");
        assert_eq!(line.chars().count(), MAX_STATUS_LEN);
        assert!(line.ends_with('…'));
        assert_eq!(status_line("  Ready  "), "Ready");
    }

    #[test]
    fn log_lines_are_bounded() {
        let line = log_line(&"y".repeat(10 * MAX_LOG_LINE));
        assert!(line.len() <= MAX_LOG_LINE, "{}", line.len());
        assert!(line.ends_with("bytes cut)"), "{line}");
        assert_eq!(log_line("a\u{0}b\nc"), "a b\nc");
    }
}
