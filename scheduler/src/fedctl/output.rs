//! What fedctl prints: kubectl-style tables, `describe`, and the JSON/YAML shapes of SPEC §5/§8.

use std::io::Write;

use fedjob_proto::quantity::format_amount;
use fedjob_proto::v1;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::Output;
use crate::api::convert::{cluster_json, federated_job_json, from_timestamp};

/// The SPEC §5 JSON of a Job.
pub fn job_value(job: &v1::FederatedJob) -> Value {
    federated_job_json(job)
}

/// Prints one Job.
pub fn job(
    out: &mut dyn Write,
    job: &v1::FederatedJob,
    format: Option<Output>,
) -> anyhow::Result<()> {
    match format {
        Some(Output::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&job_value(job))?)?,
        Some(Output::Yaml) => write!(out, "{}", serde_yaml::to_string(&job_value(job))?)?,
        _ => jobs(out, std::slice::from_ref(job), format, false)?,
    }
    Ok(())
}

/// Prints a list of Jobs.
pub fn jobs(
    out: &mut dyn Write,
    items: &[v1::FederatedJob],
    format: Option<Output>,
    with_namespace: bool,
) -> anyhow::Result<()> {
    let values: Vec<Value> = items.iter().map(job_value).collect();
    match format {
        Some(Output::Json) => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(
                    &json!({"apiVersion": "v1", "kind": "List", "items": values})
                )?
            )?;
            return Ok(());
        }
        Some(Output::Yaml) => {
            write!(
                out,
                "{}",
                serde_yaml::to_string(
                    &json!({"apiVersion": "v1", "kind": "List", "items": values})
                )?
            )?;
            return Ok(());
        }
        _ => {}
    }
    if items.is_empty() {
        writeln!(out, "No resources found.")?;
        return Ok(());
    }
    let wide = format == Some(Output::Wide);
    let mut header = vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["PARALLELISM", "CLUSTERS", "UNPLACED"]);
    }
    let now = Timestamp::now();
    let rows = values.iter().zip(items).map(|(v, item)| {
        let mut row = vec![
            str_at(v, "/metadata/name"),
            job_status_word(v),
            completions_column(v),
            duration_column(v, now),
            age(v.pointer("/metadata/creationTimestamp"), now),
        ];
        if with_namespace {
            row.insert(0, str_at(v, "/metadata/namespace"));
        }
        if wide {
            let clusters: Vec<String> = item
                .placements
                .iter()
                .filter(|p| !p.shards.is_empty())
                .map(|p| format!("{}={}", p.cluster, p.parallelism))
                .collect();
            let unplaced = item
                .unplaced
                .as_ref()
                .map_or(0, |u| u.parallelism.max(u.completions));
            row.extend([
                v.pointer("/spec/parallelism")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                if clusters.is_empty() {
                    "<none>".into()
                } else {
                    clusters.join(",")
                },
                unplaced.to_string(),
            ]);
        }
        row
    });
    table(out, &header, rows.collect())
}

/// Prints clusters.
pub fn clusters(
    out: &mut dyn Write,
    items: &[v1::Cluster],
    format: Option<Output>,
) -> anyhow::Result<()> {
    let values: Vec<Value> = items.iter().map(cluster_json).collect();
    match format {
        Some(Output::Json) => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&json!({"items": values}))?
            )?;
            return Ok(());
        }
        Some(Output::Yaml) => {
            write!(out, "{}", serde_yaml::to_string(&json!({"items": values}))?)?;
            return Ok(());
        }
        _ => {}
    }
    if items.is_empty() {
        writeln!(out, "No resources found.")?;
        return Ok(());
    }
    let now = Timestamp::now();
    let wide = format == Some(Output::Wide);
    let rows = items
        .iter()
        .map(|c| {
            let status = if c.cordoned {
                format!("{},SchedulingDisabled", c.state)
            } else {
                c.state.clone()
            };
            let heartbeat = c
                .last_heartbeat
                .as_ref()
                .and_then(from_timestamp)
                .map(|t| format!("{} ago", human_duration((now - t).get_seconds().max(0))))
                .unwrap_or_else(|| "<never>".into());
            let mut labels: Vec<String> =
                c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let mut row = vec![
                c.name.clone(),
                status,
                c.shards.to_string(),
                if c.connected {
                    "yes".into()
                } else {
                    "no".into()
                },
                heartbeat,
                if labels.is_empty() {
                    "<none>".into()
                } else {
                    labels.join(",")
                },
            ];
            if wide {
                row.extend(free_columns(c.capacity.as_ref()));
            }
            row
        })
        .collect();
    let mut header = vec![
        "NAME",
        "STATUS",
        "SHARDS",
        "CONNECTED",
        "LAST HEARTBEAT",
        "LABELS",
    ];
    if wide {
        header.extend(["NODES", "FREE CPU", "FREE MEMORY", "FREE PODS"]);
    }
    table(out, &header, rows)
}

