//! The offline `render` and `validate` commands: what the charm would do with a
//! configuration, without a cluster.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::options;
use crate::config::{self, ConfigError, Validated, Warning};
use crate::render;
use crate::unit::UnitFacts;

/// Output format of `render`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A multi-document YAML stream, one object per document.
    #[default]
    Yaml,
    /// One `{"apiVersion": "v1", "kind": "List", "items": [...]}` object.
    Json,
}

fn unit_name(s: &str) -> Result<String, String> {
    crate::unit::parse_unit_name(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// A Kubernetes node name: a lowercase RFC 1123 subdomain of at most 253 characters.
fn node_name(s: &str) -> Result<String, String> {
    crate::juju::network::check_node_name(s).map(|()| s.to_string())
}

/// The unit's cni-binding address: `10.0.0.2` or, with the binding subnet's prefix length,
/// `10.0.0.2/24` (what `network-get cni` gives; the Node's BGP address carries it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindAddress {
    pub address: IpAddr,
    pub prefix: Option<u8>,
}

fn bind_address(s: &str) -> Result<BindAddress, String> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let address: IpAddr = ip.parse().map_err(|_| {
        format!("{s:?}: expected an IP address, optionally with /PREFIX (10.0.0.2/24)")
    })?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max && !p.starts_with('+') => Some(n),
            _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
        },
    };
    Ok(BindAddress { address, prefix })
}

/// Arguments of `calico-charm render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Option file as `juju config calico --file` takes it ({option: value} or
    /// {calico: {option: value}}); `-` reads stdin. Options not given take their defaults.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The unit to render for, e.g. calico/0.
    #[arg(long, value_name = "calico/N", value_parser = unit_name)]
    pub unit: String,
    /// The unit's address on the cni binding, with the binding subnet's prefix when known
    /// (`10.0.0.2/24`; without one the Node's BGP address is a /32).
    #[arg(long, value_name = "IP[/PREFIX]", value_parser = bind_address)]
    pub address: BindAddress,
    /// Kubernetes node name of the unit's machine [default: this host's name].
    #[arg(long, value_name = "NAME", value_parser = node_name)]
    pub node_name: Option<String>,
    /// Render as the leader (pools, BGPConfiguration, workloads).
    #[arg(long)]
    pub leader: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// The datastore: `kubernetes` prints the Kubernetes objects; `etcd` prints the etcd keys
    /// and values the unit writes (then, for the leader, the Kubernetes workloads), the
    /// Secret's data left out.
    #[arg(long, value_enum, default_value_t = DatastoreArg::Kubernetes)]
    pub datastore: DatastoreArg,
    /// etcd mode: the etcd relation's connection string, for the workloads' settings.
    #[arg(long, value_name = "URLS", default_value = "https://ETCD-ADDRESS:2379")]
    pub etcd_endpoints: String,
}

/// `--datastore` of `calico-charm render`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatastoreArg {
    Kubernetes,
    Etcd,
}

/// Arguments of `calico-charm validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Option file as `juju config calico --file` takes it; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Also check the warnings that depend on this unit, e.g. calico/0 (needs --address).
    #[arg(long, value_name = "calico/N", value_parser = unit_name, requires = "address")]
    pub unit: Option<String>,
    /// The unit's address on the cni binding (needs --unit).
    #[arg(long, value_name = "IP[/PREFIX]", requires = "unit", value_parser = bind_address)]
    pub address: Option<BindAddress>,
}

/// The largest option file `render` and `validate` read: every option at its cap
/// ([`config::MAX_OPTION_BYTES`]) fits.
pub(crate) const MAX_CONFIG_FILE: u64 = 16 * 1024 * 1024;

