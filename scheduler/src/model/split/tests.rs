use std::collections::BTreeMap;
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::model::preferences::ClusterPreference;

const JOB: &str = "default/myjob";

/// `c1`..`c1000`, made once: plans borrow the names they are asked about.
static NAMES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| (1..=1000).map(|i| format!("c{i}")).collect());

/// The first `n` cluster names.
fn names(n: usize) -> &'static [String] {
    &NAMES[..n]
}

fn prefs(json: &str) -> Preferences {
    Preferences::parse(json).unwrap()
}

fn by_name<'a>(plan: &Plan<'a>) -> BTreeMap<&'a str, (i32, Option<i32>)> {
    plan.clusters
        .iter()
        .map(|c| (c.cluster, (c.parallelism, c.completions)))
        .collect()
}

fn total(shares: &[(&str, i32)]) -> i64 {
    shares.iter().map(|(_, s)| i64::from(*s)).sum()
}

// ---------------------------------------------------------------- the reference

/// The method as SPEC §3 words it, one unit at a time: the yardstick for the fast version.
fn reference_split<'a>(
    job_key: &str,
    parallelism: i32,
    clusters: &'a [String],
    prefs: &Preferences,
) -> (Vec<(&'a str, i32)>, i32) {
    let mut ranked: Vec<(&str, ClusterPreference)> = Vec::new();
    for c in clusters {
        if let Some(p) = prefs.for_cluster(c)
            && !ranked.iter().any(|(n, _)| *n == c.as_str())
        {
            ranked.push((c.as_str(), *p));
        }
    }
    ranked.sort_by(|(a, pa), (b, pb)| {
        pb.weight
            .cmp(&pa.weight)
            .then(tie_break(job_key, a).cmp(&tie_break(job_key, b)))
            .then(a.cmp(b))
    });
    let mut left = parallelism.max(0);
    let mut shares: Vec<i32> = Vec::new();
    for (_, p) in &ranked {
        let min = p
            .min_replicas
            .min(p.max_replicas.unwrap_or(i32::MAX))
            .min(left);
        shares.push(min);
        left -= min;
    }
    let caps: Vec<i64> = ranked
        .iter()
        .zip(&shares)
        .map(|((_, p), given)| p.max_replicas.map_or(i64::MAX, |m| i64::from(m - given)))
        .collect();
    let weights: Vec<i64> = ranked.iter().map(|(_, p)| p.weight).collect();
    let (extra, unplaced) = reference_webster(i64::from(left), &weights, &caps);
    let shares = ranked
        .iter()
        .zip(shares)
        .zip(extra)
        .map(|(((n, _), s), e)| (*n, s + e))
        .collect();
    (shares, unplaced as i32)
}

/// One seat at a time to the highest weight/(2s+1), ties to the lower index, skipping weight 0
/// and full clusters.
fn reference_webster(mut left: i64, weights: &[i64], caps: &[i64]) -> (Vec<i32>, i64) {
    let mut seats = vec![0i64; weights.len()];
    while left > 0 {
        let mut best: Option<usize> = None;
        for i in 0..weights.len() {
            if weights[i] <= 0 || seats[i] >= caps[i] {
                continue;
            }
            let better = best.is_none_or(|b| {
                i128::from(weights[i]) * i128::from(2 * seats[b] + 1)
                    > i128::from(weights[b]) * i128::from(2 * seats[i] + 1)
            });
            if better {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        seats[b] += 1;
        left -= 1;
    }
    (seats.into_iter().map(|s| s as i32).collect(), left)
}

/// Webster's condition for a finished division: no seat not given beats a seat given. With
/// huge counts this checks the fast result where the reference would take too long.
fn is_webster(weights: &[i64], caps: &[i64], seats: &[i64], unplaced: i64) {
    let n = weights.len();
    for i in 0..n {
        assert!(seats[i] <= caps[i], "over the cap");
        if weights[i] == 0 {
            assert_eq!(seats[i], 0, "weight 0 got seats");
        }
        if unplaced > 0 {
            assert!(
                weights[i] == 0 || seats[i] == caps[i],
                "unplaced while {i} has room"
            );
        }
    }
    for i in (0..n).filter(|&i| seats[i] > 0) {
        for j in (0..n).filter(|&j| weights[j] > 0 && seats[j] < caps[j]) {
            // The last seat of i against the next seat of j, ties to the lower index.
            let last_i = i128::from(weights[i]) * i128::from(2 * seats[j] + 1);
            let next_j = i128::from(weights[j]) * i128::from(2 * seats[i] - 1);
            assert!(
                last_i > next_j || (last_i == next_j && i < j),
                "{i} holds a seat {j} should have"
            );
        }
    }
}

// ---------------------------------------------------------------- examples

#[test]
fn the_seed_example_gives_three_and_six_everywhere() {
    let plan = plan(JOB, 9, Some(18), names(3), &Preferences::default());
    assert!(
        plan.clusters
            .iter()
            .all(|c| c.parallelism == 3 && c.completions == Some(6))
    );
    assert_eq!(plan.unplaced, Share::default());
    assert_eq!(
        plan.to_json(),
        json!({"clusters": {"c1": {"parallelism": 3, "completions": 6},
                            "c2": {"parallelism": 3, "completions": 6},
                            "c3": {"parallelism": 3, "completions": 6}},
               "unplaced": {"parallelism": 0, "completions": 0}})
    );
}

#[test]
fn one_pod_takes_all_completions_in_its_cluster() {
    let plan = plan(JOB, 1, Some(3), names(3), &Preferences::default());
    let shares: Vec<(i32, Option<i32>)> = plan
        .clusters
        .iter()
        .map(|c| (c.parallelism, c.completions))
        .collect();
    assert_eq!(
        shares,
        [(1, Some(3)), (0, Some(0)), (0, Some(0))],
        "rank order: the busy cluster first"
    );
}

#[test]
fn seven_over_three_is_three_two_two_with_the_odd_unit_to_the_first_ranked() {
    let (shares, unplaced) = split_parallelism(JOB, 7, names(3), &Preferences::default());
    let counts: Vec<i32> = shares.iter().map(|(_, p)| *p).collect();
    assert_eq!((counts, unplaced), (vec![3, 2, 2], 0));
    let first = shares
        .iter()
        .map(|(c, _)| c)
        .min_by_key(|c| tie_break(JOB, c))
        .unwrap();
    assert_eq!(&shares[0].0, first);
}

#[test]
fn the_spec_preferences_example() {
    let p = prefs(
        r#"{"rebalance": false,
            "clusters": {"*": {"weight": 1}, "gce-asia-east1a": {"minReplicas": 2, "maxReplicas": 10, "weight": 3}}}"#,
    );
    let clusters: Vec<String> = ["us-central1", "gce-asia-east1a", "eu-west1"]
        .map(String::from)
        .into();
    // 2 to asia first; 8 more by 3:1:1 → asia 5 (priorities 3, 1, 0.6, 0.43, …), the others 2 and 1.
    let plan10 = plan(JOB, 10, Some(20), &clusters, &p);
    assert_eq!(plan10.clusters[0].cluster, "gce-asia-east1a");
    assert_eq!(
        (
            plan10.clusters[0].parallelism,
            plan10.clusters[0].completions
        ),
        (7, Some(14))
    );
    let rest: Vec<i32> = plan10.clusters[1..].iter().map(|c| c.parallelism).collect();
    assert_eq!(rest.iter().sum::<i32>(), 3);
    assert!(rest.contains(&2) && rest.contains(&1));
    // Asia stops at its max of 10; everything else goes to the others.
    let plan40 = plan(JOB, 40, None, &clusters, &p);
    let s = by_name(&plan40);
    assert_eq!(s["gce-asia-east1a"], (10, None));
    assert_eq!(s["us-central1"].0 + s["eu-west1"].0, 30);
    assert_eq!(s["us-central1"].0, 15);
    assert_eq!(plan40.unplaced, Share::default());
}

#[test]
fn min_max_and_weight_zero_are_honoured() {
    let p = prefs(
        r#"{"clusters": {"big": {"weight": 10, "maxReplicas": 3},
                         "pinned": {"minReplicas": 4, "weight": 0},
                         "small": {"weight": 1}}}"#,
    );
    let clusters: Vec<String> = ["big", "pinned", "small"].map(String::from).into();
    let (shares, unplaced) = split_parallelism(JOB, 20, &clusters, &p);
    let s: BTreeMap<&str, i32> = shares.iter().map(|(c, n)| (*c, *n)).collect();
    assert_eq!((s["big"], s["pinned"], s["small"], unplaced), (3, 4, 13, 0));
    // With too little for every minimum, the minimums go in rank order (weight first).
    let (shares, _) = split_parallelism(JOB, 2, &clusters, &p);
    let s: BTreeMap<&str, i32> = shares.iter().map(|(c, n)| (*c, *n)).collect();
    assert_eq!(
        (s["big"], s["pinned"], s["small"]),
        (0, 2, 0),
        "minimums come before weights"
    );
}

