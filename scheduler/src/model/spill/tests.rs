use super::*;
use crate::model::fixtures::{job, now, ready, report};
use crate::model::job::ObservedPhase;
use crate::model::planner::{observe, reconcile};
use proptest::prelude::*;

const REBALANCE: &str =
    r#"{"rebalance": true, "pendingTimeoutSeconds": 10, "clusters": {"*": {"weight": 1}}}"#;

/// `myjob` with `parallelism` and `completions` planned over `clusters`, every shard reported
/// running with `active` pods (none succeeded yet).
fn planned(p: i32, c: i32, prefs: &str, clusters: &Clusters, active: i32) -> FederatedJob {
    let mut fj = job(p, Some(c), Some(prefs));
    reconcile(&mut fj, clusters, now());
    for s in fj.shards.clone() {
        let observed = report(ObservedPhase::Running, active.min(s.parallelism), 0, 0);
        observe(&mut fj, &s.cluster, &s.name, s.epoch, observed);
    }
    reconcile(&mut fj, clusters, now());
    fj
}

fn stuck(cluster: &str, shard: &str, pods: i32, seconds_ago: i64) -> (String, Stuck) {
    let stuck = Stuck {
        namespace: "default".into(),
        shard: shard.into(),
        local_uid: "local".into(),
        pods,
        since: now() - jiff::SignedDuration::from_secs(seconds_ago),
        message: "0/1 nodes are available: 1 Insufficient cpu.".into(),
    };
    (cluster.to_owned(), stuck)
}

fn condition<'a>(fj: &'a FederatedJob, type_: &str) -> Option<&'a str> {
    fj.job
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?
        .message
        .as_deref()
}

/// Completions planned on shards that may still run, per cluster.
fn active_completions(fj: &FederatedJob) -> BTreeMap<&str, i32> {
    let mut by_cluster = BTreeMap::new();
    for s in fj.shards.iter().filter(|s| s.state == ShardState::Active) {
        *by_cluster.entry(s.cluster.as_str()).or_default() += s.completions.unwrap_or(0);
    }
    by_cluster
}

#[test]
fn a_shard_stuck_past_the_timeout_moves_to_the_clusters_with_room() {
    let clusters = ready(&["c1", "c2"]);
    let fj = planned(4, 8, REBALANCE, &clusters, 2);
    assert_eq!(active_completions(&fj), [("c1", 4), ("c2", 4)].into());
    // Every active pod of c1's shard is unschedulable, for 11 s against a timeout of 10 s.
    let moved = spill_over(
        &fj,
        &[stuck("c1", "myjob", 2, 11)],
        &BTreeMap::new(),
        &clusters,
        now(),
    )
    .expect("moves");
    assert_eq!(active_completions(&moved), [("c2", 8)].into());
    let gone = moved.shards.iter().find(|s| s.cluster == "c1").unwrap();
    assert_eq!(
        (gone.state, gone.stop_reason),
        (ShardState::Stopping, Some(StopReason::Superseded))
    );
    assert!(!moved.members.contains("c1"));
    let message = condition(&moved, MOVED_CONDITION).unwrap();
    assert_eq!(
        message,
        "moved 4 unstarted completions of c1: 2 pods of myjob unschedulable since \
         2026-11-28T11:59:49Z (0/1 nodes are available: 1 Insufficient cpu) to c2 (4 completions)"
    );
    assert!(
        message.ends_with("(0/1 nodes are available: 1 Insufficient cpu) to c2 (4 completions)"),
        "{message}"
    );
    assert_eq!(condition(&moved, WAITING_CONDITION), None);
    assert_eq!(
        spill_over(&moved, &[], &BTreeMap::new(), &clusters, now()),
        None,
        "nothing more to do once moved"
    );
    assert_eq!(
        spill_over(
            &moved,
            &[stuck("c1", "myjob", 2, 11)],
            &BTreeMap::new(),
            &clusters,
            now()
        ),
        None,
        "the same report again (another replica's, or sent before the shard went) moves nothing"
    );
}

#[test]
fn before_the_timeout_the_work_waits_and_says_until_when() {
    let clusters = ready(&["c1", "c2"]);
    let fj = planned(4, 8, REBALANCE, &clusters, 2);
    let waiting = spill_over(
        &fj,
        &[stuck("c1", "myjob", 2, 9)],
        &BTreeMap::new(),
        &clusters,
        now(),
    )
    .unwrap();
    assert_eq!(active_completions(&waiting), active_completions(&fj));
    let message = condition(&waiting, WAITING_CONDITION).unwrap();
    assert!(
        message.contains(
            "its unstarted work moves at 2026-11-28T12:00:01Z (pendingTimeoutSeconds 10)"
        ),
        "{message}"
    );
    assert_eq!(
        spill_over(
            &waiting,
            &[stuck("c1", "myjob", 2, 9)],
            &BTreeMap::new(),
            &clusters,
            now()
        ),
        None,
        "the same condition is not written again"
    );
    let cleared = spill_over(&waiting, &[], &BTreeMap::new(), &clusters, now()).unwrap();
    assert_eq!(
        condition(&cleared, WAITING_CONDITION),
        None,
        "placed at last: the condition goes"
    );
}

