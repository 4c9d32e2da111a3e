//! `fedctl`: the federation's command-line client. Parses flags, then runs the library.

use clap::Parser;
use fedjob_scheduler::fedctl::{Cli, describe_error, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match run(cli, &mut stdout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", describe_error(&e));
            std::process::ExitCode::from(1)
        }
    }
}
