//! Writing federated Jobs through the Kubernetes API: create, update, the four patch types
//! (server-side apply included), delete. Each decodes the request, computes the new Job (and
//! its managed fields) inside the control plane's own change of the Job — so it applies to the
//! latest version, serialised with every other change — and lets the control plane validate,
//! store and re-plan: the same rules and texts as the gRPC API.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::{Value, json};

use super::read::object_response;
use super::view::JobView;
use super::{Jobs, api_error};
use crate::control_plane::ControlPlaneError;
use crate::kube_api::apply;
use crate::kube_api::call::Call;
use crate::kube_api::clock;
use crate::kube_api::managed::{self, Author};
use crate::kube_api::params::{self, Propagation, parse_rv};
use crate::kube_api::patch::{self, PatchError, PatchType};
use crate::kube_api::resource::JOBS;
use crate::kube_api::respond;
use crate::kube_api::schema;
use crate::kube_api::status::{self, ApiError};
use crate::model::edit;
use crate::model::job::job_key;
use crate::model::manifest::{self, FieldValidation};

/// What a write does with fields a `batch/v1` Job does not have (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fields {
    /// Refuse the request (400), naming them: what kubectl asks for.
    Strict,
    /// Drop them, with a `Warning` header each: the API server's default.
    Warn,
    /// Drop them.
    Ignore,
}

impl Fields {
    fn of(call: &Call) -> Result<Self, ApiError> {
        match call.params.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(Fields::Warn),
            Some("Strict") => Ok(Fields::Strict),
            Some("Ignore") => Ok(Fields::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// A Job decoded from a request, and the warnings about what was dropped.
struct Decoded {
    job: Job,
    warnings: Vec<String>,
}

/// A JSON object → a `batch/v1` Job, by the same decoding as the gRPC API. The API server
/// answers a body that does not decode as a Job (wrong types, unknown fields under `Strict`,
/// another `kind`) with 400, so this does too, with the federation's message.
fn decode(value: Value, namespace: &str, fields: Fields) -> Result<Decoded, ApiError> {
    let mode = match fields {
        Fields::Strict => FieldValidation::Strict,
        Fields::Warn | Fields::Ignore => FieldValidation::Ignore,
    };
    let input = (fields == Fields::Warn).then(|| value.clone());
    let job = manifest::decode_job(value, namespace, mode)
        .map_err(|invalid| ApiError::BadRequest(invalid.to_string()))?;
    let warnings = match input {
        Some(input) => {
            let decoded = serde_json::to_value(&job).unwrap_or_default();
            manifest::unknown_fields(&input, &decoded)
                .into_iter()
                .filter(|f| !matches!(f.as_str(), "status" | "placements" | "unplaced"))
                .map(|f| format!("unknown field \"{f}\""))
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Decoded { job, warnings })
}

/// The user's Job as JSON, as a patch or an apply sees it (with `kind` and `apiVersion`).
fn job_value(job: &Job) -> Value {
    let mut value = serde_json::to_value(job).unwrap_or_else(|_| json!({}));
    value["apiVersion"] = json!(JOBS.api_version);
    value["kind"] = json!(JOBS.kind);
    value
}

/// Sets `job`'s managed fields to those in `value` (as written by [`crate::kube_api::managed`]).
fn take_managed_fields(job: &mut Job, value: &Value) {
    job.metadata.managed_fields = value
        .pointer("/metadata/managedFields")
        .and_then(|m| serde_json::from_value::<Vec<ManagedFieldsEntry>>(m.clone()).ok());
}

/// Records an update by `author` from `old` to `new` in `new`'s managed fields, as the API
/// server records them: after defaulting, so defaulted fields count as the writer's.
fn record_update(old: &Job, new: &mut Job, author: Author<'_>) {
    edit::carry_over(old, new);
    let mut after = job_value(new);
    apply::record_update(&job_value(old), &mut after, author);
    take_managed_fields(new, &after);
}

/// A body whose name or namespace is not the URL's: the API server's 400.
fn check_identity(value: &Value, namespace: &str, name: &str) -> Result<(), ApiError> {
    let own = |p: &str| value.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let body_name = own("/metadata/name");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_namespace = own("/metadata/namespace");
    if !body_namespace.is_empty() && body_namespace != namespace {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_owned(),
        ));
    }
    Ok(())
}

/// `metadata.resourceVersion` of a body or patch, as a precondition.
fn precondition(value: &Value) -> Result<Option<u64>, ApiError> {
    match value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        None | Some("") => Ok(None),
        Some(rv) => parse_rv(rv).map(Some),
    }
}

/// A change computed inside the control plane's edit: the request's own failure is kept here
/// and handed back as what it is, not as a control-plane error.
struct Edit {
    failure: Option<ApiError>,
}

impl Edit {
    fn new() -> Self {
        Self { failure: None }
    }

