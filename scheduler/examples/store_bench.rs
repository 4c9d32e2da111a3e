//! Measures the stores' write throughput on this machine: the embedded store on this disk and,
//! when asked, etcd.
//!
//! `cargo run --release -p fedjob-scheduler --example store_bench [-- SECONDS [DIR] [--etcd URL,…|local]]`
//!
//! For 1, 16 and 256 concurrent writers, each doing acknowledged (durable) single-key puts of
//! 2 KB values, prints txns/s of each store; for the embedded store also commits/s and the
//! mean batch size. DIR defaults to a temporary directory under the system temp dir; pass a
//! path on the disk you mean to measure. `--etcd URL,…` measures an existing etcd (keys under
//! `/fedjob-bench/`); `--etcd local` starts a single etcd member (the `etcd` binary, Debian's
//! etcd-server) with its data in DIR, so both stores write to the same disk.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fedjob_scheduler::store::etcd::parse_endpoint;
use fedjob_scheduler::store::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Precondition, Store, put,
};

const WRITERS: [usize; 3] = [1, 16, 256];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut positional = Vec::new();
    let mut etcd = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--etcd" => etcd = Some(args.next().context("--etcd needs URL,… or `local`")?),
            _ => positional.push(arg),
        }
    }
    let seconds: u64 = positional
        .first()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let base = positional.get(1).map(std::path::PathBuf::from);
    let tempdir = || match &base {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    };

    // Keeps a local etcd member alive (and its data dir) for the whole run.
    let mut local = None;
    let etcd_store = match etcd.as_deref() {
        None => None,
        Some("local") => {
            let member = LocalEtcd::start(tempdir()?)?;
            let store = member.connect().await?;
            local = Some(member);
            Some(store)
        }
        Some(urls) => {
            let endpoints = urls
                .split(',')
                .map(parse_endpoint)
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            let mut options = EtcdOptions::new(endpoints);
            options.prefix = "/fedjob-bench/".into();
            Some(Arc::new(EtcdStore::connect(options).await?))
        }
    };

    println!("2 KB single-key puts, {seconds} s per cell");
    println!("writers  embedded txns/s  commits/s  txns/commit  etcd txns/s");
    for writers in WRITERS {
        let dir = tempdir()?;
        let embedded = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?);
        let started = Instant::now();
        let txns = run(embedded.clone(), writers, seconds, "bench").await?;
        let elapsed = started.elapsed().as_secs_f64();
        let stats = embedded.stats();
        embedded.close().await?;
        let etcd_rate = match &etcd_store {
            Some(store) => {
                let started = Instant::now();
                let txns =
                    run(store.clone(), writers, seconds, &format!("bench-{writers}")).await?;
                format!("{:.0}", txns as f64 / started.elapsed().as_secs_f64())
            }
            None => "-".to_owned(),
        };
        println!(
            "{writers:>7}  {:>15.0}  {:>9.0}  {:>11.1}  {etcd_rate:>11}",
            txns as f64 / elapsed,
            stats.commits as f64 / elapsed,
            stats.txns as f64 / stats.commits.max(1) as f64,
        );
    }
    if let Some(store) = etcd_store {
        store.close().await?;
    }
    drop(local);
    Ok(())
}

/// `writers` tasks putting 2 KB values for `seconds`; returns the acknowledged txns.
async fn run<S: Store>(
    store: Arc<S>,
    writers: usize,
    seconds: u64,
    prefix: &str,
) -> anyhow::Result<u64> {
    let value = bytes::Bytes::from(vec![b'x'; 2048]);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks = (0..writers).map(|writer| {
        let store = store.clone();
        let value = value.clone();
        let key = format!("{prefix}/{writer}");
        tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                // A key per writer, rewritten: the store's size stays put while it runs.
                put(&*store, key.as_str(), value.clone(), Precondition::Any).await?;
                done += 1;
            }
            anyhow::Ok(done)
        })
    });
    let mut txns = 0;
    for task in futures::future::join_all(tasks).await {
        txns += task??;
    }
    Ok(txns)
}

/// A single etcd member on loopback ports with its data in a temporary directory; killed
/// when dropped.
struct LocalEtcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl LocalEtcd {
    fn start(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let ports: Vec<u16> = {
            let listeners = [
                TcpListener::bind("127.0.0.1:0")?,
                TcpListener::bind("127.0.0.1:0")?,
            ];
            listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<Result<_, _>>()?
        };
        let endpoint = format!("http://127.0.0.1:{}", ports[0]);
        let peer = format!("http://127.0.0.1:{}", ports[1]);
        let child = Command::new("etcd")
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "error",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `etcd` (install Debian's etcd-server)")?;
        Ok(LocalEtcd {
            child,
            endpoint,
            _dir: dir,
        })
    }

    async fn connect(&self) -> anyhow::Result<Arc<EtcdStore>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut options = EtcdOptions::new(vec![
                parse_endpoint(&self.endpoint).map_err(anyhow::Error::msg)?,
            ]);
            options.prefix = "/fedjob-bench/".into();
            options.retry_timeout = Duration::from_secs(1);
            match EtcdStore::connect(options).await {
                Ok(store) => return Ok(Arc::new(store)),
                Err(error) if Instant::now() > deadline => {
                    bail!("the local etcd did not serve: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
