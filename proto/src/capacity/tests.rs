use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::v1;
use proptest::prelude::*;
use serde_json::json;

fn amounts(pairs: &[(&str, i64)]) -> Amounts {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

#[test]
fn pod_requests_count_init_containers_limits_and_overhead() {
    let spec = json!({
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}}
        ],
        "overhead": {"cpu": "100m"}
    });
    assert_eq!(
        pod_requests(&spec),
        amounts(&[("cpu", 2100), ("memory", 1 << 30), ("nvidia.com/gpu", 1)])
    );
    assert!(pod_requests(&json!({"containers": [{"name": "a"}]})).is_empty());
}

fn node(ready: &str, cordoned: bool) -> Value {
    json!({
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "zone": "a"}},
        "spec": {"unschedulable": cordoned, "taints": [
            {"key": "gpu", "value": "yes", "effect": "NoSchedule"},
            {"key": "soft", "effect": "PreferNoSchedule"}]},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "nvidia.com/gpu": "2"},
                   "conditions": [{"type": "Ready", "status": ready}]}
    })
}

#[test]
fn a_node_offers_capacity_only_when_ready_and_not_cordoned() {
    let n = NodeCapacity::of(&node("True", false)).unwrap();
    assert_eq!(n.shape.labels, [("zone".to_owned(), "a".to_owned())].into());
    assert_eq!(
        n.shape.taints,
        [Taint {
            key: "gpu".into(),
            value: "yes".into(),
            effect: "NoSchedule".into()
        }]
    );
    assert_eq!(n.allocatable["cpu"], 4000);
    assert_eq!(n.allocatable["pods"], 110);
    assert_eq!(NodeCapacity::of(&node("True", true)), None, "cordoned");
    assert_eq!(NodeCapacity::of(&node("False", false)), None, "NotReady");
    assert_eq!(
        NodeCapacity::of(&node("Unknown", false)),
        None,
        "unreachable"
    );
    let mut no_status = node("True", false);
    no_status["status"]["conditions"] = json!([]);
    assert_eq!(NodeCapacity::of(&no_status), None, "never reported Ready");
}

#[test]
fn free_is_allocatable_minus_requests_and_pods() {
    let alloc = amounts(&[("cpu", 4000), ("memory", 8 << 30), ("pods", 110)]);
    let used = amounts(&[("cpu", 1400), ("memory", 2 << 30), ("nvidia.com/gpu", 1)]);
    assert_eq!(
        free(&alloc, &used, 2),
        amounts(&[("cpu", 2600), ("memory", 6 << 30), ("pods", 108)])
    );
    assert_eq!(
        free(&alloc, &amounts(&[("cpu", 5000)]), 0)["cpu"],
        0,
        "never negative"
    );
}

#[test]
fn a_quiet_cluster_sends_nothing_and_identical_nodes_travel_once() {
    let shape = Shape::default();
    let free = amounts(&[("cpu", 4000), ("pods", 110)]);
    let mut groups = Groups::new();
    groups.insert((shape.clone(), free.clone()), 5000);
    let mut reporter = Reporter::default();
    let first = reporter.report(&groups).unwrap();
    assert!(first.full);
    assert_eq!((first.shapes.len(), first.group_shapes.len()), (1, 1));
    assert_eq!(first.group_nodes, [5000]);
    assert_eq!(reporter.report(&groups), None, "nothing changed");
    // One node gets busier: two counts change, and the shape is not sent again.
    groups.insert((shape.clone(), free.clone()), 4999);
    groups.insert((shape, amounts(&[("cpu", 3000), ("pods", 109)])), 1);
    let delta = reporter.report(&groups).unwrap();
    assert!(!delta.full && delta.shapes.is_empty());
    assert_eq!(delta.group_shapes.len(), 2);
    reporter.begin_stream(ReportForm::Columns);
    assert!(
        reporter.report(&groups).unwrap().full,
        "a new stream starts in full"
    );
}

