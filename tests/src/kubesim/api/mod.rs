//! The HTTP face of a simulated cluster: routing, bearer-token authentication, and the
//! handlers that turn requests into store reads and [`crate::kubesim::writes`].

pub mod discovery;
pub mod fields;
mod objects;
pub mod route;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use fedjob_proto::shutdown::Shutdown;
use fedjob_scheduler::kube_api::pages::Snapshots;
use fedjob_scheduler::kube_api::params::{self, MAX_BODY, Params};
use fedjob_scheduler::kube_api::status::ApiError;
use fedjob_scheduler::kube_api::{managed, respond};
use serde_json::Value;

use self::route::Route;
use super::events::EventLog;
use super::faults::{Faults, RequestInfo, answer};
use super::hooks::{Arrival, RequestHooks};
use super::pods::PodTable;
use super::resource::Resource;
use super::store::{Object, Store};

/// The snapshots of paginated lists, by resource, scope and version.
pub type Pages = Snapshots<(Resource, Option<String>, u64), Arc<Object>>;

/// Everything a request handler of one cluster needs.
pub struct App {
    /// The cluster's name, for logs.
    pub cluster: String,
    /// Its objects.
    pub store: Arc<Store>,
    /// Its simulated pods.
    pub pods: Arc<PodTable>,
    /// Its events.
    pub events: Arc<EventLog>,
    /// The bearer token every request must carry, when set.
    pub token: Option<String>,
    /// Ends open watches when the cluster stops.
    pub shutdown: Shutdown,
    /// How often watches with `allowWatchBookmarks` get a bookmark.
    pub bookmark_interval: Duration,
    /// `host:port` for `/api`'s `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// Snapshots of paginated lists being read.
    pub pages: Pages,
    /// The faults every request passes first.
    pub faults: Arc<Faults>,
    /// Tests' hooks, run as each request arrives.
    pub hooks: Arc<RequestHooks>,
}

/// One request, read.
pub struct Call {
    method: Method,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
    /// The request as faults select it.
    request: RequestInfo,
    /// A fault expires this watch at once.
    expire_watch: bool,
}

impl Call {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Whether the client asked for a Table (`kubectl get`).
    fn wants_table(&self) -> bool {
        super::table::wanted(self.header(header::ACCEPT))
    }

    /// The field manager of a write.
    fn manager(&self) -> String {
        managed::manager_name(
            self.params.get("fieldManager"),
            Some(self.header(header::USER_AGENT)),
        )
    }

    /// The body as JSON (or YAML).
    fn body(&self) -> Result<Value, ApiError> {
        params::decode_body(self.header(header::CONTENT_TYPE), &self.body)
    }
}

/// The router of one cluster.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = match serve(&app, request).await {
        Ok(response) => response,
        Err(err) => respond::error(&err),
    };
    tracing::debug!(cluster = %app.cluster, %method, %uri, status = response.status().as_u16(), "request");
    response
}

fn authorize(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &app.token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented == Some(token.as_str()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

async fn serve(app: &Arc<App>, request: Request) -> Result<Response, ApiError> {
    authorize(app, request.headers())?;
    let info = RequestInfo::of(request.method(), request.uri());
    let decision = app.faults.decide(&info);
    if let Some(answer) = decision.fail.and_then(|f| answer::respond(&f, &info)) {
        tokio::time::sleep(decision.delay).await;
        tracing::debug!(cluster = %app.cluster, request = %info.describe(), status = answer.status().as_u16(), "fault answered");
        return Ok(answer);
    }
    let route = route::parse(request.uri().path()).ok_or(ApiError::PathNotFound)?;
    let params = Params::parse(request.uri())?;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::RequestEntityTooLarge(MAX_BODY))?;
    if !app.hooks.is_empty() {
        app.hooks
            .run(&Arrival::new(&parts.method, &parts.uri, &body))
            .await;
    }
    let call = Call {
        method: parts.method,
        params,
        headers: parts.headers,
        body,
        request: info,
        expire_watch: decision.expire_watch,
    };
    if decision.delay.is_zero() {
        return dispatch(app, route, call).await;
    }
    // A slow API server still does the work at once (a write is committed even if the client
    // gives up waiting); only its answer is late.
    let app = app.clone();
    let served = tokio::spawn(async move { dispatch(&app, route, call).await });
    tokio::time::sleep(decision.delay).await;
    served
        .await
        .map_err(|e| ApiError::Internal(format!("serving failed: {e}")))?
}

/// Serves a request that passed authentication and the faults.
async fn dispatch(app: &Arc<App>, route: Route, call: Call) -> Result<Response, ApiError> {
    let get_only = |value: Value| -> Result<Response, ApiError> {
        if call.method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        Ok(json_response(StatusCode::OK, value.to_string()))
    };
    match route {
        Route::Version => get_only(discovery::version()),
        Route::Health => Ok(respond::ok_text()),
        Route::CoreVersions => get_only(fedjob_scheduler::kube_api::discovery::core_versions(
            &app.server_address,
        )),
        Route::Groups => get_only(discovery::groups()),
        Route::BatchGroup => get_only(discovery::batch_group()),
        Route::CoreResources => get_only(discovery::core_resources()),
        Route::BatchResources => get_only(discovery::batch_resources()),
        Route::OpenApiV2 => {
            if call.method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            if call.header(header::ACCEPT).contains("protobuf") {
                Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        header::CONTENT_TYPE,
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    )
                    .body(Body::from(discovery::openapi_v2_protobuf()))
                    .expect("static response"))
            } else {
                get_only(discovery::openapi_v2_json())
            }
        }
        Route::OpenApiV3 => Err(ApiError::PathNotFound),
        Route::Collection {
            resource,
            namespace,
            watch,
        } => objects::collection(app, &call, resource, namespace, watch).await,
        Route::Object {
            resource,
            namespace,
            name,
            subresource,
            watch,
        } => objects::object(app, &call, resource, namespace, name, subresource, watch).await,
        Route::Pods {
            namespace,
            name,
            watch,
        } => objects::pods(app, &call, namespace, name, watch),
        Route::Events { namespace } => objects::events(app, &call, namespace),
        Route::NodeLease { name } => objects::node_lease(&call, &name),
    }
}

/// A JSON response.
fn json_response(code: StatusCode, body: impl Into<Body>) -> Response {
    respond::json(code, body)
}
