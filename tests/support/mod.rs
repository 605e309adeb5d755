pub mod apiserver;
pub mod crd_schema;
pub mod envtest;
pub mod etcd;
pub mod rawserver;
pub mod tls;
