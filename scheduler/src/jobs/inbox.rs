//! What agent sessions are told: each session's inbox of changed Jobs, and which clusters a
//! change of a Job concerns.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::fast_hash::FastMap;
use crate::model::job::{Shard, ShardState};
use crate::model::render::ManifestTemplate;
use crate::records::StoredJob;

/// An agent session's mailbox: which Jobs changed since the session last looked.
#[derive(Debug, Default)]
pub struct SessionInbox {
    /// The latest change of each Job posted and not yet taken, by key.
    changed: Mutex<FastMap<Arc<str>, Changed>>,
    /// Wakes the session.
    pub notify: Notify,
}

/// A published version of a Job that concerns a session's cluster, with the version the
/// session was last told of.
///
/// It carries both versions and where their shards in the cluster are, found while deciding
/// whom to tell: each of a hundred sessions looking the Job up in the index and
/// binary-searching its shards again was a tenth of the scheduler's CPU under load (the
/// shards of 10,000 Jobs do not stay in cache, so every probe missed it). The older version
/// is what the session compares with, so that it need not remember what it sent.
#[derive(Debug, Clone)]
pub struct Changed {
    /// Store revision of the publication.
    pub revision: u64,
    /// The Job as published; `None` once deleted.
    pub job: Option<Arc<StoredJob>>,
    /// Where the cluster's shards are in `job`'s shards (empty when it has none).
    pub shards: Range<usize>,
    /// The Job as it was before the first change posted and not yet taken: what the session
    /// last told its agent of it (`None`: nothing).
    pub before: Option<Arc<StoredJob>>,
    /// Where the cluster's shards are in `before`'s shards.
    pub before_shards: Range<usize>,
    /// What every shard's manifest of this version shares, made by the first session that
    /// renders one and shared by every session told of the same publication: it goes with
    /// the last of them, so no Job in the index keeps one.
    pub manifest: Arc<OnceLock<ManifestTemplate>>,
}

impl Changed {
    /// `job` as it is now, for an agent session of `cluster` that has not been told of it.
    pub fn current(job: Option<Arc<StoredJob>>, cluster: &str) -> Self {
        Self {
            revision: job.as_ref().map_or(0, |j| j.mod_revision),
            shards: job.as_ref().map_or(0..0, |j| j.record.shard_range(cluster)),
            job,
            before: None,
            before_shards: 0..0,
            manifest: Arc::default(),
        }
    }

    /// The cluster's shards.
    pub fn shards(&self) -> &[Shard] {
        self.job
            .as_ref()
            .map_or(&[], |j| &j.record.shards[self.shards.clone()])
    }

    /// The cluster's shards in the version the session was last told of.
    pub fn shards_before(&self) -> &[Shard] {
        self.before
            .as_ref()
            .map_or(&[], |j| &j.record.shards[self.before_shards.clone()])
    }
}

impl SessionInbox {
    /// Posts a change of Job `key` and wakes the session. A change posted while an earlier
    /// one waits replaces it but keeps its `before`: the session is told the difference
    /// between the version it knew and the newest. Publications reach here in the order the
    /// index took them; an older one never replaces a newer one all the same.
    ///
    /// The key is the publication's, shared by every session told of it: a copy per session
    /// was an allocation per cluster per change.
    pub fn post(&self, key: &Arc<str>, change: Changed) {
        {
            let mut changed = self.changed.lock();
            match changed.get_mut(&**key) {
                Some(posted) if posted.revision > change.revision => {}
                Some(posted) => {
                    let before = posted.before.take();
                    let before_shards = posted.before_shards.clone();
                    *posted = Changed {
                        before,
                        before_shards,
                        ..change
                    };
                }
                None => {
                    changed.insert(Arc::clone(key), change);
                }
            }
        }
        self.notify.notify_one();
    }

    /// Takes every change posted since the last call.
    pub fn take(&self) -> FastMap<Arc<str>, Changed> {
        std::mem::take(&mut *self.changed.lock())
    }
}

/// Where one cluster's shards are in two versions of a Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRanges {
    /// Positions in the older version.
    pub before: Range<usize>,
    /// Positions in the newer version.
    pub after: Range<usize>,
}

/// The clusters whose agent must be told something after a Job went from `before` to `after`,
/// each with where its shards are in both: those where a shard appeared, went, stopped or
/// got a new revision, or every one of either version when the Job was created, deleted or
/// replaced (another uid). A change of status alone tells no agent anything, and wakes no
/// agent session.
pub fn changed_assignments<'a>(
    before: Option<&'a StoredJob>,
    after: Option<&'a StoredJob>,
) -> BTreeMap<&'a str, ShardRanges> {
    let same_job =
        matches!((before, after), (Some(b), Some(a)) if b.record.uid() == a.record.uid());
    let shards = |j: Option<&'a StoredJob>| j.map_or(&[][..], |j| j.record.shards.as_slice());
    // Another Job's shards are not this one's: compared with none, every shard is news.
    let (mut b, mut a) = (if same_job { shards(before) } else { &[] }, shards(after));
    let mut changed = BTreeMap::new();
    let (mut at_before, mut at) = (0, 0);
    // Both versions keep their shards in cluster order: one walk over the two lists compares
    // each cluster's shards.
    while let Some(cluster) = match (b.first(), a.first()) {
        (Some(x), Some(y)) => Some(x.cluster.as_str().min(y.cluster.as_str())),
        (Some(x), None) => Some(x.cluster.as_str()),
        (None, Some(y)) => Some(y.cluster.as_str()),
        (None, None) => None,
    } {
        let in_cluster =
            |shards: &[Shard]| shards.iter().take_while(|s| s.cluster == cluster).count();
        let (nb, na) = (in_cluster(b), in_cluster(a));
        if nb != na
            || b[..nb]
                .iter()
                .zip(&a[..na])
                .any(|(b, a)| told(b) != told(a))
        {
            let ranges = ShardRanges {
                before: at_before..at_before + nb,
                after: at..at + na,
            };
            changed.insert(cluster, ranges);
        }
        (b, a) = (&b[nb..], &a[na..]);
        (at_before, at) = (at_before + nb, at + na);
    }
    if !same_job {
        // Clusters with a share and no shard, and those of the Job replaced or deleted.
        let range =
            |j: Option<&StoredJob>, cluster| j.map_or(0..0, |j| j.record.shard_range(cluster));
        for j in [before, after].into_iter().flatten() {
            for cluster in j.record.clusters() {
                let ranges = changed.entry(cluster).or_insert_with(|| ShardRanges {
                    before: 0..0,
                    after: range(after, cluster),
                });
                // The walk compared the new Job's shards with none: the old ones are these.
                ranges.before = range(before, cluster);
            }
        }
    }
    changed
}

/// What an agent session compares of a shard to decide what to send.
fn told(s: &Shard) -> (&str, u64, bool) {
    (s.name.as_str(), s.revision, s.state == ShardState::Stopped)
}
