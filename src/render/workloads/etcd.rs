//! Calico's workloads for the etcd datastore: the Kubernetes-datastore workloads
//! ([`super::render`]) changed where etcd mode differs, in the charm's own code (no upstream
//! manifest is copied; the facts and their sources are in `docs/etcd.md`).
//!
//! - No Calico CRDs: Calico's data is in etcd (an existing CRD is left alone, as ever); no
//!   Typha, which fans out the Kubernetes datastore only.
//! - No Calico CRDs: Calico's data is in etcd (an existing CRD is left alone, as ever).
//! - Secret `calico-etcd-secrets` (kube-system): keys `etcd-ca`, `etcd-cert`, `etcd-key`, as
//!   the earlier charm and Calico's etcd manifest name them, so an upgrade adopts it.
//! - ConfigMap `calico-config`: `etcd_endpoints`, and `etcd_ca`/`etcd_cert`/`etcd_key` naming
//!   the Secret's files where the pods mount it (`/calico-secrets`); the CNI template reads
//!   etcd (its credential files on the host, which every unit writes, 0600).
//! - calico-node: `DATASTORE_TYPE=etcdv3`, `ETCD_ENDPOINTS` and `ETCD_*_FILE` from the
//!   ConfigMap, `CALICO_K8S_NODE_REF` (the Kubernetes node, for kube-controllers' node
//!   controller), the Secret mounted read-only with mode 0400.
//! - calico-kube-controllers: the same etcd settings, host networking (it must reach etcd
//!   whatever the pod network's state or policy), and the controllers etcd mode needs:
//!   `policy,namespace,serviceaccount,workloadendpoint,node` (in KDD only `node`: Calico reads
//!   the others straight from Kubernetes). Its ClusterRole may also list and watch service
//!   accounts and network policies, which those controllers sync into etcd.
//!
//! The same for every release from 3.6 to 3.32: `DATASTORE_TYPE` is read by every release
//! (etcdv3 is its default, set explicitly anyway), and the controller list and environment
//! names are those of the etcd manifests of v3.6 and v3.27.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Secret, SecretVolumeSource, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::PolicyRule;
use secrecy::ExposeSecret;

use super::{CALICO_NODE, CONFIG_MAP, KUBE_CONTROLLERS, NAMESPACE, Workloads, meta};
use crate::etcd::EtcdConfig;
use crate::render::cni::CniEtcd;

/// The Secret holding the etcd client credentials for the pods.
pub(crate) const SECRET: &str = "calico-etcd-secrets";
/// Where the pods mount it.
pub(crate) const SECRETS_MOUNT: &str = "/calico-secrets";
/// The pods' volume name for it.
pub(crate) const SECRETS_VOLUME: &str = "etcd-certs";
/// Keys of the Secret (and file names below [`SECRETS_MOUNT`]).
pub(crate) const SECRET_CA: &str = "etcd-ca";
pub(crate) const SECRET_CERT: &str = "etcd-cert";
pub(crate) const SECRET_KEY: &str = "etcd-key";
/// kube-controllers' controllers in etcd mode.
pub(crate) const ETCD_CONTROLLERS: &str = "policy,namespace,serviceaccount,workloadendpoint,node";

