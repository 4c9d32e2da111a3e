use proptest::prelude::*;

use super::*;
use crate::model::preferences::ClusterPreference;

const JOB: &str = "default/myjob";

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("c{i}")).collect()
}

fn fits(pairs: &[(&str, u64)]) -> Fits {
    pairs.iter().map(|(c, f)| (c.to_string(), *f)).collect()
}

/// Shares by cluster name.
fn by_name(shares: &[(&str, i32)]) -> BTreeMap<String, i32> {
    shares.iter().map(|(c, s)| (c.to_string(), *s)).collect()
}

fn prefs(json: &str) -> Preferences {
    Preferences::parse(json).unwrap()
}

const DYNAMIC: &str = r#"{"dynamicWeight": "AvailableReplicas"}"#;

#[test]
fn parallelism_goes_in_proportion_to_what_fits() {
    let clusters = names(3);
    // Webster over 10 and 5, one seat at a time to the highest w/(2s+1):
    // 10, 5, 10/3, 10/5, 5/3, 10/7, 10/9, 5/5, 10/11 → c1 6, c2 3. c3 reports nothing.
    let f = fits(&[("c1", 10), ("c2", 5)]);
    let (shares, unplaced, beyond) =
        split_parallelism_fitting(JOB, 9, &clusters, &prefs(DYNAMIC), &f);
    assert_eq!(shares, vec![("c1", 6), ("c2", 3), ("c3", 0)]);
    assert_eq!((unplaced, beyond), (0, 0));
}

#[test]
fn beyond_what_fits_the_static_weights_divide_the_rest() {
    let clusters = names(3);
    let f = fits(&[("c1", 10), ("c2", 5)]);
    let (shares, unplaced, beyond) =
        split_parallelism_fitting(JOB, 20, &clusters, &prefs(DYNAMIC), &f);
    let shares = by_name(&shares);
    // 15 fit (10 + 5); the other 5 go by weight 1 each: 2, 2 and 1 in some order.
    assert_eq!((unplaced, beyond), (0, 5));
    assert_eq!(shares.values().sum::<i32>(), 20);
    let mut extra = vec![shares["c1"] - 10, shares["c2"] - 5, shares["c3"]];
    extra.sort();
    assert_eq!(extra, vec![1, 2, 2]);
}

#[test]
fn min_and_max_still_apply() {
    let clusters = names(3);
    let f = fits(&[("c1", 10), ("c2", 5)]);
    let p = prefs(
        r#"{"dynamicWeight": "AvailableReplicas",
            "clusters": {"*": {"weight": 1}, "c1": {"maxReplicas": 4, "weight": 1}, "c3": {"minReplicas": 2, "weight": 1}}}"#,
    );
    // c3 gets its minimum first; c1 stops at 4; c2 takes what fits there (5).
    let (shares, unplaced, beyond) = split_parallelism_fitting(JOB, 11, &clusters, &p, &f);
    assert_eq!(
        by_name(&shares),
        by_name(&[("c1", 4), ("c2", 5), ("c3", 2)])
    );
    assert_eq!((unplaced, beyond), (0, 0));
    // 3 more fit nowhere within the caps: c1 is at its max, so c2 and c3 share them.
    let (shares, unplaced, beyond) = split_parallelism_fitting(JOB, 14, &clusters, &p, &f);
    let shares = by_name(&shares);
    assert_eq!(shares["c1"], 4);
    assert_eq!(shares["c2"] + shares["c3"], 10);
    assert!(shares["c2"] >= 5 && shares["c3"] >= 2);
    assert_eq!((unplaced, beyond), (0, 3));
}

