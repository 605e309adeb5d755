pub mod apiserver;
pub mod crd_schema;
pub mod rawserver;
