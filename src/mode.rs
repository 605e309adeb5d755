//! Which datastore Calico uses, chosen once and never switched implicitly.
//!
//! - The leader chooses on the first hook that gets as far as setting Calico up (valid config,
//!   the principal's kubeconfig published): `etcd` when the `etcd` relation exists then, the
//!   Kubernetes datastore otherwise. It remembers the choice (`state-set datastore=...`) and
//!   publishes it in the peer relation's application data (`datastore`), where the other units
//!   read it and remember it too.
//! - A remembered choice is kept whatever happens to the relation afterwards: the data would
//!   be split across two stores. An `etcd` relation added to a Kubernetes-datastore deployment
//!   is ignored with a warning; an etcd deployment that loses the relation is blocked.
//! - A non-leader that has no choice of its own yet follows the leader's published one; before
//!   the leader has published, it uses what the leader would choose (etcd if related) without
//!   remembering it, so it converges to the leader's choice on a later hook.

use crate::juju::{HookTools, ToolError};
use crate::problems::Cause;

/// `state-get`/`state-set` key, and the peer application-data key.
pub(crate) const STATE_KEY: &str = "datastore";

/// Calico's datastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DatastoreType {
    /// Calico's Kubernetes datastore (KDD): Calico's data in CRDs of the cluster.
    Kubernetes,
    /// Calico's etcdv3 datastore, reached over the `etcd` relation.
    Etcd,
}

impl DatastoreType {
    /// The remembered value (`kubernetes`, `etcd`).
    pub fn as_str(self) -> &'static str {
        match self {
            DatastoreType::Kubernetes => "kubernetes",
            DatastoreType::Etcd => "etcd",
        }
    }

    pub fn parse(text: &str) -> Option<DatastoreType> {
        match text.trim() {
            "kubernetes" => Some(DatastoreType::Kubernetes),
            "etcd" => Some(DatastoreType::Etcd),
            _ => None,
        }
    }
}

/// What [`decide`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ModeFacts {
    /// This unit's remembered choice (`state-get datastore`), as stored.
    pub remembered: Option<String>,
    /// The leader's published choice (peer application data), as stored.
    pub published: Option<String>,
    pub leader: bool,
    /// The `etcd` relation exists.
    pub etcd_related: bool,
}

/// The datastore to use this hook, and what to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub datastore: DatastoreType,
    /// `state-set` it (a choice made or learnt this hook).
    pub remember: bool,
    /// The leader publishes it in the peer application data (absent or different there).
    pub publish: bool,
    /// A note for the status ([`Cause::EtcdIgnored`]: an etcd relation the datastore ignores).
    pub warning: Option<Cause>,
}

/// Choose (pure). A remembered value the charm does not know (written by hand?) is
/// [`Cause::UnknownDatastore`]: the charm will not guess.
pub(crate) fn decide(facts: &ModeFacts) -> Result<Decision, Cause> {
    let parse = |v: &Option<String>| -> Result<Option<DatastoreType>, Cause> {
        match v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => DatastoreType::parse(v)
                .map(Some)
                .ok_or_else(|| Cause::UnknownDatastore(v.chars().take(40).collect())),
        }
    };
    let remembered = parse(&facts.remembered)?;
    // A published value nobody can read is treated as not published (the leader rewrites it).
    let published = parse(&facts.published).ok().flatten();
    let (datastore, remember) = match (remembered, published) {
        (Some(d), _) => (d, false),
        (None, Some(p)) => (p, true),
        (None, None) => {
            let d = if facts.etcd_related {
                DatastoreType::Etcd
            } else {
                DatastoreType::Kubernetes
            };
            (d, facts.leader)
        }
    };
    let warning = (datastore == DatastoreType::Kubernetes && facts.etcd_related)
        .then_some(Cause::EtcdIgnored);
    Ok(Decision {
        datastore,
        remember,
        publish: facts.leader && published != Some(datastore),
        warning,
    })
}

/// Read the facts, decide, and record the decision (`state-set`; the leader's
/// `relation-set --app` on the peer relation `peer_relation`). `application` names this
/// unit's application (for reading the peer application data).
pub(crate) fn resolve(
    tools: &impl HookTools,
    leader: bool,
    application: &str,
    peer_relation: Option<&str>,
    broken: Option<&str>,
) -> Result<Result<Decision, Cause>, ToolError> {
    let remembered = tools.state_get(STATE_KEY)?;
    let etcd_related = tools
        .relation_ids(crate::etcd::ENDPOINT)?
        .iter()
        .any(|r| Some(r.as_str()) != broken);
    // The peer data is read only when this unit has nothing remembered, or leads (to publish).
    let published = match peer_relation {
        Some(rid) if remembered.is_none() || leader => tools
            .relation_get_app(rid, application)?
            .get(STATE_KEY)
            .cloned(),
        _ => None,
    };
    let facts = ModeFacts {
        remembered,
        published,
        leader,
        etcd_related,
    };
    let decision = match decide(&facts) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    if decision.remember {
        tools.state_set(STATE_KEY, decision.datastore.as_str())?;
    }
    if decision.publish
        && let Some(rid) = peer_relation
    {
        tools.relation_set_app(rid, &[(STATE_KEY, decision.datastore.as_str())])?;
    }
    Ok(Ok(decision))
}

