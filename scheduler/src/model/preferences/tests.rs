use proptest::prelude::*;

use super::*;
use crate::model::labels::{Operator, Requirement, Selector};

fn pref(min_replicas: i32, max_replicas: Option<i32>, weight: i64) -> ClusterPreference {
    ClusterPreference {
        min_replicas,
        max_replicas,
        weight,
    }
}

#[test]
fn the_spec_example_parses() {
    let p = Preferences::parse(
        r#"{"rebalance": false,
            "clusters": {"*": {"weight": 1},
                         "gce-asia-east1a": {"minReplicas": 2, "maxReplicas": 10, "weight": 3}}}"#,
    )
    .unwrap();
    assert!(!p.rebalance);
    assert_eq!(
        p.for_cluster("gce-asia-east1a"),
        Some(&pref(2, Some(10), 3))
    );
    assert_eq!(p.for_cluster("anything-else"), Some(&pref(0, None, 1)));
}

#[test]
fn no_annotation_means_every_cluster_evenly() {
    let even = Preferences::parse(r#"{"clusters": {"*": {"weight": 1}}}"#).unwrap();
    assert_eq!(Preferences::default(), even);
    assert_eq!(Preferences::from_annotations(None).unwrap(), even);
    let unrelated: BTreeMap<String, String> = [("a".to_owned(), "b".to_owned())].into();
    assert_eq!(
        Preferences::from_annotations(Some(&unrelated)).unwrap(),
        even
    );
    let mut own = unrelated.clone();
    own.insert(
        PREFERENCES_ANNOTATION.to_owned(),
        r#"{"rebalance": true}"#.to_owned(),
    );
    let p = Preferences::from_annotations(Some(&own)).unwrap();
    assert!(p.rebalance);
    assert!(
        p.clusters.is_empty(),
        "an annotation without clusters allows none"
    );
}

#[test]
fn field_names_match_case_insensitively_and_unknown_ones_are_ignored() {
    let p = Preferences::parse(
        r#"{"Rebalance": true, "CLUSTERS": {"a": {"MinReplicas": 1, "WEIGHT": 2, "colour": "red",
            "maxreplicas": 4, "nested": {"x": [1, 2]}}}, "extra": [null]}"#,
    )
    .unwrap();
    assert!(p.rebalance);
    assert_eq!(p.clusters["a"], pref(1, Some(4), 2));
}

