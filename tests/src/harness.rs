//! Runs the real binaries as separate processes over loopback TCP, for end-to-end tests and the
//! benchmark: a scheduler, a `fedjob-kubesim` hosting member clusters, a syncer per cluster.
//!
//! Every process is killed when its handle drops, so a failing test leaves nothing behind.

pub mod federation;
pub mod kubectl;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

/// Where cargo put this workspace's binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a workspace binary; fails clearly when it was not built.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!(
            "{} not found: build the binaries first (`cargo build --workspace --bins`)",
            path.display()
        );
    }
    Ok(path)
}

/// A child process whose output is kept, killed on drop.
pub struct Proc {
    /// A name for messages.
    pub name: String,
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `program` with `args`, collecting stdout and stderr lines.
    pub fn spawn(name: &str, program: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("FEDJOB_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().push(line);
                }
            });
        }
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
        })
    }

    /// Waits until a line containing `needle` was printed; returns it.
    pub async fn wait_for_line(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output.lock().iter().find(|l| l.contains(needle)) {
                return Ok(line.clone());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `n` lines of output.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.output.lock();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().clone()
    }

    /// Kills the process with SIGKILL (no clean-up, as a crash) and waits for it.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow!("{} already exited", self.name))?;
        self.terminate_through(pid, timeout).await
    }

    /// Sends SIGTERM to `pid` (this process, or one it started) and waits up to `timeout` for
    /// this process to exit; returns whether it exited 0.
    pub async fn terminate_through(&mut self, pid: u32, timeout: Duration) -> anyhow::Result<bool> {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => Ok(status?.success()),
            Err(_) => {
                self.kill9().await;
                bail!(
                    "{} did not stop within {timeout:?} after SIGTERM:\n{}",
                    self.name,
                    self.tail(40)
                )
            }
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Picks a free loopback port (bound and released at once).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Picks `n` distinct free loopback ports: all are held until every one is chosen, so the
/// kernel cannot hand the same port out twice.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

/// A scheduler process.
pub struct SchedulerProc {
    /// The process (a profiler's, when one wraps the scheduler).
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The scheduler's own process id: `proc`'s, or that of the process a wrapper started.
    pub pid: u32,
}

impl SchedulerProc {
    /// Starts `fedjob-scheduler` on `port` with `data_dir` and extra flags.
    pub async fn start(port: u16, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_wrapped(port, data_dir, extra, &[]).await
    }

    /// Like [`SchedulerProc::start`], but runs the scheduler under `wrapper` (a command and
    /// its arguments, such as `valgrind --tool=massif`) when that is not empty. Profilers that
    /// run the program in their own process (valgrind) keep the scheduler's pid.
    pub async fn start_wrapped(
        port: u16,
        data_dir: &Path,
        extra: &[&str],
        wrapper: &[String],
    ) -> anyhow::Result<Self> {
        let mut args: Vec<String> = wrapper.iter().skip(1).cloned().collect();
        let program = match wrapper.first() {
            Some(w) => {
                args.push(bin("fedjob-scheduler")?.display().to_string());
                PathBuf::from(w)
            }
            None => bin("fedjob-scheduler")?,
        };
        args.extend([
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_owned(),
            data_dir.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut proc = Proc::spawn("fedjob-scheduler", &program, &args)?;
        // A profiler wrapping it may slow the start down a lot.
        let patience = if wrapper.is_empty() { 30 } else { 300 };
        proc.wait_for_line("fedjob-scheduler serving", Duration::from_secs(patience))
            .await?;
        let own = proc.pid().ok_or_else(|| anyhow!("the scheduler exited"))?;
        // Measured and stopped itself: a wrapper (heaptrack's script, perf) neither uses the
        // scheduler's memory nor passes SIGTERM on, which left wrapped schedulers running.
        // Valgrind runs it in its own process, under the tool's name: then that is the one.
        let pid = if wrapper.is_empty() {
            own
        } else {
            descendant_named(own, "fedjob-schedul").unwrap_or(own)
        };
        Ok(Self {
            proc,
            url: format!("http://127.0.0.1:{port}"),
            pid,
        })
    }

    /// Stops the scheduler with SIGTERM and waits up to `timeout` for it (and any wrapper) to
    /// exit; returns whether it exited 0.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        self.proc.terminate_through(self.pid, timeout).await
    }
}

/// The first process under `root` (a child, or a child's child, …) whose command name (as
/// `/proc/PID/comm` shows it, cut to 15 bytes) starts with `name`.
fn descendant_named(root: u32, name: &str) -> Option<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `PID (COMM) STATE PPID …`: COMM may hold spaces and parentheses, so split after it.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let named = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(name))
    };
    if named(root) {
        return Some(root);
    }
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, _) in parents.iter().filter(|(_, p)| *p == parent) {
            if named(pid) {
                return Some(pid);
            }
            frontier.push(pid);
        }
    }
    None
}

/// A kube client for the context `context` of the kubeconfig at `kubeconfig` (as
/// `kubectl --kubeconfig PATH --context CONTEXT` would talk to the cluster).
pub async fn kube_client(kubeconfig: &Path, context: &str) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: Some(context.to_owned()),
        ..Default::default()
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

/// The line `fedjob-kubesim` prints when ready.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SimReady {
    /// Path of the kubeconfig with a context per cluster.
    pub kubeconfig: PathBuf,
    /// Cluster name → API server URL.
    pub clusters: BTreeMap<String, String>,
}

/// A `fedjob-kubesim` process.
pub struct SimProc {
    /// The process.
    pub proc: Proc,
    /// What it serves.
    pub ready: SimReady,
}

