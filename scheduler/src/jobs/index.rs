//! The in-memory index of every federated Job: by key, by uid, and by the clusters it has a
//! share or shard in (what an agent session looks up).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::fast_hash::{FastMap, FastSet};
use crate::model::job::{FederatedJob, Shard, ShardState};
use crate::records::StoredJob;

/// Every Job this replica holds.
#[derive(Default)]
pub struct JobIndex {
    by_key: FastMap<String, Held>,
    by_uid: FastMap<String, String>,
    /// Each Job's key by its number (`None`: a free number).
    keys: Vec<Option<Box<str>>>,
    /// Numbers free for the next new Job.
    free: Vec<u32>,
    /// The numbers of the Jobs in each cluster. A shared key per entry (a 16-byte `Arc<str>`,
    /// hashed and compared as text on every insert) was 30 MB at 100 clusters × 10,000 Jobs
    /// and a string comparison per cluster per new Job; a number is 4 bytes and hashes at once.
    by_cluster: FastMap<String, FastSet<u32>>,
    /// Live shards per cluster, kept up to date on every insert: `ListClusters` asks on every
    /// call, and counting then walked every shard of every Job (a million at 100 clusters ×
    /// 10,000 Jobs, 24 % of the scheduler's CPU under load) while holding the index's lock.
    live: HashMap<String, i32>,
}

/// The clusters a Job has a share or a shard in; none for no Job.
fn clusters_of(job: Option<&FederatedJob>) -> BTreeSet<&str> {
    job.map(FederatedJob::clusters).unwrap_or_default()
}

/// Whether two versions of a Job have a share or shard in the same clusters, as most changes
/// (status reports) leave them; told without building either set.
fn same_clusters(before: Option<&FederatedJob>, after: Option<&FederatedJob>) -> bool {
    fn shard_clusters(fj: &FederatedJob) -> impl Iterator<Item = &str> {
        fj.shards
            .chunk_by(|a, b| a.cluster == b.cluster)
            .map(|run| run[0].cluster.as_str())
    }
    match (before, after) {
        (None, None) => true,
        (Some(b), Some(a)) => b.members == a.members && shard_clusters(b).eq(shard_clusters(a)),
        _ => false,
    }
}

/// A Job in the index, with its number.
struct Held {
    job: Arc<StoredJob>,
    number: u32,
}

impl JobIndex {
    /// Puts `job` (or its absence) under `key`; returns what was there.
    pub fn insert(&mut self, key: &str, job: Option<Arc<StoredJob>>) -> Option<Arc<StoredJob>> {
        // Most inserts replace a version: no key is copied for them.
        let (previous, number) = match (&job, self.by_key.get_mut(key)) {
            (Some(j), Some(held)) => (
                Some(std::mem::replace(&mut held.job, j.clone())),
                held.number,
            ),
            (Some(j), None) => {
                let number = self.number_for(key);
                let held = Held {
                    job: j.clone(),
                    number,
                };
                self.by_key.insert(key.to_owned(), held);
                (None, number)
            }
            (None, _) => match self.by_key.remove(key) {
                Some(held) => {
                    // Free once this change is applied: the sets below still name it.
                    (Some(held.job), held.number)
                }
                None => return None,
            },
        };
        fn uid(j: &Option<Arc<StoredJob>>) -> Option<&str> {
            j.as_ref().map(|j| j.record.uid())
        }
        let (old_uid, new_uid) = (uid(&previous), uid(&job));
        if old_uid != new_uid {
            if let Some(u) = old_uid {
                self.by_uid.remove(u);
            }
            if let Some(u) = new_uid {
                self.by_uid.insert(u.to_owned(), key.to_owned());
            }
        }
        let (before, after) = (
            previous.as_ref().map(|j| &j.record),
            job.as_ref().map(|j| &j.record),
        );
        // Only the clusters that joined or left: an update touches every cluster of the Job
        // otherwise, and most updates (status reports) change none.
        if !same_clusters(before, after) {
            let (was, is) = (clusters_of(before), clusters_of(after));
            for c in was.difference(&is) {
                if let Some(set) = self.by_cluster.get_mut(*c) {
                    set.remove(&number);
                    if set.is_empty() {
                        self.by_cluster.remove(*c);
                    }
                }
            }
            for c in is.difference(&was) {
                match self.by_cluster.get_mut(*c) {
                    Some(set) => set.insert(number),
                    None => self
                        .by_cluster
                        .entry((*c).to_owned())
                        .or_default()
                        .insert(number),
                };
            }
        }
        if job.is_none() {
            self.keys[number as usize] = None;
            self.free.push(number);
        }
        if !same_live_shards(before, after) {
            add_live_shards(&mut self.live, before, -1);
            add_live_shards(&mut self.live, after, 1);
        }
        previous
    }

