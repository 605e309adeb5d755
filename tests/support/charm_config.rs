//! Charm configurations shared by the tests that render from one.
//!
//! Included with `#[path = "support/charm_config.rs"] mod charm_config;` by the test files
//! that use it, so the other users of `tests/support/mod.rs` do not compile it.

use calico_charm::config::CharmConfig;

/// The defaults of config.yaml (its one source), as a validated configuration.
pub fn defaults() -> CharmConfig {
    calico_charm::config::validate(&Default::default())
        .expect("config.yaml's defaults are valid")
        .config
}

/// The defaults with Calico v3.32.1 images (the newest release the objects were checked
/// against).
pub fn current() -> CharmConfig {
    let mut c = defaults();
    c.calico_node_image.reference = "docker.io/calico/node:v3.32.1".into();
    c.calico_policy_image.reference = "docker.io/calico/kube-controllers:v3.32.1".into();
    c
}
