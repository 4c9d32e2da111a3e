use fedjob_proto::capacity::ClusterCapacity;
use serde_json::json;

use super::*;

fn node(cpu: &str, ready: bool, cordoned: bool) -> Option<NodeCapacity> {
    NodeCapacity::of(&json!({
        "metadata": {"labels": {"zone": "a"}},
        "spec": {"unschedulable": cordoned},
        "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "10"},
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    }))
}

fn pod(node: &str, phase: &str, cpu: &str) -> Value {
    json!({"spec": {"nodeName": node, "containers": [{"name": "w", "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]},
           "status": {"phase": phase}})
}

/// Lists both watches as given and returns the capacity.
fn listed(nodes: Vec<(&str, Option<NodeCapacity>)>, pods: Vec<(&str, Value)>) -> Capacity {
    listed_into(Capacity::default(), nodes, pods)
}

/// Lists both watches into `c`.
fn listed_into(
    c: Capacity,
    nodes: Vec<(&str, Option<NodeCapacity>)>,
    pods: Vec<(&str, Value)>,
) -> Capacity {
    c.nodes(Change::ListStart);
    for (name, n) in nodes {
        c.nodes(Change::Listed(name.to_owned(), n));
    }
    c.nodes(Change::ListDone);
    c.pods(Change::ListStart);
    for (name, p) in pods {
        c.pods(Change::Listed(name.to_owned(), bound_pod(&p)));
    }
    c.pods(Change::ListDone);
    c
}

/// What the scheduler holds after applying every report `c` produced so far.
fn received(c: &Capacity, at: &mut ClusterCapacity) -> bool {
    match c.report() {
        Some(r) => {
            at.apply(&r).unwrap();
            true
        }
        None => false,
    }
}

#[test]
fn pods_take_room_on_their_node_until_they_finish() {
    assert_eq!(
        bound_pod(&pod("n1", "Running", "1")).unwrap().1["cpu"],
        1000
    );
    assert_eq!(bound_pod(&pod("n1", "Pending", "1")).unwrap().0, "n1");
    assert_eq!(bound_pod(&pod("", "Pending", "1")), None, "not bound");
    assert_eq!(bound_pod(&pod("n1", "Succeeded", "1")), None);
    assert_eq!(bound_pod(&pod("n1", "Failed", "1")), None);
}

#[test]
fn only_schedulable_ready_nodes_count_and_reports_follow_changes() {
    let c = listed(
        vec![
            ("n1", node("2", true, false)),
            ("n2", node("2", true, false)),
            ("cordoned", node("2", true, true)),
            ("not-ready", node("2", false, false)),
        ],
        vec![("default/a", pod("n1", "Running", "500m"))],
    );
    let mut scheduler = ClusterCapacity::default();
    assert!(received(&c, &mut scheduler));
    let (free, nodes) = scheduler.totals();
    assert_eq!(nodes, 2);
    assert_eq!(free["cpu"], 3500);
    assert_eq!(free["memory"], 7 << 30);
    assert_eq!(free["pods"], 19);
    assert!(
        !received(&c, &mut scheduler),
        "nothing changed: nothing sent"
    );

    // The pod finishes: its node is free again, and the two nodes now travel as one group.
    c.pods(Change::Set(
        "default/a".into(),
        bound_pod(&pod("n1", "Succeeded", "500m")),
    ));
    assert!(received(&c, &mut scheduler));
    assert_eq!(scheduler.totals().0["cpu"], 4000);
    assert_eq!(scheduler.groups().count(), 1);

    // A node is cordoned: it no longer counts.
    c.nodes(Change::Set("n2".into(), node("2", true, true)));
    assert!(received(&c, &mut scheduler));
    assert_eq!(scheduler.totals().1, 1);

    // A new stream gets everything again, in full.
    c.begin_stream(ReportForm::Columns);
    let full = c.report().unwrap();
    assert!(full.full);
    assert_eq!(full.group_shapes.len(), 1);
    let mut fresh = ClusterCapacity::default();
    fresh.apply(&full).unwrap();
    assert_eq!(fresh.to_groups(), scheduler.to_groups());

    // To a scheduler from before the columns: a group message with amounts by name, the form
    // every scheduler takes, and then the changes the same way.
    c.begin_stream(ReportForm::NamedGroups);
    let named = c.report().unwrap();
    assert!(named.full && named.group_shapes.is_empty() && named.resources.is_empty());
    assert_eq!(named.groups.len(), 1);
    assert_eq!(named.groups[0].free["cpu"], 2000);
    let mut old = ClusterCapacity::default();
    old.apply(&named).unwrap();
    assert_eq!(old.to_groups(), scheduler.to_groups());
    c.nodes(Change::Set("n2".into(), node("2", true, false)));
    let delta = c.report().unwrap();
    assert!(!delta.full && delta.group_shapes.is_empty() && !delta.groups.is_empty());
    old.apply(&delta).unwrap();
    assert_eq!(old.totals().1, 2, "n2 counts again");
    assert_eq!(old.totals().0["cpu"], 4000);
}

#[test]
fn nothing_is_reported_before_both_lists_and_a_relist_replaces_what_was_known() {
    let c = Capacity::default();
    c.nodes(Change::ListStart);
    c.nodes(Change::Listed("n1".into(), node("2", true, false)));
    c.nodes(Change::ListDone);
    assert_eq!(c.report(), None, "pods not listed yet");
    c.pods(Change::ListStart);
    c.pods(Change::ListDone);
    let mut scheduler = ClusterCapacity::default();
    assert!(received(&c, &mut scheduler));
    // A re-list (after 410 Expired) that no longer has n1 but has n3.
    c.nodes(Change::ListStart);
    c.nodes(Change::Listed("n3".into(), node("4", true, false)));
    assert!(
        !received(&c, &mut scheduler),
        "nothing changes until the list is complete"
    );
    c.nodes(Change::ListDone);
    assert!(received(&c, &mut scheduler));
    assert_eq!(scheduler.totals().0["cpu"], 4000);
    c.nodes(Change::Deleted("n3".into()));
    assert!(received(&c, &mut scheduler));
    assert_eq!(scheduler.totals().1, 0);
}

#[test]
fn a_report_larger_than_the_budget_holds_the_next_back_and_what_waited_goes_with_it() {
    const BUDGET: u64 = 40;
    let c = listed_into(
        Capacity::new(BUDGET),
        vec![
            ("n1", node("2", true, false)),
            ("n2", node("4", true, false)),
        ],
        vec![("default/a", pod("n1", "Running", "500m"))],
    );
    let first = c.report().expect("the stream's first report goes at once");
    assert!(
        first.encoded_len() as u64 > BUDGET,
        "the full report ({} bytes) must hold the next back",
        first.encoded_len()
    );

    // A new stream does not wait for the last report's time: its full report goes at once.
    c.begin_stream(ReportForm::Columns);
    let full = c.report().expect("a new stream's full report goes at once");
    assert!(full.full);
    // The rule of `--capacity-bytes-per-heartbeat`: a report of N bytes, then ⌈N ÷ budget⌉
    // heartbeats until the next may go.
    let skipped = (full.encoded_len() as u64).div_ceil(BUDGET) - 1;
    let mut scheduler = ClusterCapacity::default();
    scheduler.apply(&full).unwrap();

    // Two changes while the report holds the next back; neither goes before its time.
    c.pods(Change::Set(
        "default/a".into(),
        bound_pod(&pod("n1", "Succeeded", "500m")),
    ));
    for beat in 0..skipped {
        assert_eq!(c.report(), None, "heartbeat {beat} after the full report");
        if beat == 0 {
            c.nodes(Change::Set("n2".into(), node("4", true, true)));
        }
    }
    assert!(received(&c, &mut scheduler), "the wait is over");
    // Both changes arrived together: n1 free again, n2 cordoned.
    assert_eq!(scheduler.to_groups(), c.groups().unwrap());
    let (free, nodes) = scheduler.totals();
    assert_eq!((free["cpu"], nodes), (2000, 1));
}
