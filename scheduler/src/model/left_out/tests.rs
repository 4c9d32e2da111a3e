use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::model::fixtures::{job, now, ready, with_room};
use crate::model::planner;

fn labelled(clusters: &mut Clusters, cluster: &str, labels: &[(&str, &str)]) {
    clusters.get_mut(cluster).unwrap().labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
}

/// Plans `prefs` with parallelism `p` and completions `c` over `clusters`; every cluster
/// without a shard with the text of its reason.
fn reasons(p: i32, c: i32, prefs: &str, clusters: &Clusters) -> Vec<(String, String)> {
    let mut fj = job(p, Some(c), Some(prefs));
    planner::reconcile(&mut fj, clusters, now());
    left_out(&fj, clusters)
        .into_iter()
        .map(|(c, r)| (c, r.to_string()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(c, r)| ((*c).to_owned(), (*r).to_owned()))
        .collect()
}

#[test]
fn a_cluster_the_selector_refuses_is_told_which_requirement() {
    let mut clusters = ready(&["a", "b", "c", "d"]);
    labelled(&mut clusters, "a", &[("region", "eu"), ("tier", "gpu")]);
    labelled(&mut clusters, "b", &[("region", "us"), ("tier", "gpu")]);
    labelled(&mut clusters, "c", &[("tier", "gpu")]);
    labelled(&mut clusters, "d", &[("region", "eu"), ("tier", "cpu")]);
    let prefs = r#"{"clusterSelector": {"matchLabels": {"region": "eu"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu", "tpu"]}]}}"#;
    assert_eq!(
        reasons(2, 4, prefs, &clusters),
        pairs(&[
            (
                "b",
                "does not match clusterSelector region=eu: it has region=us"
            ),
            (
                "c",
                "does not match clusterSelector region=eu: it has no label region"
            ),
            (
                "d",
                "does not match clusterSelector tier In (gpu, tpu): it has tier=cpu"
            ),
        ])
    );
}

#[test]
fn exists_and_does_not_exist_are_written_without_values() {
    let mut clusters = ready(&["a", "b"]);
    labelled(&mut clusters, "a", &[("spot", "true")]);
    let prefs = r#"{"clusterSelector": {"matchExpressions": [{"key": "spot", "operator": "DoesNotExist"}]}}"#;
    assert_eq!(
        reasons(2, 4, prefs, &clusters),
        pairs(&[(
            "a",
            "does not match clusterSelector spot DoesNotExist: it has spot=true"
        )])
    );
}

#[test]
fn clusters_that_take_no_new_work_or_have_no_preference() {
    let mut clusters = ready(&["a", "b", "c", "d", "e", "f"]);
    clusters.get_mut("b").unwrap().ready = false;
    clusters.get_mut("c").unwrap().cordoned = true;
    let prefs = r#"{"clusters": {"a": {"weight": 1}, "b": {"weight": 1}, "c": {"weight": 1},
        "d": {"weight": 1, "maxReplicas": 0}, "e": {"weight": 0}}}"#;
    let got: Vec<(String, &'static str)> = {
        let mut fj = job(3, Some(6), Some(prefs));
        planner::reconcile(&mut fj, &clusters, now());
        left_out(&fj, &clusters)
            .into_iter()
            .map(|(c, r)| (c, r.code()))
            .collect()
    };
    let expected = [
        ("b", "NotReady"),
        ("c", "Cordoned"),
        ("d", "MaxReplicasZero"),
        ("e", "WeightZero"),
        ("f", "NoPreference"),
    ];
    let expected: Vec<(String, &str)> = expected.iter().map(|(c, r)| ((*c).into(), *r)).collect();
    assert_eq!(got, expected);
    assert_eq!(
        reasons(3, 6, prefs, &clusters),
        pairs(&[
            (
                "b",
                "NotReady: its agent is not connected or missed its heartbeats"
            ),
            ("c", "cordoned: no new work goes there"),
            ("d", "its preference has maxReplicas 0"),
            ("e", "its preference has weight 0 and no minReplicas"),
            ("f", "the preferences have no entry for it and no \"*\""),
        ])
    );
}

#[test]
fn more_clusters_than_work_leaves_the_lowest_ranked_with_nothing() {
    let clusters = ready(&["a", "b", "c"]);
    let mut fj = job(1, Some(1), None);
    planner::reconcile(&mut fj, &clusters, now());
    let left = left_out(&fj, &clusters);
    assert_eq!(left.len(), 2, "{left:?}");
    for (_, r) in &left {
        assert_eq!(
            r.to_string(),
            "nothing left to place: clusters that rank higher took it all"
        );
    }
}

#[test]
fn a_cluster_that_joined_after_the_job_was_planned() {
    let mut clusters = ready(&["a", "b"]);
    let mut fj = job(2, Some(4), None);
    planner::reconcile(&mut fj, &clusters, now());
    clusters.extend(ready(&["c"]));
    let left = left_out(&fj, &clusters);
    assert_eq!(left, vec![("c".to_owned(), Reason::JoinedLater)]);
}

