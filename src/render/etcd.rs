//! What a unit writes in etcd mode (pure): Calico's objects as etcd keys and v3 values, and
//! the etcd-mode workloads, for `calico-charm render --datastore etcd`.
//!
//! Values are shown as the charm creates them, without the identity etcd objects get when
//! first written (`uid`, `creationTimestamp`); the Secret's data is left out.

use serde_json::{Map, Value, json};

use super::{Desired, Pools};
use crate::calico::{AS_NUMBER_ANNOTATION, IPV4_ADDRESS_ANNOTATION, RR_CLUSTER_ID_ANNOTATION};
use crate::etcd::layout::{self, Created, Kind, Wanted};

fn entry(
    kind: Kind,
    name: &str,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    spec: Map<String, Value>,
) -> Value {
    let wanted = Wanted {
        labels: labels.cloned().unwrap_or_default(),
        spec,
    };
    let none = Created {
        uid: String::new(),
        timestamp: String::new(),
    };
    let mut value = layout::merge(kind, name, None, &wanted, &none);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("uid");
        meta.remove("creationTimestamp");
    }
    json!({"key": layout::key(kind, name), "value": value})
}

fn spec_of<S: serde::Serialize>(spec: &S) -> Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The etcd keys and values `desired` writes, in apply order.
pub fn entries(desired: &Desired) -> Vec<Value> {
    let mut out = Vec::new();
    if let Pools::Managed(pools) = &desired.pools {
        for p in pools {
            let name = p.metadata.name.clone().unwrap_or_default();
            out.push(entry(
                Kind::IPPool,
                &name,
                p.metadata.labels.as_ref(),
                spec_of(&p.spec),
            ));
        }
    }
    if let Some(b) = &desired.bgp_configuration {
        let name = b.metadata.name.clone().unwrap_or_default();
        out.push(entry(
            Kind::BGPConfiguration,
            &name,
            b.metadata.labels.as_ref(),
            spec_of(&b.spec),
        ));
    }
    for p in &desired.peers {
        let name = p.metadata.name.clone().unwrap_or_default();
        out.push(entry(
            Kind::BGPPeer,
            &name,
            p.metadata.labels.as_ref(),
            spec_of(&p.spec),
        ));
    }
    let a = &desired.node.annotations;
    let bgp = crate::etcd::store::NodeBgp {
        as_number: a.get(AS_NUMBER_ANNOTATION).and_then(|v| v.parse().ok()),
        route_reflector_cluster_id: a.get(RR_CLUSTER_ID_ANNOTATION).cloned(),
        ipv4_address: a.get(IPV4_ADDRESS_ANNOTATION).cloned(),
    };
    let mut node = crate::etcd::store::node_value(
        None,
        &desired.node.node_name,
        &bgp,
        &Created {
            uid: String::new(),
            timestamp: String::new(),
        },
    );
    if let Some(meta) = node.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("uid");
        meta.remove("creationTimestamp");
    }
    out.push(json!({"key": layout::key(Kind::Node, &desired.node.node_name), "value": node}));
    out
}

/// The Kubernetes objects the leader applies in etcd mode, the Secret's data left out.
pub(crate) fn workload_objects(
    desired: &Desired,
    config: &crate::config::CharmConfig,
    etcd: &crate::etcd::EtcdConfig,
) -> Vec<Value> {
    let Some(w) = &desired.workloads else {
        return Vec::new();
    };
    let mut w = w.clone();
    let cni = super::workloads::etcd::cni_etcd(
        &etcd.connection_string,
        &crate::etcd::relation::credentials_dir(),
    );
    super::workloads::etcd::for_etcd(&mut w, config, &cni, etcd);
    for s in &mut w.secrets {
        s.data = None;
    }
    let mut out = w.crd_objects();
    out.extend(w.objects_without_crds());
    out
}
