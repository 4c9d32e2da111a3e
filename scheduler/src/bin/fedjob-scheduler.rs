//! `fedjob-scheduler`: the federation control plane. Parses flags, then runs the library.

use clap::Parser;
use fedjob_scheduler::{config::Config, server, shutdown, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(64);
        }
    };
    if let Err(message) = config.validate() {
        eprintln!("error: {message}");
        return std::process::ExitCode::from(64);
    }
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
