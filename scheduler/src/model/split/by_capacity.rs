//! Splitting by capacity (`dynamicWeight: AvailableReplicas`, SPEC §10): the weights are how
//! many pods of the Job's template fit in each cluster ([`crate::model::fit`]).
//!
//! Parallelism is divided in two rounds. First, up to what fits in each cluster, in proportion
//! to it: each cluster gets its `minReplicas` in rank order (rank by what fits, then as §3
//! breaks ties), then the Webster division by what fits, none beyond what fits there or its
//! `maxReplicas`. Then whatever fits nowhere is divided by the static rule of §3 (the
//! preferences' weights, within each `maxReplicas`) and reported, so the status can say so.
//! A cluster whose agent reports no capacity fits nothing by this count: it takes part only in
//! the second round. Both rounds are Webster divisions with fixed caps, so raising the
//! parallelism never lowers a share.

use std::collections::BTreeMap;

use super::{Ranked, divide_parallelism, rank, rank_by};
use crate::model::preferences::{MAX_WEIGHT, Preferences};

/// How many pods of a Job's template fit in each cluster, by the capacity its agent reports;
/// a cluster that reports none is absent.
pub type Fits = BTreeMap<String, u64>;

/// Divides `parallelism` over the clusters among `clusters` that `prefs` allow, by what fits
/// in each (`fits`) and, beyond what fits anywhere, by the static weights. Returns every such
/// cluster in rank order (by what fits) with its share, what found no room (every cluster at
/// its `maxReplicas`), and how much was placed beyond what fits.
pub fn split_parallelism_fitting<'a>(
    job_key: &str,
    parallelism: i32,
    clusters: &'a [String],
    prefs: &Preferences,
    fits: &Fits,
) -> (Vec<(&'a str, i32)>, i32, i32) {
    let (ranked, _) = rank(job_key, clusters, prefs);
    divide(job_key, parallelism, clusters, prefs, fits, &ranked)
}

/// The two rounds over `bounded`: the clusters in static rank order with the `min` and `max`
/// the caller set (its preferences, or what a running Job holds).
pub(super) fn divide<'a>(
    job_key: &str,
    parallelism: i32,
    clusters: &'a [String],
    prefs: &Preferences,
    fits: &Fits,
    bounded: &[Ranked<'a>],
) -> (Vec<(&'a str, i32)>, i32, i32) {
    let fit = |name: &str| fits.get(name).copied().unwrap_or(0);
    let bounds: BTreeMap<&str, &Ranked<'a>> = bounded.iter().map(|c| (c.name, c)).collect();
    let (by_fit, _) = rank_by(job_key, clusters, prefs, |name, _| {
        i64::try_from(fit(name)).map_or(MAX_WEIGHT, |f| f.min(MAX_WEIGHT))
    });
    let first: Vec<Ranked<'a>> = by_fit
        .iter()
        .map(|c| {
            let b = bounds[c.name];
            let fit = i32::try_from(fit(c.name)).unwrap_or(i32::MAX);
            let min = b.max.map_or(b.min, |m| b.min.min(m));
            Ranked {
                max: Some(b.max.map_or(fit, |m| m.min(fit)).max(min)),
                min,
                ..*c
            }
        })
        .collect();
    let (first_shares, left) = divide_parallelism(parallelism, &first);
    let got: BTreeMap<&str, i32> = first
        .iter()
        .zip(&first_shares)
        .map(|(c, s)| (c.name, *s))
        .collect();
    let second: Vec<Ranked<'a>> = bounded
        .iter()
        .map(|c| Ranked {
            min: 0,
            max: c.max.map(|m| (m - got[c.name]).max(0)),
            ..*c
        })
        .collect();
    let (second_shares, unplaced) = divide_parallelism(left, &second);
    let beyond = second_shares.iter().sum();
    let more: BTreeMap<&str, i32> = second
        .iter()
        .zip(second_shares)
        .map(|(c, s)| (c.name, s))
        .collect();
    let shares = first
        .iter()
        .map(|c| (c.name, got[c.name] + more[c.name]))
        .collect();
    (shares, unplaced, beyond)
}

#[cfg(test)]
mod tests;
