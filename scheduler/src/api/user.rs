//! The user API, `fedjob.v1.Federation`: what fedctl, grpcurl and users' own clients call.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fedjob_proto::json::from_struct;
use fedjob_proto::v1::{self, federation_server::Federation};
use futures::Stream;
use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tonic::{Request, Response, Status};

use super::{convert, measured, status};
use crate::auth::{Access, Guard};
use crate::control_plane::ControlPlane;
use crate::model::job::job_key;
use crate::model::manifest::{self, FieldValidation};
use crate::model::preferences::Preferences;
use crate::model::split;
use fedjob_proto::shutdown::Shutdown;

/// Serves `fedjob.v1.Federation`.
#[derive(Clone)]
pub struct UserApi {
    cp: Arc<ControlPlane>,
    guard: Guard,
    shutdown: Shutdown,
}

impl UserApi {
    /// A service over `cp` checking callers with `guard`; watches end when `shutdown` fires.
    pub fn new(cp: Arc<ControlPlane>, guard: Guard, shutdown: Shutdown) -> Self {
        Self {
            cp,
            guard,
            shutdown,
        }
    }

    /// Apply (`create`: a missing Job is created) or update: the manifest replaces the Job's
    /// labels, annotations and spec, guarded by its `metadata.resourceVersion` when given.
    async fn replace(
        &self,
        req: SubmittedJob,
        create: bool,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        let job = req.decode()?;
        let rv = resource_version(job.metadata.resource_version.as_deref())?;
        let stored = self
            .cp
            .replace_job(job, rv, create, req.dry_run)
            .await
            .map_err(status)?;
        Ok(self.answer(&stored))
    }

    /// One call: checks the caller for `access`, runs `handler` on the request, and records
    /// the outcome and latency under `method` (refusals included).
    async fn call<Req, T, Fut>(
        &self,
        method: &'static str,
        access: Access,
        req: Request<Req>,
        handler: impl FnOnce(Req) -> Fut,
    ) -> Result<T, Status>
    where
        Fut: Future<Output = Result<T, Status>>,
    {
        measured(self.cp.metrics(), method, async {
            self.guard.user(&req, access)?;
            handler(req.into_inner()).await
        })
        .await
    }

    fn answer(&self, stored: &crate::control_plane::StoredJob) -> Response<v1::FederatedJob> {
        Response::new(convert::federated_job(stored, &self.cp.cluster_views()))
    }
}

/// The namespace a request names, `default` when empty.
fn namespace(ns: &str) -> &str {
    if ns.is_empty() { "default" } else { ns }
}

/// The Job key of a request naming one Job.
fn key_of(ns: &str, name: &str) -> Result<String, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(
            "name: Required value: name the Job",
        ));
    }
    Ok(job_key(namespace(ns), name))
}

/// What a create, apply or update request carries: the same fields in each.
struct SubmittedJob {
    job: Option<prost_types::Struct>,
    manifest: String,
    namespace: String,
    dry_run: bool,
    field_validation: String,
}

macro_rules! submitted_job_from {
    ($($request:path),*) => {$(
        impl From<$request> for SubmittedJob {
            fn from(r: $request) -> Self {
                let $request { job, manifest, namespace, dry_run, field_validation } = r;
                Self { job, manifest, namespace, dry_run, field_validation }
            }
        }
    )*};
}
submitted_job_from!(
    v1::CreateJobRequest,
    v1::ApplyJobRequest,
    v1::UpdateJobRequest
);

impl SubmittedJob {
    /// The Job, given as a JSON object or as text, decoded and checked for unknown fields.
    fn decode(&self) -> Result<Job, Status> {
        let fields = field_validation(&self.field_validation)?;
        let value = match (&self.job, self.manifest.trim().is_empty()) {
            (Some(s), true) => from_struct(s),
            (None, false) => {
                manifest::parse_manifest(&self.manifest).map_err(|e| super::invalid_argument(&e))?
            }
            (None, true) => {
                return Err(Status::invalid_argument(
                    "job: Required value: pass the Job as `job` (a JSON object) or `manifest` (YAML or JSON text)",
                ));
            }
            (Some(_), false) => {
                return Err(Status::invalid_argument(
                    "job: Invalid value: pass the Job either as `job` or as `manifest`, not both",
                ));
            }
        };
        manifest::decode_job(value, &self.namespace, fields)
            .map_err(|e| super::invalid_argument(&e))
    }
}

