use proptest::prelude::*;
use serde_json::json;

use super::*;

const STRICT: FieldValidation = FieldValidation::Strict;

fn manifest() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "myjob", "labels": {"app": "x"}},
        "spec": {"parallelism": 3, "completions": 6,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "w", "image": "busybox"}]}}}
    })
}

fn job(overrides: impl FnOnce(&mut Value)) -> Job {
    let mut v = manifest();
    overrides(&mut v);
    decode_job(v, "", STRICT).unwrap()
}

fn message(r: Result<(), Invalid>) -> String {
    r.unwrap_err().to_string()
}

fn fields(r: Result<(), Invalid>) -> Vec<String> {
    r.unwrap_err()
        .causes()
        .iter()
        .map(|c| c.field.clone())
        .collect()
}

// ---------------------------------------------------------------- reading

#[test]
fn a_plain_job_is_valid_and_lands_in_default() {
    let j = job(|_| {});
    assert_eq!(j.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(j.spec.as_ref().unwrap().completions, Some(6));
    validate_new(&j).unwrap();
}

#[test]
fn yaml_and_json_give_the_same_object() {
    let yaml = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: myjob
  labels: {app: x}
spec:
  parallelism: 3
  completions: 6
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: w
        image: busybox
";
    assert_eq!(parse_manifest(yaml).unwrap(), manifest());
    assert_eq!(parse_manifest(&manifest().to_string()).unwrap(), manifest());
    assert_eq!(
        parse_manifest(&format!("\u{feff}---\n{yaml}---\n")).unwrap(),
        manifest(),
        "BOM and empty documents"
    );
}

#[test]
fn yaml_merge_keys_are_applied() {
    let yaml = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: m
  labels: &base {app: x}
  annotations:
    <<: *base
    note: y
";
    let v = parse_manifest(yaml).unwrap();
    assert_eq!(
        v["metadata"]["annotations"],
        json!({"app": "x", "note": "y"})
    );
}

#[test]
fn a_manifest_is_exactly_one_object() {
    let cases = [
        ("", "the manifest is empty"),
        ("---\n---\n", "the manifest is empty"),
        ("kind: Job\n---\nkind: Job\n", "more than one document"),
        ("[1, 2]", "must be one Job object, got a list"),
        ("just text", "must be one Job object, got a string"),
        ("42", "must be one Job object, got a number"),
        ("{\"kind\": ", "not valid JSON: EOF while parsing"),
        ("a: [1\n", "not valid YAML or JSON"),
        ("a: 1\na: 2\n", "not valid YAML or JSON"),
    ];
    for (text, expected) in cases {
        let err = parse_manifest(text).unwrap_err();
        assert!(err.to_string().starts_with("invalid manifest: "), "{err}");
        assert!(err.to_string().contains(expected), "{text:?}: {err}");
        assert_eq!(err.field(), "");
        assert_eq!(err.name(), None);
    }
    let huge = " ".repeat(MAX_MANIFEST_BYTES + 1);
    assert!(
        parse_manifest(&huge)
            .unwrap_err()
            .to_string()
            .contains("no more than 3145728 bytes")
    );
}

#[test]
fn only_batch_v1_jobs_are_read() {
    let mut v = manifest();
    v["apiVersion"] = json!("apps/v1");
    v["kind"] = json!("Deployment");
    let err = decode_job(v, "", STRICT).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Job.batch "myjob" is invalid: [apiVersion: Unsupported value: "apps/v1": supported values: "batch/v1", kind: Unsupported value: "Deployment": supported values: "Job"]"#
    );
    let mut v = manifest();
    v.as_object_mut().unwrap().remove("apiVersion");
    assert_eq!(
        decode_job(v, "", STRICT).unwrap_err().to_string(),
        r#"Job.batch "myjob" is invalid: apiVersion: Required value: must be "batch/v1""#
    );
    assert!(
        decode_job(json!([]), "", STRICT)
            .unwrap_err()
            .to_string()
            .contains("got a list")
    );
}

