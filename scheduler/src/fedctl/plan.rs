//! `fedctl plan`: the split a Job would get, offline. The flags describe the Job (counts,
//! preferences, one pod's requests) and the clusters (names, labels, free nodes); the plan is
//! what the scheduler's own create path makes of them ([`edit::create`]: validation, the
//! `clusterSelector`, `dynamicWeight` by what fits node by node, the split), so the offline
//! answer cannot drift from the scheduler's. With `-o wide` each cluster also shows how many
//! pods fit there and why it got nothing ([`left_out`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use clap::Args;
use fedjob_proto::capacity::{Amounts, ClusterCapacity, Reporter, Shape};
use fedjob_proto::names::PREFERENCES_ANNOTATION;
use fedjob_proto::quantity::{FORMAT_MESSAGE, Quantity, scheduling_amount};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{Value, json};

use super::{Output, UsageError};
use crate::model::clusters::{ClusterView, Clusters};
use crate::model::edit;
use crate::model::fit::{PodDemand, pods_that_fit};
use crate::model::job::FederatedJob;
use crate::model::labels::{label_value, qualified_name};
use crate::model::left_out::{Reason, left_out};
use crate::model::preferences::Preferences;
use crate::model::split::{ClusterPlan, Plan, Share};

/// Pods a node takes when `--node` does not say (the kubelet's default `--max-pods`).
const DEFAULT_NODE_PODS: i64 = 110;

/// `plan`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  # 9 pods at once and 18 completions over three clusters
  fedctl plan --parallelism 9 --completions 18 --clusters a,b,c

  # only the clusters labelled region=eu take part
  fedctl plan --parallelism 4 --completions 8 --clusters a,b,c \\
    --labels a:region=eu --labels b:region=eu,gpu=true --labels c:region=us \\
    --preferences '{\"clusterSelector\": {\"matchLabels\": {\"region\": \"eu\"}}}'

  # split by how many pods of 1 cpu and 2Gi fit on each cluster's free nodes
  fedctl plan --parallelism 6 --completions 12 --clusters a,b \\
    --node a:cpu=4,memory=16Gi --node a:cpu=4,memory=16Gi --node b:cpu=2,memory=4Gi \\
    --requests cpu=1,memory=2Gi --preferences '{\"dynamicWeight\": \"AvailableReplicas\"}' -o wide")]
pub struct PlanArgs {
    /// Total parallelism.
    #[arg(long)]
    pub parallelism: i32,
    /// Total completions (omit for a work queue).
    #[arg(long)]
    pub completions: Option<i32>,
    /// Clusters to divide over, comma-separated; each is Ready and not cordoned.
    #[arg(long, value_delimiter = ',', required = true)]
    pub clusters: Vec<String>,
    /// The `federation.kubernetes.io/job-preferences` JSON.
    #[arg(long)]
    pub preferences: Option<String>,
    /// A cluster's labels, as its syncer registers them (`--labels`), for the preferences'
    /// `clusterSelector`: `CLUSTER:KEY=VALUE[,KEY=VALUE…]`. Repeat for each cluster.
    #[arg(long = "labels", value_name = "CLUSTER:KEY=VALUE,…")]
    pub labels: Vec<String>,
    /// One schedulable Ready node of a cluster, with its free resources (allocatable minus the
    /// requests of the pods bound there), for `dynamicWeight: AvailableReplicas`:
    /// `CLUSTER:RESOURCE=QUANTITY[,…]`, e.g. `a:cpu=4,memory=16Gi,pods=20`; `pods` defaults to
    /// 110. Repeat for each node. A cluster with no `--node` reports no capacity.
    #[arg(long = "node", value_name = "CLUSTER:RESOURCE=QUANTITY,…")]
    pub nodes: Vec<String>,
    /// What one pod of the Job requests, as `kubectl set resources --requests` takes it:
    /// `RESOURCE=QUANTITY[,…]`, e.g. `cpu=500m,memory=1Gi,nvidia.com/gpu=1`.
    #[arg(long, value_name = "RESOURCE=QUANTITY,…")]
    pub requests: Option<String>,
    /// Job name (feeds the tie-break hash).
    #[arg(long, default_value = "plan")]
    pub name: String,
    /// Output format; `wide` adds the pods that fit per cluster and why a cluster got nothing.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

/// Plans the Job the flags describe in namespace `ns` and prints it.
pub fn run(args: &PlanArgs, ns: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let clusters = clusters(args)?;
    let job = job(args, ns)?;
    let record = edit::create(job, "plan".to_owned(), &clusters, Timestamp::now())
        .map_err(|e| UsageError::new(format!("error: the Job these flags describe: {e}")))?;
    let plan = plan_of(&record, &args.clusters);
    match args.output {
        Some(Output::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&plan.to_json())?)?,
        Some(Output::Yaml) => write!(out, "{}", serde_yaml::to_string(&plan.to_json())?)?,
        Some(Output::Wide) => wide(out, &plan, &record, &clusters)?,
        None => write!(out, "{}", plan.to_table())?,
    }
    if !matches!(args.output, Some(Output::Json | Output::Yaml)) {
        for message in notes(&record) {
            eprintln!("Warning: {message}");
        }
    }
    Ok(())
}

