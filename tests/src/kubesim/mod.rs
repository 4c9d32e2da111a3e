//! `fedjob-kubesim`: simulated member clusters that answer like kube-apiserver v1.24.
//!
//! Each [`SimCluster`] serves the Kubernetes API for `batch/v1` Jobs (plus namespaces, and
//! read-only pods and events) over plain HTTP on loopback, and runs a simulated job controller
//! whose pods exist only as records. What it answers — status codes, `reason`, causes,
//! messages, defaulting, managed fields — follows the recorded answers of a real server in
//! `tests/fixtures/k8s-facts/`, so the syncer can be tested through the real `kube` client.
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
pub mod clock;
pub mod cluster;
pub mod controller;
pub mod duration;
pub mod events;
pub mod fieldset;
pub mod job;
pub mod kubeconfig;
pub mod managed;
pub mod namespace;
pub mod node;
pub mod nodes;
pub mod patch;
pub mod pods;
pub mod resource;
pub mod sched;
pub mod schema;
pub mod selector;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod table;
pub mod validation;
pub mod watch;
pub mod writes;

pub use cluster::{ClusterError, Fleet, SimCluster, SimOptions};
