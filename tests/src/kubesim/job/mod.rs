//! What the apiserver's `batch/v1` Job strategy does to a Job on its way into storage:
//! decoding (unknown fields dropped), defaulting, the generated selector, validation, and the
//! rules of an update (immutable fields, `generation`, status kept apart from spec).
//!
//! Each function mirrors one step of kube-apiserver v1.24 (`SetDefaults_Job`,
//! `generateSelector`, `ValidateJob`, `ValidateJobUpdate`, `jobStrategy.PrepareForUpdate`) so
//! the answers match `k8s-facts/`.

use serde_json::{Map, Value, json};

mod godump;
mod validate;

pub use godump::template_dump;
pub use validate::{validate, validate_update};

use fedjob_scheduler::kube_api::status::ApiError;

use crate::kubesim::validation;

/// Spec fields newer than Kubernetes 1.24, which a 1.24 server silently drops.
const NEWER_SPEC_FIELDS: &[&str] = &[
    "podFailurePolicy",
    "successPolicy",
    "managedBy",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "podReplacementPolicy",
];

/// Decodes a request body as a `batch/v1` Job, as the apiserver's codec does: type errors are
/// a 400, unknown fields are dropped.
pub fn decode(mut body: Value) -> Result<Value, ApiError> {
    check_type_meta(&body, "batch/v1", "Job")?;
    if let Value::Object(map) = &mut body {
        map.insert("apiVersion".into(), json!("batch/v1"));
        map.insert("kind".into(), json!("Job"));
    }
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "Job in version \"v1\" cannot be handled as a Job: {e}"
        ))
    })?;
    let mut value = serde_json::to_value(&job).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(spec) = value.pointer("/spec/template/spec") {
        validation::pod_spec_quantities(spec).map_err(|e| {
            ApiError::BadRequest(format!(
                "Job in version \"v1\" cannot be handled as a Job: {e}"
            ))
        })?;
    }
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        for field in NEWER_SPEC_FIELDS {
            spec.remove(*field);
        }
    }
    Ok(value)
}

/// Refuses a body whose `apiVersion`/`kind` name another type (both may be left out).
pub fn check_type_meta(body: &Value, api_version: &str, kind: &str) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: expected a JSON object"
        )));
    }
    if let Some(v) = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .filter(|v| *v != api_version)
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({v}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(k) = body
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| *k != kind)
    {
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({k}) does not match the expected kind ({kind})"
        )));
    }
    Ok(())
}

fn obj<'a>(parent: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = parent.as_object_mut().expect("an object");
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), value);
    }
}

/// Drops maps that are present but empty; Go's `omitempty` never writes them.
fn drop_empty_maps(meta: &mut Map<String, Value>) {
    for key in ["labels", "annotations"] {
        if meta
            .get(key)
            .is_some_and(|v| v.as_object().is_some_and(Map::is_empty) || v.is_null())
        {
            meta.remove(key);
        }
    }
}

/// The image pull policy the apiserver defaults: `Always` for `:latest` or no tag, else
/// `IfNotPresent` (a digest without a tag counts as a tag).
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tag = last.split_once(':').map(|(_, t)| t);
    match (tag, digest) {
        (Some("latest"), _) => "Always",
        (None, None) if !image.is_empty() => "Always",
        _ => "IfNotPresent",
    }
}

fn default_probe(probe: &mut Value) {
    let Some(p) = probe.as_object_mut() else {
        return;
    };
    set_default(p, "timeoutSeconds", json!(1));
    set_default(p, "periodSeconds", json!(10));
    set_default(p, "successThreshold", json!(1));
    set_default(p, "failureThreshold", json!(3));
    if let Some(http) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_default(http, "scheme", json!("HTTP"));
    }
}

fn default_container(container: &mut Value) {
    let Some(c) = container.as_object_mut() else {
        return;
    };
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    set_default(c, "imagePullPolicy", json!(default_pull_policy(&image)));
    set_default(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(port, "protocol", json!("TCP"));
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for var in env {
            if let Some(field_ref) = var
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                set_default(field_ref, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe) {
            default_probe(p);
        }
    }
}

fn default_volume(volume: &mut Value) {
    let Some(v) = volume.as_object_mut() else {
        return;
    };
    for source in ["secret", "configMap", "projected", "downwardAPI"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            set_default(s, "defaultMode", json!(420));
        }
    }
}

/// `SetDefaults_PodSpec` and what it calls for containers, ports, probes and volumes.
fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            containers.iter_mut().for_each(default_container);
        }
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.iter_mut().for_each(default_volume);
    }
}

/// `SetDefaults_Job` plus the shape Go serialization gives every Job (`status: {}`,
/// `template.metadata.creationTimestamp: null`). Idempotent; runs on every write, as decoding
/// does on the real server.
pub fn default(job: &mut Value) {
    let meta = obj(job, "metadata");
    drop_empty_maps(meta);
    let spec = obj(job, "spec");
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    obj(job.get_mut("spec").expect("spec made above"), "template");
    let template = job
        .pointer_mut("/spec/template")
        .expect("template made above");
    let template_meta = obj(template, "metadata");
    drop_empty_maps(template_meta);
    template_meta
        .entry("creationTimestamp")
        .or_insert(Value::Null);
    let template_labels = template_meta.get("labels").cloned();
    default_pod_spec(obj(template, "spec"));
    // A Job without labels takes its pod template's.
    let meta = obj(job, "metadata");
    if meta.get("labels").is_none()
        && let Some(labels) =
            template_labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        meta.insert("labels".into(), labels);
    }
    obj(job, "status");
}

