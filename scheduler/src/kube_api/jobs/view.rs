//! A federated Job as the Kubernetes API shows it: a whole `batch/v1` Job whose `uid` and
//! `resourceVersion` are the federated Job's and whose `status` is the aggregate (SPEC §5), kept
//! serialized, and its Table row: the API server's Job columns plus the completions per member
//! cluster.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::api::convert::job_json;
use crate::kube_api::table::{self, column};
use crate::model::clusters::Clusters;
use crate::model::status::placements;
use crate::records::StoredJob;

/// One version of a federated Job, as the API serves it.
#[derive(Debug, Clone)]
pub struct JobView {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.resourceVersion`.
    pub rv: u64,
    /// The `batch/v1` Job, serialized.
    pub json: Bytes,
    /// `metadata.labels`, for label selectors.
    pub labels: Option<Value>,
    /// `status.succeeded`, for the `status.successful` field selector.
    pub succeeded: i64,
    /// The `Clusters` cell: completions per member cluster.
    pub clusters: String,
}

impl JobView {
    /// The view of `stored`, its placements read against `clusters`.
    pub fn of(stored: &StoredJob, clusters: &Clusters) -> Self {
        let value = job_json(stored);
        let record = &stored.record;
        Self {
            namespace: record.namespace().to_owned(),
            name: record.name().to_owned(),
            rv: stored.mod_revision,
            labels: value.pointer("/metadata/labels").cloned(),
            succeeded: value
                .pointer("/status/succeeded")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            json: Bytes::from(value.to_string()),
            clusters: clusters_cell(stored, clusters),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The Job, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The value of a field a field selector names ([`crate::kube_api::params::JOB_FIELDS`]).
    pub fn field(&self, field: &str) -> String {
        match field {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "status.successful" => self.succeeded.to_string(),
            _ => String::new(),
        }
    }

    /// The row's cells under [`columns`].
    pub fn cells(&self, value: &Value) -> Vec<Value> {
        let mut cells = table::job_cells(value);
        cells.push(json!(self.clusters));
        cells
    }
}

/// The API server's Job columns, and `Clusters` (shown with `-o wide`).
pub fn columns() -> Vec<Value> {
    let mut columns = table::job_columns();
    columns.push(column(
        "Clusters",
        "",
        "Completions per member cluster (succeeded/planned), as the federation divided the Job.",
        1,
    ));
    columns
}

/// `c1=6/6,c2=3/6`: succeeded and planned completions in each member cluster with a share
/// (succeeded alone for a work queue); `<none>` before the Job has any.
fn clusters_cell(stored: &StoredJob, clusters: &Clusters) -> String {
    let cells: Vec<String> = placements(&stored.record, clusters)
        .into_iter()
        .map(|p| match p.completions {
            Some(c) => format!("{}={}/{c}", p.cluster, p.succeeded),
            None => format!("{}={}", p.cluster, p.succeeded),
        })
        .collect();
    if cells.is_empty() {
        "<none>".to_owned()
    } else {
        cells.join(",")
    }
}
