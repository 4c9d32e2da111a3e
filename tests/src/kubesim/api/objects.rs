//! Handlers for collections and objects (list, watch, get, create, update, patch, apply,
//! delete), simulated pods and events.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use fedjob_scheduler::kube_api::pages;
use fedjob_scheduler::kube_api::params::{self, Params};
use fedjob_scheduler::kube_api::patch::PatchType;
use fedjob_scheduler::kube_api::selector::{FieldSelector, LabelSelector};
use fedjob_scheduler::kube_api::status::{self, ApiError};
use fedjob_scheduler::kube_api::watch as kube_watch;

use super::fields;
use super::{App, Call, json_response};
use crate::kubesim::pods::render as render_pod;
use crate::kubesim::pods::watch::{self as pod_watch, PodWatch};
use crate::kubesim::resource::Resource;
use crate::kubesim::store::{Object, ObjectKey, StoreError};
use crate::kubesim::table::{self, IncludeObject, Printer};
use crate::kubesim::watch::{self, Expiry, WatchSpec};
use crate::kubesim::writes::{Deleted, Writer};

fn printer(resource: Resource) -> Printer {
    match resource {
        Resource::Job => Printer::Job,
        Resource::Namespace => Printer::Namespace,
        Resource::Node => Printer::Node,
    }
}

fn full(object: &Object) -> Value {
    serde_json::from_slice(&object.full_json()).unwrap_or(Value::Null)
}

/// The object as the response body: itself, or a one-row Table.
fn object_response(call: &Call, code: StatusCode, object: &Object) -> Response {
    if call.wants_table() {
        let include = IncludeObject::parse(call.params.get("includeObject"));
        let table = table::render(
            printer(object.key.resource),
            &[full(object)],
            Some(object.rv),
            include,
        );
        return json_response(code, table.to_string());
    }
    json_response(code, object.full_json())
}