#[test]
fn wrong_types_name_their_path_and_value() {
    let mut v = manifest();
    v["spec"]["parallelism"] = json!("three");
    let err = decode_job(v, "", STRICT).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Job.batch "myjob" is invalid: spec.parallelism: Invalid value: "three": expected i32"#
    );
    assert_eq!(err.field(), "spec.parallelism");

    let mut v = manifest();
    v["spec"]["template"]["spec"]["containers"][0]["name"] = json!(7);
    let err = decode_job(v, "", STRICT).unwrap_err();
    assert_eq!(err.field(), "spec.template.spec.containers[0].name");
    assert!(
        err.to_string()
            .contains("Invalid value: 7: expected a string"),
        "{err}"
    );

    let mut v = manifest();
    v["metadata"]["labels"]["app.kubernetes.io/name"] = json!(["x"]);
    assert_eq!(
        decode_job(v, "", STRICT).unwrap_err().field(),
        "metadata.labels[app.kubernetes.io/name]"
    );

    let mut v = manifest();
    v["spec"]["completions"] = json!(3_000_000_000u64);
    assert!(
        decode_job(v, "", STRICT)
            .unwrap_err()
            .to_string()
            .contains("spec.completions: Invalid value: 3000000000: expected i32")
    );
}

#[test]
fn a_status_in_the_manifest_is_ignored() {
    let j = job(|v| v["status"] = json!({"succeeded": "lots"}));
    assert!(j.status.is_none());
}

