//! `fedctl`, the command-line client of the federation, shaped after kubectl: the same verbs,
//! `-n`, `-o json|yaml|wide`, errors as `Error from server (Reason): message` on stderr with a
//! non-zero exit. `fedctl plan` works offline, from the same split code the scheduler runs.

pub mod kubeconfig;
mod output;
pub mod plan;
mod wait;

pub use plan::PlanArgs;

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fedjob_proto::duration;
use fedjob_proto::v1::{self, federation_client::FederationClient};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::{Interceptor, interceptor::InterceptedService};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::model::manifest::FieldValidation;

/// The federation's command-line client.
#[derive(Debug, Parser)]
#[command(
    name = "fedctl",
    version,
    about = "Run Kubernetes Jobs across many clusters"
)]
pub struct Cli {
    /// Scheduler address.
    #[arg(
        long,
        global = true,
        env = "FEDJOB_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Bearer token for a scheduler started with `--tokens`.
    #[arg(long, global = true, env = "FEDJOB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA that signed the scheduler's certificate (for an `https://` server).
    #[arg(long, global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// Namespace of the Job (default: the manifest's for create and apply, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// JSON, one object.
    Json,
    /// YAML.
    Yaml,
    /// A table with more columns.
    Wide,
}

/// fedctl's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a federated Job from a file (`-` for stdin).
    Create(FileArgs),
    /// Create a Job, or update it to match the file.
    Apply(FileArgs),
    /// Show Jobs or clusters.
    Get(GetArgs),
    /// Show a Job in detail, with its per-cluster breakdown.
    Describe(DescribeArgs),
    /// Change a Job with a JSON merge patch.
    Patch(PatchArgs),
    /// Set a Job's parallelism and/or completions.
    Scale(ScaleArgs),
    /// Delete a Job.
    Delete(DeleteArgs),
    /// Wait for a Job to reach a condition, showing its progress.
    Wait(WaitArgs),
    /// Stop new work going to a cluster.
    Cordon(ClusterArgs),
    /// Let new work go to a cluster again.
    Uncordon(ClusterArgs),
    /// Show the split a Job would get, without a server.
    Plan(PlanArgs),
    /// Print a kubeconfig for the scheduler's Kubernetes API (context `federation-cluster`),
    /// with `--token` and `--ca` when given.
    Kubeconfig(kubeconfig::KubeconfigArgs),
}

/// `-f FILE`.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// The Job manifest (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// Output format of the created Job.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Validate and plan only.
    #[arg(long)]
    pub dry_run: bool,
    /// Fields batch/v1 Job does not have: `strict` (or `true`) refuses the Job, `ignore` (or
    /// `false`) drops them.
    #[arg(long, value_enum, default_value_t, num_args = 0..=1, default_missing_value = "strict")]
    pub validate: Validate,
}

/// `--validate`, as kubectl's (without `warn`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Validate {
    /// Refuse a Job with unknown fields.
    #[default]
    #[value(alias = "true")]
    Strict,
    /// Drop unknown fields.
    #[value(alias = "false")]
    Ignore,
}

impl Validate {
    /// The request's `field_validation`.
    fn field_validation(self) -> String {
        match self {
            Self::Strict => FieldValidation::Strict,
            Self::Ignore => FieldValidation::Ignore,
        }
        .to_string()
    }
}

/// Resources fedctl knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    /// Federated Jobs.
    #[value(alias = "jobs")]
    Job,
    /// Member clusters.
    #[value(alias = "clusters")]
    Cluster,
}

/// `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// `job`/`jobs` or `cluster`/`clusters` (also `job/NAME`).
    pub resource: String,
    /// One name.
    pub name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// List Jobs of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector (`a=b,c!=d`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// `describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// `job` (also `job/NAME`).
    pub resource: String,
    /// The Job's name.
    pub name: Option<String>,
}

/// `patch`.
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// `job` (also `job/NAME`).
    pub resource: String,
    /// The Job's name.
    pub name: Option<String>,
    /// The JSON merge patch.
    #[arg(short = 'p', long)]
    pub patch: String,
    /// Output format of the patched Job.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

