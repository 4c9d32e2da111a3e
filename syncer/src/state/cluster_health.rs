//! How the member cluster's API server has been answering the syncer, so that `/readyz` can
//! say what is wrong while it is wrong: unreachable (refused, reset, a certificate not
//! trusted), answering with trouble (`429` with its `Retry-After`, `5xx`, `401`/`403` as RBAC
//! words it), not answering in time, slower than the API server's latency objectives, or the
//! shards being listed afresh after the watch expired (`410`).
//!
//! Every request is recorded when it starts and when it ends (by the client's observing layer,
//! once per attempt, so a `429` the client waits out still shows), with the time passed in;
//! [`ClusterHealth::problems`] words what is wrong at a given moment.
//!
//! How long a trouble lasts depends on whose it is. A refusal (`401`, `403`) is about one
//! operation (RBAC grants verbs on resources): it lasts until that operation is answered well.
//! A struggling server (`429`, `5xx`, no answer in time, slow answers) is about the server: it
//! lasts until a request sent after it is answered well and in time, by whatever operation, or
//! until a shard's reconcile begun after it gets its work done ([`ClusterHealth::settled`]):
//! the syncer need not repeat the very request (after a timed-out create, it finds the Job
//! made and has nothing more to ask). Unreachable lasts until anything answers. Whatever nothing runs into again
//! for [`FORGET_AFTER`] is forgotten.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use fedjob_proto::duration;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::rules::request::Operation;

/// A trouble nothing has run into again for this long is forgotten: longer than the longest
/// wait between two tries of the watch (30 s) and of a shard's reconcile (64 s).
pub const FORGET_AFTER: Duration = Duration::from_secs(120);

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The API server answered.
    Answered {
        /// The HTTP status code.
        code: u16,
        /// For an answer that means trouble: the status line's words (`Too Many Requests`).
        phrase: String,
        /// For an answer that means trouble: the `Status` message, or the body's text.
        message: String,
        /// The `Retry-After` header, in seconds.
        retry_after: Option<u64>,
    },
    /// No answer: the connection could not be made or broke (refused, reset, TLS).
    Failed(String),
    /// No answer within this limit; the request was abandoned.
    TimedOut(Duration),
}

impl Outcome {
    /// An answer with `code` and nothing more to say (a success, a `404`, a `409`).
    pub fn answered(code: u16) -> Outcome {
        Outcome::Answered {
            code,
            phrase: String::new(),
            message: String::new(),
            retry_after: None,
        }
    }
}

