//! A federated Job's life end to end, with real processes (a scheduler, `fedjob-kubesim` and a
//! syncer per cluster): what SPEC §2, §4, §6 and §7 promise about suspend, the settings copied
//! to every shard, `ttlSecondsAfterFinished`, re-planning on a change of preferences, cordoned
//! and joining clusters. Expected values come from the SPEC, worked out in the comments.

use std::time::Duration;

use fedjob_tests::harness::eventually;
use fedjob_tests::harness::federation::{
    Federation, PREFERENCES, Setup, WAIT, active, condition, failed, job_manifest, local_condition,
    placements, spec_completions, spec_parallelism, strings, succeeded, suspended,
};
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One federation at a time: several at once on two cores would only measure a busy machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn federation() -> Federation {
    Federation::start(Setup::new("3s")).await
}

/// Every shard of `uid` in every cluster, with its cluster.
async fn all_shards(fed: &Federation, uid: &str) -> Vec<(String, Job)> {
    let mut all = Vec::new();
    for c in fed.cluster_names() {
        for (_, j) in fed.shards(c, uid).await {
            all.push((c.to_owned(), j));
        }
    }
    all
}

/// Per cluster, (spec.parallelism, spec.completions) of each shard of `uid`, by local name.
async fn shard_specs(fed: &Federation, uid: &str) -> Vec<(String, String, i32, Option<i32>)> {
    let mut specs: Vec<_> = all_shards(fed, uid)
        .await
        .into_iter()
        .map(|(c, j)| {
            (
                c,
                j.metadata.name.clone().unwrap(),
                spec_parallelism(&j).unwrap_or(0),
                spec_completions(&j),
            )
        })
        .collect();
    specs.sort();
    specs
}

/// Asserts that the shards of `uid` planned `completions` in all and all of them succeeded.
async fn assert_totals(fed: &Federation, uid: &str, completions: i32) {
    let shards = all_shards(fed, uid).await;
    let planned: i32 = shards
        .iter()
        .map(|(_, j)| spec_completions(j).unwrap_or(0))
        .sum();
    let done: i32 = shards.iter().map(|(_, j)| succeeded(j)).sum();
    assert_eq!(
        (planned, done),
        (completions, completions),
        "planned and succeeded in the clusters: {:?}",
        shard_specs(fed, uid).await
    );
}

/// `fedctl patch job NAME -p PATCH`, which must succeed.
async fn patch(fed: &Federation, name: &str, patch: Value) {
    fed.fedctl(&["patch", "job", name, "-p", &patch.to_string()])
        .await
        .ok_or_show(|| fed.logs());
}

