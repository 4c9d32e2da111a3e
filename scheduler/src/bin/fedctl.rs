//! `fedctl`: the federation's command-line client. Parses flags, then runs the library.
//! Exit codes: 0 done, 1 the command failed, 64 a bad command line (`EX_USAGE`).

use clap::Parser;
use fedjob_proto::config_error::ConfigError;
use fedjob_scheduler::fedctl::{Cli, describe_error, exit_code, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ConfigError::from(e).report("fedctl"),
    };
    let mut stdout = std::io::stdout().lock();
    match run(cli, &mut stdout).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", describe_error(&e));
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}
