//! Server-side printing of a member cluster: the Tables `kubectl get` gets for Jobs (the API
//! server's columns, from [`fedjob_scheduler::kube_api::table`]), Namespaces, Pods and Nodes.

use fedjob_scheduler::kube_api::table::{
    self as kube_table, age, age_column, column, name_column, str_at,
};
pub use fedjob_scheduler::kube_api::table::{IncludeObject, wanted};
use serde_json::{Value, json};

/// Which printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Printer {
    /// `batch/v1` Jobs.
    Job,
    /// Namespaces.
    Namespace,
    /// Pods.
    Pod,
    /// Nodes.
    Node,
}

fn columns(printer: Printer) -> Vec<Value> {
    match printer {
        Printer::Job => kube_table::job_columns(),
        Printer::Namespace => vec![
            name_column(),
            column("Status", "", "The status of the namespace", 0),
            age_column(),
        ],
        Printer::Node => {
            const ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See http://pr.k8s.io/79391 for an example.";
            vec![
                name_column(),
                column("Status", "", "The status of the node", 0),
                column("Roles", "", "The roles of the node", 0),
                age_column(),
                column("Version", "", "Kubelet Version reported by the node.", 0),
                column("Internal-IP", "", ADDRESSES, 1),
                column("External-IP", "", ADDRESSES, 1),
                column(
                    "OS-Image",
                    "",
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                    1,
                ),
                column(
                    "Kernel-Version",
                    "",
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                    1,
                ),
                column(
                    "Container-Runtime",
                    "",
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                    1,
                ),
            ]
        }
        Printer::Pod => vec![
            name_column(),
            column(
                "Ready",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            column(
                "Status",
                "",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            column(
                "Restarts",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            age_column(),
            column(
                "IP",
                "",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            column(
                "Node",
                "",
                "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.",
                1,
            ),
            column(
                "Nominated Node",
                "",
                "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes happen to be available first. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
                1,
            ),
            column(
                "Readiness Gates",
                "",
                "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
                1,
            ),
        ],
    }
}

fn cells(printer: Printer, o: &Value) -> Vec<Value> {
    let name = json!(str_at(o, "/metadata/name"));
    match printer {
        Printer::Job => kube_table::job_cells(o),
        Printer::Namespace => vec![name, json!(str_at(o, "/status/phase")), json!(age(o))],
        Printer::Node => node_cells(name, o),
        Printer::Pod => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses
                .iter()
                .filter_map(|s| s["restartCount"].as_i64())
                .sum();
            let reason = statuses
                .iter()
                .find_map(|s| {
                    s.pointer("/state/terminated/reason")
                        .and_then(Value::as_str)
                })
                .unwrap_or_else(|| str_at(o, "/status/phase"));
            vec![
                name,
                json!(format!("{ready}/{}", statuses.len())),
                json!(reason),
                json!(restarts),
                json!(age(o)),
                json!("<none>"),
                json!(or_none(str_at(o, "/spec/nodeName"))),
                json!("<none>"),
                json!("<none>"),
            ]
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

/// `printNode`: status from the Ready condition (and the cordon), roles from the
/// `node-role.kubernetes.io/ROLE` labels.
fn node_cells(name: Value, o: &Value) -> Vec<Value> {
    let mut status = match super::node::ready_status(o) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .to_owned();
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) if !role.is_empty() => Some(role.to_owned()),
            _ if k == "kubernetes.io/role" => v.as_str().map(str::to_owned),
            _ => None,
        })
        .collect();
    roles.sort();
    let roles = if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        o.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|a| a["type"] == kind))
            .and_then(|a| a["address"].as_str())
            .unwrap_or("<none>")
            .to_owned()
    };
    vec![
        name,
        json!(status),
        json!(roles),
        json!(age(o)),
        json!(str_at(o, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_none(str_at(o, "/status/nodeInfo/osImage"))),
        json!(or_none(str_at(o, "/status/nodeInfo/kernelVersion"))),
        json!(or_none(str_at(
            o,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

/// A Table of `objects` (each with `kind` and `apiVersion`) at list version `rv`.
pub fn render(
    printer: Printer,
    objects: &[Value],
    rv: Option<u64>,
    include: IncludeObject,
) -> Value {
    let rows = objects.iter().map(|o| (cells(printer, o), o));
    kube_table::render(columns(printer), rows, rv, include)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_row() {
        let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded",
            "containerStatuses": [{"ready": false, "restartCount": 1,
                                   "state": {"terminated": {"reason": "Completed"}}}]}});
        let table = render(Printer::Pod, &[pod], Some(3), IncludeObject::None);
        assert_eq!(
            table["rows"][0]["cells"].as_array().unwrap()[..4],
            [json!("p"), json!("0/1"), json!("Completed"), json!(1)]
        );
        assert_eq!(table["columnDefinitions"].as_array().unwrap().len(), 9);
        assert!(table["rows"][0].get("object").is_none());
    }
}
