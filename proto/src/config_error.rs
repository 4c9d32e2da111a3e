//! The one error a binary's command line can end in, and how a binary exits on it.
//!
//! Every fedjob binary parses its flags into a typed configuration before anything runs; a bad
//! flag ends the process with exit code 64 (`EX_USAGE`, as BSD's `sysexits.h` names it) and a
//! message naming the flag, while `--help` and `--version` print and exit 0.

use std::process::ExitCode;

/// A flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Parsing the command line failed (or help/version was asked for).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// A flag's value is not acceptable, or a file it names cannot be read.
    #[error("invalid value for --{flag}: {message}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// A refusal of `--flag`'s value.
    pub fn invalid(flag: &'static str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            flag,
            message: message.into(),
        }
    }

    /// The exit code for this error: 0 for `--help`/`--version`, 64 (`EX_USAGE`) otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ConfigError::Cli(e) if !e.use_stderr() => 0,
            _ => 64,
        }
    }

    /// Prints the error as `program` would (clap's own output for usage, help and version) and
    /// returns the code to exit with.
    pub fn report(self, program: &str) -> ExitCode {
        let code = self.exit_code();
        match self {
            ConfigError::Cli(clap) => {
                let _ = clap.print();
            }
            other => eprintln!("{program}: {other}"),
        }
        ExitCode::from(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_64_and_help_exits_0() {
        #[derive(clap::Parser, Debug)]
        struct Args {
            #[arg(long)]
            count: u32,
        }
        use clap::Parser;
        let bad = ConfigError::from(Args::try_parse_from(["p", "--count", "x"]).unwrap_err());
        assert_eq!(bad.exit_code(), 64);
        let help = ConfigError::from(Args::try_parse_from(["p", "--help"]).unwrap_err());
        assert_eq!(help.exit_code(), 0);
        let invalid = ConfigError::invalid("count", "must be positive");
        assert_eq!(invalid.exit_code(), 64);
        assert_eq!(
            invalid.to_string(),
            "invalid value for --count: must be positive"
        );
    }
}