/// `generateSelector` and `PrepareForCreate`: the `controller-uid`/`job-name` labels and the
/// selector on them (unless `manualSelector`), `generation: 1`, an empty status.
///
/// `labels_from_template` says the Job's labels were copied from its template by [`default`]
/// (the request had none). In the apiserver that copy shares the template's map, so the
/// generated labels land on the Job too (`16-failed-job.json`); here they are copied again.
pub fn prepare_create(job: &mut Value, uid: &str, labels_from_template: bool) {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let manual = job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        let template_meta = obj(
            job.pointer_mut("/spec/template").expect("defaulted"),
            "metadata",
        );
        let labels = obj_in(template_meta, "labels");
        labels.entry("job-name").or_insert_with(|| json!(name));
        labels.entry("controller-uid").or_insert_with(|| json!(uid));
        let selector = obj(job.get_mut("spec").expect("defaulted"), "selector");
        let match_labels = obj_in(selector, "matchLabels");
        match_labels
            .entry("controller-uid")
            .or_insert_with(|| json!(uid));
    }
    let template_labels = job.pointer("/spec/template/metadata/labels").cloned();
    let meta = obj(job, "metadata");
    if (meta.get("labels").is_none() || labels_from_template)
        && let Some(labels) = template_labels
    {
        meta.insert("labels".into(), labels);
    }
    meta.insert("generation".into(), json!(1));
    job["status"] = json!({});
}

fn obj_in<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("made an object above")
}

/// `PrepareForUpdate` of the main resource: status stays as it was (it changes only through
/// `/status`), system metadata is kept, and `generation` counts spec changes.
pub fn prepare_update(new: &mut Value, old: &Value) {
    new["status"] = old.get("status").cloned().unwrap_or_else(|| json!({}));
    keep_system_metadata(new, old);
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let bumped = if new.get("spec") != old.get("spec") {
        generation + 1
    } else {
        generation
    };
    new["metadata"]["generation"] = json!(bumped);
}

/// `PrepareForUpdate` of the status subresource: only status changes.
pub fn prepare_status_update(new: &mut Value, old: &Value) {
    new["spec"] = old.get("spec").cloned().unwrap_or(Value::Null);
    keep_system_metadata(new, old);
    new["metadata"]["generation"] = old
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
}

/// What `BeforeUpdate` restores whatever the client sent: uid (when left out), creation and
/// deletion timestamps, and the server-set finalizers of a pending deletion.
pub fn keep_system_metadata(new: &mut Value, old: &Value) {
    let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if meta
        .get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(uid) = old.pointer("/metadata/uid")
    {
        meta.insert("uid".into(), uid.clone());
    }
    for field in [
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(v) if !v.is_null() => {
                meta.insert(field.into(), v.clone());
            }
            _ => {
                meta.remove(field);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}})
    }

    #[test]
    fn defaults_match_the_apiserver() {
        let mut job = decode(minimal()).unwrap();
        default(&mut job);
        prepare_create(&mut job, "u1", true);
        assert_eq!(job["spec"]["completions"], 1);
        assert_eq!(job["spec"]["parallelism"], 1);
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"controller-uid": "u1"}})
        );
        assert_eq!(
            job["spec"]["template"]["metadata"],
            json!({"creationTimestamp": null, "labels": {"controller-uid": "u1", "job-name": "a"}})
        );
        // A Job without labels takes its template's.
        assert_eq!(
            job["metadata"]["labels"],
            json!({"controller-uid": "u1", "job-name": "a"})
        );
        let c = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(job["status"], json!({}));
        job["metadata"]["uid"] = json!("u1");
        assert!(validate(&job).is_empty(), "{:?}", validate(&job));
    }

    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn decode_drops_unknown_fields_and_refuses_bad_types() {
        let mut body = minimal();
        body["spec"]["bogus"] = json!(1);
        body["spec"]["podReplacementPolicy"] = json!("Failed");
        let job = decode(body).unwrap();
        assert!(job["spec"].get("bogus").is_none());
        assert!(job["spec"].get("podReplacementPolicy").is_none());
        let mut bad = minimal();
        bad["spec"]["parallelism"] = json!("three");
        assert!(matches!(decode(bad), Err(ApiError::BadRequest(_))));
        let mut bad = minimal();
        bad["spec"]["template"]["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": "500m", "memory": "lots"}});
        let Err(ApiError::BadRequest(message)) = decode(bad) else {
            panic!("a malformed quantity is a 400");
        };
        assert_eq!(
            message,
            "Job in version \"v1\" cannot be handled as a Job: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn restart_policy_always_is_refused() {
        let mut body = minimal();
        body["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let mut job = decode(body).unwrap();
        default(&mut job);
        prepare_create(&mut job, "u", true);
        job["metadata"]["uid"] = json!("u");
        let errs = validate(&job);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.template.spec.restartPolicy");
    }
}
