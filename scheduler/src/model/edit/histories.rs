//! Random histories of one federated Job driven through the control plane's own decisions
//! ([`create`], [`update`], [`apply_reports`], [`reconcile`]), with clusters joining, cordoned,
//! lost and returning, and agents reporting progress between the edits. After every step the
//! totals the product promises must hold.

use proptest::prelude::*;

use super::*;
use crate::model::clusters::ClusterView;
use crate::model::fixtures::{manifest, now};
use crate::model::job::{Observed, ObservedPhase, Shard, ShardState, StopReason};
use crate::model::status;

const UID: &str = "uid-1";

/// One thing that happens to the federation.
#[derive(Debug, Clone)]
enum Step {
    /// A user changes the counts (`None` leaves one out of the manifest).
    Scale(Option<i32>, Option<i32>),
    /// A new cluster registers and is Ready.
    Join,
    /// `fedctl cordon`.
    Cordon(usize),
    /// `fedctl uncordon`.
    Uncordon(usize),
    /// Heartbeats stop.
    NotReady(usize),
    /// NotReady past the failover delay.
    Lose(usize),
    /// Heartbeats again.
    Return(usize),
    /// The pods of a shard in a Ready cluster succeed (at most as many as run at once).
    Progress(usize, i32),
    /// A Ready cluster's agent carries out its assignments and reports every shard there.
    Sync(usize),
    /// A user deletes a shard in its cluster.
    DeleteLocal(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let count = proptest::option::weighted(0.8, 0..16i32);
    prop_oneof![
        3 => (count.clone(), proptest::option::weighted(0.8, 0..40i32)).prop_map(|(p, c)| Step::Scale(p, c)),
        1 => Just(Step::Join),
        1 => (0..8usize).prop_map(Step::Cordon),
        1 => (0..8usize).prop_map(Step::Uncordon),
        1 => (0..8usize).prop_map(Step::NotReady),
        1 => (0..8usize).prop_map(Step::Lose),
        2 => (0..8usize).prop_map(Step::Return),
        6 => (0..32usize, 1..6i32).prop_map(|(i, n)| Step::Progress(i, n)),
        3 => (0..8usize).prop_map(Step::Sync),
        1 => (0..32usize).prop_map(Step::DeleteLocal),
    ]
}

/// The federation as the control plane sees it: the clusters and the one Job.
struct Federation {
    clusters: Clusters,
    job: FederatedJob,
    revision: u64,
}

impl Federation {
    fn cluster(&self, i: usize) -> String {
        let names: Vec<&String> = self.clusters.keys().collect();
        names[i % names.len()].clone()
    }

    fn view(&mut self, i: usize) -> (String, &mut ClusterView) {
        let name = self.cluster(i);
        let view = self.clusters.get_mut(&name).expect("listed");
        (name, view)
    }

    fn write(&mut self, next: Next) {
        match next {
            Next::Put(record) => {
                self.job = *record;
                self.revision += 1;
            }
            Next::Delete => panic!("nothing here deletes the Job"),
            Next::Unchanged => {}
        }
    }

    /// What the control plane does after a cluster changed: plan again the Jobs that wait for
    /// room, and those with a share or shard in `cluster` when it asks for them.
    fn cluster_changed(&mut self, cluster: Option<&str>) {
        let involved = cluster.is_some_and(|c| self.job.clusters().contains(c));
        if (self.job.needs_room() && !self.job.is_finished()) || involved {
            self.write(reconcile(&self.job, &self.clusters, now()));
        }
    }

    fn report(&mut self, cluster: &str, reports: Vec<ShardReport>) {
        if reports.is_empty() {
            return;
        }
        let (next, rejected) =
            apply_reports(&self.job, &[(cluster, &reports)], &self.clusters, now());
        assert_eq!(
            rejected,
            vec![Vec::<ShardReport>::new()],
            "reports about known shards"
        );
        self.write(next);
    }

