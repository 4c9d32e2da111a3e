//! Dividing a Job's parallelism and completions over clusters (SPEC §3).
//!
//! Parallelism: the clusters the preferences allow are ranked by weight (ties by a stable hash of
//! the Job and the cluster, then by name), each gets its `minReplicas` in rank order, and the rest
//! is divided by the Sainte-Laguë/Webster highest-averages method, skipping clusters at
//! `maxReplicas`; exact ties go to the cluster that ranks first. Completions follow the
//! parallelism shares with the same method.
//!
//! The method is defined one unit at a time, but a count can be two billion, so [`webster`]
//! computes the same result without a step per unit; see its comment for why it is exact.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::preferences::{ClusterPreference, Preferences, WILDCARD};

mod by_capacity;
pub use by_capacity::{Fits, split_parallelism_fitting};

/// Parallelism and completions together: what a cluster runs, or what found no cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Pods running at once.
    pub parallelism: i32,
    /// Successful pods to reach.
    pub completions: i32,
}

/// One cluster's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan<'a> {
    /// Cluster name, borrowed from the names the plan was asked about (copying a thousand
    /// names into new strings cost more than the split itself).
    pub cluster: &'a str,
    /// Pods at once.
    pub parallelism: i32,
    /// Completions; `None` for a work queue (a Job without `completions`).
    pub completions: Option<i32>,
}

/// The split of one Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// The eligible clusters in rank order, then the clusters the preferences exclude (by name,
    /// with nothing), so that every cluster asked about is listed.
    pub clusters: Vec<ClusterPlan<'a>>,
    /// What found no cluster.
    pub unplaced: Share,
}

/// Splits a Job keyed `namespace/name` with `parallelism` and `completions` (`None` for a work
/// queue) over `clusters` (Ready and not cordoned, in any order) as `prefs` direct.
pub fn plan<'a>(
    job_key: &str,
    parallelism: i32,
    completions: Option<i32>,
    clusters: &'a [String],
    prefs: &Preferences,
) -> Plan<'a> {
    plan_fitting(job_key, parallelism, completions, clusters, prefs, None)
}

/// [`plan`] by capacity: with `fits` (how many of the Job's pods fit in each cluster, for
/// `dynamicWeight: AvailableReplicas`), the parallelism is divided as
/// [`split_parallelism_fitting`] does; the completions follow it. The caller leaves out of
/// `clusters` those the `clusterSelector` does not select ([`Preferences::selects`]).
pub fn plan_fitting<'a>(
    job_key: &str,
    parallelism: i32,
    completions: Option<i32>,
    clusters: &'a [String],
    prefs: &Preferences,
    fits: Option<&Fits>,
) -> Plan<'a> {
    let (mut ranked, mut excluded) = rank(job_key, clusters, prefs);
    let (shares, unplaced_parallelism) = match fits {
        Some(fits) => {
            let (by_fit, unplaced, _) =
                by_capacity::divide(job_key, parallelism, clusters, prefs, fits, &ranked);
            let order: BTreeMap<&str, usize> = by_fit
                .iter()
                .enumerate()
                .map(|(i, (c, _))| (*c, i))
                .collect();
            ranked.sort_by_key(|c| order[c.name]);
            (by_fit.into_iter().map(|(_, s)| s).collect(), unplaced)
        }
        None => divide_parallelism(parallelism, &ranked),
    };
    let mut unplaced = Share {
        parallelism: unplaced_parallelism,
        completions: 0,
    };
    let completion_counts = completions.map(|total| {
        let (counts, left) = divide_completions(total, &ranked, &shares);
        unplaced.completions = left;
        counts
    });
    let mut plans: Vec<ClusterPlan<'a>> = Vec::with_capacity(ranked.len() + excluded.len());
    plans.extend(
        ranked
            .iter()
            .zip(&shares)
            .enumerate()
            .map(|(i, (c, p))| ClusterPlan {
                cluster: c.name,
                parallelism: *p,
                completions: completion_counts.as_ref().map(|counts| counts[i]),
            }),
    );
    excluded.sort_unstable();
    excluded.dedup();
    plans.extend(excluded.into_iter().map(|c| ClusterPlan {
        cluster: c,
        parallelism: 0,
        completions: completions.map(|_| 0),
    }));
    Plan {
        clusters: plans,
        unplaced,
    }
}