/// The datastore this hook uses, ready to converge, or the status that stops the hook.
#[derive(Debug)]
pub enum Selected {
    /// Calico's Kubernetes datastore; `warning` for the status (an ignored etcd relation).
    Kubernetes { warning: Option<Cause> },
    /// Calico's etcd, with what the relation gives.
    Etcd(Box<crate::etcd::EtcdConfig>),
    /// Nothing can be converged: the status says why (`waiting`: etcd has published nothing
    /// yet; `blocked`: the relation is gone or unusable, or the remembered choice unknown).
    Stop(Cause),
}

/// Choose the datastore ([`resolve`]) and, in etcd mode, read the relation. `broken` is the
/// relation broken this hook (`etcd-relation-broken`), which counts as gone.
pub fn select(
    tools: &impl HookTools,
    leader: bool,
    application: &str,
    peer_relation: Option<&str>,
    broken: Option<&str>,
) -> Result<Selected, ToolError> {
    use crate::etcd::relation::EtcdRelation;
    let decision = match resolve(tools, leader, application, peer_relation, broken)? {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("{e}");
            return Ok(Selected::Stop(e));
        }
    };
    if let Some(w) = &decision.warning {
        tracing::warn!("{w}");
    }
    if decision.datastore == DatastoreType::Kubernetes {
        return Ok(Selected::Kubernetes {
            warning: decision.warning,
        });
    }
    Ok(match crate::etcd::relation::read(tools, broken)? {
        EtcdRelation::Absent => {
            tracing::error!(
                "{}: relate calico to etcd again (juju integrate calico:etcd etcd:db); the datastore is never switched implicitly",
                Cause::EtcdRelationRemoved
            );
            Selected::Stop(Cause::EtcdRelationRemoved)
        }
        EtcdRelation::Waiting(cause) => Selected::Stop(cause),
        EtcdRelation::Invalid(cause) => {
            tracing::error!("{cause}");
            Selected::Stop(cause)
        }
        EtcdRelation::Ready(config) => Selected::Etcd(Box::new(config)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(
        remembered: Option<&str>,
        published: Option<&str>,
        leader: bool,
        etcd: bool,
    ) -> ModeFacts {
        ModeFacts {
            remembered: remembered.map(str::to_string),
            published: published.map(str::to_string),
            leader,
            etcd_related: etcd,
        }
    }

    #[test]
    fn the_first_choice_follows_the_relation_and_the_leader_records_it() {
        let d = decide(&facts(None, None, true, true)).unwrap();
        assert_eq!(
            d,
            Decision {
                datastore: DatastoreType::Etcd,
                remember: true,
                publish: true,
                warning: None
            }
        );
        let d = decide(&facts(None, None, true, false)).unwrap();
        assert_eq!(d.datastore, DatastoreType::Kubernetes);
        assert!(d.remember && d.publish);
        // A non-leader does not remember a guess.
        let d = decide(&facts(None, None, false, true)).unwrap();
        assert_eq!(d.datastore, DatastoreType::Etcd);
        assert!(!d.remember && !d.publish);
        // ... but learns the leader's choice.
        let d = decide(&facts(None, Some("kubernetes"), false, true)).unwrap();
        assert_eq!(d.datastore, DatastoreType::Kubernetes);
        assert!(d.remember && !d.publish);
        assert_eq!(d.warning, Some(Cause::EtcdIgnored));
    }

    #[test]
    fn a_remembered_choice_never_switches() {
        for etcd in [false, true] {
            for published in [None, Some("etcd"), Some("kubernetes")] {
                for leader in [false, true] {
                    let d = decide(&facts(Some("kubernetes"), published, leader, etcd)).unwrap();
                    assert_eq!(d.datastore, DatastoreType::Kubernetes);
                    assert!(!d.remember);
                    assert_eq!(d.publish, leader && published != Some("kubernetes"));
                    let d = decide(&facts(Some("etcd"), published, leader, etcd)).unwrap();
                    assert_eq!(d.datastore, DatastoreType::Etcd);
                    assert_eq!(d.warning, None);
                }
            }
        }
        assert_eq!(
            decide(&facts(Some("consul"), None, true, true)),
            Err(Cause::UnknownDatastore("consul".into()))
        );
    }
}
