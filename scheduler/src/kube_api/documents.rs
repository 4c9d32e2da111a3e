//! The documents a client reads before its first real request, built once from the resources
//! served: `/version`, discovery (`/api`, `/api/v1`, `/apis`, `/apis/GROUP`,
//! `/apis/GROUP/VERSION`) and OpenAPI (`/openapi/v3` and one document per group version,
//! `/openapi/v2`). They list exactly what is served.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::call::ServedResource;
use super::discovery;
use super::openapi;
use super::path::ApiPath;
use super::respond;
use super::status::ApiError;

/// The Kubernetes version whose API this one follows (`/version`).
const KUBERNETES_MINOR: &str = "32";

/// The discovery and OpenAPI documents of an API.
pub struct Documents {
    version: String,
    core_versions: String,
    groups: String,
    group_documents: BTreeMap<String, String>,
    resource_lists: BTreeMap<(String, String), String>,
    openapi_index: String,
    openapi: BTreeMap<String, (String, String)>,
}

/// `apis/batch/v1` or `api/v1`: how OpenAPI v3 names a group version.
fn openapi_name(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(text: &str) -> String {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

impl Documents {
    /// The documents of an API serving `resources`; `/api` advertises `server_address`.
    pub fn new(resources: &[Arc<dyn ServedResource>], server_address: &str) -> Self {
        let mut by_group_version: BTreeMap<(String, String), Vec<&Arc<dyn ServedResource>>> =
            BTreeMap::new();
        for r in resources {
            let n = r.names();
            by_group_version
                .entry((n.group.to_owned(), n.version().to_owned()))
                .or_default()
                .push(r);
        }
        let core: Vec<&str> = by_group_version
            .keys()
            .filter(|(group, _)| group.is_empty())
            .map(|(_, version)| version.as_str())
            .collect();
        let core_versions = discovery::api_versions(&core, server_address).to_string();
        let mut resource_lists = BTreeMap::new();
        let mut group_documents = BTreeMap::new();
        let mut groups = Vec::new();
        let mut openapi = BTreeMap::new();
        let crate_version = env!("CARGO_PKG_VERSION");
        for ((group, version), served) in &by_group_version {
            let group_version = if group.is_empty() {
                version.clone()
            } else {
                format!("{group}/{version}")
            };
            let entries = served.iter().flat_map(|r| r.discovery()).collect();
            resource_lists.insert(
                (group.clone(), version.clone()),
                discovery::resource_list(&group_version, entries).to_string(),
            );
            if !group.is_empty() {
                groups.push(discovery::group(group, version));
                group_documents.insert(
                    group.clone(),
                    discovery::group_document(group, version).to_string(),
                );
            }
            let paths: Vec<(String, Value)> =
                served.iter().flat_map(|r| r.openapi_paths()).collect();
            let doc = openapi::document(&paths, crate_version).to_string();
            openapi.insert(openapi_name(group, version), (hash(&doc), doc));
        }
        let index: serde_json::Map<String, Value> = openapi
            .iter()
            .map(|(name, (hash, _))| {
                (
                    name.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{name}?hash={hash}")}),
                )
            })
            .collect();
        Self {
            version: discovery::version(
                "1",
                KUBERNETES_MINOR,
                &format!("v1.{KUBERNETES_MINOR}.0+fedjob-{crate_version}"),
            )
            .to_string(),
            core_versions,
            groups: discovery::group_list(groups).to_string(),
            group_documents,
            resource_lists,
            openapi_index: json!({ "paths": index }).to_string(),
            openapi,
        }
    }

    /// Answers a GET of a discovery, OpenAPI, version or health path.
    pub fn serve(&self, path: &ApiPath<'_>, accept: &str) -> Result<Response, ApiError> {
        let body = match path {
            ApiPath::Version => &self.version,
            ApiPath::Health => return Ok(respond::ok_text()),
            ApiPath::CoreVersions => &self.core_versions,
            ApiPath::Groups => &self.groups,
            ApiPath::Group(group) => self
                .group_documents
                .get(*group)
                .ok_or(ApiError::PathNotFound)?,
            ApiPath::GroupVersion { group, version } => self
                .resource_lists
                .get(&((*group).to_owned(), (*version).to_owned()))
                .ok_or(ApiError::PathNotFound)?,
            ApiPath::OpenApiV2 => return Ok(openapi_v2(accept)),
            ApiPath::OpenApiV3(rest) if rest.is_empty() => &self.openapi_index,
            ApiPath::OpenApiV3(rest) => {
                &self
                    .openapi
                    .get(rest.as_str())
                    .ok_or(ApiError::PathNotFound)?
                    .1
            }
            ApiPath::Resource(_) => return Err(ApiError::PathNotFound),
        };
        Ok(respond::json(StatusCode::OK, body.clone()))
    }
}

/// `/openapi/v2`: a valid document with no definitions, as protobuf when asked (kubectl reads
/// it before every write and refuses to run without one; it finds what it needs in v3).
fn openapi_v2(accept: &str) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    if accept.contains("protobuf") {
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(discovery::openapi_v2_protobuf(
                "fedjob", version,
            )))
            .expect("a valid response");
    }
    respond::json(
        StatusCode::OK,
        discovery::openapi_v2_json("fedjob", version).to_string(),
    )
}