#[test]
fn what_no_cluster_can_take_is_unplaced() {
    let p = prefs(r#"{"clusters": {"*": {"weight": 1, "maxReplicas": 2}}}"#);
    let plan = plan(JOB, 10, Some(30), names(3), &p);
    assert!(
        plan.clusters
            .iter()
            .all(|c| c.parallelism == 2 && c.completions == Some(10))
    );
    assert_eq!(
        plan.unplaced,
        Share {
            parallelism: 4,
            completions: 0
        }
    );

    let nowhere = plan_fn(JOB, 5, Some(7), &[], &Preferences::default());
    assert!(nowhere.clusters.is_empty());
    assert_eq!(
        nowhere.unplaced,
        Share {
            parallelism: 5,
            completions: 7
        }
    );
}

// `plan` the function, where a test has a local named `plan`.
use super::plan as plan_fn;

#[test]
fn the_wildcard_applies_to_clusters_without_an_entry_and_others_get_nothing() {
    let p = prefs(r#"{"clusters": {"c1": {"weight": 2}, "*": {"weight": 1}}}"#);
    let (shares, _) = split_parallelism(JOB, 8, names(3), &p);
    let s: BTreeMap<&str, i32> = shares.iter().map(|(c, n)| (*c, *n)).collect();
    assert_eq!((s["c1"], s["c2"] + s["c3"]), (4, 4));

    let only = prefs(r#"{"clusters": {"c2": {"weight": 1}}}"#);
    let plan = plan(JOB, 6, Some(6), names(3), &only);
    assert_eq!(
        plan.to_json(),
        json!({"clusters": {"c1": {"parallelism": 0, "completions": 0},
                            "c2": {"parallelism": 6, "completions": 6},
                            "c3": {"parallelism": 0, "completions": 0}},
               "unplaced": {"parallelism": 0, "completions": 0}})
    );
    assert_eq!(plan.clusters[0].cluster, "c2", "eligible clusters first");
    let (shares, _) = split_parallelism(JOB, 6, names(3), &only);
    assert_eq!(
        shares,
        [("c2", 6)],
        "split_parallelism lists only eligible clusters"
    );
}

#[test]
fn preference_keys_match_case_insensitively() {
    let lower =
        prefs(r#"{"clusters": {"c1": {"minreplicas": 5, "weight": 1}, "*": {"weight": 1}}}"#);
    let upper =
        prefs(r#"{"CLUSTERS": {"c1": {"MinReplicas": 5, "Weight": 1}, "*": {"WEIGHT": 1}}}"#);
    assert_eq!(
        plan(JOB, 9, Some(9), names(3), &lower),
        plan(JOB, 9, Some(9), names(3), &upper)
    );
    // 5 first, then 4 over three equal weights: 2, 1, 1.
    let c1 = by_name(&plan(JOB, 9, None, names(3), &upper))["c1"].0;
    assert!(c1 == 6 || c1 == 7, "{c1}");
}

#[test]
fn a_work_queue_splits_parallelism_only() {
    let plan = plan(JOB, 4, None, names(2), &Preferences::default());
    assert_eq!(
        plan.to_json(),
        json!({"clusters": {"c1": {"parallelism": 2}, "c2": {"parallelism": 2}},
               "unplaced": {"parallelism": 0, "completions": 0}})
    );
}

#[test]
fn zero_parallelism_keeps_completions_where_the_weights_point() {
    let p =
        prefs(r#"{"clusters": {"c1": {"weight": 3}, "c2": {"weight": 1}, "c3": {"weight": 0}}}"#);
    let plan = plan(JOB, 0, Some(8), names(3), &p);
    let s = by_name(&plan);
    assert_eq!(
        (s["c1"], s["c2"], s["c3"]),
        ((0, Some(6)), (0, Some(2)), (0, Some(0)))
    );
    assert_eq!(plan.unplaced, Share::default());

    let weightless = prefs(r#"{"clusters": {"*": {"weight": 0}}}"#);
    let plan = plan_fn(JOB, 0, Some(8), names(3), &weightless);
    assert_eq!(
        plan.unplaced,
        Share {
            parallelism: 0,
            completions: 8
        }
    );
}

#[test]
fn negative_counts_are_treated_as_zero() {
    let plan = plan(JOB, -3, Some(-1), names(2), &Preferences::default());
    assert!(
        plan.clusters
            .iter()
            .all(|c| c.parallelism == 0 && c.completions == Some(0))
    );
    assert_eq!(plan.unplaced, Share::default());
    assert_eq!(split_in_proportion(-5, &[1, 2]), [0, 0]);
    assert_eq!(split_in_proportion(5, &[-1, 2]), [0, 5]);
}

#[test]
fn a_cluster_listed_twice_counts_once() {
    let clusters: Vec<String> = ["a", "b", "a"].map(String::from).into();
    let (shares, unplaced) = split_parallelism(JOB, 5, &clusters, &Preferences::default());
    assert_eq!((shares.len(), total(&shares), unplaced), (2, 5, 0));
}

#[test]
fn split_in_proportion_examples() {
    assert_eq!(split_in_proportion(18, &[3, 3, 3]), [6, 6, 6]);
    assert_eq!(split_in_proportion(3, &[1, 0, 0]), [3, 0, 0]);
    assert_eq!(
        split_in_proportion(5, &[1, 1]),
        [3, 2],
        "the tie goes to the first"
    );
    assert_eq!(split_in_proportion(10, &[]), Vec::<i32>::new());
    assert_eq!(split_in_proportion(10, &[0, 0]), [0, 0]);
    // Webster, not Hamilton or D'Hondt: 7 by 6:3:1 is 4, 2, 1 (D'Hondt would give 5, 2, 0).
    assert_eq!(split_in_proportion(7, &[6, 3, 1]), [4, 2, 1]);
}

#[test]
fn huge_counts_split_exactly_without_looping_per_unit() {
    let weights = [1_000_000_000i64, 999_999_999, 7, 1, 0, 3];
    let counts = split_in_proportion(i32::MAX, &weights);
    assert_eq!(
        counts.iter().map(|&c| i64::from(c)).sum::<i64>(),
        i64::from(i32::MAX)
    );
    let seats: Vec<i64> = counts.iter().map(|&c| i64::from(c)).collect();
    is_webster(&weights, &[i64::MAX; 6], &seats, 0);

    let p = prefs(
        r#"{"clusters": {"*": {"weight": 1}, "c7": {"weight": 1000000000, "maxReplicas": 5}}}"#,
    );
    let (shares, unplaced) = split_parallelism(JOB, i32::MAX, names(1000), &p);
    assert_eq!((total(&shares), unplaced), (i64::from(i32::MAX), 0));
    assert_eq!(shares[0], ("c7", 5));
    let rest: Vec<i32> = shares[1..].iter().map(|(_, s)| *s).collect();
    assert!(rest.iter().max().unwrap() - rest.iter().min().unwrap() <= 1);
}

#[test]
fn a_cap_reached_among_the_last_seats_is_honoured_exactly() {
    // Found by a random search: here a cap binds between the two thresholds of `webster`,
    // which takes its slowest path (another round without the full clusters).
    let cases: [(&[i64], &[i64], i64); 2] = [
        (&[9, 2, 1, 7, 3, 18], &[41, 7, 6, 30, 15, 79], 174),
        (&[15, 13, 1, 1, 13, 4], &[62, 52, 6, 6, 52, 18], 192),
    ];
    for (weights, caps, total) in cases {
        let mut items: Vec<Seat> = weights
            .iter()
            .zip(caps)
            .map(|(&w, &c)| Seat {
                weight: w as u64,
                cap: c as u64,
                seats: 0,
            })
            .collect();
        let unplaced = webster(total as u64, &mut items);
        let got: Vec<i32> = items.iter().map(|s| s.seats as i32).collect();
        assert_eq!(
            (got, unplaced as i64),
            reference_webster(total, weights, caps)
        );
    }
}

#[test]
fn weights_beyond_32_bits_rank_like_small_ones() {
    let big = |w: i64| ClusterPreference {
        weight: w,
        ..Default::default()
    };
    let prefs = Preferences {
        rebalance: false,
        clusters: [
            ("c1", big(1 << 40)),
            ("c2", big(3)),
            ("c3", big(1 << 33)),
            ("c4", big(1 << 40)),
            ("c5", big(0)),
        ]
        .map(|(c, p)| (c.to_owned(), p))
        .into(),
        ..Preferences::default()
    };
    for p in [0, 1, 2, 3, 50, 1000] {
        assert_eq!(
            split_parallelism(JOB, p, names(5), &prefs),
            reference_split(JOB, p, names(5), &prefs)
        );
    }
    let (shares, _) = split_parallelism(JOB, 3, names(5), &prefs);
    let order: Vec<&str> = shares.iter().map(|(c, _)| *c).collect();
    assert_eq!(&order[2..], ["c3", "c2", "c5"]);
}

#[test]
fn tables_read_like_kubectl() {
    let p = prefs(r#"{"clusters": {"*": {"weight": 1, "maxReplicas": 2}}}"#);
    let plan = plan(JOB, 5, Some(6), names(2), &p);
    let (first, second) = (&plan.clusters[0].cluster, &plan.clusters[1].cluster);
    let expected = format!(
        "CLUSTER    PARALLELISM   COMPLETIONS\n\
         {first}         2             3\n\
         {second}         2             3\n\
         UNPLACED   1             0\n"
    );
    assert_eq!(plan.to_table(), expected);
    let queue = plan_fn(
        JOB,
        2,
        None,
        &["long-cluster-name".to_owned()],
        &Preferences::default(),
    )
    .to_table();
    assert_eq!(
        queue,
        "CLUSTER             PARALLELISM   COMPLETIONS\nlong-cluster-name   2             <none>\n"
    );
}

#[test]
fn the_tie_break_is_fnv1a_and_fixed() {
    // Published FNV-1a 64 test vectors.
    assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    let mut bytes = b"default/myjob".to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"c1");
    assert_eq!(tie_break("default/myjob", "c1"), fnv1a(FNV_OFFSET, &bytes));
    // Pinned: a change here reorders every running Job's odd units.
    assert_eq!(tie_break("default/myjob", "c1"), 0x448a_c508_b397_6501);
}

/// The best per-call time of `f` over a few batches: the least disturbed by other work.
fn best_time(mut f: impl FnMut(i32)) -> std::time::Duration {
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for i in 0..300 {
                f(i);
            }
            start.elapsed() / 300
        })
        .min()
        .unwrap()
}

#[test]
#[ignore = "timing, run with --release -- --ignored --nocapture"]
fn timing_of_the_split() {
    let capped = prefs(
        r#"{"clusters": {"*": {"weight": 1, "maxReplicas": 100000000}, "c3": {"weight": 5, "minReplicas": 7}}}"#,
    );
    for n in [10usize, 100, 1000] {
        let clusters = names(n);
        for (label, p) in [("default", &Preferences::default()), ("min/max", &capped)] {
            let plan = best_time(|i| {
                std::hint::black_box(plan_fn(
                    JOB,
                    i32::MAX - i,
                    Some(i32::MAX - 3 * i),
                    clusters,
                    p,
                ));
            });
            let parallelism = best_time(|i| {
                std::hint::black_box(split_parallelism(JOB, i32::MAX - i, clusters, p));
            });
            println!(
                "{n:>5} clusters, {label:<8} plan {plan:>10?}   split_parallelism {parallelism:>10?}"
            );
        }
        let weights: Vec<i64> = (0..n as i64).map(|i| 1000 + i % 7).collect();
        let proportion = best_time(|i| {
            std::hint::black_box(split_in_proportion(i32::MAX - i, &weights));
        });
        let names_only = best_time(|i| {
            let copies: Vec<(String, i32)> = clusters.iter().map(|c| (c.clone(), i)).collect();
            std::hint::black_box(copies);
        });
        println!(
            "{n:>5} clusters, split_in_proportion {proportion:?}; copying the names alone {names_only:?}"
        );
    }
}

// ---------------------------------------------------------------- properties

fn arbitrary_preference() -> impl Strategy<Value = ClusterPreference> {
    (
        0..6i32,
        proptest::option::of(0..40i32),
        prop_oneof![Just(0i64), 1..20i64],
    )
        .prop_map(|(min, max, weight)| ClusterPreference {
            min_replicas: max.map_or(min, |m| min.min(m)),
            max_replicas: max,
            weight,
        })
}

/// Preferences over clusters `c1…c8`, sometimes with a wildcard, sometimes leaving some out.
fn arbitrary_prefs() -> impl Strategy<Value = Preferences> {
    (
        proptest::collection::btree_map("c[1-8]", arbitrary_preference(), 0..8),
        proptest::option::of(arbitrary_preference()),
    )
        .prop_map(|(mut clusters, wildcard)| {
            if let Some(w) = wildcard {
                clusters.insert("*".into(), w);
            }
            Preferences {
                rebalance: false,
                clusters,
                ..Preferences::default()
            }
        })
}

/// Uncapped preferences: only weights, all positive.
fn weights_only(weights: &[i64]) -> Preferences {
    let clusters = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            (
                format!("c{}", i + 1),
                ClusterPreference {
                    weight,
                    ..Default::default()
                },
            )
        })
        .collect();
    Preferences {
        rebalance: false,
        clusters,
        ..Preferences::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_fast_split_equals_the_one_unit_at_a_time_method(
        p in 0..300i32, n in 0..9usize, prefs in arbitrary_prefs(), job in "[a-z]{1,5}/[a-z]{1,5}",
    ) {
        let clusters = names(n);
        prop_assert_eq!(split_parallelism(&job, p, clusters, &prefs), reference_split(&job, p, clusters, &prefs));
    }

    #[test]
    fn the_fast_split_equals_the_reference_over_many_clusters(
        p in 0..2000i32,
        prefs in proptest::collection::vec(arbitrary_preference(), 1..60),
    ) {
        let clusters = names(prefs.len());
        let prefs = Preferences {
            rebalance: false,
            clusters: clusters.iter().cloned().zip(prefs).collect(),
            ..Preferences::default()
        };
        prop_assert_eq!(split_parallelism(JOB, p, clusters, &prefs), reference_split(JOB, p, clusters, &prefs));
    }

    #[test]
    fn proportional_splits_equal_the_reference(
        total in 0..3000i32, weights in proptest::collection::vec(prop_oneof![Just(0i64), 1..30i64, 1..1_000_000_000i64], 0..40),
    ) {
        let caps = vec![i64::MAX; weights.len()];
        let (expected, _) = reference_webster(i64::from(total), &weights, &caps);
        prop_assert_eq!(split_in_proportion(total, &weights), expected);
    }

    #[test]
    fn huge_splits_satisfy_webster_s_condition(
        total in 0..=i32::MAX,
        entries in proptest::collection::vec((0..=1_000_000_000i64, proptest::option::of(0..=i32::MAX)), 1..50),
    ) {
        let weights: Vec<i64> = entries.iter().map(|e| e.0).collect();
        let caps: Vec<i64> = entries.iter().map(|e| e.1.map_or(i64::MAX, i64::from)).collect();
        let mut items: Vec<Seat> = entries
            .iter()
            .map(|&(w, cap)| Seat { weight: w as u64, cap: cap.map_or(u64::MAX, |c| c as u64), seats: 0 })
            .collect();
        let unplaced = webster(total as u64, &mut items);
        let seats: Vec<i64> = items.iter().map(|s| s.seats as i64).collect();
        prop_assert_eq!(seats.iter().sum::<i64>() + unplaced as i64, i64::from(total));
        is_webster(&weights, &caps, &seats, unplaced as i64);
    }

    #[test]
    fn shares_sum_to_p_unless_every_cluster_is_at_its_max(p in 0..500i32, n in 0..9usize, prefs in arbitrary_prefs()) {
        let clusters = names(n);
        let (shares, unplaced) = split_parallelism(JOB, p, clusters, &prefs);
        prop_assert_eq!(total(&shares) + i64::from(unplaced), i64::from(p));
        prop_assert!(unplaced >= 0);
        if unplaced > 0 {
            for (c, s) in &shares {
                let pref = prefs.for_cluster(c).unwrap();
                let full = pref.max_replicas == Some(*s) || (pref.weight == 0 && *s == pref.min_replicas);
                prop_assert!(full, "{} has room for {} unplaced", c, unplaced);
            }
        }
    }

    #[test]
    fn equal_weights_give_shares_within_one(p in 0..100_000i32, n in 1..60usize, weight in 1..1000i64) {
        let (shares, unplaced) = split_parallelism(JOB, p, names(n), &weights_only(&vec![weight; n]));
        let counts: Vec<i32> = shares.iter().map(|(_, s)| *s).collect();
        prop_assert_eq!(unplaced, 0);
        prop_assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{:?}", counts);
    }

    #[test]
    fn the_split_is_deterministic_and_ignores_input_order_and_repeats(
        p in 0..500i32, c in proptest::option::of(0..500i32), n in 1..9usize, prefs in arbitrary_prefs(),
        order in Just(names(8).to_vec()).prop_shuffle(),
    ) {
        let clusters = names(n);
        let mut shuffled: Vec<String> = order.into_iter().filter(|c| clusters.contains(c)).collect();
        shuffled.push(clusters[0].clone());
        let first = plan(JOB, p, c, clusters, &prefs);
        prop_assert_eq!(&first, &plan(JOB, p, c, clusters, &prefs));
        prop_assert_eq!(&first, &plan(JOB, p, c, &shuffled, &prefs));
    }

    #[test]
    fn raising_p_never_lowers_a_share(p in 0..300i32, more in 1..50i32, n in 1..9usize, prefs in arbitrary_prefs()) {
        let clusters = names(n);
        let (low, _) = split_parallelism(JOB, p, clusters, &prefs);
        let (high, _) = split_parallelism(JOB, p + more, clusters, &prefs);
        for ((c, before), (c2, after)) in low.iter().zip(&high) {
            prop_assert_eq!(c, c2);
            prop_assert!(after >= before, "{}: {} → {} when P went {} → {}", c, before, after, p, p + more);
        }
    }

    #[test]
    fn raising_a_huge_p_never_lowers_a_share(p in 0..i32::MAX - 100, more in 1..100i32, weights in proptest::collection::vec(1..1_000_000_000i64, 1..40)) {
        let prefs = weights_only(&weights);
        let clusters = names(weights.len());
        let (low, _) = split_parallelism(JOB, p, clusters, &prefs);
        let (high, _) = split_parallelism(JOB, p + more, clusters, &prefs);
        prop_assert!(low.iter().zip(&high).all(|((_, a), (_, b))| b >= a));
    }

    #[test]
    fn min_max_and_weight_zero_are_honoured_and_the_rest_gets_nothing(
        p in 0..300i32, n in 0..9usize, prefs in arbitrary_prefs(),
    ) {
        let clusters = names(n);
        let (shares, _) = split_parallelism(JOB, p, clusters, &prefs);
        let mins: i64 = shares.iter().map(|(c, _)| {
            let pref = prefs.for_cluster(c).unwrap();
            i64::from(pref.min_replicas.min(pref.max_replicas.unwrap_or(i32::MAX)))
        }).sum();
        for (c, s) in &shares {
            let pref = prefs.for_cluster(c).unwrap();
            prop_assert!(pref.max_replicas.is_none_or(|m| *s <= m));
            if i64::from(p) >= mins {
                prop_assert!(*s >= pref.min_replicas, "{} below its min", c);
            }
            if pref.weight == 0 {
                prop_assert!(*s <= pref.min_replicas, "{} has weight 0 but more than its min", c);
            }
        }
        let plan = plan(JOB, p, Some(p), clusters, &prefs);
        for c in &plan.clusters {
            if prefs.for_cluster(c.cluster).is_none() {
                prop_assert_eq!((c.parallelism, c.completions), (0, Some(0)));
            }
        }
        prop_assert_eq!(plan.clusters.len(), clusters.len(), "every cluster asked about is listed");
    }

    #[test]
    fn completions_follow_the_parallelism_shares(p in 1..60i32, c in 0..5000i32, n in 1..9usize, prefs in arbitrary_prefs()) {
        let clusters = names(n);
        let plan = plan(JOB, p, Some(c), clusters, &prefs);
        let placed: i64 = plan.clusters.iter().map(|x| i64::from(x.completions.unwrap())).sum();
        if plan.clusters.iter().any(|x| x.parallelism > 0) {
            prop_assert_eq!(placed, i64::from(c));
            prop_assert_eq!(plan.unplaced.completions, 0);
            for x in &plan.clusters {
                if x.parallelism == 0 {
                    prop_assert_eq!(x.completions, Some(0), "{} runs no pod but has completions", &x.cluster);
                }
            }
            let weights: Vec<i64> = plan.clusters.iter().map(|x| i64::from(x.parallelism)).collect();
            let counts: Vec<i32> = plan.clusters.iter().map(|x| x.completions.unwrap()).collect();
            prop_assert_eq!(split_in_proportion(c, &weights), counts);
        } else {
            prop_assert_eq!(placed + i64::from(plan.unplaced.completions), i64::from(c));
        }
    }
}