/// The Job the flags describe, as `fedctl create` would send it.
fn job(args: &PlanArgs, ns: &str) -> anyhow::Result<Job> {
    if args.parallelism < 0 || args.completions.is_some_and(|c| c < 0) {
        return Err(UsageError::new(
            "error: --parallelism and --completions must be greater than or equal to 0",
        )
        .into());
    }
    if let Some(p) = &args.preferences {
        Preferences::parse(p).map_err(|e| UsageError::new(format!("error: --preferences: {e}")))?;
    }
    let mut requests = BTreeMap::new();
    if let Some(r) = &args.requests {
        resources("--requests", r, r)?;
        // Checked: the quantities go into the template as written.
        requests.extend(key_values("--requests", r, r)?);
    }
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": args.name, "namespace": ns},
        "spec": {"parallelism": args.parallelism,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "plan", "image": "plan",
                                                       "resources": {"requests": requests}}]}}}
    });
    if let Some(c) = args.completions {
        job["spec"]["completions"] = json!(c);
    }
    if let Some(p) = &args.preferences {
        job["metadata"]["annotations"] = json!({PREFERENCES_ANNOTATION: p});
    }
    Ok(serde_json::from_value(job)?)
}

/// The clusters the flags describe: Ready, not cordoned, with their labels and free nodes.
fn clusters(args: &PlanArgs) -> anyhow::Result<Clusters> {
    let mut clusters: Clusters = args
        .clusters
        .iter()
        .map(|name| {
            let view = ClusterView {
                ready: true,
                ..Default::default()
            };
            (name.clone(), view)
        })
        .collect();
    for flag in &args.labels {
        let (cluster, pairs) = per_cluster("--labels", flag, &clusters)?;
        let labels = &mut clusters.get_mut(cluster).expect("checked").labels;
        for (key, value) in key_values("--labels", flag, pairs)? {
            let rules: Vec<String> = qualified_name(key)
                .into_iter()
                .map(|r| format!("key {key:?}: {r}"))
                .chain(
                    label_value(value)
                        .into_iter()
                        .map(|r| format!("value {value:?}: {r}")),
                )
                .collect();
            if !rules.is_empty() {
                return Err(usage("--labels", flag, &rules.join("; ")).into());
            }
            labels.insert(key.to_owned(), value.to_owned());
        }
    }
    let mut nodes: BTreeMap<&str, Vec<Amounts>> = BTreeMap::new();
    for flag in &args.nodes {
        let (cluster, list) = per_cluster("--node", flag, &clusters)?;
        let mut free = resources("--node", flag, list)?;
        free.entry("pods".to_owned()).or_insert(DEFAULT_NODE_PODS);
        nodes.entry(cluster).or_default().push(free);
    }
    for (cluster, free) in nodes {
        let mut groups = BTreeMap::new();
        for amounts in free {
            *groups.entry((Shape::default(), amounts)).or_insert(0u32) += 1;
        }
        let mut capacity = ClusterCapacity::default();
        let report = Reporter::default()
            .report(&groups)
            .expect("a first report is full");
        capacity.apply(&report).expect("a full report applies");
        clusters.get_mut(cluster).expect("checked").capacity = Some(Arc::new(capacity));
    }
    Ok(clusters)
}

/// `CLUSTER:REST` of `flag`'s value, the cluster one of `--clusters`.
fn per_cluster<'a>(
    flag: &str,
    value: &'a str,
    clusters: &Clusters,
) -> Result<(&'a str, &'a str), UsageError> {
    let Some((cluster, rest)) = value.split_once(':') else {
        let form = if flag == "--node" {
            "CLUSTER:RESOURCE=QUANTITY[,RESOURCE=QUANTITY…]"
        } else {
            "CLUSTER:KEY=VALUE[,KEY=VALUE…]"
        };
        return Err(usage(flag, value, &format!("must be {form}")));
    };
    if !clusters.contains_key(cluster) {
        return Err(usage(
            flag,
            value,
            &format!("cluster {cluster:?} is not one of --clusters"),
        ));
    }
    Ok((cluster, rest))
}

