//! What an agent must be told of one Job: what it was told, compared with the Job now.
//!
//! A session does not remember what it sent. What an agent was last told of a Job is the
//! version of the Job the session last dispatched, and the session's inbox keeps that version
//! beside the newest one until the session takes them ([`crate::jobs::SessionInbox`]); when the
//! session opens it is what the agent says it holds. Remembering instead, per session, the
//! revision sent of every shard of every Job in the cluster held 107 MB at 100 clusters ×
//! 10,000 Jobs (a hash table of a million entries over the sessions) and a hash lookup per
//! shard per change.

use crate::model::job::{FederatedJob, Shard, ShardState};

/// What an agent was told of one Job: the Job's uid and the revision of each of its shards
/// that runs (or is suspended) in the agent's cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Told<'a> {
    /// uid of the Job the shards belong to.
    pub uid: &'a str,
    /// Name and revision of each shard told.
    pub shards: Vec<(&'a str, u64)>,
}

/// One thing to tell an agent.
#[derive(Debug, PartialEq)]
pub enum News<'a> {
    /// Hold `shard` of `job` at its revision.
    Assign {
        /// The Job now.
        job: &'a FederatedJob,
        /// The shard.
        shard: &'a Shard,
    },
    /// Stop managing shard `shard` of the Job with `uid`, leaving the local Job be.
    Forget {
        /// uid of the Job the shard belonged to.
        uid: &'a str,
        /// Name of the shard.
        shard: &'a str,
    },
}

impl<'a> Told<'a> {
    /// What an agent holds once told of `job` with `shards` (its shards in the cluster): a
    /// stopped shard is not held at any revision, so it is left out.
    pub fn of(job: &'a FederatedJob, shards: &'a [Shard]) -> Self {
        Self {
            uid: job.uid(),
            shards: shards
                .iter()
                .filter(|s| s.state != ShardState::Stopped)
                .map(|s| (s.name.as_str(), s.revision))
                .collect(),
        }
    }

    fn revision(&self, shard: &str) -> Option<u64> {
        self.shards
            .iter()
            .find(|(name, _)| *name == shard)
            .map(|&(_, r)| r)
    }
}

