//! Measures the embedded store's write throughput on this machine's disk.
//!
//! `cargo run --release -p fedjob-scheduler --example store_bench [-- SECONDS [DIR]]`
//!
//! For 1, 16 and 256 concurrent writers, each doing acknowledged (fsynced) single-key puts of
//! 2 KB values, prints txns/s, commits/s and the mean batch size. DIR defaults to a temporary
//! directory under the system temp dir; pass a path on the disk you mean to measure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedjob_scheduler::store::{EmbeddedOptions, EmbeddedStore, Precondition, Store, put};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let base = args.next().map(std::path::PathBuf::from);
    let value = bytes::Bytes::from(vec![b'x'; 2048]);
    println!("writers  txns/s  commits/s  txns/commit  (2 KB single-key puts, {seconds} s each)");
    for writers in [1usize, 16, 256] {
        let dir = match &base {
            Some(base) => tempfile::tempdir_in(base)?,
            None => tempfile::tempdir()?,
        };
        let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let tasks = (0..writers).map(|writer| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    // A key per writer, rewritten: the store's size stays put while it runs.
                    put(
                        &*store,
                        format!("bench/{writer}"),
                        value.clone(),
                        Precondition::Any,
                    )
                    .await?;
                    done += 1;
                }
                anyhow::Ok(done)
            })
        });
        let mut txns = 0;
        for task in futures::future::join_all(tasks).await {
            txns += task??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let stats = store.stats();
        store.close().await?;
        println!(
            "{writers:>7}  {:>6.0}  {:>9.0}  {:>11.1}",
            txns as f64 / elapsed,
            stats.commits as f64 / elapsed,
            stats.txns as f64 / stats.commits.max(1) as f64,
        );
    }
    Ok(())
}
