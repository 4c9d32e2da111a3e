//! `fedjob-kubesim`: simulated member clusters that answer like kube-apiserver v1.24.
//!
//! Each [`SimCluster`] serves the Kubernetes API for `batch/v1` Jobs (plus namespaces, and
//! read-only pods and events) over plain HTTP on loopback, and runs a simulated job controller
//! whose pods exist only as records. What it answers — status codes, `reason`, causes,
//! messages, defaulting, managed fields — follows the recorded answers of a real server in
//! `tests/fixtures/k8s-facts/`, so the syncer can be tested through the real `kube` client.
//!
//! The API server's generic rules (paths, parameters, selectors, patches, managed fields,
//! `Status` errors, tables, watch framing, pagination) are the scheduler's
//! [`fedjob_scheduler::kube_api`], which serves the federation's own Kubernetes API with them;
//! this module adds what is particular to a member cluster.
//!
//! The request path, top down:
//! [`api`] (routing, auth, handlers) → [`writes`] (decode, default, validate, managed fields)
//! → [`store`] (versions, history) → watchers ([`watch`]) and the [`controller`], which writes
//! status back through [`writes`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fedjob_tests::kubesim::{SimCluster, SimOptions};
//! let cluster = SimCluster::start(SimOptions::default()).await?;
//! println!("kube-apiserver (simulated) at {}", cluster.url());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod cluster;
pub mod controller;
pub mod events;
pub mod faults;
pub mod hooks;
pub mod job;
pub mod namespace;
pub mod node;
pub mod nodes;
pub mod pods;
pub mod resource;
pub mod sched;
pub mod serve;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;
pub mod writes;

pub use cluster::{ClusterError, Fleet, SimCluster, SimOptions};
/// Kubeconfig files (the scheduler's), for tests that point clients at simulated clusters.
pub use fedjob_scheduler::kube_api::kubeconfig;
