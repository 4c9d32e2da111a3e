//! What the apiserver's `batch/v1` Job strategy does to a Job on its way into storage:
//! decoding (unknown fields dropped), defaulting, the generated selector, validation, and the
//! rules of an update (immutable fields, `generation`, status kept apart from spec).
//!
//! Each function mirrors one step of kube-apiserver v1.24 (`SetDefaults_Job`,
//! `generateSelector`, `ValidateJob`, `ValidateJobUpdate`, `jobStrategy.PrepareForUpdate`) so
//! the answers match `k8s-facts/`.

use serde_json::{Map, Value, json};

use super::status::ApiError;
use super::validation::{self, FieldError, GoValue};

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

fn labels_of(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `ValidateJob`: metadata, the generated selector, the spec and its pod template.
pub fn validate(job: &Value) -> Vec<FieldError> {
    let meta = job.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut errs = validation::object_meta(&meta, validation::dns1123_subdomain);
    errs.extend(validate_generated_selector(job));
    errs.extend(validate_spec(job.get("spec").unwrap_or(&Value::Null)));
    errs
}

fn validate_generated_selector(job: &Value) -> Vec<FieldError> {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return Vec::new();
    }
    let uid = job
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if uid.is_empty() {
        return vec![FieldError::required("metadata.uid", "")];
    }
    let Some(selector) = job.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return vec![FieldError::required("spec.selector", "")];
    };
    let mut errs = Vec::new();
    let template_labels = labels_of(job.pointer("/spec/template/metadata/labels"));
    for (key, expected) in [("controller-uid", uid), ("job-name", name)] {
        let field = format!("spec.template.metadata.labels[{key}]");
        match template_labels.get(key).and_then(Value::as_str) {
            None => errs.push(FieldError::required(field, format!("must be '{expected}'"))),
            Some(actual) if actual != expected => errs.push(FieldError::invalid(
                field,
                GoValue::from_json(&Value::Object(template_labels.clone())),
                format!("must be '{expected}'"),
            )),
            Some(_) => {}
        }
    }
    let expected = json!({"controller-uid": uid, "job-name": name});
    if !selector_matches(selector, &expected) {
        errs.push(FieldError::invalid(
            "spec.selector",
            selector_go(selector),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// Whether a `LabelSelector` object's `matchLabels` (and simple `matchExpressions`) select
/// `labels`.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let matched = super::selector::LabelSelector::from_match_labels(selector.get("matchLabels"))
        .matches(Some(labels));
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    matched
        && expressions.iter().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let value = labels.get(key).and_then(Value::as_str);
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// A `LabelSelector` as Go's `%#v` prints it.
fn selector_go(selector: &Value) -> GoValue {
    let labels = match GoValue::from_json(selector.get("matchLabels").unwrap_or(&json!({}))) {
        GoValue::Raw(s) => s,
        _ => "map[string]string(nil)".to_owned(),
    };
    let expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let expressions = if expressions == 0 {
        "[]v1.LabelSelectorRequirement(nil)".to_owned()
    } else {
        format!("[]v1.LabelSelectorRequirement{{/* {expressions} requirements */}}")
    };
    GoValue::Raw(format!(
        "v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{expressions}}}"
    ))
}

fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        errs.extend(validation::non_negative(
            spec.get(field),
            &format!("spec.{field}"),
        ));
    }
    if let Some(mode) = spec.get("completionMode").and_then(Value::as_str) {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                "spec.completionMode",
                GoValue::Str(mode.to_owned()),
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            if spec.get("completions").is_none_or(Value::is_null) {
                errs.push(FieldError::required(
                    "spec.completions",
                    "when completion mode is Indexed",
                ));
            }
            if let Some(p) = spec
                .get("parallelism")
                .and_then(Value::as_i64)
                .filter(|p| *p > 100_000)
            {
                errs.push(FieldError::invalid(
                    "spec.parallelism",
                    GoValue::Int(p),
                    "must be less than or equal to 100000 when completion mode is Indexed",
                ));
            }
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    errs.extend(validate_pod_template(template));
    let restart = template
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match restart {
        "" | "Always" => errs.push(FieldError::required(
            "spec.template.spec.restartPolicy",
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            GoValue::Str(other.to_owned()),
            &["OnFailure", "Never"],
        )),
    }
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(selector) => {
            errs.extend(validation::labels(
                selector.get("matchLabels"),
                "spec.selector.matchLabels",
            ));
            let labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if !selector_matches(selector, &labels) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    GoValue::from_json(&labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs
}

/// `ValidatePodTemplateSpec` for the parts a Job's template uses.
fn validate_pod_template(template: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    errs.extend(validation::labels(
        template.pointer("/metadata/labels"),
        "spec.template.metadata.labels",
    ));
    errs.extend(validation::annotations(
        template.pointer("/metadata/annotations"),
        "spec.template.metadata.annotations",
    ));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    let base = "spec.template.spec";
    let mut volume_names = Vec::new();
    if let Some(volumes) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in volumes.iter().enumerate() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
            let field = format!("{base}.volumes[{i}].name");
            if name.is_empty() {
                errs.push(FieldError::required(field, ""));
            } else if volume_names.contains(&name) {
                errs.push(FieldError::duplicate(field, GoValue::Str(name.to_owned())));
            } else {
                for msg in validation::dns1123_label(name) {
                    errs.push(FieldError::invalid(
                        field.clone(),
                        GoValue::Str(name.to_owned()),
                        msg,
                    ));
                }
            }
            volume_names.push(name);
        }
    }
    let mut names = Vec::new();
    if let Some(init) = spec.get("initContainers").and_then(Value::as_array) {
        errs.extend(validate_containers(
            init,
            &format!("{base}.initContainers"),
            &mut names,
            &volume_names,
        ));
    }
    match spec
        .get("containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        None => errs.push(FieldError::required(format!("{base}.containers"), "")),
        Some(containers) => errs.extend(validate_containers(
            containers,
            &format!("{base}.containers"),
            &mut names,
            &volume_names,
        )),
    }
    let restart = spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !["Always", "OnFailure", "Never"].contains(&restart) {
        if restart.is_empty() {
            errs.push(FieldError::required(format!("{base}.restartPolicy"), ""));
        } else {
            errs.push(FieldError::not_supported(
                format!("{base}.restartPolicy"),
                GoValue::Str(restart.to_owned()),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(dns) = spec.get("dnsPolicy").and_then(Value::as_str)
        && !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(&dns)
    {
        errs.push(FieldError::not_supported(
            format!("{base}.dnsPolicy"),
            GoValue::Str(dns.to_owned()),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    errs.extend(validation::non_negative(
        spec.get("terminationGracePeriodSeconds"),
        &format!("{base}.terminationGracePeriodSeconds"),
    ));
    if let Some(ads) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && !(1..=i64::from(i32::MAX)).contains(&ads)
    {
        errs.push(FieldError::invalid(
            format!("{base}.activeDeadlineSeconds"),
            GoValue::Int(ads),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs
}

fn validate_containers<'a>(
    containers: &'a [Value],
    path: &str,
    names: &mut Vec<&'a str>,
    volumes: &[&str],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(format!("{at}.name"), ""));
        } else if names.contains(&name) {
            errs.push(FieldError::duplicate(
                format!("{at}.name"),
                GoValue::Str(name.to_owned()),
            ));
        } else {
            for msg in validation::dns1123_label(name) {
                errs.push(FieldError::invalid(
                    format!("{at}.name"),
                    GoValue::Str(name.to_owned()),
                    msg,
                ));
            }
        }
        names.push(name);
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|i| i.trim().is_empty())
        {
            errs.push(FieldError::required(format!("{at}.image"), ""));
        }
        if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str)
            && !["Always", "IfNotPresent", "Never"].contains(&p)
        {
            errs.push(FieldError::not_supported(
                format!("{at}.imagePullPolicy"),
                GoValue::Str(p.to_owned()),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
        if let Some(p) = c.get("terminationMessagePolicy").and_then(Value::as_str)
            && !["File", "FallbackToLogsOnError"].contains(&p)
        {
            errs.push(FieldError::not_supported(
                format!("{at}.terminationMessagePolicy"),
                GoValue::Str(p.to_owned()),
                &["File", "FallbackToLogsOnError"],
            ));
        }
        if let Some(ports) = c.get("ports").and_then(Value::as_array) {
            for (j, port) in ports.iter().enumerate() {
                let n = port
                    .get("containerPort")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if !(1..=65535).contains(&n) {
                    errs.push(FieldError::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        GoValue::Int(n),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = port.get("protocol").and_then(Value::as_str)
                    && !["SCTP", "TCP", "UDP"].contains(&proto)
                {
                    errs.push(FieldError::not_supported(
                        format!("{at}.ports[{j}].protocol"),
                        GoValue::Str(proto.to_owned()),
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
        }
        if let Some(env) = c.get("env").and_then(Value::as_array) {
            for (j, var) in env.iter().enumerate() {
                if var
                    .get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(format!("{at}.env[{j}].name"), ""));
                }
            }
        }
        if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) {
            for (j, m) in mounts.iter().enumerate() {
                let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                if name.is_empty() {
                    errs.push(FieldError::required(
                        format!("{at}.volumeMounts[{j}].name"),
                        "",
                    ));
                } else if !volumes.contains(&name) {
                    errs.push(FieldError {
                        kind: validation::FieldErrorKind::NotFound,
                        field: format!("{at}.volumeMounts[{j}].name"),
                        value: GoValue::Str(name.to_owned()),
                        detail: String::new(),
                    });
                }
                if m.get("mountPath")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(
                        format!("{at}.volumeMounts[{j}].mountPath"),
                        "",
                    ));
                }
            }
        }
    }
    errs
}

/// `ValidateJobUpdate` on top of [`validate`]: what may not change after create.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = validate(new);
    let new_uid = new
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let old_uid = old
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if new_uid != old_uid {
        errs.push(FieldError::immutable(
            "metadata.uid",
            GoValue::Str(new_uid.to_owned()),
        ));
    }
    let get = |v: &'_ Value, f: &str| {
        v.pointer(&format!("/spec/{f}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let completions = get(new, "completions");
    if completions != get(old, "completions") {
        errs.push(FieldError::immutable(
            "spec.completions",
            GoValue::from_json(&completions),
        ));
    }
    let selector = get(new, "selector");
    if selector != get(old, "selector") {
        let value = if selector.is_null() {
            GoValue::Null
        } else {
            selector_go(&selector)
        };
        errs.push(FieldError::immutable("spec.selector", value));
    }
    let mut old_template = get(old, "template");
    let new_template = get(new, "template");
    // Kubernetes 1.23+ lets the scheduling directives of a suspended Job that never started
    // change (JobMutableNodeSchedulingDirectives).
    let suspended = new.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let never_started = old.pointer("/status/startTime").is_none_or(Value::is_null);
    if suspended && never_started {
        for field in ["nodeSelector", "tolerations", "affinity"] {
            let path = format!("/spec/{field}");
            match (
                new_template.pointer(&path),
                old_template.get_mut("spec").and_then(Value::as_object_mut),
            ) {
                (Some(v), Some(spec)) => {
                    spec.insert(field.to_owned(), v.clone());
                }
                (None, Some(spec)) => {
                    spec.remove(field);
                }
                _ => {}
            }
        }
    }
    if new_template != old_template {
        errs.push(FieldError::immutable(
            "spec.template",
            GoValue::Raw(template_dump(&new_template)),
        ));
    }
    let mode = get(new, "completionMode");
    if mode != get(old, "completionMode") {
        errs.push(FieldError::immutable(
            "spec.completionMode",
            GoValue::from_json(&mode),
        ));
    }
    errs
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

fn go_field_name(json_name: &str) -> String {
    match json_name {
        "dnsPolicy" => "DNSPolicy".to_owned(),
        "dnsConfig" => "DNSConfig".to_owned(),
        "tty" => "TTY".to_owned(),
        "uid" => "UID".to_owned(),
        "os" => "OS".to_owned(),
        _ => {
            let mut chars = json_name.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        }
    }
}

fn go_type_name(json_name: &str) -> &'static str {
    match json_name {
        "metadata" => "v1.ObjectMeta",
        "spec" => "core.PodSpec",
        "containers" | "initContainers" => "core.Container",
        "resources" => "core.ResourceRequirements",
        "ports" => "core.ContainerPort",
        "env" => "core.EnvVar",
        "volumes" => "core.Volume",
        "volumeMounts" => "core.VolumeMount",
        "securityContext" => "core.SecurityContext",
        "tolerations" => "core.Toleration",
        _ => "struct",
    }
}

fn dump(value: &Value, name: &str, out: &mut String) {
    match value {
        Value::Object(map)
            if map.values().all(Value::is_string)
                && ["labels", "annotations", "nodeSelector"].contains(&name) =>
        {
            out.push_str(&GoValue::from_json(value).to_string());
        }
        Value::Object(map) => {
            out.push_str(go_type_name(name));
            out.push('{');
            let fields: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let mut s = format!("{}:", go_field_name(k));
                    dump(v, k, &mut s);
                    s
                })
                .collect();
            out.push_str(&fields.join(", "));
            out.push('}');
        }
        Value::Array(items) => {
            let element = if items.iter().all(Value::is_string) {
                "string"
            } else {
                go_type_name(name)
            };
            out.push_str(&format!("[]{element}{{"));
            let parts: Vec<String> = items
                .iter()
                .map(|v| {
                    let mut s = String::new();
                    dump(v, name, &mut s);
                    s
                })
                .collect();
            out.push_str(&parts.join(", "));
            out.push('}');
        }
        other => out.push_str(&GoValue::from_json(other).to_string()),
    }
}

/// A pod template as Go's `%#v` prints it in the "field is immutable" message, shortened to
/// the fields that are set (the real dump lists every field of every struct, pointers as
/// addresses).
pub fn template_dump(template: &Value) -> String {
    let mut out = String::from("core.PodTemplateSpec{");
    let mut parts = Vec::new();
    for (json_name, go_name) in [("metadata", "ObjectMeta"), ("spec", "Spec")] {
        if let Some(v) = template.get(json_name) {
            let mut s = format!("{go_name}:");
            dump(v, json_name, &mut s);
            parts.push(s);
        }
    }
    out.push_str(&parts.join(", "));
    out.push('}');
    out
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
