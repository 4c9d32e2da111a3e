//! `fedctl`: the federation's command-line client. Parses flags, then runs the library.
//! Exit codes: 0 done, 1 the command failed, 64 a bad command line (`EX_USAGE`).

use clap::Parser;
use fedjob_scheduler::fedctl::{Cli, EX_USAGE, describe_error, exit_code, run};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // --help and --version print to stdout and succeed.
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            return std::process::ExitCode::from(code);
        }
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