/// A list body built from the stored serializations (no re-encoding of the items).
fn list_body(resource: Resource, rv: u64, items: &[Arc<Object>], page: &PageInfo) -> Vec<u8> {
    let mut meta = format!(r#""resourceVersion":"{rv}""#);
    if let Some(token) = &page.next {
        meta.push_str(&format!(r#","continue":"{token}""#));
    }
    if let Some(n) = page.remaining {
        meta.push_str(&format!(r#","remainingItemCount":{n}"#));
    }
    let mut out = format!(
        r#"{{"kind":"{}","apiVersion":"{}","metadata":{{{meta}}},"items":["#,
        resource.list_kind(),
        resource.api_version()
    )
    .into_bytes();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.json);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Where a page of a list stops: the token for the next page and how many items remain.
#[derive(Debug, Default)]
struct PageInfo {
    next: Option<String>,
    remaining: Option<usize>,
}

struct Selection {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    fn parse(params: &Params, resource: Resource) -> Result<Self, ApiError> {
        Ok(Self {
            labels: params.labels()?,
            fields: params.fields(fields::selectable_fields(resource))?,
        })
    }

    fn matches(&self, object: &Object) -> bool {
        self.labels.matches(object.labels()) && self.fields.matches(|f| object.field(f))
    }
}

/// The objects a list returns and the version it is at, honouring `resourceVersion` and
/// `resourceVersionMatch` as the apiserver does.
fn list_objects(
    app: &App,
    resource: Resource,
    namespace: Option<&str>,
    params: &Params,
) -> Result<(Vec<Arc<Object>>, u64), ApiError> {
    let rv = params.resource_version()?;
    let current = app.store.current_rv();
    match (rv, params.get("resourceVersionMatch").filter(|m| !m.is_empty())) {
        (None, Some(_)) => Err(ApiError::BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".to_owned(),
        )),
        (Some(rv), Some("Exact")) => {
            if rv == 0 {
                return Err(ApiError::BadRequest(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".to_owned(),
                ));
            }
            if rv > current {
                return Err(ApiError::TooLargeResourceVersion { requested: rv, current });
            }
            match app.store.list_at(resource, namespace, rv) {
                Ok(items) => Ok((items, rv)),
                Err(StoreError::Expired { .. }) => {
                    Err(ApiError::Expired("The resourceVersion for the provided list is too old.".to_owned()))
                }
                Err(e) => Err(ApiError::Internal(e.to_string())),
            }
        }
        (_, Some(m)) if m != "NotOlderThan" => Err(ApiError::BadRequest(format!(
            "resourceVersionMatch: Unsupported value: \"{m}\": supported values: \"Exact\", \"NotOlderThan\""
        ))),
        (Some(rv), _) if rv > current => Err(ApiError::TooLargeResourceVersion { requested: rv, current }),
        _ => Ok(app.store.list(resource, namespace)),
    }
}

fn list(
    app: &App,
    call: &Call,
    resource: Resource,
    namespace: Option<&str>,
) -> Result<Response, ApiError> {
    let selection = Selection::parse(&call.params, resource)?;
    let (items, rv, page) = paginate(app, resource, namespace, &call.params, &selection)?;
    if call.wants_table() {
        let include = IncludeObject::parse(call.params.get("includeObject"));
        let objects: Vec<Value> = items.iter().map(|o| full(o)).collect();
        let mut table = table::render(printer(resource), &objects, Some(rv), include);
        if let Some(token) = page.next {
            table["metadata"]["continue"] = json!(token);
        }
        return Ok(json_response(StatusCode::OK, table.to_string()));
    }
    Ok(json_response(
        StatusCode::OK,
        list_body(resource, rv, &items, &page),
    ))
}

/// The selected items of one page of a list, its version and where the page stops.
///
/// `limit` is honoured as the API server honours it when it reads etcd: not for
/// `resourceVersion=0` (served whole from the watch cache). A `continue` token reads the next
/// page of the same snapshot, with the request's selectors.
fn paginate(
    app: &App,
    resource: Resource,
    namespace: Option<&str>,
    params: &Params,
    selection: &Selection,
) -> Result<(Vec<Arc<Object>>, u64, PageInfo), ApiError> {
    let limit = params.limit()?;
    let (snapshot, rv, after) = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            if params.get("resourceVersion").is_some_and(|v| !v.is_empty()) {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".to_owned(),
                ));
            }
            let token = pages::Continue::decode(token)?;
            let snapshot = app
                .pages
                .get(&(resource, namespace.map(str::to_owned), token.rv))
                .ok_or_else(pages::expired)?;
            (snapshot, token.rv, Some(token.start))
        }
        None => {
            let (items, rv) = list_objects(app, resource, namespace, params)?;
            let cached = params.resource_version()? == Some(0);
            if limit.is_none() || cached {
                let items = items.into_iter().filter(|o| selection.matches(o)).collect();
                return Ok((items, rv, PageInfo::default()));
            }
            let mut items: Vec<(String, Arc<Object>)> = items
                .into_iter()
                .map(|o| (relative_key(&o, namespace), o))
                .collect();
            // etcd's order: by key as bytes.
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let snapshot: Arc<Vec<Arc<Object>>> =
                Arc::new(items.into_iter().map(|(_, o)| o).collect());
            (snapshot, rv, None)
        }
    };
    // The API server counts what is left only when nothing is filtered.
    let unfiltered = params.get("labelSelector").unwrap_or_default().is_empty()
        && params.get("fieldSelector").unwrap_or_default().is_empty();
    let page = pages::page(
        &snapshot,
        rv,
        |o| relative_key(o, namespace),
        after.as_deref(),
        |o| selection.matches(o),
        limit,
        unfiltered,
    );
    if page.next.is_some() {
        app.pages.keep(
            (resource, namespace.map(str::to_owned), rv),
            snapshot.clone(),
        );
    }
    let info = PageInfo {
        next: page.next,
        remaining: page.remaining,
    };
    Ok((page.items, rv, info))
}

fn relative_key(object: &Object, namespace: Option<&str>) -> String {
    pages::relative_key(&object.key.namespace, &object.key.name, namespace)
}

fn watch_response(
    app: &App,
    call: &Call,
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
) -> Result<Response, ApiError> {
    let selection = Selection::parse(&call.params, resource)?;
    let name = name.or_else(|| {
        selection
            .fields
            .required("metadata.name")
            .map(str::to_owned)
    });
    let start = match call.params.resource_version()? {
        None | Some(0) => None,
        Some(rv) => Some(rv),
    };
    let table = call.wants_table().then(|| {
        (
            printer(resource),
            IncludeObject::parse(call.params.get("includeObject")),
        )
    });
    let spec = WatchSpec {
        resource,
        namespace,
        name,
        labels: selection.labels,
        fields: selection.fields,
        start,
        bookmarks: call.params.flag("allowWatchBookmarks"),
        bookmark_interval: app.bookmark_interval,
        timeout: call
            .params
            .timeout()?
            .unwrap_or(kube_watch::DEFAULT_TIMEOUT),
        table,
        expiry: Some(Expiry {
            faults: app.faults.clone(),
            request: call.request.clone(),
            at_once: call.expire_watch,
        }),
    };
    let stream = watch::start(app.store.clone(), spec, app.shutdown.clone());
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("a valid response"))
}

