//! The `fedjob-syncer` binary as an operator runs it: usage errors exit 64 before anything
//! starts, SIGTERM drains and exits 0. Plus a measurement (ignored by default) of how the
//! syncer copes with a thousand shards:
//! `cargo test -p fedjob-syncer --release --test syncer_binary -- --ignored --nocapture`.

mod support;

use std::process::Stdio;
use std::time::Duration;

use fedjob_proto::v1::ShardPhase;
use kube::api::ListParams;
use support::{MockScheduler, Shard, Sim, WAIT, eventually, phase};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_fedjob-syncer");

fn spawn(sim: &Sim, scheduler: &str, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args([
            "--scheduler",
            scheduler,
            "--cluster-name",
            sim.cluster.name(),
        ])
        .arg("--kubeconfig")
        .arg(&sim.kubeconfig)
        .args([
            "--context",
            sim.cluster.name(),
            "--heartbeat-interval",
            "1s",
        ])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("fedjob-syncer starts")
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");
}

/// Resident set size of a process, in KiB.
fn rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap()))
        .expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn usage_errors_exit_64_and_help_exits_0() {
    for args in [
        vec!["--cluster-name", "c1"],
        vec![
            "--scheduler",
            "http://127.0.0.1:1",
            "--cluster-name",
            "Not_A_Label",
        ],
        vec!["--scheduler", "127.0.0.1:1", "--cluster-name", "c1"],
        vec![
            "--scheduler",
            "http://127.0.0.1:1",
            "--cluster-name",
            "c1",
            "--labels",
            "x",
        ],
        vec![
            "--scheduler",
            "http://127.0.0.1:1",
            "--cluster-name",
            "c1",
            "--bogus",
        ],
    ] {
        let out = Command::new(BIN).args(&args).output().await.unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says why on stderr");
    }
    let help = Command::new(BIN).arg("--help").output().await.unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--create-namespaces"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_the_session_and_exits_0() {
    let sim = Sim::start("c1", Duration::from_secs(3600)).await;
    let mock = MockScheduler::start().await;
    let mut child = spawn(&sim, &mock.url, &[]);
    mock.wait_session().await;
    mock.assign(Shard::new("kept").run(1)).await;
    mock.wait_report("default", "kept", "running", |s| s.active == 2)
        .await;

    sigterm(&child);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let ends = mock.record().ends;
    assert_eq!(ends, vec![Ok(())], "the stream was closed cleanly");
    assert!(
        sim.job("default", "kept").await.is_some(),
        "shards keep running while the syncer is away"
    );
}

/// How long 1,000 shards (or `$FEDJOB_SHARDS`) take to be created and reported, what a restart costs, and the
/// syncer's memory. Prints the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture (preferably --release)"]
async fn a_thousand_shards() {
    // `FEDJOB_SHARDS=5000` measures another size.
    let n_env = std::env::var("FEDJOB_SHARDS").ok();
    let n: usize = n_env
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let sim = Sim::start("c1", Duration::from_secs(3600)).await;
    let mock = MockScheduler::start().await;
    let mut child = spawn(&sim, &mock.url, &[]);
    mock.wait_session().await;
    let idle = rss_kib(&child);

    let shards: Vec<Shard> = (0..n)
        .map(|i| Shard::new(&format!("load-{i:04}")).counts(1, Some(1)))
        .collect();
    let started = Instant::now();
    mock.assign_all(shards.iter().map(|s| s.run(1)).collect())
        .await;
    eventually("every shard running", Duration::from_secs(300), || async {
        let r = mock.record();
        let running = shards
            .iter()
            .filter(|s| {
                r.latest("default", &s.name)
                    .is_some_and(|st| phase(&st) == ShardPhase::Running && st.active == 1)
            })
            .count();
        (running == n).then_some(())
    })
    .await;
    let applied = started.elapsed();
    let loaded = rss_kib(&child);
    let jobs = sim
        .jobs("default")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), n);

    // A restart: the new process lists the cluster, says hello with all of them and gets
    // every assignment again, and writes nothing.
    child.kill().await.unwrap();
    let restarted = Instant::now();
    let mut child = spawn(&sim, &mock.url, &[]);
    let hello = eventually("the second hello", Duration::from_secs(120), || async {
        let r = mock.record();
        (r.hellos.len() >= 2).then(|| r.hellos[1].1.held.len())
    })
    .await;
    let to_hello = restarted.elapsed();
    assert_eq!(hello, n);
    let before = mock.record().reports.len();
    eventually(
        "revision 1 held again for all",
        Duration::from_secs(120),
        || async {
            let r = mock.record();
            let held = r.reports[before..]
                .iter()
                .filter(|s| s.revision == 1)
                .map(|s| s.shard.clone())
                .collect::<std::collections::HashSet<_>>()
                .len();
            (held == n).then_some(())
        },
    )
    .await;
    let resynced = restarted.elapsed();
    let generations: Vec<i64> = sim
        .jobs("default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|j| j.metadata.generation.unwrap_or(0))
        .collect();
    assert!(
        generations.iter().all(|g| *g == 1),
        "no shard rewritten after the restart"
    );
    let after_restart = rss_kib(&child);
    println!(
        "{n} shards: created and reported Running in {applied:?} ({:.0} shards/s); \
         restart: hello after {to_hello:?}, all assignments re-held after {resynced:?}, no writes; \
         syncer RSS idle {idle} KiB, with {n} shards {loaded} KiB, after restart {after_restart} KiB",
        n as f64 / applied.as_secs_f64()
    );
    sigterm(&child);
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}
