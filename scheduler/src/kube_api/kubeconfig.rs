//! Kubeconfig files: one cluster, user and context per entry, all named after it, so
//! `kubectl --context NAME` and kube clients reach that server.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// One context of a kubeconfig.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The name of the context, and of its cluster and user entries.
    pub name: String,
    /// The server URL (`https://host:port`).
    pub server: String,
    /// The CA certificate (PEM) that signed the server's certificate, when not a public one.
    pub ca_pem: Option<Vec<u8>>,
    /// The bearer token the user presents.
    pub token: Option<String>,
    /// The namespace commands use by default.
    pub namespace: Option<String>,
}

/// Renders a kubeconfig (YAML) of `contexts`; the first is the current context.
pub fn render(contexts: &[Context]) -> String {
    let clusters: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let mut cluster = json!({"server": c.server});
            if let Some(ca) = &c.ca_pem {
                cluster["certificate-authority-data"] = json!(STANDARD.encode(ca));
            }
            json!({"name": c.name, "cluster": cluster})
        })
        .collect();
    let users: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let user = match &c.token {
                Some(t) => json!({"token": t}),
                None => json!({}),
            };
            json!({"name": c.name, "user": user})
        })
        .collect();
    let context_entries: Vec<Value> = contexts
        .iter()
        .map(|c| {
            let mut context = json!({"cluster": c.name, "user": c.name});
            if let Some(ns) = &c.namespace {
                context["namespace"] = json!(ns);
            }
            json!({"name": c.name, "context": context})
        })
        .collect();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": clusters,
        "users": users,
        "contexts": context_entries,
        "current-context": contexts.first().map(|c| c.name.as_str()).unwrap_or_default(),
    });
    serde_yaml::to_string(&config).expect("a kubeconfig serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_context_per_entry() {
        let yaml = render(&[
            Context {
                name: "c1".into(),
                server: "http://127.0.0.1:1".into(),
                token: Some("t".into()),
                namespace: Some("default".into()),
                ..Context::default()
            },
            Context {
                name: "c2".into(),
                server: "https://127.0.0.1:2".into(),
                ca_pem: Some(b"PEM".to_vec()),
                ..Context::default()
            },
        ]);
        let parsed: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed["current-context"], "c1");
        assert_eq!(parsed["contexts"][1]["context"]["cluster"], "c2");
        assert_eq!(parsed["contexts"][0]["context"]["namespace"], "default");
        assert_eq!(parsed["users"][0]["user"]["token"], "t");
        assert_eq!(parsed["users"][1]["user"], json!({}));
        assert_eq!(
            parsed["clusters"][1]["cluster"]["certificate-authority-data"],
            "UEVN"
        );
    }
}
