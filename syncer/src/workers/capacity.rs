//! `--report-capacity`: watches the member cluster's nodes, and its pods bound to a node and
//! not finished (`fieldSelector=spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed`,
//! as the kube-scheduler's own informer), feeding the [`Capacity`] the connection reports from;
//! and its pods bound to no node (`spec.nodeName=,status.phase=Pending`), feeding the
//! [`Pending`] shards.
//! Read-only: it needs `nodes` and `pods` get, list and watch (ClusterRole
//! `fedjob-syncer-capacity` in `deploy/`).

use std::sync::Arc;

use fedjob_proto::capacity::NodeCapacity;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use tracing::{debug, warn};

use crate::context::Context;
use crate::state::capacity::{Capacity, Change, bound_pod};
use crate::state::pending::{Pending, unschedulable_pod};

/// The pods that take room on a node.
const BOUND_AND_UNFINISHED: &str = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";
/// The pods waiting for a node.
const UNBOUND: &str = "spec.nodeName=,status.phase=Pending";

fn json<K: Serialize>(object: &K) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// A watch event in the capacity's terms, `view` giving what an object amounts to.
fn change<K: ResourceExt, T>(
    event: watcher::Event<K>,
    key: impl Fn(&K) -> String,
    view: impl Fn(&K) -> Option<T>,
) -> Change<T> {
    match event {
        watcher::Event::Apply(o) => Change::Set(key(&o), view(&o)),
        watcher::Event::Delete(o) => Change::Deleted(key(&o)),
        watcher::Event::Init => Change::ListStart,
        watcher::Event::InitApply(o) => Change::Listed(key(&o), view(&o)),
        watcher::Event::InitDone => Change::ListDone,
    }
}

/// Feeds the watch of every node into `capacity`.
pub async fn watch_nodes(ctx: Arc<Context>, client: Client, capacity: Arc<Capacity>) {
    let api: Api<Node> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => capacity.nodes(change(
                event,
                |n| n.name_any(),
                |n| NodeCapacity::of(&json(n)),
            )),
            Err(e) => {
                ctx.metrics.watch_errors.inc();
                warn!(cluster = %ctx.cluster_name, error = %e, "watching the nodes failed; retrying with backoff");
            }
        }
    }
}

/// Feeds the watch of the pods bound to a node and not finished into `capacity`.
pub async fn watch_pods(ctx: Arc<Context>, client: Client, capacity: Arc<Capacity>) {
    watch_pods_with(&ctx, client, BOUND_AND_UNFINISHED, |event| {
        capacity.pods(change(event, pod_key, |p| bound_pod(&json(p))))
    })
    .await;
}

/// Feeds the watch of the pods bound to no node into `pending`.
pub async fn watch_unschedulable(ctx: Arc<Context>, client: Client, pending: Arc<Pending>) {
    watch_pods_with(&ctx, client, UNBOUND, |event| {
        pending.pods(change(event, pod_key, |p| unschedulable_pod(&json(p))))
    })
    .await;
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// Watches the pods matching `fields`, handing every event to `apply`.
async fn watch_pods_with(
    ctx: &Context,
    client: Client,
    fields: &str,
    mut apply: impl FnMut(watcher::Event<Pod>),
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(fields);
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => apply(event),
            Err(e) => {
                ctx.metrics.watch_errors.inc();
                warn!(cluster = %ctx.cluster_name, fields, error = %e, "watching the pods failed; retrying with backoff");
            }
        }
    }
    debug!(cluster = %ctx.cluster_name, fields, "pod watch ended");
}