#[test]
fn by_capacity_a_cluster_where_no_pod_fits_is_told_what_one_pod_requests() {
    let mut clusters = ready(&["a", "b", "c"]);
    with_room(&mut clusters, "a", 4);
    with_room(&mut clusters, "b", 0);
    let prefs = r#"{"dynamicWeight": "AvailableReplicas"}"#;
    let mut fj = job(2, Some(4), Some(prefs));
    let container = json!({"name": "w", "image": "busybox",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}});
    fj.job
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers = vec![serde_json::from_value(container).unwrap()];
    planner::reconcile(&mut fj, &clusters, now());
    let left: Vec<(String, String)> = left_out(&fj, &clusters)
        .into_iter()
        .map(|(c, r)| (c, r.to_string()))
        .collect();
    assert_eq!(
        left,
        pairs(&[
            (
                "b",
                "dynamicWeight AvailableReplicas: no node where one pod (cpu 500m, memory 1Gi) fits"
            ),
            (
                "c",
                "dynamicWeight AvailableReplicas: it reports no free capacity (fedjob-syncer --report-capacity) and the clusters that do had room"
            ),
        ])
    );
}

#[test]
fn the_unschedulable_message_says_why_no_cluster_took_anything() {
    let clusters = ready(&["a", "b"]);
    let plan = |prefs: &str, clusters: &Clusters| {
        let mut fj = job(2, Some(4), Some(prefs));
        planner::reconcile(&mut fj, clusters, now());
        unplaced_because(&fj, clusters)
    };
    // SPEC §10's words, letter by letter.
    assert_eq!(
        plan(r#"{"clusters": {"elsewhere": {"weight": 1}}}"#, &clusters),
        "the preferences give no cluster a weight: add \"*\" or an entry per cluster"
    );
    assert_eq!(
        plan(
            r#"{"clusters": {"a": {"weight": 0}, "b": {"weight": 0}}}"#,
            &clusters
        ),
        NO_WEIGHT
    );
    assert_eq!(
        plan(
            r#"{"clusterSelector": {"matchLabels": {"region": "eu"}}}"#,
            &clusters
        ),
        "the clusterSelector selects no registered cluster"
    );
    assert_eq!(plan("{}", &Clusters::new()), "no cluster is registered");
    assert_eq!(
        plan("{}", &clusters),
        NO_WEIGHT,
        "an empty map names no cluster"
    );
    let mut full = ready(&["a"]);
    full.get_mut("a").unwrap().cordoned = true;
    let everywhere = r#"{"clusters": {"*": {"weight": 1}}}"#;
    assert_eq!(
        plan(everywhere, &full),
        "no registered cluster is Ready and uncordoned"
    );
    assert_eq!(
        plan(
            r#"{"clusters": {"a": {"weight": 1, "maxReplicas": 1}}}"#,
            &ready(&["a"])
        ),
        "no eligible cluster has room"
    );
}

fn cluster_views() -> impl Strategy<Value = Clusters> {
    let view = (any::<bool>(), any::<bool>(), prop::option::of(0..2usize));
    prop::collection::btree_map("[a-f]", view, 0..6).prop_map(|m| {
        m.into_iter()
            .map(|(name, (ready, cordoned, region))| {
                let labels: BTreeMap<String, String> = region
                    .map(|r| ("region".to_owned(), ["eu", "us"][r].to_owned()))
                    .into_iter()
                    .collect();
                let view = ClusterView {
                    ready,
                    cordoned,
                    labels,
                    ..Default::default()
                };
                (name, view)
            })
            .collect()
    })
}

fn preferences() -> impl Strategy<Value = String> {
    let entry = (0..3i64, prop::option::of(0..3i32), 0..2i32);
    (
        prop::collection::btree_map("[a-f*]", entry, 0..4),
        any::<bool>(),
    )
        .prop_map(|(entries, select)| {
            let clusters: serde_json::Map<String, serde_json::Value> = entries
                .into_iter()
                .map(|(c, (weight, max, min))| {
                    let mut e =
                        json!({"weight": weight, "minReplicas": min.min(max.unwrap_or(min))});
                    if let Some(m) = max {
                        e["maxReplicas"] = json!(m);
                    }
                    (c, e)
                })
                .collect();
            let mut prefs = json!({"clusters": clusters});
            if select {
                prefs["clusterSelector"] = json!({"matchLabels": {"region": "eu"}});
            }
            prefs.to_string()
        })
}

proptest! {
    /// Every registered cluster without a shard has exactly one reason and no cluster with a
    /// shard has one; the reasons about eligibility say what the planner's own rules say.
    #[test]
    fn every_cluster_without_a_shard_has_the_reason_the_planner_had(
        clusters in cluster_views(),
        prefs in preferences(),
        p in 0..5i32,
        c in 0..8i32,
    ) {
        let mut fj = job(p, Some(c), Some(&prefs));
        planner::reconcile(&mut fj, &clusters, now());
        let parsed = Preferences::parse(&prefs).unwrap();
        let left: BTreeMap<String, Reason> = left_out(&fj, &clusters).into_iter().collect();
        for (name, view) in &clusters {
            let has_shard = fj.shards_in(name).next().is_some();
            prop_assert_eq!(left.contains_key(name), !has_shard, "{}", name);
            let Some(reason) = left.get(name) else { continue };
            prop_assert_eq!(matches!(reason, Reason::NotReady), !view.ready);
            prop_assert_eq!(
                matches!(reason, Reason::Cordoned),
                view.ready && view.cordoned
            );
            let refused = matches!(reason, Reason::NoPreference | Reason::NotSelected { .. });
            prop_assert_eq!(refused, view.schedulable() && !parsed.allows(name, &view.labels));
            if let Reason::NotSelected { value, .. } = reason {
                prop_assert_ne!(value.as_deref(), Some("eu"));
            }
        }
    }
}
