//! What the syncer's integration tests run against: a simulated member cluster
//! (`fedjob_tests::kubesim`) and an in-process mock of the scheduler's `Agent` service that
//! behaves like the real one where the syncer can tell (assignments resent by revision after
//! `hello`, then `synced`), records everything the agent says, and lets a test push
//! assignments, refuse registrations and drop the stream.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fedjob_proto::v1::{
    AgentMessage, Assignment, AssignmentAction, AssignmentBatch, HeartbeatAck, Hello,
    RegisterRequest, RegisterResponse, SchedulerMessage, ShardPhase, ShardStatus, agent_message,
    agent_server::{Agent, AgentServer},
    scheduler_message,
};
use fedjob_syncer::Syncer;
use fedjob_syncer::config::Config;
use fedjob_tests::kubesim::{SimCluster, SimOptions, kubeconfig};
use futures::Stream;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// Heartbeat interval the mock asks for, short so tests run fast.
pub const HEARTBEAT_MS: u64 = 100;
/// Default time limit of an `eventually`.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`; panics with
/// `what` (and the mock's record, when given) otherwise.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

// ------------------------------------------------------------------ the simulated cluster

/// A simulated member cluster with a kubeconfig file pointing at it.
pub struct Sim {
    /// The cluster.
    pub cluster: SimCluster,
    /// Its kubeconfig (context = cluster name).
    pub kubeconfig: PathBuf,
    /// A kube client for the test's own reads and writes.
    pub client: kube::Client,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// Starts a cluster named `name` whose pods run for `pod_duration` unless told otherwise.
    pub async fn start(name: &str, pod_duration: Duration) -> Sim {
        Sim::start_with(SimOptions {
            name: name.to_owned(),
            pod_duration,
            ..SimOptions::default()
        })
        .await
    }

    /// Starts a cluster with `options` (faults, TLS, …).
    pub async fn start_with(options: SimOptions) -> Sim {
        let cluster = SimCluster::start(options)
            .await
            .expect("simulated cluster starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("kubeconfig");
        let yaml = kubeconfig::render(&[cluster.kubeconfig_context(None)]);
        std::fs::write(&path, &yaml).expect("kubeconfig written");
        // The test's own client reads the same kubeconfig (a TLS cluster's CA included).
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&yaml).expect("the kubeconfig parses"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("a kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        Sim {
            cluster,
            kubeconfig: path,
            client,
            _dir: dir,
        }
    }

    /// Jobs of `namespace`.
    pub fn jobs(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Reads a Job; `None` when it does not exist.
    pub async fn job(&self, namespace: &str, name: &str) -> Option<Job> {
        self.jobs(namespace).get_opt(name).await.expect("GET job")
    }

    /// A syncer configuration for this cluster against `scheduler` (any extra flags appended).
    pub fn config(&self, scheduler: &str, extra: &[&str]) -> Config {
        let mut args: Vec<String> = vec![
            "fedjob-syncer".into(),
            "--scheduler".into(),
            scheduler.into(),
            "--cluster-name".into(),
            self.cluster.name().into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--context".into(),
            self.cluster.name().into(),
            "--heartbeat-interval".into(),
            "1s".into(),
            "--shutdown-grace".into(),
            "5s".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Config::from_args(args).expect("valid flags")
    }

    /// Starts a syncer for this cluster (its kube client built from the kubeconfig file, as
    /// the binary does).
    pub async fn syncer(&self, scheduler: &str, extra: &[&str]) -> Syncer {
        let config = self.config(scheduler, extra);
        let cluster = fedjob_syncer::cluster::Cluster::connect(&config)
            .await
            .expect("kube client from the kubeconfig");
        Syncer::start(&config, cluster)
    }
}

/// A test PKI: a CA, a server certificate for `localhost`, a client certificate for a cluster.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: String,
    /// Server certificate and key (PEM).
    pub server: (String, String),
    /// Client certificate and key (PEM), DNS SAN = the cluster's name.
    pub client: (String, String),
}

impl Pki {
    /// Generates one.
    pub fn new(cluster: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "fedjob test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        Pki {
            ca: ca.pem(),
            server: leaf("localhost"),
            client: leaf(cluster),
        }
    }

    /// Writes the files a syncer needs into `dir`; returns the `--tls-*` flags.
    pub fn syncer_flags(&self, dir: &std::path::Path) -> Vec<String> {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("PEM written");
            path.display().to_string()
        };
        vec![
            "--tls-ca".into(),
            write("ca.pem", &self.ca),
            "--tls-cert".into(),
            write("client.pem", &self.client.0),
            "--tls-key".into(),
            write("client-key.pem", &self.client.1),
        ]
    }
}

