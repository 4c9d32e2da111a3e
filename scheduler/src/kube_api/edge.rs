//! The request layer every resource of the federation's Kubernetes API goes through, once:
//! who is calling ([`crate::auth::Guard`]: bearer token or client certificate, 401/403 as
//! `Status` objects), what the path addresses ([`super::path`]; discovery and OpenAPI answered
//! from [`super::documents`]), the body (at most 3 MiB), which representation the client accepts
//! (JSON or a `Table`), and the metrics of every request. A resource ([`ServedResource`]) only
//! gets a [`Call`] ([`super::call`]) and answers with a response or an [`ApiError`].

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, Method, Request, header};
use axum::response::Response;
use bytes::Bytes;

use super::call::{Call, Representation, ServedResource, Verb};
use super::documents::Documents;
use super::params::{MAX_BODY, Params};
use super::path::{self, ApiPath};
use super::resource::ResourceType;
use super::respond;
use super::status::ApiError;
use super::table::{IncludeObject, wanted};
use crate::auth::{Access, Guard, Refusal};
use crate::metrics::Metrics;

/// The federation's Kubernetes API: the resources served and the rules every request passes.
pub struct Edge {
    guard: Guard,
    metrics: Arc<Metrics>,
    resources: Vec<Arc<dyn ServedResource>>,
    documents: Documents,
}

/// What a connection knows of its peer.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// The names in its verified TLS client certificate (empty without one).
    pub certificate_names: Vec<String>,
}

impl Edge {
    /// An API serving `resources`, checking callers with `guard`; `server_address` is the
    /// `host:port` `/api` advertises.
    pub fn new(
        guard: Guard,
        metrics: Arc<Metrics>,
        resources: Vec<Arc<dyn ServedResource>>,
        server_address: &str,
    ) -> Self {
        let documents = Documents::new(&resources, server_address);
        Self {
            guard,
            metrics,
            resources,
            documents,
        }
    }

    /// Answers one request; never fails (a failure is a `Status` response).
    pub async fn handle<B>(&self, peer: &Peer, request: Request<B>) -> Response
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let start = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let mut labels = ("", String::new());
        let response = match self.route(peer, request, &mut labels).await {
            Ok(response) => response,
            Err(err) => respond::error(&err),
        };
        let status = response.status().as_u16();
        self.metrics
            .observe_kube_request(labels.0, &labels.1, status, start.elapsed());
        tracing::debug!(%method, %uri, status, verb = labels.0, "kube api request");
        response
    }

    async fn route<B>(
        &self,
        peer: &Peer,
        request: Request<B>,
        labels: &mut (&'static str, String),
    ) -> Result<Response, ApiError>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let path = request.uri().path().to_owned();
        let Some(api_path) = path::parse(&path) else {
            self.authenticate(authorization, peer)?;
            return Err(ApiError::PathNotFound);
        };
        let ApiPath::Resource(target) = api_path else {
            *labels = ("discovery", String::new());
            // Health and version are public, as the API server's `system:public-info-viewer`.
            if !matches!(api_path, ApiPath::Version | ApiPath::Health) {
                self.authenticate(authorization, peer)?;
            }
            if request.method() != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            let accept = header_str(request.headers(), header::ACCEPT);
            return self.documents.serve(&api_path, accept);
        };
        let resource = self
            .resources
            .iter()
            .find(|r| {
                let n = r.names();
                n.group == target.group
                    && n.version() == target.version
                    && n.plural == target.resource
            })
            .cloned();
        let Some(resource) = resource else {
            self.authenticate(authorization, peer)?;
            return Err(ApiError::PathNotFound);
        };
        let names = resource.names();
        let params = Params::parse(request.uri())?;
        let watch = target.watch || params.flag("watch");
        let Some(verb) = Verb::of(request.method(), target.name.is_some(), watch) else {
            self.authenticate(authorization, peer)?;
            return Err(ApiError::MethodNotAllowed);
        };
        *labels = match target.subresource {
            Some(sub) => (verb.as_str(), format!("{}/{sub}", names.plural)),
            None => (verb.as_str(), names.plural.to_owned()),
        };
        let user = self
            .guard
            .check_user(authorization, &peer.certificate_names, verb.access())
            .map_err(|refusal| match &refusal {
                Refusal::Unauthenticated => ApiError::Unauthorized,
                Refusal::Forbidden { user } => ApiError::Forbidden {
                    resource: names,
                    name: target.name.unwrap_or_default().to_owned(),
                    detail: format!(
                        "{}: {refusal}",
                        forbidden_detail(user, verb, names, target.subresource, target.namespace)
                    ),
                },
            })?;
        let representation =
            representation(header_str(request.headers(), header::ACCEPT), &params)?;
        let call = Call {
            verb,
            namespace: target.namespace.map(str::to_owned),
            name: target.name.map(str::to_owned),
            subresource: target.subresource.map(str::to_owned),
            representation,
            user,
            params,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(Body::new(body), MAX_BODY)
            .await
            .map_err(|_| ApiError::RequestEntityTooLarge(MAX_BODY))?;
        let call = Call {
            headers: parts.headers,
            body,
            ..call
        };
        resource.serve(call).await
    }

    /// Checks that the caller is a known user (discovery, and paths that are not served).
    fn authenticate(&self, authorization: Option<&str>, peer: &Peer) -> Result<String, ApiError> {
        self.guard
            .check_user(authorization, &peer.certificate_names, Access::Read)
            .map_err(|_| ApiError::Unauthorized)
    }
}

