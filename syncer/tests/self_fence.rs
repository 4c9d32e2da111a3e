//! Self-fencing (`--self-fence-after`) against a simulated member cluster and a mock scheduler
//! that goes away and comes back on the same port: the syncer suspends its unfinished shards
//! once the lease runs out, and resumes them once a session is in sync again — even when the
//! scheduler has nothing new to say (same revision).

mod support;

use std::time::Duration;

use fedjob_proto::v1::ShardPhase;
use k8s_openapi::api::batch::v1::Job;
use support::{MockScheduler, Shard, Sim, WAIT, eventually, init_logging, phase};
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(2);
const FENCED: &str = "fedjob.io/self-fenced";

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

fn active(job: &Job) -> i32 {
    job.status.as_ref().and_then(|s| s.active).unwrap_or(0)
}

fn marked(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(FENCED))
}

/// Waits until the shard `name` is suspended by the fence with no pod running; returns it.
async fn wait_fenced(sim: &Sim, name: &str) -> Job {
    eventually("the shard suspended by the fence", WAIT, || async {
        let job = sim.job("default", name).await?;
        (suspended(&job) && marked(&job) && active(&job) == 0).then_some(job)
    })
    .await
}

/// Waits until the shard `name` runs `pods` pods again, unmarked; returns it.
async fn wait_resumed(sim: &Sim, name: &str, pods: i32) -> Job {
    eventually("the shard running again", WAIT, || async {
        let job = sim.job("default", name).await?;
        (!suspended(&job) && !marked(&job) && active(&job) == pods).then_some(job)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncer_cut_off_past_its_lease_suspends_its_shards_and_resumes_them_in_sync() {
    init_logging();
    let sim = Sim::start("c1", Duration::from_secs(3600)).await;
    let mut mock = MockScheduler::start().await;
    let syncer = sim.syncer(&mock.url, &["--self-fence-after", "2s"]).await;
    mock.wait_session().await;
    let shard = Shard::new("fenced").counts(2, Some(4));
    mock.assign(shard.run(1)).await;
    // A finished shard and a suspended one are left as they are.
    mock.assign(
        Shard::new("done")
            .counts(1, Some(1))
            .pods_run("100ms")
            .run(1),
    )
    .await;
    mock.assign(Shard::new("paused").suspend(1)).await;
    mock.wait_report("default", "fenced", "running", |s| s.active == 2)
        .await;
    mock.wait_report("default", "done", "complete", |s| {
        phase(s) == ShardPhase::Complete
    })
    .await;
    mock.wait_report("default", "paused", "suspended", |s| {
        phase(s) == ShardPhase::Suspended
    })
    .await;
    let before = sim.job("default", "fenced").await.unwrap();
    let done_before = sim.job("default", "done").await.unwrap();
    let paused_before = sim.job("default", "paused").await.unwrap();

    // The scheduler goes away. Nothing changes within the lease…
    let cut = Instant::now();
    mock.halt().await;
    tokio::time::sleep(LEASE / 2).await;
    let still = sim.job("default", "fenced").await.unwrap();
    assert!(!suspended(&still), "suspended within the lease");
    // …then the shard is suspended, its pods stopped.
    let fenced = wait_fenced(&sim, "fenced").await;
    let after = cut.elapsed();
    println!("cut off → shard suspended in the cluster: {after:?} (lease {LEASE:?})");
    assert!(
        after >= LEASE - Duration::from_millis(500),
        "fenced before the lease ran out: {after:?}"
    );
    assert_eq!(fenced.metadata.uid, before.metadata.uid);
    assert_eq!(
        fenced.spec.as_ref().unwrap().parallelism,
        Some(2),
        "the fence wrote spec.suspend alone"
    );
    assert_eq!(fenced.metadata.labels, before.metadata.labels);
    let managers: Vec<String> = fenced
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"fedjob-syncer-fence".to_owned()),
        "{managers:?}"
    );
    let done = sim.job("default", "done").await.unwrap();
    assert_eq!(
        done.metadata.resource_version, done_before.metadata.resource_version,
        "a finished shard is not touched"
    );
    let paused = sim.job("default", "paused").await.unwrap();
    assert!(suspended(&paused) && !marked(&paused));
    assert_eq!(
        paused.metadata.resource_version,
        paused_before.metadata.resource_version
    );

    // The scheduler comes back with nothing new to say: the shard is resumed anyway.
    let hellos = mock.record().hellos.len();
    mock.restart().await;
    let hello = eventually("a hello to the restarted scheduler", WAIT, || async {
        let r = mock.record();
        r.hellos.get(hellos).map(|(_, h)| h.clone())
    })
    .await;
    let held = hello.held.iter().find(|s| s.shard == "fenced").unwrap();
    assert!(held.suspended, "{held:?}");
    assert_eq!(
        (phase(held), held.reason.as_str(), held.revision),
        (ShardPhase::Suspended, "SelfFenced", 1),
        "the scheduler learns why, and the revision it holds is current"
    );
    assert!(
        held.message.contains("--self-fence-after"),
        "{}",
        held.message
    );
    let resumed = wait_resumed(&sim, "fenced", 2).await;
    println!(
        "scheduler back → shard running again: {:?}",
        cut.elapsed() - after
    );
    assert_eq!(resumed.metadata.uid, before.metadata.uid, "not re-created");
    mock.wait_report("default", "fenced", "RUNNING reported", |s| {
        phase(s) == ShardPhase::Running && !s.suspended && s.active == 2
    })
    .await;
    let paused = sim.job("default", "paused").await.unwrap();
    assert!(suspended(&paused), "SUSPEND still holds");
    syncer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syncer_restarted_while_cut_off_fences_too_and_resumes_once_in_sync() {
    init_logging();
    let sim = Sim::start("c1", Duration::from_secs(3600)).await;
    let mut mock = MockScheduler::start().await;
    let syncer = sim.syncer(&mock.url, &[]).await;
    mock.wait_session().await;
    mock.assign(Shard::new("survivor").counts(3, Some(6)).run(1))
        .await;
    mock.wait_report("default", "survivor", "running", |s| s.active == 3)
        .await;
    let before = sim.job("default", "survivor").await.unwrap();
    drop(syncer); // a crash
    mock.halt().await;

    // A new process, no scheduler: it holds no assignment, yet the shard is its to fence.
    let started = Instant::now();
    let syncer = sim.syncer(&mock.url, &["--self-fence-after", "2s"]).await;
    wait_fenced(&sim, "survivor").await;
    println!(
        "start without a scheduler → fenced: {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= LEASE - Duration::from_millis(500));
    drop(syncer); // a crash while fenced: the mark is in the cluster

    // Restarted again, not yet in sync: the fence's mark is not lifted by itself.
    let syncer = sim.syncer(&mock.url, &["--self-fence-after", "2s"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(suspended(&sim.job("default", "survivor").await.unwrap()));
    mock.restart().await;
    let resumed = wait_resumed(&sim, "survivor", 3).await;
    assert_eq!(resumed.metadata.uid, before.metadata.uid);
    mock.wait_report("default", "survivor", "running again", |s| {
        phase(s) == ShardPhase::Running && s.active == 3 && s.revision == 1
    })
    .await;
    syncer.stop().await;
}