/// Divides `parallelism` over the clusters among `clusters` that `prefs` allow. Returns every
/// such cluster in rank order with its share (zeros included), and what could not be placed
/// because every one of them is at its `maxReplicas` (or there is none).
pub fn split_parallelism<'a>(
    job_key: &str,
    parallelism: i32,
    clusters: &'a [String],
    prefs: &Preferences,
) -> (Vec<(&'a str, i32)>, i32) {
    let (ranked, _) = rank(job_key, clusters, prefs);
    let (shares, unplaced) = divide_parallelism(parallelism, &ranked);
    let shares = ranked
        .iter()
        .zip(shares)
        .map(|(c, s)| (c.name, s))
        .collect();
    (shares, unplaced)
}

/// What one cluster holds of a Job that runs already, for [`split_running`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// Parallelism its shards run now (and still have work for): kept before the rest is
    /// divided, so that no running pod is stopped to give its place to another cluster.
    pub running: i32,
    /// The most parallelism it has work for (the completions its shards still lack).
    pub room: i32,
}

/// [`split_parallelism`] for a Job that runs already: every cluster takes no more than the
/// room `holding` gives it (besides its `maxReplicas`) and first keeps what it runs (besides its
/// `minReplicas`); the rest is divided by weight as usual. Returns every cluster the preferences
/// allow, in rank order, with its share, and what found no room.
///
/// With `fits` (`dynamicWeight: AvailableReplicas`), what is divided by weight is divided as
/// [`split_parallelism_fitting`] does.
pub fn split_running<'a>(
    job_key: &str,
    parallelism: i32,
    clusters: &'a [String],
    prefs: &Preferences,
    holding: impl Fn(&str) -> Holding,
    fits: Option<&Fits>,
) -> (Vec<(&'a str, i32)>, i32) {
    let (mut ranked, _) = rank(job_key, clusters, prefs);
    let bound = |c: &mut Ranked<'_>| {
        let h = holding(c.name);
        let room = h.room.max(0);
        c.max = Some(c.max.map_or(room, |m| m.min(room)));
        c.min = c.min.max(h.running);
    };
    ranked.iter_mut().for_each(bound);
    if let Some(fits) = fits {
        let (shares, unplaced, _) =
            by_capacity::divide(job_key, parallelism, clusters, prefs, fits, &ranked);
        return (shares, unplaced);
    }
    let (shares, unplaced) = divide_parallelism(parallelism, &ranked);
    let shares = ranked
        .iter()
        .zip(shares)
        .map(|(c, s)| (c.name, s))
        .collect();
    (shares, unplaced)
}

/// Webster split of `total` in proportion to `weights` (rank order = tie order); returns one
/// count per weight. Weights of 0 or less get 0; when every weight is, everything is 0 and the
/// caller decides where `total` goes. Also used to split an increase of completions over the
/// current parallelism shares.
pub fn split_in_proportion(total: i32, weights: &[i64]) -> Vec<i32> {
    let mut seats: Vec<Seat> = weights
        .iter()
        .map(|&w| Seat {
            weight: w.max(0).unsigned_abs(),
            cap: u64::MAX,
            seats: 0,
        })
        .collect();
    webster(total.max(0).unsigned_abs().into(), &mut seats);
    seats.iter().map(|s| count(s.seats)).collect()
}

/// An eligible cluster with what ranks it.
#[derive(Clone, Copy)]
struct Ranked<'a> {
    name: &'a str,
    weight: i64,
    min: i32,
    max: Option<i32>,
}

/// The clusters `prefs` allow, deduplicated, in rank order: weight descending, then
/// [`tie_break`], then name; and the clusters it excludes, as given.
fn rank<'a>(
    job_key: &str,
    clusters: &'a [String],
    prefs: &Preferences,
) -> (Vec<Ranked<'a>>, Vec<&'a str>) {
    rank_by(job_key, clusters, prefs, |_, p| p.weight)
}