/// The wide columns of a cluster's reported capacity: schedulable Ready nodes and the free
/// cpu, memory and pods over them (`<unknown>` when its agent reports none).
fn free_columns(capacity: Option<&v1::CapacitySummary>) -> Vec<String> {
    let Some(capacity) = capacity else {
        return vec!["<unknown>".to_owned(); 4];
    };
    let free =
        |resource: &str| format_amount(resource, capacity.free.get(resource).copied().unwrap_or(0));
    vec![
        capacity.nodes.to_string(),
        free("cpu"),
        free("memory"),
        free("pods"),
    ]
}

/// Clusters that still have to confirm the deletion of their shards.
pub fn clusters_to_confirm(job: &v1::FederatedJob) -> Vec<String> {
    job.placements
        .iter()
        .filter(|p| p.shards.iter().any(|s| s.state == "Deleting"))
        .map(|p| p.cluster.clone())
        .collect()
}

/// `fedctl describe job`.
pub fn describe(out: &mut dyn Write, job: &v1::FederatedJob) -> anyhow::Result<()> {
    let v = job_value(job);
    let now = Timestamp::now();
    let field = |out: &mut dyn Write, name: &str, value: String| {
        writeln!(out, "{:<18}{}", format!("{name}:"), value)
    };
    field(out, "Name", str_at(&v, "/metadata/name"))?;
    field(out, "Namespace", str_at(&v, "/metadata/namespace"))?;
    field(out, "UID", str_at(&v, "/metadata/uid"))?;
    map_field(out, "Labels", v.pointer("/metadata/labels"))?;
    map_field(out, "Annotations", v.pointer("/metadata/annotations"))?;
    field(out, "Parallelism", num_at(&v, "/spec/parallelism"))?;
    field(
        out,
        "Completions",
        v.pointer("/spec/completions")
            .map_or("<unset> (work queue)".into(), Value::to_string),
    )?;
    field(out, "Completion Mode", str_at(&v, "/spec/completionMode"))?;
    field(
        out,
        "Suspend",
        v.pointer("/spec/suspend")
            .map_or("false".into(), Value::to_string),
    )?;
    field(out, "Backoff Limit", num_at(&v, "/spec/backoffLimit"))?;
    if let Some(t) = v.pointer("/status/startTime").and_then(Value::as_str) {
        field(out, "Start Time", t.to_owned())?;
    }
    if let Some(t) = v.pointer("/status/completionTime").and_then(Value::as_str) {
        field(out, "Completed At", t.to_owned())?;
    }
    if v.pointer("/status/startTime").is_some() {
        field(out, "Duration", duration_column(&v, now))?;
    }
    if let Some(t) = v
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    {
        field(
            out,
            "Terminating",
            format!(
                "since {t}; waiting for {}",
                clusters_to_confirm(job).join(", ")
            ),
        )?;
    }
    field(
        out,
        "Pods Statuses",
        format!(
            "{} Active / {} Succeeded / {} Failed",
            num0(&v, "/status/active"),
            num0(&v, "/status/succeeded"),
            num0(&v, "/status/failed")
        ),
    )?;
    if let Some(u) = &job.unplaced
        && (u.parallelism > 0 || u.completions > 0)
    {
        field(
            out,
            "Unplaced",
            format!(
                "parallelism {}, completions {}",
                u.parallelism, u.completions
            ),
        )?;
    }
    writeln!(out, "Conditions:")?;
    let conditions = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conditions.is_empty() {
        writeln!(out, "  <none>")?;
    } else {
        let rows = conditions
            .iter()
            .map(|c| {
                vec![
                    str_at(c, "/type"),
                    str_at(c, "/status"),
                    str_at(c, "/reason"),
                    str_at(c, "/message"),
                ]
            })
            .collect();
        indented_table(out, &["Type", "Status", "Reason", "Message"], rows)?;
    }
    writeln!(out, "Placements:")?;
    if job.placements.is_empty() {
        writeln!(out, "  <none>")?;
    } else {
        let rows = job
            .placements
            .iter()
            .map(|p| {
                let shards: Vec<String> = p
                    .shards
                    .iter()
                    .map(|s| match s.completions {
                        Some(c) => format!("{}({}/{} {})", s.name, s.succeeded, c, s.state),
                        None => format!("{}({})", s.name, s.state),
                    })
                    .collect();
                vec![
                    p.cluster.clone(),
                    p.state.clone(),
                    p.parallelism.to_string(),
                    p.completions.map_or("-".into(), |c| c.to_string()),
                    p.active.to_string(),
                    p.succeeded.to_string(),
                    p.failed.to_string(),
                    if shards.is_empty() {
                        "<none>".into()
                    } else {
                        shards.join(" ")
                    },
                ]
            })
            .collect();
        indented_table(
            out,
            &[
                "CLUSTER",
                "STATE",
                "PARALLELISM",
                "COMPLETIONS",
                "ACTIVE",
                "SUCCEEDED",
                "FAILED",
                "SHARDS",
            ],
            rows,
        )?;
        for p in job.placements.iter().filter(|p| !p.message.is_empty()) {
            writeln!(out, "  {}: {}", p.cluster, p.message)?;
        }
    }
    if !job.left_out.is_empty() {
        // Each registered cluster that got nothing, and why (SPEC §10).
        writeln!(out, "Clusters Without a Shard:")?;
        let rows = job
            .left_out
            .iter()
            .map(|l| vec![l.cluster.clone(), l.reason.clone(), l.message.clone()])
            .collect();
        indented_table(out, &["CLUSTER", "REASON", "MESSAGE"], rows)?;
    }
    writeln!(out, "Pod Template:")?;
    for c in v
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        writeln!(out, "  {}:", str_at(c, "/name"))?;
        writeln!(out, "    Image:    {}", str_at(c, "/image"))?;
        if let Some(cmd) = c.get("command").and_then(Value::as_array) {
            let words: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
            writeln!(out, "    Command:  {}", words.join(" "))?;
        }
    }
    Ok(())
}

