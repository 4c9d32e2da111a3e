//! What one request to a resource of the federation's Kubernetes API is, once the edge
//! ([`super::edge`]) has read and checked it: the [`Verb`], the [`Call`] a resource answers and
//! the [`ServedResource`] trait every resource implements. Kept apart from the edge so the
//! documents built from the resources (discovery, OpenAPI) need not depend on the edge that
//! serves them.

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::params::Params;
use super::resource::ResourceType;
use super::status::ApiError;
use super::table::IncludeObject;
use crate::auth::Access;

/// What a request asks of a resource, as the API server's `RequestInfo` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET one object.
    Get,
    /// GET a collection.
    List,
    /// GET a collection or object with `watch=true` (or under `/watch/`).
    Watch,
    /// POST to a collection.
    Create,
    /// PUT an object.
    Update,
    /// PATCH an object.
    Patch,
    /// DELETE an object.
    Delete,
    /// DELETE a collection.
    DeleteCollection,
}

impl Verb {
    /// The verb's name, as RBAC and audit logs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    pub(super) fn of(method: &Method, named: bool, watch: bool) -> Option<Verb> {
        Some(match (method, named) {
            (&Method::GET, _) if watch => Verb::Watch,
            (&Method::GET, true) => Verb::Get,
            (&Method::GET, false) => Verb::List,
            (&Method::POST, false) => Verb::Create,
            (&Method::PUT, true) => Verb::Update,
            (&Method::PATCH, true) => Verb::Patch,
            (&Method::DELETE, true) => Verb::Delete,
            (&Method::DELETE, false) => Verb::DeleteCollection,
            _ => return None,
        })
    }

    pub(super) fn access(self) -> Access {
        match self {
            Verb::Get | Verb::List | Verb::Watch => Access::Read,
            _ => Access::Write,
        }
    }
}

/// The representation of objects a client asked for (`Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// The objects themselves, as JSON.
    Json,
    /// A `meta.k8s.io/v1` `Table` of them, rows carrying what `includeObject` says.
    Table(IncludeObject),
}

/// One request to a resource, read and checked.
pub struct Call {
    /// What it asks.
    pub verb: Verb,
    /// The namespace of the path; `None` for all namespaces.
    pub namespace: Option<String>,
    /// The object's name, for verbs on one object.
    pub name: Option<String>,
    /// The subresource (`status`), when the path names one.
    pub subresource: Option<String>,
    /// The query parameters.
    pub params: Params,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The body (empty for most reads).
    pub body: Bytes,
    /// How the answer must be represented.
    pub representation: Representation,
    /// The user (empty without `--tokens`).
    pub user: String,
}

impl Call {
    /// A header's value ("" when absent or not text).
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as JSON (or YAML), by its `Content-Type`.
    pub fn json_body(&self) -> Result<Value, ApiError> {
        super::params::decode_body(self.header(header::CONTENT_TYPE), &self.body)
    }

    /// The body, if it holds anything but whitespace.
    pub fn optional_json_body(&self) -> Result<Option<Value>, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        self.json_body().map(Some)
    }
}

/// A resource the Kubernetes API serves, with its discovery and OpenAPI entries.
#[async_trait]
pub trait ServedResource: Send + Sync {
    /// Its names.
    fn names(&self) -> &'static ResourceType;

    /// Its `APIResourceList` entries (the resource and its subresources).
    fn discovery(&self) -> Vec<Value>;

    /// Its OpenAPI v3 path items: `(path, item)`.
    fn openapi_paths(&self) -> Vec<(String, Value)>;

    /// Answers one call.
    async fn serve(&self, call: Call) -> Result<Response, ApiError>;
}
