//! Breaking things on purpose, with real processes over loopback TCP (issue 5): a scheduler, a
//! `fedjob-kubesim` hosting the member clusters and a syncer per cluster. Each test kills
//! something with SIGKILL (or presents the wrong credentials) and checks what the member
//! clusters hold afterwards, counting Jobs by the `fedjob.io/job-uid` label rather than by name,
//! and what the federation reports.
//!
//! Timings are short (grace 1 s, pods of 1–4 s); every wait polls a condition against a
//! deadline, and the only times asserted are generous upper bounds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fedjob_tests::harness::federation::{
    Federation, Setup, WAIT, active, condition, finished, job_manifest, local_condition,
    placements, repo, spec_completions, strings, succeeded, suspended,
};
use fedjob_tests::harness::{
    FedctlOutput, SchedulerProc, SimProc, SyncerProc, eventually, fedctl, free_port, http_get,
};
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use tokio::time::Instant;

const REBALANCE: &str = r#"{"rebalance": true, "clusters": {"*": {"weight": 1}}}"#;

/// One federation at a time: several at once on two cores would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A manifest as YAML text.
fn manifest(name: &str, p: i32, c: i32, pod: &str, prefs: Option<&str>) -> String {
    serde_yaml::to_string(&job_manifest(name, p, Some(c), pod, prefs)).unwrap()
}

fn fenced(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("fedjob.io/self-fenced"))
}

/// Asserts that every cluster holds exactly one shard of `uid` with its planned completions,
/// all of them done, and that they sum to `completions`.
async fn assert_exact(fed: &Federation, uid: &str, completions: i32) {
    assert_exact_in(fed, &fed.cluster_names(), uid, completions).await;
}

/// [`assert_exact`] over `clusters` only.
async fn assert_exact_in(fed: &Federation, clusters: &[&str], uid: &str, completions: i32) {
    let mut planned = 0;
    let mut done = 0;
    for c in clusters {
        let shards = fed.shards(c, uid).await;
        assert_eq!(
            shards.len(),
            1,
            "{c}: exactly one shard of {uid}: {:?}",
            shards.keys().collect::<Vec<_>>()
        );
        for j in shards.values() {
            planned += spec_completions(j).unwrap();
            done += succeeded(j);
        }
    }
    assert_eq!(
        (planned, done),
        (completions, completions),
        "planned and succeeded in the clusters"
    );
}

