//! calicoctl on the unit, from the charm resource `calicoctl`: the documentation's
//! multiple-pools recipe is `juju ssh calico/0 calicoctl apply -f -`.
//!
//! The attached file is installed as `<dir>/calicoctl` (default `/usr/local/lib/calico-charm`)
//! and a small wrapper at `/usr/local/bin/calicoctl` runs it for this cluster's datastore with
//! no flags: `DATASTORE_TYPE=kubernetes` and a kubeconfig (calicoctl reads both from the
//! environment when `/etc/calico/calicoctl.cfg` does not exist). The kubeconfig is the
//! principal's (`KUBECONFIG`, else `/root/.kube/config`) when the caller can read it, else
//! the caller's own `~/.kube/config`: `juju ssh` logs in as `ubuntu`, and the Kubernetes
//! charms write a kubeconfig for `ubuntu` too. A `KUBECONFIG` or `DATASTORE_TYPE` the
//! caller sets wins.
//!
//! The content's SHA-256 decides when to replace the binary (a new resource revision); it is
//! kept beside the binary with the resource file's size and modification time, so a hook
//! whose resource did not change reads no more than its metadata.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::problems::{Cause, Outcome};

/// The charm resource's name (metadata.yaml).
pub(crate) const RESOURCE: &str = "calicoctl";
/// Environment variable: where the wrapper goes (tests).
pub const WRAPPER_ENV: &str = "CALICO_CHARM_CALICOCTL";
/// Environment variable: the directory of the installed binary and its fingerprint (tests).
pub const DIR_ENV: &str = "CALICO_CHARM_CALICOCTL_DIR";
/// Default wrapper path: on every login's `PATH`.
pub(crate) const DEFAULT_WRAPPER: &str = "/usr/local/bin/calicoctl";
/// Default directory of the binary (not on `PATH`: only the wrapper is).
pub(crate) const DEFAULT_DIR: &str = "/usr/local/lib/calico-charm";

/// Where calicoctl is installed and which kubeconfig it is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub wrapper: PathBuf,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// etcd mode: calicoctl is set up for Calico's etcd instead of the Kubernetes datastore.
    pub etcd: Option<EtcdAccess>,
}

/// What the installed binary was made from: the resource's fingerprint and the file facts
/// that let a later hook skip hashing an unchanged resource.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    sha256: String,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn parse(text: &str) -> Option<Stamp> {
        let mut it = text.split_whitespace();
        let sha256 = it.next()?.to_string();
        let size = it.next()?.parse().ok()?;
        let mtime_ns = it.next()?.parse().ok()?;
        (sha256.len() == 64).then_some(Stamp {
            sha256,
            size,
            mtime_ns,
        })
    }

    fn text(&self) -> String {
        format!("{} {} {}\n", self.sha256, self.size, self.mtime_ns)
    }
}

/// calicoctl's etcd settings (etcd mode): the endpoints and the unit's credential files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdAccess {
    pub endpoints: String,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn quote(p: &str) -> String {
    format!("'{}'", p.replace('\'', r"'\''"))
}

/// The wrapper script (pure): `binary` run with the Kubernetes datastore and `kubeconfig`.
pub fn wrapper(binary: &Path, kubeconfig: &Path) -> String {
    wrapper_for(binary, kubeconfig, None)
}