/// `K=V,K=V` pairs of `list` (part of `value`, given to `flag`).
fn key_values<'a>(
    flag: &str,
    value: &str,
    list: &'a str,
) -> Result<Vec<(&'a str, &'a str)>, UsageError> {
    list.split(',')
        .map(|pair| {
            pair.split_once('=')
                .ok_or_else(|| usage(flag, value, &format!("{pair:?} is not KEY=VALUE")))
        })
        .collect()
}

/// Resource amounts of `list` (part of `value`, given to `flag`): names and non-negative
/// Kubernetes quantities, in the units the kube-scheduler compares.
fn resources(flag: &str, value: &str, list: &str) -> Result<Amounts, UsageError> {
    let mut amounts = Amounts::new();
    for (name, quantity) in key_values(flag, value, list)? {
        let rules = qualified_name(name);
        if !rules.is_empty() {
            return Err(usage(
                flag,
                value,
                &format!("resource name {name:?}: {}", rules.join("; ")),
            ));
        }
        let q = Quantity::parse(quantity)
            .map_err(|_| usage(flag, value, &format!("{name}: {FORMAT_MESSAGE}")))?;
        if q.is_negative() {
            return Err(usage(
                flag,
                value,
                &format!("{name}: must be greater than or equal to 0"),
            ));
        }
        amounts.insert(name.to_owned(), scheduling_amount(name, &q));
    }
    Ok(amounts)
}

fn usage(flag: &str, value: &str, rule: &str) -> UsageError {
    UsageError::new(format!("error: {flag} {value}: {rule}"))
}

/// What `record` plans per cluster of `names`: the clusters with work first (most parallelism,
/// then most completions, then by name), then the others by name.
fn plan_of<'a>(record: &FederatedJob, names: &'a [String]) -> Plan<'a> {
    let work_queue = record.spec().completions.is_none();
    let mut clusters: Vec<ClusterPlan<'a>> = Vec::with_capacity(names.len());
    for name in names {
        if clusters.iter().any(|c| c.cluster == name) {
            continue;
        }
        let completions = record
            .shards_in(name)
            .map(|s| s.completions.unwrap_or(0))
            .sum::<i32>();
        clusters.push(ClusterPlan {
            cluster: name,
            parallelism: record.planned.get(name.as_str()).copied().unwrap_or(0),
            completions: (!work_queue).then_some(completions),
        });
    }
    let has_work = |c: &ClusterPlan<'_>| c.parallelism > 0 || c.completions.unwrap_or(0) > 0;
    clusters.sort_by(|a, b| {
        has_work(b)
            .cmp(&has_work(a))
            .then(b.parallelism.cmp(&a.parallelism))
            .then(b.completions.cmp(&a.completions))
            .then(a.cluster.cmp(b.cluster))
    });
    Plan {
        clusters,
        unplaced: Share {
            parallelism: record.unplaced.parallelism,
            completions: record.unplaced.completions,
        },
    }
}

/// The plan with two more columns: pods of the Job that fit in the cluster (`<unknown>`
/// without `--node`) and why it got nothing.
fn wide(
    out: &mut dyn Write,
    plan: &Plan<'_>,
    record: &FederatedJob,
    clusters: &Clusters,
) -> anyhow::Result<()> {
    let reasons: BTreeMap<String, Reason> = left_out(record, clusters).into_iter().collect();
    let template = serde_json::to_value(&record.spec().template).unwrap_or(Value::Null);
    let demand = PodDemand::of_template(&template);
    let none = || "<none>".to_owned();
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(plan.clusters.len() + 1);
    for c in &plan.clusters {
        let fit = clusters
            .get(c.cluster)
            .and_then(|v| v.capacity.as_deref())
            .map_or("<unknown>".to_owned(), |cap| {
                pods_that_fit(&demand, cap).to_string()
            });
        rows.push(vec![
            c.cluster.to_owned(),
            c.parallelism.to_string(),
            c.completions.map_or_else(none, |v| v.to_string()),
            fit,
            reasons.get(c.cluster).map_or_else(none, Reason::to_string),
        ]);
    }
    if plan.unplaced != Share::default() {
        rows.push(vec![
            "UNPLACED".to_owned(),
            plan.unplaced.parallelism.to_string(),
            plan.unplaced.completions.to_string(),
            "<none>".to_owned(),
            "<none>".to_owned(),
        ]);
    }
    let header = [
        "CLUSTER",
        "PARALLELISM",
        "COMPLETIONS",
        "PODS-FIT",
        "REASON",
    ];
    super::output::table(out, &header, rows)
}

/// The conditions the plan would set that a person should read: why work was not placed,
/// and a capacity split that fell back to the static weights.
fn notes(record: &FederatedJob) -> Vec<String> {
    let conditions = record
        .job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    conditions
        .iter()
        .filter(|c| matches!(c.type_.as_str(), "Unschedulable" | "StaticWeights"))
        .filter_map(|c| c.message.clone())
        .collect()
}