/// `…/jobs`, `/apis/batch/v1/jobs`, `/api/v1/namespaces`.
pub async fn collection(
    app: &Arc<App>,
    call: &Call,
    resource: Resource,
    namespace: Option<String>,
    watch_path: bool,
) -> Result<Response, ApiError> {
    match call.method {
        Method::GET if watch_path || call.params.flag("watch") => {
            watch_response(app, call, resource, namespace, None)
        }
        Method::GET => list(app, call, resource, namespace.as_deref()),
        Method::POST => {
            if resource.namespaced() && namespace.is_none() {
                return Err(ApiError::MethodNotAllowed);
            }
            let writer = Writer::new(&app.store, call.manager(), call.params.dry_run()?);
            let created =
                writer.create(resource, namespace.as_deref().unwrap_or(""), call.body()?)?;
            Ok(object_response(call, StatusCode::CREATED, &created))
        }
        Method::DELETE if resource == Resource::Job && namespace.is_some() => {
            let body = if call.body.is_empty() {
                None
            } else {
                Some(call.body()?)
            };
            let (options, dry_run) = params::delete_options(&call.params, body.as_ref())?;
            let selection = Selection::parse(&call.params, resource)?;
            let (items, _) = app.store.list(resource, namespace.as_deref());
            let writer = Writer::new(&app.store, call.manager(), dry_run);
            let mut deleted = Vec::new();
            for item in items.iter().filter(|o| selection.matches(o)) {
                match writer.delete(&item.key, &options) {
                    Ok(Deleted::Now(o) | Deleted::Pending(o)) => deleted.push(o),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                list_body(
                    resource,
                    app.store.current_rv(),
                    &deleted,
                    &PageInfo::default(),
                ),
            ))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// One object, or its `status`.
pub async fn object(
    app: &Arc<App>,
    call: &Call,
    resource: Resource,
    namespace: String,
    name: String,
    subresource: Option<String>,
    watch_path: bool,
) -> Result<Response, ApiError> {
    let key = ObjectKey::new(resource, &namespace, &name);
    let subresource = subresource.unwrap_or_default();
    match call.method {
        Method::GET if watch_path || (call.params.flag("watch") && subresource.is_empty()) => {
            let ns = resource.namespaced().then_some(namespace);
            watch_response(app, call, resource, ns, Some(name))
        }
        Method::GET => {
            let object = app.store.get(&key).ok_or(ApiError::NotFound {
                resource: resource.into(),
                name,
            })?;
            Ok(object_response(call, StatusCode::OK, &object))
        }
        Method::PUT => {
            let writer = Writer::new(&app.store, call.manager(), call.params.dry_run()?);
            let updated = writer.update(&key, call.body()?, &subresource)?;
            Ok(object_response(call, StatusCode::OK, &updated))
        }
        Method::PATCH => {
            let content_type = call
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
                ApiError::UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
                        .to_owned(),
                )
            })?;
            let writer = Writer::new(&app.store, call.manager(), call.params.dry_run()?);
            if patch_type == PatchType::Apply {
                if call.params.get("fieldManager").is_none_or(str::is_empty) {
                    return Err(ApiError::BadRequest(
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                            .to_owned(),
                    ));
                }
                if !subresource.is_empty() {
                    return Err(ApiError::BadRequest(
                        "server-side apply of a subresource is not supported by fedjob-kubesim"
                            .to_owned(),
                    ));
                }
                let (object, created) =
                    writer.apply(&key, call.body()?, call.params.flag("force"))?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok(object_response(call, code, &object));
            }
            let patch = call.body()?;
            let patched = writer.patch(&key, patch_type, &patch, &subresource)?;
            Ok(object_response(call, StatusCode::OK, &patched))
        }
        Method::DELETE if subresource.is_empty() => {
            let body = if call.body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(call.body()?)
            };
            let (options, dry_run) = params::delete_options(&call.params, body.as_ref())?;
            let writer = Writer::new(&app.store, call.manager(), dry_run);
            match writer.delete(&key, &options)? {
                Deleted::Now(object) => Ok(json_response(
                    StatusCode::OK,
                    status::deleted_status(resource.into(), &name, object.uid()),
                )),
                Deleted::Pending(object) => Ok(object_response(call, StatusCode::OK, &object)),
            }
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// Simulated pods: lists and watches (namespaced or all), and single GETs.
pub fn pods(
    app: &App,
    call: &Call,
    namespace: Option<String>,
    name: Option<String>,
    watch: bool,
) -> Result<Response, ApiError> {
    if call.method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let labels = call.params.labels()?;
    let fields = call.params.fields(fields::POD_FIELDS)?;
    if name.is_none() && (watch || call.params.flag("watch")) {
        let start = match call.params.resource_version()? {
            None | Some(0) => None,
            Some(rv) => Some(rv),
        };
        let spec = PodWatch {
            namespace,
            labels,
            fields,
            start,
            bookmarks: call.params.flag("allowWatchBookmarks"),
            bookmark_interval: app.bookmark_interval,
            timeout: call
                .params
                .timeout()?
                .unwrap_or(kube_watch::DEFAULT_TIMEOUT),
        };
        let stream = pod_watch::start(app.pods.clone(), spec, app.shutdown.clone());
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(Body::from_stream(stream))
            .expect("a valid response"));
    }
    let (pods, rv) = app.pods.snapshot(namespace.as_deref(), |p| {
        name.as_deref().is_none_or(|n| p.name == n)
            && labels.matches(Some(&p.labels))
            && fields.matches(|f| p.field(f))
    });
    let mut items: Vec<Value> = pods.iter().map(render_pod).collect();
    let with_type = |mut p: Value| {
        p["kind"] = json!("Pod");
        p["apiVersion"] = json!("v1");
        p
    };
    if let Some(name) = name {
        let Some(pod) = items.pop() else {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("pods \"{name}\" not found"), "reason": "NotFound",
                "details": {"name": name, "kind": "pods"}, "code": 404});
            return Ok(json_response(StatusCode::NOT_FOUND, status.to_string()));
        };
        if call.wants_table() {
            let include = IncludeObject::parse(call.params.get("includeObject"));
            let table = table::render(Printer::Pod, &[with_type(pod)], Some(rv), include);
            return Ok(json_response(StatusCode::OK, table.to_string()));
        }
        return Ok(json_response(StatusCode::OK, with_type(pod).to_string()));
    }
    if call.wants_table() {
        let objects: Vec<Value> = items.into_iter().map(with_type).collect();
        let include = IncludeObject::parse(call.params.get("includeObject"));
        return Ok(json_response(
            StatusCode::OK,
            table::render(Printer::Pod, &objects, Some(rv), include).to_string(),
        ));
    }
    let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, list.to_string()))
}

/// Events: what the simulated scheduler recorded (`kubectl describe` lists them).
pub fn events(app: &App, call: &Call, namespace: Option<String>) -> Result<Response, ApiError> {
    if call.method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    if call.params.flag("watch") {
        return Err(ApiError::BadRequest(
            "fedjob-kubesim does not serve watches of events".to_owned(),
        ));
    }
    let fields = call.params.fields(params::EVENT_FIELDS)?;
    call.params.labels()?;
    let rv = app.store.current_rv();
    let items = app.events.list(namespace.as_deref(), &fields);
    let list = json!({"kind": "EventList", "apiVersion": "v1",
                      "metadata": {"resourceVersion": rv.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, list.to_string()))
}

/// A node's Lease: the simulated kubelets renew none, so it is not found (`kubectl describe
/// node` prints "Failed to get lease: …", as in `36-describe-node.txt`).
pub fn node_lease(call: &Call, name: &str) -> Result<Response, ApiError> {
    if call.method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("leases.coordination.k8s.io \"{name}\" not found"), "reason": "NotFound",
        "details": {"name": name, "group": "coordination.k8s.io", "kind": "leases"}, "code": 404});
    Ok(json_response(StatusCode::NOT_FOUND, status.to_string()))
}
