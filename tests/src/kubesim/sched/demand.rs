//! What a pod asks of a node, read once per Job template: its resource requests as the
//! kube-scheduler adds them up, and the constraints on where it may go (`nodeSelector`,
//! required node affinity, tolerations).

use std::collections::BTreeMap;

use fedjob_proto::quantity::{Quantity, scheduling_amount};
use serde_json::Value;

/// Resource amounts by name, in the units the scheduler compares (millicores for `cpu`).
pub type Amounts = BTreeMap<String, i64>;

/// An operator of a node selector requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The label's value is one of the values.
    In,
    /// The label is missing or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is missing.
    DoesNotExist,
    /// The label's value, as an integer, is greater than the one value.
    Gt,
    /// The label's value, as an integer, is less than the one value.
    Lt,
}

/// One `matchExpressions` (or `matchFields`) entry of a node selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key (or, for `matchFields`, `metadata.name`).
    pub key: String,
    /// How the value is compared.
    pub operator: Operator,
    /// The values compared with.
    pub values: Vec<String>,
    /// Whether this is a `matchFields` requirement (on the node's name).
    pub on_field: bool,
}

impl Requirement {
    fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        let value = if self.on_field {
            (self.key == "metadata.name").then_some(node_name)
        } else {
            labels.get(&self.key).map(String::as_str)
        };
        let number = |v: &str| v.parse::<i64>().ok();
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| self.values.iter().all(|x| x != v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt | Operator::Lt => {
                let (Some(v), Some(bound)) = (
                    value.and_then(number),
                    self.values.first().and_then(|b| number(b)),
                ) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A toleration of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    /// The taint key; empty with `Exists` tolerates every taint.
    pub key: String,
    /// `Exists` (any value) rather than `Equal`.
    pub exists: bool,
    /// The value for `Equal`.
    pub value: String,
    /// The effect; empty tolerates every effect.
    pub effect: String,
}

impl Toleration {
    /// `ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        self.exists || self.value == taint.value
    }
}

/// A taint of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value (often empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// The taints of a node object.
    pub fn of_node(node: &Value) -> Vec<Taint> {
        node.pointer("/spec/taints")
            .and_then(Value::as_array)
            .map(|taints| {
                taints
                    .iter()
                    .map(|t| Taint {
                        key: text(t, "key"),
                        value: text(t, "value"),
                        effect: text(t, "effect"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What one pod of a template asks of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// The pod's requests: per resource, the larger of the sum over its containers and the
    /// largest init container (init containers run one at a time, before the others).
    pub requests: Amounts,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// The terms of `requiredDuringSchedulingIgnoredDuringExecution` (any one must match);
    /// `None` without required node affinity.
    pub required_terms: Option<Vec<Vec<Requirement>>>,
    /// The pod's tolerations, with the two the API server adds to every pod.
    pub tolerations: Vec<Toleration>,
    /// `preemptionPolicy: Never`: the pod may not preempt, so preemption is not tried.
    pub never_preempts: bool,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A container's requests as the API server defaults them on a pod: a resource with a limit
/// and no request requests its limit.
fn container_requests(container: &Value) -> Amounts {
    let mut out = Amounts::new();
    let mut add = |list: Option<&Value>, only_missing: bool| {
        for (name, q) in list.and_then(Value::as_object).into_iter().flatten() {
            if only_missing && out.contains_key(name) {
                continue;
            }
            let amount = q
                .as_str()
                .and_then(|s| Quantity::parse(s).ok())
                .map_or(0, |q| scheduling_amount(name, &q));
            out.insert(name.clone(), amount);
        }
    };
    add(container.pointer("/resources/requests"), false);
    add(container.pointer("/resources/limits"), true);
    out
}

/// The requests of a pod with this spec (`computePodResourceRequest`).
pub fn pod_requests(spec: &Value) -> Amounts {
    let containers = |key: &str| {
        spec.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut total = Amounts::new();
    for c in containers("containers") {
        for (name, amount) in container_requests(&c) {
            *total.entry(name).or_default() += amount;
        }
    }
    for c in containers("initContainers") {
        for (name, amount) in container_requests(&c) {
            let entry = total.entry(name).or_default();
            *entry = (*entry).max(amount);
        }
    }
    if let Some(overhead) = spec.get("overhead") {
        for (name, amount) in
            container_requests(&serde_json::json!({"resources": {"requests": overhead}}))
        {
            *total.entry(name).or_default() += amount;
        }
    }
    total.retain(|_, amount| *amount != 0);
    total
}

fn requirements(list: Option<&Value>, on_field: bool) -> Vec<Requirement> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| Requirement {
            key: text(r, "key"),
            operator: match r.get("operator").and_then(Value::as_str) {
                Some("NotIn") => Operator::NotIn,
                Some("Exists") => Operator::Exists,
                Some("DoesNotExist") => Operator::DoesNotExist,
                Some("Gt") => Operator::Gt,
                Some("Lt") => Operator::Lt,
                _ => Operator::In,
            },
            values: r
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            on_field,
        })
        .collect()
}

/// The tolerations the `DefaultTolerationSeconds` admission plugin adds to every pod.
pub fn default_tolerations() -> Vec<Toleration> {
    [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .into_iter()
    .map(|key| Toleration {
        key: key.to_owned(),
        exists: true,
        value: String::new(),
        effect: "NoExecute".to_owned(),
    })
    .collect()
}

impl Demand {
    /// What a pod made from this pod template (`{metadata, spec}`) asks.
    pub fn of_template(template: &Value) -> Self {
        let spec = template.get("spec").unwrap_or(&Value::Null);
        let node_selector = spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let required_terms = spec
            .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            .and_then(Value::as_array)
            .map(|terms| {
                terms
                    .iter()
                    .map(|t| {
                        let mut r = requirements(t.get("matchExpressions"), false);
                        r.extend(requirements(t.get("matchFields"), true));
                        r
                    })
                    .collect()
            });
        let mut tolerations: Vec<Toleration> = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| Toleration {
                key: text(t, "key"),
                exists: t.get("operator").and_then(Value::as_str) == Some("Exists"),
                value: text(t, "value"),
                effect: text(t, "effect"),
            })
            .collect();
        tolerations.extend(default_tolerations());
        Self {
            requests: pod_requests(spec),
            node_selector,
            required_terms,
            tolerations,
            never_preempts: spec.get("preemptionPolicy").and_then(Value::as_str) == Some("Never"),
        }
    }

    /// Whether a node with these labels is one the pod's `nodeSelector` and required node
    /// affinity allow.
    pub fn selects(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        let selector = self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        // An empty term matches no node; the terms are ORed, a term's requirements ANDed.
        let affinity = self.required_terms.as_ref().is_none_or(|terms| {
            terms
                .iter()
                .any(|term| !term.is_empty() && term.iter().all(|r| r.matches(node_name, labels)))
        });
        selector && affinity
    }

    /// The first of `taints` with a filtering effect (`NoSchedule`, `NoExecute`) that the pod
    /// does not tolerate.
    pub fn untolerated<'a>(&self, taints: &'a [Taint]) -> Option<&'a Taint> {
        taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !self.tolerations.iter().any(|tol| tol.tolerates(t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn requests_add_up_as_kubernetes_counts_them() {
        let spec = json!({
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "500m", "memory": "3Gi"}}}
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "700m"}, "limits": {"memory": "512Mi", "nvidia.com/gpu": "2"}}}
            ]
        });
        let r = pod_requests(&spec);
        // cpu: max(2000, 500 + 700); memory: max(3Gi, 1Gi + 512Mi); the gpu from the limit.
        assert_eq!(r["cpu"], 2000);
        assert_eq!(r["memory"], 3 << 30);
        assert_eq!(r["nvidia.com/gpu"], 2);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_pod_without_requests_asks_for_nothing() {
        let spec = json!({"containers": [{"name": "a", "image": "busybox"}]});
        assert!(pod_requests(&spec).is_empty());
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let d = Demand::of_template(&json!({"spec": {
            "nodeSelector": {"zone": "a"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100", "h100"]},
                                      {"key": "spot", "operator": "DoesNotExist"}]},
                {"matchExpressions": [{"key": "big", "operator": "Exists"}, {"key": "cores", "operator": "Gt", "values": ["16"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}
            ]}}}
        }}));
        assert!(d.selects("n", &labels(&[("zone", "a"), ("gpu", "h100")])));
        assert!(
            !d.selects("n", &labels(&[("zone", "b"), ("gpu", "h100")])),
            "nodeSelector"
        );
        assert!(!d.selects(
            "n",
            &labels(&[("zone", "a"), ("gpu", "h100"), ("spot", "")])
        ));
        assert!(d.selects("n", &labels(&[("zone", "a"), ("big", ""), ("cores", "32")])));
        assert!(!d.selects("n", &labels(&[("zone", "a"), ("big", ""), ("cores", "8")])));
        assert!(!d.selects(
            "n",
            &labels(&[("zone", "a"), ("big", ""), ("cores", "many")])
        ));
        assert!(
            d.selects("special", &labels(&[("zone", "a")])),
            "matchFields"
        );
        assert!(!d.selects("other", &labels(&[("zone", "a")])));