/// `scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `job` (also `job/NAME`).
    pub resource: String,
    /// The Job's name.
    pub name: Option<String>,
    /// New parallelism.
    #[arg(long)]
    pub parallelism: Option<i32>,
    /// New completions.
    #[arg(long)]
    pub completions: Option<i32>,
}

/// `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// `job` (also `job/NAME`).
    pub resource: String,
    /// The Job's name.
    pub name: Option<String>,
    /// `orphan` keeps the shards in their clusters; `background` deletes them too.
    #[arg(long, default_value = "orphan")]
    pub cascade: Cascade,
}

/// Deletion propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    /// Shards stay in their clusters.
    Orphan,
    /// Shards are deleted with their pods.
    Background,
    /// Same as background for the federation.
    Foreground,
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// `job` (also `job/NAME`).
    pub resource: String,
    /// The Job's name.
    pub name: Option<String>,
    /// `condition=Complete`, `condition=Failed` or `delete`.
    #[arg(long = "for")]
    pub condition: String,
    /// Give up after this long.
    #[arg(long, default_value = "30s", value_parser = duration::parse)]
    pub timeout: Duration,
}

/// `cordon` / `uncordon`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Cluster name.
    pub cluster: String,
}

/// Runs one command; output goes to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    // Unset, the server takes a manifest's own namespace, else `default` (as kubectl does:
    // only an explicit -n that differs from the manifest's is refused).
    let ns = cli.namespace.clone().unwrap_or_default();
    if let Command::Plan(args) = &cli.command {
        return plan::run(args, cli.namespace.as_deref().unwrap_or("default"), out);
    }
    if let Command::Kubeconfig(args) = &cli.command {
        let ns = cli.namespace.as_deref().unwrap_or("default");
        return kubeconfig::print(args, cli.token.as_deref(), cli.ca.as_deref(), ns, out);
    }
    let mut client = connect(&cli.server, cli.token.as_deref(), cli.ca.as_deref()).await?;
    match cli.command {
        Command::Create(a) => {
            let manifest = read_file(&a.file)?;
            let req = v1::CreateJobRequest {
                manifest,
                namespace: ns,
                dry_run: a.dry_run,
                field_validation: a.validate.field_validation(),
                ..Default::default()
            };
            let job = client.create_job(req).await?.into_inner();
            warn_unschedulable(&job);
            print_changed(out, &job, "created", a.output, a.dry_run)
        }
        Command::Apply(a) => {
            let manifest = read_file(&a.file)?;
            let req = v1::ApplyJobRequest {
                manifest,
                namespace: ns,
                dry_run: a.dry_run,
                field_validation: a.validate.field_validation(),
                ..Default::default()
            };
            let job = client.apply_job(req).await?.into_inner();
            warn_unschedulable(&job);
            print_changed(out, &job, "configured", a.output, a.dry_run)
        }
        Command::Get(a) => {
            let (resource, name) = resource_and_name(&a.resource, a.name.as_deref())?;
            match (resource, name) {
                (Resource::Job, Some(name)) => {
                    let req = v1::GetJobRequest {
                        namespace: ns,
                        name,
                    };
                    let job = client.get_job(req).await?.into_inner();
                    output::job(out, &job, a.output)
                }
                (Resource::Job, None) => {
                    let req = v1::ListJobsRequest {
                        namespace: ns,
                        all_namespaces: a.all_namespaces,
                        label_selector: a.selector.unwrap_or_default(),
                    };
                    let list = client.list_jobs(req).await?.into_inner();
                    output::jobs(out, &list.items, a.output, a.all_namespaces)
                }
                (Resource::Cluster, name) => {
                    let list = client
                        .list_clusters(v1::ListClustersRequest {})
                        .await?
                        .into_inner();
                    let items: Vec<_> = list
                        .items
                        .into_iter()
                        .filter(|c| name.as_ref().is_none_or(|n| &c.name == n))
                        .collect();
                    if let Some(n) = name
                        && items.is_empty()
                    {
                        bail!(ServerError::new(
                            "NotFound",
                            format!("clusters \"{n}\" not found")
                        ));
                    }
                    output::clusters(out, &items, a.output)
                }
            }
        }
        Command::Describe(a) => {
            let name = job_name(&a.resource, a.name.as_deref())?;
            let job = client
                .get_job(v1::GetJobRequest {
                    namespace: ns,
                    name,
                })
                .await?
                .into_inner();
            output::describe(out, &job)
        }
        Command::Patch(a) => {
            let name = job_name(&a.resource, a.name.as_deref())?;
            let req = v1::PatchJobRequest {
                namespace: ns,
                name,
                patch: a.patch,
                ..Default::default()
            };
            let job = client.patch_job(req).await?.into_inner();
            print_changed(out, &job, "patched", a.output, false)
        }
        Command::Scale(a) => {
            let name = job_name(&a.resource, a.name.as_deref())?;
            if a.parallelism.is_none() && a.completions.is_none() {
                bail!(UsageError::new(
                    "error: give --parallelism, --completions or both"
                ));
            }
            let req = v1::ScaleJobRequest {
                namespace: ns,
                name,
                parallelism: a.parallelism,
                completions: a.completions,
                ..Default::default()
            };
            let job = client.scale_job(req).await?.into_inner();
            print_changed(out, &job, "scaled", None, false)
        }
        Command::Delete(a) => {
            let name = job_name(&a.resource, a.name.as_deref())?;
            let propagation_policy = match a.cascade {
                Cascade::Orphan => "Orphan",
                Cascade::Background => "Background",
                Cascade::Foreground => "Foreground",
            };
            let req = v1::DeleteJobRequest {
                namespace: ns,
                name: name.clone(),
                propagation_policy: propagation_policy.into(),
            };
            let answer = client.delete_job(req).await?.into_inner();
            if answer.deleted {
                writeln!(out, "job.batch \"{name}\" deleted")?;
            } else {
                let waiting = answer
                    .job
                    .as_ref()
                    .map(output::clusters_to_confirm)
                    .unwrap_or_default();
                writeln!(
                    out,
                    "job.batch \"{name}\" deleted (waiting for {} to delete its shards)",
                    waiting.join(", ")
                )?;
            }
            Ok(())
        }
        Command::Wait(a) => {
            let name = job_name(&a.resource, a.name.as_deref())?;
            wait::run(&mut client, &ns, &name, &a.condition, a.timeout, out).await
        }
        Command::Cordon(a) => {
            client
                .cordon_cluster(v1::CordonClusterRequest {
                    name: a.cluster.clone(),
                })
                .await?;
            writeln!(out, "cluster/{} cordoned", a.cluster)?;
            Ok(())
        }
        Command::Uncordon(a) => {
            client
                .uncordon_cluster(v1::CordonClusterRequest {
                    name: a.cluster.clone(),
                })
                .await?;
            writeln!(out, "cluster/{} uncordoned", a.cluster)?;
            Ok(())
        }
        Command::Plan(_) | Command::Kubeconfig(_) => unreachable!("handled above"),
    }
}