#[test]
fn the_namespace_defaults_and_a_mismatch_is_refused_like_kubectl() {
    assert_eq!(
        decode_job(manifest(), "team-a", STRICT)
            .unwrap()
            .metadata
            .namespace
            .as_deref(),
        Some("team-a")
    );
    let mut v = manifest();
    v["metadata"]["namespace"] = json!("team-b");
    assert_eq!(
        decode_job(v.clone(), "", STRICT)
            .unwrap()
            .metadata
            .namespace
            .as_deref(),
        Some("team-b")
    );
    assert_eq!(
        decode_job(v.clone(), "team-b", STRICT)
            .unwrap()
            .metadata
            .namespace
            .as_deref(),
        Some("team-b")
    );
    let err = decode_job(v, "team-a", STRICT).unwrap_err();
    assert_eq!(err.field(), "metadata.namespace");
    assert!(
        err.to_string().contains(
            r#"the namespace from the provided object "team-b" does not match the namespace "team-a". You must pass '--namespace=team-b' to perform this operation."#
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------- create

#[test]
fn restart_policy_always_is_refused_with_the_api_servers_words() {
    // k8s-facts/06-create-restartAlways-422.json, word for word.
    let j = job(|v| v["spec"]["template"]["spec"]["restartPolicy"] = json!("Always"));
    let err = validate_new(&j).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Job.batch "myjob" is invalid: spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#
    );
    let cause = &err.causes()[0];
    assert_eq!(cause.kind.reason(), "FieldValueRequired");
    assert_eq!(
        cause.message(),
        r#"Required value: valid values: "OnFailure", "Never""#
    );
    let unset = job(|v| {
        v["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
    });
    assert_eq!(
        fields(validate_new(&unset)),
        ["spec.template.spec.restartPolicy"]
    );
    validate_new(&job(|v| {
        v["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure")
    }))
    .unwrap();
}

#[test]
fn every_error_is_reported_at_once() {
    let j = job(|v| {
        v["metadata"]["name"] = json!("Bad_Name");
        v["spec"]["parallelism"] = json!(-1);
        v["spec"]["backoffLimit"] = json!(-2);
        v["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "w"}, {"name": "w", "image": "x"}]);
    });
    let err = validate_new(&j).unwrap_err();
    let fields: Vec<&str> = err.causes().iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.name",
            "spec.parallelism",
            "spec.backoffLimit",
            "spec.template.spec.containers[0].image",
            "spec.template.spec.containers[1].name",
        ]
    );
    let text = err.to_string();
    assert!(text.starts_with(r#"Job.batch "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#), "{text}");
    assert!(
        text.contains(
            ", spec.parallelism: Invalid value: -1: must be greater than or equal to 0, "
        ),
        "{text}"
    );
    assert!(
        text.contains("spec.template.spec.containers[0].image: Required value, "),
        "{text}"
    );
    assert!(
        text.ends_with(r#"spec.template.spec.containers[1].name: Duplicate value: "w"]"#),
        "{text}"
    );
}

#[test]
fn every_count_must_be_non_negative() {
    let j = job(|v| {
        for field in [
            "parallelism",
            "completions",
            "backoffLimit",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
        ] {
            v["spec"][field] = json!(-1);
        }
    });
    let err = validate_new(&j).unwrap_err();
    assert_eq!(err.causes().len(), 5);
    assert!(
        err.causes()
            .iter()
            .all(|c| c.message() == "Invalid value: -1: must be greater than or equal to 0")
    );
    validate_new(&job(|v| {
        v["spec"]["parallelism"] = json!(0);
        v["spec"]["completions"] = json!(0);
    }))
    .unwrap();
}

#[test]
fn names_must_be_subdomains_and_short_enough_for_shards() {
    let named = |name: &str| job(|v| v["metadata"]["name"] = json!(name));
    validate_new(&named("a.b-c")).unwrap();
    validate_new(&named(&"a".repeat(MAX_NAME))).unwrap();
    let long = validate_new(&named(&"a".repeat(MAX_NAME + 1))).unwrap_err();
    assert_eq!(long.field(), "metadata.name");
    assert!(
        long.to_string()
            .contains("must be no more than 56 characters: shards are named NAME-N"),
        "{long}"
    );
    assert!(
        long.to_string().contains("63-character job-name label"),
        "{long}"
    );
    for bad in ["-a", "a-", "A", "a_b", "a..b", "ä"] {
        assert_eq!(
            fields(validate_new(&named(bad))),
            ["metadata.name"],
            "{bad}"
        );
    }
    let empty = validate_new(&named("")).unwrap_err();
    assert_eq!(
        empty.to_string(),
        r#"Job.batch "" is invalid: metadata.name: Required value: name is required"#
    );
    let generated = job(|v| {
        v["metadata"].as_object_mut().unwrap().remove("name");
        v["metadata"]["generateName"] = json!("x-");
    });
    assert_eq!(
        fields(validate_new(&generated)),
        ["metadata.generateName", "metadata.name"]
    );
}

#[test]
fn namespaces_must_be_labels() {
    let mut v = manifest();
    v["metadata"]["namespace"] = json!("team.a");
    let err = validate_new(&decode_job(v, "", STRICT).unwrap()).unwrap_err();
    assert!(err.to_string().contains(
        r#"metadata.namespace: Invalid value: "team.a": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#
    ), "{err}");
}

#[test]
fn labels_and_annotations_follow_the_api_server_rules() {
    let j = job(|v| {
        v["metadata"]["labels"] = json!({"ok": "fine", "bad key": "v", "k": "bad value", "example.com/x": "", "a/b/c": "x"});
        v["metadata"]["annotations"] =
            json!({"Example.COM/Mixed-Case": "any text at all", "-bad": "x"});
        v["spec"]["template"]["metadata"] = json!({"labels": {"t": "-"}});
    });
    let err = validate_new(&j).unwrap_err();
    let messages: Vec<String> = err.causes().iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 5, "{messages:#?}");
    assert!(messages.iter().any(|m| m.starts_with(
        r#"metadata.labels: Invalid value: "a/b/c": a qualified name must consist of"#
    )));
    assert!(messages.iter().any(|m| m.starts_with(r#"metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#)));
    assert!(messages.iter().any(|m| m.starts_with(
        r#"metadata.labels: Invalid value: "bad value": a valid label must be an empty string"#
    )));
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(r#"metadata.annotations: Invalid value: "-bad": name part"#))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(r#"spec.template.metadata.labels: Invalid value: "-""#))
    );
}

#[test]
fn label_and_annotation_limits() {
    let many: Map<String, Value> = (0..=MAX_LABELS)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    let j = job(|v| {
        v["metadata"]["labels"] = Value::Object(many.clone());
        v["metadata"]["annotations"] = Value::Object(many);
    });
    let err = validate_new(&j).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Job.batch "myjob" is invalid: [metadata.labels: Too many: 65: must have at most 64 items, metadata.annotations: Too many: 65: must have at most 64 items]"#
    );
    let big =
        job(|v| v["metadata"]["annotations"] = json!({"a": "x".repeat(MAX_ANNOTATION_BYTES)}));
    assert_eq!(
        message(validate_new(&big)),
        r#"Job.batch "myjob" is invalid: metadata.annotations: Too long: must have at most 262144 bytes"#
    );
    let long_value = job(|v| v["metadata"]["labels"] = json!({"a": "x".repeat(64)}));
    assert!(message(validate_new(&long_value)).contains("must be no more than 63 characters"));
}

#[test]
fn containers_need_a_unique_label_name_and_an_image() {
    let j = job(|v| {
        v["spec"]["template"]["spec"]["initContainers"] = json!([{"name": "setup", "image": "x"}]);
        v["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "setup", "image": "x"}, {"name": "Big", "image": "x"}, {"image": "x"},
            {"name": "ok", "image": " padded "}
        ]);
    });
    let err = validate_new(&j).unwrap_err();
    let messages: Vec<String> = err.causes().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages[0],
        r#"spec.template.spec.containers[0].name: Duplicate value: "setup""#
    );
    assert!(messages[1].starts_with(
        r#"spec.template.spec.containers[1].name: Invalid value: "Big": a lowercase RFC 1123 label"#
    ));
    assert_eq!(
        messages[2],
        "spec.template.spec.containers[2].name: Required value"
    );
    assert_eq!(
        messages[3],
        r#"spec.template.spec.containers[3].image: Invalid value: " padded ": must not have leading or trailing whitespace"#
    );
    assert_eq!(messages.len(), 4);

    let none = job(|v| v["spec"]["template"]["spec"]["containers"] = json!([]));
    assert_eq!(
        message(validate_new(&none)),
        r#"Job.batch "myjob" is invalid: spec.template.spec.containers: Required value"#
    );
    let no_pod = job(|v| v["spec"]["template"] = json!({}));
    assert_eq!(
        fields(validate_new(&no_pod)),
        [
            "spec.template.spec.restartPolicy",
            "spec.template.spec.containers"
        ]
    );
    let no_spec = job(|v| {
        v.as_object_mut().unwrap().remove("spec");
    });
    assert_eq!(fields(validate_new(&no_spec)), ["spec"]);
}

#[test]
fn indexed_jobs_are_not_supported_yet() {
    let j = job(|v| v["spec"]["completionMode"] = json!("Indexed"));
    let err = validate_new(&j).unwrap_err();
    assert!(
        err.to_string().starts_with(r#"Job.batch "myjob" is invalid: spec.completionMode: Unsupported value: "Indexed": not supported yet: "#),
        "{err}"
    );
    assert!(err.to_string().contains("same completion indexes"));
    assert_eq!(err.causes()[0].kind.reason(), "FieldValueNotSupported");
    validate_new(&job(|v| v["spec"]["completionMode"] = json!("NonIndexed"))).unwrap();
    assert_eq!(
        fields(validate_new(&job(
            |v| v["spec"]["completionMode"] = json!("Sometimes")
        ))),
        ["spec.completionMode"]
    );
}

#[test]
fn bad_preferences_name_the_annotation_and_the_field_inside() {
    let j = job(|v| {
        v["metadata"]["annotations"] =
            json!({PREFERENCES_ANNOTATION: r#"{"clusters": {"gce-asia": {"minReplicas": -1}}}"#});
    });
    let err = validate_new(&j).unwrap_err();
    assert_eq!(
        err.field(),
        r#"metadata.annotations[federation.kubernetes.io/job-preferences].clusters["gce-asia"].minReplicas"#
    );
    assert_eq!(
        err.causes()[0].message(),
        "Invalid value: must be greater than or equal to 0, got -1"
    );
    let not_json = job(|v| v["metadata"]["annotations"] = json!({PREFERENCES_ANNOTATION: "{nope"}));
    let err = validate_new(&not_json).unwrap_err();
    assert_eq!(
        err.field(),
        "metadata.annotations[federation.kubernetes.io/job-preferences]"
    );
    assert!(
        err.to_string().contains("Invalid value: not valid JSON"),
        "{err}"
    );
    let fine = job(|v| {
        v["metadata"]["annotations"] =
            json!({PREFERENCES_ANNOTATION: r#"{"clusters": {"*": {"weight": 2}}}"#})
    });
    validate_new(&fine).unwrap();
}

#[test]
fn a_selector_needs_manual_selector_and_must_match_the_template() {
    let given = job(|v| v["spec"]["selector"] = json!({"matchLabels": {"app": "x"}}));
    let err = validate_new(&given).unwrap_err();
    assert_eq!(err.field(), "spec.selector");
    assert!(
        err.to_string().contains("`selector` not auto-generated"),
        "{err}"
    );

    let manual = |selector: Value, labels: Value| {
        job(|v| {
            v["spec"]["manualSelector"] = json!(true);
            v["spec"]["selector"] = selector;
            v["spec"]["template"]["metadata"] = json!({"labels": labels});
        })
    };
    validate_new(&manual(
        json!({"matchLabels": {"app": "x"}}),
        json!({"app": "x", "more": "y"}),
    ))
    .unwrap();
    validate_new(&manual(
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "z"]},
                                    {"key": "gone", "operator": "DoesNotExist"}]}),
        json!({"app": "x"}),
    ))
    .unwrap();
    let mismatch = validate_new(&manual(
        json!({"matchLabels": {"app": "y"}}),
        json!({"app": "x"}),
    ))
    .unwrap_err();
    assert_eq!(
        mismatch.to_string(),
        r#"Job.batch "myjob" is invalid: spec.template.metadata.labels: Invalid value: {"app":"x"}: `selector` does not match template `labels`"#
    );
    let expression = validate_new(&manual(
        json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}),
        json!({"app": "x"}),
    ));
    assert_eq!(fields(expression), ["spec.template.metadata.labels"]);
    let broken = validate_new(&manual(
        json!({"matchExpressions": [{"key": "app", "operator": "In"}, {"key": "b", "operator": "Near", "values": ["1"]}]}),
        json!({"app": "x"}),
    ));
    assert_eq!(
        fields(broken),
        [
            "spec.selector.matchExpressions[0].values",
            "spec.selector.matchExpressions[1].operator"
        ]
    );
    let missing = job(|v| v["spec"]["manualSelector"] = json!(true));
    assert_eq!(
        message(validate_new(&missing)),
        r#"Job.batch "myjob" is invalid: spec.selector: Required value"#
    );
}

// ---------------------------------------------------------------- update

#[test]
fn template_selector_and_mode_are_immutable_but_counts_are_not() {
    let old = job(|_| {});
    let scaled = job(|v| {
        v["spec"]["completions"] = json!(9);
        v["spec"]["parallelism"] = json!(5);
        v["metadata"]["labels"]["new"] = json!("label");
    });
    validate_update(&old, &scaled).unwrap();

    let changed = job(|v| {
        v["spec"]["template"]["spec"]["containers"][0]["image"] = json!("alpine");
        v["spec"]["completionMode"] = json!("Indexed");
    });
    let err = validate_update(&old, &changed).unwrap_err();
    let messages: Vec<String> = err.causes().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages[0],
        r#"spec.completionMode: Unsupported value: "Indexed": not supported yet: split naively, every cluster would run the same completion indexes 0…n-1; use NonIndexed"#
    );
    assert!(
        messages[1].starts_with(
            r#"spec.template: Invalid value: {"spec":{"containers":[{"image":"alpine""#
        ),
        "{}",
        messages[1]
    );
    assert!(messages[1].ends_with(": field is immutable"));
    assert_eq!(
        messages[2],
        r#"spec.completionMode: Invalid value: "Indexed": field is immutable"#
    );

    let selected = job(|v| {
        v["spec"]["manualSelector"] = json!(true);
        v["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        v["spec"]["template"]["metadata"] = json!({"labels": {"app": "x"}});
    });
    assert_eq!(
        fields(validate_update(&old, &selected)),
        ["spec.template", "spec.selector"]
    );
}

#[test]
fn an_absent_list_or_map_equals_an_empty_one() {
    let old = job(|_| {});
    let same = job(|v| {
        v["spec"]["template"]["metadata"] = json!({"labels": {}});
        v["spec"]["template"]["spec"]["initContainers"] = json!([]);
        v["spec"]["template"]["spec"]["containers"][0]["args"] = json!([]);
    });
    validate_update(&old, &same).unwrap();
    let mode = job(|v| v["spec"]["completionMode"] = json!("NonIndexed"));
    validate_update(&old, &mode).unwrap();
}

#[test]
fn identity_may_not_change() {
    let mut old = job(|_| {});
    old.metadata.uid = Some("uid-1".into());
    let renamed = job(|v| {
        v["metadata"]["name"] = json!("other");
        v["metadata"]["namespace"] = json!("elsewhere");
        v["metadata"]["uid"] = json!("uid-2");
    });
    let err = validate_update(&old, &renamed).unwrap_err();
    assert_eq!(err.name(), Some("other"));
    let messages: Vec<String> = err.causes().iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            r#"metadata.name: Invalid value: "other": field is immutable"#,
            r#"metadata.namespace: Invalid value: "elsewhere": field is immutable"#,
            r#"metadata.uid: Invalid value: "uid-2": field is immutable"#,
        ]
    );
    validate_update(&old, &job(|_| {})).unwrap();
}

