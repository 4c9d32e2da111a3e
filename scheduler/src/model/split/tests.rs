use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::preferences::ClusterPreference;

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("c{i}")).collect()
}

fn shares(plan: &Plan) -> BTreeMap<&str, (i32, Option<i32>)> {
    plan.clusters
        .iter()
        .map(|c| (c.cluster.as_str(), (c.parallelism, c.completions)))
        .collect()
}

fn prefs(json: &str) -> Preferences {
    Preferences::parse(json).unwrap()
}

#[test]
fn the_seed_example_gives_three_and_six_everywhere() {
    let plan = plan(
        "default/myjob",
        9,
        Some(18),
        &names(3),
        &Preferences::default(),
    );
    assert!(
        plan.clusters
            .iter()
            .all(|c| c.parallelism == 3 && c.completions == Some(6))
    );
    assert_eq!(plan.unplaced, Share::default());
    assert_eq!(
        plan.to_json(),
        json!({"clusters": {"c1": {"parallelism": 3, "completions": 6}, "c2": {"parallelism": 3, "completions": 6},
                            "c3": {"parallelism": 3, "completions": 6}},
               "unplaced": {"parallelism": 0, "completions": 0}})
    );
}

#[test]
fn one_pod_takes_all_completions_in_one_cluster() {
    let plan = plan(
        "default/myjob",
        1,
        Some(3),
        &names(3),
        &Preferences::default(),
    );
    let busy: Vec<_> = plan.clusters.iter().filter(|c| c.parallelism > 0).collect();
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0].completions, Some(3));
    assert!(
        plan.clusters
            .iter()
            .filter(|c| c.parallelism == 0)
            .all(|c| c.completions == Some(0))
    );
}

#[test]
fn seven_over_three_is_three_two_two() {
    let (s, unplaced) = split_parallelism("default/j", 7, &names(3), &Preferences::default());
    let mut counts: Vec<i32> = s.iter().map(|(_, p)| *p).collect();
    counts.sort();
    assert_eq!((counts, unplaced), (vec![2, 2, 3], 0));
}

#[test]
fn the_spec_preferences_example() {
    let p = prefs(
        r#"{"clusters": {"*": {"weight": 1}, "gce-asia-east1a": {"minReplicas": 2, "maxReplicas": 10, "weight": 3}}}"#,
    );
    let clusters = vec![
        "gce-asia-east1a".to_owned(),
        "us".to_owned(),
        "eu".to_owned(),
    ];
    let plan = plan("default/j", 20, None, &clusters, &p);
    let s = shares(&plan);
    // 2 first, then 18 by 3:1:1 capped at 10 in total for asia.
    assert_eq!(s["gce-asia-east1a"].0, 10);
    assert_eq!(s["us"].0 + s["eu"].0, 10);
    assert!((s["us"].0 - s["eu"].0).abs() <= 1);
    assert_eq!(s["us"].1, None, "a work queue has no completions to split");
    assert_eq!(
        plan.clusters[0].cluster, "gce-asia-east1a",
        "the heaviest ranks first"
    );
}

#[test]
fn min_max_and_weight_zero_are_honoured() {
    let p = prefs(
        r#"{"clusters": {"a": {"weight": 0, "minReplicas": 2}, "b": {"weight": 1, "maxReplicas": 3}, "c": {"weight": 0}}}"#,
    );
    let (s, unplaced) = split_parallelism(
        "ns/j",
        10,
        &["a".into(), "b".into(), "c".into(), "d".into()],
        &p,
    );
    let s: BTreeMap<_, _> = s.into_iter().collect();
    assert_eq!((s["a"], s["b"], s["c"]), (2, 3, 0));
    assert!(
        !s.contains_key("d"),
        "no entry and no wildcard: not eligible"
    );
    assert_eq!(
        unplaced, 5,
        "everything beyond the maximums is unplaced, not dropped"
    );
    let plan = plan(
        "ns/j",
        10,
        Some(10),
        &["a".into(), "b".into(), "c".into(), "d".into()],
        &p,
    );
    assert_eq!(shares(&plan)["d"], (0, Some(0)));
}

#[test]
fn no_cluster_means_everything_is_unplaced() {
    let plan = plan("ns/j", 4, Some(8), &[], &Preferences::default());
    assert!(plan.clusters.is_empty());
    assert_eq!(
        plan.unplaced,
        Share {
            parallelism: 4,
            completions: 8
        }
    );
}

#[test]
fn zero_parallelism_keeps_completions_where_the_weights_point() {
    let plan = plan("ns/j", 0, Some(6), &names(3), &Preferences::default());
    assert!(
        plan.clusters
            .iter()
            .all(|c| c.completions == Some(2) && c.parallelism == 0)
    );
}