/// A request's `field_validation`.
fn field_validation(value: &str) -> Result<FieldValidation, Status> {
    FieldValidation::from_request(value).ok_or_else(|| {
        Status::invalid_argument(format!(
            "field_validation: Unsupported value: {value:?}: supported values: \"Strict\", \"Ignore\""
        ))
    })
}

/// `metadata.resourceVersion` (or a request's `resource_version`) as a revision.
fn resource_version(rv: Option<&str>) -> Result<Option<u64>, Status> {
    match rv.map(str::trim).filter(|rv| !rv.is_empty()) {
        None => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| {
            Status::invalid_argument(format!(
                "metadata.resourceVersion: Invalid value: \"{rv}\": must be a resourceVersion returned by the federation"
            ))
        }),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchJobEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Federation for UserApi {
    async fn create_job(
        &self,
        req: Request<v1::CreateJobRequest>,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        self.call(
            "Federation/CreateJob",
            Access::Write,
            req,
            |req| async move {
                let r = SubmittedJob::from(req);
                let job = r.decode()?;
                let stored = self.cp.create_job(job, r.dry_run).await.map_err(status)?;
                Ok(self.answer(&stored))
            },
        )
        .await
    }

    async fn apply_job(
        &self,
        req: Request<v1::ApplyJobRequest>,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        self.call("Federation/ApplyJob", Access::Write, req, |req| {
            self.replace(req.into(), true)
        })
        .await
    }

    async fn update_job(
        &self,
        req: Request<v1::UpdateJobRequest>,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        self.call("Federation/UpdateJob", Access::Write, req, |req| {
            self.replace(req.into(), false)
        })
        .await
    }

    async fn patch_job(
        &self,
        req: Request<v1::PatchJobRequest>,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        self.call(
            "Federation/PatchJob",
            Access::Write,
            req,
            |req| async move {
                let r = req;
                let key = key_of(&r.namespace, &r.name)?;
                let fields = field_validation(&r.field_validation)?;
                let patch: Value = serde_json::from_str(&r.patch).map_err(|e| {
                    Status::invalid_argument(format!("patch: Invalid value: not JSON: {e}"))
                })?;
                if !patch.is_object() {
                    return Err(Status::invalid_argument(
                        "patch: Invalid value: a merge patch must be a JSON object",
                    ));
                }
                let in_patch = patch
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str);
                let rv =
                    resource_version(Some(&r.resource_version))?.or(resource_version(in_patch)?);
                let ns = namespace(&r.namespace).to_owned();
                let stored = self
                    .cp
                    .edit_job(&key, rv, false, |old| {
                        let mut value = serde_json::to_value(old).unwrap_or_default();
                        json_patch::merge(&mut value, &patch);
                        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            meta.remove("resourceVersion");
                        }
                        Ok(manifest::decode_job(value, &ns, fields)?)
                    })
                    .await
                    .map_err(status)?;
                Ok(self.answer(&stored))
            },
        )
        .await
    }

    async fn scale_job(
        &self,
        req: Request<v1::ScaleJobRequest>,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        self.call(
            "Federation/ScaleJob",
            Access::Write,
            req,
            |req| async move {
                let r = req;
                let key = key_of(&r.namespace, &r.name)?;
                if r.parallelism.is_none() && r.completions.is_none() {
                    return Err(Status::invalid_argument(
                        "parallelism: Required value: give parallelism, completions or both",
                    ));
                }
                let rv = resource_version(Some(&r.resource_version))?;
                let stored = self
                    .cp
                    .edit_job(&key, rv, false, |old| {
                        let mut job = old.clone();
                        let spec = job.spec.get_or_insert_with(Default::default);
                        if let Some(p) = r.parallelism {
                            spec.parallelism = Some(p);
                        }
                        if let Some(c) = r.completions {
                            spec.completions = Some(c);
                        }
                        Ok(job)
                    })
                    .await
                    .map_err(status)?;
                Ok(self.answer(&stored))
            },
        )
        .await
    }

    async fn get_job(
        &self,
        req: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::FederatedJob>, Status> {
        self.call("Federation/GetJob", Access::Read, req, |req| async move {
            let r = req;
            let key = key_of(&r.namespace, &r.name)?;
            let stored = self
                .cp
                .read_job(&key)
                .await
                .map_err(status)?
                .ok_or_else(|| Status::not_found(format!("jobs.batch \"{}\" not found", r.name)))?;
            let clusters = self.cp.cluster_views();
            Ok(Response::new(convert::described_job(&stored, &clusters)))
        })
        .await
    }

    async fn list_jobs(
        &self,
        req: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        self.call("Federation/ListJobs", Access::Read, req, |req| async move {
            let r = req;
            let selector = LabelSelector::parse(&r.label_selector)?;
            let ns = (!r.all_namespaces).then(|| namespace(&r.namespace));
            let clusters = self.cp.cluster_views();
            let items = self
                .cp
                .jobs(ns)
                .into_iter()
                .filter(|j| selector.matches(j.record.job.metadata.labels.as_ref()))
                .map(|j| convert::federated_job(&j, &clusters))
                .collect();
            Ok(Response::new(v1::ListJobsResponse { items }))
        })
        .await
    }

    async fn delete_job(
        &self,
        req: Request<v1::DeleteJobRequest>,
    ) -> Result<Response<v1::DeleteJobResponse>, Status> {
        self.call("Federation/DeleteJob", Access::Write, req, |req| async move {
            let r = req;
            let key = key_of(&r.namespace, &r.name)?;
            let cascade = match r.propagation_policy.as_str() {
                "" | "Orphan" => false,
                "Background" | "Foreground" => true,
                other => {
                    return Err(Status::invalid_argument(format!(
                        "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Orphan\", \"Background\", \"Foreground\""
                    )));
                }
            };
            let remaining = self.cp.delete_job(&key, cascade).await.map_err(status)?;
            let clusters = self.cp.cluster_views();
            Ok(Response::new(v1::DeleteJobResponse {
                deleted: remaining.is_none(),
                job: remaining.map(|j| convert::federated_job(&j, &clusters)),
            }))
        })
        .await
    }

    type WatchJobStream = WatchStream;

    async fn watch_job(
        &self,
        req: Request<v1::WatchJobRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.call("Federation/WatchJob", Access::Read, req, |r| async move {
            let key = key_of(&r.namespace, &r.name)?;
            // Subscribed before the first read, so no change falls between the two.
            let mut watch = self.cp.job_state().watch(&key);
            let first = self
                .cp
                .read_job(&key)
                .await
                .map_err(status)?
                .ok_or_else(|| Status::not_found(format!("jobs.batch \"{}\" not found", r.name)))?;
            let cp = self.cp.clone();
            let shutdown = self.shutdown.clone();
            let stream = async_stream::try_stream! {
                let event = |kind: &str, job: &crate::control_plane::StoredJob| v1::WatchJobEvent {
                    r#type: kind.to_owned(),
                    job: Some(convert::federated_job(job, &cp.cluster_views())),
                };
                yield event("ADDED", &first);
                loop {
                    let mut change = tokio::select! {
                        change = watch.receiver.recv() => change,
                        _ = shutdown.fired() => break,
                    };
                    // Changes that queued while the last event was being sent are told as one
                    // event of the latest state: a Job over 1,000 clusters changes once per
                    // batch of its agents' reports, and encoding every version for every
                    // watcher cost a tenth of the scheduler.
                    loop {
                        match watch.receiver.try_recv() {
                            Ok(next) => change = Ok(next),
                            Err(TryRecvError::Lagged(n)) => change = Err(RecvError::Lagged(n)),
                            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                        }
                    }
                    match change {
                        Ok(c) => match &c.job {
                            Some(job) => yield event("MODIFIED", job),
                            None => {
                                if let Some(previous) = &c.previous {
                                    yield event("DELETED", previous);
                                }
                                break;
                            }
                        },
                        Err(RecvError::Lagged(_)) => {
                            // Missed changes: the current state says all a watcher needs.
                            match cp.job(&key) {
                                Some(job) => yield event("MODIFIED", &job),
                                None => break,
                            }
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            };
            let stream: WatchStream = Box::pin(stream);
            Ok(Response::new(stream))
        })
        .await
    }

    async fn list_clusters(
        &self,
        req: Request<v1::ListClustersRequest>,
    ) -> Result<Response<v1::ListClustersResponse>, Status> {
        self.call(
            "Federation/ListClusters",
            Access::Read,
            req,
            |_| async move {
                let counts = self.cp.shard_counts();
                let mut items: Vec<v1::Cluster> = self.cp.with_clusters(|table| {
                    table
                        .iter()
                        .map(|e| {
                            let connected = e.session.as_ref().is_some_and(|s| s.attached);
                            let shards = counts.get(&e.record.name).copied().unwrap_or(0);
                            convert::cluster(e, shards, connected)
                        })
                        .collect()
                });
                for c in &mut items {
                    c.capacity = self.cp.capacity().summary(&c.name);
                }
                Ok(Response::new(v1::ListClustersResponse { items }))
            },
        )
        .await
    }

    async fn cordon_cluster(
        &self,
        req: Request<v1::CordonClusterRequest>,
    ) -> Result<Response<v1::Cluster>, Status> {
        self.call("Federation/CordonCluster", Access::Write, req, |req| {
            self.set_cordon(req.name, true)
        })
        .await
    }

    async fn uncordon_cluster(
        &self,
        req: Request<v1::CordonClusterRequest>,
    ) -> Result<Response<v1::Cluster>, Status> {
        self.call("Federation/UncordonCluster", Access::Write, req, |req| {
            self.set_cordon(req.name, false)
        })
        .await
    }

    async fn plan_job(
        &self,
        req: Request<v1::PlanJobRequest>,
    ) -> Result<Response<v1::Plan>, Status> {
        self.call("Federation/PlanJob", Access::Read, req, |req| async move {
            let r = req;
            if r.parallelism < 0 || r.completions.is_some_and(|c| c < 0) {
                return Err(Status::invalid_argument(
                    "parallelism: Invalid value: must be greater than or equal to 0",
                ));
            }
            let prefs = if r.preferences.trim().is_empty() {
                Preferences::default()
            } else {
                Preferences::parse(&r.preferences)
                    .map_err(|e| Status::invalid_argument(format!("preferences: {e}")))?
            };
            let clusters: Vec<String> = if r.clusters.is_empty() {
                self.cp
                    .cluster_views()
                    .iter()
                    .filter(|(_, v)| v.schedulable())
                    .map(|(n, _)| n.clone())
                    .collect()
            } else {
                r.clusters
            };
            let name = if r.name.is_empty() { "plan" } else { &r.name };
            let plan = split::plan(
                &job_key(namespace(&r.namespace), name),
                r.parallelism,
                r.completions,
                &clusters,
                &prefs,
            );
            Ok(Response::new(v1::Plan {
                clusters: plan
                    .clusters
                    .iter()
                    .map(|c| {
                        let share = v1::Share {
                            parallelism: c.parallelism,
                            completions: c.completions.unwrap_or(0),
                        };
                        (c.cluster.to_owned(), share)
                    })
                    .collect(),
                unplaced: Some(v1::Share {
                    parallelism: plan.unplaced.parallelism,
                    completions: plan.unplaced.completions,
                }),
            }))
        })
        .await
    }
}

impl UserApi {
    async fn set_cordon(
        &self,
        name: String,
        cordoned: bool,
    ) -> Result<Response<v1::Cluster>, Status> {
        self.cp
            .set_cordoned(&name, cordoned)
            .await
            .map_err(status)?;
        let counts = self.cp.shard_counts();
        self.cp
            .with_clusters(|t| {
                t.get(&name).map(|e| {
                    let connected = e.session.as_ref().is_some_and(|s| s.attached);
                    convert::cluster(e, counts.get(&name).copied().unwrap_or(0), connected)
                })
            })
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("clusters \"{name}\" not found")))
    }
}

/// An equality-based label selector, as kubectl's `-l`: `a=b`, `a==b`, `a!=b`, `a`, `!a`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl LabelSelector {
    /// Parses a selector; an empty one matches everything.
    pub fn parse(text: &str) -> Result<Self, Status> {
        let mut reqs = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::Absent(k.trim().into())
            } else {
                Requirement::Exists(part.into())
            };
            let key = match &req {
                Requirement::Equals(k, _)
                | Requirement::NotEquals(k, _)
                | Requirement::Exists(k)
                | Requirement::Absent(k) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(Status::invalid_argument(format!(
                    "labelSelector: Invalid value: \"{text}\": unable to parse requirement \"{part}\""
                )));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v),
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_like_kubectl() {
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), "x".to_owned()),
            ("tier".to_owned(), "batch".to_owned()),
        ]
        .into();
        let yes = [
            "",
            "app=x",
            "app==x",
            "app",
            "!missing",
            "tier!=web",
            "app=x,tier=batch",
        ];
        for s in yes {
            assert!(
                LabelSelector::parse(s).unwrap().matches(Some(&labels)),
                "{s}"
            );
        }
        for s in ["app=y", "missing", "!app", "tier!=batch"] {
            assert!(
                !LabelSelector::parse(s).unwrap().matches(Some(&labels)),
                "{s}"
            );
        }
        assert!(LabelSelector::parse("=x").is_err());
    }
}
