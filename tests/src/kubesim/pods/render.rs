//! A simulated pod as the API returns it: the Job's pod template with the defaults admission
//! and the scheduler add (`17-pods.json`, `32-pod-bound.json`, `33-pod-unschedulable.json`).

use serde_json::{Value, json};

use super::{Phase, Placement, PodRecord};

fn qos_class(containers: &[Value]) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        any |= requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty());
        let full = |r: &str| limits.and_then(|l| l.get(r)).is_some();
        let equal = |r: &str| {
            requests
                .and_then(|q| q.get(r))
                .is_none_or(|q| limits.and_then(|l| l.get(r)) == Some(q))
        };
        guaranteed &= full("cpu") && full("memory") && equal("cpu") && equal("memory");
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `SetDefaults_Pod`: a container with a limit and no request for a resource requests the
/// limit (done on pods, not on the Job's template).
fn default_requests(container: &mut Value) {
    let Some(limits) = container.pointer("/resources/limits").cloned() else {
        return;
    };
    let Some(limits) = limits.as_object().filter(|l| !l.is_empty()) else {
        return;
    };
    let resources = &mut container["resources"];
    if !resources.get("requests").is_some_and(Value::is_object) {
        resources["requests"] = json!({});
    }
    let requests = resources["requests"]
        .as_object_mut()
        .expect("made an object above");
    for (name, limit) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| limit.clone());
    }
}

fn condition(kind: &str, status: bool, reason: Option<&str>, since: &str) -> Value {
    let mut c = json!({"type": kind, "status": if status { "True" } else { "False" },
                       "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The status of a pod: as a cluster without nodes shows it (no conditions), or as a
/// scheduler and kubelet leave it (`32-pod-bound.json`, `33-pod-unschedulable.json`).
fn render_status(pod: &PodRecord, containers: &[Value]) -> Value {
    let qos = qos_class(containers);
    let container_statuses = |started_at: &str| -> Vec<Value> {
        let running = pod.phase == Phase::Running;
        containers
            .iter()
            .map(|c| {
                let state = match pod.phase {
                    Phase::Pending | Phase::Running => {
                        json!({"running": {"startedAt": started_at}})
                    }
                    // No kubelet ran it, so there are no container timestamps (as in
                    // `17-pods.json`).
                    Phase::Succeeded => {
                        json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": null, "finishedAt": null}})
                    }
                    Phase::Failed => {
                        json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": null, "finishedAt": null}})
                    }
                };
                let mut status = json!({
                    "name": c.get("name").cloned().unwrap_or(Value::Null),
                    "image": c.get("image").cloned().unwrap_or(Value::Null),
                    "imageID": "",
                    "lastState": {},
                    "ready": false,
                    "restartCount": pod.restarts,
                    "state": state,
                });
                if !matches!(pod.placement, Placement::Unscheduled) {
                    status["ready"] = json!(running);
                    status["started"] = json!(running);
                }
                status
            })
            .collect()
    };
    match &pod.placement {
        Placement::Unscheduled => json!({
            "phase": pod.phase.as_str(),
            "qosClass": qos,
            "containerStatuses": container_statuses(&pod.created),
        }),
        Placement::Pending(last) => {
            let mut status = json!({"phase": "Pending", "qosClass": qos});
            if let Some(u) = last {
                let mut c = condition("PodScheduled", false, Some("Unschedulable"), &u.since);
                c["message"] = json!(*u.message);
                status["conditions"] = json!([c]);
            }
            status
        }
        Placement::Bound { since, .. } if pod.phase == Phase::Pending => json!({
            "phase": "Pending",
            "qosClass": qos,
            "conditions": [condition("PodScheduled", true, None, since)],
        }),
        Placement::Bound { since, .. } => {
            let done = pod.phase.finished().then_some("PodCompleted");
            let running = pod.phase == Phase::Running;
            json!({
                "phase": pod.phase.as_str(),
                "qosClass": qos,
                "startTime": since,
                "conditions": [
                    condition("Initialized", true, done, since),
                    condition("Ready", running, done, since),
                    condition("ContainersReady", running, done, since),
                    condition("PodScheduled", true, None, since),
                ],
                "containerStatuses": container_statuses(since),
            })
        }
    }
}

/// A pod as the API returns it: the template's spec with the defaults admission adds, the
/// owner reference, the node it is bound to, and a status for its phase.
pub fn render(pod: &PodRecord) -> Value {
    let template: Value = serde_json::from_slice(&pod.template).unwrap_or(Value::Null);
    let template = &template;
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    // The service-account volume's random suffix, derived from the uid so it is stable.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = pod
        .uid
        .bytes()
        .take(5)
        .map(|b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect();
    let token_volume = format!("kube-api-access-{suffix}");
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_requests);
        }
    }
    if let Some(Value::Array(cs)) = spec.get_mut("containers") {
        for c in cs {
            let mount = json!({"name": token_volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true});
            match c.get_mut("volumeMounts") {
                Some(Value::Array(mounts)) => mounts.push(mount),
                _ => c["volumeMounts"] = json!([mount]),
            }
        }
    }
    let token = json!({"name": token_volume, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
    ]}});
    if let Some(map) = spec.as_object_mut() {
        match map.get_mut("volumes") {
            Some(Value::Array(v)) => v.push(token),
            _ => {
                map.insert("volumes".into(), json!([token]));
            }
        }
        map.entry("serviceAccountName").or_insert(json!("default"));
        map.insert("serviceAccount".into(), map["serviceAccountName"].clone());
        map.entry("enableServiceLinks").or_insert(json!(true));
        map.entry("preemptionPolicy")
            .or_insert(json!("PreemptLowerPriority"));
        map.entry("priority").or_insert(json!(0));
        let defaults = json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]);
        match map.get_mut("tolerations") {
            Some(Value::Array(t)) => t.extend(defaults.as_array().cloned().unwrap_or_default()),
            _ => {
                map.insert("tolerations".into(), defaults);
            }
        }
        if let Placement::Bound { node, .. } = &pod.placement {
            map.insert("nodeName".into(), json!(**node));
        }
    }
    let mut metadata = json!({
        "name": pod.name,
        "generateName": format!("{}-", pod.job_name),
        "namespace": pod.namespace,
        "uid": pod.uid,
        "resourceVersion": pod.rv.to_string(),
        "creationTimestamp": pod.created,
        "labels": *pod.labels,
    });
    if let Some(annotations) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = annotations.clone();
    }
    if let Some(owner) = &pod.owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": owner.name, "uid": owner.uid,
            "controller": true, "blockOwnerDeletion": true
        }]);
    }
    json!({
        "metadata": metadata,
        "spec": spec,
        "status": render_status(pod, &containers),
    })
}
