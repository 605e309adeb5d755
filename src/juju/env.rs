//! The hook environment Juju gives the charm process, and the event it names.

use std::collections::BTreeMap;
use std::fmt;

/// What Juju asked the charm to handle, parsed from `JUJU_DISPATCH_PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Install,
    Start,
    ConfigChanged,
    UpgradeCharm,
    UpdateStatus,
    LeaderElected,
    LeaderSettingsChanged,
    Stop,
    Remove,
    /// `<endpoint>-relation-<kind>`, e.g. `cni-relation-changed`.
    Relation {
        endpoint: String,
        kind: RelationKind,
    },
    /// `actions/<name>`.
    Action(String),
    /// Any other hook (`pre-series-upgrade`, `secret-changed`, ...): logged and ignored.
    Other(String),
}

/// The kind of a relation hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelationKind {
    Created,
    Joined,
    Changed,
    Departed,
    Broken,
}

impl RelationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationKind::Created => "created",
            RelationKind::Joined => "joined",
            RelationKind::Changed => "changed",
            RelationKind::Departed => "departed",
            RelationKind::Broken => "broken",
        }
    }

    fn parse(kind: &str) -> Option<RelationKind> {
        Some(match kind {
            "created" => RelationKind::Created,
            "joined" => RelationKind::Joined,
            "changed" => RelationKind::Changed,
            "departed" => RelationKind::Departed,
            "broken" => RelationKind::Broken,
            _ => return None,
        })
    }
}

/// What a dispatch path could not be understood as.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot tell which hook to run from {0:?} (expected hooks/<name> or actions/<name>)")]
pub struct UnknownDispatchPath(pub String);

impl Event {
    /// Parse a hook name such as `config-changed` or `cni-relation-joined`.
    pub(crate) fn from_hook_name(name: &str) -> Event {
        match name {
            "install" => Event::Install,
            "start" => Event::Start,
            "config-changed" => Event::ConfigChanged,
            "upgrade-charm" => Event::UpgradeCharm,
            "update-status" => Event::UpdateStatus,
            "leader-elected" => Event::LeaderElected,
            "leader-settings-changed" => Event::LeaderSettingsChanged,
            "stop" => Event::Stop,
            "remove" => Event::Remove,
            other => match other.rsplit_once("-relation-") {
                Some((endpoint, kind)) if !endpoint.is_empty() => match RelationKind::parse(kind) {
                    Some(kind) => Event::Relation {
                        endpoint: endpoint.to_string(),
                        kind,
                    },
                    None => Event::Other(other.to_string()),
                },
                _ => Event::Other(other.to_string()),
            },
        }
    }

    /// Parse `JUJU_DISPATCH_PATH` (`hooks/<name>`, `actions/<name>`), or the path the charm was
    /// invoked as (`/var/lib/juju/agents/unit-calico-0/charm/hooks/install`, `install`): the last
    /// two components decide.
    pub(crate) fn from_dispatch_path(path: &str) -> Result<Event, UnknownDispatchPath> {
        let mut parts = path.trim_end_matches('/').rsplit('/');
        let name = parts.next().unwrap_or_default();
        let location = parts.next();
        if name.is_empty() || name == "." || name == ".." {
            return Err(UnknownDispatchPath(path.to_string()));
        }
        match location {
            Some("actions") => Ok(Event::Action(name.to_string())),
            // A hook copy invoked directly, or a bare hook name (argv[0] of a hook symlink).
            Some("hooks") | None => Ok(Event::from_hook_name(name)),
            // An unknown directory: the charm was invoked as something like `.../dispatch`,
            // which names no event.
            Some(_) if name == "dispatch" || name == "calico-charm" => {
                Err(UnknownDispatchPath(path.to_string()))
            }
            Some(_) => Ok(Event::from_hook_name(name)),
        }
    }

    /// The name Juju uses for this event (`cni-relation-changed`, `install`, the action name).
    pub fn name(&self) -> String {
        match self {
            Event::Install => "install".into(),
            Event::Start => "start".into(),
            Event::ConfigChanged => "config-changed".into(),
            Event::UpgradeCharm => "upgrade-charm".into(),
            Event::UpdateStatus => "update-status".into(),
            Event::LeaderElected => "leader-elected".into(),
            Event::LeaderSettingsChanged => "leader-settings-changed".into(),
            Event::Stop => "stop".into(),
            Event::Remove => "remove".into(),
            Event::Relation { endpoint, kind } => format!("{endpoint}-relation-{}", kind.as_str()),
            Event::Action(name) | Event::Other(name) => name.clone(),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Action(name) => write!(f, "action {name}"),
            other => write!(f, "{} hook", other.name()),
        }
    }
}

/// The environment of one hook or action, as the unit agent sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookEnv {
    /// `JUJU_UNIT_NAME`, e.g. `calico/0`.
    pub unit_name: Option<String>,
    /// `JUJU_DISPATCH_PATH`, e.g. `hooks/config-changed`.
    pub dispatch_path: Option<String>,
    /// `JUJU_HOOK_NAME` (empty for actions).
    pub hook_name: Option<String>,
    /// `JUJU_CHARM_DIR` (or `CHARM_DIR`).
    pub charm_dir: Option<String>,
    /// `JUJU_RELATION`, e.g. `cni`.
    pub relation: Option<String>,
    /// `JUJU_RELATION_ID`, e.g. `cni:12`.
    pub relation_id: Option<String>,
    /// `JUJU_REMOTE_UNIT` (empty in -created and -broken hooks).
    pub remote_unit: Option<String>,
    /// `JUJU_REMOTE_APP`.
    pub remote_app: Option<String>,
    /// `JUJU_ACTION_NAME`.
    pub action_name: Option<String>,
    /// `JUJU_PRINCIPAL_UNIT`, e.g. `kubernetes-worker/0`.
    pub principal_unit: Option<String>,
    /// `JUJU_MACHINE_ID`.
    pub machine_id: Option<String>,
    /// `JUJU_VERSION`.
    pub juju_version: Option<String>,
    /// `NODENAME`: the Kubernetes node name, Calico's own convention.
    pub node_name: Option<String>,
}