/// [`rank`] with the weight of each cluster given by `weight` (its name and preference).
fn rank_by<'a>(
    job_key: &str,
    clusters: &'a [String],
    prefs: &Preferences,
    weight: impl Fn(&str, &ClusterPreference) -> i64,
) -> (Vec<Ranked<'a>>, Vec<&'a str>) {
    let seed = fnv1a(fnv1a(FNV_OFFSET, job_key.as_bytes()), &[SEPARATOR]);
    let wildcard = prefs.clusters.get(WILDCARD);
    // With only a wildcard (the default), no cluster needs looking up.
    let own_entries = prefs.clusters.len() > usize::from(wildcard.is_some());
    let mut eligible: Vec<Ranked<'a>> = Vec::with_capacity(clusters.len());
    let mut hashes: Vec<u64> = Vec::with_capacity(clusters.len());
    let mut excluded = Vec::new();
    for name in clusters {
        let own = if own_entries {
            prefs.clusters.get(name)
        } else {
            None
        };
        let Some(p) = own.or(wildcard) else {
            excluded.push(name.as_str());
            continue;
        };
        hashes.push(fnv1a(seed, name.as_bytes()));
        eligible.push(Ranked {
            name,
            weight: weight(name, p).max(0),
            min: p.min_replicas.max(0),
            max: p.max_replicas.map(|m| m.max(0)),
        });
    }
    // Each cluster becomes one u128, a weight level (0 for the highest weight), the hash and
    // its index, so that the sort compares plain numbers and reads no name unless two tie.
    let highest_first = weight_levels(&eligible);
    let mut keys: Vec<u128> = eligible
        .iter()
        .zip(&hashes)
        .enumerate()
        .map(|(i, (c, &hash))| {
            // The index fits 32 bits: 2³² cluster names would take over 100 GB.
            (u128::from(highest_first(c.weight)) << 96) | (u128::from(hash) << 32) | i as u128
        })
        .collect();
    keys.sort_unstable();
    let index = |key: &u128| (*key as u32) as usize;
    // Equal weight and hash: by name, which also brings a name listed twice together.
    let mut start = 0;
    while start < keys.len() {
        let same = |k: &u128| k >> 32 == keys[start] >> 32;
        let end = start + keys[start..].iter().take_while(|k| same(k)).count();
        if end - start > 1 {
            keys[start..end].sort_unstable_by_key(|k| eligible[index(k)].name);
        }
        start = end;
    }
    keys.dedup_by(|a, b| eligible[index(a)].name == eligible[index(b)].name);
    let ranked = keys.iter().map(|k| eligible[index(k)]).collect();
    (ranked, excluded)
}

