//! `fedjob-scheduler`: the federation control plane. Parses flags, then runs the library.

use fedjob_proto::shutdown;
use fedjob_scheduler::config::Config;
use fedjob_scheduler::{server, telemetry};

/// The scheduler allocates and frees many small objects per message; glibc's allocator spent
/// a sixth of the scheduler's CPU under capacity reports consolidating its free lists. Left
/// out with the `system-allocator` feature, for heap profilers that follow glibc's `malloc`.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::try_parse_from(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => return e.report("fedjob-scheduler"),
    };
    telemetry::init();
    let running = match server::start(config).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    shutdown::signal().await;
    tracing::info!("signal received");
    match running.shutdown().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("shutdown: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
