//! Shared helpers of the `kubesim_*` tests: a plain HTTP client that talks to a simulated
//! cluster the way curl did when `k8s-facts/` was recorded, the recorded facts themselves,
//! normalization of the values that differ between runs, and `eventually`.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use fedjob_tests::kubesim::{SimCluster, SimOptions};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long any condition may take on a busy CI machine before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts a simulated cluster with `options` (or the defaults).
pub async fn cluster(options: SimOptions) -> SimCluster {
    SimCluster::start(options)
        .await
        .expect("a simulated cluster starts")
}

/// Options whose pods never finish during a test.
pub fn slow_pods() -> SimOptions {
    SimOptions {
        pod_duration: Duration::from_secs(600),
        ..SimOptions::default()
    }
}

/// Options whose pods finish at once.
pub fn fast_pods() -> SimOptions {
    SimOptions {
        pod_duration: Duration::from_millis(100),
        ..SimOptions::default()
    }
}

/// The directory of recorded apiserver answers, kept in the repository
/// (`tests/fixtures/k8s-facts/`, whose README says where they came from).
pub fn facts_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/k8s-facts");
    assert!(
        dir.is_dir(),
        "the recorded kube-apiserver answers are missing: expected {}",
        dir.display()
    );
    dir
}

/// One recorded JSON answer.
pub fn fact(name: &str) -> Value {
    let path = facts_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A recorded stream of watch events, one JSON object per line.
pub fn fact_lines(name: &str) -> Vec<Value> {
    let path = facts_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Every header.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub raw: Bytes,
}

impl Reply {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.raw)
            )
        })
    }
}

/// A client for one simulated cluster.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    user_agent: String,
    token: Option<String>,
    accept: String,
}

impl Http {
    /// A client of `base` that identifies as curl (so writes are managed by "curl", as in
    /// `k8s-facts/`).
    pub fn new(base: &str) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.trim_end_matches('/').to_owned(),
            user_agent: "curl/8.5.0".to_owned(),
            token: None,
            accept: "application/json".to_owned(),
        }
    }

    /// The same client sending another `Accept` header.
    pub fn with_accept(mut self, accept: &str) -> Self {
        self.accept = accept.to_owned();
        self
    }

    /// The same client sending `Authorization: Bearer TOKEN`.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("User-Agent", &self.user_agent)
            .header("Accept", &self.accept);
        if let Some(ct) = content_type {
            builder = builder.header("Content-Type", ct);
        }
        if let Some(t) = &self.token {
            builder = builder.header("Authorization", format!("Bearer {t}"));
        }
        builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a valid request")
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let response = self
            .client
            .request(self.request(method.clone(), path, content_type, body))
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let headers = response.headers().clone();
        let raw = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        Reply {
            status,
            content_type,
            headers,
            raw,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::POST,
            path,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }

    /// PUT a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(
            Method::PUT,
            path,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }

    /// PATCH with a content type.
    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Reply {
        self.send(
            Method::PATCH,
            path,
            Some(content_type),
            Some(body.to_string()),
        )
        .await
    }

    /// DELETE, with an optional `DeleteOptions` body.
    pub async fn delete(&self, path: &str, body: Option<&Value>) -> Reply {
        match body {
            Some(b) => {
                self.send(
                    Method::DELETE,
                    path,
                    Some("application/json"),
                    Some(b.to_string()),
                )
                .await
            }
            None => self.send(Method::DELETE, path, None, None).await,
        }
    }

    /// Opens a watch and yields its lines as JSON.
    pub async fn watch(&self, path: &str) -> Lines {
        let response = self
            .client
            .request(self.request(Method::GET, path, None, None))
            .await
            .unwrap_or_else(|e| panic!("watch {path}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "watch {path}");
        let (tx, rx) = mpsc::unbounded_channel();
        let mut body = response.into_body();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let value: Value =
                        serde_json::from_slice(&line).expect("each watch line is one JSON object");
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
            assert!(buffer.is_empty(), "a watch ended inside a line");
        });
        Lines { rx }
    }
}

