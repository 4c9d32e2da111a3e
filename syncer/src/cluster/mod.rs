//! The member cluster's API server, as the syncer uses it: read, create, server-side apply and
//! delete one shard, create a namespace, and watch every shard.
//!
//! Every answer of a real API server (k8s-facts/) is turned into a [`ClusterError`] the
//! reconciler can act on: a missing namespace is not a missing Job (both are 404), a conflict
//! is retried, an invalid Job is reported with the server's causes. Every request is observed
//! on its way ([`observe`]) into the [`ClusterHealth`] that `/readyz` reads.

pub mod observe;

use std::pin::Pin;
use std::sync::Arc;

use fedjob_proto::names;
use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::client::ClientBuilder;
use kube::client::retry::RetryPolicy;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, core::Status};
use serde_json::{Value, json};
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;

use crate::config::{Config, KubeSource};
use crate::rules::key::ShardKey;
use crate::state::cluster_health::ClusterHealth;
use observe::ObserveLayer;

/// Requests the client's inner service queues while busy (as `kube::Client` does).
const QUEUED_REQUESTS: usize = 1024;

/// What went wrong talking to the member cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The Job does not exist (404 on the Job itself).
    #[error("{0}")]
    NotFound(String),
    /// The namespace does not exist (404 `namespaces "X" not found`, k8s-facts/18).
    #[error("{0}")]
    NamespaceNotFound(String),
    /// Optimistic concurrency or field-manager conflict (409 `Conflict`, k8s-facts/08, 27), or
    /// a failed delete precondition: re-read and retry.
    #[error("{0}")]
    Conflict(String),
    /// The Job already exists (409 `AlreadyExists`, k8s-facts/02).
    #[error("{0}")]
    AlreadyExists(String),
    /// The server refused the Job as invalid (422 `Invalid`, k8s-facts/03, 06, 10).
    #[error("{message}")]
    Invalid {
        /// The server's message.
        message: String,
        /// `field: message` of each cause.
        causes: Vec<String>,
    },
    /// Any other refusal by the API server.
    #[error("{reason} ({code}): {message}")]
    Refused {
        /// HTTP status.
        code: u16,
        /// The server's reason (`Forbidden`, `InternalError`, …).
        reason: String,
        /// The server's message.
        message: String,
    },
    /// The API server could not be reached or answered garbage.
    #[error("cluster unreachable: {0}")]
    Unreachable(#[source] kube::Error),
    /// The kube client could not be configured.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
}

impl ClusterError {
    /// The `reason` reported to the scheduler with an `ERROR` shard.
    pub fn reason(&self) -> String {
        match self {
            ClusterError::NotFound(_) => "NotFound".into(),
            ClusterError::NamespaceNotFound(_) => "NamespaceNotFound".into(),
            ClusterError::Conflict(_) => "Conflict".into(),
            ClusterError::AlreadyExists(_) => "AlreadyExists".into(),
            ClusterError::Invalid { .. } => "Invalid".into(),
            ClusterError::Refused { reason, code, .. } if reason.is_empty() => {
                format!("HTTP{code}")
            }
            ClusterError::Refused { reason, .. } => reason.clone(),
            ClusterError::Unreachable(_) => "ClusterUnreachable".into(),
            ClusterError::Config(_) => "ClientConfig".into(),
        }
    }

    /// The message reported with an `ERROR` shard: the server's own words, and its causes.
    pub fn report_message(&self) -> String {
        match self {
            ClusterError::Invalid { message, causes } if !causes.is_empty() => {
                format!("{message} [{}]", causes.join("; "))
            }
            other => other.to_string(),
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::Unreachable(_) | ClusterError::Conflict(_) => true,
            ClusterError::Refused { code, .. } => *code == 429 || *code >= 500,
            _ => false,
        }
    }
}

impl From<kube::Error> for ClusterError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => from_status(*status),
            other => ClusterError::Unreachable(other),
        }
    }
}

