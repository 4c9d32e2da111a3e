//! What an agent session last told its agent about each Job: the revision sent per shard.
//!
//! A session keeps one entry per Job with a shard in its cluster, so at 100 clusters ×
//! 10,000 Jobs the sessions hold a million of them; kept as maps of owned strings (the Job's
//! key, uid, namespace, and a map from shard name to revision), they were ≈ 380 bytes per
//! shard, the largest single part of the scheduler's memory in a heap profile. Here the
//! namespace comes from the key, the Job's uid is kept in 16 bytes, and a shard named like its
//! Job (the first one in a cluster, nearly always the only one) is kept without a copy of its
//! name, and without a list when it is the Job's only shard there.

use std::sync::Arc;

use crate::fast_hash::FastMap;
use crate::model::job::Uid;

/// The revisions a session sent, by Job key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Sent {
    jobs: FastMap<Arc<str>, SentJob>,
}

/// The shards of one Job that a session last told its agent about.
#[derive(Debug)]
pub struct SentJob {
    /// uid of the Job they belong to (16 bytes, not a copy of its text per session).
    pub uid: Uid,
    shards: SentShards,
}

/// Revisions sent per shard of one Job, by slot (see [`slot`]).
#[derive(Debug, PartialEq)]
enum SentShards {
    /// Only the shard named like the Job, as nearly every Job has in a cluster: no list.
    Own(u64),
    /// Any other set of shards, in the order first sent.
    List(Vec<(Option<Box<str>>, u64)>),
}

/// The namespace and name in Job key `namespace/name`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl Sent {
    /// The entry of Job `key`, if any.
    pub fn get(&self, key: &str) -> Option<&SentJob> {
        self.jobs.get(key)
    }

    /// The entry of Job `key`, made for `uid` when there is none (keeping `key` itself,
    /// which the sessions told of one publication share).
    pub fn entry(&mut self, key: &Arc<str>, uid: &str) -> &mut SentJob {
        if !self.jobs.contains_key(&**key) {
            self.jobs.insert(Arc::clone(key), SentJob::new(uid));
        }
        self.jobs.get_mut(&**key).expect("just inserted")
    }

    /// Removes the entry of Job `key`.
    pub fn remove(&mut self, key: &str) -> Option<SentJob> {
        self.jobs.remove(key)
    }

    /// Every Job key with an entry.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.jobs.keys().map(AsRef::as_ref)
    }
}

impl SentJob {
    fn new(uid: &str) -> Self {
        Self {
            uid: Uid::new(uid),
            shards: SentShards::List(Vec::new()),
        }
    }

    /// The revision sent for `shard` of Job `key`.
    pub fn revision(&self, key: &str, shard: &str) -> Option<u64> {
        let slot = slot(key, shard);
        match &self.shards {
            SentShards::Own(r) => slot.is_none().then_some(*r),
            SentShards::List(list) => list
                .iter()
                .find(|(s, _)| s.as_deref() == slot)
                .map(|(_, r)| *r),
        }
    }

    /// Records that `revision` of `shard` of Job `key` was sent.
    pub fn set(&mut self, key: &str, shard: &str, revision: u64) {
        let slot = slot(key, shard);
        match (&mut self.shards, slot) {
            (SentShards::Own(r), None) => *r = revision,
            (SentShards::Own(r), Some(name)) => {
                self.shards = SentShards::List(vec![(None, *r), (Some(name.into()), revision)]);
            }
            (SentShards::List(list), None) if list.is_empty() => {
                self.shards = SentShards::Own(revision);
            }
            (SentShards::List(list), slot) => {
                match list.iter_mut().find(|(s, _)| s.as_deref() == slot) {
                    Some((_, r)) => *r = revision,
                    None => {
                        list.push((slot.map(Into::into), revision));
                        list.shrink_to_fit();
                    }
                }
            }
        }
    }

    /// Forgets `shard` of Job `key`.
    pub fn remove(&mut self, key: &str, shard: &str) {
        let slot = slot(key, shard);
        match &mut self.shards {
            SentShards::Own(_) if slot.is_none() => self.shards = SentShards::List(Vec::new()),
            SentShards::Own(_) => {}
            SentShards::List(list) => list.retain(|(s, _)| s.as_deref() != slot),
        }
    }

    /// Names of the shards of Job `key` with a revision sent.
    pub fn names<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let job = split_key(key).1;
        let (own, list) = match &self.shards {
            SentShards::Own(_) => (Some(job), &[][..]),
            SentShards::List(list) => (None, list.as_slice()),
        };
        own.into_iter()
            .chain(list.iter().map(move |(s, _)| s.as_deref().unwrap_or(job)))
    }

    /// Whether no shard has a revision sent.
    pub fn is_empty(&self) -> bool {
        matches!(&self.shards, SentShards::List(list) if list.is_empty())
    }
}

/// How `shard` of Job `key` is kept: `None` when it is named like the Job.
fn slot<'a>(key: &str, shard: &'a str) -> Option<&'a str> {
    (shard != split_key(key).1).then_some(shard)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_shard_named_like_its_job_is_kept_without_its_name() {
        let mut sent = Sent::default();
        let job = sent.entry(&"team-a/train".into(), "uid-1");
        job.set("team-a/train", "train", 3);
        assert_eq!(job.shards, SentShards::Own(3));
        job.set("team-a/train", "train-2", 5);
        assert_eq!(
            job.shards,
            SentShards::List(vec![(None, 3), (Some("train-2".into()), 5)])
        );
        assert_eq!(job.revision("team-a/train", "train"), Some(3));
        assert_eq!(job.revision("team-a/train", "train-2"), Some(5));
        assert_eq!(job.revision("team-a/train", "train-3"), None);
        let names: Vec<&str> = job.names("team-a/train").collect();
        assert_eq!(names, ["train", "train-2"]);
        job.remove("team-a/train", "train");
        assert_eq!(
            job.shards,
            SentShards::List(vec![(Some("train-2".into()), 5)])
        );
        assert_eq!(split_key("team-a/train"), ("team-a", "train"));
    }

    proptest! {
        /// For any sequence of sends and removals, a Job's entry answers as a map from shard
        /// name to the last revision sent.
        #[test]
        fn behaves_as_a_map_of_shard_names(
            ops in proptest::collection::vec((0..4usize, proptest::option::of(0..100u64)), 0..30)
        ) {
            let names = ["job", "job-2", "job-3", "other"];
            let key = "ns/job";
            let mut sent = Sent::default();
            let mut model = BTreeMap::new();
            for (shard, revision) in ops {
                let name = names[shard];
                let job = sent.entry(&key.into(), "uid");
                match revision {
                    Some(r) => {
                        job.set(key, name, r);
                        model.insert(name, r);
                    }
                    None => {
                        job.remove(key, name);
                        model.remove(name);
                    }
                }
                for n in names {
                    prop_assert_eq!(job.revision(key, n), model.get(n).copied());
                }
                let mut listed: Vec<&str> = job.names(key).collect();
                listed.sort();
                prop_assert_eq!(listed, model.keys().copied().collect::<Vec<_>>());
                prop_assert_eq!(job.is_empty(), model.is_empty());
            }
        }
    }
}
