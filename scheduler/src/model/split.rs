//! Dividing a Job's parallelism and completions over clusters (SPEC §3).
//!
//! Parallelism: clusters are ranked by weight (ties by a stable hash of the Job and the cluster),
//! each gets its `minReplicas` in rank order, and the rest is divided by the Sainte-Laguë/Webster
//! highest-averages method, skipping clusters at `maxReplicas`; exact ties go to the cluster that
//! ranks first. Completions follow the parallelism shares with the same method.
//!
//! The method is defined one unit at a time, but P can be two billion, so [`webster`] computes
//! the same result in O(n log n): every seat whose priority is strictly above a rational threshold
//! belongs to a prefix of the one-at-a-time order, so it takes all of those at once and finishes
//! the last few seats (at most one per cluster) one at a time with the exact tie rule.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use serde::Serialize;
use serde_json::{Value, json};

use super::preferences::Preferences;

/// A pair of counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Share {
    /// Parallelism.
    pub parallelism: i32,
    /// Completions.
    pub completions: i32,
}

/// One cluster's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    /// Cluster name.
    pub cluster: String,
    /// Pods at once.
    pub parallelism: i32,
    /// Completions, `None` for a work queue.
    pub completions: Option<i32>,
}

/// The split of one Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Eligible clusters in rank order, then the others (with nothing).
    pub clusters: Vec<ClusterPlan>,
    /// What found no cluster.
    pub unplaced: Share,
}

/// Computes the split of a Job keyed `namespace/name` over `clusters`.
pub fn plan(
    job_key: &str,
    parallelism: i32,
    completions: Option<i32>,
    clusters: &[String],
    prefs: &Preferences,
) -> Plan {
    let (shares, unplaced_parallelism) = split_parallelism(job_key, parallelism, clusters, prefs);
    let mut unplaced = Share {
        parallelism: unplaced_parallelism,
        completions: 0,
    };
    let completion_counts = completions.map(|total| {
        let mut weights: Vec<i64> = shares.iter().map(|(_, p)| i64::from(*p)).collect();
        if weights.iter().all(|w| *w == 0) {
            // Nothing runs anywhere (P = 0): keep the work where the preferences point.
            weights = shares
                .iter()
                .map(|(c, _)| prefs.for_cluster(c).map_or(0, |p| p.weight))
                .collect();
        }
        if weights.iter().all(|w| *w == 0) {
            unplaced.completions = total.max(0);
            vec![0; shares.len()]
        } else {
            split_in_proportion(total, &weights)
        }
    });
    let mut plans: Vec<ClusterPlan> = shares
        .iter()
        .enumerate()
        .map(|(i, (cluster, p))| ClusterPlan {
            cluster: cluster.clone(),
            parallelism: *p,
            completions: completion_counts.as_ref().map(|c| c[i]),
        })
        .collect();
    let mut others: Vec<&String> = clusters
        .iter()
        .filter(|c| !shares.iter().any(|(s, _)| s == *c))
        .collect();
    others.sort();
    others.dedup();
    plans.extend(others.into_iter().map(|c| ClusterPlan {
        cluster: c.clone(),
        parallelism: 0,
        completions: completions.map(|_| 0),
    }));
    Plan {
        clusters: plans,
        unplaced,
    }
}

/// Divides `parallelism` over the eligible clusters among `clusters`. Returns every eligible
/// cluster in rank order with its share (zeros included) and what could not be placed.
pub fn split_parallelism(
    job_key: &str,
    parallelism: i32,
    clusters: &[String],
    prefs: &Preferences,
) -> (Vec<(String, i32)>, i32) {
    let total = i64::from(parallelism.max(0));
    let mut ranked: Vec<(&str, i64, i64, Option<i64>, u64)> = Vec::with_capacity(clusters.len());
    for c in clusters {
        if ranked.iter().any(|(n, ..)| *n == c) {
            continue;
        }
        if let Some(p) = prefs.for_cluster(c) {
            let max = p.max_replicas.map(i64::from);
            let min = i64::from(p.min_replicas).min(max.unwrap_or(i64::MAX));
            ranked.push((c, p.weight, min, max, tie_break(job_key, c)));
        }
    }
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.4.cmp(&b.4)).then(a.0.cmp(b.0)));

    let mut left = total;
    let mut shares: Vec<i64> = Vec::with_capacity(ranked.len());
    for (_, _, min, _, _) in &ranked {
        let given = (*min).min(left);
        shares.push(given);
        left -= given;
    }
    let weights: Vec<i64> = ranked.iter().map(|r| r.1).collect();
    let caps: Vec<i64> = ranked
        .iter()
        .zip(&shares)
        .map(|(r, given)| r.3.map_or(i64::MAX, |max| max - given))
        .collect();
    let extra = webster(left, &weights, &caps);
    for (s, e) in shares.iter_mut().zip(&extra) {
        *s += e;
    }
    let placed: i64 = shares.iter().sum();
    let result = ranked
        .iter()
        .zip(shares)
        .map(|(r, s)| (r.0.to_owned(), s as i32))
        .collect();
    (result, (total - placed) as i32)
}

/// Divides `total` in proportion to `weights` (in rank order, which breaks exact ties).
pub fn split_in_proportion(total: i32, weights: &[i64]) -> Vec<i32> {
    let caps = vec![i64::MAX; weights.len()];
    webster(i64::from(total.max(0)), weights, &caps)
        .into_iter()
        .map(|s| s as i32)
        .collect()
}

