//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the columns kube-apiserver
//! 1.24 prints for Jobs, Namespaces, Pods and Nodes.

use serde_json::{Value, json};

use super::clock;

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// A `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

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

fn column(name: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": priority})
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: http://kubernetes.io/docs/user-guide/identifiers#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns(printer: Printer) -> Value {
    let name = column("Name", "name", NAME_DESCRIPTION, 0);
    let age = column("Age", "", AGE_DESCRIPTION, 0);
    match printer {
        Printer::Job => json!([
            name,
            column(
                "Completions",
                "",
                "The desired number of successfully finished pods the job should be run with.  Setting to nil means that the success of any pod signals the success of all pods, and allows parallelism to have any positive value.  Setting to 1 means that parallelism is limited to 1 and the success of that pod signals the success of the job. More info: https://kubernetes.io/docs/concepts/workloads/controllers/jobs-run-to-completion/",
                0
            ),
            column("Duration", "", "Time required to complete the job.", 0),
            age,
            column(
                "Containers",
                "",
                "Names of each container in the template.",
                1
            ),
            column(
                "Images",
                "",
                "Images referenced by each container in the template.",
                1
            ),
            column(
                "Selector",
                "",
                "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
                1
            ),
        ]),
        Printer::Namespace => json!([
            name,
            column("Status", "", "The status of the namespace", 0),
            age,
        ]),
        Printer::Node => {
            const ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See http://pr.k8s.io/79391 for an example.";
            json!([
                name,
                column("Status", "", "The status of the node", 0),
                column("Roles", "", "The roles of the node", 0),
                age,
                column("Version", "", "Kubelet Version reported by the node.", 0),
                column("Internal-IP", "", ADDRESSES, 1),
                column("External-IP", "", ADDRESSES, 1),
                column(
                    "OS-Image",
                    "",
                    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                    1
                ),
                column(
                    "Kernel-Version",
                    "",
                    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                    1
                ),
                column(
                    "Container-Runtime",
                    "",
                    "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                    1
                ),
            ])
        }
        Printer::Pod => json!([
            name,
            column(
                "Ready",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0
            ),
            column(
                "Status",
                "",
                "The aggregate status of the containers in this pod.",
                0
            ),
            column(
                "Restarts",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0
            ),
            age,
            column(
                "IP",
                "",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1
            ),
            column(
                "Node",
                "",
                "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.",
                1
            ),
            column(
                "Nominated Node",
                "",
                "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes happen to be available first. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
                1
            ),
            column(
                "Readiness Gates",
                "",
                "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
                1
            ),
        ]),
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn age(object: &Value) -> String {
    match clock::parse(str_at(object, "/metadata/creationTimestamp")) {
        Some(_) => clock::human(clock::since(str_at(object, "/metadata/creationTimestamp"))),
        None => "<unknown>".to_owned(),
    }
}

fn selector_string(selector: &Value) -> String {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key = str_at(e, "/key");
            parts.push(match str_at(e, "/operator") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_owned(),
                _ => format!("!{key}"),
            });
        }
    }
    if parts.is_empty() {
        "<none>".to_owned()
    } else {
        parts.join(",")
    }
}

fn cells(printer: Printer, o: &Value) -> Vec<Value> {
    let name = json!(str_at(o, "/metadata/name"));
    match printer {
        Printer::Job => {
            let succeeded = o
                .pointer("/status/succeeded")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{succeeded}/{c}"),
                None => match o
                    .pointer("/spec/parallelism")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let start = clock::parse(str_at(o, "/status/startTime"));
            let end = clock::parse(str_at(o, "/status/completionTime"));
            let duration = match (start, end) {
                (None, _) => String::new(),
                (Some(s), None) => clock::human(clock::between(s, jiff::Timestamp::now())),
                (Some(s), Some(e)) => clock::human(clock::between(s, e)),
            };
            let containers = o
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
            let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
            vec![
                name,
                json!(completions),
                json!(duration),
                json!(age(o)),
                json!(names.join(",")),
                json!(images.join(",")),
                json!(selector_string(
                    o.pointer("/spec/selector").unwrap_or(&Value::Null)
                )),
            ]
        }
        Printer::Namespace => vec![name, json!(str_at(o, "/status/phase")), json!(age(o))],
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
        Printer::Node => node_cells(name, o),
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

/// The object a row carries: `object` is the object with `kind` and `apiVersion`.
fn row_object(object: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(object.clone()),
        IncludeObject::Metadata => {
            let mut meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            Some(
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}),
            )
        }
    }
}

/// A Table of `objects` (each with `kind` and `apiVersion`) at list version `rv`.
pub fn render(
    printer: Printer,
    objects: &[Value],
    rv: Option<u64>,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(printer, o)});
            if let Some(obj) = row_object(o, include) {
                row["object"] = obj;
            }
            row
        })
        .collect();
    let metadata = match rv {
        Some(rv) => json!({"resourceVersion": rv.to_string()}),
        None => json!({}),
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns(printer), "rows": rows})
}

/// Whether an `Accept` header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_row() {
        let job = json!({"metadata": {"name": "a", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"completions": 4, "parallelism": 2, "selector": {"matchLabels": {"controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}}},
            "status": {"succeeded": 1, "startTime": "2020-01-01T00:00:00Z", "completionTime": "2020-01-01T00:00:05Z"}});
        let table = render(Printer::Job, &[job], Some(7), IncludeObject::Metadata);
        assert_eq!(
            table["rows"][0]["cells"],
            json!([
                "a",
                "1/4",
                "5s",
                table["rows"][0]["cells"][3],
                "w",
                "busybox",
                "controller-uid=u"
            ])
        );
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn accept_header() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
