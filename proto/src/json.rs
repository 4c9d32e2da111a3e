//! Conversion between `google.protobuf.Struct` and `serde_json::Value`.
//!
//! Protobuf's JSON model has only doubles for numbers, so integral values are turned back
//! into JSON integers on the way out: a Job's `parallelism: 3` must not come back as `3.0`.

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// Converts a JSON object into a `Struct`; `None` when `value` is not an object.
pub fn to_struct(value: &Json) -> Option<Struct> {
    match value {
        Json::Object(map) => Some(object_to_struct(map)),
        _ => None,
    }
}

/// Converts a `Struct` into a JSON object.
pub fn from_struct(s: &Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), from_value(v)))
            .collect(),
    )
}

fn object_to_struct(map: &Map<String, Json>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
    }
}

fn to_value(value: &Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(object_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// Largest double below which every integer is exact (2^53).
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

fn from_value(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < EXACT_INTEGER_LIMIT {
                Json::Number(Number::from(*n as i64))
            } else {
                Number::from_f64(*n).map_or(Json::Null, Json::Number)
            }
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => Json::Array(list.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => from_struct(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_integers_integral() {
        let job = json!({"spec": {"parallelism": 3, "ratio": 0.5, "tags": ["a", null, true]}});
        let back = from_struct(&to_struct(&job).unwrap());
        assert_eq!(back, job);
        assert!(back["spec"]["parallelism"].is_i64());
    }

    #[test]
    fn only_objects_become_structs() {
        assert!(to_struct(&json!([1, 2])).is_none());
        assert!(to_struct(&json!("job")).is_none());
    }
}