#[test]
fn a_work_queue_cannot_gain_completions_nor_lose_them() {
    let old = job(|_| {});
    let queue = job(|v| {
        v["spec"].as_object_mut().unwrap().remove("completions");
    });
    assert_eq!(fields(validate_update(&old, &queue)), ["spec.completions"]);
    assert_eq!(fields(validate_update(&queue, &old)), ["spec.completions"]);
}

#[test]
fn update_validation_includes_create_validation() {
    let old = job(|_| {});
    let bad = job(|v| v["spec"]["parallelism"] = json!(-4));
    assert_eq!(
        message(validate_update(&old, &bad)),
        r#"Job.batch "myjob" is invalid: spec.parallelism: Invalid value: -4: must be greater than or equal to 0"#
    );
}

#[test]
fn name_rules() {
    assert!(dns1123_label("a-1").is_empty());
    assert_eq!(
        dns1123_label(&"a".repeat(64)),
        ["must be no more than 63 characters"]
    );
    assert_eq!(dns1123_label("").len(), 1);
    assert!(dns1123_subdomain("a.b.c").is_empty());
    assert_eq!(dns1123_subdomain(".a").len(), 1);
    assert!(qualified_name("example.com/My_Name.1").is_empty());
    assert_eq!(qualified_name("/x"), ["prefix part must be non-empty"]);
    assert_eq!(qualified_name("Example.com/x").len(), 1);
    assert_eq!(
        qualified_name("x/").len(),
        2,
        "empty name part: non-empty and regex"
    );
    assert!(label_value("").is_empty());
    assert!(label_value("a.b_c-D").is_empty());
    assert_eq!(label_value("a/b").len(), 1);
}