    fn run(&mut self, step: &Step) {
        match *step {
            Step::Scale(parallelism, completions) => {
                let work_queue = self.job.spec().completions.is_none();
                let change = |job: &Job| {
                    let mut job = job.clone();
                    let spec = job.spec.as_mut().unwrap();
                    spec.parallelism = parallelism;
                    // A work queue stays one (the API refuses to give it completions).
                    spec.completions = completions.filter(|_| !work_queue);
                    Ok::<_, Refused>(job)
                };
                match update(
                    &self.job,
                    self.revision,
                    Some(self.revision),
                    change,
                    &self.clusters,
                    now(),
                ) {
                    Ok(Some(record)) => self.write(Next::Put(Box::new(record))),
                    Ok(None) => {}
                    Err(e) => panic!("a valid scale is refused: {e}"),
                }
            }
            Step::Join => {
                let name = format!("j{}", self.clusters.len());
                self.clusters.insert(
                    name.clone(),
                    ClusterView {
                        ready: true,
                        ..Default::default()
                    },
                );
                self.cluster_changed(Some(&name));
            }
            Step::Cordon(i) => {
                self.view(i).1.cordoned = true;
            }
            Step::Uncordon(i) => {
                self.view(i).1.cordoned = false;
                self.cluster_changed(None);
            }
            Step::NotReady(i) => {
                self.view(i).1.ready = false;
            }
            Step::Lose(i) => {
                let (name, view) = self.view(i);
                if view.ready || view.lost {
                    return;
                }
                view.lost = true;
                view.epoch += 1;
                self.cluster_changed(Some(&name));
            }
            Step::Return(i) => {
                let (name, view) = self.view(i);
                if view.ready {
                    return;
                }
                view.ready = true;
                view.lost = false;
                self.cluster_changed(Some(&name));
            }
            Step::Progress(i, n) => {
                let Some(s) = self.pick(i, |s| s.state == ShardState::Active && s.parallelism > 0)
                else {
                    return;
                };
                // A work queue's shard ends when its queue is empty: here after 5.
                let completions = s.completions.unwrap_or(5);
                let done = (s.succeeded() + n.min(s.parallelism)).min(completions);
                let observed = if done == completions {
                    report(ObservedPhase::Complete, 0, done)
                } else {
                    report(
                        ObservedPhase::Running,
                        s.parallelism.min(completions - done),
                        done,
                    )
                };
                let (cluster, r) = (s.cluster, shard_report(s, observed));
                self.report(&cluster, vec![r]);
            }
            Step::Sync(i) => {
                let cluster = self.cluster(i);
                if !self.clusters[&cluster].ready {
                    return;
                }
                let reports = self
                    .job
                    .shards_in(&cluster)
                    .filter_map(|s| {
                        let done = s.succeeded();
                        let observed = match s.state {
                            ShardState::Stopping => report(ObservedPhase::Deleted, 0, 0),
                            ShardState::Retired => report(ObservedPhase::Suspended, 0, done),
                            ShardState::Active if s.observed.is_none() => {
                                report(ObservedPhase::Running, 0, 0)
                            }
                            _ => return None,
                        };
                        Some(shard_report(s, observed))
                    })
                    .collect();
                self.report(&cluster, reports);
            }
            Step::DeleteLocal(i) => {
                let Some(s) =
                    self.pick(i, |s| s.observed_phase().is_some_and(ObservedPhase::exists))
                else {
                    return;
                };
                let (cluster, r) = (
                    s.cluster,
                    shard_report(s, report(ObservedPhase::Deleted, 0, 0)),
                );
                self.report(&cluster, vec![r]);
            }
        }
    }

