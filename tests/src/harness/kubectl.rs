//! The real kubectl against the federation's Kubernetes API: a kubeconfig written by
//! `fedctl kubeconfig`, its own discovery cache and home, and no extra flags.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::bin;

/// What one kubectl run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// The command, for messages.
    pub command: String,
    /// Exit code (None when killed).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl KubectlOutput {
    /// Panics (showing everything) unless kubectl exited 0.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "{self}");
        self
    }
}

impl std::fmt::Display for KubectlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// kubectl pointed at one kubeconfig (its current context), in a scratch home of its own.
pub struct Kubectl {
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    /// kubectl using `kubeconfig`, with `home` (created) as `$HOME` and its discovery cache.
    pub fn new(kubeconfig: &Path, home: &Path) -> Self {
        std::fs::create_dir_all(home).expect("kubectl home");
        Self {
            kubeconfig: kubeconfig.to_owned(),
            home: home.to_owned(),
        }
    }

    /// Writes the kubeconfig that `fedctl [--token T] kubeconfig --kube-api URL` prints to
    /// `path`, and returns kubectl using it.
    pub async fn from_fedctl(
        kube_api: &str,
        token: Option<&str>,
        path: &Path,
        home: &Path,
    ) -> anyhow::Result<Self> {
        let mut args: Vec<&str> = Vec::new();
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        args.extend(["kubeconfig", "--kube-api", kube_api]);
        let out = Command::new(bin("fedctl")?).args(&args).output().await?;
        anyhow::ensure!(
            out.status.success(),
            "fedctl kubeconfig: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(path, &out.stdout)?;
        Ok(Self::new(path, home))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env("KUBECACHEDIR", self.home.join("cache"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `kubectl ARGS…` to the end.
    pub async fn run(&self, args: &[&str]) -> KubectlOutput {
        let out = self
            .command(args)
            .output()
            .await
            .expect("kubectl is needed by this test (scripts/test installs it)");
        let output = KubectlOutput {
            command: format!("kubectl {}", args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!("{output}");
        output
    }

    /// Runs `kubectl ARGS…` (a watch) until a line of its output satisfies `done`, or
    /// `timeout`; returns every line it printed by then. kubectl is killed either way.
    pub async fn watch_until(
        &self,
        args: &[&str],
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Vec<String>> {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("kubectl is needed by this test (scripts/test installs it)")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                let finished = done(&line);
                seen.push(line);
                if finished {
                    return Ok::<_, std::io::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        let _ = child.kill().await;
        eprintln!("$ kubectl {}\n{}", args.join(" "), seen.join("\n"));
        match found {
            Ok(Ok(true)) => Ok(seen),
            Ok(Ok(false)) => anyhow::bail!(
                "kubectl {} ended first:\n{}",
                args.join(" "),
                seen.join("\n")
            ),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => anyhow::bail!(
                "kubectl {}: nothing matched within {timeout:?}:\n{}",
                args.join(" "),
                seen.join("\n")
            ),
        }
    }
}
