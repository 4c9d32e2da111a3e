use proptest::prelude::*;
use serde_json::json;

use super::*;

fn job(overrides: impl FnOnce(&mut Value)) -> Job {
    let mut v = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "labels": {"app": "x"}},
        "spec": {"parallelism": 3, "completions": 6,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    });
    overrides(&mut v);
    decode_job(v, "").unwrap()
}

fn message(r: Result<(), Invalid>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn a_plain_job_is_valid_and_lands_in_default() {
    let j = job(|_| {});
    assert_eq!(j.metadata.namespace.as_deref(), Some("default"));
    validate_new(&j).unwrap();
}

#[test]
fn restart_policy_always_is_refused_with_the_api_servers_words() {
    let j = job(|v| v["spec"]["template"]["spec"]["restartPolicy"] = json!("Always"));
    assert_eq!(
        message(validate_new(&j)),
        r#"Job.batch "myjob" is invalid: spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let j = job(|v| {
        v["spec"]["parallelism"] = json!(-1);
        v["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "w"}, {"name": "w", "image": "x"}]);
    });
    let err = validate_new(&j).unwrap_err();
    let fields: Vec<&str> = err.causes().iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.parallelism",
            "spec.template.spec.containers[0].image",
            "spec.template.spec.containers[1].name"
        ]
    );
    assert!(
        err.to_string()
            .contains("spec.parallelism: Invalid value: -1: must be greater than or equal to 0")
    );
}

#[test]
fn names_must_be_subdomains_and_short_enough_for_shards() {
    let bad = job(|v| v["metadata"]["name"] = json!("My_Job"));
    assert!(
        message(validate_new(&bad))
            .contains("metadata.name: Invalid value: \"My_Job\": a lowercase RFC 1123 subdomain")
    );
    let long = job(|v| v["metadata"]["name"] = json!("a".repeat(57)));
    assert!(message(validate_new(&long)).contains("must be no more than 56 characters"));
    let ok = job(|v| v["metadata"]["name"] = json!("a".repeat(56)));
    validate_new(&ok).unwrap();
}

#[test]
fn indexed_jobs_are_not_supported_yet() {
    let j = job(|v| v["spec"]["completionMode"] = json!("Indexed"));
    assert!(
        message(validate_new(&j))
            .contains("spec.completionMode: Unsupported value: \"Indexed\": not supported yet")
    );
}

#[test]
fn bad_preferences_name_the_annotation() {
    let j = job(
        |v| v["metadata"]["annotations"] = json!({"federation.kubernetes.io/job-preferences": r#"{"clusters": {"a": {"minReplicas": -2}}}"#}),
    );
    let err = validate_new(&j).unwrap_err();
    assert_eq!(
        err.causes()[0].field,
        "metadata.annotations[federation.kubernetes.io/job-preferences].clusters[\"a\"].minReplicas"
    );
}

#[test]
fn a_selector_needs_manual_selector() {
    let j = job(|v| v["spec"]["selector"] = json!({"matchLabels": {"a": "b"}}));
    assert!(message(validate_new(&j)).contains("`selector` not auto-generated"));
    let manual = job(|v| {
        v["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        v["spec"]["manualSelector"] = json!(true);
        v["spec"]["template"]["metadata"] = json!({"labels": {"a": "b"}});
    });
    validate_new(&manual).unwrap();
}

#[test]
fn template_selector_and_mode_are_immutable_but_counts_are_not() {
    let old = job(|_| {});
    let scaled = job(|v| {
        v["spec"]["parallelism"] = json!(12);
        v["spec"]["completions"] = json!(24);
    });
    validate_update(&old, &scaled).unwrap();
    let new_image =
        job(|v| v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("alpine"));
    let err = validate_update(&old, &new_image).unwrap_err();
    assert_eq!(err.causes()[0].field, "spec.template");
    assert!(err.to_string().ends_with("field is immutable"));
    let queue = job(|v| {
        v["spec"]
            .as_object_mut()
            .unwrap()
            .remove("completions")
            .map(|_| ())
            .unwrap()
    });
    assert_eq!(
        validate_update(&old, &queue).unwrap_err().causes()[0].field,
        "spec.completions"
    );
}

#[test]
fn manifests_are_yaml_or_json_one_object() {
    assert!(
        parse_manifest("apiVersion: batch/v1\nkind: Job\n")
            .unwrap()
            .is_object()
    );
    assert!(
        parse_manifest(r#"{"apiVersion": "batch/v1"}"#)
            .unwrap()
            .is_object()
    );
    assert!(
        parse_manifest("a: 1\n---\nb: 2\n")
            .unwrap_err()
            .to_string()
            .contains("2 documents")
    );
    assert!(parse_manifest("").is_err());
    assert!(parse_manifest("[1, 2]").is_err());
    assert!(parse_manifest("{not: [valid").is_err());
}

#[test]
fn wrong_types_name_their_path() {
    let v = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"parallelism": "three", "template": {}}});
    let err = decode_job(v, "").unwrap_err();
    assert_eq!(err.causes()[0].field, "spec.parallelism");
    let v = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
    assert_eq!(
        decode_job(v, "").unwrap_err().causes()[0].field,
        "apiVersion"
    );
}

#[test]
fn a_namespace_mismatch_is_refused_like_kubectl() {
    let v = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "a"}, "spec": {"template": {}}});
    let err = decode_job(v.clone(), "b").unwrap_err();
    assert!(
        err.to_string()
            .contains("does not match the namespace \"b\"")
    );
    assert_eq!(
        decode_job(v, "a").unwrap().metadata.namespace.as_deref(),
        Some("a")
    );
}

#[test]
fn qualified_names_and_label_values() {
    assert!(qualified_name("app").is_ok());
    assert!(qualified_name("fedjob.io/job-uid").is_ok());
    assert!(qualified_name("Bad Key").is_err());
    assert!(qualified_name("UPPER.example/x").is_err());
    assert!(label_value("").is_ok());
    assert!(label_value("v1.2_x").is_ok());
    assert!(label_value("-x").is_err());
    assert!(label_value(&"x".repeat(64)).is_err());
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9 ._/-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("apiVersion".to_owned()),
                    Just("kind".to_owned()),
                    Just("metadata".to_owned()),
                    Just("spec".to_owned()),
                    Just("name".to_owned()),
                    Just("template".to_owned()),
                    Just("containers".to_owned()),
                    Just("parallelism".to_owned()),
                    Just("completions".to_owned()),
                    Just("labels".to_owned()),
                    Just("annotations".to_owned()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// No manifest, however malformed, panics the reader or the validators.
    #[test]
    fn hostile_manifests_never_panic(mut v in json_value(), text in "\\PC{0,200}") {
        let _ = parse_manifest(&text);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("apiVersion".into(), json!("batch/v1"));
            obj.insert("kind".into(), json!("Job"));
        }
        if let Ok(job) = decode_job(v, "") {
            let _ = validate_new(&job);
            let _ = validate_update(&job, &job);
        }
    }

    /// A valid Job with a random mutation of one count is refused exactly when the count is negative.
    #[test]
    fn negative_counts_are_always_refused(p in -5..5i32, c in -5..5i32, b in -5..5i32) {
        let j = job(|v| {
            v["spec"]["parallelism"] = json!(p);
            v["spec"]["completions"] = json!(c);
            v["spec"]["backoffLimit"] = json!(b);
        });
        prop_assert_eq!(validate_new(&j).is_ok(), p >= 0 && c >= 0 && b >= 0);
    }
}
