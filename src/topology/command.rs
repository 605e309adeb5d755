//! `calico-charm topology --config FILE --units UNITS.yaml [--format text|json]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli;

/// Output format of `topology`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TopologyFormat {
    /// For a person: one block per node (AS, role, sessions), then problems.
    #[default]
    Text,
    /// One JSON object: nodes, reach, external, problems.
    Json,
}

/// Arguments of `calico-charm topology`.
#[derive(clap::Args, Debug)]
pub struct TopologyArgs {
    /// Option file as `juju config calico --file` takes it; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// YAML list of {unit: calico/N, address: IP/PREFIX, node-name: NAME}.
    #[arg(long, value_name = "UNITS.yaml")]
    pub units: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TopologyFormat::Text)]
    pub format: TopologyFormat,
}

/// The units file, at most [`cli::MAX_CONFIG_FILE`] bytes (`/dev/zero` is not a units file).
fn read_units(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read units file {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(cli::MAX_CONFIG_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read units file {}", path.display()))?;
    if bytes.len() as u64 > cli::MAX_CONFIG_FILE {
        anyhow::bail!(
            "units file {} is larger than {} bytes",
            path.display(),
            cli::MAX_CONFIG_FILE
        );
    }
    String::from_utf8(bytes).with_context(|| format!("units file {} is not UTF-8", path.display()))
}

/// Exit 0 without errors (warnings allowed), 1 with a problem of severity error, 2 when the
/// inputs cannot be read (as for usage errors).
pub fn run(args: &TopologyArgs) -> anyhow::Result<ExitCode> {
    let usage = ExitCode::from(2);
    let mut err = std::io::stderr().lock();
    let validated = match cli::load(&args.config) {
        Ok(Ok(v)) => v,
        Ok(Err(errors)) => {
            cli::report(&errors, &[]);
            return Ok(usage);
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            return Ok(usage);
        }
    };
    let units = match read_units(&args.units).and_then(|t| {
        super::parse_units(&t).with_context(|| format!("units file {}", args.units.display()))
    }) {
        Ok(u) => u,
        Err(e) => {
            let _ = writeln!(err, "error: {e:#}");
            return Ok(usage);
        }
    };
    let topology = match super::topology(&validated.config, &units) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: units file {}: {e}", args.units.display());
            return Ok(usage);
        }
    };
    cli::report(&[], &validated.warnings);
    let text = match args.format {
        TopologyFormat::Text => super::render_text(&topology),
        TopologyFormat::Json => {
            let mut s = serde_json::to_string_pretty(&topology)?;
            s.push('\n');
            s
        }
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    Ok(if topology.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