/// RBAC's sentence: `User "bob" cannot delete resource "jobs" in API group "batch" in the
/// namespace "default"`.
fn forbidden_detail(
    user: &str,
    verb: Verb,
    names: &ResourceType,
    subresource: Option<&str>,
    namespace: Option<&str>,
) -> String {
    let resource = match subresource {
        Some(sub) => format!("{}/{sub}", names.plural),
        None => names.plural.to_owned(),
    };
    let mut detail = format!(
        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\"",
        verb.as_str(),
        names.group
    );
    match namespace {
        Some(ns) => detail.push_str(&format!(" in the namespace \"{ns}\"")),
        None => detail.push_str(" at the cluster scope"),
    }
    detail
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The representation an `Accept` header asks for: a Table when its first choice is one, JSON
/// when it takes JSON at all; 406 otherwise (the API server also speaks protobuf, this one not).
fn representation(accept: &str, params: &Params) -> Result<Representation, ApiError> {
    if wanted(accept) {
        return Ok(Representation::Table(IncludeObject::parse(
            params.get("includeObject"),
        )));
    }
    let takes_json = accept.trim().is_empty()
        || accept.split(',').any(|choice| {
            let media = choice.split(';').next().unwrap_or_default().trim();
            matches!(media, "application/json" | "application/*" | "*/*" | "")
        });
    if takes_json {
        Ok(Representation::Json)
    } else {
        Err(ApiError::NotAcceptable(
            "application/json, application/yaml".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_as_the_api_server_names_them() {
        assert_eq!(Verb::of(&Method::GET, true, false), Some(Verb::Get));
        assert_eq!(Verb::of(&Method::GET, false, false), Some(Verb::List));
        assert_eq!(Verb::of(&Method::GET, false, true), Some(Verb::Watch));
        assert_eq!(Verb::of(&Method::POST, false, false), Some(Verb::Create));
        assert_eq!(Verb::of(&Method::POST, true, false), None);
        assert_eq!(
            Verb::of(&Method::DELETE, false, false),
            Some(Verb::DeleteCollection)
        );
        assert_eq!(Verb::of(&Method::HEAD, true, false), None);
    }

    #[test]
    fn accept_headers() {
        let params = Params::default();
        let kubectl_get = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            representation(kubectl_get, &params).unwrap(),
            Representation::Table(IncludeObject::Metadata)
        );
        let describe = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(
            representation(describe, &params).unwrap(),
            Representation::Json
        );
        assert_eq!(representation("", &params).unwrap(), Representation::Json);
        let err = representation("application/vnd.kubernetes.protobuf", &params).unwrap_err();
        assert_eq!(err.code(), 406);
    }

    #[test]
    fn forbidden_reads_like_rbac() {
        use crate::kube_api::resource::JOBS;
        assert_eq!(
            forbidden_detail("bob", Verb::Delete, &JOBS, None, Some("default")),
            "User \"bob\" cannot delete resource \"jobs\" in API group \"batch\" in the namespace \"default\""
        );
    }
}