/// A function giving each weight of `clusters` a level, 0 for the highest, that fits 32 bits
/// and orders like the weight descending.
fn weight_levels(clusters: &[Ranked<'_>]) -> impl Fn(i64) -> u32 + use<> {
    let highest = clusters.iter().map(|c| c.weight).max().unwrap_or(0);
    let small = u32::try_from(highest).is_ok();
    // Preferences bound weights far below 2³², so the level is the weight itself, turned
    // around; other weights are numbered by their rank among the distinct ones.
    let mut distinct: Vec<i64> = Vec::new();
    if !small {
        distinct = clusters.iter().map(|c| c.weight).collect();
        distinct.sort_unstable_by(|a, b| b.cmp(a));
        distinct.dedup();
    }
    move |weight| match u32::try_from(weight) {
        Ok(w) if small => u32::MAX - w,
        _ => distinct.binary_search_by(|d| weight.cmp(d)).unwrap_or(0) as u32,
    }
}

/// Minimums in rank order, then Webster over the rest within each cluster's max.
fn divide_parallelism(parallelism: i32, ranked: &[Ranked<'_>]) -> (Vec<i32>, i32) {
    let mut left = u64::from(parallelism.max(0).unsigned_abs());
    let mut seats: Vec<Seat> = Vec::with_capacity(ranked.len());
    let mut given = Vec::with_capacity(ranked.len());
    for c in ranked {
        let max = c.max.map_or(u64::MAX, |m| u64::from(m.unsigned_abs()));
        let min = u64::from(c.min.unsigned_abs()).min(max).min(left);
        left -= min;
        given.push(min);
        let cap = if max == u64::MAX { u64::MAX } else { max - min };
        seats.push(Seat {
            weight: c.weight.unsigned_abs(),
            cap,
            seats: 0,
        });
    }
    let unplaced = webster(left, &mut seats);
    let shares = given
        .iter()
        .zip(&seats)
        .map(|(g, s)| count(g + s.seats))
        .collect();
    (shares, count(unplaced))
}

/// Completions in proportion to the parallelism shares; when nothing runs anywhere, in
/// proportion to the preference weights, so the work waits where it will run once parallelism
/// is raised; when that is impossible too, all of it is unplaced.
fn divide_completions(total: i32, ranked: &[Ranked<'_>], shares: &[i32]) -> (Vec<i32>, i32) {
    let total = total.max(0);
    let mut weights: Vec<i64> = shares.iter().map(|&p| i64::from(p)).collect();
    if weights.iter().all(|&w| w == 0) {
        weights = ranked.iter().map(|c| c.weight).collect();
    }
    if weights.iter().all(|&w| w == 0) {
        return (vec![0; ranked.len()], total);
    }
    (split_in_proportion(total, &weights), 0)
}

fn count(n: u64) -> i32 {
    // Every count is at most the i32 total it was divided from.
    i32::try_from(n).expect("a share never exceeds its total")
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Separates the Job key from the cluster name in the hash; it never occurs in UTF-8, so no two
/// (Job, cluster) pairs hash the same bytes.
const SEPARATOR: u8 = 0xff;

/// FNV-1a (64-bit) continued from state `h` over `bytes`. The tie-break between equally
/// weighted clusters is `fnv1a(FNV_OFFSET, job_key ‖ 0xFF ‖ cluster)`: a fixed, published
/// function, so every replica and every build ranks alike (std's `DefaultHasher` promises
/// neither), while different Jobs favour different clusters with their odd units.
fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// The tie-break hash of Job `job_key` and `cluster`, as [`fnv1a`] describes.
pub fn tie_break(job_key: &str, cluster: &str) -> u64 {
    let h = fnv1a(FNV_OFFSET, job_key.as_bytes());
    fnv1a(fnv1a(h, &[SEPARATOR]), cluster.as_bytes())
}

/// One cluster in a Webster division; its index is its rank.
#[derive(Debug, Clone, Copy)]
struct Seat {
    /// Weight; 0 takes nothing.
    weight: u64,
    /// Most seats; `u64::MAX` for no limit.
    cap: u64,
    /// Seats given so far.
    seats: u64,
}

/// The seats held and the weight of the `open` items.
fn totals(items: &[Seat], open: &[usize]) -> (u128, u128) {
    open.iter().fold((0, 0), |(seats, weight), &i| {
        (
            seats + u128::from(items[i].seats),
            weight + u128::from(items[i].weight),
        )
    })
}

/// A rational threshold `num / den`, compared exactly.
#[derive(Debug, Clone, Copy)]
struct Threshold {
    num: u128,
    den: u128,
}

/// Gives `total` seats to `items` by Webster's method, as if one at a time to the highest
/// `weight / (2·seats + 1)`, ties to the lower index, skipping items at their cap. Returns the
/// seats that fit nowhere.
///
/// Why it is exact without a step per seat: each item's priorities `w/1, w/3, w/5, …` fall, so
/// the one-at-a-time process takes every item's priorities in one global order (priority
/// descending, index ascending), and the result is the first `total` of that merged list, each
/// item's list cut at its cap. Hence any seat whose priority is strictly above a threshold `t`
/// belongs to the result as soon as at most `total` seats lie above `t`. Over `m` items of
/// weight `W` holding `R` seats in all, an item has fewer than `(w/t + 1)/2` seats above `t`,
/// so `t = W/(2R − m)` is such a threshold and leaves at most `m` seats; an item whose every
/// allowed seat lies above `t` is full, and `t` is recomputed without it. The last seats lie
/// between `t` and `W/(2R + m)` (at most about `2m` candidates) and are chosen exactly by
/// selecting the best of them in the global order; see [`finish`]. Everything is integer
/// arithmetic: priorities are compared by cross-multiplying in 128 bits, never as floats.
fn webster(total: u64, items: &mut [Seat]) -> u64 {
    let mut left = total;
    let mut open: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].weight > 0 && items[i].seats < items[i].cap)
        .collect();
    loop {
        if left == 0 || open.is_empty() {
            return left;
        }
        let room: u128 = open
            .iter()
            .map(|&i| u128::from(items[i].cap - items[i].seats))
            .sum();
        if room <= u128::from(left) {
            for &i in &open {
                items[i].seats = items[i].cap;
            }
            // room ≤ left, so it fits in u64.
            return left - room as u64;
        }
        fill_above_threshold(items, &mut open, &mut left);
        if left == 0 || open.is_empty() {
            return left;
        }
        if finish(items, &open, &mut left) {
            return left;
        }
        // A cap bound inside the band: those items are full now; go round without them.
        open.retain(|&i| items[i].seats < items[i].cap);
    }
}

/// Gives every seat above the threshold `W/(2R − m)` of the `open` items, recomputing the
/// threshold without each item that this fills, and drops the full items from `open`.
fn fill_above_threshold(items: &mut [Seat], open: &mut Vec<usize>, left: &mut u64) {
    let (held, mut weight) = totals(items, open);
    let mut seats = held + u128::from(*left);
    let mut m = open.len() as u128;
    // Items with a cap, by the priority of their last allowed seat, highest first: an item is
    // filled by a threshold exactly when that priority is above it. Usually no cap binds, so
    // they are sorted only once one does.
    let mut capped: Vec<usize> = open
        .iter()
        .copied()
        .filter(|&i| items[i].cap != u64::MAX)
        .collect();
    let mut sorted = false;
    let mut full = 0;
    let threshold = loop {
        if 2 * seats <= m {
            break None;
        }
        let t = Threshold {
            num: weight,
            den: 2 * seats - m,
        };
        if !sorted {
            if !capped.iter().any(|&i| last_above(&items[i], t)) {
                break Some(t);
            }
            capped.sort_unstable_by(|&a, &b| last_priority_cmp(&items[b], &items[a]));
            sorted = true;
        }
        let before = full;
        while full < capped.len() && last_above(&items[capped[full]], t) {
            let item = &items[capped[full]];
            seats = seats.saturating_sub(u128::from(item.cap));
            weight -= u128::from(item.weight);
            m -= 1;
            full += 1;
        }
        if full == before {
            break Some(t);
        }
    };
    for &i in &capped[..full] {
        *left -= items[i].cap - items[i].seats;
        items[i].seats = items[i].cap;
    }
    if let Some(t) = threshold {
        // Items come in rank order, so equal weights are neighbours: divide once per weight.
        let mut last: Option<(u64, u128)> = None;
        for &i in open.iter() {
            let item = &mut items[i];
            if item.seats < item.cap {
                let above = match last {
                    Some((weight, above)) if weight == item.weight => above,
                    _ => seats_above(item.weight, t),
                };
                last = Some((item.weight, above));
                let above = above.min(u128::from(item.cap)) as u64;
                if above > item.seats {
                    *left -= above - item.seats;
                    item.seats = above;
                }
            }
        }
    }
    open.retain(|&i| items[i].seats < items[i].cap);
}

/// Gives the remaining seats. They lie at or above `W/(2R + m)` (without caps at least R seats
/// do), and at or above the worst of the best next seats, one per item, when there are enough
/// items for that; usually no item takes two, and then those next seats are the answer. Returns
/// whether everything was placed; if not, a cap was reached inside the band and every
/// candidate in it was given.
fn finish(items: &mut [Seat], open: &[usize], left: &mut u64) -> bool {
    let (held, weight) = totals(items, open);
    let seats = held + u128::from(*left);
    let mut floor = Threshold {
        num: weight,
        den: 2 * seats + open.len() as u128,
    };
    let wanted = usize::try_from(*left).unwrap_or(usize::MAX);
    let next_seat = |i: usize| Candidate {
        weight: items[i].weight,
        divisor: 2 * items[i].seats + 1,
        index: i,
    };
    if wanted <= open.len() {
        let mut next: Vec<Candidate> = open.iter().map(|&i| next_seat(i)).collect();
        let (taken, worst, _) = next.select_nth_unstable_by(wanted - 1, Candidate::cmp_best_first);
        let worst = *worst;
        // A second seat ranking before the worst seat taken would belong to the result instead.
        let two_for_one = open.iter().any(|&i| {
            let item = &items[i];
            let second = Candidate {
                divisor: 2 * item.seats + 3,
                ..next_seat(i)
            };
            item.seats + 1 < item.cap && Candidate::cmp_best_first(&second, &worst).is_lt()
        });
        if !two_for_one {
            for c in taken.iter().chain([&worst]) {
                items[c.index].seats += 1;
            }
            *left = 0;
            return true;
        }
        let at_worst = Threshold {
            num: worst.weight.into(),
            den: worst.divisor.into(),
        };
        if at_worst.num * floor.den > floor.num * at_worst.den {
            floor = at_worst;
        }
    }
    let mut candidates: Vec<Candidate> = Vec::new();
    for &i in open {
        let item = &items[i];
        // Most items have no seat in the band; skip the division for them.
        if u128::from(item.weight) * floor.den < floor.num * u128::from(2 * item.seats + 1) {
            continue;
        }
        let upto = seats_at_or_above(item.weight, floor).min(u128::from(item.cap)) as u64;
        for k in item.seats..upto {
            candidates.push(Candidate {
                weight: item.weight,
                divisor: 2 * k + 1,
                index: i,
            });
        }
    }
    if candidates.len() > wanted {
        candidates.select_nth_unstable_by(wanted - 1, Candidate::cmp_best_first);
        candidates.truncate(wanted);
    }
    for c in &candidates {
        items[c.index].seats += 1;
    }
    *left -= candidates.len() as u64;
    *left == 0
}

/// The number of k ≥ 0 with `weight/(2k+1) > t`.
fn seats_above(weight: u64, t: Threshold) -> u128 {
    let wb = u128::from(weight) * t.den;
    if wb <= t.num {
        return 0;
    }
    let (x, d) = (wb - t.num, 2 * t.num);
    // 64-bit division is several times faster, and the operands nearly always fit.
    match (u64::try_from(x), u64::try_from(d)) {
        (Ok(x), Ok(d)) => u128::from(x.div_ceil(d)),
        _ => x.div_ceil(d),
    }
}

/// The number of k ≥ 0 with `weight/(2k+1) ≥ t`.
fn seats_at_or_above(weight: u64, t: Threshold) -> u128 {
    let wb = u128::from(weight) * t.den;
    if wb < t.num {
        0
    } else {
        (wb - t.num) / (2 * t.num) + 1
    }
}

/// Whether the last seat `item` may hold, `weight/(2·cap − 1)`, has priority above `t`.
fn last_above(item: &Seat, t: Threshold) -> bool {
    u128::from(item.weight) * t.den > (2 * u128::from(item.cap) - 1) * t.num
}

/// Orders items by the priority of their last allowed seat.
fn last_priority_cmp(a: &Seat, b: &Seat) -> Ordering {
    let lhs = u128::from(a.weight) * (2 * u128::from(b.cap) - 1);
    let rhs = u128::from(b.weight) * (2 * u128::from(a.cap) - 1);
    lhs.cmp(&rhs)
}

/// One more seat for item `index`, of priority `weight / divisor`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    weight: u64,
    divisor: u64,
    index: usize,
}

impl Candidate {
    /// The one-at-a-time order: higher priority first, then the lower index (the better rank).
    fn cmp_best_first(a: &Self, b: &Self) -> Ordering {
        let lhs = u128::from(a.weight) * u128::from(b.divisor);
        let rhs = u128::from(b.weight) * u128::from(a.divisor);
        rhs.cmp(&lhs).then(a.index.cmp(&b.index))
    }
}

impl Plan<'_> {
    /// The JSON of `fedctl plan -o json` (SPEC §3): `{"clusters": {NAME: {"parallelism": …,
    /// "completions": …}, …}, "unplaced": {"parallelism": …, "completions": …}}`, without
    /// `completions` per cluster for a work queue.
    pub fn to_json(&self) -> Value {
        let clusters: Map<String, Value> = self
            .clusters
            .iter()
            .map(|c| {
                let mut entry = Map::new();
                entry.insert("parallelism".into(), c.parallelism.into());
                if let Some(completions) = c.completions {
                    entry.insert("completions".into(), completions.into());
                }
                (c.cluster.to_owned(), Value::Object(entry))
            })
            .collect();
        json!({"clusters": clusters, "unplaced": self.unplaced})
    }

    /// Aligned columns as kubectl prints them (`CLUSTER PARALLELISM COMPLETIONS`), one row per
    /// cluster in rank order, and an `UNPLACED` row when something found no cluster.
    pub fn to_table(&self) -> String {
        let none = || "<none>".to_owned();
        let mut rows: Vec<[String; 3]> =
            vec![["CLUSTER".into(), "PARALLELISM".into(), "COMPLETIONS".into()]];
        for c in &self.clusters {
            let completions = c.completions.map_or_else(none, |v| v.to_string());
            rows.push([c.cluster.to_owned(), c.parallelism.to_string(), completions]);
        }
        if self.unplaced != Share::default() {
            let work_queue = self.clusters.iter().all(|c| c.completions.is_none())
                && self.unplaced.completions == 0;
            let completions = if work_queue {
                none()
            } else {
                self.unplaced.completions.to_string()
            };
            rows.push([
                "UNPLACED".into(),
                self.unplaced.parallelism.to_string(),
                completions,
            ]);
        }
        let width = |col: usize| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1) = (width(0), width(1));
        rows.iter()
            .map(|r| format!("{:<w0$}   {:<w1$}   {}\n", r[0], r[1], r[2]))
            .collect()
    }
}

#[cfg(test)]
mod tests;
