//! The gRPC edges: the user API ([`user`]) and the agent API ([`agent`]), both thin layers that
//! decode requests, call the [`ControlPlane`](crate::control_plane::ControlPlane), and encode
//! answers. This module holds what both share: error mapping, conversions, metrics.

pub mod agent;
mod agent_news;
pub mod convert;
pub mod user;

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::control_plane::ControlPlaneError;
use crate::metrics::Metrics;
use crate::model::manifest::Invalid;
use crate::store::StoreError;

/// Maps a control-plane error to the gRPC status a client expects.
pub fn status(e: ControlPlaneError) -> Status {
    match e {
        ControlPlaneError::Invalid(invalid) => invalid_argument(&invalid),
        ControlPlaneError::NotFound { .. } => Status::not_found(e.to_string()),
        ControlPlaneError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        ControlPlaneError::Conflict { .. } => Status::aborted(e.to_string()),
        ControlPlaneError::FailedPrecondition(m) => Status::failed_precondition(m),
        ControlPlaneError::Store(StoreError::Conflict { .. }) => Status::aborted(format!(
            "{e}: the object was modified concurrently; try again"
        )),
        ControlPlaneError::Store(StoreError::Closed) => {
            Status::unavailable("the scheduler is shutting down")
        }
        // etcd unreachable, or a write whose outcome is unknown: the client may try again (a
        // create then answers ALREADY_EXISTS if the first attempt did go through).
        ControlPlaneError::Store(StoreError::Backend { .. }) => Status::unavailable(format!(
            "{e}; the change may or may not have been applied: read it back or try again"
        )),
        ControlPlaneError::Store(_)
        | ControlPlaneError::Corrupt { .. }
        | ControlPlaneError::NewerStore { .. } => Status::internal(e.to_string()),
    }
}

/// INVALID_ARGUMENT naming every offending field, in the message and as `BadRequest` details.
pub fn invalid_argument(invalid: &Invalid) -> Status {
    let mut details = ErrorDetails::new();
    for cause in invalid.causes() {
        details.add_bad_request_violation(cause.field.clone(), cause.to_string());
    }
    Status::with_error_details(Code::InvalidArgument, invalid.to_string(), details)
}

/// Runs one RPC handler and records its outcome and latency.
pub async fn measured<T>(
    metrics: &Metrics,
    method: &'static str,
    handler: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let start = Instant::now();
    let result = handler.await;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    };
    metrics.observe_rpc(method, code, start.elapsed());
    result
}