/// The Sainte-Laguë/Webster allocation of `seats` by `weights`, each at most its cap; clusters
/// with weight 0 get nothing. Equal to giving seats one at a time to the highest
/// `weight / (2·seats + 1)`, ties to the lowest index.
fn webster(seats: i64, weights: &[i64], caps: &[i64]) -> Vec<i64> {
    let n = weights.len();
    let mut given = vec![0i64; n];
    let live = |i: usize| weights[i] > 0 && caps[i] > 0;
    if seats <= 0 || !(0..n).any(live) {
        return given;
    }
    // Threshold phase. With t = W/(2R − m) over the m clusters not yet at their cap, the seats
    // with priority above t number between R − m and R, so at most m remain for the exact phase.
    // A cluster that reaches its cap is fixed there and t is recomputed for the others.
    let mut saturated = vec![false; n];
    let mut threshold: Option<(i128, i128)> = None;
    loop {
        let open: Vec<usize> = (0..n).filter(|&i| live(i) && !saturated[i]).collect();
        let fixed: i64 = (0..n).filter(|&i| saturated[i]).map(|i| caps[i]).sum();
        let remaining = i128::from(seats - fixed);
        let m = open.len() as i128;
        if open.is_empty() || 2 * remaining <= m {
            break;
        }
        let w: i128 = open.iter().map(|&i| i128::from(weights[i])).sum();
        let candidate = (w, 2 * remaining - m);
        // Only ever lower the threshold, so earlier saturations stay valid.
        let t = match threshold {
            Some((a, b)) if a * candidate.1 <= candidate.0 * b => (a, b),
            _ => candidate,
        };
        threshold = Some(t);
        let mut newly = false;
        for &i in &open {
            let count = seats_above(weights[i], t);
            if count >= i128::from(caps[i]) {
                saturated[i] = true;
                newly = true;
            }
        }
        if !newly {
            break;
        }
    }
    if let Some(t) = threshold {
        for i in (0..n).filter(|&i| live(i)) {
            given[i] = seats_above(weights[i], t).min(i128::from(caps[i])) as i64;
        }
    }
    // Exact phase: one seat at a time, highest priority first, ties to the lower index.
    let mut left = seats - given.iter().sum::<i64>();
    let mut heap: BinaryHeap<Candidate> = (0..n)
        .filter(|&i| live(i) && given[i] < caps[i])
        .map(|i| Candidate {
            weight: weights[i],
            seats: given[i],
            index: i,
        })
        .collect();
    while left > 0 {
        let Some(mut c) = heap.pop() else { break };
        given[c.index] += 1;
        left -= 1;
        c.seats += 1;
        if c.seats < caps[c.index] {
            heap.push(c);
        }
    }
    given
}

/// Seats a cluster of `weight` gets with priority strictly above `t = a/b`:
/// the number of k ≥ 0 with weight/(2k+1) > a/b.
fn seats_above(weight: i64, (a, b): (i128, i128)) -> i128 {
    let x = i128::from(weight) * b - a;
    if x <= 0 { 0 } else { (x + 2 * a - 1) / (2 * a) }
}

/// A cluster in the exact phase, ordered by its next seat's priority.
#[derive(Debug, PartialEq, Eq)]
struct Candidate {
    weight: i64,
    seats: i64,
    index: usize,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // weight/(2s+1) compared exactly by cross-multiplying; the lower index wins ties.
        let mine = i128::from(self.weight) * i128::from(2 * other.seats + 1);
        let theirs = i128::from(other.weight) * i128::from(2 * self.seats + 1);
        mine.cmp(&theirs).then(other.index.cmp(&self.index))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// FNV-1a of `job_key`, a zero byte and `cluster`: a fixed hash, the same on every replica and
/// every build, so equal weights rank the same everywhere while differing from Job to Job.
fn tie_break(job_key: &str, cluster: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    job_key
        .bytes()
        .chain(std::iter::once(0))
        .chain(cluster.bytes())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

impl Plan {
    /// The JSON of `fedctl plan -o json` (SPEC §3).
    pub fn to_json(&self) -> Value {
        let clusters: serde_json::Map<String, Value> = self
            .clusters
            .iter()
            .map(|c| {
                let mut entry = json!({"parallelism": c.parallelism});
                if let Some(done) = c.completions {
                    entry["completions"] = json!(done);
                }
                (c.cluster.clone(), entry)
            })
            .collect();
        json!({"clusters": clusters, "unplaced": self.unplaced})
    }

    /// An aligned table, as kubectl prints.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<[String; 3]> =
            vec![["CLUSTER".into(), "PARALLELISM".into(), "COMPLETIONS".into()]];
        for c in &self.clusters {
            let completions = c.completions.map_or("-".into(), |v| v.to_string());
            rows.push([c.cluster.clone(), c.parallelism.to_string(), completions]);
        }
        if self.unplaced != Share::default() {
            rows.push([
                "<unplaced>".into(),
                self.unplaced.parallelism.to_string(),
                self.unplaced.completions.to_string(),
            ]);
        }
        let width = |col: usize| rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
        let (w0, w1) = (width(0), width(1));
        rows.iter()
            .map(|r| format!("{:<w0$}   {:<w1$}   {}\n", r[0], r[1], r[2]))
            .collect()
    }
}

#[cfg(test)]
mod tests;