/// What to tell an agent that was `told` of a Job (`None`: nothing) for it to hold the Job's
/// `shards` in its cluster now (`now` is `None` once the Job is deleted), in the order to send.
///
/// A shard at a revision the agent was not told is assigned; a shard the Job no longer has is
/// forgotten, as is every shard told of a Job deleted or replaced by another of the same name
/// (the federation no longer manages them and the agent leaves them be). A shard that stopped
/// is neither: the agent stops it as its last assignment said.
pub fn news<'a>(
    told: Option<&Told<'a>>,
    now: Option<(&'a FederatedJob, &'a [Shard])>,
    mut tell: impl FnMut(News<'a>),
) {
    let told = match (told, now) {
        (Some(t), Some((job, _))) if t.uid == job.uid() => Some(t),
        (Some(t), _) => {
            for &(shard, _) in &t.shards {
                tell(News::Forget { uid: t.uid, shard });
            }
            None
        }
        (None, _) => None,
    };
    let Some((job, shards)) = now else { return };
    for shard in shards {
        if shard.state != ShardState::Stopped
            && told.and_then(|t| t.revision(&shard.name)) != Some(shard.revision)
        {
            tell(News::Assign { job, shard });
        }
    }
    let Some(told) = told else { return };
    for &(shard, _) in &told.shards {
        if !shards.iter().any(|s| s.name == shard) {
            tell(News::Forget {
                uid: told.uid,
                shard,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::model::clusters::{ClusterView, Clusters};
    use crate::model::edit;

    /// A Job `uid` with shards `(name, revision, stopped)` in cluster `c0`.
    fn version(uid: &str, shards: &[(&str, u64, bool)]) -> FederatedJob {
        let job = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"parallelism": 1, "completions": 1,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "w", "image": "busybox"}]}}}
        }))
        .unwrap();
        let view = ClusterView {
            ready: true,
            ..Default::default()
        };
        let clusters: Clusters = [("c0".to_owned(), view)].into_iter().collect();
        let now = "2026-12-07T10:00:00Z".parse().unwrap();
        let mut fj = edit::create(job, uid.into(), &clusters, now).unwrap();
        let template = fj.shards[0].clone();
        fj.shards = shards
            .iter()
            .map(|&(name, revision, stopped)| Shard {
                name: name.to_owned(),
                revision,
                state: if stopped {
                    ShardState::Stopped
                } else {
                    ShardState::Active
                },
                ..template.clone()
            })
            .collect();
        fj
    }

    fn told_of(fj: &FederatedJob) -> Told<'_> {
        Told::of(fj, &fj.shards)
    }

    /// What `news` says, in order.
    fn listed<'a>(told: Option<&Told<'a>>, now: Option<&'a FederatedJob>) -> Vec<String> {
        let mut out = Vec::new();
        news(told, now.map(|j| (j, &j.shards[..])), |n| {
            out.push(match n {
                News::Assign { shard: s, .. } => format!("assign {}@{}", s.name, s.revision),
                News::Forget { uid, shard } => format!("forget {uid}/{shard}"),
            })
        });
        out
    }

    #[test]
    fn new_revisions_are_assigned_and_shards_gone_forgotten() {
        let before = version(
            "u1",
            &[("a", 1, false), ("a-2", 1, false), ("a-3", 1, false)],
        );
        let after = version(
            "u1",
            &[("a", 2, false), ("a-2", 1, true), ("a-4", 1, false)],
        );
        assert_eq!(
            listed(Some(&told_of(&before)), Some(&after)),
            ["assign a@2", "assign a-4@1", "forget u1/a-3"]
        );
        // Nothing new: nothing said.
        assert_eq!(
            listed(Some(&told_of(&after)), Some(&after)),
            [] as [&str; 0]
        );
    }

    #[test]
    fn a_deleted_or_replaced_job_has_its_shards_forgotten_first() {
        let old = version("u1", &[("a", 3, false), ("a-2", 1, true)]);
        let new = version("u2", &[("a", 1, false)]);
        assert_eq!(
            listed(Some(&told_of(&old)), Some(&new)),
            ["forget u1/a", "assign a@1"]
        );
        assert_eq!(listed(Some(&told_of(&old)), None), ["forget u1/a"]);
        assert_eq!(listed(None, Some(&new)), ["assign a@1"]);
    }

    /// An agent as the syncer keeps it: shard name → (uid, revision).
    type Agent = BTreeMap<String, (String, u64)>;

    /// Tells `agent` what `news` says for `now`; returns the messages, sorted.
    fn tell(agent: &mut Agent, told: Option<&Told<'_>>, now: Option<&FederatedJob>) -> Vec<String> {
        let mut said = Vec::new();
        news(told, now.map(|j| (j, &j.shards[..])), |n| match n {
            News::Assign { job, shard } => {
                said.push(format!("assign {}@{}", shard.name, shard.revision));
                agent.insert(shard.name.clone(), (job.uid().to_owned(), shard.revision));
            }
            News::Forget { uid, shard } => {
                said.push(format!("forget {uid}/{shard}"));
                agent.remove(shard);
            }
        });
        said.sort();
        said
    }

    /// The oracle: a session that remembers the uid and every revision it sent, as sessions
    /// did before they compared versions.
    #[derive(Default)]
    struct Remembering {
        uid: Option<String>,
        sent: BTreeMap<String, u64>,
    }

    impl Remembering {
        fn tell(&mut self, agent: &mut Agent, now: Option<&FederatedJob>) -> Vec<String> {
            let mut said = Vec::new();
            let same_job = now.is_some_and(|j| self.uid.as_deref().is_none_or(|u| u == j.uid()));
            if !same_job && let Some(uid) = self.uid.take() {
                for name in std::mem::take(&mut self.sent).into_keys() {
                    said.push(format!("forget {uid}/{name}"));
                    agent.remove(&name);
                }
            }
            let Some(job) = now else { return said };
            self.uid = Some(job.uid().to_owned());
            for shard in &job.shards {
                if shard.state == ShardState::Stopped {
                    self.sent.remove(&shard.name);
                } else if self.sent.get(&shard.name) != Some(&shard.revision) {
                    said.push(format!("assign {}@{}", shard.name, shard.revision));
                    agent.insert(shard.name.clone(), (job.uid().to_owned(), shard.revision));
                    self.sent.insert(shard.name.clone(), shard.revision);
                }
            }
            let gone: Vec<String> = (self.sent.keys())
                .filter(|n| !job.shards.iter().any(|s| &s.name == *n))
                .cloned()
                .collect();
            for name in gone {
                self.sent.remove(&name);
                said.push(format!("forget {}/{name}", job.uid()));
                agent.remove(&name);
            }
            if self.sent.is_empty() {
                self.uid = None;
            }
            said.sort();
            said
        }
    }

    /// A version of the Job (`None`: deleted): one of two uids, up to three shards.
    fn arb_version() -> impl Strategy<Value = Option<FederatedJob>> {
        let shards = proptest::collection::btree_map(0..3usize, (1..4u64, any::<bool>()), 0..3);
        proptest::option::weighted(0.85, (0..2usize, shards)).prop_map(|v| {
            v.map(|(uid, shards)| {
                let names = ["a", "a-2", "a-3"];
                let shards: Vec<(&str, u64, bool)> = shards
                    .into_iter()
                    .map(|(n, (r, stopped))| (names[n], r, stopped))
                    .collect();
                version(["u1", "u2"][uid], &shards)
            })
        })
    }

    proptest! {
        /// For any sequence of versions of a Job, told at any of them (the versions between
        /// coalesced, as a session's inbox does), comparing with the version last told says
        /// what a session remembering every revision it sent says, and leaves the agent alike.
        #[test]
        fn comparing_versions_says_what_remembering_every_revision_said(
            versions in proptest::collection::vec((arb_version(), any::<bool>()), 1..12)
        ) {
            let (mut compared, mut remembered) = (Agent::new(), Agent::new());
            let mut oracle = Remembering::default();
            let mut last_told: Option<&FederatedJob> = None;
            for (now, tell_now) in &versions {
                if *tell_now {
                    let now = now.as_ref();
                    let said = tell(&mut compared, last_told.map(told_of).as_ref(), now);
                    prop_assert_eq!(said, oracle.tell(&mut remembered, now));
                    prop_assert_eq!(&compared, &remembered);
                    last_told = now;
                }
            }
        }
    }
}
