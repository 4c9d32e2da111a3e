//! Requests the federation's Kubernetes API must refuse, as the API server refuses them: the
//! status code and `reason` of each, nothing stored, and the scheduler still serving after
//! every one. A property test then sends arbitrary bodies to every write.

mod kubesim_support;

use fedjob_scheduler::config::Config;
use fedjob_scheduler::server::{self, Running};
use hyper::Method;
use kubesim_support::{Http, Reply};
use proptest::prelude::*;
use serde_json::{Value, json};

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

async fn scheduler(dir: &std::path::Path) -> (Running, Http) {
    let config = Config::try_parse_from([
        "fedjob-scheduler",
        "--listen",
        "127.0.0.1:0",
        "--kube-api-listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir.display().to_string(),
    ])
    .unwrap();
    let running = server::start(config).await.expect("the scheduler starts");
    let http = Http::new(&format!("http://{}", running.kube_api_addr.unwrap()));
    (running, http)
}

fn job(name: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"parallelism": 2, "completions": 4, "template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox"}]}}}})
}

/// The `Status` of a refusal, checked against the HTTP status.
fn status(reply: &Reply, code: u16, reason: &str) -> Value {
    assert_eq!(
        reply.status,
        code,
        "{}",
        String::from_utf8_lossy(&reply.raw)
    );
    let body = reply.json();
    assert_eq!(
        (
            body["kind"].as_str(),
            body["code"].as_u64(),
            body["reason"].as_str()
        ),
        (Some("Status"), Some(u64::from(code)), Some(reason)),
        "{body}"
    );
    body
}

/// What the API holds: the list of Jobs without its version, which refusals must not move.
async fn stored(http: &Http) -> Value {
    let list = http.get(JOBS).await.json();
    json!({"resourceVersion": list["metadata"]["resourceVersion"], "items": list["items"]})
}

#[tokio::test]
async fn bad_requests_get_the_api_servers_answers_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (running, http) = scheduler(dir.path()).await;
    let created = http.post(JOBS, &job("keep")).await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.raw)
    );
    let before = stored(&http).await;

    // Resources and subresources not served: 404 with empty details, as `05-scale.txt`.
    for path in [
        "/apis/batch/v1/namespaces/default/cronjobs",
        "/apis/apps/v1/namespaces/default/deployments",
        "/api/v1/namespaces/default/pods",
        "/apis/batch/v1/namespaces/default/jobs/keep/scale",
        "/apis/batch/v2/namespaces/default/jobs",
        "/healthy",
    ] {
        let body = status(&http.get(path).await, 404, "NotFound");
        assert_eq!(
            (body["message"].as_str(), &body["details"]),
            (
                Some("the server could not find the requested resource"),
                &json!({})
            ),
            "{path}"
        );
    }
    // Verbs not served.
    status(
        &http.send(Method::DELETE, JOBS, None, None).await,
        405,
        "MethodNotAllowed",
    );
    status(
        &http.post("/apis/batch/v1/jobs", &job("anywhere")).await,
        405,
        "MethodNotAllowed",
    );
    status(
        &http.put(&format!("{JOBS}/keep/status"), &job("keep")).await,
        405,
        "MethodNotAllowed",
    );
    // Bodies in a format the endpoint does not take, or that do not parse.
    let body = status(
        &http
            .send(Method::POST, JOBS, Some("text/plain"), Some("{}".into()))
            .await,
        415,
        "UnsupportedMediaType",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the body of the request was in an unknown format")
    );
    status(
        &http
            .send(
                Method::POST,
                JOBS,
                Some("application/json"),
                Some("{\"apiVersion\": ".into()),
            )
            .await,
        400,
        "BadRequest",
    );
    status(
        &http
            .send(
                Method::POST,
                JOBS,
                Some("application/yaml"),
                Some("metadata: [name: x".into()),
            )
            .await,
        400,
        "BadRequest",
    );
    status(
        &http
            .send(
                Method::POST,
                JOBS,
                Some("application/json"),
                Some(String::new()),
            )
            .await,
        400,
        "BadRequest",
    );
    // Not a Job, or a Job with a field of the wrong type: the API server's decoding refuses
    // it with 400.
    let mut pod = job("a-pod");
    pod["kind"] = json!("Pod");
    status(&http.post(JOBS, &pod).await, 400, "BadRequest");
    let mut typed = job("typed");
    typed["spec"]["parallelism"] = json!("three");
    let body = status(&http.post(JOBS, &typed).await, 400, "BadRequest");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("spec.parallelism"),
        "{body}"
    );
    // A body over the API server's 3 MiB limit.
    let huge = format!(
        "{{\"metadata\": {{\"name\": \"{}\"}}}}",
        "x".repeat(4 << 20)
    );
    status(
        &http
            .send(Method::POST, JOBS, Some("application/json"), Some(huge))
            .await,
        413,
        "RequestEntityTooLarge",
    );
    // Invalid Jobs and invalid changes: 422 naming the field.
    let mut never = job("never");
    never["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let body = status(&http.post(JOBS, &never).await, 422, "Invalid");
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.template.spec.restartPolicy"
    );
    let body = status(
        &http
            .patch(
                &format!("{JOBS}/keep"),
                "application/merge-patch+json",
                &json!({"spec": {"parallelism": -1}}),
            )
            .await,
        422,
        "Invalid",
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.parallelism");
    assert_eq!(body["details"]["name"], "keep");
    let body = status(
        &http
            .patch(
                &format!("{JOBS}/keep"),
                "application/json-patch+json",
                &json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "alpine"}]),
            )
            .await,
        422,
        "Invalid",
    );
    assert_eq!(body["details"]["causes"][0]["field"], "spec.template");
    let body = status(
        &http
            .patch(
                &format!("{JOBS}/keep"),
                "application/json-patch+json",
                &json!([{"op": "test", "path": "/spec/parallelism", "value": 5}]),
            )
            .await,
        422,
        "Invalid",
    );
    assert!(body.get("details").is_none(), "{body}");
    status(
        &http
            .patch(&format!("{JOBS}/keep"), "application/json", &json!({}))
            .await,
        415,
        "UnsupportedMediaType",
    );
    // A stale resourceVersion, a name taken.
    let stale = {
        let mut j = job("keep");
        j["metadata"]["resourceVersion"] = json!("1");
        j["spec"]["parallelism"] = json!(3);
        j
    };
    let body = status(
        &http.put(&format!("{JOBS}/keep"), &stale).await,
        409,
        "Conflict",
    );
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on jobs.batch \"keep\": the object has been modified; please apply your changes to the latest version and try again"
    );
    status(&http.post(JOBS, &job("keep")).await, 409, "AlreadyExists");
    // Watches and lists from versions that are not versions, or too old.
    status(
        &http
            .get(&format!("{JOBS}?watch=1&resourceVersion=garbage"))
            .await,
        400,
        "BadRequest",
    );
    status(
        &http.get(&format!("{JOBS}?limit=x")).await,
        400,
        "BadRequest",
    );
    status(
        &http.get(&format!("{JOBS}?labelSelector=a%20b")).await,
        400,
        "BadRequest",
    );
    status(
        &http
            .get(&format!("{JOBS}?fieldSelector=spec.parallelism%3D2"))
            .await,
        400,
        "BadRequest",
    );
    status(
        &http.get(&format!("{JOBS}?continue=garbage")).await,
        400,
        "BadRequest",
    );
    // A representation this server cannot give.
    let protobuf_only = http
        .clone()
        .with_accept("application/vnd.kubernetes.protobuf");
    status(
        &protobuf_only.get(&format!("{JOBS}/keep")).await,
        406,
        "NotAcceptable",
    );

    assert_eq!(
        stored(&http).await,
        before,
        "a refusal changed what is stored"
    );
    assert_eq!(http.get("/version").await.status, 200);
    running.shutdown().await.unwrap();
}