// ------------------------------------------------------------------ probes

/// `GET path` on `addr` over plain HTTP/1.0: the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text page.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// ------------------------------------------------------------------ assignments

/// A shard assignment being built.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Federated Job uid.
    pub job_uid: String,
    /// Federated Job name.
    pub job: String,
    /// Namespace.
    pub namespace: String,
    /// Shard name.
    pub name: String,
    /// Parallelism.
    pub parallelism: i32,
    /// Completions.
    pub completions: Option<i32>,
    /// How long each simulated pod runs.
    pub pod_duration: String,
    /// Extra spec fields merged in.
    pub extra_spec: Value,
}

impl Shard {
    /// Shard `name` (also the federated Job's name) in `default`, parallelism 2, completions
    /// 4, pods that run for an hour.
    pub fn new(name: &str) -> Shard {
        Shard {
            job_uid: format!("uid-{name}"),
            job: name.to_owned(),
            namespace: "default".into(),
            name: name.to_owned(),
            parallelism: 2,
            completions: Some(4),
            pod_duration: "1h".into(),
            extra_spec: json!({}),
        }
    }

    /// In namespace `ns`.
    pub fn namespace(mut self, ns: &str) -> Shard {
        self.namespace = ns.to_owned();
        self
    }

    /// With these counts.
    pub fn counts(mut self, parallelism: i32, completions: Option<i32>) -> Shard {
        self.parallelism = parallelism;
        self.completions = completions;
        self
    }

    /// Pods run for `d` (a Go duration).
    pub fn pods_run(mut self, d: &str) -> Shard {
        self.pod_duration = d.to_owned();
        self
    }

    /// The manifest as the scheduler renders it (`scheduler/src/model/render.rs`).
    pub fn manifest(&self, revision: u64, suspend: bool) -> Value {
        let mut spec = json!({
            "parallelism": self.parallelism,
            "suspend": suspend,
            "backoffLimit": 6,
            "template": {
                "metadata": {"annotations": {"fedjob.io/sim-duration": self.pod_duration}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox", "command": ["sleep", "1"]}],
                },
            },
        });
        if let Some(c) = self.completions {
            spec["completions"] = json!(c);
        }
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), self.extra_spec.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "team": "demo",
                    "fedjob.io/job": self.job,
                    "fedjob.io/job-uid": self.job_uid,
                    "fedjob.io/managed-by": "fedjob",
                },
                "annotations": {
                    "fedjob.io/assignment-revision": revision.to_string(),
                    "fedjob.io/epoch": "1",
                },
            },
            "spec": spec,
        })
    }

    fn assignment(&self, action: AssignmentAction, revision: u64, create: bool) -> Assignment {
        let manifest = match action {
            AssignmentAction::Run => self.manifest(revision, false).to_string(),
            AssignmentAction::Suspend => self.manifest(revision, true).to_string(),
            _ => String::new(),
        };
        Assignment {
            job_uid: self.job_uid.clone(),
            namespace: self.namespace.clone(),
            shard: self.name.clone(),
            epoch: 1,
            generation: revision as i64,
            revision,
            action: action as i32,
            manifest,
            create,
        }
    }

    /// RUN at `revision`, creating allowed.
    pub fn run(&self, revision: u64) -> Assignment {
        self.assignment(AssignmentAction::Run, revision, true)
    }

    /// RUN at `revision` with an explicit `create`.
    pub fn run_create(&self, revision: u64, create: bool) -> Assignment {
        self.assignment(AssignmentAction::Run, revision, create)
    }

    /// SUSPEND at `revision`.
    pub fn suspend(&self, revision: u64) -> Assignment {
        self.assignment(AssignmentAction::Suspend, revision, true)
    }

    /// DELETE at `revision`.
    pub fn delete(&self, revision: u64) -> Assignment {
        self.assignment(AssignmentAction::Delete, revision, false)
    }

    /// RETAIN at `revision`.
    pub fn retain(&self, revision: u64) -> Assignment {
        self.assignment(AssignmentAction::Retain, revision, false)
    }

    /// FORGET.
    pub fn forget(&self) -> Assignment {
        self.assignment(AssignmentAction::Forget, 0, false)
    }
}

/// The phase of a status.
pub fn phase(s: &ShardStatus) -> ShardPhase {
    ShardPhase::try_from(s.phase).unwrap_or_default()
}

// ------------------------------------------------------------------ the mock scheduler