pub(crate) fn read_config(path: &std::path::Path) -> anyhow::Result<String> {
    let (reader, what): (Box<dyn Read>, String) = if path.as_os_str() == "-" {
        (
            Box::new(std::io::stdin()),
            "the configuration from stdin".to_string(),
        )
    } else {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        (
            Box::new(file),
            format!("configuration file {}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    reader
        .take(MAX_CONFIG_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        anyhow::bail!("{what} is larger than {MAX_CONFIG_FILE} bytes: not an option file");
    }
    String::from_utf8(bytes).with_context(|| format!("{what} is not UTF-8 text"))
}

/// Read, merge and validate a config file. `Ok(Err(errors))` is an invalid configuration.
pub(crate) fn load(path: &std::path::Path) -> anyhow::Result<Result<Validated, Vec<ConfigError>>> {
    let text = read_config(path)?;
    let merged = options::merge_user_file(&text)
        .with_context(|| format!("configuration file {}", path.display()))?;
    let mut errors = match (config::validate(&merged.raw), merged.errors) {
        (Ok(v), e) if e.is_empty() => return Ok(Ok(v)),
        (Ok(_), e) => e,
        (Err(mut e), mut first) => {
            first.append(&mut e);
            first
        }
    };
    // Unknown options first, then in config.yaml's order (stable: each option's own
    // problems keep their order).
    let position = |name: &str| {
        options::specs()
            .ok()
            .and_then(|s| s.iter().position(|o| o.name == name))
    };
    errors.sort_by_key(|e| position(&e.option).map_or(0, |p| p + 1));
    Ok(Err(errors))
}

pub(crate) fn report(errors: &[ConfigError], warnings: &[Warning]) {
    let mut err = std::io::stderr().lock();
    for e in errors {
        let _ = writeln!(err, "{e}");
    }
    for w in warnings {
        let _ = writeln!(err, "warning: {w}");
    }
}

/// This machine's host name ([`crate::juju::network::host_name`]).
fn host_name() -> anyhow::Result<String> {
    crate::juju::network::host_name()
        .ok_or_else(|| anyhow::anyhow!("cannot determine this host's name: pass --node-name"))
}

/// Serialize objects in the chosen format.
pub fn format_objects(objects: &[serde_json::Value], format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json => {
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
            let mut s = serde_json::to_string_pretty(&list)?;
            s.push('\n');
            Ok(s)
        }
        Format::Yaml => {
            let mut s = String::new();
            for o in objects {
                s.push_str("---\n");
                s.push_str(&serde_yaml::to_string(o)?);
            }
            Ok(s)
        }
    }
}

pub fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let validated = match load(&args.config)? {
        Ok(v) => v,
        Err(errors) => {
            report(&errors, &[]);
            return Ok(ExitCode::FAILURE);
        }
    };
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => node_name(&host_name()?)
            .map_err(|e| anyhow::anyhow!("host name {e}: pass --node-name"))?,
    };
    let facts = UnitFacts::new(&args.unit, node_name, args.address.address, args.leader)?
        .with_prefix(args.address.prefix);
    let mut warnings = validated.warnings;
    warnings.extend(config::unit_warnings(&validated.config, &facts));
    let desired = render::desired(&validated.config, &facts);
    let objects = match args.datastore {
        DatastoreArg::Kubernetes => desired.objects(),
        DatastoreArg::Etcd => {
            let etcd = crate::etcd::EtcdConfig {
                endpoints: Vec::new(),
                connection_string: args.etcd_endpoints.clone(),
                ca_pem: String::new(),
                cert_pem: String::new(),
                key_pem: secrecy::SecretString::from(String::new()),
                version: String::new(),
            };
            let mut out = render::etcd::entries(&desired);
            out.extend(render::etcd::workload_objects(
                &desired,
                &validated.config,
                &etcd,
            ));
            out
        }
    };
    let text = format_objects(&objects, args.format)?;
    report(&[], &warnings);
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let validated = match load(&args.config)? {
        Ok(v) => v,
        Err(errors) => {
            report(&errors, &[]);
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut warnings = validated.warnings;
    if let (Some(unit), Some(address)) = (&args.unit, args.address) {
        let facts = UnitFacts::new(unit, String::new(), address.address, false)?
            .with_prefix(address.prefix);
        warnings.extend(config::unit_warnings(&validated.config, &facts));
    }
    report(&[], &warnings);
    let mut out = std::io::stdout().lock();
    match warnings.len() {
        0 => writeln!(out, "valid")?,
        n => writeln!(out, "valid, {n} warning{}", if n == 1 { "" } else { "s" })?,
    }
    Ok(ExitCode::SUCCESS)
}