#[test]
fn without_rebalance_the_work_waits_and_the_condition_says_why() {
    let clusters = ready(&["c1", "c2"]);
    let fj = planned(
        4,
        8,
        r#"{"pendingTimeoutSeconds": 10, "clusters": {"*": {"weight": 1}}}"#,
        &clusters,
        2,
    );
    let waiting = spill_over(
        &fj,
        &[stuck("c1", "myjob", 2, 3600)],
        &BTreeMap::new(),
        &clusters,
        now(),
    )
    .unwrap();
    assert_eq!(active_completions(&waiting), active_completions(&fj));
    let message = condition(&waiting, WAITING_CONDITION).unwrap();
    assert!(
        message.ends_with("rebalance is false, so the work waits for room there"),
        "{message}"
    );
}

#[test]
fn a_shard_with_running_pods_keeps_them_and_only_its_unstarted_completions_move() {
    let clusters = ready(&["c1", "c2"]);
    let fj = planned(4, 8, REBALANCE, &clusters, 2);
    // One of c1's two active pods runs, one is unschedulable: of its 4 completions, 1 is being
    // worked on and 3 have not started.
    let moved = spill_over(
        &fj,
        &[stuck("c1", "myjob", 1, 60)],
        &BTreeMap::new(),
        &clusters,
        now(),
    )
    .unwrap();
    let c1 = moved.shards.iter().find(|s| s.cluster == "c1").unwrap();
    assert_eq!(
        (c1.state, c1.moved, c1.counted(), c1.parallelism),
        (ShardState::Active, 3, 1, 1),
        "it keeps its running pod and the one completion it works on"
    );
    assert_eq!(
        active_completions(&moved),
        [("c1", 4), ("c2", 7)].into(),
        "the local Job keeps its 4; c2 runs its own 4 and the 3 moved"
    );
    let counted: i32 = moved.shards.iter().map(|s| s.effective_completions()).sum();
    assert_eq!(counted, 8, "the totals stay exact");
    assert_eq!(
        condition(&moved, MOVED_CONDITION).unwrap(),
        "moved 3 unstarted completions of c1: 1 pod of myjob unschedulable since \
         2026-11-28T11:59:00Z (0/1 nodes are available: 1 Insufficient cpu) to c2 (3 completions); \
         myjob keeps its 1 running pod in c1"
    );
    // The pending pod is gone, the report is not yet: nothing moves again, and the running
    // pod is not stopped.
    let mut gone = moved.clone();
    let s = gone.shards.iter_mut().find(|s| s.cluster == "c1").unwrap();
    s.observed.as_mut().unwrap().active = 1;
    let later = now() + jiff::SignedDuration::from_secs(5);
    assert_eq!(
        spill_over(
            &gone,
            &[stuck("c1", "myjob", 1, 60)],
            &BTreeMap::new(),
            &clusters,
            later
        ),
        None
    );
    // A pod unschedulable since after the move (the running one was evicted and came back
    // Pending) is new: once due, the completion it stood for moves too, and the shard, which
    // runs nothing any more, goes.
    let mut fresh = stuck("c1", "myjob", 1, 0);
    fresh.1.since = later;
    let due = later + jiff::SignedDuration::from_secs(10);
    let again = spill_over(&gone, &[fresh], &BTreeMap::new(), &clusters, due).unwrap();
    let c1 = again.shards.iter().find(|s| s.cluster == "c1").unwrap();
    assert_eq!(c1.stop_reason, Some(StopReason::Superseded));
    assert_eq!(active_completions(&again), [("c2", 8)].into());
}

#[test]
fn work_moves_only_where_there_is_room() {
    let clusters = ready(&["c1", "c2", "c3"]);
    let fj = planned(3, 6, REBALANCE, &clusters, 1);
    let full: BTreeMap<String, u64> = [("c2".to_owned(), 0), ("c3".to_owned(), 0)].into();
    let waiting = spill_over(&fj, &[stuck("c1", "myjob", 1, 60)], &full, &clusters, now()).unwrap();
    assert_eq!(active_completions(&waiting), active_completions(&fj));
    assert!(
        condition(&waiting, WAITING_CONDITION)
            .unwrap()
            .ends_with("no other eligible cluster has room")
    );
    // Both stuck: neither takes the other's work.
    let both = [stuck("c1", "myjob", 1, 60), stuck("c2", "myjob", 1, 60)];
    let room: BTreeMap<String, u64> = [("c3".to_owned(), 5)].into();
    let moved = spill_over(&fj, &both, &room, &clusters, now()).unwrap();
    assert_eq!(active_completions(&moved), [("c3", 6)].into());
}