#[test]
fn huge_counts_split_without_looping_per_unit() {
    let (s, unplaced) = split_parallelism("ns/j", i32::MAX, &names(1000), &Preferences::default());
    assert_eq!(unplaced, 0);
    let total: i64 = s.iter().map(|(_, p)| i64::from(*p)).sum();
    assert_eq!(total, i64::from(i32::MAX));
    let (lo, hi) = (
        s.iter().map(|x| x.1).min().unwrap(),
        s.iter().map(|x| x.1).max().unwrap(),
    );
    assert!(hi - lo <= 1);
}

#[test]
fn tables_read_like_kubectl() {
    let plan = plan(
        "default/myjob",
        9,
        Some(18),
        &names(3),
        &Preferences::default(),
    );
    let table = plan.to_table();
    assert!(
        table.starts_with("CLUSTER   PARALLELISM   COMPLETIONS\n"),
        "{table}"
    );
    assert!(table.contains("c1        3             6\n"), "{table}");
}

/// The method as SPEC §3 words it, one unit at a time.
fn reference(
    job_key: &str,
    total: i32,
    clusters: &[String],
    prefs: &Preferences,
) -> (Vec<(String, i32)>, i32) {
    let mut ranked: Vec<(String, ClusterPreference, u64)> = Vec::new();
    for c in clusters {
        if ranked.iter().any(|r| &r.0 == c) {
            continue;
        }
        if let Some(p) = prefs.for_cluster(c) {
            ranked.push((c.clone(), *p, tie_break(job_key, c)));
        }
    }
    ranked.sort_by(|a, b| {
        b.1.weight
            .cmp(&a.1.weight)
            .then(a.2.cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    let mut left = total.max(0);
    let mut mins = vec![0; ranked.len()];
    for (i, r) in ranked.iter().enumerate() {
        let min = r.1.min_replicas.min(r.1.max_replicas.unwrap_or(i32::MAX));
        mins[i] = min.min(left);
        left -= mins[i];
    }
    let mut extra = vec![0i64; ranked.len()];
    while left > 0 {
        let mut best: Option<usize> = None;
        for (i, r) in ranked.iter().enumerate() {
            let at_max =
                r.1.max_replicas
                    .is_some_and(|m| i64::from(mins[i]) + extra[i] >= i64::from(m));
            if r.1.weight == 0 || at_max {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let mine = i128::from(r.1.weight) * i128::from(2 * extra[b] + 1);
                    let theirs = i128::from(ranked[b].1.weight) * i128::from(2 * extra[i] + 1);
                    if mine > theirs { Some(i) } else { Some(b) }
                }
            };
        }
        let Some(b) = best else { break };
        extra[b] += 1;
        left -= 1;
    }
    let out = ranked
        .iter()
        .enumerate()
        .map(|(i, r)| (r.0.clone(), mins[i] + extra[i] as i32))
        .collect();
    (out, left)
}

fn arbitrary_prefs() -> impl Strategy<Value = Preferences> {
    let entry =
        (0..4i32, proptest::option::of(0..12i32), 0..6i64).prop_map(|(min, max, weight)| {
            let max = max.map(|m| m.max(min));
            ClusterPreference {
                min_replicas: min,
                max_replicas: max,
                weight,
            }
        });
    (
        proptest::collection::btree_map("c[1-6]|\\*", entry, 0..7),
        any::<bool>(),
    )
        .prop_map(|(clusters, rebalance)| Preferences {
            rebalance,
            clusters,
        })
}

proptest! {
    #[test]
    fn the_fast_split_equals_the_one_unit_at_a_time_method(
        total in 0..200i32, n in 0..7usize, prefs in arbitrary_prefs(), job in "[a-z]{1,4}",
    ) {
        let clusters = names(n);
        let key = format!("default/{job}");
        prop_assert_eq!(split_parallelism(&key, total, &clusters, &prefs), reference(&key, total, &clusters, &prefs));
    }

    #[test]
    fn proportional_splits_equal_the_reference(total in 0..300i32, weights in proptest::collection::vec(0..50i64, 0..8)) {
        let fast = split_in_proportion(total, &weights);
        let clusters: Vec<String> = (0..weights.len()).map(|i| format!("k{i}")).collect();
        // Same method with no minimums or maximums: the reference over weights in index order.
        let mut extra = vec![0i64; weights.len()];
        let mut left = if weights.iter().any(|w| *w > 0) { total } else { 0 };
        while left > 0 {
            let best = (0..weights.len()).filter(|&i| weights[i] > 0).fold(None, |best: Option<usize>, i| match best {
                None => Some(i),
                Some(b) => {
                    let mine = i128::from(weights[i]) * i128::from(2 * extra[b] + 1);
                    let theirs = i128::from(weights[b]) * i128::from(2 * extra[i] + 1);
                    Some(if mine > theirs { i } else { b })
                }
            }).unwrap();
            extra[best] += 1;
            left -= 1;
        }
        let slow: Vec<i32> = extra.iter().map(|e| *e as i32).collect();
        prop_assert_eq!(fast, slow, "{:?}", clusters);
    }

    #[test]
    fn equal_weights_differ_by_at_most_one(total in 0..100_000i32, n in 1..50usize) {
        let (s, unplaced) = split_parallelism("ns/j", total, &names(n), &Preferences::default());
        prop_assert_eq!(unplaced, 0);
        prop_assert_eq!(s.iter().map(|x| x.1).sum::<i32>(), total);
        let (lo, hi) = (s.iter().map(|x| x.1).min().unwrap(), s.iter().map(|x| x.1).max().unwrap());
        prop_assert!(hi - lo <= 1);
    }

    #[test]
    fn shares_sum_to_p_unless_every_cluster_is_at_its_max(total in 0..500i32, n in 0..7usize, prefs in arbitrary_prefs()) {
        let (s, unplaced) = split_parallelism("ns/j", total, &names(n), &prefs);
        prop_assert_eq!(s.iter().map(|x| x.1).sum::<i32>() + unplaced, total);
        if unplaced > 0 {
            for (c, share) in &s {
                let p = prefs.for_cluster(c).unwrap();
                let full = p.max_replicas.is_some_and(|m| *share >= m) || (p.weight == 0 && *share >= p.min_replicas);
                prop_assert!(full, "{} has room ({}) but {} is unplaced", c, share, unplaced);
            }
        }
        let floor = |c: &str| {
            let p = prefs.for_cluster(c).unwrap();
            p.min_replicas.min(p.max_replicas.unwrap_or(i32::MAX))
        };
        let all_mins: i64 = s.iter().map(|(c, _)| i64::from(floor(c))).sum();
        for (c, share) in &s {
            let p = prefs.for_cluster(c).unwrap();
            prop_assert!(p.max_replicas.is_none_or(|m| *share <= m));
            if all_mins <= i64::from(total) {
                prop_assert!(*share >= floor(c), "{} got {} below its minimum", c, share);
            }
        }
    }

    #[test]
    fn the_split_is_deterministic_and_ignores_input_order(total in 0..500i32, n in 1..7usize, prefs in arbitrary_prefs(), seed in any::<u64>()) {
        let clusters = names(n);
        let mut shuffled = clusters.clone();
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        if seed % 2 == 0 { shuffled.reverse(); }
        let a = split_parallelism("ns/j", total, &clusters, &prefs);
        prop_assert_eq!(&a, &split_parallelism("ns/j", total, &clusters, &prefs));
        prop_assert_eq!(a, split_parallelism("ns/j", total, &shuffled, &prefs));
    }

    #[test]
    fn raising_p_never_lowers_a_share(total in 0..300i32, n in 1..7usize, prefs in arbitrary_prefs()) {
        let (before, _) = split_parallelism("ns/j", total, &names(n), &prefs);
        let (after, _) = split_parallelism("ns/j", total + 1, &names(n), &prefs);
        for ((c, b), (_, a)) in before.iter().zip(&after) {
            prop_assert!(a >= b, "{} went from {} to {}", c, b, a);
        }
    }

    #[test]
    fn completions_sum_to_c_when_anything_runs(p in 1..50i32, c in 0..500i32, n in 1..7usize) {
        let plan = plan("ns/j", p, Some(c), &names(n), &Preferences::default());
        prop_assert_eq!(plan.clusters.iter().map(|x| x.completions.unwrap()).sum::<i32>(), c);
        for x in &plan.clusters {
            prop_assert!(x.parallelism > 0 || x.completions == Some(0));
        }
    }
}

#[test]
#[ignore = "prints timings; run with --ignored --nocapture"]
fn timing_of_the_split() {
    for n in [10, 100, 1000] {
        let clusters = names(n);
        let prefs = Preferences::default();
        let rounds = 2000;
        let start = std::time::Instant::now();
        for i in 0..rounds {
            std::hint::black_box(plan("ns/j", 10_000 + i, Some(100_000), &clusters, &prefs));
        }
        println!(
            "plan over {n} clusters: {:?} per split",
            start.elapsed() / rounds as u32
        );
    }
}