/// The wrapper for a datastore: with `etcd`, calicoctl talks to Calico's etcd with the
/// unit's credential files (readable by root only: the wrapper says to use sudo).
pub(crate) fn wrapper_for(binary: &Path, kubeconfig: &Path, etcd: Option<&EtcdAccess>) -> String {
    let q = |p: &Path| quote(&p.display().to_string());
    let Some(etcd) = etcd else {
        return format!(
            "#!/bin/sh\n\
             # Installed by the calico charm from its calicoctl resource: calicoctl for this\n\
             # cluster's Kubernetes datastore, with the principal's kubeconfig.\n\
             if [ -z \"${{KUBECONFIG:-}}\" ]; then\n\
             \x20 if [ -r {kc} ]; then KUBECONFIG={kc}\n\
             \x20 elif [ -n \"${{HOME:-}}\" ] && [ -r \"$HOME/.kube/config\" ]; then KUBECONFIG=\"$HOME/.kube/config\"\n\
             \x20 else KUBECONFIG={kc}\n\
             \x20 fi\n\
             fi\n\
             export KUBECONFIG\n\
             export DATASTORE_TYPE=\"${{DATASTORE_TYPE:-kubernetes}}\"\n\
             exec {bin} \"$@\"\n",
            kc = q(kubeconfig),
            bin = q(binary),
        );
    };
    format!(
        "#!/bin/sh\n\
         # Installed by the calico charm from its calicoctl resource: calicoctl for this\n\
         # cluster's Calico etcd datastore, with the etcd relation's client certificate.\n\
         export DATASTORE_TYPE=\"${{DATASTORE_TYPE:-etcdv3}}\"\n\
         export ETCD_ENDPOINTS=\"${{ETCD_ENDPOINTS:-{ep}}}\"\n\
         export ETCD_CA_CERT_FILE=\"${{ETCD_CA_CERT_FILE:-{ca}}}\"\n\
         export ETCD_CERT_FILE=\"${{ETCD_CERT_FILE:-{cert}}}\"\n\
         export ETCD_KEY_FILE=\"${{ETCD_KEY_FILE:-{key}}}\"\n\
         if [ \"$DATASTORE_TYPE\" = etcdv3 ] && [ ! -r \"$ETCD_KEY_FILE\" ]; then\n\
         \x20 echo \"calicoctl: $ETCD_KEY_FILE is readable by root only: run sudo calicoctl\" >&2\n\
         \x20 exit 1\n\
         fi\n\
         exec {bin} \"$@\"\n",
        ep = etcd.endpoints.replace(['"', '$', '`', '\\'], ""),
        ca = etcd
            .ca_file
            .display()
            .to_string()
            .replace(['"', '$', '`', '\\'], ""),
        cert = etcd
            .cert_file
            .display()
            .to_string()
            .replace(['"', '$', '`', '\\'], ""),
        key = etcd
            .key_file
            .display()
            .to_string()
            .replace(['"', '$', '`', '\\'], ""),
        bin = q(binary),
    )
}

/// Why an attached file is not installed: it is not a program (ELF or `#!` script).
pub(crate) fn check_program(head: &[u8]) -> Result<(), String> {
    if head.starts_with(b"\x7fELF") || head.starts_with(b"#!") {
        Ok(())
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Err("is a gzip archive, not the calicoctl binary: attach the binary itself".into())
    } else {
        Err("is not a program (no ELF or #! header): attach the calicoctl binary".into())
    }
}

impl Install {
    /// From [`WRAPPER_ENV`] and [`DIR_ENV`] (else the defaults); the kubeconfig the charm
    /// itself uses.
    pub fn from_env() -> Install {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Install {
            wrapper: var(WRAPPER_ENV, DEFAULT_WRAPPER),
            dir: var(DIR_ENV, DEFAULT_DIR),
            kubeconfig: crate::apply::kubeconfig_path(),
            etcd: None,
        }
    }

    pub fn binary(&self) -> PathBuf {
        self.dir.join("calicoctl")
    }

    fn stamp_path(&self) -> PathBuf {
        self.dir.join("calicoctl.resource")
    }

    /// Whether both the binary and the wrapper are in place.
    pub fn installed(&self) -> bool {
        self.binary().is_file() && self.wrapper.is_file()
    }

    /// Install or replace calicoctl from the resource file at `resource` (`None`: nothing is
    /// attached). An empty file counts as nothing attached (what a charm store's
    /// placeholder revision is). Without a resource an installed calicoctl is kept.
    pub fn reconcile(&self, resource: Option<&Path>) -> Outcome {
        match self.try_reconcile(resource) {
            Ok(outcome) => outcome,
            Err(err) => Outcome::of(Cause::CalicoctlInstall(err)),
        }
    }

