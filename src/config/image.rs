//! Container image references: the parser of the two image options and the registry rewrite
//! of `image-registry`.

use crate::text::{SHOWN, shorten};

/// A validated container image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The reference exactly as configured.
    pub reference: String,
}

impl Image {
    /// Check a container image reference (`[registry[:port]/]path[:tag][@digest]`).
    pub fn parse(text: &str) -> Result<Image, String> {
        let shown = shorten(format!("{text:?}"), SHOWN);
        let fail = |why: &str| {
            Err(format!(
                "{shown}: {why}; expected an image reference like docker.io/calico/node:v3.6.1"
            ))
        };
        if text.is_empty() {
            return Err(
                "must not be empty; expected an image reference like docker.io/calico/node:v3.6.1"
                    .into(),
            );
        }
        if text.chars().any(char::is_whitespace) {
            return fail("contains whitespace");
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (text, None),
        };
        if let Some(d) = digest {
            let Some((algo, hex)) = d.split_once(':') else {
                return fail("the digest after @ must be algorithm:hex");
            };
            let algo_ok = !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            let hex_ok = hex.len() >= 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !algo_ok || !hex_ok || (algo == "sha256" && hex.len() != 64) {
                return fail("invalid digest");
            }
        }
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            let b = tag.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= 128
                && b.first()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
            if !ok {
                return fail("invalid tag");
            }
        }
        if name.is_empty() || name.len() > 255 {
            return fail("the repository name must be 1 to 255 characters");
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        if parts.len() > 1
            && parts.first().is_some_and(|d| {
                d.contains('.')
                    || d.contains(':')
                    || *d == "localhost"
                    || d.bytes().any(|b| b.is_ascii_uppercase())
            })
        {
            let domain = parts.remove(0);
            if !valid_domain(domain) {
                return fail("invalid registry host");
            }
        }
        for part in parts {
            if !valid_path_component(part) {
                return fail(&format!(
                    "invalid path component {part:?} (lowercase letters, digits and single separators . _ __ -)"
                ));
            }
        }
        Ok(Image {
            reference: text.to_string(),
        })
    }

    /// The tag (`v3.6.1` of `docker.io/calico/node:v3.6.1`), if the reference has one.
    pub fn tag(&self) -> Option<&str> {
        let name_tag = self.reference.split('@').next().unwrap_or_default();
        let last = name_tag.rfind('/').map_or(0, |i| i + 1);
        let tail = name_tag.get(last..)?;
        tail.rfind(':').and_then(|i| tail.get(i + 1..))
    }

    /// The digest (`sha256:...`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.reference.split_once('@').map(|(_, d)| d)
    }

    /// What to show as the application version: the tag, else the digest, else `latest`.
    pub fn version(&self) -> &str {
        self.tag().or_else(|| self.digest()).unwrap_or("latest")
    }
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((ip6, after)) = rest.split_once(']') else {
            return false;
        };
        if ip6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        (
            None,
            after
                .strip_prefix(':')
                .map(Some)
                .unwrap_or(if after.is_empty() { None } else { Some("") }),
        )
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|label| {
                let b = label.as_bytes();
                !b.is_empty()
                    && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                    && b.first().is_some_and(u8::is_ascii_alphanumeric)
                    && b.last().is_some_and(u8::is_ascii_alphanumeric)
            })
    })
}

fn valid_path_component(part: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = part.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if alnum(&c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-')) {
            return false;
        }
    }
    true
}

/// `reference` pulled from `registry`: the registry host (and any path before the image's
/// last two path components, `calico/node`) replaced, name and tag kept
/// (`docker.io/calico/node:v3.6.1` under `registry.example.com:5000` →
/// `registry.example.com:5000/calico/node:v3.6.1`).
pub(crate) fn apply_registry(image: &Image, registry: &str) -> String {
    let reference = image.reference.as_str();
    let parts: Vec<&str> = reference.split('/').collect();
    let keep = parts.len().min(2);
    let tail = parts[parts.len() - keep..].join("/");
    format!("{}/{tail}", registry.trim_end_matches('/'))
}