/// Everything the agent said, in order.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Register requests.
    pub registers: Vec<RegisterRequest>,
    /// Hellos, with when they arrived.
    pub hellos: Vec<(Instant, Hello)>,
    /// Every status reported (hello inventories excluded), in order.
    pub reports: Vec<ShardStatus>,
    /// Heartbeat sequence numbers, per session.
    pub heartbeats: Vec<(u64, u64)>,
    /// How each session's inbound stream ended: `Ok` for a clean end, `Err` for an error.
    pub ends: Vec<Result<(), String>>,
    /// For each registration, how many client certificates the caller presented.
    pub client_certs: Vec<usize>,
}

impl Record {
    /// The last status reported for `namespace/shard`.
    pub fn latest(&self, namespace: &str, shard: &str) -> Option<ShardStatus> {
        self.reports
            .iter()
            .rev()
            .find(|s| s.namespace == namespace && s.shard == shard)
            .cloned()
    }

    /// Every status reported for `namespace/shard`.
    pub fn of(&self, namespace: &str, shard: &str) -> Vec<ShardStatus> {
        self.reports
            .iter()
            .filter(|s| s.namespace == namespace && s.shard == shard)
            .cloned()
            .collect()
    }
}

type Outbound = mpsc::Sender<Result<SchedulerMessage, Status>>;

#[derive(Default)]
struct State {
    record: Mutex<Record>,
    /// What each shard should be, as the scheduler would keep it.
    desired: Mutex<BTreeMap<(String, String), Assignment>>,
    /// The open session, if any: its number and sender.
    session: Mutex<Option<(u64, Outbound)>>,
    sessions: Mutex<u64>,
    refuse_registers: AtomicU32,
    changed: Notify,
}