impl SimProc {
    /// Starts simulated clusters named `clusters`; pods run for `pod_duration` by default.
    pub async fn start(
        clusters: &[&str],
        kubeconfig: &Path,
        pod_duration: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(clusters, kubeconfig, pod_duration, &[]).await
    }

    /// Like [`SimProc::start`], with more flags of `fedjob-kubesim` (`--cluster-nodes`, …).
    pub async fn start_with(
        clusters: &[&str],
        kubeconfig: &Path,
        pod_duration: &str,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--clusters".to_owned(),
            clusters.join(","),
            "--kubeconfig-out".to_owned(),
            kubeconfig.display().to_string(),
            "--pod-duration".to_owned(),
            pod_duration.to_owned(),
        ];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn("fedjob-kubesim", &bin("fedjob-kubesim")?, &args)?;
        let line = proc
            .wait_for_line("\"ready\":true", Duration::from_secs(30))
            .await?;
        let ready: SimReady =
            serde_json::from_str(&line).with_context(|| format!("ready line {line}"))?;
        Ok(Self { proc, ready })
    }
}

/// A `fedjob-syncer` process for one cluster.
pub struct SyncerProc {
    /// The process.
    pub proc: Proc,
    /// Its cluster.
    pub cluster: String,
}

impl SyncerProc {
    /// Starts a syncer for `cluster` (a context of `kubeconfig`) against `scheduler_url`.
    pub fn start(
        scheduler_url: &str,
        cluster: &str,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "--scheduler".to_owned(),
            scheduler_url.to_owned(),
            "--cluster-name".to_owned(),
            cluster.to_owned(),
            "--kubeconfig".to_owned(),
            kubeconfig.display().to_string(),
            "--context".to_owned(),
            cluster.to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let proc = Proc::spawn(
            &format!("fedjob-syncer[{cluster}]"),
            &bin("fedjob-syncer")?,
            &args,
        )?;
        Ok(Self {
            proc,
            cluster: cluster.to_owned(),
        })
    }
}

/// What a `fedctl` run printed.
#[derive(Debug)]
pub struct FedctlOutput {
    /// Exit code (None when killed).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl FedctlOutput {
    /// Standard output as JSON; panics with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "fedctl printed no JSON ({e}):\nstdout: {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics unless fedctl exited 0, adding `context()` (say, the processes' logs).
    pub fn ok_or_show(self, context: impl FnOnce() -> String) -> Self {
        if self.code != Some(0) {
            panic!(
                "fedctl exited {:?}:\nstdout: {}\nstderr: {}\n{}",
                self.code,
                self.stdout,
                self.stderr,
                context()
            );
        }
        self
    }

    /// Panics unless fedctl exited 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "fedctl failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// The arguments of `fedctl wait job NAME --for=condition=Complete --timeout TIMEOUT`.
pub fn wait_complete_args<'a>(name: &'a str, timeout: &'a str) -> [&'a str; 6] {
    [
        "wait",
        "job",
        name,
        "--for=condition=Complete",
        "--timeout",
        timeout,
    ]
}

/// The last lines of each process's output under a heading, for an assertion's message:
/// `(heading, process, how many lines)`.
pub fn log_tails<'a>(procs: impl IntoIterator<Item = (String, &'a Proc, usize)>) -> String {
    procs
        .into_iter()
        .map(|(heading, proc, n)| format!("--- {heading}\n{}\n", proc.tail(n)))
        .collect()
}

/// Runs `fedctl --server URL ARGS…`.
pub async fn fedctl(server: &str, args: &[&str]) -> anyhow::Result<FedctlOutput> {
    let out = Command::new(bin("fedctl")?)
        .arg("--server")
        .arg(server)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await?;
    Ok(FedctlOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// An etcd cluster of processes on loopback ports (Debian's `etcd-server` package).
pub struct EtcdProcs {
    /// The members.
    pub members: Vec<Proc>,
    /// Client URLs, in member order.
    pub client_urls: Vec<String>,
    dir: tempfile::TempDir,
}

impl EtcdProcs {
    /// Starts `n` members and waits until each reports healthy.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                anyhow!("etcd not found: install Debian's etcd-server (scripts/test does)")
            })?;
        let dir = tempfile::tempdir()?;
        let ports: Vec<(u16, u16)> = free_ports(2 * n)
            .chunks(2)
            .map(|pair| (pair[0], pair[1]))
            .collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut members = Vec::new();
        let mut client_urls = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let args: Vec<String> = [
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &dir.path().join(format!("m{i}")).display().to_string(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &format!("fedjob-{}", std::process::id()),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            members.push(Proc::spawn(&format!("etcd-m{i}"), &etcd, &args)?);
            client_urls.push(client_url);
        }
        for url in &client_urls {
            let addr = url.trim_start_matches("http://").to_owned();
            // An election on a loaded two-core machine may take a while.
            let healthy = eventually("etcd healthy", Duration::from_secs(60), || {
                let addr = addr.clone();
                async move {
                    http_get(&addr, "/health")
                        .await
                        .filter(|b| b.contains("\"health\":\"true\""))
                        .map(|_| ())
                }
            })
            .await;
            if let Err(e) = healthy {
                let logs = log_tails(members.iter().map(|m| (m.name.clone(), m, 15)));
                bail!("{url}: {e}\n{logs}");
            }
        }
        Ok(Self {
            members,
            client_urls,
            dir,
        })
    }

    /// `--etcd-endpoints` for the scheduler.
    pub fn endpoints(&self) -> String {
        self.client_urls.join(",")
    }

    /// The directory holding every member's data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A plain HTTP/1.1 GET on loopback; the body, or `None` when nothing answered.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    Some(response)
}
