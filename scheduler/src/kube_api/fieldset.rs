//! Sets of field paths, as server-side apply tracks ownership (`FieldsV1`).
//!
//! A path is a list of elements encoded as in `FieldsV1`: `f:name` for a field, `k:{"name":"w"}`
//! for an item of a keyed list, `v:"orphan"` for a set item, `i:3` for a position. A set is a
//! tree of those; a node is a member when the path itself is in the set (written `".": {}` when
//! the node also has members below it, `{}` when it is a leaf).
//!
//! The walkers compute the three sets the field manager needs from JSON values: every path an
//! object has ([`nodes`]), the paths an applied configuration sets ([`applied`]) and the paths a
//! write added or changed ([`changed`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::schema::{self, ListType};

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path`.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[String]) -> bool {
        let mut node = self;
        for element in path {
            match node.children.get(element) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.member
    }

    /// Whether `path` or any path below it is a member.
    pub fn contains_prefix(&self, path: &[String]) -> bool {
        let mut node = self;
        for element in path {
            match node.children.get(element) {
                Some(child) => node = child,
                None => return false,
            }
        }
        !node.is_empty()
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, child) in &other.children {
            self.children.entry(k.clone()).or_default().union(child);
        }
    }

    /// The members of `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, child) in &self.children {
            let rest = match other.children.get(k) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(k.clone(), rest);
            }
        }
        out
    }

    /// The members in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, child) in &self.children {
            if let Some(o) = other.children.get(k) {
                let both = child.intersection(o);
                if !both.is_empty() {
                    out.children.insert(k.clone(), both);
                }
            }
        }
        out
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[String]) {
        match path {
            [] => *self = FieldSet::default(),
            [last] => {
                self.children.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_subtree(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Every member path, parents before children.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, child) in &self.children {
            prefix.push(k.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (k, child) in &self.children {
            if !child.is_empty() {
                map.insert(k.clone(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// Parses `fieldsV1` JSON.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(map) = value {
            for (k, v) in map {
                if k == "." {
                    set.member = true;
                    continue;
                }
                let mut child = FieldSet::from_fields_v1(v);
                if child.children.is_empty() {
                    child.member = true;
                }
                set.children.insert(k.clone(), child);
            }
        }
        set
    }
}

/// A path as server-side apply prints it in conflicts: `.spec.template.spec.containers[name="w"].image`.
pub fn path_string(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(keys) = element.strip_prefix("k:") {
            let parsed: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
            let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

/// The path element of item `index` of a list of type `list_type`.
fn item_element(list_type: ListType, item: &Value, index: usize) -> String {
    match list_type {
        ListType::Map(keys) => {
            let mut key = Map::new();
            for k in keys {
                match item.get(*k) {
                    Some(v) => {
                        key.insert((*k).to_owned(), v.clone());
                    }
                    // A port's protocol defaults to TCP, and the schema says so, so the key has it.
                    None if *k == "protocol" => {
                        key.insert((*k).to_owned(), Value::String("TCP".to_owned()));
                    }
                    None => {}
                }
            }
            if key.is_empty() {
                format!("i:{index}")
            } else {
                format!("k:{}", Value::Object(key))
            }
        }
        ListType::Set => format!("v:{item}"),
        ListType::Atomic => format!("i:{index}"),
    }
}

/// The child of `value` at one path element, if present.
pub fn child<'a>(value: &'a Value, element: &str, names: &[String]) -> Option<&'a Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return value.as_object()?.get(field);
    }
    let items = value.as_array()?;
    let list_type = schema::list_type(names);
    items
        .iter()
        .enumerate()
        .find(|(i, item)| item_element(list_type, item, *i) == element)
        .map(|(_, item)| item)
}

/// The value at `path`, if present.
pub fn get<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut names = Vec::new();
    let mut node = root;
    for element in path {
        node = child(node, element, &names)?;
        if let Some(field) = element.strip_prefix("f:") {
            names.push(field.to_owned());
        }
    }
    Some(node)
}

/// Removes the value at `path` (a field from its object, an item from its list); returns
/// whether something was removed.
pub fn remove(root: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut names = Vec::new();
    let mut node = root;
    for element in parents {
        let next = if let Some(field) = element.strip_prefix("f:") {
            names.push(field.to_owned());
            node.as_object_mut().and_then(|m| m.get_mut(field))
        } else {
            let list_type = schema::list_type(&names);
            node.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .enumerate()
                    .find(|(i, item)| item_element(list_type, item, *i) == *element)
                    .map(|(_, v)| v)
            })
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        return node.as_object_mut().and_then(|m| m.remove(field)).is_some();
    }
    let list_type = schema::list_type(&names);
    if let Some(items) = node.as_array_mut() {
        let before = items.len();
        let mut index = 0;
        items.retain(|item| {
            let keep = item_element(list_type, item, index) != *last;
            index += 1;
            keep
        });
        return items.len() != before;
    }
    false
}

fn is_leaf(value: &Value, names: &[String]) -> bool {
    match value {
        Value::Object(m) => m.is_empty(),
        Value::Array(_) => schema::list_type(names) == ListType::Atomic,
        _ => true,
    }
}

struct Walk {
    names: Vec<String>,
    path: Vec<String>,
    out: FieldSet,
}

impl Walk {
    fn new() -> Self {
        Self {
            names: Vec::new(),
            path: Vec::new(),
            out: FieldSet::default(),
        }
    }

    fn fields(&mut self, map: &Map<String, Value>, mut each: impl FnMut(&mut Self, &str, &Value)) {
        for (k, v) in map {
            self.names.push(k.clone());
            self.path.push(format!("f:{k}"));
            each(self, k, v);
            self.path.pop();
            self.names.pop();
        }
    }

    fn items(&mut self, items: &[Value], mut each: impl FnMut(&mut Self, ListType, &Value)) {
        let list_type = schema::list_type(&self.names);
        for (i, item) in items.iter().enumerate() {
            self.path.push(item_element(list_type, item, i));
            each(self, list_type, item);
            self.path.pop();
        }
    }
}

/// Every path present in `value`.
pub fn nodes(value: &Value) -> FieldSet {
    fn go(w: &mut Walk, value: &Value) {
        w.out.insert(&w.path.clone());
        match value {
            Value::Object(map) => w.fields(map, |w, _, v| go(w, v)),
            Value::Array(items) if !is_leaf(value, &w.names) => {
                w.items(items, |w, _, item| go(w, item))
            }
            _ => {}
        }
    }
    let mut w = Walk::new();
    go(&mut w, value);
    w.out.member = false;
    w.out
}

/// The paths an applied configuration sets (structured-merge-diff's `ToFieldSet`): its leaves
/// and the items of keyed lists, not the maps and structs that hold them.
pub fn applied(value: &Value) -> FieldSet {
    fn go(w: &mut Walk, value: &Value) {
        if is_leaf(value, &w.names) {
            w.out.insert(&w.path.clone());
            return;
        }
        match value {
            Value::Object(map) => w.fields(map, |w, _, v| go(w, v)),
            Value::Array(items) => w.items(items, |w, list_type, item| {
                w.out.insert(&w.path.clone());
                if list_type != ListType::Set {
                    go(w, item);
                }
            }),
            _ => {}
        }
    }
    let mut w = Walk::new();
    go(&mut w, value);
    w.out.member = false;
    w.out
}

/// The paths a write from `old` to `new` added or changed, as an `Update` manager comes to own
/// them: changed leaves, and the maps, structs and list items that did not exist before.
pub fn changed(old: &Value, new: &Value) -> FieldSet {
    fn go(w: &mut Walk, old: Option<&Value>, new: &Value) {
        if is_leaf(new, &w.names) {
            if old != Some(new) {
                w.out.insert(&w.path.clone());
            }
            return;
        }
        if old.is_none() && !w.path.is_empty() {
            w.out.insert(&w.path.clone());
        }
        match new {
            Value::Object(map) => {
                let old_map = old.and_then(Value::as_object);
                w.fields(map, |w, k, v| go(w, old_map.and_then(|m| m.get(k)), v));
            }
            Value::Array(items) => {
                let names = w.names.clone();
                w.items(items, |w, list_type, item| {
                    let element = w.path.last().cloned().unwrap_or_default();
                    let old_item = old.and_then(|o| child(o, &element, &names));
                    if list_type == ListType::Set {
                        if old_item.is_none() {
                            w.out.insert(&w.path.clone());
                        }
                    } else {
                        go(w, old_item, item);
                    }
                });
            }
            _ => {}
        }
    }
    let mut w = Walk::new();
    go(&mut w, Some(old), new);
    w.out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn p(elements: &[&str]) -> Vec<String> {
        elements.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn fields_v1_round_trips() {
        let v = json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"w\"}": {".": {}, "f:image": {}}}}});
        let set = FieldSet::from_fields_v1(&v);
        assert!(set.contains(&p(&["f:metadata", "f:labels"])));
        assert!(set.contains(&p(&["f:metadata", "f:labels", "f:app"])));
        assert!(!set.contains(&p(&["f:metadata"])));
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn applied_set_has_leaves_and_list_items() {
        let config = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}}});
        let set = applied(&config);
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"w\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
    }

    #[test]
    fn changed_marks_new_containers_and_changed_leaves() {
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"n": 1, "containers": null}});
        let new = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}, "spec": {"n": 2, "containers": [{"name": "w"}]}});
        let set = changed(&old, &new);
        assert_eq!(
            set.to_fields_v1(),
            json!({"f:metadata": {"f:annotations": {".": {}, "f:x": {}}, "f:labels": {"f:b": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"w\"}": {".": {}, "f:name": {}}}, "f:n": {}}})
        );
    }

    #[test]
    fn get_and_remove_by_path() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}});
        let path = p(&["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"]);
        assert_eq!(get(&v, &path), Some(&json!("x")));
        assert!(remove(&mut v, &path));
        assert!(remove(
            &mut v,
            &p(&["f:spec", "f:containers", "k:{\"name\":\"b\"}"])
        ));
        assert_eq!(v, json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(path_string(&path), ".spec.containers[name=\"a\"].image");
    }
}