    fn try_reconcile(&self, resource: Option<&Path>) -> Result<Outcome, String> {
        let mut out = Outcome::default();
        let resource = match resource {
            Some(path) => {
                let meta =
                    fs::metadata(path).map_err(|e| format!("resource {}: {e}", path.display()))?;
                (meta.len() > 0).then_some((path, meta))
            }
            None => None,
        };
        let Some((path, meta)) = resource else {
            // Keep what an earlier hook installed; the wrapper still follows the kubeconfig.
            if self.binary().is_file() {
                self.write_wrapper(&mut out)?;
            }
            return Ok(out);
        };
        let old = fs::read_to_string(self.stamp_path())
            .ok()
            .and_then(|t| Stamp::parse(&t));
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        // The same file as last time (size and mtime) with the binary in place: no need to
        // read it again.
        let stamp = match old.as_ref() {
            Some(s)
                if s.size == meta.len() && s.mtime_ns == mtime_ns && self.binary().is_file() =>
            {
                s.clone()
            }
            _ => {
                let (sha256, head) =
                    fingerprint(path).map_err(|e| format!("resource {}: {e}", path.display()))?;
                check_program(&head).map_err(|why| format!("the calicoctl resource {why}"))?;
                Stamp {
                    sha256,
                    size: meta.len(),
                    mtime_ns,
                }
            }
        };
        let same_content = old.as_ref().is_some_and(|s| s.sha256 == stamp.sha256);
        if !same_content || !self.binary().is_file() {
            fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
            let tmp = self.dir.join(".calicoctl.new");
            fs::copy(path, &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
            fs::rename(&tmp, self.binary())
                .map_err(|e| format!("{}: {e}", self.binary().display()))?;
            out.changed.push(format!(
                "file {} (calicoctl resource sha256 {})",
                self.binary().display(),
                &stamp.sha256[..12]
            ));
        }
        if old.as_ref() != Some(&stamp) {
            write_atomically(&self.stamp_path(), stamp.text().as_bytes(), 0o644)?;
        }
        self.write_wrapper(&mut out)?;
        Ok(out)
    }

    fn write_wrapper(&self, out: &mut Outcome) -> Result<(), String> {
        let text = wrapper_for(&self.binary(), &self.kubeconfig, self.etcd.as_ref());
        let current = fs::read_to_string(&self.wrapper).ok();
        let mode_ok = fs::metadata(&self.wrapper)
            .map(|m| m.permissions().mode() & 0o777 == 0o755)
            .unwrap_or(false);
        if current.as_deref() != Some(text.as_str()) || !mode_ok {
            if let Some(parent) = self.wrapper.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            write_atomically(&self.wrapper, text.as_bytes(), 0o755)?;
            out.changed.push(format!("file {}", self.wrapper.display()));
        }
        Ok(())
    }
}

/// SHA-256 of a file (hex) and its first bytes.
fn fingerprint(path: &Path) -> io::Result<(String, Vec<u8>)> {
    let mut file = fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 4 {
            head.extend_from_slice(&buf[..n.min(4 - head.len())]);
        }
        ctx.update(&buf[..n]);
    }
    let hex = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, head))
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let shown = |e: io::Error| format!("{}: {e}", path.display());
    fs::write(&tmp, bytes).map_err(shown)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(shown)?;
    fs::rename(&tmp, path).map_err(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_reject_garbage() {
        let s = Stamp {
            sha256: "a".repeat(64),
            size: 7,
            mtime_ns: -3,
        };
        assert_eq!(Stamp::parse(&s.text()), Some(s));
        assert_eq!(Stamp::parse("abc 1 2"), None);
        assert_eq!(Stamp::parse(""), None);
    }

    #[test]
    fn programs_are_elf_or_scripts() {
        assert!(check_program(b"\x7fELF\x02").is_ok());
        assert!(check_program(b"#!/bin/sh").is_ok());
        assert!(
            check_program(&[0x1f, 0x8b, 8, 0])
                .unwrap_err()
                .contains("gzip")
        );
        assert!(check_program(b"PK\x03\x04").is_err());
    }

    #[test]
    fn the_wrapper_quotes_paths_and_lets_the_caller_s_settings_win() {
        let w = wrapper(
            Path::new("/opt/it's/calicoctl"),
            Path::new("/root/.kube/config"),
        );
        assert!(w.starts_with("#!/bin/sh\n"), "{w}");
        assert!(w.contains("exec '/opt/it'\\''s/calicoctl' \"$@\"\n"), "{w}");
        assert!(
            w.contains("if [ -r '/root/.kube/config' ]; then KUBECONFIG='/root/.kube/config'"),
            "{w}"
        );
        assert!(
            w.contains("export DATASTORE_TYPE=\"${DATASTORE_TYPE:-kubernetes}\""),
            "{w}"
        );
    }

    #[test]
    fn the_etcd_wrapper_names_the_relation_s_endpoints_and_files_never_their_content() {
        let etcd = EtcdAccess {
            endpoints: "https://10.0.0.5:2379,https://10.0.0.6:2379".into(),
            ca_file: PathBuf::from("/etc/calico/etcd/etcd-ca"),
            cert_file: PathBuf::from("/etc/calico/etcd/etcd-cert"),
            key_file: PathBuf::from("/etc/calico/etcd/etcd-key"),
        };
        let w = wrapper_for(
            Path::new("/usr/local/lib/calico-charm/calicoctl"),
            Path::new("/root/.kube/config"),
            Some(&etcd),
        );
        assert!(
            w.contains("export DATASTORE_TYPE=\"${DATASTORE_TYPE:-etcdv3}\""),
            "{w}"
        );
        assert!(
            w.contains("export ETCD_ENDPOINTS=\"${ETCD_ENDPOINTS:-https://10.0.0.5:2379,https://10.0.0.6:2379}\""),
            "{w}"
        );
        assert!(
            w.contains("ETCD_KEY_FILE:-/etc/calico/etcd/etcd-key}"),
            "{w}"
        );
        assert!(w.contains("run sudo calicoctl"), "{w}");
        assert!(!w.contains("KUBECONFIG"), "{w}");
    }
}