/// SPEC §2: suspending the federated Job suspends every shard (their pods go, the API server's
/// `Suspended` condition appears), the federated Job says Suspended; resuming resumes them and
/// the totals come out exact.
#[tokio::test]
async fn suspend_reaches_every_shard_and_resume_completes_with_exact_totals() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    // 2 pods at a time per cluster, 4 completions each, 2 s pods: 4 s of work per cluster.
    let uid = fed.create("pausable", 6, 12, "2s", None).await;
    fed.wait_running(&uid).await;

    patch(&fed, "pausable", json!({"spec": {"suspend": true}})).await;
    for c in fed.cluster_names() {
        eventually("the shard suspended", WAIT, || async {
            let shards = fed.shards(c, &uid).await;
            (!shards.is_empty()
                && shards.values().all(|j| {
                    suspended(j) && active(j) == 0 && local_condition(j, "Suspended").is_some()
                }))
            .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
    }
    let job = eventually("the federated Job Suspended", WAIT, || async {
        let job = fed.job("pausable").await;
        (condition(&job, "Suspended") && job["status"]["active"].is_null()).then_some(job)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", fed.logs()));
    assert!(!condition(&job, "Complete"), "{job}");
    let listed = fed.fedctl(&["get", "jobs"]).await.ok();
    let row = listed.stdout.lines().nth(1).unwrap_or_default().to_owned();
    assert_eq!(
        row.split_whitespace().take(2).collect::<Vec<_>>(),
        ["pausable", "Suspended"],
        "{}",
        listed.stdout
    );

    patch(&fed, "pausable", json!({"spec": {"suspend": false}})).await;
    for c in fed.cluster_names() {
        eventually("the shard resumed", WAIT, || async {
            let shards = fed.shards(c, &uid).await;
            shards
                .values()
                .all(|j| !suspended(j) && (active(j) > 0 || succeeded(j) > 0))
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
    }
    let job = fed.wait_complete("pausable").await;
    assert_eq!(job["status"]["succeeded"], 12, "{job}");
    assert!(!condition(&job, "Suspended"), "{job}");
    assert_totals(&fed, &uid, 12).await;
}

/// SPEC §2: `backoffLimit` and `activeDeadlineSeconds` are copied to every shard, each with its
/// own budget. A Job whose pods fail, with `backoffLimit: 1`, fails after exactly 2 failures
/// (k8s-facts/16), not the API server's default 6; a Job with `activeDeadlineSeconds: 3` whose
/// pods would run a minute fails with DeadlineExceeded in every shard.
#[tokio::test]
async fn backoff_limit_and_active_deadline_reach_every_shard() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;

    // All in c1, so that no other shard is stopped when the Job fails.
    let only_c1 = r#"{"clusters": {"c1": {"weight": 1}}}"#;
    let mut failing = job_manifest("failing", 1, Some(1), "300ms", Some(only_c1));
    failing["spec"]["backoffLimit"] = json!(1);
    failing["spec"]["template"]["metadata"]["labels"] = json!({"fedjob-test/fail": "true"});
    let failing_uid = fed.create_job(&failing).await;

    let mut deadline = job_manifest("deadline", 3, Some(3), "60s", None);
    deadline["spec"]["activeDeadlineSeconds"] = json!(3);
    let deadline_uid = fed.create_job(&deadline).await;
    for c in fed.cluster_names() {
        let shard = eventually("the deadline shard", WAIT, || async {
            fed.shards(c, &deadline_uid).await.into_values().next()
        })
        .await
        .unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
        let spec = shard.spec.as_ref().unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(3), "{c}");
    }

    for (name, reason) in [
        ("failing", "BackoffLimitExceeded"),
        ("deadline", "DeadlineExceeded"),
    ] {
        let out = fed
            .fedctl(&[
                "wait",
                "job",
                name,
                "--for=condition=Failed",
                "--timeout",
                "30s",
            ])
            .await
            .ok_or_show(|| fed.logs());
        assert_eq!(out.stdout, format!("job.batch/{name} condition met\n"));
        let job = fed.job(name).await;
        let failure = job["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Failed")
            .cloned()
            .unwrap();
        assert_eq!(failure["reason"], reason, "{job}");
        // The condition names the clusters whose shard failed.
        let uid = job["metadata"]["uid"].as_str().unwrap();
        let mut failed_in = Vec::new();
        for (c, shard) in all_shards(&fed, uid).await {
            if local_condition(&shard, "Failed").and_then(|f| f.reason.as_deref()) == Some(reason) {
                failed_in.push(c);
            }
        }
        let message = failure["message"].as_str().unwrap();
        assert!(
            !failed_in.is_empty() && failed_in.iter().any(|c| message.contains(c.as_str())),
            "{message}: shards failed in {failed_in:?}"
        );
    }

    let shards = fed.shards("c1", &failing_uid).await;
    let shard = &shards["failing"];
    assert_eq!(shard.spec.as_ref().unwrap().backoff_limit, Some(1));
    assert_eq!(
        (
            failed(shard),
            local_condition(shard, "Failed").and_then(|c| c.reason.clone())
        ),
        (2, Some("BackoffLimitExceeded".to_owned())),
        "one retry, then the shard failed: {:?}",
        shard.status
    );
    let job = fed.job("failing").await;
    assert_eq!(job["status"]["failed"], 2, "{job}");
    assert!(job["status"]["succeeded"].is_null(), "{job}");
}

/// SPEC §2: the federated Job is deleted `ttlSecondsAfterFinished` after it finished, not
/// before; its shards are cleaned up by their own clusters and never created again.
#[tokio::test]
async fn a_finished_job_is_deleted_after_its_ttl() {
    const TTL: i64 = 3;
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    let mut job = job_manifest("shortlived", 3, Some(3), "300ms", None);
    job["spec"]["ttlSecondsAfterFinished"] = json!(TTL);
    let uid = fed.create_job(&job).await;
    let done = fed.wait_complete("shortlived").await;
    let finished: jiff::Timestamp = done["status"]["completionTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // completionTime has whole seconds, so the Job finished at or after it: seeing it gone
    // before `finished + TTL` means it was deleted too early.
    let earliest = finished + jiff::SignedDuration::from_secs(TTL);
    let deadline = Instant::now() + WAIT;
    loop {
        let out = fed.fedctl(&["get", "job", "shortlived"]).await;
        let now = jiff::Timestamp::now();
        if out.code != Some(0) {
            assert_eq!(
                out.stderr.trim(),
                "Error from server (NotFound): jobs.batch \"shortlived\" not found"
            );
            assert!(
                now >= earliest,
                "deleted at {now}, before completionTime {finished} + {TTL}s"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not deleted {TTL}s after {finished}\n{}",
            fed.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in fed.cluster_names() {
        let shard = eventually(
            "the shard cleaned up by its cluster's TTL",
            WAIT,
            || async { fed.shards(c, &uid).await.is_empty().then_some(()) },
        )
        .await;
        shard.unwrap_or_else(|e| panic!("{c}: {e}\n{}", fed.logs()));
    }
    // Every syncer has handled a later Job: nothing of the first came back.
    fed.create("later", 3, 3, "300ms", None).await;
    fed.wait_complete("later").await;
    assert!(all_shards(&fed, &uid).await.is_empty(), "a shard came back");
}

/// SPEC §2 and §3: a change of the preferences annotation plans the split again. The running
/// shards get the new parallelism in place and keep their completions (a member cluster
/// refuses to change them), and the Job completes with exact totals.
#[tokio::test]
async fn a_change_of_preferences_plans_the_split_again() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    // 6 over three equal weights: 2/2/2, completions 12 in proportion: 4/4/4. 2 at a time,
    // 4 completions of 3 s: 6 s of work in each cluster.
    let uid = fed.create("replanned", 6, 12, "3s", None).await;
    fed.wait_running(&uid).await;
    let before = shard_specs(&fed, &uid).await;
    assert_eq!(
        before,
        [("c1", 2), ("c2", 2), ("c3", 2)]
            .map(|(c, p)| (c.to_owned(), "replanned".to_owned(), p, Some(4)))
            .to_vec()
    );

    // c1 weight 4, c2 and c3 weight 1 (through "*"). Webster over weight / (2·s + 1):
    // c1 4 · c1 4/3 · c2 1 · c3 1 · c1 ⅘ · c1 4/7 → c1 4, c2 1, c3 1.
    let prefs = r#"{"clusters": {"c1": {"weight": 4}, "*": {"weight": 1}}}"#;
    patch(
        &fed,
        "replanned",
        json!({"metadata": {"annotations": {PREFERENCES: prefs}}}),
    )
    .await;
    let expected: Vec<_> = [("c1", 4), ("c2", 1), ("c3", 1)]
        .map(|(c, p)| (c.to_owned(), "replanned".to_owned(), p, Some(4)))
        .to_vec();
    let after = eventually("the new parallelism in place", WAIT, || async {
        let specs = shard_specs(&fed, &uid).await;
        (specs == expected).then_some(specs)
    })
    .await;
    if let Err(e) = after {
        panic!(
            "{e}: {:?}\n{}\n{}",
            shard_specs(&fed, &uid).await,
            fed.job("replanned").await,
            fed.logs()
        );
    }
    let job = fed.job("replanned").await;
    let planned: Vec<(String, Value)> = placements(&job)
        .into_iter()
        .map(|(c, p)| (c, p["parallelism"].clone()))
        .collect();
    assert_eq!(
        planned,
        [("c1", 4), ("c2", 1), ("c3", 1)].map(|(c, p)| (c.to_owned(), json!(p)))
    );
    let job = fed.wait_complete("replanned").await;
    assert_eq!(job["status"]["succeeded"], 12, "{job}");
    assert_totals(&fed, &uid, 12).await;
}

/// SPEC §6: a cordoned cluster gets no new work; once uncordoned, it takes part in Jobs
/// created afterwards.
#[tokio::test]
async fn uncordon_lets_new_work_go_to_the_cluster_again() {
    let _serial = SERIAL.lock().await;
    let fed = federation().await;
    let out = fed.fedctl(&["cordon", "c3"]).await.ok();
    assert_eq!(out.stdout, "cluster/c3 cordoned\n");
    assert_eq!(fed.clusters().await["c3"]["cordoned"], true);
    let before = fed.create("before", 6, 6, "300ms", None).await;
    fed.wait_complete("before").await;
    // 6 over c1 and c2: 3/3.
    assert_eq!(
        shard_specs(&fed, &before).await,
        [("c1", 3), ("c2", 3)]
            .map(|(c, p)| (c.to_owned(), "before".to_owned(), p, Some(3)))
            .to_vec()
    );

    let out = fed.fedctl(&["uncordon", "c3"]).await.ok();
    assert_eq!(out.stdout, "cluster/c3 uncordoned\n");
    let listed = fed.clusters().await;
    assert_eq!(
        (&listed["c3"]["cordoned"], &listed["c3"]["state"]),
        (&json!(false), &json!("Ready"))
    );
    let after = fed.create("after", 6, 6, "300ms", None).await;
    fed.wait_complete("after").await;
    assert_eq!(
        shard_specs(&fed, &after).await,
        [("c1", 2), ("c2", 2), ("c3", 2)]
            .map(|(c, p)| (c.to_owned(), "after".to_owned(), p, Some(2)))
            .to_vec()
    );
}

/// SPEC §6: a cluster that joins after a Job was created takes part in completions added to
/// it later: they are divided over every cluster (c3's part as its first shard, the others'
/// as new shards), and running work stays where it is.
#[tokio::test]
async fn a_cluster_that_joins_takes_part_in_completions_added_later() {
    let _serial = SERIAL.lock().await;
    let mut fed = Federation::start_without_syncers(Setup::new("3s")).await;
    fed.start_syncer("c1");
    fed.start_syncer("c2");
    fed.wait_ready(&["c1", "c2"]).await;
    // 6 over c1 and c2: 3/3, completions 12: 6/6; 3 at a time of 1 s: 2 s of work each.
    let uid = fed.create("grows", 6, 12, "1s", None).await;
    let first = eventually("the first shards", WAIT, || async {
        let specs = shard_specs(&fed, &uid).await;
        (specs.len() == 2).then_some(specs)
    })
    .await
    .unwrap();
    assert_eq!(
        first,
        [("c1", 3), ("c2", 3)]
            .map(|(c, p)| (c.to_owned(), "grows".to_owned(), p, Some(6)))
            .to_vec()
    );
    let uids: Vec<_> = all_shards(&fed, &uid)
        .await
        .into_iter()
        .map(|(c, j)| (c, j.metadata.uid.unwrap()))
        .collect();

    fed.start_syncer("c3");
    fed.wait_ready(&["c3"]).await;
    // 6 more: parallelism 6 over three clusters is 2/2/2, and the added completions follow it.
    fed.fedctl(&["scale", "job", "grows", "--completions", "18"])
        .await
        .ok_or_show(|| fed.logs());
    let job = fed.wait_complete("grows").await;
    assert_eq!(job["status"]["succeeded"], 18, "{job}");
    assert_totals(&fed, &uid, 18).await;
    let added: Vec<_> = shard_specs(&fed, &uid)
        .await
        .into_iter()
        .filter(|(c, name, ..)| !(c != "c3" && name == "grows"))
        .map(|(c, name, _, completions)| (c, name, completions))
        .collect();
    assert_eq!(
        added,
        [("c1", "grows-2"), ("c2", "grows-2"), ("c3", "grows")]
            .map(|(c, n)| (c.to_owned(), n.to_owned(), Some(2)))
            .to_vec(),
        "{job}"
    );
    for (c, local_uid) in uids {
        let shards = fed.shards(&c, &uid).await;
        assert_eq!(
            shards["grows"].metadata.uid.as_ref(),
            Some(&local_uid),
            "{c}: the first shard ran on"
        );
    }
}

/// With one user write at a time (`--concurrent-job-writes 1`), writes that arrive together
/// all complete, each in its turn: applies that create, an apply that updates and a delete. An
/// apply that creates is a create and an update in one turn; had either taken a turn of its
/// own, the apply would wait forever for the turn it holds.
#[tokio::test]
async fn writes_arriving_together_take_turns_and_all_complete() {
    let _serial = SERIAL.lock().await;
    let mut setup = Setup::new("3s");
    setup.scheduler = strings(&["--concurrent-job-writes", "1"]);
    let fed = Federation::start_without_syncers(setup).await;
    for name in ["stays", "goes"] {
        fed.create_job(&job_manifest(name, 2, Some(4), "1s", None))
            .await;
    }
    let mut relabelled = job_manifest("stays", 2, Some(4), "1s", None);
    relabelled["metadata"]["labels"]["team"] = json!("a");
    let files: Vec<String> = (1..=6)
        .map(|i| fed.write_manifest(&job_manifest(&format!("new-{i}"), 2, Some(4), "1s", None)))
        .chain([fed.write_manifest(&relabelled)])
        .collect();
    let commands: Vec<[&str; 3]> = files.iter().map(|f| ["apply", "-f", f]).collect();
    let applies = futures::future::join_all(commands.iter().map(|args| fed.fedctl(args)));
    let delete = fed.fedctl(&["delete", "job", "goes"]);
    let (applied, deleted) = tokio::time::timeout(WAIT, async { tokio::join!(applies, delete) })
        .await
        .unwrap_or_else(|_| panic!("writes still waiting after {WAIT:?}:\n{}", fed.logs()));
    for out in applied {
        out.ok_or_show(|| fed.logs());
    }
    deleted.ok_or_show(|| fed.logs());
    let listed = fed
        .fedctl(&["get", "jobs", "-o", "json"])
        .await
        .ok_or_show(|| fed.logs())
        .json();
    let mut names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "new-1", "new-2", "new-3", "new-4", "new-5", "new-6", "stays"
        ]
    );
    assert_eq!(fed.job("stays").await["metadata"]["labels"]["team"], "a");
}