        let not_in = Demand::of_template(
            &json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["batch"]}]}, {}
            ]}}}}}),
        );
        assert!(
            not_in.selects("n", &labels(&[])),
            "NotIn holds when the label is missing"
        );
        assert!(
            !not_in.selects("n", &labels(&[("tier", "batch")])),
            "an empty term matches nothing"
        );
    }

    #[test]
    fn tolerations() {
        let d = Demand::of_template(&json!({"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
            {"key": "flaky", "operator": "Exists"}
        ]}}));
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: v.into(),
            effect: e.into(),
        };
        assert_eq!(
            d.untolerated(&[taint("dedicated", "gpu", "NoSchedule")]),
            None
        );
        assert_eq!(d.untolerated(&[taint("flaky", "x", "NoExecute")]), None);
        assert_eq!(
            d.untolerated(&[taint("other", "", "PreferNoSchedule")]),
            None
        );
        let wrong = [
            taint("dedicated", "gpu", "NoSchedule"),
            taint("dedicated", "cpu", "NoSchedule"),
        ];
        assert_eq!(d.untolerated(&wrong), Some(&wrong[1]));
        // Every pod tolerates not-ready/unreachable NoExecute (for 300 s), not NoSchedule.
        assert_eq!(
            d.untolerated(&[taint("node.kubernetes.io/not-ready", "", "NoExecute")]),
            None
        );
        let not_ready = [taint("node.kubernetes.io/not-ready", "", "NoSchedule")];
        assert_eq!(d.untolerated(&not_ready), Some(&not_ready[0]));
        let all = Demand::of_template(&json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
        assert_eq!(all.untolerated(&not_ready), None);
    }
}
