//! The simulated kube-controller-manager of one cluster: the job controller (pods, status,
//! suspend, backoff, deadlines), the TTL-after-finished controller, the garbage collector's
//! part in deletions, and the namespace controller's clean-up.
//!
//! It is event-driven, like the real controllers: the store tells it which object changed, it
//! reconciles that one object, and it sets one timer per Job for the next moment something
//! happens to it (its earliest pod ending, its deadline, its TTL). Nothing scans all Jobs, so a
//! cluster with thousands of idle Jobs costs nothing between events.
//!
//! Pods are virtual ([`super::pods`]): each runs for the template's `fedjob.io/sim-duration`
//! (or the cluster default) and succeeds, or fails when the template carries the label
//! `fedjob-test/fail: "true"`. In a cluster without nodes a pod runs as soon as it exists and
//! no kubelet reports readiness, so `status.ready` stays 0, as in `k8s-facts/`. In a cluster
//! with nodes ([`nodes`]) a pod waits for the scheduler ([`super::sched`]) to bind it, runs
//! from then on if the node's kubelet runs pods, and counts in `status.ready` while it runs;
//! pending pods count in `status.active` all along (`34-job-partly-unschedulable.json`).
//! Orphaned pods run to their end, as a kubelet would run them ([`orphans`]).

mod nodes;
mod orphans;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fedjob_proto::duration;
use fedjob_proto::shutdown::Shutdown;
use fedjob_scheduler::kube_api::clock;
use fedjob_scheduler::kube_api::params::{DeleteOptions, Propagation};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::namespace;
use super::pods::{Owner, Phase, Placement, PodRecord, PodTable};
use super::resource::Resource;
use super::sched::demand::Demand;
use super::sched::{Queued, Scheduler};
use super::store::{Object, ObjectKey, Store};
use super::writes::{self, Writer};

/// Annotation on a Job's pod template: how long each simulated pod runs (`2s`, `500ms`).
pub const DURATION_ANNOTATION: &str = "fedjob.io/sim-duration";
/// Label on a Job's pod template that makes every simulated pod fail.
pub const FAIL_LABEL: &str = "fedjob-test/fail";

/// How the simulated pods behave.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long a pod runs when its template does not say.
    pub pod_duration: Duration,
}

#[derive(Debug)]
struct SimPod {
    name: String,
    /// When it ends; `None` while it is not running (waiting for a node, or bound to a node
    /// whose kubelet does not run pods).
    ends: Option<Instant>,
    /// How long it runs once started.
    duration: Duration,
    fails: bool,
    restarts: u32,
    /// Running on a node (so Ready, as containers without probes are).
    ready: bool,
    /// Its node went away: it failed (the pod garbage collector's doing).
    lost: bool,
}

/// What the controller knows about one Job beyond what its status says.
#[derive(Debug)]
struct SimJob {
    uid: String,
    active: Vec<SimPod>,
    succeeded: i64,
    failed: i64,
    /// When `status.startTime` was last set, for `activeDeadlineSeconds`.
    started: Option<Instant>,
    /// When the Job finished, for `ttlSecondsAfterFinished`.
    finished: Option<Instant>,
    /// The timer currently set for this Job.
    wake: Option<Instant>,
    /// What each of its pods asks of a node (the template cannot change).
    demand: Option<Arc<Demand>>,
}

