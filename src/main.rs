//! The `calico-charm` binary: `dispatch` (run by Juju on every hook), and the offline
//! `render` and `validate` commands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "calico-charm",
    version,
    about = "The Calico subordinate charm for Juju"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hook or action Juju asked for (JUJU_DISPATCH_PATH).
    Dispatch,
    /// The long-running agent between hooks (run by systemd, installed by the charm).
    Agent(calico_charm::agent::run::AgentArgs),
    /// Print the objects the charm would apply for a configuration, without a cluster.
    Render(calico_charm::cli::RenderArgs),
    /// Check a configuration and print its errors and warnings.
    Validate(calico_charm::cli::ValidateArgs),
    /// The cluster's BGP seen whole: every node's sessions, route reach, problems.
    Topology(calico_charm::topology::command::TopologyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dispatch => calico_charm::reconcile::dispatch_main(),
        Command::Agent(args) => {
            calico_charm::juju::log::init(false);
            calico_charm::agent::run::main(&args)
        }
        Command::Render(args) => calico_charm::cli::render(&args),
        Command::Validate(args) => calico_charm::cli::validate(&args),
        Command::Topology(args) => calico_charm::topology::command::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // stderr reaches Juju's log too: the same redaction as every other edge.
            eprintln!(
                "error: {}",
                calico_charm::redact::log_line(&format!("{err:#}"))
            );
            ExitCode::FAILURE
        }
    }
}
