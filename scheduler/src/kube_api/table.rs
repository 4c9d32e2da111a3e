//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), and the columns kube-apiserver
//! prints for Jobs (`02-get-job.txt`).
//!
//! A printer is a list of column definitions and a function from an object to its cells;
//! [`render`] puts rows together with what `includeObject` asks each row to carry.

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

/// A column definition; `priority` 1 columns show only with `-o wide`.
pub fn column(name: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": priority})
}

/// The description of every table's `Name` column.
pub const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: http://kubernetes.io/docs/user-guide/identifiers#names";
/// The description of every table's `Age` column.
pub const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The `Name` column.
pub fn name_column() -> Value {
    column("Name", "name", NAME_DESCRIPTION, 0)
}

/// The `Age` column.
pub fn age_column() -> Value {
    column("Age", "", AGE_DESCRIPTION, 0)
}

/// The string at a JSON pointer, or "".
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The `Age` cell of an object: how long ago it was created, as kubectl prints durations.
pub fn age(object: &Value) -> String {
    let created = str_at(object, "/metadata/creationTimestamp");
    match clock::parse(created) {
        Some(_) => clock::human(clock::since(created)),
        None => "<unknown>".to_owned(),
    }
}

/// A `LabelSelector` object as `kubectl` prints it: `a=b,c in (d,e)`, or `<none>`.
pub fn selector_string(selector: &Value) -> String {
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

/// The API server's columns for `batch/v1` Jobs.
pub fn job_columns() -> Vec<Value> {
    vec![
        name_column(),
        column(
            "Completions",
            "",
            "The number of pods which reached phase Succeeded.",
            0,
        ),
        column("Duration", "", "Time required to complete the job.", 0),
        age_column(),
        column(
            "Containers",
            "",
            "Names of each container in the template.",
            1,
        ),
        column(
            "Images",
            "",
            "Images referenced by each container in the template.",
            1,
        ),
        column(
            "Selector",
            "",
            "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
            1,
        ),
    ]
}

/// The cells of a Job under [`job_columns`].
pub fn job_cells(o: &Value) -> Vec<Value> {
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
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    vec![
        json!(str_at(o, "/metadata/name")),
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

/// A Table with `columns` and one row per `(cells, object)` (each object with `kind` and
/// `apiVersion`) at list version `rv`.
pub fn render<'a>(
    columns: Vec<Value>,
    rows: impl IntoIterator<Item = (Vec<Value>, &'a Value)>,
    rv: Option<u64>,
    include: IncludeObject,
) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, o)| {
            let mut row = json!({"cells": cells});
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
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": columns, "rows": rows})
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
        let table = render(
            job_columns(),
            [(job_cells(&job), &job)],
            Some(7),
            IncludeObject::Metadata,
        );
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
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }

    #[test]
    fn work_queue_completions() {
        let queue = json!({"metadata": {"name": "q"}, "spec": {"parallelism": 3}, "status": {}});
        assert_eq!(job_cells(&queue)[1], "0/1 of 3");
    }

    #[test]
    fn accept_header() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }
}
