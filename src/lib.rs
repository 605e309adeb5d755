//! calico-charm: the Calico subordinate charm for Juju.
//!
//! Data flows one way on every hook:
//!
//! ```text
//! juju (env + hook tools) -> config (parse, validate) -> render (pure)
//!   -> apply (observe, plan (pure), execute) -> status (pure)
//! ```
//!
//! Pure modules (`unit`, `config`, `asn`, `render`, `calico`, `problems`, `status`, `text`,
//! `topology`, `nodestatus`) take and return values; `problems::Cause` is everything an
//! operator can be told. Only `juju` (hook tools as subprocesses), `apply` (the Kubernetes
//! API), `etcd` (the etcd datastore), `host` (this machine: sysctls, interfaces, the CNI
//! config file), `calicoctl` (its install), `agent` (the process between hooks) and `mode`
//! and `peers` (through the hook tools) do I/O, each behind a small seam that tests can swap.

#![forbid(unsafe_code)]

pub mod agent;
pub mod apply;
pub mod asn;
pub mod calico;
pub mod calicoctl;
pub mod cli;
pub mod config;
pub mod datastore;
pub(crate) mod deadline;
pub mod etcd;
pub mod host;
pub mod juju;
pub(crate) mod mode;
pub(crate) mod nodestatus;
pub(crate) mod peers;
pub mod problems;
pub mod reconcile;
pub mod redact;
pub mod render;
pub mod status;
pub(crate) mod text;
pub mod topology;
pub mod unit;

/// The `User-Agent` of the charm's clients (Kubernetes and etcd), so that audit logs name it.
pub(crate) const USER_AGENT: &str = concat!("calico-charm/", env!("CARGO_PKG_VERSION"));