/// The mock `Agent` service.
#[derive(Clone)]
struct MockAgent {
    state: Arc<State>,
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<SchedulerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl Agent for MockAgent {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let certs = request.peer_certs().map_or(0, |c| c.len());
        let r = request.into_inner();
        {
            let mut record = self.state.record.lock();
            record.registers.push(r.clone());
            record.client_certs.push(certs);
        }
        let refusals = &self.state.refuse_registers;
        if refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Status::failed_precondition(format!(
                "cluster \"{}\" is connected from another agent; a cluster name is unique",
                r.cluster
            )));
        }
        let n = {
            let mut s = self.state.sessions.lock();
            *s += 1;
            *s
        };
        Ok(Response::new(RegisterResponse {
            session: format!("session-{n}"),
            heartbeat_interval_ms: HEARTBEAT_MS,
            epoch: 1,
            capacity_columns: true,
        }))
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(AgentMessage {
                msg: Some(agent_message::Msg::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("the first message must be hello")),
        };
        let (tx, rx) = mpsc::channel(1024);
        let number = *self.state.sessions.lock();
        // Like the scheduler: everything whose revision differs from what the agent holds,
        // then `synced`.
        let held: HashMap<(String, String), u64> = hello
            .held
            .iter()
            .map(|s| ((s.namespace.clone(), s.shard.clone()), s.revision))
            .collect();
        let resend: Vec<Assignment> = self
            .state
            .desired
            .lock()
            .iter()
            .filter(|(k, a)| held.get(*k) != Some(&a.revision))
            .map(|(_, a)| a.clone())
            .collect();
        self.state
            .record
            .lock()
            .hellos
            .push((Instant::now(), hello));
        let batch = |assignments, synced| {
            Ok(SchedulerMessage {
                msg: Some(scheduler_message::Msg::Assignments(AssignmentBatch {
                    assignments,
                    synced,
                })),
            })
        };
        tx.send(batch(resend, false)).await.ok();
        tx.send(batch(Vec::new(), true)).await.ok();
        *self.state.session.lock() = Some((number, tx.clone()));
        self.state.changed.notify_waiters();
        let state = self.state.clone();
        tokio::spawn(async move {
            let end = loop {
                match inbound.message().await {
                    Ok(Some(m)) => match m.msg {
                        Some(agent_message::Msg::Heartbeat(hb)) => {
                            state.record.lock().heartbeats.push((number, hb.seq));
                            let ack = SchedulerMessage {
                                msg: Some(scheduler_message::Msg::HeartbeatAck(HeartbeatAck {
                                    seq: hb.seq,
                                })),
                            };
                            if tx.send(Ok(ack)).await.is_err() {
                                break Ok(());
                            }
                        }
                        Some(agent_message::Msg::Status(report)) => {
                            state.record.lock().reports.extend(report.shards);
                        }
                        _ => break Err("protocol: second hello or empty message".to_owned()),
                    },
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e.to_string()),
                }
                state.changed.notify_waiters();
            };
            state.record.lock().ends.push(end);
            let mut current = state.session.lock();
            if current.as_ref().is_some_and(|(n, _)| *n == number) {
                *current = None;
            }
            drop(current);
            state.changed.notify_waiters();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// A mock scheduler serving `fedjob.v1.Agent` on a loopback port.
pub struct MockScheduler {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: std::net::SocketAddr,
    tls: Option<tonic::transport::ServerTlsConfig>,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl MockScheduler {
    /// Starts serving plain text.
    pub async fn start() -> MockScheduler {
        Self::serve(None).await
    }

    /// Starts serving TLS as `https://localhost:PORT` with `identity` (PEM certificate and
    /// key), requiring client certificates signed by `client_ca`.
    pub async fn start_tls(cert: &str, key: &str, client_ca: &str) -> MockScheduler {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .client_ca_root(tonic::transport::Certificate::from_pem(client_ca));
        Self::serve(Some(tls)).await
    }

    async fn serve(tls: Option<tonic::transport::ServerTlsConfig>) -> MockScheduler {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let url = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let state = Arc::new(State::default());
        let (stop, server) = Self::spawn(listener, state.clone(), tls.clone());
        MockScheduler {
            url,
            addr,
            tls,
            state,
            stop: Some(stop),
            server,
        }
    }

    fn spawn(
        listener: tokio::net::TcpListener,
        state: Arc<State>,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = AgentServer::new(MockAgent { state });
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).expect("server TLS");
        }
        let server = tokio::spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .expect("mock scheduler serves");
        });
        (stop, server)
    }

    /// Goes away as a crashed scheduler would: the open session breaks and the port stops
    /// answering. The desired state and the record are kept for [`restart`](Self::restart).
    pub async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.drop_session().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
        self.server.abort();
    }

    /// Serves again on the same port after [`halt`](Self::halt), with the same desired state.
    pub async fn restart(&mut self) {
        let listener = eventually("the port free again", WAIT, || async {
            tokio::net::TcpListener::bind(self.addr).await.ok()
        })
        .await;
        let (stop, server) = Self::spawn(listener, self.state.clone(), self.tls.clone());
        self.stop = Some(stop);
        self.server = server;
    }

    /// A copy of everything recorded so far.
    pub fn record(&self) -> Record {
        self.state.record.lock().clone()
    }

    /// Sets the desired state of a shard and sends it to the open session, if any (FORGET
    /// removes it from the desired state after sending).
    pub async fn assign(&self, a: Assignment) {
        let key = (a.namespace.clone(), a.shard.clone());
        if a.action == AssignmentAction::Forget as i32 {
            self.state.desired.lock().remove(&key);
        } else {
            self.state.desired.lock().insert(key, a.clone());
        }
        self.send(vec![a]).await;
    }

    /// Sets the desired state of many shards and sends them in one batch.
    pub async fn assign_all(&self, all: Vec<Assignment>) {
        {
            let mut desired = self.state.desired.lock();
            for a in &all {
                desired.insert((a.namespace.clone(), a.shard.clone()), a.clone());
            }
        }
        for chunk in all.chunks(256) {
            self.send(chunk.to_vec()).await;
        }
    }

    async fn send(&self, assignments: Vec<Assignment>) {
        let tx = self.state.session.lock().as_ref().map(|(_, tx)| tx.clone());
        if let Some(tx) = tx {
            let message = SchedulerMessage {
                msg: Some(scheduler_message::Msg::Assignments(AssignmentBatch {
                    assignments,
                    synced: false,
                })),
            };
            let _ = tx.send(Ok(message)).await;
        }
    }

    /// Refuses the next `n` registrations with FAILED_PRECONDITION.
    pub fn refuse_registers(&self, n: u32) {
        self.state.refuse_registers.store(n, Ordering::SeqCst);
    }

    /// Ends the open session with an error, as a scheduler that goes away would.
    pub async fn drop_session(&self) {
        let tx = self.state.session.lock().take();
        if let Some((_, tx)) = tx {
            let _ = tx
                .send(Err(Status::unavailable("the scheduler is shutting down")))
                .await;
        }
    }

    /// Waits until a session is open (its hello answered); returns how many hellos arrived.
    pub async fn wait_session(&self) -> usize {
        eventually("an open agent session", WAIT, || async {
            let open = self.state.session.lock().is_some();
            open.then(|| self.record().hellos.len())
        })
        .await
    }

    /// Waits for a report about `namespace/shard` matching `pred`; returns it.
    pub async fn wait_report(
        &self,
        namespace: &str,
        shard: &str,
        what: &str,
        pred: impl Fn(&ShardStatus) -> bool,
    ) -> ShardStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.record().latest(namespace, shard).filter(|s| pred(s)) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; reports of {namespace}/{shard}: {:#?}",
                    self.record().of(namespace, shard)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.drop_session().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.server).await;
    }
}

impl Drop for MockScheduler {
    fn drop(&mut self) {
        self.server.abort();
    }
}
