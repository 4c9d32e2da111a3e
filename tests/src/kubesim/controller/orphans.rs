//! Pods whose Job was deleted with `propagationPolicy: Orphan` (the Job API's default): no
//! controller owns them any more, but their kubelet runs them to their end, so they finish
//! and stop counting against their node, as real ones do.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::SimPod;
use crate::kubesim::pods::{Phase, PodTable};
use crate::kubesim::store::Store;

/// An orphaned pod that has not started yet.
#[derive(Debug)]
struct Waiting {
    duration: Duration,
    fails: bool,
    restarts: u32,
}

/// The orphaned pods still running or waiting to.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    /// Running ones by end: `(ends, namespace, name, fails, restarts)`.
    running: BinaryHeap<Reverse<(Instant, String, String, bool, u32)>>,
    /// Ones not running yet (waiting for a node, or on a node whose kubelet does not run
    /// them), by `(namespace, name)`.
    waiting: HashMap<(String, String), Waiting>,
}

impl Orphans {
    /// Takes over the active pods of a Job that let go of them. A pod that fails and restarts
    /// in place (`OnFailure`) restarts for ever, so it is not tracked.
    pub(super) fn adopt(&mut self, namespace: &str, pods: Vec<SimPod>, restarts_in_place: bool) {
        for pod in pods {
            if pod.lost || (pod.fails && restarts_in_place) {
                continue;
            }
            match pod.ends {
                Some(ends) => self.running.push(Reverse((
                    ends,
                    namespace.to_owned(),
                    pod.name,
                    pod.fails,
                    pod.restarts,
                ))),
                None => {
                    self.waiting.insert(
                        (namespace.to_owned(), pod.name),
                        Waiting {
                            duration: pod.duration,
                            fails: pod.fails,
                            restarts: pod.restarts,
                        },
                    );
                }
            }
        }
    }

    /// An orphaned pod was bound to a node whose kubelet runs it: it starts now.
    pub(super) fn started(&mut self, namespace: &str, name: &str, now: Instant) {
        if let Some(w) = self
            .waiting
            .remove(&(namespace.to_owned(), name.to_owned()))
        {
            self.running.push(Reverse((
                now + w.duration,
                namespace.to_owned(),
                name.to_owned(),
                w.fails,
                w.restarts,
            )));
        }
    }

    /// When the next orphan ends.
    pub(super) fn next_end(&self) -> Option<Instant> {
        self.running.peek().map(|Reverse((at, ..))| *at)
    }

    /// Finishes the orphans whose time is up.
    pub(super) fn run_due(&mut self, pods: &PodTable, store: &Store) {
        let now = Instant::now();
        while self
            .running
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= now)
        {
            let Some(Reverse((_, namespace, name, fails, restarts))) = self.running.pop() else {
                break;
            };
            let phase = if fails {
                Phase::Failed
            } else {
                Phase::Succeeded
            };
            pods.set_state(&namespace, &name, phase, restarts, store.next_rv());
        }
    }
}
