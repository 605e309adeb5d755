//! The offline `render` and `validate` commands. (Owned by the charm-core work.)

use std::process::ExitCode;

/// Arguments of `calico-charm render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {}

/// Arguments of `calico-charm validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {}

pub fn render(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("render: not yet implemented")
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("validate: not yet implemented")
}