    /// A number for the new Job `key`: a free one, or the next.
    fn number_for(&mut self, key: &str) -> u32 {
        let number = self.free.pop().unwrap_or_else(|| {
            self.keys.push(None);
            u32::try_from(self.keys.len() - 1).expect("fewer than 2^32 Jobs")
        });
        self.keys[number as usize] = Some(key.into());
        number
    }

    /// One Job.
    pub fn get(&self, key: &str) -> Option<&Arc<StoredJob>> {
        self.by_key.get(key).map(|held| &held.job)
    }

    /// The key of the Job with `uid`.
    pub fn key_by_uid(&self, uid: &str) -> Option<&String> {
        self.by_uid.get(uid)
    }

    /// Keys of the Jobs with a share or shard in `cluster`.
    pub fn in_cluster(&self, cluster: &str) -> Vec<String> {
        let key = |n: &u32| self.keys[*n as usize].as_deref().map(str::to_owned);
        self.by_cluster
            .get(cluster)
            .map(|s| s.iter().filter_map(key).collect())
            .unwrap_or_default()
    }

    /// Every Job's key.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_key.keys()
    }

    /// Every Job, in no order.
    pub fn values(&self) -> impl Iterator<Item = &Arc<StoredJob>> {
        self.by_key.values().map(|held| &held.job)
    }

    /// Number of Jobs.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is no Job.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Keys of the Jobs with work not placed anywhere yet.
    pub fn needing_room(&self) -> Vec<String> {
        self.by_key
            .iter()
            .filter(|(_, h)| h.job.record.needs_room() && !h.job.record.is_finished())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of live shards per cluster (clusters with none are absent).
    pub fn shard_counts(&self) -> HashMap<String, i32> {
        self.live.clone()
    }
}

/// Whether a shard in `state` counts as held by its cluster.
fn is_live(state: ShardState) -> bool {
    matches!(
        state,
        ShardState::Active | ShardState::Finished | ShardState::Stopping | ShardState::Retired
    )
}

/// Whether two versions of a Job have the same live shards in the same clusters (as most
/// changes, status reports, leave them), so that the counts need no update.
fn same_live_shards(before: Option<&FederatedJob>, after: Option<&FederatedJob>) -> bool {
    fn live(s: &Shard) -> Option<&str> {
        is_live(s.state).then_some(s.cluster.as_str())
    }
    match (before, after) {
        (None, None) => true,
        (Some(b), Some(a)) => {
            b.shards.len() == a.shards.len()
                && b.shards
                    .iter()
                    .zip(&a.shards)
                    .all(|(b, a)| live(b) == live(a))
        }
        _ => false,
    }
}

/// Adds `sign` to `counts` for every live shard of `job`, dropping clusters that reach zero.
fn add_live_shards(counts: &mut HashMap<String, i32>, job: Option<&FederatedJob>, sign: i32) {
    let Some(job) = job else { return };
    for s in job.shards.iter().filter(|s| is_live(s.state)) {
        let cluster = s.cluster.as_str();
        match counts.get_mut(cluster) {
            Some(n) => {
                *n += sign;
                if *n == 0 {
                    counts.remove(cluster);
                }
            }
            None => {
                counts.insert(cluster.to_owned(), sign);
            }
        }
    }
}
