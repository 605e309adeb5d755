//! The charm's options as declared in the embedded `config.yaml`: names, types, defaults.
//! (Owned by the charm-core work: parsing config.yaml, merging a user's file over defaults.)

use std::collections::BTreeMap;

/// The embedded config.yaml, the one source of option defaults.
pub const CONFIG_YAML: &str = include_str!("../config.yaml");

/// Raw option values as `config-get --format=json` returns them (option name -> JSON value).
pub type RawConfig = BTreeMap<String, serde_json::Value>;