#[test]
fn keys_fold_like_go_including_the_long_s_and_the_kelvin_sign() {
    // Go's encoding/json folds ſ (U+017F) to s and K (U+212A) to k when matching field names.
    let p = Preferences::parse(r#"{"clusterſ": {"a": {"weight": 5}}}"#).unwrap();
    assert_eq!(p.clusters["a"].weight, 5);
    assert!(field_is("\u{212A}", "k"));
    assert!(!field_is("weights", "weight"));
    assert!(!field_is("weigh", "weight"));
}

#[test]
fn the_last_spelling_of_a_field_wins_as_in_go() {
    let p = Preferences::parse(r#"{"clusters": {"a": {"weight": 1, "WEIGHT": 2}}}"#).unwrap();
    assert_eq!(p.clusters["a"].weight, 2);
    let p = Preferences::parse(r#"{"clusters": {"a": {"WEIGHT": 2, "weight": 1}}}"#).unwrap();
    assert_eq!(p.clusters["a"].weight, 1);
}

#[test]
fn cluster_names_are_exact() {
    let p = Preferences::parse(r#"{"clusters": {"East": {"weight": 1}}}"#).unwrap();
    assert!(p.for_cluster("east").is_none());
    assert!(p.for_cluster("East").is_some());
}

#[test]
fn a_cluster_without_an_entry_or_wildcard_gets_nothing() {
    let p = Preferences::parse(r#"{"clusters": {"a": {"weight": 1}}}"#).unwrap();
    assert!(p.for_cluster("b").is_none());
    let p = Preferences::parse(r#"{"clusters": {"a": {}, "*": {"weight": 4}}}"#).unwrap();
    assert_eq!(
        p.for_cluster("a"),
        Some(&pref(0, None, 0)),
        "an own entry beats the wildcard"
    );
    assert_eq!(p.for_cluster("b"), Some(&pref(0, None, 4)));
}

#[test]
fn null_fields_keep_their_defaults() {
    let p = Preferences::parse(
        r#"{"rebalance": null, "clusters": {"a": {"minReplicas": null, "maxReplicas": null, "weight": null}}}"#,
    )
    .unwrap();
    assert_eq!(p.clusters["a"], pref(0, None, 0));
    assert!(
        Preferences::parse(r#"{"clusters": null}"#)
            .unwrap()
            .clusters
            .is_empty()
    );
}

#[test]
fn unusable_values_are_refused_naming_the_field() {
    let cases = [
        ("{", "", "not valid JSON"),
        ("", "", "not valid JSON"),
        ("[1]", "", "must be a JSON object, got an array"),
        ("null", "", "must be a JSON object, got null"),
        (
            r#"{"clusters": {"gce-asia": {"minReplicas": -1}}}"#,
            r#"clusters["gce-asia"].minReplicas"#,
            r#"clusters["gce-asia"].minReplicas: must be greater than or equal to 0, got -1"#,
        ),
        (
            r#"{"clusters": {"a": {"weight": -3}}}"#,
            r#"clusters["a"].weight"#,
            "greater than or equal to 0",
        ),
        (
            r#"{"clusters": {"a": {"maxReplicas": -1.0}}}"#,
            r#"clusters["a"].maxReplicas"#,
            "greater than or equal to 0",
        ),
        (
            r#"{"clusters": {"a": {"weight": 1.5}}}"#,
            r#"clusters["a"].weight"#,
            "must be an integer, got 1.5",
        ),
        (
            r#"{"clusters": {"a": {"weight": 1.0}}}"#,
            r#"clusters["a"].weight"#,
            "must be an integer",
        ),
        (
            r#"{"clusters": {"a": {"weight": "3"}}}"#,
            r#"clusters["a"].weight"#,
            r#"must be an integer, got string "3""#,
        ),
        (
            r#"{"clusters": {"a": {"weight": true}}}"#,
            r#"clusters["a"].weight"#,
            "must be an integer, got true",
        ),
        (
            r#"{"clusters": {"a": {"minReplicas": 3, "maxReplicas": 2}}}"#,
            r#"clusters["a"].minReplicas"#,
            r#"clusters["a"].minReplicas: must be less than or equal to maxReplicas (2), got 3"#,
        ),
        (
            r#"{"clusters": {"a": {"weight": 1000000001}}}"#,
            r#"clusters["a"].weight"#,
            "less than or equal to 1000000000",
        ),
        (
            r#"{"clusters": {"a": {"maxReplicas": 2147483648}}}"#,
            r#"clusters["a"].maxReplicas"#,
            "less than or equal to 2147483647",
        ),
        (
            r#"{"clusters": {"a": {"weight": 18446744073709551616}}}"#,
            r#"clusters["a"].weight"#,
            "less than or equal to",
        ),
        (
            r#"{"clusters": {"a": {"weight": 1e300}}}"#,
            r#"clusters["a"].weight"#,
            "less than or equal to",
        ),
        (
            r#"{"clusters": {"a": {"minReplicas": 99999999999}}}"#,
            r#"clusters["a"].minReplicas"#,
            "less than or equal to",
        ),
        (
            r#"{"clusters": {"a": null}}"#,
            r#"clusters["a"]"#,
            "must be an object, got null",
        ),
        (
            r#"{"clusters": {"a\"b": 7}}"#,
            r#"clusters["a\"b"]"#,
            "must be an object, got number 7",
        ),
        (
            r#"{"rebalance": "yes"}"#,
            "rebalance",
            r#"rebalance: must be true or false, got string "yes""#,
        ),
        (
            r#"{"clusters": 3}"#,
            "clusters",
            "clusters: must be an object of cluster name to preferences",
        ),
        (r#"{"clusters": ["a"]}"#, "clusters", "got an array"),
        (
            r#"{"clusterSelector": {"matchExpressions": [{"key": "zone", "operator": "Within", "values": ["a"]}]}}"#,
            "clusterSelector.matchExpressions[0].operator",
            r#"must be one of "In", "NotIn", "Exists", "DoesNotExist", got "Within""#,
        ),
        (
            r#"{"clusterSelector": {"matchExpressions": [{"key": "zone", "operator": "In"}]}}"#,
            "clusterSelector.matchExpressions[0].values",
            "must be specified when `operator` is 'In' or 'NotIn'",
        ),
        (
            r#"{"clusterSelector": {"matchExpressions": [{"key": "zone", "operator": "Exists"}, {"key": "gpu", "operator": "DoesNotExist", "values": ["x"]}]}}"#,
            "clusterSelector.matchExpressions[1].values",
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        (
            r#"{"clusterSelector": {"matchExpressions": [{"operator": "Exists"}]}}"#,
            "clusterSelector.matchExpressions[0].key",
            "must be specified",
        ),
        (
            r#"{"clusterSelector": {"matchExpressions": [{"key": "-zone", "operator": "Exists"}]}}"#,
            "clusterSelector.matchExpressions[0].key",
            r#"invalid label key "-zone": name part must consist of alphanumeric characters"#,
        ),
        (
            r#"{"clusterSelector": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a b"]}]}}"#,
            "clusterSelector.matchExpressions[0].values[0]",
            r#"invalid label value "a b": a valid label must be an empty string"#,
        ),
        (
            r#"{"clusterSelector": {"matchLabels": {"zone": 3}}}"#,
            r#"clusterSelector.matchLabels["zone"]"#,
            "must be a string, got number 3",
        ),
        (
            r#"{"clusterSelector": {"matchExpressions": {"key": "zone"}}}"#,
            "clusterSelector.matchExpressions",
            "must be a list of requirements, got an object",
        ),
        (
            r#"{"clusterSelector": "zone=a"}"#,
            "clusterSelector",
            "must be a label selector object",
        ),
        (
            r#"{"dynamicWeight": "FreeCPU"}"#,
            "dynamicWeight",
            r#"dynamicWeight: must be one of "AvailableReplicas", got "FreeCPU""#,
        ),
        (
            r#"{"pendingTimeoutSeconds": -5}"#,
            "pendingTimeoutSeconds",
            "must be greater than or equal to 0, got -5",
        ),
        (
            r#"{"pendingTimeoutSeconds": "300"}"#,
            "pendingTimeoutSeconds",
            "must be an integer",
        ),
    ];
    for (json, field, message) in cases {
        let err = Preferences::parse(json).unwrap_err();
        assert_eq!(err.field(), field, "{json}: {err}");
        assert!(err.to_string().contains(message), "{json}: {err}");
    }
}

#[test]
fn size_and_entry_limits() {
    let long = format!(r#"{{"x": "{}"}}"#, "a".repeat(MAX_BYTES));
    assert!(matches!(
        Preferences::parse(&long),
        Err(PreferencesError::TooLong(_))
    ));
    let entries = |n: usize| {
        let body: Vec<String> = (0..n)
            .map(|i| format!(r#""c{i}": {{"weight": 1}}"#))
            .collect();
        format!(r#"{{"clusters": {{{}}}}}"#, body.join(","))
    };
    assert_eq!(
        Preferences::parse(&entries(MAX_CLUSTERS))
            .unwrap()
            .clusters
            .len(),
        MAX_CLUSTERS
    );
    let err = Preferences::parse(&entries(MAX_CLUSTERS + 1)).unwrap_err();
    assert_eq!(err.field(), "clusters");
    assert!(err.to_string().contains("at most 1000 entries"), "{err}");
}

#[test]
fn deep_nesting_neither_overflows_the_stack_nor_is_accepted_blindly() {
    // Arrays are kept (`matchExpressions` is one), and the depth limit refuses them too.
    let arrays = format!(r#"{{"x": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let result = Preferences::parse(&arrays);
    assert!(
        matches!(result, Err(PreferencesError::Syntax(_))),
        "{result:?}"
    );
    let shallow = format!(r#"{{"x": {}{}}}"#, "[".repeat(100), "]".repeat(100));
    assert_eq!(Preferences::parse(&shallow).unwrap().clusters.len(), 0);
    // Objects are kept, and serde_json's depth limit refuses them.
    let objects = format!("{}1{}", r#"{"a":"#.repeat(40_000), "}".repeat(40_000));
    let result = Preferences::parse(&objects);
    assert!(
        matches!(result, Err(PreferencesError::Syntax(_))),
        "{result:?}"
    );
}

fn arbitrary_preference() -> impl Strategy<Value = ClusterPreference> {
    (0..1000i32, proptest::option::of(0..1000i32), 0..=MAX_WEIGHT).prop_map(|(min, max, weight)| {
        ClusterPreference {
            min_replicas: max.map_or(min, |m| min.min(m)),
            max_replicas: max,
            weight,
        }
    })
}

fn arbitrary_requirement() -> impl Strategy<Value = Requirement> {
    let operator = prop_oneof![
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
    ];
    let values = proptest::collection::vec("[a-z0-9]{1,5}", 1..3);
    ("([a-z]{1,4}/)?[a-z][a-z0-9]{0,6}", operator, values).prop_map(|(key, operator, values)| {
        let values = if operator.takes_values() {
            values
        } else {
            Vec::new()
        };
        Requirement {
            key,
            operator,
            values,
        }
    })
}

fn arbitrary_selector() -> impl Strategy<Value = Selector> {
    (
        proptest::collection::btree_map("[a-z][a-z0-9.-]{0,6}[a-z]", "[a-z0-9]{0,5}", 0..3),
        proptest::collection::vec(arbitrary_requirement(), 0..3),
    )
        .prop_map(|(match_labels, match_expressions)| Selector {
            match_labels,
            match_expressions,
        })
}

fn arbitrary_preferences() -> impl Strategy<Value = Preferences> {
    (
        any::<bool>(),
        proptest::collection::btree_map("[*a-z0-9-]{1,12}", arbitrary_preference(), 0..8),
        proptest::option::of(arbitrary_selector()),
        any::<bool>(),
        proptest::option::of(0..=MAX_PENDING_TIMEOUT_SECONDS),
    )
        .prop_map(
            |(rebalance, clusters, cluster_selector, dynamic, pending_timeout_seconds)| {
                Preferences {
                    rebalance,
                    clusters,
                    cluster_selector,
                    dynamic_weight: dynamic.then_some(DynamicWeight::AvailableReplicas),
                    pending_timeout_seconds,
                }
            },
        )
}

/// Changes the case of every ASCII letter where `mask` has a bit set.
fn recase(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn what_is_written_reads_back(p in arbitrary_preferences()) {
        prop_assert_eq!(Preferences::parse(&p.to_json_string()).unwrap(), p);
    }

    #[test]
    fn field_name_case_never_matters(p in arbitrary_preference(), mask in any::<u64>()) {
        let json = format!(
            r#"{{"{}": {{"c": {{"{}": {}, "{}": {}, "{}": {}}}}}}}"#,
            recase("clusters", mask),
            recase("minReplicas", mask >> 8),
            p.min_replicas,
            recase("maxReplicas", mask >> 16),
            p.max_replicas.map_or("null".to_owned(), |m| m.to_string()),
            recase("weight", mask >> 24),
            p.weight,
        );
        prop_assert_eq!(Preferences::parse(&json).unwrap().clusters["c"], p);
    }

    #[test]
    fn any_text_is_parsed_or_refused_without_panicking(text in "\\PC{0,64}") {
        let _ = Preferences::parse(&text);
    }

    #[test]
    fn mangled_valid_values_are_parsed_or_refused_without_panicking(
        p in arbitrary_preferences(),
        cut in any::<prop::sample::Index>(),
        insert in "[-0-9.e\"{}\\[\\]:,a-z ]{0,4}",
    ) {
        let mut json = p.to_json_string();
        let at = cut.index(json.len() + 1);
        json.insert_str(at, &insert);
        if let Err(e) = Preferences::parse(&json) {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

#[test]
fn a_cluster_selector_chooses_and_capacity_weighs_with_every_cluster_at_weight_1() {
    let p = Preferences::parse(
        r#"{"clusterselector": {"MatchLabels": {"gpu": "true"},
                                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                                                     {"key": "example.com/spot", "operator": "DoesNotExist"}]},
            "dynamicWeight": "AvailableReplicas", "pendingTimeoutSeconds": 60, "rebalance": true}"#,
    )
    .unwrap();
    assert_eq!(p.clusters, Preferences::default().clusters, "SPEC §10");
    assert_eq!(p.dynamic_weight, Some(DynamicWeight::AvailableReplicas));
    assert_eq!(p.pending_timeout(), SignedDuration::from_secs(60));
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert!(p.allows("c1", &labels(&[("gpu", "true"), ("zone", "a")])));
    assert!(
        !p.allows("c1", &labels(&[("gpu", "true"), ("zone", "c")])),
        "zone not In"
    );
    assert!(!p.allows("c1", &labels(&[("zone", "a")])), "matchLabels");
    assert!(
        !p.allows(
            "c1",
            &labels(&[("gpu", "true"), ("zone", "b"), ("example.com/spot", "")])
        ),
        "DoesNotExist"
    );
    let not_in = Preferences::parse(
        r#"{"clusterSelector": {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]},
                                                      {"key": "gpu", "operator": "Exists"}]}}"#,
    )
    .unwrap();
    assert!(not_in.allows("c", &labels(&[("gpu", ""), ("zone", "b")])));
    assert!(
        not_in.allows("c", &labels(&[("gpu", "")])),
        "NotIn holds when absent"
    );
    assert!(!not_in.allows("c", &labels(&[("gpu", ""), ("zone", "a")])));
    assert!(!not_in.allows("c", &labels(&[("zone", "b")])), "Exists");
    // With a clusters map of its own, §3 stands: no entry, no work, whatever the labels.
    let own = Preferences::parse(
        r#"{"clusters": {"c1": {"weight": 1}}, "clusterSelector": {"matchLabels": {"gpu": "true"}}}"#,
    )
    .unwrap();
    assert!(own.allows("c1", &labels(&[("gpu", "true")])));
    assert!(!own.allows("c2", &labels(&[("gpu", "true")])));
    // Without any of the new fields, nothing changes: no map, no cluster.
    let plain = Preferences::parse(r#"{"rebalance": true}"#).unwrap();
    assert!(plain.clusters.is_empty());
    assert_eq!(
        plain.pending_timeout(),
        SignedDuration::from_secs(DEFAULT_PENDING_TIMEOUT_SECONDS)
    );
}

#[test]
fn an_empty_dynamic_weight_is_none() {
    let p = Preferences::parse(r#"{"dynamicWeight": "", "clusterSelector": null}"#).unwrap();
    assert_eq!(p.dynamic_weight, None);
    assert_eq!(p.cluster_selector, None);
    assert!(p.clusters.is_empty(), "neither field is used");
}