impl HookEnv {
    /// Read the process environment. Empty values count as unset.
    pub(crate) fn from_process() -> HookEnv {
        HookEnv::from_lookup(|key| std::env::var(key).ok())
    }

    /// Read from a map (tests, or an environment captured elsewhere).
    pub fn from_map(vars: &BTreeMap<String, String>) -> HookEnv {
        HookEnv::from_lookup(|key| vars.get(key).cloned())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> HookEnv {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        HookEnv {
            unit_name: get("JUJU_UNIT_NAME"),
            dispatch_path: get("JUJU_DISPATCH_PATH"),
            hook_name: get("JUJU_HOOK_NAME"),
            charm_dir: get("JUJU_CHARM_DIR").or_else(|| get("CHARM_DIR")),
            relation: get("JUJU_RELATION"),
            relation_id: get("JUJU_RELATION_ID"),
            remote_unit: get("JUJU_REMOTE_UNIT"),
            remote_app: get("JUJU_REMOTE_APP"),
            action_name: get("JUJU_ACTION_NAME"),
            principal_unit: get("JUJU_PRINCIPAL_UNIT"),
            machine_id: get("JUJU_MACHINE_ID"),
            juju_version: get("JUJU_VERSION"),
            node_name: get("NODENAME").map(|n| n.trim().to_string()),
        }
    }

    /// Whether the process runs under a Juju unit agent.
    pub(crate) fn in_juju(&self) -> bool {
        self.unit_name.is_some()
    }

    /// The event to handle: from `JUJU_DISPATCH_PATH`, else from `argv0` (the name the binary or
    /// hook script was invoked as).
    pub fn event(&self, argv0: Option<&str>) -> Result<Event, UnknownDispatchPath> {
        match (&self.dispatch_path, argv0) {
            (Some(path), _) => Event::from_dispatch_path(path),
            (None, Some(argv0)) => Event::from_dispatch_path(argv0),
            (None, None) => Err(UnknownDispatchPath(String::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_paths() {
        assert_eq!(
            Event::from_dispatch_path("hooks/install"),
            Ok(Event::Install)
        );
        assert_eq!(
            Event::from_dispatch_path("hooks/cni-relation-changed"),
            Ok(Event::Relation {
                endpoint: "cni".into(),
                kind: RelationKind::Changed
            })
        );
        assert_eq!(
            Event::from_dispatch_path("hooks/my-db-relation-broken"),
            Ok(Event::Relation {
                endpoint: "my-db".into(),
                kind: RelationKind::Broken
            })
        );
        assert_eq!(
            Event::from_dispatch_path("actions/list-versions"),
            Ok(Event::Action("list-versions".into()))
        );
        assert_eq!(
            Event::from_dispatch_path(
                "/var/lib/juju/agents/unit-calico-0/charm/hooks/leader-elected"
            ),
            Ok(Event::LeaderElected)
        );
        assert_eq!(
            Event::from_dispatch_path("config-changed"),
            Ok(Event::ConfigChanged)
        );
        assert_eq!(
            Event::from_dispatch_path("hooks/pre-series-upgrade"),
            Ok(Event::Other("pre-series-upgrade".into()))
        );
        assert_eq!(
            Event::from_dispatch_path("hooks/cni-relation-exploded"),
            Ok(Event::Other("cni-relation-exploded".into()))
        );
        assert!(Event::from_dispatch_path("").is_err());
        assert!(Event::from_dispatch_path("/charm/bin/calico-charm").is_err());
        assert!(Event::from_dispatch_path("/var/lib/juju/charm/dispatch").is_err());
    }

    #[test]
    fn names_round_trip() {
        for name in [
            "install",
            "start",
            "config-changed",
            "upgrade-charm",
            "update-status",
            "leader-elected",
            "leader-settings-changed",
            "stop",
            "remove",
            "cni-relation-created",
            "cni-relation-departed",
            "secret-changed",
        ] {
            assert_eq!(Event::from_hook_name(name).name(), name);
        }
    }

    #[test]
    fn environment() {
        let vars: BTreeMap<String, String> = [
            ("JUJU_UNIT_NAME", "calico/7"),
            ("JUJU_DISPATCH_PATH", "hooks/start"),
            ("JUJU_REMOTE_UNIT", ""),
            ("CHARM_DIR", "/charm"),
            ("NODENAME", " node-1 \n"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let env = HookEnv::from_map(&vars);
        assert!(env.in_juju());
        assert_eq!(env.remote_unit, None);
        assert_eq!(env.charm_dir.as_deref(), Some("/charm"));
        assert_eq!(env.node_name.as_deref(), Some("node-1"));
        assert_eq!(env.event(Some("ignored")), Ok(Event::Start));
        let bare = HookEnv::default();
        assert_eq!(bare.event(Some("/c/hooks/stop")), Ok(Event::Stop));
        assert!(bare.event(None).is_err());
    }
}