/// An arbitrary body: random text, or JSON shaped more or less like a Job.
fn body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9./:-]{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("apiVersion".to_owned()),
                    Just("kind".to_owned()),
                    Just("metadata".to_owned()),
                    Just("name".to_owned()),
                    Just("spec".to_owned()),
                    Just("parallelism".to_owned()),
                    Just("template".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let job_like = (value, any::<bool>()).prop_map(|(spec, named)| {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job", "spec": spec});
        if named {
            j["metadata"] = json!({"name": "fuzz"});
        }
        j.to_string()
    });
    prop_oneof![any::<String>(), job_like]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_are_refused_or_stored_whole(
        bodies in prop::collection::vec(
            (body(), prop_oneof![
                Just("application/json"), Just("application/yaml"),
                Just("application/merge-patch+json"), Just("application/json-patch+json"),
                Just("application/strategic-merge-patch+json"), Just("application/apply-patch+yaml"),
                Just("text/plain")
            ], 0..4usize),
            1..8,
        )
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (running, http) = scheduler(dir.path()).await;
            assert_eq!(http.post(JOBS, &job("keep")).await.status, 201);
            for (body, content_type, target) in bodies {
                let before = stored(&http).await;
                let (method, path) = match target {
                    0 => (Method::POST, JOBS.to_owned()),
                    1 => (Method::PUT, format!("{JOBS}/keep")),
                    2 => (Method::PATCH, format!("{JOBS}/keep")),
                    _ => (Method::PATCH, format!("{JOBS}/fuzz")),
                };
                let reply = http.send(method.clone(), &path, Some(content_type), Some(body.clone())).await;
                let answer: Value = serde_json::from_slice(&reply.raw)
                    .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {:?}", reply.raw));
                if reply.status >= 400 {
                    // A refusal is a Status with the same code, and nothing changed.
                    assert!(matches!(reply.status, 400 | 404 | 409 | 413 | 415 | 422), "{method} {path} {body:?}: {answer}");
                    assert_eq!((answer["kind"].as_str(), answer["code"].as_u64()), (Some("Status"), Some(u64::from(reply.status))), "{answer}");
                    assert_eq!(stored(&http).await, before, "{method} {path} {body:?} was refused but changed the store");
                } else {
                    // Accepted: what the API answered is what it stored.
                    assert_eq!(answer["kind"], "Job", "{answer}");
                    let name = answer["metadata"]["name"].as_str().unwrap();
                    let read = http.get(&format!("{JOBS}/{name}")).await.json();
                    assert_eq!(read["metadata"]["resourceVersion"], answer["metadata"]["resourceVersion"]);
                    assert_eq!(read["spec"], answer["spec"]);
                }
            }
            assert_eq!(http.get("/version").await.status, 200, "the scheduler still serves");
            running.shutdown().await.unwrap();
        });
    }
}
