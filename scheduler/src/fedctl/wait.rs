//! `fedctl wait`: follows a Job through `WatchJob`, printing its progress on stderr whenever it
//! changes, and returns once the condition is met. A dropped stream (scheduler restart) is
//! re-opened until the timeout.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use fedjob_proto::v1;
use serde_json::Value;
use tokio::time::{Instant, sleep_until, timeout_at};
use tonic::Code;

use super::output::job_value;

/// What `--for` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Condition(String),
    Delete,
}

fn parse_target(text: &str) -> anyhow::Result<Target> {
    if text == "delete" {
        return Ok(Target::Delete);
    }
    match text.strip_prefix("condition=") {
        Some(rest) => {
            let (name, value) = rest.split_once('=').unwrap_or((rest, "true"));
            if !value.eq_ignore_ascii_case("true") {
                bail!(super::UsageError::new(format!(
                    "error: --for: fedctl waits for conditions to become true, not {value}"
                )));
            }
            Ok(Target::Condition(name.to_owned()))
        }
        None => bail!(super::UsageError::new(format!(
            "error: --for: unrecognized condition: \"{text}\" (use condition=Complete, condition=Failed or delete)"
        ))),
    }
}

/// Runs `fedctl wait`.
pub async fn run(
    client: &mut super::Client,
    namespace: &str,
    name: &str,
    condition: &str,
    timeout: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = parse_target(condition)?;
    let deadline = Instant::now() + timeout;
    let mut last_progress = String::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let request = v1::WatchJobRequest {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let opened = timeout_at(deadline, client.watch_job(request)).await;
        let mut stream = match opened {
            Err(_) => break,
            Ok(Ok(s)) => s.into_inner(),
            Ok(Err(s)) if s.code() == Code::NotFound && target == Target::Delete => {
                writeln!(out, "job.batch/{name} deleted")?;
                return Ok(());
            }
            Ok(Err(s)) if s.code() == Code::Unavailable => {
                eprintln!("{name}: scheduler unavailable ({}); retrying", s.message());
                sleep_until((Instant::now() + backoff).min(deadline)).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Ok(Err(s)) => return Err(s.into()),
        };
        loop {
            let event = match timeout_at(deadline, stream.message()).await {
                Err(_) => break,
                Ok(Ok(Some(e))) => e,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    eprintln!("{name}: watch ended; re-opening");
                    break;
                }
            };
            let Some(job) = event.job else { continue };
            if event.r#type == "DELETED" {
                if target == Target::Delete {
                    writeln!(out, "job.batch/{name} deleted")?;
                    return Ok(());
                }
                bail!("error: job.batch/{name} was deleted while waiting for {condition}");
            }
            let progress = progress_line(&job);
            if progress != last_progress {
                eprintln!("{progress}");
                last_progress = progress;
            }
            if let Target::Condition(wanted) = &target {
                let value = job_value(&job);
                if has_condition(&value, wanted) {
                    writeln!(out, "job.batch/{name} condition met")?;
                    return Ok(());
                }
                let terminal = ["Complete", "Failed"];
                if terminal.contains(&wanted.as_str())
                    && let Some(other) = terminal
                        .iter()
                        .find(|t| **t != wanted && has_condition(&value, t))
                {
                    bail!(
                        "error: job.batch/{name} is {other}: {}",
                        condition_message(&value, other)
                    );
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    bail!("error: timed out waiting for the condition on jobs/{name}")
}

fn has_condition(job: &Value, wanted: &str) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == wanted && c["status"] == "True")
        })
}

fn condition_message(job: &Value, type_: &str) -> String {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// One line saying where the Job is: totals, then each cluster.
fn progress_line(job: &v1::FederatedJob) -> String {
    let v = job_value(job);
    let n = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let total = match v.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{}/{c} succeeded", n("/status/succeeded")),
        None => format!("{} succeeded", n("/status/succeeded")),
    };
    let clusters: Vec<String> = job
        .placements
        .iter()
        .filter(|p| !p.shards.is_empty())
        .map(|p| match p.completions {
            Some(c) => format!("{} {} {}/{c}", p.cluster, p.state, p.succeeded),
            None => format!("{} {}", p.cluster, p.state),
        })
        .collect();
    format!(
        "{name}: {total}, {} active, {} failed | {}",
        n("/status/active"),
        n("/status/failed"),
        if clusters.is_empty() {
            "no cluster yet".to_owned()
        } else {
            clusters.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubectl_wait() {
        assert_eq!(
            parse_target("condition=Complete").unwrap(),
            Target::Condition("Complete".into())
        );
        assert_eq!(
            parse_target("condition=Failed=True").unwrap(),
            Target::Condition("Failed".into())
        );
        assert_eq!(parse_target("delete").unwrap(), Target::Delete);
        assert!(parse_target("Complete").is_err());
        assert!(parse_target("condition=Complete=false").is_err());
    }
}