    /// Runs one attempt of `change`; its failure stops the edit.
    fn attempt(
        &mut self,
        change: impl FnOnce() -> Result<Job, ApiError>,
    ) -> Result<Job, ControlPlaneError> {
        change().map_err(|e| {
            self.failure = Some(e);
            ControlPlaneError::FailedPrecondition(String::new())
        })
    }

    /// The outcome: the request's failure first, then the control plane's.
    fn finish<T>(self, result: Result<T, ControlPlaneError>, name: &str) -> Result<T, ApiError> {
        match (self.failure, result) {
            (Some(failure), Err(_)) => Err(failure),
            (_, result) => result.map_err(|e| api_error(e, name)),
        }
    }
}

/// The response to a write: the Job, with a `Warning` header per dropped field.
fn written(code: StatusCode, view: &JobView, call: &Call, warnings: &[String]) -> Response {
    let mut response = object_response(code, view, call.representation);
    for w in warnings {
        if let Ok(value) =
            HeaderValue::from_str(&format!("299 - {}", serde_json::Value::from(w.as_str())))
        {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

impl Jobs {
    fn manager(call: &Call) -> String {
        managed::manager_name(
            call.params.get("fieldManager"),
            Some(call.header(header::USER_AGENT)),
        )
    }

    fn view(&self, stored: &crate::records::StoredJob) -> JobView {
        JobView::of(stored, &self.cp.cluster_views())
    }

    /// POST: creates a Job from a whole `batch/v1` Job.
    pub(super) async fn create(&self, call: &Call, namespace: &str) -> Result<Response, ApiError> {
        let fields = Fields::of(call)?;
        let dry_run = call.params.dry_run()?;
        let manager = Self::manager(call);
        let Decoded { mut job, warnings } = decode(call.json_body()?, namespace, fields)?;
        let now = clock::now();
        let author = author(&manager, &now);
        // Owned as the API server records a create: the defaulted object, as an update.
        let mut defaulted = job.clone();
        edit::default_new(&mut defaulted, String::new(), jiff::Timestamp::now());
        let mut value = job_value(&defaulted);
        apply::record_update(&schema::zero_object(JOBS.kind), &mut value, author);
        take_managed_fields(&mut job, &value);
        let name = job.metadata.name.clone().unwrap_or_default();
        let stored = self
            .cp
            .create_job(job, dry_run)
            .await
            .map_err(|e| api_error(e, &name))?;
        Ok(written(
            StatusCode::CREATED,
            &self.view(&stored),
            call,
            &warnings,
        ))
    }

    /// PUT: replaces the Job's labels, annotations and spec, guarded by the body's
    /// `metadata.resourceVersion` when it has one.
    pub(super) async fn update(
        &self,
        call: &Call,
        namespace: &str,
        name: &str,
    ) -> Result<Response, ApiError> {
        let fields = Fields::of(call)?;
        let dry_run = call.params.dry_run()?;
        let manager = Self::manager(call);
        let body = call.json_body()?;
        check_identity(&body, namespace, name)?;
        let expected = precondition(&body)?;
        let Decoded { job, warnings } = decode(body, namespace, fields)?;
        let now = clock::now();
        let mut edit = Edit::new();
        let result = self
            .cp
            .edit_job(&job_key(namespace, name), expected, dry_run, |old| {
                edit.attempt(|| {
                    let mut new = job.clone();
                    new.metadata.managed_fields = None;
                    record_update(old, &mut new, author(&manager, &now));
                    Ok(new)
                })
            })
            .await;
        let stored = edit.finish(result, name)?;
        Ok(written(
            StatusCode::OK,
            &self.view(&stored),
            call,
            &warnings,
        ))
    }

    /// PATCH with a JSON, merge or strategic merge patch, or a server-side apply.
    pub(super) async fn patch(
        &self,
        call: &Call,
        namespace: &str,
        name: &str,
    ) -> Result<Response, ApiError> {
        let patch_type = PatchType::from_content_type(call.header(header::CONTENT_TYPE))
            .ok_or_else(|| {
                ApiError::UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
                        .to_owned(),
                )
            })?;
        if patch_type == PatchType::Apply {
            return self.apply(call, namespace, name).await;
        }
        let fields = Fields::of(call)?;
        let dry_run = call.params.dry_run()?;
        let manager = Self::manager(call);
        let document = call.json_body()?;
        let expected = match patch_type {
            PatchType::Merge | PatchType::Strategic => precondition(&document)?,
            PatchType::Json | PatchType::Apply => None,
        };
        let now = clock::now();
        let mut warnings = Vec::new();
        let mut edit = Edit::new();
        let result = self
            .cp
            .edit_job(&job_key(namespace, name), expected, dry_run, |old| {
                edit.attempt(|| {
                    let mut target = job_value(old);
                    match patch_type {
                        PatchType::Merge => patch::merge(&mut target, &document),
                        PatchType::Json => patch::json(&mut target, &document),
                        PatchType::Strategic | PatchType::Apply => {
                            patch::strategic(&mut target, &document)
                        }
                    }
                    .map_err(|e| match e {
                        PatchError::Malformed(m) => ApiError::BadRequest(m),
                        PatchError::Failed(m) => ApiError::PatchFailed(m),
                    })?;
                    check_identity(&target, namespace, name)?;
                    if let Some(meta) = target.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                    let decoded = decode(target, namespace, fields)?;
                    warnings = decoded.warnings;
                    let mut new = decoded.job;
                    record_update(old, &mut new, author(&manager, &now));
                    Ok(new)
                })
            })
            .await;
        let stored = edit.finish(result, name)?;
        Ok(written(
            StatusCode::OK,
            &self.view(&stored),
            call,
            &warnings,
        ))
    }

    /// Server-side apply (`application/apply-patch+yaml`): creates the Job when it is missing.
    async fn apply(&self, call: &Call, namespace: &str, name: &str) -> Result<Response, ApiError> {
        let manager = apply::require_manager(call.params.get("fieldManager"))?.to_owned();
        let fields = Fields::of(call)?;
        let dry_run = call.params.dry_run()?;
        let force = call.params.flag("force");
        let config = call.json_body()?;
        check_identity(&config, namespace, name)?;
        let mut config = config;
        if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("name".to_owned(), json!(name));
        }
        let key = job_key(namespace, name);
        let now = clock::now();
        loop {
            if self
                .cp
                .read_job(&key)
                .await
                .map_err(|e| api_error(e, name))?
                .is_none()
            {
                let created = apply::apply_new(&config, author(&manager, &now), |_| {});
                let Decoded { mut job, warnings } = decode(created.clone(), namespace, fields)?;
                take_managed_fields(&mut job, &created);
                match self.cp.create_job(job, dry_run).await {
                    Err(ControlPlaneError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(api_error(e, name)),
                    Ok(stored) => {
                        return Ok(written(
                            StatusCode::CREATED,
                            &self.view(&stored),
                            call,
                            &warnings,
                        ));
                    }
                }
            }
            let mut warnings = Vec::new();
            let mut edit = Edit::new();
            let result = self
                .cp
                .edit_job(&key, None, dry_run, |old| {
                    edit.attempt(|| {
                        let live = job_value(old);
                        // Defaulted as the control plane will default it, so what the
                        // configuration omits but the server fills is no change.
                        let merged =
                            apply::apply(&live, &config, author(&manager, &now), force, |v| {
                                if let Ok(mut job) = serde_json::from_value::<Job>(v.clone()) {
                                    edit::carry_over(old, &mut job);
                                    let managed = v.pointer("/metadata/managedFields").cloned();
                                    *v = job_value(&job);
                                    if let Some(m) = managed {
                                        v["metadata"]["managedFields"] = m;
                                    }
                                }
                            })?;
                        let decoded = decode(merged.clone(), namespace, fields)?;
                        warnings = decoded.warnings;
                        let mut new = decoded.job;
                        take_managed_fields(&mut new, &merged);
                        Ok(new)
                    })
                })
                .await;
            match edit.finish(result, name) {
                // Deleted meanwhile: create it.
                Err(ApiError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
                Ok(stored) => {
                    return Ok(written(
                        StatusCode::OK,
                        &self.view(&stored),
                        call,
                        &warnings,
                    ));
                }
            }
        }
    }

    /// DELETE: without a body or with `propagationPolicy: Orphan` the Job goes at once and its
    /// shards stay (SPEC §7); `Background` or `Foreground` delete the shards too, and the Job
    /// stays, terminating, until every cluster confirmed.
    pub(super) async fn delete(
        &self,
        call: &Call,
        namespace: &str,
        name: &str,
    ) -> Result<Response, ApiError> {
        let body = call.optional_json_body()?;
        let (options, dry_run) = params::delete_options(&call.params, body.as_ref())?;
        let cascade = matches!(
            options.propagation,
            Some(Propagation::Background | Propagation::Foreground)
        );
        let key = job_key(namespace, name);
        let current = self
            .cp
            .read_job(&key)
            .await
            .map_err(|e| api_error(e, name))?
            .ok_or_else(|| ApiError::NotFound {
                resource: &JOBS,
                name: name.to_owned(),
            })?;
        let uid = current.record.uid().to_owned();
        let precondition_failed = |detail: String| ApiError::Conflict {
            resource: &JOBS,
            name: name.to_owned(),
            detail,
        };
        if let Some(expected) = options.uid.as_deref().filter(|u| *u != uid) {
            return Err(precondition_failed(format!(
                "Precondition failed: UID in precondition: {expected}, UID in object meta: {uid}"
            )));
        }
        if let Some(rv) = options
            .resource_version
            .filter(|rv| *rv != current.mod_revision)
        {
            return Err(precondition_failed(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                current.mod_revision
            )));
        }
        let gone = || respond::json(StatusCode::OK, status::deleted_status(&JOBS, name, &uid));
        if dry_run {
            if !cascade {
                return Ok(gone());
            }
            let mut value = self.view(&current).value();
            value["metadata"]["deletionTimestamp"] = json!(clock::now());
            let mut view = self.view(&current);
            view.json = value.to_string().into();
            return Ok(object_response(StatusCode::OK, &view, call.representation));
        }
        match self
            .cp
            .delete_job(&key, cascade)
            .await
            .map_err(|e| api_error(e, name))?
        {
            None => Ok(gone()),
            Some(terminating) => Ok(object_response(
                StatusCode::OK,
                &self.view(&terminating),
                call.representation,
            )),
        }
    }
}

/// An author of batch/v1 writes.
fn author<'a>(manager: &'a str, now: &'a str) -> Author<'a> {
    Author {
        api_version: JOBS.api_version,
        manager,
        subresource: "",
        now,
    }
}