#[tokio::test]
async fn scheduler_kill9_while_jobs_run_loses_and_duplicates_nothing() {
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let mut fed = Federation::start(Setup::new("1s")).await;
    let uid = fed.create("crash", 6, 18, "1s", None).await;
    fed.wait_running(&uid).await;
    let before = fed.snapshot(&uid).await;

    fed.kill_scheduler().await;
    // Let the clusters make progress the scheduler has not heard of.
    eventually("progress while the scheduler is down", WAIT, || async {
        let mut done = 0;
        for c in &fed.setup.clusters {
            done += fed
                .shards(c, &uid)
                .await
                .values()
                .map(succeeded)
                .sum::<i32>();
        }
        (done >= 3).then_some(())
    })
    .await
    .unwrap();
    fed.restart_scheduler().await;
    fed.wait_ready(&["c1", "c2", "c3"]).await;

    // A Job created after the restart runs too.
    let after_uid = fed.create("after", 3, 3, "300ms", None).await;
    let job = fed.wait_complete("crash").await;
    assert_eq!(job["status"]["succeeded"], 18, "{job}");
    assert_eq!(job["status"]["failed"].as_i64().unwrap_or(0), 0, "{job}");
    for p in placements(&job).values() {
        assert_eq!((&p["completions"], &p["succeeded"]), (&json!(6), &json!(6)));
        assert_eq!(p["state"], "Complete", "{p}");
    }
    assert_eq!(
        fed.snapshot(&uid).await,
        before,
        "the same local Jobs, none re-created"
    );
    assert_exact(&fed, &uid, 18).await;
    let after = fed.wait_complete("after").await;
    assert_eq!(after["status"]["succeeded"], 3);
    assert_exact(&fed, &after_uid, 3).await;
    for c in ["c1", "c2", "c3"] {
        assert_eq!(fed.managed(c).await.len(), 2, "{c}: two shards in all");
    }
    eprintln!(
        "scheduler kill -9 while jobs run: {:.1} s",
        started_at.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn syncer_kill9_while_applying_many_shards_duplicates_none() {
    const JOBS: usize = 120;
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let mut setup = Setup::new("1s");
    setup.clusters = strings(&["c1", "c2"]);
    // c1 stays Ready while its syncer is away, so that every Job is split over both clusters.
    setup.scheduler = strings(&["--cluster-grace", "60s"]);
    let mut fed = Federation::start(setup).await;
    // c1's syncer applies them all at once when it connects: kill it in the middle of that.
    fed.kill_syncer("c1").await;
    let mut docs = Vec::new();
    for i in 0..JOBS {
        docs.push(manifest(&format!("many-{i}"), 2, 2, "300ms", None));
    }
    let mut uids = BTreeMap::new();
    for (i, doc) in docs.iter().enumerate() {
        let path = fed.dir.path().join(format!("many-{i}.yaml"));
        std::fs::write(&path, doc).unwrap();
        let out = fed
            .fedctl(&["create", "-f", &path.display().to_string()])
            .await
            .ok();
        assert!(out.stdout.contains("created"), "{}", out.stdout);
    }
    for item in fed.fedctl(&["get", "jobs", "-o", "json"]).await.ok().json()["items"]
        .as_array()
        .unwrap()
    {
        uids.insert(
            item["metadata"]["name"].as_str().unwrap().to_owned(),
            item["metadata"]["uid"].as_str().unwrap().to_owned(),
        );
    }
    assert_eq!(uids.len(), JOBS);

    fed.start_syncer("c1");
    let at_kill = eventually("c1's syncer applying its shards", WAIT, || async {
        let n = fed.managed("c1").await.len();
        (n >= JOBS / 10).then_some(n)
    })
    .await
    .unwrap();
    fed.kill_syncer("c1").await;
    let after_kill = fed.managed("c1").await.len();
    eprintln!(
        "syncer kill -9 mid-apply: {at_kill} of {JOBS} shards in c1 when killed, {after_kill} right after"
    );
    fed.start_syncer("c1");

    eventually("every Job Complete", WAIT, || async {
        let out = fed.fedctl(&["get", "jobs", "-o", "json"]).await;
        (out.code == Some(0)
            && out.json()["items"].as_array().unwrap().iter().all(|j| {
                condition(j, "Complete") && j["status"]["succeeded"] == j["spec"]["completions"]
            }))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    for c in ["c1", "c2"] {
        let jobs = fed.managed(c).await;
        let mut per_uid: BTreeMap<String, Vec<&Job>> = BTreeMap::new();
        for j in &jobs {
            let uid = j.metadata.labels.as_ref().unwrap()["fedjob.io/job-uid"].clone();
            per_uid.entry(uid).or_default().push(j);
        }
        assert_eq!(jobs.len(), JOBS, "{c}: one shard per Job");
        for (name, uid) in &uids {
            let shards = &per_uid[uid];
            assert_eq!(shards.len(), 1, "{c}: {name} has one shard");
            assert_eq!(shards[0].metadata.name.as_deref(), Some(name.as_str()));
            assert_eq!(
                (spec_completions(shards[0]), succeeded(shards[0])),
                (Some(1), 1),
                "{c}: {name}"
            );
        }
    }
    eprintln!(
        "syncer kill -9 mid-apply: {:.1} s",
        started_at.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn scheduler_down_past_the_grace_moves_no_work() {
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let mut setup = Setup::new("1s");
    setup.scheduler.extend(strings(&["--failover-after", "1s"]));
    // c4, cordoned, holds no work: its loss after the restart is the observable sign that the
    // scheduler checked liveness past the grace and the failover delay, with the others Ready.
    setup.clusters.push("c4".to_owned());
    let mut fed = Federation::start(setup).await;
    let cordon = fed.fedctl(&["cordon", "c4"]).await;
    assert_eq!(cordon.code, Some(0), "{cordon:?}");
    let uid = fed.create("stay", 6, 12, "2s", None).await;
    let rebalancing = fed.create("stay-too", 6, 12, "2s", Some(REBALANCE)).await;
    let with_work = ["c1", "c2", "c3"];
    fed.wait_running_in(&with_work, &uid).await;
    fed.wait_running_in(&with_work, &rebalancing).await;
    let before = fed.snapshot(&uid).await;
    let rebalancing_before = fed.snapshot(&rebalancing).await;
    let planned_before: BTreeMap<String, Value> = placements(&fed.job("stay").await)
        .into_iter()
        .map(|(c, p)| (c, json!([p["parallelism"], p["completions"]])))
        .collect();

    fed.kill_scheduler().await;
    // Down for three graces (the condition under test, not a wait for a result).
    tokio::time::sleep(Duration::from_secs(3)).await;
    fed.restart_scheduler().await;
    fed.wait_ready(&["c1", "c2", "c3", "c4"]).await;
    // Past the grace and the failover delay again, with every cluster that has work back:
    // the check that finds c4 lost (its epoch raised) finds the others Ready.
    let epoch = |clusters: &BTreeMap<String, Value>| clusters["c4"]["epoch"].as_u64();
    let c4_epoch = epoch(&fed.clusters().await);
    fed.kill_syncer("c4").await;
    let clusters = eventually("c4 lost after the restart", WAIT, || async {
        let clusters = fed.clusters().await;
        (clusters.contains_key("c4") && epoch(&clusters) > c4_epoch).then_some(clusters)
    })
    .await
    .unwrap();
    for c in ["c1", "c2", "c3"] {
        assert_eq!(clusters[c]["state"], "Ready", "{c}: {}", clusters[c]);
    }
    let planned_after: BTreeMap<String, Value> = placements(&fed.job("stay").await)
        .into_iter()
        .map(|(c, p)| (c, json!([p["parallelism"], p["completions"]])))
        .collect();
    assert_eq!(planned_after, planned_before, "placements unchanged");
    assert_eq!(fed.snapshot(&uid).await, before, "no shard added or moved");
    // Not even with rebalance: syncers come back within the grace the restart gives them.
    assert_eq!(
        fed.snapshot(&rebalancing).await,
        rebalancing_before,
        "rebalance: true, yet only the scheduler failed:\n{}",
        fed.scheduler.proc.tail(30)
    );

    let job = fed.wait_complete("stay").await;
    assert_eq!(job["status"]["succeeded"], 12);
    assert_exact_in(&fed, &with_work, &uid, 12).await;
    let job = fed.wait_complete("stay-too").await;
    assert_eq!(job["status"]["succeeded"], 12);
    assert_exact_in(&fed, &with_work, &rebalancing, 12).await;
    eprintln!(
        "scheduler down past the grace: {:.1} s",
        started_at.elapsed().as_secs_f64()
    );
}

/// The completions of the shards of `uid` in `cluster` that are not in `before`.
async fn added_completions(
    fed: &Federation,
    cluster: &str,
    uid: &str,
    before: &[(String, String, Option<i32>)],
) -> i32 {
    fed.shards(cluster, uid)
        .await
        .iter()
        .filter(|(name, _)| !before.iter().any(|(n, ..)| n == *name))
        .map(|(_, j)| spec_completions(j).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn failover_with_rebalance_moves_the_lost_clusters_unfinished_work() {
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let mut setup = Setup::new("1s");
    setup.scheduler.extend(strings(&["--failover-after", "1s"]));
    let mut fed = Federation::start(setup).await;
    // 2 pods at a time and 6 completions per cluster, 4 s each: 12 s per cluster.
    const TOTAL: i32 = 18;
    const PER_CLUSTER: i32 = 6;
    let uid = fed.create("moving", 6, TOTAL, "4s", Some(REBALANCE)).await;
    fed.wait_running(&uid).await;
    let before = fed.snapshot(&uid).await;
    // c3 is lost once it reported some work done, which stays counted where it ran.
    eventually("c3 reported progress", WAIT, || async {
        let job = fed.job("moving").await;
        (placements(&job)["c3"]["succeeded"].as_i64().unwrap() > 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));

    let killed = Instant::now();
    fed.kill_syncer("c3").await;
    // What c3 had reported done when it was lost stays counted; the rest is planned again.
    let (reported, moved) = eventually("c3's unfinished share in c1 and c2", WAIT, || async {
        let job = fed.job("moving").await;
        let reported = placements(&job)["c3"]["succeeded"].as_i64().unwrap() as i32;
        let mut moved = 0;
        for c in ["c1", "c2"] {
            moved += added_completions(&fed, c, &uid, &before[c]).await;
        }
        (moved > 0 && moved == PER_CLUSTER - reported).then_some((reported, moved))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    let failover = killed.elapsed();
    eprintln!(
        "failover: {} ms from kill -9 of c3's syncer to its {moved} unfinished completions \
         planned in c1/c2 (grace 1s, failover-after 1s)",
        failover.as_millis()
    );
    assert!(
        failover < Duration::from_secs(30),
        "failover took {failover:?}"
    );
    for c in ["c1", "c2"] {
        assert!(
            added_completions(&fed, c, &uid, &before[c]).await > 0,
            "{c} takes part: {}",
            fed.job("moving").await
        );
    }

    // The failover is durable: a scheduler restarted before c3 returns still knows it.
    fed.kill_scheduler().await;
    fed.restart_scheduler().await;
    fed.wait_ready(&["c1", "c2"]).await;

    // c3's old shard ran on without its syncer: once some of it finished (status the
    // scheduler never heard), c3 comes back and the shard is stopped.
    let stale = eventually("progress in c3 unseen by the scheduler", WAIT, || async {
        let done: i32 = fed.shards("c3", &uid).await.values().map(succeeded).sum();
        (done > reported).then_some(done)
    })
    .await
    .unwrap();
    fed.start_syncer("c3");
    fed.wait_ready(&["c3"]).await;
    let most_in_c3 = std::cell::Cell::new(stale);
    eventually("c3's superseded shard stopped", WAIT, || async {
        let shards = fed.shards("c3", &uid).await;
        let (done, stopped) = shards.values().fold((0, true), |(d, s), j| {
            (d + succeeded(j), s && suspended(j) && active(j) == 0)
        });
        most_in_c3.set(most_in_c3.get().max(done));
        stopped.then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    let c3 = &placements(&fed.job("moving").await)["c3"];
    assert!(
        c3["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "Stopped" || s["state"] == "Deleting"),
        "{c3}"
    );
    let ran_in_c3 = most_in_c3.get();

    let job = fed.wait_complete("moving").await;
    let total = job["status"]["succeeded"].as_i64().unwrap() as i32;
    let mut healthy = 0;
    for c in ["c1", "c2"] {
        healthy += fed
            .shards(c, &uid)
            .await
            .values()
            .map(succeeded)
            .sum::<i32>();
    }
    assert!(total >= TOTAL, "{job}");
    assert!(
        healthy + ran_in_c3 <= TOTAL + moved,
        "{} completions ran; at most c3's unfinished {moved} twice",
        healthy + ran_in_c3
    );
    // The aggregate holds c1 and c2 and what c3 reported before it was lost, not what its
    // superseded shard reached afterwards (and reported as it was deleted).
    assert_eq!(
        total,
        healthy + reported,
        "c3 ran {ran_in_c3} in its superseded shard: {job}"
    );
    assert_eq!(placements(&job)["c3"]["succeeded"], json!(reported));
    eprintln!(
        "failover with rebalance: {} completions ran for {TOTAL} ({} twice, in c3's superseded shard); {:.1} s",
        healthy + ran_in_c3,
        ran_in_c3 - reported,
        started_at.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn without_rebalance_a_lost_cluster_is_waited_for() {
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let mut setup = Setup::new("1s");
    setup.scheduler.extend(strings(&["--failover-after", "1s"]));
    let mut fed = Federation::start(setup).await;
    let uid = fed.create("patient", 3, 6, "1s", None).await;
    // A Job with rebalance beside it, whose work moving shows that the failover happened.
    let eager = fed.create("eager", 3, 6, "4s", Some(REBALANCE)).await;
    fed.wait_running(&uid).await;
    fed.wait_running(&eager).await;
    let before = fed.snapshot(&uid).await;
    let eager_before = fed.snapshot(&eager).await;

    fed.kill_syncer("c3").await;
    eventually("c3 NotReady", WAIT, || async {
        fed.clusters()
            .await
            .get("c3")
            .is_some_and(|c| c["state"] == "NotReady")
            .then_some(())
    })
    .await
    .unwrap();
    let describe = eventually("describe naming the wait", WAIT, || async {
        let out = fed.fedctl(&["describe", "job", "patient"]).await.ok();
        out.stdout.contains("c3").then_some(out.stdout)
    })
    .await
    .unwrap();
    assert!(
        describe.contains("cluster c3 is NotReady; its shards wait for it to come back"),
        "{describe}"
    );
    // The failover, seen happen: c3 lost (its epoch raised) and the rebalancing Job's work
    // in c3 planned in c1 and c2. The same pass looked at `patient`: nothing of it moved.
    eventually("c3 lost and eager's work moved", WAIT, || async {
        let epoch = fed.clusters().await.get("c3").map(|c| c["epoch"].clone());
        let mut moved = 0;
        for c in ["c1", "c2"] {
            moved += added_completions(&fed, c, &eager, &eager_before[c]).await;
        }
        (epoch == Some(json!(1)) && moved > 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    assert_eq!(fed.snapshot(&uid).await, before, "nothing moved");
    let job = fed.job("patient").await;
    assert!(!condition(&job, "Complete"), "{job}");
    assert_eq!(placements(&job)["c3"]["state"], "Waiting", "{job}");

    fed.start_syncer("c3");
    let job = fed.wait_complete("patient").await;
    assert_eq!(job["status"]["succeeded"], 6);
    assert_exact(&fed, &uid, 6).await;
    let job = fed.wait_complete("eager").await;
    assert_eq!(job["status"]["succeeded"], 6, "{job}");
    eprintln!(
        "lost cluster waited for: {:.1} s",
        started_at.elapsed().as_secs_f64()
    );
}

/// The syncers lose the scheduler while pods run that could not finish before the fence must
/// act (15 s pods, a 2 s lease): every shard must end suspended by the fence, its pods gone and
/// nothing succeeded; with the scheduler back they resume and the totals come out exact.
#[tokio::test]
async fn self_fenced_shards_suspend_without_a_scheduler_and_resume_with_it() {
    const POD: &str = "15s";
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let mut setup = Setup::new("1s");
    setup.scheduler = strings(&["--cluster-grace", "3s"]);
    setup.syncer = strings(&["--self-fence-after", "2s", "--heartbeat-interval", "500ms"]);
    let mut fed = Federation::start(setup).await;
    let uid = fed.create("fenced", 6, 6, POD, None).await;
    fed.wait_running(&uid).await;

    let killed = Instant::now();
    fed.kill_scheduler().await;
    for c in ["c1", "c2", "c3"] {
        let shards = eventually("the shard self-fenced", WAIT, || async {
            let shards = fed.shards(c, &uid).await;
            (!shards.is_empty()
                && shards
                    .values()
                    .all(|j| suspended(j) && fenced(j) && active(j) == 0))
            .then_some(shards)
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
        for (name, j) in &shards {
            assert!(
                local_condition(j, "Suspended").is_some() && succeeded(j) == 0 && !finished(j),
                "{c}/{name}: suspended before any pod of {POD} finished: {:?}",
                j.status
            );
        }
    }
    eprintln!(
        "self-fence: every shard suspended {} ms after kill -9 of the scheduler (lease 2s)",
        killed.elapsed().as_millis()
    );
    fed.restart_scheduler().await;
    for c in ["c1", "c2", "c3"] {
        eventually("the shard resumed", WAIT, || async {
            let shards = fed.shards(c, &uid).await;
            shards
                .values()
                .all(|j| !fenced(j) && !suspended(j) && active(j) > 0)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
    }
    let job = fed.wait_complete("fenced").await;
    assert_eq!(job["status"]["succeeded"], 6, "{job}");
    assert_eq!(job["status"]["failed"].as_i64().unwrap_or(0), 0, "{job}");
    assert_exact(&fed, &uid, 6).await;
    eprintln!("self-fence: {:.1} s", started_at.elapsed().as_secs_f64());
}

/// `fedctl --server URL --ca CA [--token T] ARGS…`.
async fn fedctl_tls(url: &str, ca: &Path, token: Option<&str>, args: &[&str]) -> FedctlOutput {
    let mut all = vec!["--ca".to_owned(), ca.display().to_string()];
    if let Some(t) = token {
        all.extend(["--token".to_owned(), t.to_owned()]);
    }
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    fedctl(url, &all).await.unwrap()
}

#[tokio::test]
async fn tls_with_real_syncers_runs_the_seed_job_and_refuses_impostors() {
    let _serial = SERIAL.lock().await;
    let started_at = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let status = std::process::Command::new(repo().join("scripts/make-certs"))
        .arg(&certs)
        .args(["--host", "localhost", "--host", "127.0.0.1"])
        .args(["c1", "c2", "c3"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("scripts/make-certs runs (it needs openssl)");
    assert!(status.success());
    let cert = |name: &str| certs.join(name).display().to_string();
    std::fs::write(
        dir.path().join("tokens"),
        "admin-secret,alice,admin\nview-secret,bob,viewer\n",
    )
    .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let sim = SimProc::start(&["c1", "c2", "c3"], &kubeconfig, "300ms")
        .await
        .unwrap();
    let port = free_port();
    let metrics = free_port();
    let scheduler = SchedulerProc::start(
        port,
        &dir.path().join("data"),
        &[
            "--cluster-grace",
            "3s",
            "--tls-cert",
            &cert("scheduler.crt"),
            "--tls-key",
            &cert("scheduler.key"),
            "--client-ca",
            &cert("ca.crt"),
            "--tokens",
            &dir.path().join("tokens").display().to_string(),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
        ],
    )
    .await
    .unwrap();
    let url = format!("https://localhost:{port}");
    let ca = certs.join("ca.crt");
    let syncer = |cluster: &str, identity: &str| {
        SyncerProc::start(
            &url,
            cluster,
            &sim.ready.kubeconfig,
            &[
                "--tls-ca",
                &cert("ca.crt"),
                "--tls-cert",
                &cert(&format!("{identity}.crt")),
                "--tls-key",
                &cert(&format!("{identity}.key")),
            ],
        )
        .unwrap()
    };
    let syncers: Vec<SyncerProc> = ["c1", "c2", "c3"].iter().map(|c| syncer(c, c)).collect();
    let logs = |extra: &str| {
        let mut text = format!("--- scheduler\n{}\n", scheduler.proc.tail(30));
        for s in &syncers {
            text += &format!("--- {}\n{}\n", s.proc.name, s.proc.tail(15));
        }
        text + extra
    };
    eventually("three Ready clusters over TLS", WAIT, || async {
        let out = fedctl_tls(
            &url,
            &ca,
            Some("view-secret"),
            &["get", "clusters", "-o", "json"],
        )
        .await;
        (out.code == Some(0)
            && out.json()["items"].as_array().is_some_and(|items| {
                items.len() == 3 && items.iter().all(|c| c["state"] == "Ready")
            }))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs("")));

    let file = dir.path().join("myjob.yaml");
    std::fs::write(&file, manifest("myjob", 9, 18, "300ms", None)).unwrap();
    let file = file.display().to_string();
    let anonymous = fedctl_tls(&url, &ca, None, &["get", "jobs"]).await;
    assert_ne!(anonymous.code, Some(0));
    assert!(
        anonymous
            .stderr
            .starts_with("Error from server (Unauthorized)"),
        "{}",
        anonymous.stderr
    );
    let viewer = fedctl_tls(&url, &ca, Some("view-secret"), &["create", "-f", &file]).await;
    assert_ne!(viewer.code, Some(0));
    assert!(
        viewer.stderr.starts_with("Error from server (Forbidden)") && viewer.stderr.contains("bob"),
        "{}",
        viewer.stderr
    );
    let none = fedctl_tls(
        &url,
        &ca,
        Some("view-secret"),
        &["get", "jobs", "-o", "json"],
    )
    .await;
    assert_eq!(
        none.ok().json()["items"],
        json!([]),
        "the viewer's create stored nothing"
    );
    fedctl_tls(&url, &ca, Some("admin-secret"), &["create", "-f", &file])
        .await
        .ok();
    let wait = fedctl_tls(
        &url,
        &ca,
        Some("view-secret"),
        &[
            "wait",
            "job",
            "myjob",
            "--for=condition=Complete",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(wait.code, Some(0), "{}\n{}", wait.stderr, logs(""));
    let job = fedctl_tls(
        &url,
        &ca,
        Some("view-secret"),
        &["get", "job", "myjob", "-o", "json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(job["status"]["succeeded"], 18);
    for p in job["placements"].as_array().unwrap() {
        assert_eq!((&p["completions"], &p["succeeded"]), (&json!(6), &json!(6)));
    }

    let refused = || async {
        let body = http_get(&format!("127.0.0.1:{metrics}"), "/metrics")
            .await
            .unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("fedjob_requests_refused_total{reason=\"wrong-cluster\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    };
    let refused_before = refused().await;
    // c2's certificate, claiming to be c1.
    let mut impostor = syncer("c1", "c2");
    eventually("the impostor refused", WAIT, || async {
        let logged = scheduler
            .proc
            .lines()
            .iter()
            .any(|l| l.contains("agent refused: its certificate names another cluster"));
        let told = impostor
            .proc
            .lines()
            .iter()
            .any(|l| l.contains("Register refused") && l.contains("does not have permission"));
        (logged && told).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&impostor.proc.tail(20))));
    let refused_after = eventually("the refusal counted", WAIT, || async {
        let n = refused().await;
        (n > refused_before).then_some(n)
    })
    .await
    .unwrap();
    let clusters = fedctl_tls(
        &url,
        &ca,
        Some("view-secret"),
        &["get", "clusters", "-o", "json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(clusters["items"].as_array().unwrap().len(), 3);
    eprintln!(
        "tls: impostor refused, fedjob_requests_refused_total{{reason=\"wrong-cluster\"}} {refused_before} -> {refused_after}; {:.1} s",
        started_at.elapsed().as_secs_f64()
    );
    impostor.proc.kill9().await;
}