/// Classifies a failure `Status` from the API server.
fn from_status(s: Status) -> ClusterError {
    let details_kind = s.details.as_ref().map(|d| d.kind.as_str()).unwrap_or("");
    match (s.code, s.reason.as_str()) {
        (404, _) if details_kind == "namespaces" || s.message.starts_with("namespaces ") => {
            ClusterError::NamespaceNotFound(s.message)
        }
        (404, _) => ClusterError::NotFound(s.message),
        (409, "AlreadyExists") => ClusterError::AlreadyExists(s.message),
        (409, _) => ClusterError::Conflict(s.message),
        (422, _) => ClusterError::Invalid {
            causes: s
                .details
                .map(|d| {
                    d.causes
                        .into_iter()
                        .map(|c| {
                            if c.field.is_empty() {
                                c.message
                            } else {
                                format!("{}: {}", c.field, c.message)
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            message: s.message,
        },
        (code, reason) => ClusterError::Refused {
            code,
            reason: reason.to_owned(),
            message: s.message,
        },
    }
}

/// The stream of shard watch events.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<watcher::Event<Job>, watcher::Error>> + Send>>;

/// The member cluster.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    namespace: Option<String>,
    health: Arc<ClusterHealth>,
}

impl Cluster {
    /// Reaches the member cluster as the configuration says (kubeconfig or in-cluster), with
    /// every request observed into [`Cluster::health`]; with `--namespace`, only that
    /// namespace is watched.
    pub async fn connect(config: &Config) -> Result<Self, ClusterError> {
        let mut kube_config = kube_config(config).await?;
        // The client's own retries would sit below the observing layer and hide each 429 it
        // waits out: the same policy goes above it instead.
        kube_config.default_retry = false;
        let health = Arc::new(ClusterHealth::default());
        let client = ClientBuilder::try_from(kube_config)
            .map_err(|e| ClusterError::Config(e.to_string()))?
            .with_layer(&BufferLayer::new(QUEUED_REQUESTS))
            .with_layer(&ObserveLayer::new(
                health.clone(),
                config.cluster_request_timeout,
            ))
            .with_layer(&RetryLayer::new(RetryPolicy::server_retry()))
            .build();
        Ok(Self {
            client,
            namespace: config.namespace.clone(),
            health,
        })
    }

    /// How the API server has been answering.
    pub fn health(&self) -> &ClusterHealth {
        &self.health
    }

    /// The client, observed like every request of the syncer's (for the capacity watches).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn jobs(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Reads one Job; `None` when it does not exist.
    pub async fn get(&self, key: &ShardKey) -> Result<Option<Job>, ClusterError> {
        match self.jobs(&key.namespace).get(&key.name).await {
            Ok(job) => Ok(Some(job)),
            Err(e) => match ClusterError::from(e) {
                ClusterError::NotFound(_) | ClusterError::NamespaceNotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Creates a new shard from `manifest` (the JSON text of its Job) with a plain create as
    /// field manager `fedjob-syncer` (k8s-facts/01): one request, and a Job of the same name
    /// that exists by then, whoever made it, is refused with `AlreadyExists` (k8s-facts/02)
    /// instead of being taken over.
    pub async fn create(&self, key: &ShardKey, manifest: &str) -> Result<Job, ClusterError> {
        let params = PostParams {
            field_manager: Some(names::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let url = <Job as kube::Resource>::url_path(&(), Some(&key.namespace));
        let request = kube::core::Request::new(url)
            .create(&params, manifest.as_bytes().to_vec())
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(self.client.request::<Job>(request).await?)
    }

    /// Server-side applies `manifest` as field manager `fedjob-syncer`, forcing ownership of
    /// the fields it sets (k8s-facts/09, 27). Creates the Job when it does not exist.
    pub async fn apply(&self, key: &ShardKey, manifest: &Value) -> Result<Job, ClusterError> {
        self.apply_as(key, manifest, names::FIELD_MANAGER).await
    }

    /// Server-side applies `config` as field manager `manager`, forcing ownership of the fields
    /// it sets (the self-fence applies `spec.suspend` alone as a manager of its own).
    pub async fn apply_as(
        &self,
        key: &ShardKey,
        config: &Value,
        manager: &str,
    ) -> Result<Job, ClusterError> {
        let params = PatchParams::apply(manager).force();
        Ok(self
            .jobs(&key.namespace)
            .patch(&key.name, &params, &Patch::Apply(config))
            .await?)
    }

    /// Deletes a Job with `propagationPolicy: Background` (the API default would orphan its
    /// pods, k8s-facts/12), only if it is still the incarnation `uid`. A Job already gone counts
    /// as deleted.
    pub async fn delete(&self, key: &ShardKey, uid: Option<&str>) -> Result<(), ClusterError> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.jobs(&key.namespace).delete(&key.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) => match ClusterError::from(e) {
                ClusterError::NotFound(_) | ClusterError::NamespaceNotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Creates a namespace; one that already exists is fine.
    pub async fn create_namespace(&self, name: &str) -> Result<(), ClusterError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {names::MANAGED_BY_LABEL: names::MANAGED_BY_VALUE}},
        }))
        .map_err(|e| ClusterError::Config(e.to_string()))?;
        let params = PostParams {
            field_manager: Some(names::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match api.create(&params, &ns).await {
            Ok(_) => Ok(()),
            Err(e) => match ClusterError::from(e) {
                ClusterError::AlreadyExists(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Watches every Job labelled `fedjob.io/managed-by=fedjob` (in the one namespace when
    /// restricted). kube-runtime's watcher lists first, re-lists on `410 Expired`
    /// (k8s-facts/28) and backs off on errors.
    pub fn watch(&self) -> WatchStream {
        let api: Api<Job> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let config = watcher::Config::default().labels(names::MANAGED_SELECTOR);
        watcher(api, config).default_backoff().boxed()
    }
}

/// The kube client configuration `config` names: a kubeconfig (file and context) or the pod's
/// service account.
async fn kube_config(config: &Config) -> Result<kube::Config, ClusterError> {
    Ok(match &config.kube {
        KubeSource::InCluster => {
            kube::Config::incluster().map_err(|e| ClusterError::Config(e.to_string()))?
        }
        KubeSource::Kubeconfig { path, context } => {
            let options = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            match path {
                Some(path) => {
                    let file = kube::config::Kubeconfig::read_from(path)
                        .map_err(|e| ClusterError::Config(format!("{}: {e}", path.display())))?;
                    kube::Config::from_custom_kubeconfig(file, &options).await
                }
                None => kube::Config::from_kubeconfig(&options).await,
            }
            .map_err(|e| ClusterError::Config(e.to_string()))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(fact: &str) -> Status {
        serde_json::from_str(fact).unwrap()
    }

    #[test]
    fn missing_namespace_is_not_a_missing_job() {
        let ns = from_status(status(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"namespaces \"nosuchns\" not found","reason":"NotFound","details":{"name":"nosuchns","kind":"namespaces"},"code":404}"#,
        ));
        assert!(
            matches!(&ns, ClusterError::NamespaceNotFound(m) if m == "namespaces \"nosuchns\" not found")
        );
        assert_eq!(ns.reason(), "NamespaceNotFound");
        let job = from_status(status(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"jobs.batch \"nope\" not found","reason":"NotFound","details":{"name":"nope","group":"batch","kind":"jobs"},"code":404}"#,
        ));
        assert!(matches!(job, ClusterError::NotFound(_)));
    }

    #[test]
    fn invalid_keeps_the_causes() {
        let e = from_status(status(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Job.batch \"myjob\" is invalid: spec.completions: Invalid value: 9: field is immutable","reason":"Invalid","details":{"name":"myjob","group":"batch","kind":"Job","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: 9: field is immutable","field":"spec.completions"}]},"code":422}"#,
        ));
        assert_eq!(e.reason(), "Invalid");
        assert!(!e.is_transient());
        assert!(
            e.report_message()
                .contains("spec.completions: Invalid value: 9: field is immutable"),
            "{}",
            e.report_message()
        );
    }

    #[test]
    fn conflicts_are_retried_already_exists_is_not() {
        let conflict = from_status(status(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Apply failed with 1 conflict: conflict with \"curl\" using batch/v1: .spec.parallelism","reason":"Conflict","details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"curl\" using batch/v1","field":".spec.parallelism"}]},"code":409}"#,
        ));
        assert!(matches!(conflict, ClusterError::Conflict(_)));
        assert!(conflict.is_transient());
        let exists = from_status(status(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"jobs.batch \"myjob\" already exists","reason":"AlreadyExists","details":{"name":"myjob","group":"batch","kind":"jobs"},"code":409}"#,
        ));
        assert!(matches!(exists, ClusterError::AlreadyExists(_)));
    }

    #[test]
    fn other_refusals_keep_reason_and_code() {
        let forbidden =
            from_status(Status::failure("jobs.batch is forbidden", "Forbidden").with_code(403));
        assert_eq!(forbidden.reason(), "Forbidden");
        assert!(!forbidden.is_transient());
        let busy = from_status(Status::failure("etcd timeout", "InternalError").with_code(500));
        assert!(busy.is_transient());
    }
}
