//! Go's `%#v` of a pod template, as the apiserver prints it in "field is immutable" messages.

use serde_json::Value;

use crate::kubesim::validation::GoValue;

fn go_field_name(json_name: &str) -> String {
    match json_name {
        "dnsPolicy" => "DNSPolicy".to_owned(),
        "dnsConfig" => "DNSConfig".to_owned(),
        "tty" => "TTY".to_owned(),
        "uid" => "UID".to_owned(),
        "os" => "OS".to_owned(),
        _ => {
            let mut chars = json_name.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        }
    }
}

fn go_type_name(json_name: &str) -> &'static str {
    match json_name {
        "metadata" => "v1.ObjectMeta",
        "spec" => "core.PodSpec",
        "containers" | "initContainers" => "core.Container",
        "resources" => "core.ResourceRequirements",
        "ports" => "core.ContainerPort",
        "env" => "core.EnvVar",
        "volumes" => "core.Volume",
        "volumeMounts" => "core.VolumeMount",
        "securityContext" => "core.SecurityContext",
        "tolerations" => "core.Toleration",
        _ => "struct",
    }
}

fn dump(value: &Value, name: &str, out: &mut String) {
    match value {
        Value::Object(map)
            if map.values().all(Value::is_string)
                && ["labels", "annotations", "nodeSelector"].contains(&name) =>
        {
            out.push_str(&GoValue::from_json(value).to_string());
        }
        Value::Object(map) => {
            out.push_str(go_type_name(name));
            out.push('{');
            let fields: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let mut s = format!("{}:", go_field_name(k));
                    dump(v, k, &mut s);
                    s
                })
                .collect();
            out.push_str(&fields.join(", "));
            out.push('}');
        }
        Value::Array(items) => {
            let element = if items.iter().all(Value::is_string) {
                "string"
            } else {
                go_type_name(name)
            };
            out.push_str(&format!("[]{element}{{"));
            let parts: Vec<String> = items
                .iter()
                .map(|v| {
                    let mut s = String::new();
                    dump(v, name, &mut s);
                    s
                })
                .collect();
            out.push_str(&parts.join(", "));
            out.push('}');
        }
        other => out.push_str(&GoValue::from_json(other).to_string()),
    }
}

/// A pod template as Go's `%#v` prints it in the "field is immutable" message, shortened to
/// the fields that are set (the real dump lists every field of every struct, pointers as
/// addresses).
pub fn template_dump(template: &Value) -> String {
    let mut out = String::from("core.PodTemplateSpec{");
    let mut parts = Vec::new();
    for (json_name, go_name) in [("metadata", "ObjectMeta"), ("spec", "Spec")] {
        if let Some(v) = template.get(json_name) {
            let mut s = format!("{go_name}:");
            dump(v, json_name, &mut s);
            parts.push(s);
        }
    }
    out.push_str(&parts.join(", "));
    out.push('}');
    out
}