#[test]
fn bad_reports_change_nothing() {
    let mut cluster = ClusterCapacity::default();
    let delta = v1::CapacityReport::default();
    assert_eq!(cluster.apply(&delta), Err(CapacityError::NoBase));
    let unknown = v1::CapacityReport {
        full: true,
        shapes: vec![],
        groups: vec![v1::NodeGroup {
            shape: 7,
            nodes: 3,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        cluster.apply(&unknown).unwrap_err().to_string(),
        "capacity report: group of 3 node(s) names shape 7, which was never sent"
    );
    assert_eq!(cluster, ClusterCapacity::default());

    // On a cluster already built up: a report refused by its last group, after a new shape
    // and a good group, leaves it as it was (delta and full alike).
    let shape = v1::NodeShape {
        id: 1,
        ..Default::default()
    };
    let group = |shape: u32, cpu: i64, nodes: u32| v1::NodeGroup {
        shape,
        free: [("cpu".to_owned(), cpu)].into(),
        nodes,
        ..Default::default()
    };
    cluster
        .apply(&v1::CapacityReport {
            full: true,
            shapes: vec![shape.clone()],
            groups: vec![group(1, 1000, 2)],
            ..Default::default()
        })
        .unwrap();
    let before = cluster.clone();
    // A full report knows only its own shapes: there, the group of shape 1 is refused.
    for (full, shape, nodes) in [(false, 3, 1), (true, 1, 0)] {
        let refused = v1::CapacityReport {
            full,
            shapes: vec![v1::NodeShape {
                id: 2,
                ..Default::default()
            }],
            groups: vec![group(1, 1000, 0), group(2, 500, 1), group(3, 500, 1)],
            ..Default::default()
        };
        assert_eq!(
            cluster.apply(&refused),
            Err(CapacityError::UnknownShape { shape, nodes })
        );
        assert_eq!(cluster, before, "full: {full}");
    }
}

/// What a first report introduces in the examples below: shape 1, `cpu` as 1, `pods` as 2.
fn shape_1_cpu_1_pods_2() -> (v1::NodeShape, Vec<v1::NodeResource>) {
    let shape = v1::NodeShape {
        id: 1,
        ..Default::default()
    };
    let resource = |id: u32, name: &str| v1::NodeResource {
        id,
        name: name.into(),
    };
    (shape, vec![resource(1, "cpu"), resource(2, "pods")])
}

#[test]
fn groups_by_resource_number_are_checked_before_anything_changes() {
    let mut cluster = ClusterCapacity::default();
    let (shape, resources) = shape_1_cpu_1_pods_2();
    let group = |ids: Vec<u32>, amounts: Vec<i64>, nodes: u32| v1::NodeGroup {
        shape: 1,
        nodes,
        free_ids: ids,
        free_amounts: amounts,
        ..Default::default()
    };
    cluster
        .apply(&v1::CapacityReport {
            full: true,
            shapes: vec![shape],
            resources,
            groups: vec![group(vec![2, 1], vec![10, 4000], 3)],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        cluster.totals(),
        (amounts(&[("cpu", 12000), ("pods", 30)]), 3),
        "ids in any order"
    );
    let before = cluster.clone();
    let refused = |g: v1::NodeGroup| v1::CapacityReport {
        full: false,
        groups: vec![group(vec![1], vec![500], 1), g],
        ..Default::default()
    };
    let cases = [
        (
            group(vec![1, 3], vec![500, 1], 2),
            "capacity report: group of 2 node(s) names resource 3, which was never sent",
        ),
        (
            group(vec![1, 2], vec![500], 2),
            "capacity report: group of 2 node(s) has 2 free_ids but 1 free_amounts",
        ),
        (
            v1::NodeGroup {
                free: [("cpu".to_owned(), 1)].into(),
                ..group(vec![1], vec![500], 2)
            },
            "capacity report: group of 2 node(s) gives the free amount of cpu twice",
        ),
    ];
    for (bad, error) in cases {
        assert_eq!(cluster.apply(&refused(bad)).unwrap_err().to_string(), error);
        assert_eq!(cluster, before);
    }
    // Listed twice in one report, a group has its last count.
    let twice = v1::CapacityReport {
        groups: vec![
            group(vec![1, 2], vec![4000, 10], 7),
            group(vec![2, 1], vec![10, 4000], 1),
        ],
        ..Default::default()
    };
    cluster.apply(&twice).unwrap();
    assert_eq!(
        cluster.totals(),
        (amounts(&[("cpu", 4000), ("pods", 10)]), 1)
    );
}

#[test]
fn columns_are_checked_before_anything_changes_and_come_after_the_groups() {
    let mut cluster = ClusterCapacity::default();
    let (shape, resources) = shape_1_cpu_1_pods_2();
    let base = v1::CapacityReport {
        full: true,
        shapes: vec![shape],
        resources,
        // Two groups: 3 nodes with cpu 4000 and 10 pods free, 2 with cpu 500.
        group_shapes: vec![1, 1],
        group_nodes: vec![3, 2],
        group_sizes: vec![2, 1],
        free_ids: vec![1, 2, 1],
        free_amounts: vec![4000, 10, 500],
        ..Default::default()
    };
    cluster.apply(&base).unwrap();
    assert_eq!(
        cluster.totals(),
        (amounts(&[("cpu", 13000), ("pods", 30)]), 5)
    );
    let before = cluster.clone();
    let delta =
        |shapes: Vec<u32>, nodes: Vec<u32>, sizes: Vec<u32>, ids: Vec<u32>, free: Vec<i64>| {
            v1::CapacityReport {
                group_shapes: shapes,
                group_nodes: nodes,
                group_sizes: sizes,
                free_ids: ids,
                free_amounts: free,
                ..Default::default()
            }
        };
    let cases = [
        (
            delta(vec![1, 1], vec![1], vec![1, 1], vec![1, 1], vec![1, 2]),
            "capacity report: group_shapes has 2 entries, group_nodes 1 and group_sizes 2; they must be as many",
        ),
        (
            delta(vec![1], vec![1], vec![2], vec![1, 2], vec![1]),
            "capacity report: group_sizes add up to 2, but there are 2 free_ids and 1 free_amounts",
        ),
        (
            delta(vec![1], vec![1], vec![1], vec![1, 2], vec![1, 2]),
            "capacity report: group_sizes add up to 1, but there are 2 free_ids and 2 free_amounts",
        ),
        (
            delta(vec![1, 1], vec![0, 1], vec![1, 1], vec![1, 3], vec![500, 1]),
            "capacity report: group of 1 node(s) names resource 3, which was never sent",
        ),
        (
            delta(vec![1, 2], vec![0, 1], vec![1, 1], vec![1, 1], vec![500, 1]),
            "capacity report: group of 1 node(s) names shape 2, which was never sent",
        ),
    ];
    for (bad, error) in cases {
        assert_eq!(cluster.apply(&bad).unwrap_err().to_string(), error);
        assert_eq!(cluster, before);
    }
    // The group of cpu 500 listed in both forms: the columns come last, so their count holds.
    let both = v1::CapacityReport {
        groups: vec![v1::NodeGroup {
            shape: 1,
            nodes: 7,
            free_ids: vec![1],
            free_amounts: vec![500],
            ..Default::default()
        }],
        ..delta(vec![1], vec![4], vec![1], vec![1], vec![500])
    };
    cluster.apply(&both).unwrap();
    assert_eq!(
        cluster.totals(),
        (amounts(&[("cpu", 14000), ("pods", 30)]), 7)
    );
}

/// The groups of `report`'s columns, each as a `NodeGroup` by resource number.
fn column_groups(report: &v1::CapacityReport) -> Vec<v1::NodeGroup> {
    let mut start = 0;
    (0..report.group_shapes.len())
        .map(|i| {
            let range = start..start + report.group_sizes[i] as usize;
            start = range.end;
            v1::NodeGroup {
                shape: report.group_shapes[i],
                nodes: report.group_nodes[i],
                free_ids: report.free_ids[range.clone()].to_vec(),
                free_amounts: report.free_amounts[range].to_vec(),
                ..Default::default()
            }
        })
        .collect()
}

/// `report` as an agent from before the columns sent it: a `NodeGroup` per group.
fn by_group(report: &v1::CapacityReport) -> v1::CapacityReport {
    v1::CapacityReport {
        full: report.full,
        shapes: report.shapes.clone(),
        groups: column_groups(report),
        resources: report.resources.clone(),
        ..Default::default()
    }
}

/// `report` as an agent from before resource numbers sent it: free amounts by name in every
/// group (`names` holds the numbers the stream gave so far).
fn by_name(report: &v1::CapacityReport, names: &mut HashMap<u32, String>) -> v1::CapacityReport {
    names.extend(report.resources.iter().map(|r| (r.id, r.name.clone())));
    let groups = column_groups(report)
        .into_iter()
        .map(|g| v1::NodeGroup {
            shape: g.shape,
            nodes: g.nodes,
            free: g
                .free_ids
                .iter()
                .zip(&g.free_amounts)
                .map(|(id, amount)| (names[id].clone(), *amount))
                .collect(),
            ..Default::default()
        })
        .collect();
    v1::CapacityReport {
        full: report.full,
        shapes: report.shapes.clone(),
        groups,
        ..Default::default()
    }
}

fn arb_groups() -> impl Strategy<Value = Groups> {
    let shape = (0u8..3, prop::bool::ANY).prop_map(|(zone, tainted)| Shape {
        labels: [("zone".to_owned(), zone.to_string())].into(),
        taints: if tainted {
            vec![Taint {
                key: "t".into(),
                value: String::new(),
                effect: "NoSchedule".into(),
            }]
        } else {
            vec![]
        },
    });
    let free = (0i64..4, 0i64..3).prop_map(|(cpu, gpu)| {
        let mut f = amounts(&[("cpu", cpu * 500), ("pods", 10)]);
        if gpu > 0 {
            f.insert("nvidia.com/gpu".into(), gpu);
        }
        f
    });
    prop::collection::btree_map((shape, free), 1u32..50, 0..8)
}

proptest! {
    /// Whatever the views, the scheduler ends up with exactly the agent's view, and its
    /// totals are the sums over nodes.
    #[test]
    fn applying_every_report_gives_back_the_view(views in prop::collection::vec(arb_groups(), 1..8)) {
        let mut reporter = Reporter::default();
        let mut cluster = ClusterCapacity::default();
        // The same reports as agents before the columns sent them (a message per group), and
        // as agents before resource numbers sent them (names in every group).
        let mut grouped = ClusterCapacity::default();
        let (mut named, mut names) = (ClusterCapacity::default(), HashMap::new());
        // And a reporter speaking to a scheduler from before the columns.
        let (mut old_reporter, mut old) = (Reporter::default(), ClusterCapacity::default());
        old_reporter.begin_stream(ReportForm::NamedGroups);
        for view in &views {
            if let Some(report) = reporter.report(view) {
                cluster.apply(&report).unwrap();
                grouped.apply(&by_group(&report)).unwrap();
                named.apply(&by_name(&report, &mut names)).unwrap();
            }
            if let Some(report) = old_reporter.report(view) {
                prop_assert!(report.group_shapes.is_empty() && report.resources.is_empty());
                prop_assert!(report.groups.iter().all(|g| g.free_ids.is_empty()));
                old.apply(&report).unwrap();
            }
            prop_assert_eq!(&cluster.to_groups(), view);
            prop_assert_eq!(&grouped.to_groups(), view);
            prop_assert_eq!(&named.to_groups(), view);
            prop_assert_eq!(&old.to_groups(), view);
            prop_assert_eq!(grouped.totals(), cluster.totals());
            prop_assert_eq!(named.totals(), cluster.totals());
            // Kept up to date report by report, they are the sums over the view.
            let mut sums = Amounts::new();
            for ((_, free), n) in view {
                for (name, amount) in free {
                    *sums.entry(name.clone()).or_default() += amount * i64::from(*n);
                }
            }
            prop_assert_eq!(cluster.totals(), (sums, view.values().sum::<u32>()));
        }
    }

    /// After the first report, each lists exactly the groups that changed, or, when those
    /// outnumber the groups of the view, the whole view in full.
    #[test]
    fn a_report_lists_the_change_or_the_view_whichever_is_shorter(a in arb_groups(), b in arb_groups()) {
        let mut reporter = Reporter::default();
        reporter.report(&a);
        let keys: BTreeSet<_> = a.keys().chain(b.keys()).collect();
        let changed = keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).count();
        match reporter.report(&b) {
            Some(report) if changed > b.len() => {
                prop_assert!(report.full);
                prop_assert_eq!(report.group_count(), b.len());
                prop_assert_eq!(report.shapes.len(), b.keys().map(|(s, _)| s).collect::<BTreeSet<_>>().len());
            }
            Some(report) => {
                prop_assert!(!report.full);
                prop_assert_eq!(report.group_count(), changed);
            }
            None => prop_assert_eq!(a, b),
        }
    }
}