/// The lines of an open watch.
pub struct Lines {
    rx: mpsc::UnboundedReceiver<Value>,
}

impl Lines {
    /// The next event, or `None` when the stream ended; panics after [`PATIENCE`].
    pub async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("a watch event within the patience")
    }

    /// The next event whose type is not BOOKMARK.
    pub async fn next_change(&mut self) -> Option<Value> {
        loop {
            let event = self.next().await?;
            if event["type"] != "BOOKMARK" {
                return Some(event);
            }
        }
    }

    /// Every event until the stream ends.
    pub async fn collect(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// Polls `check` until it yields a value; panics after `PATIENCE` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_timestamp(s: &str) -> bool {
    s.len() == 20
        && s.as_bytes()[10] == b'T'
        && s.ends_with('Z')
        && s.parse::<jiff::Timestamp>().is_ok()
}

/// Replaces what differs between runs — uids, timestamps, resourceVersions, the random
/// suffixes of generated names — so a live answer compares equal to a recorded one.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let v = match (k.as_str(), v) {
                    ("resourceVersion", Value::String(_)) => Value::String("<rv>".to_owned()),
                    // A uid in a key: `k:{"uid":"…"}` entries of managed fields.
                    _ => normalize(v),
                };
                let k = if k.contains("uid") && k.starts_with("k:") {
                    "k:{\"uid\":\"<uid>\"}".to_owned()
                } else {
                    k.clone()
                };
                out.insert(k, v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::String(s) if is_uuid(s) => Value::String("<uid>".to_owned()),
        Value::String(s) if is_timestamp(s) => Value::String("<time>".to_owned()),
        Value::String(s) => {
            // Generated names: `NAME-xxxxx`.
            match s.rsplit_once('-') {
                Some((base, suffix))
                    if suffix.len() == 5
                        && suffix
                            .chars()
                            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
                        && !base.is_empty()
                        && (base == "kube-api-access"
                            || base.chars().all(|c| c.is_ascii_lowercase() || c == '-')) =>
                {
                    Value::String(format!("{base}-<suffix>"))
                }
                _ => value.clone(),
            }
        }
        other => other.clone(),
    }
}

/// Drops `metadata.managedFields` (kubectl hides them; `15-`/`16-` were recorded that way).
pub fn without_managed_fields(value: &Value) -> Value {
    let mut v = value.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

/// Asserts two JSON values are equal, printing both in full when not.
#[track_caller]
pub fn assert_json_eq(actual: &Value, expected: &Value, what: &str) {
    if actual != expected {
        panic!(
            "{what}: the simulator differs from the real apiserver\n--- simulator\n{}\n--- recorded\n{}",
            serde_json::to_string_pretty(actual).unwrap_or_default(),
            serde_json::to_string_pretty(expected).unwrap_or_default()
        );
    }
}

/// Asserts a failure answer matches a recorded `Status`: code, reason, message, details
/// (name, group, kind) and every cause's field, reason and message.
#[track_caller]
pub fn assert_status_like(reply: &Reply, fact_name: &str) {
    let expected = fact(fact_name);
    let actual = reply.json();
    assert_eq!(
        u64::from(reply.status),
        expected["code"].as_u64().unwrap_or(200),
        "{fact_name}: HTTP code; body {actual}"
    );
    assert_json_eq(&normalize(&actual), &normalize(&expected), fact_name);
}

/// A Job's path in `default`.
pub fn job_path(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/default/jobs/{name}")
}

/// The Jobs collection of `default`.
pub const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

/// Waits until the Job `name` satisfies `check` and returns it.
pub async fn wait_job(
    http: &Http,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, || async {
        let reply = http.get(&job_path(name)).await;
        (reply.status == 200)
            .then(|| reply.json())
            .filter(|j| check(j))
    })
    .await
}

/// Whether a Job has a condition of `kind` with status True.
pub fn has_condition(job: &Value, kind: &str) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}