/// Prints the Job's `Unschedulable` message on stderr as a warning, as kubectl prints the API
/// server's warnings (SPEC §10: a Job the preferences leave with no eligible cluster says so).
fn warn_unschedulable(job: &v1::FederatedJob) {
    let value = output::job_value(job);
    let conditions = value["status"]["conditions"].as_array().cloned();
    for c in conditions.unwrap_or_default() {
        if c["type"] == "Unschedulable"
            && let Some(message) = c["message"].as_str()
        {
            eprintln!("Warning: {message}");
        }
    }
}

fn print_changed(
    out: &mut dyn Write,
    job: &v1::FederatedJob,
    verb: &str,
    format: Option<Output>,
    dry_run: bool,
) -> anyhow::Result<()> {
    match format {
        Some(Output::Json | Output::Yaml) => output::job(out, job, format),
        _ => {
            let name = output::job_value(job)["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let suffix = if dry_run { " (dry run)" } else { "" };
            writeln!(out, "job.batch/{name} {verb}{suffix}")?;
            Ok(())
        }
    }
}

/// A client of the user API that presents the bearer token, if any, on every call.
pub type Client = FederationClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer TOKEN` to each request.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// Opens a channel to the scheduler: TLS for `https://`, trusting the CA given with `--ca`;
/// plain text for `http://`.
pub async fn connect(
    server: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<Client> {
    let mut endpoint = Endpoint::from_shared(server.to_owned())
        .with_context(|| format!("invalid --server {server}"))?
        .connect_timeout(Duration::from_secs(5));
    if server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        match ca {
            Some(path) => {
                let pem =
                    std::fs::read(path).with_context(|| format!("--ca {}", path.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            None => bail!(
                "error: --server {server} uses TLS: give the CA that signed its certificate with --ca"
            ),
        }
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        anyhow::anyhow!("Unable to connect to the server {server}: {e:#} (is fedjob-scheduler running? set --server or $FEDJOB_SERVER)")
    })?;
    let token = token
        .map(|t| format!("Bearer {t}").parse::<MetadataValue<Ascii>>())
        .transpose()
        .context("--token must be printable ASCII")?;
    Ok(
        FederationClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
    )
}

fn read_file(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("error: the path \"{path}\" cannot be read"))
}

/// Accepts `job NAME`, `jobs NAME`, `job/NAME`, and the same for clusters.
fn resource_and_name(
    resource: &str,
    name: Option<&str>,
) -> anyhow::Result<(Resource, Option<String>)> {
    let (kind, inline) = match resource.split_once('/') {
        Some((k, n)) => (k, Some(n.to_owned())),
        None => (resource, None),
    };
    let resource = match kind {
        "job" | "jobs" | "job.batch" | "jobs.batch" => Resource::Job,
        "cluster" | "clusters" => Resource::Cluster,
        other => bail!(UsageError::new(format!(
            "error: the server doesn't have a resource type \"{other}\" (fedctl knows jobs and clusters)"
        ))),
    };
    if inline.is_some() && name.is_some() {
        bail!(UsageError::new(
            "error: there is no need to specify a resource type as a separate argument when passing arguments in resource/name form"
        ));
    }
    Ok((resource, inline.or(name.map(str::to_owned))))
}

fn job_name(resource: &str, name: Option<&str>) -> anyhow::Result<String> {
    match resource_and_name(resource, name)? {
        (Resource::Job, Some(name)) => Ok(name),
        (Resource::Job, None) => bail!(UsageError::new("error: a Job name is required")),
        (Resource::Cluster, _) => bail!(UsageError::new("error: only jobs can be used here")),
    }
}

/// A command line fedctl cannot act on: the message names the flag and the rule. Exits with
/// code 64 (`EX_USAGE`), as clap's own usage errors do.
#[derive(Debug)]
pub struct UsageError(String);

impl UsageError {
    /// A usage error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code of a command line error (`EX_USAGE`).
const EX_USAGE: u8 = 64;

/// The exit code for `e`: 64 for a usage error, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() {
        EX_USAGE
    } else {
        1
    }
}

/// A server error, printed like kubectl's.
#[derive(Debug)]
pub struct ServerError {
    reason: &'static str,
    message: String,
}

impl ServerError {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }

    /// Maps a gRPC status to kubectl's reason words.
    pub fn from_status(s: &tonic::Status) -> Self {
        use tonic::Code::*;
        let reason = match s.code() {
            NotFound => "NotFound",
            AlreadyExists => "AlreadyExists",
            InvalidArgument => "Invalid",
            Aborted => "Conflict",
            FailedPrecondition => "BadRequest",
            PermissionDenied => "Forbidden",
            Unauthenticated => "Unauthorized",
            Unavailable => "ServiceUnavailable",
            DeadlineExceeded => "Timeout",
            _ => "InternalError",
        };
        Self::new(reason, s.message().to_owned())
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error from server ({}): {}", self.reason, self.message)
    }
}

impl std::error::Error for ServerError {}

/// Turns an error into the line fedctl prints on stderr.
pub fn describe_error(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => ServerError::from_status(s).to_string(),
        None => format!("{e:#}"),
    }
}
