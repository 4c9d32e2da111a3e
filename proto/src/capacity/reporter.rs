//! The agent's end of the capacity reports: what was sent on the current stream, and the
//! report that brings the scheduler from there to the agent's current view.

use std::collections::{BTreeMap, HashMap};

use super::{Amounts, Groups, Shape};
use crate::v1;

/// Remembers what it sent on the current stream (the groups, and the numbers it gave shapes
/// and resource names), and turns the agent's view into the next report.
#[derive(Debug, Default)]
pub struct Reporter {
    form: ReportForm,
    shapes: HashMap<Shape, u32>,
    resources: HashMap<String, u32>,
    sent: Option<BTreeMap<(u32, Amounts), u32>>,
}

/// What a report introduces to the stream besides its groups.
#[derive(Default)]
struct Introduced {
    shapes: Vec<v1::NodeShape>,
    resources: Vec<v1::NodeResource>,
}

/// How a report lists its groups, as the scheduler on the stream takes them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ReportForm {
    /// In columns, free amounts by resource number (schedulers that set
    /// `RegisterResponse.capacity_columns`).
    #[default]
    Columns,
    /// A `NodeGroup` per group with free amounts by name: what every scheduler takes, sent to
    /// one from before the columns, which would ignore them.
    NamedGroups,
}

impl Reporter {
    /// Forgets what was sent (a new stream, to a scheduler that takes `form`): the next report
    /// is full.
    pub fn begin_stream(&mut self, form: ReportForm) {
        *self = Self {
            form,
            ..Self::default()
        };
    }

    /// The report that brings the receiver from what was sent to `groups`; `None` when
    /// nothing changed. A delta that would list more groups than `groups` has is sent as a
    /// full report instead.
    pub fn report(&mut self, groups: &Groups) -> Option<v1::CapacityReport> {
        let mut new = Introduced::default();
        let mut current: BTreeMap<(u32, Amounts), u32> = BTreeMap::new();
        for ((shape, free), nodes) in groups {
            let next_id = self.shapes.len() as u32 + 1;
            let id = *self.shapes.entry(shape.clone()).or_insert_with(|| {
                new.shapes.push(shape_message(next_id, shape));
                next_id
            });
            *current.entry((id, free.clone())).or_default() += nodes;
        }
        let changed: Vec<(&(u32, Amounts), u32)> = match &self.sent {
            None => current.iter().map(|(k, n)| (k, *n)).collect(),
            Some(sent) => {
                let mut changed: Vec<_> = current
                    .iter()
                    .filter(|(k, n)| sent.get(*k) != Some(*n))
                    .map(|(k, n)| (k, *n))
                    .collect();
                changed.extend(
                    sent.iter()
                        .filter(|(k, _)| !current.contains_key(*k))
                        .map(|(k, _)| (k, 0)),
                );
                if changed.is_empty() {
                    return None;
                }
                changed
            }
        };
        if self.sent.is_some() && changed.len() > current.len() {
            // The changes since a long wait (removed groups and added ones) outnumber the
            // groups themselves: the whole view, in full as a new stream gets it, costs the
            // receiver less.
            self.begin_stream(self.form);
            return self.report(groups);
        }
        let mut report = v1::CapacityReport {
            full: self.sent.is_none(),
            ..Default::default()
        };
        for ((shape, free), nodes) in changed {
            match self.form {
                ReportForm::Columns => {
                    let resources = &mut self.resources;
                    add_group(&mut report, resources, *shape, free, nodes, &mut new);
                }
                ReportForm::NamedGroups => report.groups.push(v1::NodeGroup {
                    shape: *shape,
                    nodes,
                    free: free.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    ..Default::default()
                }),
            }
        }
        report.shapes = new.shapes;
        report.resources = new.resources;
        self.sent = Some(current);
        Some(report)
    }
}

/// Adds a group to the report's columns: free amounts by the resources' numbers, a name
/// numbered when first used.
fn add_group(
    report: &mut v1::CapacityReport,
    resources: &mut HashMap<String, u32>,
    shape: u32,
    free: &Amounts,
    nodes: u32,
    new: &mut Introduced,
) {
    report.group_shapes.push(shape);
    report.group_nodes.push(nodes);
    report.group_sizes.push(free.len() as u32);
    for (name, amount) in free {
        let next_id = resources.len() as u32 + 1;
        let id = *resources.entry(name.clone()).or_insert_with(|| {
            new.resources.push(v1::NodeResource {
                id: next_id,
                name: name.clone(),
            });
            next_id
        });
        report.free_ids.push(id);
        report.free_amounts.push(*amount);
    }
}

fn shape_message(id: u32, shape: &Shape) -> v1::NodeShape {
    v1::NodeShape {
        id,
        labels: shape.labels.clone().into_iter().collect(),
        taints: shape
            .taints
            .iter()
            .map(|t| v1::NodeTaint {
                key: t.key.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
            })
            .collect(),
    }
}