fn map_field(out: &mut dyn Write, name: &str, map: Option<&Value>) -> std::io::Result<()> {
    let entries: Vec<(String, String)> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if entries.is_empty() {
        return writeln!(out, "{:<18}<none>", format!("{name}:"));
    }
    for (i, (k, v)) in entries.iter().enumerate() {
        let label = if i == 0 {
            format!("{name}:")
        } else {
            String::new()
        };
        let sep = if name == "Labels" { "=" } else { ": " };
        writeln!(out, "{label:<18}{k}{sep}{v}")?;
    }
    Ok(())
}

/// `Complete`, `Failed`, `Suspended`, `Terminating` or `Running`, like newer kubectl shows.
fn job_status_word(v: &Value) -> String {
    let has = |t: &str| {
        v.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    let word = if v.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if has("Suspended") {
        "Suspended"
    } else if has("Unschedulable") {
        "Unschedulable"
    } else {
        "Running"
    };
    word.to_owned()
}

fn completions_column(v: &Value) -> String {
    let succeeded = num0(v, "/status/succeeded");
    match v.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => format!("{succeeded}/1 of {}", num_at(v, "/spec/parallelism")),
    }
}

fn duration_column(v: &Value, now: Timestamp) -> String {
    let start = v
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok());
    let end = v
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
        .unwrap_or(now);
    match start {
        Some(s) => human_duration((end - s).get_seconds().max(0)),
        None => String::new(),
    }
}

fn age(created: Option<&Value>, now: Timestamp) -> String {
    created
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|t| human_duration((now - t).get_seconds().max(0)))
        .unwrap_or_else(|| "<unknown>".into())
}

/// kubectl's short durations: `45s`, `3m12s`, `5h2m`, `3d4h`.
pub fn human_duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match () {
        _ if seconds < 120 => format!("{seconds}s"),
        _ if seconds < 600 => format!("{m}m{s}s"),
        _ if seconds < 3 * 3600 => format!("{}m", seconds / 60),
        _ if seconds < 8 * 3600 => format!("{}h{m}m", seconds / 3600),
        _ if d < 2 => format!("{}h", seconds / 3600),
        _ if d < 8 => format!("{d}d{h}h"),
        _ => format!("{d}d"),
    }
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn num_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .map(Value::to_string)
        .unwrap_or_else(|| "<unset>".into())
}

fn num0(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Aligned columns separated by three spaces, as kubectl prints.
pub fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    write_table(out, "", header, rows)
}

fn indented_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    write_table(out, "  ", header, rows)
}

fn write_table(
    out: &mut dyn Write,
    indent: &str,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut text = String::from(indent);
        for (i, cell) in cells.into_iter().enumerate() {
            text.push_str(cell);
            if i < last {
                text.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        text
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(5 * 3600 + 120), "5h2m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d4h");
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["myjob".into(), "18/18".into()],
            vec!["a".into(), "1/1".into()],
        ];
        table(&mut out, &["NAME", "COMPLETIONS"], rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "NAME    COMPLETIONS\nmyjob   18/18\na       1/1\n");
    }
}
