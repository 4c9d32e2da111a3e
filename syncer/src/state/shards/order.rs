//! Placing what a worker reads or writes in the order the watch delivers events.
//!
//! A shard's Job is seen two ways: the watch's events, in the order the API server delivers
//! them, and the answers to a worker's own requests, which can be ahead of the watch (a write
//! answered before its event arrives) or behind it (events delivered while the request was in
//! flight). Kubernetes defines `resourceVersion`s as opaque strings, so they are never compared
//! as numbers, only for equality:
//! - the versions the watch delivers while a worker works on the shard are kept (with the one
//!   before it began); an answer at one of them is not newer than the watch, and is dropped;
//! - any other answer is newer than everything delivered (its version came into being while the
//!   request was in flight, and the watch has not delivered it yet): it is taken, and the watch's
//!   events are older than it until the watch delivers that very version.

/// Where the watch stands on one shard's name.
#[derive(Debug, Default)]
pub struct Order {
    /// The version of the last watch event for this name.
    watched: Option<Box<str>>,
    /// While a worker has the shard: the versions delivered since it began, the last one
    /// before it first.
    window: Option<Vec<Box<str>>>,
    /// The version of an answer newer than the watch, until the watch delivers it.
    awaited: Option<Box<str>>,
}

impl Order {
    /// A worker begins on the shard.
    pub fn begin(&mut self) {
        self.window = Some(self.watched.iter().cloned().collect());
    }

    /// The worker is done with the shard.
    pub fn end(&mut self) {
        self.window = None;
    }

    /// The watch delivered an event at version `rv`; returns whether its object is current, or
    /// older than an answer already taken.
    pub fn delivered(&mut self, rv: Option<&str>) -> bool {
        let Some(rv) = rv else {
            return true;
        };
        self.watched = Some(rv.into());
        if let Some(window) = self.window.as_mut() {
            window.push(rv.into());
        }
        match self.awaited.as_deref() {
            Some(awaited) if awaited != rv => false,
            Some(_) => {
                self.awaited = None;
                true
            }
            None => true,
        }
    }

    /// A worker's request was answered with the object at version `rv`; returns whether it is
    /// newer than what the watch delivered (and is to be taken).
    pub fn answered(&mut self, rv: Option<&str>) -> bool {
        let Some(rv) = rv else {
            return true;
        };
        let delivered = match &self.window {
            Some(window) => window.iter().any(|v| **v == *rv),
            None => self.watched.as_deref() == Some(rv),
        };
        if delivered {
            return false;
        }
        self.awaited = Some(rv.into());
        true
    }

    /// The watch listed afresh: what it lists is current.
    pub fn relisted(&mut self) {
        self.awaited = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One thing that happens to a Job and the syncer's view of it.
    #[derive(Debug, Clone, Copy)]
    enum Happening {
        /// Someone changes the Job: a new version.
        Change,
        /// The watch delivers the next version it has not delivered yet.
        Deliver,
        /// A worker begins, reads or writes (a new version), and ends; after the answer was
        /// made, `changes` more versions are made by others and the watch delivers `during`
        /// versions, all while the answer is on its way.
        Work {
            write: bool,
            changes: usize,
            during: usize,
        },
    }

    fn happening() -> impl Strategy<Value = Happening> {
        prop_oneof![
            Just(Happening::Change),
            Just(Happening::Deliver),
            (any::<bool>(), 0usize..3, 0usize..4).prop_map(|(write, changes, during)| {
                Happening::Work {
                    write,
                    changes,
                    during,
                }
            }),
        ]
    }

    /// Version `i` as the server names it: the text of 1,000,000 − i, so that compared as
    /// numbers a newer version looks older.
    fn version(i: usize) -> String {
        (1_000_000 - i).to_string()
    }

    /// The syncer's view in the model: what it holds, and how far the watch has delivered.
    struct View {
        order: Order,
        held: usize,
        delivered: usize,
    }

    impl View {
        fn take(&mut self, i: usize) -> Result<(), TestCaseError> {
            prop_assert!(self.held <= i, "went back from {} to {}", self.held, i);
            self.held = i;
            Ok(())
        }

        fn deliver(&mut self, latest: usize) -> Result<(), TestCaseError> {
            if self.delivered < latest {
                self.delivered += 1;
                if self.order.delivered(Some(&version(self.delivered))) {
                    self.take(self.delivered)?;
                }
            }
            Ok(())
        }
    }

    proptest! {
        /// Whatever the interleaving of changes, watch events and a worker's reads and writes,
        /// the version held never goes back, and once the watch has delivered everything it is
        /// the latest.
        #[test]
        fn the_held_version_never_goes_back(happenings in proptest::collection::vec(happening(), 1..60)) {
            let mut view = View { order: Order::default(), held: 0, delivered: 0 };
            let mut latest = 0usize;
            for h in happenings {
                match h {
                    Happening::Change => latest += 1,
                    Happening::Deliver => view.deliver(latest)?,
                    Happening::Work { write, changes, during } => {
                        view.order.begin();
                        if write {
                            latest += 1;
                        }
                        let answer = latest;
                        latest += changes;
                        for _ in 0..during {
                            view.deliver(latest)?;
                        }
                        if answer > 0 && view.order.answered(Some(&version(answer))) {
                            view.take(answer)?;
                        }
                        view.order.end();
                    }
                }
            }
            while view.delivered < latest {
                view.deliver(latest)?;
            }
            prop_assert_eq!(view.held, latest);
        }
    }

    #[test]
    fn an_answer_the_watch_already_delivered_is_not_newer() {
        let mut order = Order::default();
        assert!(order.delivered(Some("x7")));
        order.begin();
        assert!(
            order.delivered(Some("a1")),
            "delivered while the request was in flight"
        );
        assert!(order.delivered(Some("k3")));
        assert!(!order.answered(Some("a1")), "older than k3");
        assert!(
            !order.answered(Some("x7")),
            "the version before the work began"
        );
        order.end();
        assert!(!order.answered(Some("k3")), "what the watch holds now");
    }

    #[test]
    fn events_before_an_answer_s_own_are_older_than_it() {
        let mut order = Order::default();
        assert!(order.delivered(Some("5")));
        order.begin();
        assert!(order.answered(Some("7")));
        order.end();
        assert!(!order.delivered(Some("6")), "from before the write");
        assert!(order.delivered(Some("7")), "the write's own event");
        assert!(order.delivered(Some("4")), "then every event is current");
    }

    #[test]
    fn a_relist_is_current() {
        let mut order = Order::default();
        assert!(order.answered(Some("9")));
        order.relisted();
        assert!(order.delivered(Some("3")));
    }
}
