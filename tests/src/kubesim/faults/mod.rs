//! Fault injection: a simulated cluster that fails the way a real API server fails, so the
//! syncer's handling of each failure can be tested.
//!
//! A [`Faults`] registry belongs to each cluster. A test (through [`SimCluster::faults`]) or
//! `fedjob-kubesim --fault` injects a [`FaultSpec`]: what fails ([`Fault`]: the server
//! unreachable, `429` with `Retry-After`, `500`, `503`, `403` as RBAC denies, added latency,
//! a watch or a continued list expired with `410`), which requests ([`Selector`]: verb,
//! resource, namespace, path), and for how long (a count of requests, a duration, a delay
//! before it starts). Every request passes [`Faults::decide`] before it is served; open
//! watches ask [`Faults::expire_open`] when the faults change; the server's listener follows
//! [`Faults::unreachable`]. Each request a fault hits is recorded ([`Faults::hits`]), so a
//! test waits for the fault to have happened instead of sleeping.
//!
//! [`SimCluster::faults`]: super::SimCluster::faults

pub mod answer;
pub mod rule;
pub mod spec;

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

pub use rule::{Active, DEFAULT_USER, Fault, FaultSpec, RequestInfo, Selector, ThrottleBody};

/// Most hits remembered (the oldest are forgotten first).
const HITS_KEPT: usize = 10_000;

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(u64);

/// One request a fault hit.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The fault.
    pub fault: FaultId,
    /// When.
    pub at: Instant,
    /// The request (`create jobs`).
    pub request: String,
}

/// What happens to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Answer only after this long.
    pub delay: Duration,
    /// Answer with this failure instead of serving the request.
    pub fail: Option<Fault>,
    /// Serve the watch, but end it at once with `410 Expired`.
    pub expire_watch: bool,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    faults: Vec<(FaultId, Active)>,
    hits: VecDeque<Hit>,
}

impl State {
    fn hit(&mut self, fault: FaultId, at: Instant, request: &RequestInfo) {
        if self.hits.len() == HITS_KEPT {
            self.hits.pop_front();
        }
        self.hits.push_back(Hit {
            fault,
            at,
            request: request.describe(),
        });
    }
}

/// The faults of one cluster.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
    /// Bumped on every injection and removal.
    version: watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            version: watch::channel(0).0,
        }
    }
}

impl Faults {
    /// Injects a fault; it starts after `spec.after`.
    pub fn inject(&self, spec: FaultSpec) -> FaultId {
        let id = {
            let mut state = self.state.lock();
            state.next += 1;
            let id = FaultId(state.next);
            tracing::info!(fault = spec.fault.name(), ?spec, "fault injected");
            state.faults.push((id, Active::new(spec, Instant::now())));
            id
        };
        self.version.send_modify(|v| *v += 1);
        id
    }

    /// Removes a fault (the requests it hit stay recorded).
    pub fn remove(&self, id: FaultId) {
        self.state.lock().faults.retain(|(i, _)| *i != id);
        self.version.send_modify(|v| *v += 1);
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.state.lock().faults.clear();
        self.version.send_modify(|v| *v += 1);
    }

    /// The requests `id` hit, in order.
    pub fn hits(&self, id: FaultId) -> Vec<Hit> {
        let state = self.state.lock();
        state
            .hits
            .iter()
            .filter(|h| h.fault == id)
            .cloned()
            .collect()
    }

    /// Whether `id` can still hit a request (in force now or later).
    pub fn is_active(&self, id: FaultId) -> bool {
        let now = Instant::now();
        let state = self.state.lock();
        state.faults.iter().any(|(i, a)| *i == id && !a.spent(now))
    }

    /// Decides what happens to `request`, counting the hits: the latency of every slow fault
    /// that selects it, and the first failure that does.
    pub fn decide(&self, request: &RequestInfo) -> Decision {
        let now = Instant::now();
        let mut decision = Decision::default();
        let mut state = self.state.lock();
        let mut hit = Vec::new();
        for (id, active) in state.faults.iter_mut() {
            if !active.hits(request, now) {
                continue;
            }
            match &active.spec.fault {
                Fault::Slow { delay } => decision.delay += *delay,
                Fault::Expire if request.verb == "watch" => {
                    if decision.expire_watch || decision.fail.is_some() {
                        continue;
                    }
                    decision.expire_watch = true;
                }
                fault => {
                    if decision.fail.is_some() || decision.expire_watch {
                        continue;
                    }
                    decision.fail = Some(fault.clone());
                }
            }
            active.take();
            hit.push(*id);
        }
        for id in hit {
            state.hit(id, now, request);
        }
        decision
    }