#[test]
fn a_cluster_with_no_entry_or_not_selected_gets_nothing_whatever_fits() {
    let clusters = names(2);
    let f = fits(&[("c1", 10), ("c2", 10)]);
    let p = prefs(r#"{"dynamicWeight": "AvailableReplicas", "clusters": {"c1": {"weight": 1}}}"#);
    let (shares, unplaced, _) = split_parallelism_fitting(JOB, 12, &clusters, &p, &f);
    assert_eq!(shares, vec![("c1", 12)]);
    assert_eq!(unplaced, 0);
}

fn arb_case() -> impl Strategy<Value = (Vec<Option<u64>>, Vec<ClusterPreference>)> {
    (1..6usize).prop_flat_map(|n| {
        let fit = proptest::option::weighted(0.8, 0..40u64);
        let pref = (0..3i32, proptest::option::weighted(0.3, 0..12i32), 0..4i64).prop_map(
            |(min, max, weight)| ClusterPreference {
                min_replicas: max.map_or(min, |m| min.min(m)),
                max_replicas: max,
                weight,
            },
        );
        (
            proptest::collection::vec(fit, n),
            proptest::collection::vec(pref, n),
        )
    })
}

fn setup(case: &(Vec<Option<u64>>, Vec<ClusterPreference>)) -> (Vec<String>, Preferences, Fits) {
    let clusters = names(case.0.len());
    let f: Fits = clusters
        .iter()
        .zip(&case.0)
        .filter_map(|(c, f)| Some((c.clone(), (*f)?)))
        .collect();
    let prefs = Preferences {
        clusters: clusters.iter().cloned().zip(case.1.clone()).collect(),
        ..prefs(DYNAMIC)
    };
    (clusters, prefs, f)
}

proptest! {
    /// Everything is placed or reported unplaced; no cluster gets more than what fits there
    /// (or its minimum) until every cluster is full; raising the parallelism never lowers a
    /// share; equal fits give shares that differ by at most one.
    #[test]
    fn the_split_by_capacity_keeps_the_rules(case in arb_case(), p in 0..80i32) {
        let (clusters, prefs, f) = setup(&case);
        let (shares, unplaced, beyond) = split_parallelism_fitting(JOB, p, &clusters, &prefs, &f);
        prop_assert_eq!(shares.iter().map(|(_, s)| s).sum::<i32>() + unplaced, p);
        prop_assert!((0..=p).contains(&beyond));
        let pref = |c: &str| prefs.clusters[c];
        let fit = |c: &str| i32::try_from(f.get(c).copied().unwrap_or(0)).unwrap();
        let room: i32 = clusters
            .iter()
            .map(|c| {
                let p = pref(c);
                let cap = p.max_replicas.map_or(fit(c), |m| m.min(fit(c)));
                cap.max(p.min_replicas)
            })
            .sum();
        if p <= room {
            prop_assert_eq!(beyond, 0);
            for (c, s) in &shares {
                prop_assert!(*s <= fit(c).max(pref(c).min_replicas), "{} got {} with {} fitting", c, s, fit(c));
            }
        }
        for (c, s) in &shares {
            if let Some(m) = pref(c).max_replicas {
                prop_assert!(*s <= m);
            }
        }
        let (more, _, _) = split_parallelism_fitting(JOB, p + 1, &clusters, &prefs, &f);
        let (before, after) = (by_name(&shares), by_name(&more));
        for (c, s) in &before {
            prop_assert!(after[c] >= *s, "{} fell from {} to {} at {}", c, s, after[c], p + 1);
        }
    }

    #[test]
    fn equal_fits_give_shares_within_one(n in 1..6usize, fit in 1..30u64, p in 0..60i32) {
        let clusters = names(n);
        let f: Fits = clusters.iter().map(|c| (c.clone(), fit)).collect();
        let (shares, _, _) = split_parallelism_fitting(JOB, p, &clusters, &prefs(DYNAMIC), &f);
        let max = shares.iter().map(|(_, s)| *s).max().unwrap();
        let min = shares.iter().map(|(_, s)| *s).min().unwrap();
        prop_assert!(max - min <= 1, "{:?}", shares);
    }
}

#[test]
fn the_offline_plan_follows_what_fits_and_completions_follow_parallelism() {
    let clusters = names(3);
    let f = fits(&[("c1", 10), ("c2", 5)]);
    let plan = super::super::plan_fitting(JOB, 9, Some(18), &clusters, &prefs(DYNAMIC), Some(&f));
    let got: Vec<(&str, i32, Option<i32>)> = plan
        .clusters
        .iter()
        .map(|c| (c.cluster, c.parallelism, c.completions))
        .collect();
    // 6/3 as above; 18 completions over 6 and 3: 12 and 6.
    assert_eq!(
        got,
        vec![("c1", 6, Some(12)), ("c2", 3, Some(6)), ("c3", 0, Some(0))]
    );
    assert_eq!(plan.unplaced, Default::default());
}
