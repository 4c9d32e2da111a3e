//! The node lifecycle controller's taints, as a pure rule: from a node's `Ready` condition
//! and `spec.unschedulable`, the taints it should carry (`TaintNodesByCondition` and
//! taint-based eviction's `NoExecute` taints).

use serde_json::{Value, json};

use super::{NOT_READY_TAINT, ready_status};

/// The taint of a node whose `Ready` condition is `Unknown` (its kubelet stopped posting).
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// The taint of a cordoned node.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Keys whose taints this controller owns; every other taint is left as it is.
const MANAGED: &[&str] = &[NOT_READY_TAINT, UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT];

/// The `(key, effect)` pairs the node should carry.
fn wanted(node: &Value) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match ready_status(node) {
        Some("True") => {}
        Some("False") | None => {
            out.push((NOT_READY_TAINT, "NoSchedule"));
            if ready_status(node).is_some() {
                out.push((NOT_READY_TAINT, "NoExecute"));
            }
        }
        Some(_) => {
            out.push((UNREACHABLE_TAINT, "NoSchedule"));
            out.push((UNREACHABLE_TAINT, "NoExecute"));
        }
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        out.push((UNSCHEDULABLE_TAINT, "NoSchedule"));
    }
    out
}

/// The node's taints after the controller's pass, or `None` when they are right already.
/// Taints it does not own keep their order; the ones it adds go last (`NoExecute` ones with
/// `timeAdded: now`), as `AddOrUpdateTaintOnNode` appends them.
pub fn reconcile_taints(node: &Value, now: &str) -> Option<Vec<Value>> {
    let current: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wanted = wanted(node);
    let is = |t: &Value, (key, effect): (&str, &str)| t["key"] == key && t["effect"] == effect;
    let mut next: Vec<Value> = current
        .iter()
        .filter(|t| {
            let managed = t["key"].as_str().is_some_and(|k| MANAGED.contains(&k));
            !managed || wanted.iter().any(|w| is(t, *w))
        })
        .cloned()
        .collect();
    for w in &wanted {
        if !next.iter().any(|t| is(t, *w)) {
            let mut taint = json!({"key": w.0, "effect": w.1});
            if w.1 == "NoExecute" {
                taint["timeAdded"] = json!(now);
            }
            next.push(taint);
        }
    }
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, unschedulable: bool, taints: Value) -> Value {
        let mut n =
            json!({"spec": {"taints": taints, "unschedulable": unschedulable}, "status": {}});
        if let Some(r) = ready {
            n["status"]["conditions"] = json!([{"type": "Ready", "status": r}]);
        }
        n
    }

    const NOW: &str = "2026-12-06T05:42:23Z";

    #[test]
    fn a_ready_node_loses_the_admission_taint() {
        let n = node(
            Some("True"),
            false,
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                   {"key": NOT_READY_TAINT, "effect": "NoSchedule"}]),
        );
        assert_eq!(
            reconcile_taints(&n, NOW),
            Some(vec![
                json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
            ])
        );
        let settled = node(Some("True"), false, json!([]));
        assert_eq!(reconcile_taints(&settled, NOW), None);
    }

    #[test]
    fn not_ready_unreachable_and_cordoned_nodes_are_tainted() {
        assert_eq!(
            reconcile_taints(&node(Some("False"), false, json!([])), NOW),
            Some(vec![
                json!({"key": NOT_READY_TAINT, "effect": "NoSchedule"}),
                json!({"key": NOT_READY_TAINT, "effect": "NoExecute", "timeAdded": NOW}),
            ])
        );
        assert_eq!(
            reconcile_taints(&node(Some("Unknown"), true, json!([])), NOW),
            Some(vec![
                json!({"key": UNREACHABLE_TAINT, "effect": "NoSchedule"}),
                json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": NOW}),
                json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}),
            ])
        );
        // A node that never reported keeps the admission taint and gets no more.
        let fresh = node(
            None,
            false,
            json!([{"key": NOT_READY_TAINT, "effect": "NoSchedule"}]),
        );
        assert_eq!(reconcile_taints(&fresh, NOW), None);
    }

    #[test]
    fn taints_already_right_keep_their_time() {
        let n = node(
            Some("False"),
            false,
            json!([{"key": NOT_READY_TAINT, "effect": "NoSchedule"},
                   {"key": NOT_READY_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]),
        );
        assert_eq!(reconcile_taints(&n, NOW), None);
    }
}
