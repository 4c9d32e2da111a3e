//! Pods whose Job was deleted with `propagationPolicy: Orphan` (the Job API's default): no
//! controller owns them any more, but their kubelet runs them to their end, so they finish
//! and stop counting against their node, as real ones do.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use super::SimPod;
use crate::kubesim::pods::{Phase, PodTable};

/// An orphaned pod that has not started yet.
#[derive(Debug)]
struct Waiting {
    duration: Duration,
    fails: bool,
    restarts: u32,
}

/// An orphaned pod that runs, by when it ends (the field order is the heap's order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ending {
    at: Instant,
    namespace: String,
    name: String,
    fails: bool,
    restarts: u32,
}

/// The orphaned pods still running or waiting to.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    /// Running ones, soonest end first.
    running: BinaryHeap<Reverse<Ending>>,
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
                Some(at) => self.running.push(Reverse(Ending {
                    at,
                    namespace: namespace.to_owned(),
                    name: pod.name,
                    fails: pod.fails,
                    restarts: pod.restarts,
                })),
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
            self.running.push(Reverse(Ending {
                at: now + w.duration,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                fails: w.fails,
                restarts: w.restarts,
            }));
        }
    }

    /// When the next orphan ends.
    pub(super) fn next_end(&self) -> Option<Instant> {
        self.running.peek().map(|Reverse(e)| e.at)
    }

    /// Finishes the orphans whose time is up.
    pub(super) fn run_due(&mut self, pods: &PodTable) {
        let now = Instant::now();
        while self.running.peek().is_some_and(|Reverse(e)| e.at <= now) {
            let Some(Reverse(e)) = self.running.pop() else {
                break;
            };
            let phase = if e.fails {
                Phase::Failed
            } else {
                Phase::Succeeded
            };
            pods.set_state(&e.namespace, &e.name, phase, e.restarts);
        }
    }
}