#[test]
fn a_report_about_another_incarnation_or_job_changes_nothing() {
    let clusters = ready(&["c1", "c2"]);
    let fj = planned(4, 8, REBALANCE, &clusters, 2);
    let mut other = stuck("c1", "myjob", 2, 60);
    other.1.local_uid = "an-older-local-job".into();
    assert_eq!(
        spill_over(&fj, &[other], &BTreeMap::new(), &clusters, now()),
        None
    );
    assert_eq!(
        spill_over(
            &fj,
            &[stuck("c1", "otherjob", 2, 60)],
            &BTreeMap::new(),
            &clusters,
            now()
        ),
        None
    );
}

proptest! {
    /// Whatever is stuck where and for how long, the completions that may still run plus those
    /// already succeeded stay exactly `completions`, and no shard that has succeeded pods or
    /// running pods is stopped.
    #[test]
    fn totals_stay_exact_and_nothing_that_ran_stops(
        p in 1..12i32,
        c in 1..40i32,
        succeeded in proptest::collection::vec(0..4i32, 3),
        stuck_pods in proptest::collection::vec(proptest::option::of((0..4i32, 0..30i64)), 3),
        room in proptest::collection::vec(proptest::option::of(0..3u64), 3),
    ) {
        let names = ["c1", "c2", "c3"];
        let clusters = ready(&names);
        let mut fj = job(p, Some(c), Some(REBALANCE));
        reconcile(&mut fj, &clusters, now());
        for (i, s) in fj.shards.clone().into_iter().enumerate() {
            let done = succeeded[i % 3].min(s.completions.unwrap_or(0) - 1).max(0);
            let observed = report(ObservedPhase::Running, s.parallelism, done, 0);
            observe(&mut fj, &s.cluster, &s.name, s.epoch, observed);
        }
        reconcile(&mut fj, &clusters, now());
        let stuck_list: Vec<(String, Stuck)> = names
            .iter()
            .zip(&stuck_pods)
            .filter_map(|(n, s)| s.map(|(pods, ago)| stuck(n, "myjob", pods, ago)))
            .collect();
        let room: BTreeMap<String, u64> = names
            .iter()
            .zip(&room)
            .filter_map(|(n, r)| r.map(|r| (n.to_string(), r)))
            .collect();
        let Some(next) = spill_over(&fj, &stuck_list, &room, &clusters, now()) else {
            return Ok(());
        };
        let total = |fj: &FederatedJob| -> i64 {
            fj.shards.iter().map(|s| i64::from(s.effective_completions())).sum::<i64>()
                + i64::from(fj.unplaced.completions)
        };
        prop_assert_eq!(total(&next), i64::from(c));
        for before in &fj.shards {
            let after = next
                .shards
                .iter()
                .find(|s| s.cluster == before.cluster && s.name == before.name)
                .unwrap();
            if before.state == ShardState::Active && after.state != ShardState::Active {
                let (cluster, report) = stuck_list
                    .iter()
                    .find(|(n, s)| is_about(before, n, s))
                    .expect("only a stuck shard stops");
                let active = before.observed.as_ref().map_or(0, |o| o.active);
                prop_assert!(active <= report.pods, "{} stopped with pods running", cluster);
            }
            if after.state == ShardState::Active {
                // What its running pods work on stays counted on it.
                let running = stuck_list
                    .iter()
                    .find(|(n, s)| is_about(before, n, s))
                    .map_or(0, |(_, r)| {
                        (before.observed.as_ref().map_or(0, |o| o.active) - r.pods).max(0)
                    });
                prop_assert!(after.remaining() >= running.min(before.remaining()));
            }
        }
        // The pending pods go, the same reports come again (from another replica, or before
        // the agent saw the change): nothing more moves and nothing more stops.
        let mut gone = next.clone();
        for s in gone.shards.iter_mut().filter(|s| s.spilled_at.is_some()) {
            if let (Some(o), Some((_, r))) =
                (s.observed.as_mut(), stuck_list.iter().find(|(n, r)| n == &s.cluster && r.shard == s.name))
            {
                o.active = (o.active - r.pods).max(0);
            }
        }
        if let Some(again) = spill_over(&gone, &stuck_list, &room, &clusters, now()) {
            prop_assert_eq!(again.shards.len(), gone.shards.len(), "no new shard");
            for (a, g) in again.shards.iter().zip(&gone.shards) {
                prop_assert_eq!((a.state, a.moved), (g.state, g.moved));
            }
        }
    }
}
