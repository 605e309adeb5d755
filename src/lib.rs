//! calico-charm: the Calico subordinate charm for Juju.
//!
//! Data flows one way on every hook:
//!
//! ```text
//! juju (env + hook tools) -> config (parse, validate) -> render (pure) -> apply (kube) -> status
//! ```
//!
//! Pure modules (`options`, `asn`, `config`, `render`, `calico`, `workloads`, `status`) take
//! and return values. Only `juju` (hook tools as subprocesses), `apply` (the Kubernetes API),
//! `cni` (the CNI config file) and `host` (this machine's sysctls and interfaces) do I/O,
//! each behind a small seam that tests can swap.

pub mod apply;
pub mod asn;
pub mod calico;
pub mod calicoctl;
pub mod cli;
pub mod cni;
pub mod config;
pub mod deadline;
pub mod host;
pub mod juju;
pub mod nodestatus;
pub mod options;
pub mod peers;
pub mod reconcile;
pub mod redact;
pub mod render;
pub mod status;
pub mod topology;
pub mod workloads;