    /// Whether an open `watch` must end now with `410 Expired` (counting the hit).
    pub fn expire_open(&self, watch: &RequestInfo) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock();
        let found = state
            .faults
            .iter_mut()
            .find(|(_, a)| a.spec.fault == Fault::Expire && a.hits(watch, now));
        let Some((id, active)) = found else {
            return false;
        };
        active.take();
        let id = *id;
        state.hit(id, now, watch);
        true
    }

    /// Whether the API server is to be unreachable now.
    pub fn unreachable(&self) -> bool {
        let now = Instant::now();
        self.state
            .lock()
            .faults
            .iter()
            .any(|(_, a)| a.spec.fault == Fault::Unreachable && a.in_force(now))
    }

    /// A receiver of changes, for [`Faults::changed`].
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Resolves when the faults may have changed since `changes` last saw them: one was
    /// injected or removed, or one starts or ends by time.
    pub async fn changed(&self, changes: &mut watch::Receiver<u64>) {
        let next = {
            let now = Instant::now();
            let state = self.state.lock();
            state
                .faults
                .iter()
                .filter_map(|(_, a)| a.next_change(now))
                .min()
        };
        let at_next = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changes.changed() => {}
            _ = at_next => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn request(method: Method, uri: &str) -> RequestInfo {
        RequestInfo::of(&method, &uri.parse().unwrap())
    }

    #[tokio::test]
    async fn the_first_failure_answers_and_latencies_add_up() {
        let faults = Faults::default();
        let create = request(Method::POST, "/apis/batch/v1/namespaces/default/jobs");
        let slow = faults.inject(
            FaultSpec::new(Fault::Slow {
                delay: Duration::from_millis(300),
            })
            .count(1),
        );
        let throttled = faults.inject(
            FaultSpec::new(Fault::throttle())
                .verbs(&["create"])
                .count(2),
        );
        let denied = faults.inject(FaultSpec::new(Fault::forbidden()).verbs(&["create"]));
        let first = faults.decide(&create);
        assert_eq!(first.delay, Duration::from_millis(300));
        assert_eq!(first.fail, Some(Fault::throttle()));
        let second = faults.decide(&create);
        assert_eq!(
            (second.delay, second.fail),
            (Duration::ZERO, Some(Fault::throttle()))
        );
        assert_eq!(faults.decide(&create).fail, Some(Fault::forbidden()));
        assert_eq!(faults.hits(slow).len(), 1);
        assert_eq!(faults.hits(throttled).len(), 2);
        assert_eq!(
            faults.hits(denied).len(),
            1,
            "hit only once the 429s were spent"
        );
        assert_eq!(faults.hits(throttled)[0].request, "create jobs");
        assert!(!faults.is_active(throttled));
        faults.remove(denied);
        assert_eq!(faults.decide(&create), Decision::default());
    }

    #[tokio::test]
    async fn watches_expire_when_they_start_or_while_open() {
        let faults = Faults::default();
        let watch = request(Method::GET, "/apis/batch/v1/jobs?watch=true");
        assert!(!faults.expire_open(&watch));
        let id = faults.inject(FaultSpec::new(Fault::Expire).count(2));
        assert!(faults.decide(&watch).expire_watch);
        assert!(faults.expire_open(&watch));
        assert!(
            !faults.expire_open(&watch),
            "two watches expired, then spent"
        );
        assert_eq!(faults.hits(id).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_announced_when_injected_and_when_time_ends_a_fault() {
        let faults = std::sync::Arc::new(Faults::default());
        let mut changes = faults.changes();
        let waiter = tokio::spawn({
            let faults = faults.clone();
            let mut changes = faults.changes();
            async move { faults.changed(&mut changes).await }
        });
        let id = faults.inject(FaultSpec::new(Fault::Unreachable).lasting(Duration::from_secs(5)));
        waiter.await.unwrap();
        assert!(faults.unreachable());
        changes.borrow_and_update();
        let before = Instant::now();
        faults.changed(&mut changes).await;
        assert_eq!(Instant::now() - before, Duration::from_secs(5));
        assert!(!faults.unreachable());
        assert!(!faults.is_active(id));
    }
}