/// The controller of one cluster; [`Controller::run`] drives it.
pub struct Controller {
    store: Arc<Store>,
    pods: Arc<PodTable>,
    config: ControllerConfig,
    jobs: HashMap<ObjectKey, SimJob>,
    timers: BinaryHeap<Reverse<(Instant, u64, ObjectKey)>>,
    timer_seq: u64,
    dirty: HashSet<ObjectKey>,
    /// The scheduler, in a cluster with nodes.
    scheduler: Option<Scheduler>,
    /// Pods whose Job let go of them, still running.
    orphans: orphans::Orphans,
}

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// The `Instant` of a wall-clock timestamp in the past (now when unparsable).
fn instant_of(timestamp: Option<&str>, now: Instant) -> Instant {
    let ago = timestamp.map(clock::since).unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

fn condition_true(status: &Value, kind: &str) -> bool {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

fn new_condition(kind: &str, reason: Option<&str>, message: Option<&str>, now: &str) -> Value {
    let mut c =
        json!({"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// `ensureJobConditionStatus`: sets an existing condition's status (with a new reason and
/// transition time) or adds it when it should be true; returns whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c["type"] == kind) {
        if c["status"] == status {
            return false;
        }
        c["status"] = json!(status);
        c["reason"] = json!(reason);
        c["message"] = json!(message);
        c["lastProbeTime"] = json!(now);
        c["lastTransitionTime"] = json!(now);
        return true;
    }
    if status == "True" {
        let mut c = new_condition(kind, Some(reason), Some(message), now);
        c["status"] = json!(status);
        conditions.push(c);
        return true;
    }
    false
}

impl Controller {
    /// A controller for the cluster whose objects are in `store` and pods in `pods`.
    pub fn new(store: Arc<Store>, pods: Arc<PodTable>, config: ControllerConfig) -> Self {
        Self {
            store,
            pods,
            config,
            jobs: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            dirty: HashSet::new(),
            scheduler: None,
            orphans: orphans::Orphans::default(),
        }
    }

    /// The same controller with a scheduler: pods wait for a node, and nodes are reconciled.
    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Reconciles every changed object and every due timer until `shutdown`.
    pub async fn run(
        mut self,
        mut changes: mpsc::UnboundedReceiver<ObjectKey>,
        shutdown: Shutdown,
    ) {
        loop {
            while let Ok(key) = changes.try_recv() {
                self.dirty.insert(key);
            }
            self.collect_due_timers();
            self.orphans.run_due(&self.pods);
            if !self.dirty.is_empty() {
                let keys: Vec<ObjectKey> = self.dirty.drain().collect();
                for key in keys {
                    self.reconcile(&key);
                }
                self.schedule_pods();
                // Let the HTTP side run between batches on a busy runtime.
                tokio::task::yield_now().await;
                continue;
            }
            // Orphans that finished may have made room for pending pods.
            self.schedule_pods();
            if !self.dirty.is_empty() {
                continue;
            }
            let next = [
                self.timers.peek().map(|Reverse((at, _, _))| *at),
                self.orphans.next_end(),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                key = changes.recv() => match key {
                    Some(key) => { self.dirty.insert(key); }
                    None => return,
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
                _ = shutdown.fired() => return,
            }
        }
    }

    fn collect_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, _, key))) = self.timers.pop() else {
                break;
            };
            // Only the latest timer of a Job counts; older ones were superseded.
            if let Some(job) = self.jobs.get_mut(&key)
                && job.wake == Some(at)
            {
                job.wake = None;
                self.dirty.insert(key);
            }
        }
    }

    fn schedule(&mut self, key: &ObjectKey, at: Option<Instant>) {
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        let Some(at) = at else {
            job.wake = None;
            return;
        };
        if job.wake == Some(at) {
            return;
        }
        job.wake = Some(at);
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, key.clone())));
    }

    fn reconcile(&mut self, key: &ObjectKey) {
        match key.resource {
            Resource::Job => self.reconcile_job(key),
            Resource::Namespace => self.reconcile_namespace(key),
            Resource::Node => self.reconcile_node(key),
        }
    }

    /// The namespace controller: a terminating namespace loses its Jobs, then goes.
    fn reconcile_namespace(&mut self, key: &ObjectKey) {
        let Some(ns) = self.store.get(key) else {
            return;
        };
        if !namespace::terminating(&ns.value()) {
            return;
        }
        let writer = Writer::new(&self.store, writes::CONTROLLER_MANAGER, false);
        let (jobs, _) = self.store.list(Resource::Job, Some(&key.name));
        let options = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..DeleteOptions::default()
        };
        for job in &jobs {
            if let Err(err) = writer.delete(&job.key, &options) {
                tracing::debug!(job = %job.key.name, %err, "namespace clean-up could not delete a job");
            }
        }
        if self.store.count_in(Resource::Job, &key.name) == 0 {
            let _ = self.store.delete(key, None);
        }
    }

    fn pod_duration(&self, template: &Value) -> Duration {
        template
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DURATION_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|d| duration::parse(d).ok())
            .unwrap_or(self.config.pod_duration)
    }

    fn reconcile_job(&mut self, key: &ObjectKey) {
        let Some(object) = self.store.get(key) else {
            // Gone (background deletion or finalized): collect its pods.
            if let Some(job) = self.jobs.remove(key) {
                self.pods.remove_owned(&job.uid);
            }
            self.dirty
                .insert(ObjectKey::new(Resource::Namespace, "", &key.namespace));
            return;
        };
        let uid = object.uid().to_owned();
        if self.jobs.get(key).is_some_and(|j| j.uid != uid) {
            // Deleted and re-created between two looks: the old one's pods go.
            if let Some(old) = self.jobs.remove(key) {
                self.pods.remove_owned(&old.uid);
            }
        }
        let value = object.value();
        if value
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
        {
            self.finalize(key, &object, &value);
            return;
        }
        let status = value.get("status").cloned().unwrap_or_else(|| json!({}));
        let now = Instant::now();
        let job = self.jobs.entry(key.clone()).or_insert_with(|| SimJob {
            uid: uid.clone(),
            active: Vec::new(),
            succeeded: int(&status, "/succeeded").unwrap_or(0),
            failed: int(&status, "/failed").unwrap_or(0),
            started: None,
            finished: None,
            wake: None,
            demand: None,
        });
        if condition_true(&status, "Complete") || condition_true(&status, "Failed") {
            let finished = *job.finished.get_or_insert_with(|| {
                let at = status
                    .get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter().find(|c| {
                            c["status"] == "True"
                                && (c["type"] == "Complete" || c["type"] == "Failed")
                        })
                    })
                    .and_then(|c| c["lastTransitionTime"].as_str());
                instant_of(at, now)
            });
            self.expire_or_schedule_ttl(key, &object, &value, finished, now);
            return;
        }
        let new_status = self.sync_job(key, &object, &value, &status, now);
        if new_status != status {
            let writer = Writer::new(&self.store, writes::CONTROLLER_MANAGER, false);
            if let Err(err) = writer.write_status(key, object.rv, new_status) {
                // Someone wrote the Job meanwhile; their change brings us back here.
                tracing::trace!(job = %key.name, %err, "status write lost a race");
                self.dirty.insert(key.clone());
            }
        }
    }

    /// Runs the Job's pods forward to now and returns the status it should have; sets the
    /// Job's next timer.
    fn sync_job(
        &mut self,
        key: &ObjectKey,
        object: &Object,
        value: &Value,
        status: &Value,
        now: Instant,
    ) -> Value {
        let spec = value.get("spec").cloned().unwrap_or(Value::Null);
        let template = spec.get("template").cloned().unwrap_or(Value::Null);
        let pod_duration = self.pod_duration(&template);
        let fails = template
            .pointer("/metadata/labels")
            .and_then(|l| l.get(FAIL_LABEL))
            .and_then(Value::as_str)
            == Some("true");
        let on_failure = template
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            == Some("OnFailure");
        let suspended = spec.get("suspend").and_then(Value::as_bool) == Some(true);
        let parallelism = int(&spec, "/parallelism").unwrap_or(1).max(0);
        let completions = int(&spec, "/completions");
        let backoff_limit = int(&spec, "/backoffLimit").unwrap_or(6);
        let deadline = int(&spec, "/activeDeadlineSeconds");
        let wall = clock::now();
        let pods = self.pods.clone();
        let job = self.jobs.get_mut(key).expect("inserted by the caller");

        // Pods that ran their time.
        let mut new_failure = false;
        let mut i = 0;
        while i < job.active.len() {
            let pod = &mut job.active[i];
            if !pod.lost && pod.ends.is_none_or(|ends| ends > now) {
                i += 1;
                continue;
            }
            if pod.fails && on_failure && !pod.lost {
                // The kubelet restarts the container in place.
                pod.restarts += 1;
                pod.ends = Some(now + pod_duration);
                pods.set_state(&key.namespace, &pod.name, Phase::Running, pod.restarts);
                i += 1;
                continue;
            }
            let phase = if pod.fails || pod.lost {
                job.failed += 1;
                new_failure = true;
                Phase::Failed
            } else {
                job.succeeded += 1;
                Phase::Succeeded
            };
            pods.set_state(&key.namespace, &pod.name, phase, pod.restarts);
            job.active.remove(i);
        }

        let mut conditions: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut start_time = status
            .get("startTime")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut completion_time = None;
        if start_time.is_none() && !suspended {
            start_time = Some(wall.clone());
            job.started = Some(now);
        }
        if job.started.is_none() && start_time.is_some() {
            job.started = Some(instant_of(start_time.as_deref(), now));
        }

        let restarts: i64 = job.active.iter().map(|p| i64::from(p.restarts)).sum();
        let backoff_exceeded = if on_failure {
            if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            }
        } else {
            new_failure && job.failed > backoff_limit
        };
        let past_deadline = !suspended
            && deadline.is_some_and(|d| {
                job.started
                    .is_some_and(|s| now >= s + Duration::from_secs(d.max(0) as u64))
            });
        let failure = if backoff_exceeded {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if past_deadline {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };

        if let Some((reason, message)) = failure {
            // The pods still running are killed and counted as failed.
            job.failed += job.active.len() as i64;
            for pod in job.active.drain(..) {
                pods.remove(&key.namespace, &pod.name);
            }
            conditions.push(new_condition("Failed", Some(reason), Some(message), &wall));
            job.finished = Some(now);
        } else {
            if suspended {
                for pod in job.active.drain(..) {
                    pods.remove(&key.namespace, &pod.name);
                }
            } else {
                let active = job.active.len() as i64;
                let want = match completions {
                    None if job.succeeded > 0 => active,
                    None => parallelism,
                    Some(c) => (c - job.succeeded).clamp(0, parallelism),
                };
                while (job.active.len() as i64) > want {
                    // Pods not running yet go first, then the youngest (`ActivePods` order).
                    let last = job.active.len() - 1;
                    let i = job
                        .active
                        .iter()
                        .rposition(|p| p.ends.is_none())
                        .unwrap_or(last);
                    let pod = job.active.remove(i);
                    pods.remove(&key.namespace, &pod.name);
                }
                let owner = Owner {
                    name: key.name.clone(),
                    uid: object.uid().to_owned(),
                };
                // Serialized once per sync that starts pods, shared by them.
                let shared = (want > active).then(|| {
                    let labels = template
                        .pointer("/metadata/labels")
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    (bytes::Bytes::from(template.to_string()), Arc::new(labels))
                });
                let demand = match (&self.scheduler, &job.demand) {
                    (None, _) => None,
                    (Some(_), Some(d)) => Some(d.clone()),
                    (Some(_), None) => {
                        let d = Arc::new(Demand::of_template(&template));
                        job.demand = Some(d.clone());
                        Some(d)
                    }
                };
                let scheduled = demand.is_some();
                let base: String = key.name.chars().take(58).collect();
                for (template_json, labels) in (active..want).filter_map(|_| shared.clone()) {
                    // A generated name can collide (one in 14 million per pair); the real
                    // controller's create is then refused and retried under a new name.
                    let name = loop {
                        let name = format!("{base}-{}", writes::random_suffix());
                        let created = pods.insert(PodRecord {
                            namespace: key.namespace.clone(),
                            name: name.clone(),
                            uid: uuid::Uuid::new_v4().to_string(),
                            rv: 0,
                            created: wall.clone(),
                            phase: if scheduled {
                                Phase::Pending
                            } else {
                                Phase::Running
                            },
                            restarts: 0,
                            owner: Some(owner.clone()),
                            job_name: key.name.clone(),
                            template: template_json.clone(),
                            labels: labels.clone(),
                            placement: if scheduled {
                                Placement::Pending(None)
                            } else {
                                Placement::Unscheduled
                            },
                            demand: demand.clone(),
                        });
                        if created {
                            break name;
                        }
                    };
                    if let Some(scheduler) = &mut self.scheduler {
                        scheduler.enqueue(Queued {
                            job: key.clone(),
                            pod: name.clone(),
                        });
                    }
                    job.active.push(SimPod {
                        name,
                        ends: (!scheduled).then(|| now + pod_duration),
                        duration: pod_duration,
                        fails,
                        restarts: 0,
                        ready: false,
                        lost: false,
                    });
                }
            }
            let active = job.active.len();
            let complete = match completions {
                None => job.succeeded > 0 && active == 0,
                Some(c) => job.succeeded >= c && active == 0,
            };
            if complete {
                conditions.push(new_condition("Complete", None, None, &wall));
                completion_time = Some(wall.clone());
                job.finished = Some(now);
            } else if suspended {
                ensure_condition(
                    &mut conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &wall,
                );
            } else if ensure_condition(
                &mut conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                &wall,
            ) {
                // A resumed Job's deadline counts from the resume.
                start_time = Some(wall.clone());
                job.started = Some(now);
            }
        }

        let mut out = Map::new();
        if !conditions.is_empty() {
            out.insert("conditions".into(), Value::Array(conditions));
        }
        if let Some(t) = start_time {
            out.insert("startTime".into(), json!(t));
        }
        if let Some(t) = completion_time {
            out.insert("completionTime".into(), json!(t));
        }
        for (field, n) in [
            ("active", job.active.len() as i64),
            ("succeeded", job.succeeded),
            ("failed", job.failed),
        ] {
            if n > 0 {
                out.insert(field.into(), json!(n));
            }
        }
        let ready = job.active.iter().filter(|p| p.ready).count();
        out.insert("ready".into(), json!(ready));

        let mut wake = job.active.iter().filter_map(|p| p.ends).min();
        if job.finished.is_none()
            && !suspended
            && let (Some(d), Some(s)) = (deadline, job.started)
        {
            let at = s + Duration::from_secs(d.max(0) as u64);
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        let finished = job.finished;
        self.schedule(key, wake);
        if let Some(finished) = finished {
            self.expire_or_schedule_ttl(key, object, value, finished, now);
        }
        Value::Object(out)
    }

    /// The TTL-after-finished controller: deletes a finished Job once its TTL passed (as the
    /// real one, with foreground propagation), or sets the timer for it.
    fn expire_or_schedule_ttl(
        &mut self,
        key: &ObjectKey,
        object: &Object,
        value: &Value,
        finished: Instant,
        now: Instant,
    ) {
        let Some(ttl) = int(value, "/spec/ttlSecondsAfterFinished") else {
            self.schedule(key, None);
            return;
        };
        let expires = finished + Duration::from_secs(ttl.max(0) as u64);
        if expires > now {
            self.schedule(key, Some(expires));
            return;
        }
        let writer = Writer::new(&self.store, writes::CONTROLLER_MANAGER, false);
        let options = DeleteOptions {
            propagation: Some(Propagation::Foreground),
            uid: Some(object.uid().to_owned()),
            resource_version: None,
        };
        if let Err(err) = writer.delete(key, &options) {
            tracing::debug!(job = %key.name, %err, "TTL deletion failed");
        }
    }

    /// The garbage collector's part of a deletion: orphan or delete the pods, then drop the
    /// finalizer that asked for it.
    fn finalize(&mut self, key: &ObjectKey, object: &Object, value: &Value) {
        let finalizers: Vec<String> = value
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let uid = object.uid().to_owned();
        let writer = Writer::new(&self.store, writes::CONTROLLER_MANAGER, false);
        for finalizer in finalizers {
            match finalizer.as_str() {
                "orphan" => {
                    if let Some(job) = self.jobs.remove(key) {
                        let restarts_in_place = value
                            .pointer("/spec/template/spec/restartPolicy")
                            .and_then(Value::as_str)
                            == Some("OnFailure");
                        self.orphans
                            .adopt(&key.namespace, job.active, restarts_in_place);
                    }
                    self.pods.orphan_owned(&uid);
                }
                "foregroundDeletion" => {
                    self.jobs.remove(key);
                    self.pods.remove_owned(&uid);
                }
                _ => continue,
            }
            if let Err(err) = writer.remove_finalizer(key, &finalizer) {
                tracing::debug!(job = %key.name, %err, "could not remove finalizer");
            }
        }
    }
}
