//! kubectl against the `fedjob-kubesim` binary: the kubeconfig it writes, discovery, create,
//! get, wait (a watch), describe, apply, delete, and a clean exit on SIGTERM; over TLS, and
//! through the faults `--fault` injects.
//!
//! kubectl must be installed (`scripts/test` installs it when missing); without it these
//! tests fail rather than pass silently.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const JOB: &str = "\
apiVersion: batch/v1
kind: Job
metadata:
  name: hello
  labels:
    app: hello
spec:
  parallelism: 2
  completions: 4
  template:
    metadata:
      annotations:
        fedjob.io/sim-duration: 200ms
    spec:
      restartPolicy: Never
      containers:
        - name: w
          image: busybox
          command: [\"echo\", \"hi\"]
";

fn kubectl_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("kubectl"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("kubectl is not installed (not on PATH): install it (scripts/test does) to run the kubectl tests")
    })
}

/// A running `fedjob-kubesim` process, killed if the test fails before stopping it.
struct Sim {
    child: Child,
    kubeconfig: PathBuf,
    clusters: Value,
    /// The rest of its stdout (nothing is expected after the ready line).
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

async fn start_sim(dir: &Path, clusters: &str, extra: &[&str]) -> Sim {
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedjob-kubesim"))
        .args([
            "--clusters",
            clusters,
            "--pod-duration",
            "100ms",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("fedjob-kubesim starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("fedjob-kubesim is ready within 30s")
        .expect("stdout reads")
        .expect("a ready line");
    let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["kubeconfig"], kubeconfig.display().to_string());
    Sim {
        child,
        kubeconfig,
        clusters: ready["clusters"].clone(),
        stdout: lines,
    }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let out = Command::new(kubectl_binary())
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.ok,
        "{what} failed:\nstdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

#[tokio::test]
async fn kubectl_creates_gets_waits_describes_applies_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let mut sim = start_sim(home, "c1,c2", &[]).await;
    assert!(
        sim.clusters["c1"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert!(
        sim.clusters["c2"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let kc = sim.kubeconfig.clone();
    let manifest = home.join("job.yaml");
    std::fs::write(&manifest, JOB).unwrap();
    let manifest = manifest.to_str().unwrap();

    let ns = kubectl(home, &kc, &["get", "ns"]).await;
    assert_ok(&ns, "get ns");
    assert!(
        ns.stdout.contains("default") && ns.stdout.contains("kube-system"),
        "{}",
        ns.stdout
    );

    let none = kubectl(home, &kc, &["get", "jobs"]).await;
    assert_ok(&none, "get jobs");
    assert!(
        none.stderr
            .contains("No resources found in default namespace."),
        "{}",
        none.stderr
    );

    // create -f with kubectl's default validation.
    let created = kubectl(home, &kc, &["create", "-f", manifest]).await;
    assert_ok(&created, "create -f");
    assert_eq!(created.stdout.trim(), "job.batch/hello created");
    let again = kubectl(home, &kc, &["create", "-f", manifest]).await;
    assert!(!again.ok);
    assert!(
        again
            .stderr
            .contains("Error from server (AlreadyExists): error when creating"),
        "{}",
        again.stderr
    );

    // wait watches the Job until the simulated pods are done.
    let waited = kubectl(
        home,
        &kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=60s",
        ],
    )
    .await;
    assert_ok(&waited, "wait");
    assert_eq!(waited.stdout.trim(), "job.batch/hello condition met");

    let got = kubectl(home, &kc, &["get", "jobs"]).await;
    assert_ok(&got, "get jobs");
    let header: Vec<&str> = got
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "COMPLETIONS", "DURATION", "AGE"]);
    assert!(
        got.stdout.lines().nth(1).unwrap().starts_with("hello"),
        "{}",
        got.stdout
    );
    assert!(got.stdout.contains("4/4"), "{}", got.stdout);

    let json = kubectl(home, &kc, &["get", "job", "hello", "-o", "json"]).await;
    assert_ok(&json, "get -o json");
    let job: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(job["status"]["succeeded"], 4);
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"],
        "hello"
    );

    let described = kubectl(home, &kc, &["describe", "job", "hello"]).await;
    assert_ok(&described, "describe");
    assert!(
        described.stdout.contains("Pods Statuses:") && described.stdout.contains("4 Succeeded"),
        "{}",
        described.stdout
    );

    let pods = kubectl(home, &kc, &["get", "pods", "-l", "job-name=hello"]).await;
    assert_ok(&pods, "get pods");
    assert_eq!(
        pods.stdout
            .lines()
            .filter(|l| l.contains("Completed"))
            .count(),
        4,
        "{}",
        pods.stdout
    );

    // The other context is another cluster.
    let other = kubectl(home, &kc, &["--context", "c2", "get", "jobs"]).await;
    assert_ok(&other, "get jobs in c2");
    assert!(
        other.stderr.contains("No resources found"),
        "{}",
        other.stderr
    );

    // Validation errors read like the real server's.
    let bad = home.join("bad.yaml");
    std::fs::write(
        &bad,
        JOB.replace("name: hello", "name: bad")
            .replace("restartPolicy: Never", "restartPolicy: Always"),
    )
    .unwrap();
    let refused = kubectl(home, &kc, &["create", "-f", bad.to_str().unwrap()]).await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains(
            "The Job \"bad\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
        ),
        "{}",
        refused.stderr
    );

    // apply, client-side and server-side, in the second cluster.
    let applied = kubectl(home, &kc, &["--context", "c2", "apply", "-f", manifest]).await;
    assert_ok(&applied, "apply");
    assert_eq!(applied.stdout.trim(), "job.batch/hello created");
    let unchanged = kubectl(home, &kc, &["--context", "c2", "apply", "-f", manifest]).await;
    assert_ok(&unchanged, "apply again");
    assert_eq!(unchanged.stdout.trim(), "job.batch/hello unchanged");
    let ssa = kubectl(
        home,
        &kc,
        &["--context", "c2", "apply", "--server-side", "-f", manifest],
    )
    .await;
    assert_ok(&ssa, "apply --server-side");
    assert_eq!(ssa.stdout.trim(), "job.batch/hello serverside-applied");

    // delete waits for the Job to be gone.
    let deleted = kubectl(home, &kc, &["delete", "job", "hello"]).await;
    assert_ok(&deleted, "delete");
    assert_eq!(deleted.stdout.trim(), "job.batch \"hello\" deleted");
    let gone = kubectl(home, &kc, &["get", "job", "hello"]).await;
    assert!(!gone.ok);
    assert!(
        gone.stderr
            .contains("Error from server (NotFound): jobs.batch \"hello\" not found"),
        "{}",
        gone.stderr
    );

    // SIGTERM stops it cleanly.
    let pid = sim.child.id().expect("still running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), sim.child.wait())
        .await
        .expect("fedjob-kubesim exits within 30s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let rest = sim.stdout.next_line().await.expect("stdout reads");
    assert_eq!(rest, None, "stdout carries only the ready line");
}

#[tokio::test]
async fn kubectl_over_tls_through_faults() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let sim = start_sim(
        home,
        "c1,c2",
        &[
            "--tls",
            "--fault",
            "c1:403,verb=create,resource=jobs,count=1",
            "--fault",
            "c1:429,verb=list,resource=jobs,count=1",
        ],
    )
    .await;
    let url = sim.clusters["c1"].as_str().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let kc = sim.kubeconfig.clone();
    let kubeconfig = std::fs::read_to_string(&kc).unwrap();
    assert_eq!(
        kubeconfig.matches("certificate-authority-data").count(),
        2,
        "{kubeconfig}"
    );
    let manifest = home.join("job.yaml");
    std::fs::write(&manifest, JOB).unwrap();
    let manifest = manifest.to_str().unwrap();

    // RBAC's denial, as kubectl prints a real one.
    let denied = kubectl(home, &kc, &["create", "-f", manifest]).await;
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains(
            "Error from server (Forbidden): error when creating \""
        ) && denied.stderr.contains(
            "jobs.batch is forbidden: User \"system:serviceaccount:fedjob-system:fedjob-syncer\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"default\""
        ),
        "{}",
        denied.stderr
    );
    let created = kubectl(home, &kc, &["create", "-f", manifest]).await;
    assert_ok(&created, "create once the denial is spent");
    // kubectl waits out the 429's Retry-After and asks again.
    let listed = kubectl(home, &kc, &["get", "jobs", "-o", "name"]).await;
    assert_ok(&listed, "get jobs through a 429");
    assert_eq!(listed.stdout.trim(), "job.batch/hello");
    // The other cluster has no faults, and a CA of its own.
    let other = kubectl(home, &kc, &["--context", "c2", "create", "-f", manifest]).await;
    assert_ok(&other, "create in c2");
}

#[tokio::test]
async fn bad_flags_exit_with_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_fedjob-kubesim"))
        .args(["--pod-duration", "soon"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid duration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (args, why) in [
        (&["--fault", "teapot"][..], "unknown fault \"teapot\""),
        (
            &["--clusters", "c1", "--fault", "c9:500"][..],
            "--fault names \"c9\"",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fedjob-kubesim"))
            .args(args)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}
