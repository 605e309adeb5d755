//! Juju's side: the hook environment, hook tools as subprocesses, juju-log.

pub mod env;
pub mod log;
pub mod network;
pub mod tools;

pub use env::{Event, HookEnv, RelationKind};
pub(crate) use network::bind_address_with_prefix;
pub use network::{NetworkInfo, bind_address, node_name};
pub use tools::{HookTools, LogLevel, Subprocess, ToolError};