/// Whether an answer with `code` means the API server is in trouble or refuses the syncer, as
/// opposed to answering the question (`404`, `409`, `410`, `422` are answers).
pub fn is_trouble(code: u16) -> bool {
    matches!(code, 401 | 403 | 429) || code >= 500
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Trouble {
    Answered {
        status: String,
        message: String,
        retry_after: Option<u64>,
    },
    TimedOut(Duration),
    Slow(Duration),
}

impl Trouble {
    /// Whether it is the server refusing this operation (RBAC, credentials), rather than the
    /// server struggling.
    fn is_refusal(&self) -> bool {
        matches!(self, Trouble::Answered { status, .. } if status.starts_with("401") || status.starts_with("403"))
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The last trouble of each operation, and when it was seen.
    troubles: BTreeMap<Operation, (Trouble, Instant)>,
    /// Why the last request found no server, until any request gets an answer.
    unreachable: Option<(String, Instant)>,
    in_flight: HashMap<u64, (Operation, Instant)>,
    next: u64,
    /// Why the shards are being listed afresh, until the list is done.
    relisting: Option<String>,
}

/// The member cluster's API server as the syncer has found it.
#[derive(Debug, Default)]
pub struct ClusterHealth {
    inner: Mutex<Inner>,
}

/// A request in flight, from [`ClusterHealth::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(u64);

impl ClusterHealth {
    /// A request for `operation` starts at `now`.
    pub fn begin(&self, operation: Operation, now: Instant) -> RequestId {
        let mut inner = self.inner.lock();
        inner.next += 1;
        let id = inner.next;
        inner.in_flight.insert(id, (operation, now));
        RequestId(id)
    }

    /// The request `id` ended at `now` with `outcome`.
    pub fn end(&self, id: RequestId, outcome: Outcome, now: Instant) {
        let mut inner = self.inner.lock();
        let Some((operation, started)) = inner.in_flight.remove(&id.0) else {
            return;
        };
        match outcome {
            Outcome::Answered {
                code,
                phrase,
                message,
                retry_after,
            } => {
                inner.unreachable = None;
                let took = now.saturating_duration_since(started);
                let trouble = if is_trouble(code) {
                    Some(Trouble::Answered {
                        status: format!("{code} {phrase}").trim_end().to_owned(),
                        message,
                        retry_after,
                    })
                } else {
                    operation
                        .objective()
                        .filter(|limit| took > *limit)
                        .map(|_| Trouble::Slow(took))
                };
                match trouble {
                    Some(t) => {
                        inner.troubles.insert(operation, (t, now));
                    }
                    None => {
                        // Answered well and in time: this operation is fine, and so is the
                        // server, for every struggle seen before this request was sent.
                        inner.troubles.remove(&operation);
                        inner
                            .troubles
                            .retain(|_, (t, at)| t.is_refusal() || *at > started);
                    }
                }
            }
            Outcome::Failed(why) => inner.unreachable = Some((why, now)),
            Outcome::TimedOut(limit) => {
                inner
                    .troubles
                    .insert(operation, (Trouble::TimedOut(limit), now));
            }
        }
    }

    /// A shard's reconcile begun at `started` got its work done: the struggles seen before
    /// then are over (refusals stay: they are about one operation).
    pub fn settled(&self, started: Instant) {
        self.inner
            .lock()
            .troubles
            .retain(|_, (t, at)| t.is_refusal() || *at > started);
    }

    /// The shards are being listed afresh (`Some(why)`), or the list is done (`None`).
    pub fn relisting(&self, why: Option<String>) {
        self.inner.lock().relisting = why;
    }

    /// What is wrong at `now`, one sentence each; empty when nothing is.
    pub fn problems(&self, now: Instant) -> Vec<String> {
        let inner = self.inner.lock();
        let recent = |at: Instant| now.saturating_duration_since(at) < FORGET_AFTER;
        let server = "the member cluster's API server";
        let mut out = Vec::new();
        if let Some(why) = &inner.relisting {
            out.push(format!("re-listing this cluster's shards: {why}"));
        }
        if let Some((why, at)) = &inner.unreachable
            && recent(*at)
        {
            out.push(format!("{server} cannot be reached: {why}"));
        }
        for (operation, (trouble, at)) in &inner.troubles {
            if !recent(*at) {
                continue;
            }
            out.push(match trouble {
                Trouble::Answered {
                    status,
                    message,
                    retry_after,
                } => {
                    let wait = retry_after
                        .map(|s| format!(" (Retry-After: {s}s)"))
                        .unwrap_or_default();
                    format!("{server} answers {status} to {operation}{wait}: {message}")
                }
                Trouble::TimedOut(limit) => format!(
                    "{server} did not answer {operation} within {}",
                    duration::format(*limit)
                ),
                Trouble::Slow(took) => format!(
                    "{server} is slow: {operation} took {} (the API server's objective is {})",
                    rounded(*took),
                    operation
                        .objective()
                        .map(duration::format)
                        .unwrap_or_default()
                ),
            });
        }
        // The oldest request of each operation still waiting past its objective.
        let mut waiting: BTreeMap<&Operation, Duration> = BTreeMap::new();
        for (operation, started) in inner.in_flight.values() {
            let waited = now.saturating_duration_since(*started);
            if operation.objective().is_some_and(|limit| waited > limit) {
                let longest = waiting.entry(operation).or_default();
                *longest = (*longest).max(waited);
            }
        }
        for (operation, waited) in waiting {
            out.push(format!(
                "{server} is slow: {operation} has waited {} for an answer",
                rounded(waited)
            ));
        }
        out
    }
}

/// `d` to the millisecond, as people read it.
fn rounded(d: Duration) -> String {
    duration::format(Duration::from_millis(d.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(verb: &str) -> Operation {
        Operation {
            verb: verb.into(),
            resource: "jobs".into(),
        }
    }

    fn throttled(retry_after: u64) -> Outcome {
        Outcome::Answered {
            code: 429,
            phrase: "Too Many Requests".into(),
            message: "Too many requests, please try again later.".into(),
            retry_after: Some(retry_after),
        }
    }

    fn forbidden() -> Outcome {
        Outcome::Answered {
            code: 403,
            phrase: "Forbidden".into(),
            message: "jobs.batch is forbidden: User \"u\" cannot create resource \"jobs\"".into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_refusal_lasts_until_its_operation_is_answered_well() {
        let health = ClusterHealth::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let id = health.begin(op("create"), t0);
        health.end(id, forbidden(), t0);
        let expected = "the member cluster's API server answers 403 Forbidden to create jobs: jobs.batch is forbidden: User \"u\" cannot create resource \"jobs\"";
        assert_eq!(health.problems(t0), [expected]);
        let other = health.begin(op("get"), t0 + s);
        health.end(other, Outcome::answered(200), t0 + s);
        assert_eq!(
            health.problems(t0 + s),
            [expected],
            "RBAC grants each verb apart"
        );
        let again = health.begin(op("create"), t0 + s);
        health.end(again, Outcome::answered(201), t0 + s);
        assert!(health.problems(t0 + s).is_empty());
    }

    #[test]
    fn a_struggle_lasts_until_a_later_request_is_answered_well() {
        let health = ClusterHealth::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let before = health.begin(op("get"), t0);
        let id = health.begin(op("patch"), t0);
        health.end(id, throttled(2), t0 + s);
        let expected = "the member cluster's API server answers 429 Too Many Requests to patch jobs (Retry-After: 2s): Too many requests, please try again later.";
        assert_eq!(health.problems(t0 + s), [expected]);
        health.end(before, Outcome::answered(200), t0 + s);
        assert_eq!(
            health.problems(t0 + s),
            [expected],
            "a request sent before the 429 says nothing of it"
        );
        let after = health.begin(op("get"), t0 + 2 * s);
        health.end(after, Outcome::answered(404), t0 + 2 * s);
        assert!(health.problems(t0 + 2 * s).is_empty());
    }

    #[test]
    fn work_done_after_a_struggle_ends_it() {
        let health = ClusterHealth::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let id = health.begin(op("patch"), t0);
        health.end(id, Outcome::TimedOut(s), t0 + s);
        let id = health.begin(op("create"), t0);
        health.end(id, forbidden(), t0 + s);
        health.settled(t0);
        assert_eq!(
            health.problems(t0 + s).len(),
            2,
            "begun before: proves nothing"
        );
        health.settled(t0 + 2 * s);
        assert_eq!(
            health.problems(t0 + 2 * s),
            [
                "the member cluster's API server answers 403 Forbidden to create jobs: jobs.batch is forbidden: User \"u\" cannot create resource \"jobs\""
            ],
            "the refusal stays"
        );
    }

    #[test]
    fn answers_to_the_question_are_no_trouble() {
        for code in [200, 201, 404, 409, 410, 422] {
            assert!(!is_trouble(code), "{code}");
        }
        for code in [401, 403, 429, 500, 503, 504] {
            assert!(is_trouble(code), "{code}");
        }
    }

    #[test]
    fn unreachable_until_anything_answers() {
        let health = ClusterHealth::default();
        let t0 = Instant::now();
        let id = health.begin(op("watch"), t0);
        health.end(
            id,
            Outcome::Failed("tcp connect error: Connection refused".into()),
            t0,
        );
        assert_eq!(
            health.problems(t0),
            [
                "the member cluster's API server cannot be reached: tcp connect error: Connection refused"
            ]
        );
        let id = health.begin(op("list"), t0);
        health.end(id, Outcome::answered(200), t0);
        assert!(health.problems(t0).is_empty());
    }

    #[test]
    fn slow_and_unanswered_requests() {
        let health = ClusterHealth::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let waiting = health.begin(op("patch"), t0);
        let watch = health.begin(op("watch"), t0);
        assert!(health.problems(t0 + s).is_empty(), "within the objective");
        assert_eq!(
            health.problems(t0 + 3 * s / 2),
            ["the member cluster's API server is slow: patch jobs has waited 1.5s for an answer"],
            "a watch is never slow"
        );
        health.end(waiting, Outcome::answered(200), t0 + 2 * s);
        assert_eq!(
            health.problems(t0 + 2 * s),
            [
                "the member cluster's API server is slow: patch jobs took 2s (the API server's objective is 1s)"
            ]
        );
        let gave_up = health.begin(op("get"), t0);
        health.end(gave_up, Outcome::TimedOut(s), t0 + s);
        assert!(health.problems(t0 + 2 * s).contains(
            &"the member cluster's API server did not answer get jobs within 1s".to_owned()
        ));
        health.end(watch, Outcome::answered(200), t0 + 2 * s);
        let quick = health.begin(op("patch"), t0 + 2 * s);
        health.end(quick, Outcome::answered(200), t0 + 2 * s);
        let quick = health.begin(op("get"), t0 + 2 * s);
        health.end(quick, Outcome::answered(404), t0 + 2 * s);
        assert!(health.problems(t0 + 2 * s).is_empty());
    }

    #[test]
    fn troubles_nothing_runs_into_again_are_forgotten() {
        let health = ClusterHealth::default();
        let t0 = Instant::now();
        let id = health.begin(op("delete"), t0);
        health.end(id, throttled(1), t0);
        assert_eq!(
            health
                .problems(t0 + FORGET_AFTER - Duration::from_secs(1))
                .len(),
            1
        );
        assert!(health.problems(t0 + FORGET_AFTER).is_empty());
    }

    #[test]
    fn relisting_until_done() {
        let health = ClusterHealth::default();
        health.relisting(Some("the watch ended with 410 Expired: too old".into()));
        assert_eq!(
            health.problems(Instant::now()),
            ["re-listing this cluster's shards: the watch ended with 410 Expired: too old"]
        );
        health.relisting(None);
        assert!(health.problems(Instant::now()).is_empty());
    }
}