#[test]
fn causes_give_the_status_reason_and_message() {
    let err = validate_new(&job(|v| v["spec"]["completions"] = json!(-9))).unwrap_err();
    let cause = &err.causes()[0];
    assert_eq!(
        (cause.field.as_str(), cause.kind.reason()),
        ("spec.completions", "FieldValueInvalid")
    );
    assert_eq!(
        cause.message(),
        "Invalid value: -9: must be greater than or equal to 0"
    );
}

// ---------------------------------------------------------------- hostile input

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("batch/v1"),
            Just("Job"),
            Just("Never"),
            Just("Indexed"),
            Just("")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let keys = prop_oneof![
            "\\PC{0,8}",
            prop_oneof![
                Just("apiVersion"),
                Just("kind"),
                Just("metadata"),
                Just("name"),
                Just("spec"),
                Just("template"),
                Just("containers"),
                Just("labels"),
                Just("annotations"),
                Just("selector"),
                Just("matchLabels"),
                Just("matchExpressions"),
                Just("parallelism"),
                Just("completions"),
                Just("restartPolicy"),
                Just("image"),
            ]
            .prop_map(String::from),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Sets `value` at a path of `keys` into `target`, making objects on the way.
fn graft(target: &mut Value, keys: &[&str], value: Value) {
    let mut at = target;
    for key in keys {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .unwrap()
            .entry(key.to_string())
            .or_insert(Value::Null);
    }
    *at = value;
}

fn everything(text: &str) {
    let Ok(value) = parse_manifest(text) else {
        return;
    };
    let Ok(new) = decode_job(value, "ns", STRICT) else {
        return;
    };
    let _ = validate_new(&new).map_err(|e| e.to_string());
    let old = decode_job(manifest(), "ns", STRICT).unwrap();
    let _ = validate_update(&old, &new).map_err(|e| e.to_string());
    let _ = validate_update(&new, &old).map_err(|e| e.to_string());
}

proptest! {
    #[test]
    fn random_json_never_panics(v in json_value()) {
        everything(&v.to_string());
        if let Ok(job) = decode_job(v, "", STRICT) {
            let _ = validate_new(&job);
        }
    }

    #[test]
    fn a_valid_job_with_a_random_subtree_never_panics(
        v in json_value(),
        path in proptest::sample::select(vec![
            vec!["metadata"], vec!["metadata", "labels"], vec!["metadata", "annotations"], vec!["spec"],
            vec!["spec", "selector"], vec!["spec", "template"], vec!["spec", "template", "spec"],
            vec!["spec", "template", "metadata"], vec!["spec", "template", "spec", "containers"],
            vec!["metadata", "annotations", PREFERENCES_ANNOTATION], vec!["spec", "manualSelector"],
        ]),
    ) {
        let mut m = manifest();
        graft(&mut m, &path, v);
        everything(&m.to_string());
        everything(&serde_yaml::to_string(&m).unwrap());
    }

    #[test]
    fn mutated_yaml_and_json_never_panic(
        cut in any::<prop::sample::Index>(),
        insert in "[ \\-:{}\\[\\]\"'&*!|>#,\n\t0-9a-z]{0,6}",
        yaml in any::<bool>(),
    ) {
        let text = if yaml { serde_yaml::to_string(&manifest()).unwrap() } else { manifest().to_string() };
        let at = cut.index(text.len() + 1);
        let mut mutated = text.clone();
        mutated.insert_str(at, &insert);
        everything(&mutated);
        let shorter = format!("{}{}", &text[..at], &text[(at + insert.len()).min(text.len())..]);
        everything(&shorter);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        everything(&text);
    }

    #[test]
    fn negative_counts_are_always_refused_naming_each(p in -5..5i32, c in -5..5i32, b in -5..5i32) {
        let j = job(|v| {
            v["spec"]["parallelism"] = json!(p);
            v["spec"]["completions"] = json!(c);
            v["spec"]["backoffLimit"] = json!(b);
        });
        let expected: Vec<&str> = [("spec.parallelism", p), ("spec.completions", c), ("spec.backoffLimit", b)]
            .iter()
            .filter(|(_, n)| *n < 0)
            .map(|(f, _)| *f)
            .collect();
        match validate_new(&j) {
            Ok(()) => prop_assert!(expected.is_empty()),
            Err(e) => {
                let got: Vec<&str> = e.causes().iter().map(|c| c.field.as_str()).collect();
                prop_assert_eq!(got, expected);
            }
        }
    }
}

#[test]
fn unknown_fields_are_refused_by_path_and_nothing_else_is() {
    let mut v = manifest();
    v["spec"]["paralelism"] = json!(3);
    v["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    v["metadata"]["labels"]["any.key/is-fine"] = json!("x");
    v["metadata"]["creationTimestamp"] = Value::Null;
    v["status"] = json!({"active": 1, "whatever": 2});
    v["placements"] = json!([{"cluster": "c1"}]);
    v["unplaced"] = json!({"parallelism": 1});
    let err = decode_job(v.clone(), "", STRICT).unwrap_err();
    let unknown: Vec<(&str, FieldErrorKind)> = err
        .causes()
        .iter()
        .map(|c| (c.field.as_str(), c.kind))
        .collect();
    assert_eq!(
        unknown,
        vec![
            ("spec.paralelism", FieldErrorKind::Unknown),
            (
                "spec.template.spec.containers[0].imagePullPolicyy",
                FieldErrorKind::Unknown
            ),
        ]
    );
    assert!(
        err.to_string()
            .starts_with(r#"Job.batch "myjob" is invalid: [spec.paralelism: Unknown field: batch/v1 Job has no such field"#),
        "{err}"
    );
    let job = decode_job(v, "", FieldValidation::Ignore).unwrap();
    assert_eq!(
        job.spec.unwrap().parallelism,
        Some(3),
        "the known field is kept"
    );
}

#[test]
fn field_validation_reads_the_api_servers_names() {
    for (given, want) in [
        ("", Some(FieldValidation::Strict)),
        ("Strict", Some(FieldValidation::Strict)),
        ("ignore", Some(FieldValidation::Ignore)),
        ("Warn", None),
    ] {
        assert_eq!(FieldValidation::from_request(given), want, "{given}");
    }
}

/// A key no Kubernetes object has.
const TYPO: &str = "notAFieldOfAnyKind";

proptest! {
    /// What a decoded Job writes back is read again with no unknown field; a made-up key
    /// grafted anywhere into an object of it is reported at exactly its path.
    #[test]
    fn unknown_fields_are_found_exactly_where_they_are(pick in any::<prop::sample::Index>()) {
        let mut full = manifest();
        full["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        full["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1"}});
        full["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        full["spec"]["manualSelector"] = json!(true);
        let decoded = serde_json::to_value(decode_job(full, "", STRICT).unwrap()).unwrap();
        prop_assert!(unknown_fields(&decoded, &decoded).is_empty());

        // Every object that is a typed struct (not a free-form map such as labels).
        let mut objects = Vec::new();
        fn walk(v: &Value, path: String, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    out.push(path.clone());
                    for (k, child) in m {
                        if !matches!(k.as_str(), "labels" | "matchLabels" | "annotations" | "limits") {
                            walk(child, format!("{path}/{k}"), out);
                        }
                    }
                }
                Value::Array(items) => {
                    for (i, child) in items.iter().enumerate() {
                        walk(child, format!("{path}/{i}"), out);
                    }
                }
                _ => {}
            }
        }
        walk(&decoded, String::new(), &mut objects);
        let at = pick.get(&objects);
        let mut with_typo = decoded.clone();
        with_typo.pointer_mut(at).unwrap()[TYPO] = json!(1);
        let found = unknown_fields(&with_typo, &decoded);
        prop_assert_eq!(found.len(), 1);
        let want = format!("{}.{TYPO}", at.trim_start_matches('/').replace('/', "."))
            .trim_start_matches('.')
            .to_owned();
        // Array indexes print as `[i]`.
        let want = dotted_indexes_to_brackets(&want);
        prop_assert_eq!(&found[0], &want);
        let err = decode_job(with_typo, "", STRICT).unwrap_err();
        prop_assert_eq!(err.field(), want.as_str());
    }
}

/// `a.0.b` → `a[0].b`.
fn dotted_indexes_to_brackets(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}
