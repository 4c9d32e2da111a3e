//! `batch/v1` `jobs`: the federated Jobs, as whole `batch/v1` Jobs (SPEC §9).
//!
//! Reads come from the control plane ([`read`]: get) and from the API's watch cache of it
//! ([`cache`]: list, watch); writes go through the control plane's verbs ([`write`]), which
//! validate, store and re-plan exactly as for the gRPC API. [`view`] is how a federated Job
//! looks here.

pub mod cache;
mod read;
pub mod view;
mod write;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::response::Response;
use serde_json::Value;

use self::cache::JobCache;
use self::view::JobView;
use super::call::{Call, ServedResource, Verb};
use super::discovery::api_resource;
use super::openapi;
use super::pages::Snapshots;
use super::resource::{JOBS, ResourceType};
use super::status::{ApiError, Cause, stale_conflict};
use crate::control_plane::{ControlPlane, ControlPlaneError};
use crate::store::StoreError;
use fedjob_proto::shutdown::Shutdown;

/// The verbs served on `jobs` (`deletecollection` is not).
const VERBS: &[Verb] = &[
    Verb::Create,
    Verb::Delete,
    Verb::Get,
    Verb::List,
    Verb::Patch,
    Verb::Update,
    Verb::Watch,
];

/// The `jobs` resource.
pub struct Jobs {
    cp: Arc<ControlPlane>,
    cache: Arc<JobCache>,
    pages: Snapshots<(Option<String>, u64), Arc<JobView>>,
    shutdown: Shutdown,
    bookmark_interval: Duration,
}

impl Jobs {
    /// Serves `cp`'s Jobs from `cache`; watches end at `shutdown` and get a bookmark every
    /// `bookmark_interval` when they ask for them.
    pub fn new(
        cp: Arc<ControlPlane>,
        cache: Arc<JobCache>,
        shutdown: Shutdown,
        bookmark_interval: Duration,
    ) -> Self {
        Self {
            cp,
            cache,
            pages: Snapshots::default(),
            shutdown,
            bookmark_interval,
        }
    }
}

#[async_trait]
impl ServedResource for Jobs {
    fn names(&self) -> &'static ResourceType {
        &JOBS
    }

    fn discovery(&self) -> Vec<Value> {
        let verbs: Vec<&str> = {
            let mut v: Vec<&str> = VERBS.iter().map(|v| v.as_str()).collect();
            v.sort_unstable();
            v
        };
        vec![
            api_resource("jobs", &JOBS, &verbs, &[], &["all"]),
            api_resource("jobs/status", &JOBS, &["get"], &[], &[]),
        ]
    }

    fn openapi_paths(&self) -> Vec<(String, Value)> {
        openapi::resource_paths(&JOBS, VERBS, &[Verb::Get])
    }

    async fn serve(&self, call: Call) -> Result<Response, ApiError> {
        let namespace = call.namespace.clone();
        let name = call.name.clone().unwrap_or_default();
        match (call.verb, call.subresource.as_deref(), namespace.as_deref()) {
            (Verb::List, None, _) => self.list(&call).await,
            (Verb::Watch, None, _) => self.watch(&call).await,
            (Verb::Get, None | Some("status"), Some(ns)) => self.get(&call, ns, &name).await,
            (Verb::Create, None, Some(ns)) => self.create(&call, ns).await,
            (Verb::Update, None, Some(ns)) => self.update(&call, ns, &name).await,
            (Verb::Patch, None, Some(ns)) => self.patch(&call, ns, &name).await,
            (Verb::Delete, None, Some(ns)) => self.delete(&call, ns, &name).await,
            // `status` is the federation's to write; `scale` and others are not served.
            (_, Some("status"), Some(_)) => Err(ApiError::MethodNotAllowed),
            (_, Some(_), _) => Err(ApiError::PathNotFound),
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

/// The `Status` of a control-plane failure about Job `name`, as the API server answers the
/// same failure: the texts are the control plane's, shared with the gRPC API.
pub fn api_error(e: ControlPlaneError, name: &str) -> ApiError {
    match e {
        ControlPlaneError::Invalid(invalid) => ApiError::Invalid {
            resource: &JOBS,
            name: invalid.name().unwrap_or(name).to_owned(),
            causes: invalid
                .causes()
                .iter()
                .map(|c| Cause {
                    reason: c.kind.reason().to_owned(),
                    message: c.message(),
                    field: c.field.clone(),
                })
                .collect(),
        },
        ControlPlaneError::NotFound { .. } => ApiError::NotFound {
            resource: &JOBS,
            name: name.to_owned(),
        },
        ControlPlaneError::AlreadyExists { name } => ApiError::AlreadyExists {
            resource: &JOBS,
            name,
        },
        ControlPlaneError::Conflict { name } => stale_conflict(&JOBS, &name),
        ControlPlaneError::FailedPrecondition(detail) => ApiError::Conflict {
            resource: &JOBS,
            name: name.to_owned(),
            detail,
        },
        ControlPlaneError::Store(StoreError::Conflict { .. }) => stale_conflict(&JOBS, name),
        ControlPlaneError::Store(StoreError::Closed) => {
            ApiError::ServiceUnavailable("the scheduler is shutting down".to_owned())
        }
        e @ ControlPlaneError::Store(StoreError::Backend { .. }) => ApiError::ServiceUnavailable(
            format!("{e}; the change may or may not have been applied: read it back or try again"),
        ),
        e => ApiError::Internal(e.to_string()),
    }
}
