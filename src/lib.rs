//! calico-charm: the Calico subordinate charm for Juju.
//!
//! Data flows one way on every hook:
//!
//! ```text
//! juju (env + hook tools) -> config (parse, validate) -> render (pure)
//!   -> apply (observe, plan (pure), execute) -> status (pure)
//! ```
//!
//! Pure modules (`unit`, `config`, `asn`, `render`, `calico`, `problems`, `status`,
//! `topology`) take and return values. Only `juju` (hook tools as subprocesses), `apply` (the
//! Kubernetes API), `host` (this machine: sysctls, interfaces, the CNI config file) and
//! `calicoctl` (its install) do I/O, each behind a small seam that tests can swap.

#![forbid(unsafe_code)]

pub mod agent;
pub mod apply;
pub mod asn;
pub mod calico;
pub mod calicoctl;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod etcd;
pub mod host;
pub mod juju;
pub mod mode;
pub mod nodestatus;
pub mod peers;
pub mod problems;
pub mod reconcile;
pub mod redact;
pub mod render;
pub mod status;
pub mod text;
pub mod topology;
pub mod unit;
