//! One holistic reconcile per hook. (Owned by the Juju-runtime work.)

use std::process::ExitCode;

/// Entry point of `calico-charm dispatch`.
pub fn dispatch_main() -> anyhow::Result<ExitCode> {
    anyhow::bail!("dispatch: not yet implemented")
}
