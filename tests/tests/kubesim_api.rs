//! The rest of the API surface over plain HTTP: namespaces, all-namespace lists, selectors,
//! YAML bodies, the status subresource, dry runs, collection deletes, and the answers to
//! requests the simulator does not serve.

mod kubesim_support;

use hyper::Method;
use kubesim_support::*;
use serde_json::{Value, json};

fn job(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox:1.36"}]}}}
    })
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn namespaces_and_lists_across_them() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let initial = http.get("/api/v1/namespaces").await.json();
    assert_eq!(initial["kind"], "NamespaceList");
    assert!(
        names(&initial).contains(&"default".to_owned())
            && names(&initial).contains(&"kube-system".to_owned())
    );

    let created = http
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
        )
        .await;
    assert_eq!(created.status, 201);
    let ns = created.json();
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    let invalid = http
        .post(
            "/api/v1/namespaces",
            &json!({"metadata": {"name": "Team_A"}}),
        )
        .await;
    assert_eq!(invalid.status, 422);
    assert!(invalid.json()["message"].as_str().unwrap().starts_with("Namespace \"Team_A\" is invalid: metadata.name: Invalid value: \"Team_A\": a lowercase RFC 1123 label must consist of"));
    let missing = http.get("/api/v1/namespaces/nosuchns").await;
    assert_eq!(missing.status, 404);
    let expected_404 = fact("18-create-in-missing-namespace-404.json");
    assert_json_eq(
        &missing.json(),
        &expected_404,
        "a missing namespace reads like 18-…",
    );

    assert_eq!(
        http.post(JOBS, &job("a", json!({"tier": "web", "team": "x"})))
            .await
            .status,
        201
    );
    assert_eq!(
        http.post(
            "/apis/batch/v1/namespaces/team-a/jobs",
            &job("b", json!({"tier": "db"}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        http.post(
            "/apis/batch/v1/namespaces/team-a/jobs",
            &job("c", json!({"other": "1"}))
        )
        .await
        .status,
        201
    );

    let all = http.get("/apis/batch/v1/jobs").await.json();
    assert_eq!(names(&all), vec!["a", "b", "c"]);
    let in_team = http
        .get("/apis/batch/v1/jobs?fieldSelector=metadata.namespace%3Dteam-a")
        .await
        .json();
    assert_eq!(names(&in_team), vec!["b", "c"]);
    for (selector, expected) in [
        ("tier", vec!["a", "b"]),
        ("!tier", vec!["c"]),
        ("tier!%3Dweb", vec!["b", "c"]),
        ("tier%20in%20(web,db)", vec!["a", "b"]),
        ("tier%20notin%20(web)", vec!["b", "c"]),
        ("tier%3Dweb,team%3Dx", vec!["a"]),
    ] {
        let list = http
            .get(&format!("/apis/batch/v1/jobs?labelSelector={selector}"))
            .await
            .json();
        assert_eq!(names(&list), expected, "labelSelector={selector}");
    }
    // `limit` pages the list (lists_come_in_pages_of_one_snapshot has the details).
    let paged = http.get("/apis/batch/v1/jobs?limit=1").await.json();
    assert_eq!(names(&paged), vec!["a"]);
    assert_eq!(paged["metadata"]["remainingItemCount"], 2);
    let bad_selector = http
        .get("/apis/batch/v1/jobs?fieldSelector=spec.parallelism%3D1")
        .await;
    assert_eq!(bad_selector.status, 400);
    assert_eq!(
        bad_selector.json()["message"],
        "field label not supported: spec.parallelism"
    );

    // Deleting a namespace deletes its Jobs, then the namespace.
    let deleting = http.delete("/api/v1/namespaces/team-a", None).await;
    assert_eq!(deleting.status, 200);
    assert_eq!(deleting.json()["status"]["phase"], "Terminating");
    eventually("team-a to be gone", || async {
        (http.get("/api/v1/namespaces/team-a").await.status == 404).then_some(())
    })
    .await;
    assert_eq!(
        names(&http.get("/apis/batch/v1/jobs").await.json()),
        vec!["a"]
    );
    let forbidden = http.delete("/api/v1/namespaces/default", None).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.json()["message"],
        "namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn yaml_bodies_status_subresource_dry_run_and_collection_delete() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());

    // kubectl and people send YAML.
    let yaml = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: from-yaml\n  labels: {kind: yaml}\nspec:\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers:\n      - name: w\n        image: busybox:1.36\n";
    let created = http
        .send(
            Method::POST,
            JOBS,
            Some("application/yaml"),
            Some(yaml.to_owned()),
        )
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.raw)
    );
    let from_yaml = created.json();
    assert_eq!(
        from_yaml["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(from_yaml["spec"]["completions"], 1);
    assert_eq!(from_yaml["spec"]["parallelism"], 1);

    // A status write through /status changes status, never spec.
    let mut edited = http
        .get(&format!("{}/status", job_path("from-yaml")))
        .await
        .json();
    edited["status"]["succeeded"] = json!(7);
    edited["spec"]["parallelism"] = json!(9);
    let written = http
        .put(&format!("{}/status", job_path("from-yaml")), &edited)
        .await;
    assert_eq!(written.status, 200);
    let written = written.json();
    assert_eq!(written["status"]["succeeded"], 7);
    assert_eq!(written["spec"]["parallelism"], 1);
    assert_eq!(written["metadata"]["generation"], 1);
    // …and a spec write never changes status.
    let mut put = http.get(&job_path("from-yaml")).await.json();
    put["spec"]["parallelism"] = json!(2);
    put["status"] = json!({"failed": 99});
    let written = http.put(&job_path("from-yaml"), &put).await.json();
    assert_eq!(written["spec"]["parallelism"], 2);
    assert_eq!(written["metadata"]["generation"], 2);
    assert!(written["status"].get("failed").is_none());

    // A dry run validates and answers, but stores nothing.
    let dry = http
        .post(
            &format!("{JOBS}?dryRun=All"),
            &job("dry", json!({"kind": "dry"})),
        )
        .await;
    assert_eq!(dry.status, 201);
    assert_eq!(http.get(&job_path("dry")).await.status, 404);

    // deletecollection by label.
    for name in ["x1", "x2"] {
        assert_eq!(
            http.post(JOBS, &job(name, json!({"kind": "batch"})))
                .await
                .status,
            201
        );
    }
    let deleted = http
        .send(
            Method::DELETE,
            &format!("{JOBS}?labelSelector=kind%3Dbatch&propagationPolicy=Background"),
            None,
            None,
        )
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(names(&deleted.json()), vec!["x1", "x2"]);
    assert_eq!(names(&http.get(JOBS).await.json()), vec!["from-yaml"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_reads_like_the_apiserver() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let base = job("v", json!({}));
    let with = |pointer: &str, value: Value| {
        let mut body = base.clone();
        *body.pointer_mut(pointer).expect("a field of the base Job") = value;
        body
    };
    let lowercase_subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let cases = [
        (
            with("/metadata/name", json!("Bad_Name")),
            "Bad_Name",
            vec![(
                "metadata.name",
                "FieldValueInvalid",
                format!("Invalid value: \"Bad_Name\": {lowercase_subdomain}"),
            )],
        ),
        (
            with("/spec/template/spec/containers", json!([])),
            "v",
            vec![(
                "spec.template.spec.containers",
                "FieldValueRequired",
                "Required value".to_owned(),
            )],
        ),
        (
            with("/spec/template/spec/containers", json!([{"name": "w"}])),
            "v",
            vec![(
                "spec.template.spec.containers[0].image",
                "FieldValueRequired",
                "Required value".to_owned(),
            )],
        ),
        (
            with(
                "/spec/template/spec/containers",
                json!([{"image": "busybox"}]),
            ),
            "v",
            vec![(
                "spec.template.spec.containers[0].name",
                "FieldValueRequired",
                "Required value".to_owned(),
            )],
        ),
        (
            {
                let mut b = base.clone();
                b["spec"]["parallelism"] = json!(-1);
                b["spec"]["backoffLimit"] = json!(-2);
                b
            },
            "v",
            vec![
                (
                    "spec.parallelism",
                    "FieldValueInvalid",
                    "Invalid value: -1: must be greater than or equal to 0".to_owned(),
                ),
                (
                    "spec.backoffLimit",
                    "FieldValueInvalid",
                    "Invalid value: -2: must be greater than or equal to 0".to_owned(),
                ),
            ],
        ),
    ];
    for (body, name, expected) in cases {
        let reply = http.post(JOBS, &body).await;
        assert_eq!(reply.status, 422, "{}", String::from_utf8_lossy(&reply.raw));
        let status = reply.json();
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["name"], name);
        assert_eq!(status["details"]["kind"], "Job");
        let causes: Vec<(String, String, String)> = status["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["field"].as_str().unwrap().into(),
                    c["reason"].as_str().unwrap().into(),
                    c["message"].as_str().unwrap().into(),
                )
            })
            .collect();
        let expected: Vec<(String, String, String)> = expected
            .into_iter()
            .map(|(f, r, m)| (f.to_owned(), r.to_owned(), m))
            .collect();
        assert_eq!(causes, expected);
        // The message is `Job.batch "NAME" is invalid: ` and the causes, bracketed when several.
        let joined: Vec<String> = expected
            .iter()
            .map(|(f, _, m)| format!("{f}: {m}"))
            .collect();
        let joined = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        assert_eq!(
            status["message"],
            format!("Job.batch \"{name}\" is invalid: {joined}")
        );
    }
    // spec.selector and spec.completionMode are immutable too.
    assert_eq!(http.post(JOBS, &base).await.status, 201);
    let reply = http
        .patch(
            &job_path("v"),
            "application/merge-patch+json",
            &json!({"spec": {"completionMode": "Indexed"}}),
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.json()["details"]["causes"][0]["field"],
        "spec.completionMode"
    );
    assert_eq!(
        reply.json()["details"]["causes"][0]["message"],
        "Invalid value: \"Indexed\": field is immutable"
    );
    let reply = http
        .patch(
            &job_path("v"),
            "application/merge-patch+json",
            &json!({"spec": {"selector": {"matchLabels": {"x": "y"}}}}),
        )
        .await;
    assert_eq!(reply.status, 422);
    let causes = reply.json()["details"]["causes"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        causes.iter().any(|c| c["field"] == "spec.selector"
            && c["message"]
                .as_str()
                .unwrap()
                .ends_with(": field is immutable")),
        "{causes:?}"
    );
    // A merge patch through /status changes status only.
    let reply = http
        .patch(
            &format!("{}/status", job_path("v")),
            "application/merge-patch+json",
            &json!({"status": {"succeeded": 3}, "spec": {"parallelism": 4}}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"]["succeeded"], 3);
    assert_eq!(reply.json()["spec"]["parallelism"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn what_is_not_served_is_refused_like_the_apiserver_does() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    let unknown = http
        .get("/apis/apps/v1/namespaces/default/deployments")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "the server could not find the requested resource", "reason": "NotFound", "details": {}, "code": 404})
    );
    let not_allowed = http.post("/apis/batch/v1/jobs", &job("a", json!({}))).await;
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.json()["reason"], "MethodNotAllowed");
    assert_eq!(http.post(JOBS, &job("a", json!({}))).await.status, 201);
    let media = http.patch(&job_path("a"), "text/plain", &json!({})).await;
    assert_eq!(media.status, 415);
    assert_eq!(media.json()["reason"], "UnsupportedMediaType");
    let no_manager = http
        .patch(
            &job_path("a"),
            "application/apply-patch+yaml",
            &job("a", json!({})),
        )
        .await;
    assert_eq!(no_manager.status, 400);
    let broken = http
        .send(
            Method::POST,
            JOBS,
            Some("application/json"),
            Some("{not json".to_owned()),
        )
        .await;
    assert_eq!(broken.status, 400);
    assert_eq!(broken.json()["reason"], "BadRequest");
    let wrong_type = http.post(JOBS, &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t"}, "spec": {"parallelism": "three"}})).await;
    assert_eq!(wrong_type.status, 400);

    // Discovery answers plain JSON even to clients that prefer aggregated discovery.
    let kubectl_accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let aggregated = http.clone().with_accept(kubectl_accept).get("/apis").await;
    assert_eq!(aggregated.content_type, "application/json");
    assert_eq!(aggregated.json()["kind"], "APIGroupList");
    assert_eq!(http.get("/openapi/v3").await.status, 404);
    let version = http.get("/version").await.json();
    assert_eq!(
        (version["major"].as_str(), version["minor"].as_str()),
        (Some("1"), Some("24"))
    );
    sim.shutdown().await;
}

/// `limit` and `continue` as the API server serves them from etcd: pages in key order from one
/// snapshot, `remainingItemCount` only without selectors, the watch cache (`resourceVersion=0`)
/// answering whole, and the 400s for a bad token or a token with a resourceVersion.
#[tokio::test]
async fn lists_come_in_pages_of_one_snapshot() {
    let sim = cluster(slow_pods()).await;
    let http = Http::new(sim.url());
    for ns in ["b-team", "a-team"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        assert_eq!(http.post("/api/v1/namespaces", &body).await.status, 201);
    }
    let mut want = Vec::new();
    for (ns, name) in [
        ("b-team", "j2"),
        ("a-team", "j9"),
        ("b-team", "j1"),
        ("default", "j5"),
        ("a-team", "j3"),
        ("default", "j0"),
        ("a-team", "j4"),
    ] {
        let path = format!("/apis/batch/v1/namespaces/{ns}/jobs");
        let body = job(
            name,
            json!({"odd": (name.as_bytes()[1] % 2 == 1).to_string()}),
        );
        assert_eq!(http.post(&path, &body).await.status, 201);
        want.push(format!("{ns}/{name}"));
    }
    want.sort();

    let all = "/apis/batch/v1/jobs";
    let first = http.get(&format!("{all}?limit=3")).await.json();
    let rv = first["metadata"]["resourceVersion"].clone();
    assert_eq!(first["metadata"]["remainingItemCount"], 4);
    let mut seen: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            format!(
                "{}/{}",
                j["metadata"]["namespace"].as_str().unwrap(),
                j["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    let mut token = first["metadata"]["continue"].as_str().unwrap().to_owned();

    // A Job created between pages is not in the snapshot the pages come from.
    let late = job("j-late", json!({}));
    assert_eq!(
        http.post("/apis/batch/v1/namespaces/default/jobs", &late)
            .await
            .status,
        201
    );

    for (query, message) in [
        (
            format!("limit=3&continue={token}&resourceVersion=1"),
            "specifying resource version is not allowed when using continue",
        ),
        (
            "limit=3&continue=bm9wZQ==".to_owned(),
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ),
    ] {
        let refused = http.get(&format!("{all}?{query}")).await;
        assert_eq!(refused.status, 400, "{query}");
        assert_eq!(refused.json()["message"], message, "{query}");
    }

    loop {
        let page = http
            .get(&format!("{all}?limit=3&continue={token}"))
            .await
            .json();
        assert_eq!(
            page["metadata"]["resourceVersion"], rv,
            "every page is of one snapshot"
        );
        seen.extend(page["items"].as_array().unwrap().iter().map(|j| {
            format!(
                "{}/{}",
                j["metadata"]["namespace"].as_str().unwrap(),
                j["metadata"]["name"].as_str().unwrap()
            )
        }));
        match page["metadata"]["continue"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        seen, want,
        "every Job once, in key order, the late one not among them"
    );

    // With a selector the limit counts matches, and nothing says how many remain.
    let odd = http
        .get(&format!("{all}?limit=2&labelSelector=odd%3Dtrue"))
        .await
        .json();
    assert_eq!(names(&odd), ["j3", "j9"]);
    assert!(odd["metadata"]["continue"].is_string());
    assert!(odd["metadata"].get("remainingItemCount").is_none());
    // One namespace is paged by name; the watch cache ignores the limit.
    let a = http
        .get("/apis/batch/v1/namespaces/a-team/jobs?limit=2")
        .await
        .json();
    assert_eq!(names(&a), ["j3", "j4"]);
    assert_eq!(a["metadata"]["remainingItemCount"], 1);
    let cached = http
        .get(&format!("{all}?limit=2&resourceVersion=0"))
        .await
        .json();
    assert_eq!(names(&cached).len(), 8);
    assert!(cached["metadata"].get("continue").is_none());
    sim.shutdown().await;
}
