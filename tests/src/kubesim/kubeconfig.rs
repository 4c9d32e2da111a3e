//! The kubeconfig that points kubectl and kube clients at simulated clusters: one cluster,
//! user and context per simulated cluster, all named after it.

use serde_json::{Value, json};

/// Renders a kubeconfig for `clusters` (`(name, url)`); the first is the current context.
/// Every user carries `token` when the clusters require one.
pub fn render(clusters: &[(String, String)], token: Option<&str>) -> String {
    let user = match token {
        Some(t) => json!({"token": t}),
        None => json!({}),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters.iter().map(|(name, url)| json!({"name": name, "cluster": {"server": url}})).collect::<Vec<Value>>(),
        "users": clusters.iter().map(|(name, _)| json!({"name": name, "user": user})).collect::<Vec<Value>>(),
        "contexts": clusters
            .iter()
            .map(|(name, _)| json!({"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}))
            .collect::<Vec<Value>>(),
        "current-context": clusters.first().map(|(name, _)| name.as_str()).unwrap_or_default(),
    });
    serde_yaml::to_string(&config).expect("a kubeconfig serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_context_per_cluster() {
        let yaml = render(
            &[
                ("c1".into(), "http://127.0.0.1:1".into()),
                ("c2".into(), "http://127.0.0.1:2".into()),
            ],
            Some("t"),
        );
        let parsed: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed["current-context"], "c1");
        assert_eq!(parsed["contexts"][1]["context"]["cluster"], "c2");
        assert_eq!(parsed["users"][0]["user"]["token"], "t");
    }
}
