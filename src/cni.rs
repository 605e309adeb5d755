//! The CNI config file `10-calico.conflist`. (Owned by the Calico-workloads work.)