    /// The `i`-th shard, among those in Ready clusters that `which` accepts.
    fn pick(&self, i: usize, which: impl Fn(&Shard) -> bool) -> Option<&Shard> {
        let candidates: Vec<&Shard> = self
            .job
            .shards
            .iter()
            .filter(|s| {
                self.clusters
                    .get(s.cluster.as_str())
                    .is_some_and(|c| c.ready)
                    && which(s)
            })
            .collect();
        (!candidates.is_empty()).then(|| candidates[i % candidates.len()])
    }
}

fn report(phase: ObservedPhase, active: i32, succeeded: i32) -> Observed {
    Observed {
        phase,
        active,
        succeeded,
        start_time: Some(now()).into(),
        completion_time: (phase == ObservedPhase::Complete).then(now).into(),
        local_uid: "local".into(),
        ..Default::default()
    }
}

fn shard_report(s: &Shard, observed: Observed) -> ShardReport {
    ShardReport {
        job_uid: UID.into(),
        namespace: "default".into(),
        shard: s.name.clone(),
        epoch: s.epoch,
        observed,
    }
}

/// Completions an active shard has still to run.
fn remaining(s: &Shard) -> i64 {
    i64::from((s.completions.unwrap_or(0) - s.succeeded()).max(0))
}

/// The totals of an unfinished Job. `capped` says the preferences bound some cluster's
/// parallelism (`maxReplicas`), where parallelism may honestly be unplaced while work remains.
fn check_totals(fj: &FederatedJob, capped: bool) -> Result<(), TestCaseError> {
    let active: Vec<&Shard> = fj
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Active)
        .collect();
    let parallelism = i64::from(fj.spec().parallelism.unwrap_or(0));
    let completions = i64::from(fj.spec().completions.unwrap_or(0));
    let running: i64 = active.iter().map(|s| i64::from(s.parallelism)).sum();
    let unplaced_parallelism = i64::from(fj.unplaced.parallelism);
    if fj.spec().completions.is_none() {
        // A work queue: all of its parallelism runs or waits for room.
        prop_assert_eq!(running + unplaced_parallelism, parallelism);
        if !capped && !active.is_empty() {
            prop_assert_eq!(running, parallelism);
        }
        return Ok(());
    }
    let to_run: i64 = active.iter().map(|s| remaining(s)).sum();
    let unplaced_completions = i64::from(fj.unplaced.completions);
    for s in &active {
        prop_assert!(
            (0..=remaining(s)).contains(&i64::from(s.parallelism)),
            "shard {}/{} runs {} with {} to go",
            s.cluster,
            s.name,
            s.parallelism,
            remaining(s)
        );
    }
    // No parallelism is lost: what runs and what waits for room is the Job's parallelism,
    // bounded by the completions still to run.
    prop_assert_eq!(
        running + unplaced_parallelism,
        parallelism.min(to_run + unplaced_completions),
        "running {} + unplaced {} (still to run: {} placed, {} unplaced)",
        running,
        unplaced_parallelism,
        to_run,
        unplaced_completions
    );
    if !capped {
        // Nothing is called unplaced that a cluster holding work could run.
        prop_assert_eq!(running, parallelism.min(to_run));
    }
    // Every completion is done or planned, once: more only where shards that already run
    // cannot be cut.
    let succeeded = status::total_succeeded(fj);
    let started: i64 = active
        .iter()
        .filter(|s| s.started())
        .map(|s| remaining(s))
        .sum();
    prop_assert_eq!(
        succeeded + to_run + unplaced_completions,
        completions.max(succeeded + started),
        "succeeded {} + planned-unfinished {} + unplaced {}",
        succeeded,
        to_run,
        unplaced_completions
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever happens between the edits, until the Job is finished: every active shard runs
    /// at most the completions it still lacks; running parallelism + unplaced parallelism =
    /// `spec.parallelism`, bounded by the completions still to run (and without `maxReplicas`,
    /// nothing a cluster holding work could run is unplaced); succeeded + planned-unfinished +
    /// unplaced completions = `completions` (more only where started shards cannot be cut).
    /// For a work queue: running + unplaced parallelism = `spec.parallelism`. Raising the
    /// counts never lowers a running shard's parallelism.
    /// Once the Job is finished, a shard that did work is never deleted for being surplus.
    #[test]
    fn edits_between_cluster_changes_keep_the_totals(
        parallelism in 0..16i32,
        completions in proptest::option::weighted(0.85, 1..40i32),
        rebalance in any::<bool>(),
        max in proptest::option::weighted(0.3, 1..6i32),
        cordoned in proptest::collection::vec(any::<bool>(), 3),
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let max_text = max.map_or(String::new(), |m| format!(r#", "maxReplicas": {m}"#));
        let prefs = format!(r#"{{"rebalance": {rebalance}, "clusters": {{"*": {{"weight": 1{max_text}}}}}}}"#);
        let clusters: Clusters = ["c1", "c2", "c3"]
            .iter()
            .zip(&cordoned)
            .map(|(n, c)| (n.to_string(), ClusterView { ready: true, cordoned: *c, ..Default::default() }))
            .collect();
        let job = create(manifest(parallelism, completions, Some(&prefs)), UID.into(), &clusters, now()).unwrap();
        let mut fed = Federation { clusters, job, revision: 1 };
        check_totals(&fed.job, max.is_some())?;
        for step in &steps {
            let before = fed.job.clone();
            fed.run(step);
            let counts = |fj: &FederatedJob| (fj.spec().parallelism, fj.spec().completions);
            let ((p0, c0), (p1, c1)) = (counts(&before), counts(&fed.job));
            let more = matches!(step, Step::Scale(..)) && p1 >= p0 && c1 >= c0;
            for old in &before.shards {
                let new = fed.job.shards.iter().find(|s| s.cluster == old.cluster && s.name == old.name);
                let new = new.expect("shards are never forgotten");
                prop_assert_eq!(new.completions, old.completions, "completions of a shard never change");
                prop_assert!(new.revision >= old.revision);
                if more && old.state == ShardState::Active && new.state == ShardState::Active {
                    // Adding work stops no running pod.
                    prop_assert!(
                        new.parallelism >= old.parallelism,
                        "{}/{} went from {} to {} after {:?}", old.cluster, old.name, old.parallelism, new.parallelism, step
                    );
                }
            }
            if fed.job.is_finished() {
                for s in &fed.job.shards {
                    let deleted = matches!(s.state, ShardState::Stopping | ShardState::Stopped);
                    prop_assert!(
                        !(deleted && s.stop_reason == Some(StopReason::Surplus) && s.did_work()),
                        "surplus shard {}/{} that did work is deleted", s.cluster, s.name
                    );
                }
            } else {
                check_totals(&fed.job, max.is_some()).map_err(|e| {
                    TestCaseError::fail(format!("after {step:?}: {e}\n{:#?}", fed.job.shards))
                })?;
            }
        }
    }
}

/// Issue 13's example: c4 is cordoned when the Job is created and uncordoned before it is
/// scaled. SPEC §6: a cluster that joins later takes part only in completions added later, so
/// the clusters that hold the work run all of it, 4/4/4, and nothing is unplaced.
#[test]
fn scaling_after_an_uncordon_runs_all_the_parallelism_where_the_work_is() {
    let mut clusters = crate::model::fixtures::ready(&["c1", "c2", "c3", "c4"]);
    clusters.get_mut("c4").unwrap().cordoned = true;
    let job = create(manifest(9, Some(18), None), UID.into(), &clusters, now()).unwrap();
    clusters.get_mut("c4").unwrap().cordoned = false;
    assert!(
        !job.needs_room(),
        "the control plane does not plan it again on uncordon"
    );
    let scale = |j: &Job| {
        let mut j = j.clone();
        j.spec.as_mut().unwrap().parallelism = Some(12);
        Ok::<_, Refused>(j)
    };
    let job = update(&job, 1, None, scale, &clusters, now())
        .unwrap()
        .unwrap();
    let running: Vec<(&str, i32, Option<i32>)> = job
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Active)
        .map(|s| (s.cluster.as_str(), s.parallelism, s.completions))
        .collect();
    assert_eq!(
        running,
        vec![("c1", 4, Some(6)), ("c2", 4, Some(6)), ("c3", 4, Some(6))]
    );
    assert_eq!(job.unplaced, Default::default());
    let placements = status::placements(&job, &clusters);
    let planned: Vec<(&str, i32)> = placements
        .iter()
        .map(|p| (p.cluster.as_str(), p.parallelism))
        .collect();
    assert_eq!(planned, vec![("c1", 4), ("c2", 4), ("c3", 4)]);
    assert!(!job.condition("Unschedulable"));
}

/// After a failover the moved completions run at once, within `spec.parallelism`: the
/// healthy clusters' own shards keep what they run and the lost cluster's share goes to the
/// moved work.
#[test]
fn moved_work_gets_the_lost_clusters_parallelism_at_once() {
    let prefs = r#"{"rebalance": true, "clusters": {"*": {"weight": 1}}}"#;
    let mut clusters = crate::model::fixtures::ready(&["c1", "c2", "c3"]);
    let job = create(
        manifest(9, Some(18), Some(prefs)),
        UID.into(),
        &clusters,
        now(),
    )
    .unwrap();
    let c3 = [ShardReport {
        job_uid: UID.into(),
        namespace: "default".into(),
        shard: "myjob".into(),
        epoch: 0,
        observed: report(ObservedPhase::Running, 3, 2),
    }];
    let Next::Put(job) = apply_reports(&job, &[("c3", &c3)], &clusters, now()).0 else {
        panic!("news");
    };
    let view = clusters.get_mut("c3").unwrap();
    view.ready = false;
    view.lost = true;
    view.epoch = 1;
    let Next::Put(job) = reconcile(&job, &clusters, now()) else {
        panic!("the failover moves work");
    };
    let active = |name: &str| -> Vec<(String, i32, Option<i32>)> {
        job.shards
            .iter()
            .filter(|s| s.state == ShardState::Active && s.name == name)
            .map(|s| (s.cluster.to_string(), s.parallelism, s.completions))
            .collect()
    };
    assert_eq!(
        active("myjob"),
        vec![("c1".into(), 3, Some(6)), ("c2".into(), 3, Some(6))],
        "the healthy clusters' own shards keep running as they were"
    );
    let moved = active("myjob-2");
    assert_eq!(
        moved.iter().map(|(_, _, c)| c.unwrap()).sum::<i32>(),
        4,
        "6 planned − 2 done"
    );
    let mut moved_parallelism: Vec<i32> = moved.iter().map(|(_, p, _)| *p).collect();
    moved_parallelism.sort();
    assert_eq!(
        moved_parallelism,
        vec![1, 2],
        "c3's 3 pods run the moved work at once"
    );
}
