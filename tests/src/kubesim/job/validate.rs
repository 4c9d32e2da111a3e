//! `ValidateJob` and `ValidateJobUpdate` of kube-apiserver v1.24: the rules a Job must pass,
//! in the order the apiserver checks them (metadata, generated selector, spec, pod template,
//! then the immutable fields of an update), with its messages.

use serde_json::{Map, Value, json};

use super::template_dump;
use crate::kubesim::validation::{self, FieldError, GoValue};
use fedjob_scheduler::kube_api::selector::LabelSelector;

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
    let matched =
        LabelSelector::from_match_labels(selector.get("matchLabels")).matches(Some(labels));
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