/// The Secret with the relation's credentials.
pub fn secret(config: &EtcdConfig) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        SECRET_CA.to_string(),
        ByteString(config.ca_pem.as_bytes().to_vec()),
    );
    data.insert(
        SECRET_CERT.to_string(),
        ByteString(config.cert_pem.as_bytes().to_vec()),
    );
    data.insert(
        SECRET_KEY.to_string(),
        ByteString(config.key_pem.expose_secret().as_bytes().to_vec()),
    );
    Secret {
        metadata: meta(SECRET, Some(NAMESPACE), &[]),
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The CNI plugin's etcd settings: `endpoints`, and the unit's credential files in `dir`.
pub(crate) fn cni_etcd(endpoints: &str, dir: &std::path::Path) -> CniEtcd {
    let [ca, cert, key] = crate::etcd::relation::credential_paths(dir);
    CniEtcd {
        endpoints: endpoints.to_string(),
        ca_file: ca.display().to_string(),
        cert_file: cert.display().to_string(),
        key_file: key.display().to_string(),
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

fn env_config_map(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                name: CONFIG_MAP.to_string(),
                key: key.to_string(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The etcd environment of calico-node and kube-controllers.
fn etcd_env() -> Vec<EnvVar> {
    vec![
        env("DATASTORE_TYPE", "etcdv3"),
        env_config_map("ETCD_ENDPOINTS", "etcd_endpoints"),
        env_config_map("ETCD_CA_CERT_FILE", "etcd_ca"),
        env_config_map("ETCD_KEY_FILE", "etcd_key"),
        env_config_map("ETCD_CERT_FILE", "etcd_cert"),
    ]
}

/// `env` with `DATASTORE_TYPE` replaced by the etcd settings (in its place), `extra` added.
fn with_etcd_env(env: &mut Option<Vec<EnvVar>>, extra: Vec<EnvVar>) {
    let list = env.get_or_insert_with(Vec::new);
    let at = list
        .iter()
        .position(|e| e.name == "DATASTORE_TYPE")
        .unwrap_or(0);
    list.retain(|e| e.name != "DATASTORE_TYPE");
    let mut insert = etcd_env();
    insert.extend(extra);
    for (i, e) in insert.into_iter().enumerate() {
        list.insert((at + i).min(list.len()), e);
    }
}

fn secrets_mount(container: &mut Container) {
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: SECRETS_VOLUME.to_string(),
            mount_path: SECRETS_MOUNT.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
}

fn secrets_volume(mode: i32) -> Volume {
    Volume {
        name: SECRETS_VOLUME.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(SECRET.to_string()),
            default_mode: Some(mode),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Change KDD workloads into etcd-mode workloads (pure). `cni` is what the CNI template
/// reads; `config` gives the Secret.
pub(crate) fn for_etcd(
    workloads: &mut Workloads,
    charm: &crate::config::CharmConfig,
    cni: &CniEtcd,
    config: &EtcdConfig,
) {
    // Calico's data is in etcd: no component reads Calico's CRDs; Typha serves the
    // Kubernetes datastore only.
    *workloads = super::render(charm);
    workloads.crds.clear();
    workloads.secrets = vec![secret(config)];
    for cm in &mut workloads.config_maps {
        if cm.metadata.name.as_deref() != Some(CONFIG_MAP) {
            continue;
        }
        let data = cm.data.get_or_insert_with(BTreeMap::new);
        data.insert("etcd_endpoints".into(), cni.endpoints.clone());
        data.insert("etcd_ca".into(), format!("{SECRETS_MOUNT}/{SECRET_CA}"));
        data.insert("etcd_cert".into(), format!("{SECRETS_MOUNT}/{SECRET_CERT}"));
        data.insert("etcd_key".into(), format!("{SECRETS_MOUNT}/{SECRET_KEY}"));
        data.insert(
            "cni_network_config".into(),
            crate::render::cni::template_for(charm, Some(cni)),
        );
    }
    let hash = workloads
        .config_maps
        .iter()
        .find(|cm| cm.metadata.name.as_deref() == Some(CONFIG_MAP))
        .map(super::pods::config_hash);
    // The Secret's content changes the pods too (a new client certificate).
    let secret_hash = {
        let s = secret(config);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in s.data.iter().flatten() {
            for b in k.bytes().chain([0]).chain(v.0.iter().copied()).chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{h:016x}")
    };
    for ds in &mut workloads.daemon_sets {
        if ds.metadata.name.as_deref() != Some(CALICO_NODE) {
            continue;
        }
        if let Some(meta) = ds.spec.template.metadata.as_mut() {
            let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
            if let Some(h) = &hash {
                annotations.insert(
                    super::pods::CONFIG_HASH.to_string(),
                    format!("{h}-{secret_hash}"),
                );
            }
        }
        let Some(pod) = ds.spec.template.spec.as_mut() else {
            continue;
        };
        for c in pod.containers.iter_mut().filter(|c| c.name == CALICO_NODE) {
            with_etcd_env(
                &mut c.env,
                vec![EnvVar {
                    name: "CALICO_K8S_NODE_REF".to_string(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "spec.nodeName".to_string(),
                            ..ObjectFieldSelector::default()
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                }],
            );
            secrets_mount(c);
        }
        pod.volumes
            .get_or_insert_with(Vec::new)
            .push(secrets_volume(0o400));
    }
    for d in &mut workloads.deployments {
        if d.metadata.name.as_deref() != Some(KUBE_CONTROLLERS) {
            continue;
        }
        let spec = &mut d.spec;
        let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
        template_meta
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(
                super::pods::CONFIG_HASH.to_string(),
                format!("{}-{secret_hash}", hash.clone().unwrap_or_default()),
            );
        let Some(pod) = spec.template.spec.as_mut() else {
            continue;
        };
        pod.host_network = Some(true);
        for c in pod
            .containers
            .iter_mut()
            .filter(|c| c.name == KUBE_CONTROLLERS)
        {
            if let Some(env) = c.env.as_mut() {
                for e in env.iter_mut().filter(|e| e.name == "ENABLED_CONTROLLERS") {
                    e.value = Some(ETCD_CONTROLLERS.to_string());
                }
            }
            with_etcd_env(&mut c.env, Vec::new());
            secrets_mount(c);
        }
        pod.volumes
            .get_or_insert_with(Vec::new)
            .push(secrets_volume(0o400));
    }
    for role in &mut workloads.cluster_roles {
        if role.metadata.name.as_deref() != Some(KUBE_CONTROLLERS) {
            continue;
        }
        let rules = role.rules.get_or_insert_with(Vec::new);
        rules.push(PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["serviceaccounts".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        });
        rules.push(PolicyRule {
            api_groups: Some(vec!["networking.k8s.io".into()]),
            resources: Some(vec!["networkpolicies".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn charm() -> crate::config::CharmConfig {
        let raw = crate::config::options::defaults().expect("embedded defaults");
        crate::config::validate(&raw)
            .expect("defaults valid")
            .config
    }

    fn etcd_config() -> EtcdConfig {
        EtcdConfig {
            endpoints: Vec::new(),
            connection_string: "https://10.0.0.5:2379".into(),
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            key_pem: SecretString::from("KEY"),
            version: "3.4.22".into(),
        }
    }

    fn env_of(c: &Container) -> BTreeMap<String, EnvVar> {
        c.env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.clone()))
            .collect()
    }

    #[test]
    fn etcd_mode_points_every_component_at_etcd() {
        let charm = charm();
        let mut w = super::super::render(&charm);
        let cni = cni_etcd(
            "https://10.0.0.5:2379",
            std::path::Path::new("/etc/calico/etcd"),
        );
        for_etcd(&mut w, &charm, &cni, &etcd_config());

        let data = w.config_maps[0].data.clone().unwrap_or_default();
        assert_eq!(data["etcd_endpoints"], "https://10.0.0.5:2379");
        assert_eq!(data["etcd_key"], "/calico-secrets/etcd-key");
        let conf = &data["cni_network_config"];
        assert!(!conf.contains("datastore_type"), "{conf}");
        assert!(
            conf.contains("\"etcd_key_file\": \"/etc/calico/etcd/etcd-key\""),
            "{conf}"
        );
        assert!(
            conf.contains("\"etcd_endpoints\": \"https://10.0.0.5:2379\""),
            "{conf}"
        );
        assert!(!conf.contains("KEY"), "a credential in the ConfigMap");

        let pod = w.daemon_sets[0].spec.template.spec.clone().unwrap();
        let node = pod
            .containers
            .iter()
            .find(|c| c.name == CALICO_NODE)
            .unwrap();
        let env = env_of(node);
        assert_eq!(env["DATASTORE_TYPE"].value.as_deref(), Some("etcdv3"));
        let from_cm = |e: &EnvVar| {
            e.value_from
                .as_ref()
                .and_then(|v| v.config_map_key_ref.as_ref())
                .map(|r| r.key.clone())
        };
        assert_eq!(
            from_cm(&env["ETCD_ENDPOINTS"]).as_deref(),
            Some("etcd_endpoints")
        );
        assert_eq!(from_cm(&env["ETCD_KEY_FILE"]).as_deref(), Some("etcd_key"));
        assert!(env.contains_key("CALICO_K8S_NODE_REF"));
        assert_eq!(
            node.env
                .iter()
                .flatten()
                .filter(|e| e.name == "DATASTORE_TYPE")
                .count(),
            1
        );
        let vol = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == SECRETS_VOLUME)
            .unwrap();
        assert_eq!(
            vol.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
            Some(SECRET)
        );
        assert!(
            node.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == SECRETS_MOUNT && m.read_only == Some(true))
        );

        let kc = w.deployments[0].spec.template.spec.clone().unwrap();
        assert_eq!(kc.host_network, Some(true));
        let env = env_of(&kc.containers[0]);
        assert_eq!(
            env["ENABLED_CONTROLLERS"].value.as_deref(),
            Some(ETCD_CONTROLLERS)
        );
        assert_eq!(env["DATASTORE_TYPE"].value.as_deref(), Some("etcdv3"));

        let role = w
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(KUBE_CONTROLLERS))
            .unwrap();
        assert!(
            role.rules.iter().flatten().any(|r| r
                .resources
                .iter()
                .flatten()
                .any(|x| x == "networkpolicies"))
        );

        let s = secret(&etcd_config());
        let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["etcd-ca", "etcd-cert", "etcd-key"]);
        assert_eq!(s.metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn a_new_client_certificate_restarts_the_pods() {
        let charm = charm();
        let cni = cni_etcd(
            "https://10.0.0.5:2379",
            std::path::Path::new("/etc/calico/etcd"),
        );
        let hash = |c: &EtcdConfig| {
            let mut w = super::super::render(&charm);
            for_etcd(&mut w, &charm, &cni, c);
            w.daemon_sets[0]
                .spec
                .template
                .metadata
                .clone()
                .and_then(|m| m.annotations)
                .and_then(|a| a.get(super::super::pods::CONFIG_HASH).cloned())
        };
        let mut other = etcd_config();
        other.cert_pem = "CERT2".into();
        assert_ne!(hash(&etcd_config()), hash(&other));
        assert_eq!(hash(&etcd_config()), hash(&etcd_config()));
    }
}
