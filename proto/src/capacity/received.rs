//! The scheduler's end of the capacity reports: a cluster's capacity as its reports built it.
//!
//! The scheduler keeps a new version of a cluster's capacity per report, because the
//! planner's views hold the previous one. So a version is built to be cheap to make: the
//! shapes and resource names are shared until a report adds some, and the groups are flat
//! sorted arrays of numbers (free amounts by resource number, not name) merged with the
//! report's changes. A report of ≈ 100 changed groups in a cluster of ≈ 1,000 costs one
//! merge of two arrays, not a copy of a tree of maps keyed by strings and its drop.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Amounts, CapacityError, Groups, Shape, Taint};
use crate::v1;

/// Free amounts looked up by resource name: a group's ([`Free`]) or any [`Amounts`].
pub trait FreeAmounts {
    /// The free amount of `resource`, `None` when the nodes do not have it.
    fn free(&self, resource: &str) -> Option<i64>;
}

impl FreeAmounts for Amounts {
    fn free(&self, resource: &str) -> Option<i64> {
        self.get(resource).copied()
    }
}

/// The free amounts of one group of nodes, by resource.
#[derive(Debug, Clone, Copy)]
pub struct Free<'a> {
    names: &'a [String],
    amounts: &'a [(u32, i64)],
}

impl<'a> Free<'a> {
    /// Each resource's name and free amount.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, i64)> + 'a {
        let names = self.names;
        self.amounts
            .iter()
            .map(move |(id, amount)| (names[*id as usize].as_str(), *amount))
    }

    /// As a map by name.
    pub fn to_amounts(&self) -> Amounts {
        self.iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

impl FreeAmounts for Free<'_> {
    fn free(&self, resource: &str) -> Option<i64> {
        self.iter()
            .find(|(name, _)| *name == resource)
            .map(|(_, v)| v)
    }
}

/// A group as a report lists it, in whichever of its forms: a `NodeGroup` (free amounts by
/// resource id, or by name as agents before resource ids sent them) or the report's columns.
#[derive(Clone, Copy)]
struct Listed<'a> {
    shape: u32,
    nodes: u32,
    ids: &'a [u32],
    amounts: &'a [i64],
    /// Free amounts by name (`NodeGroup.free`).
    names: Option<&'a HashMap<String, i64>>,
}

/// The groups of `report`'s columns, or why they do not line up.
fn columns(report: &v1::CapacityReport) -> Result<impl Iterator<Item = Listed<'_>>, CapacityError> {
    let (shapes, nodes, sizes) = (
        &report.group_shapes,
        &report.group_nodes,
        &report.group_sizes,
    );
    if shapes.len() != nodes.len() || shapes.len() != sizes.len() {
        return Err(CapacityError::Columns {
            shapes: shapes.len(),
            nodes: nodes.len(),
            sizes: sizes.len(),
        });
    }
    let sized: u64 = sizes.iter().map(|&n| u64::from(n)).sum();
    let (ids, amounts) = (&report.free_ids, &report.free_amounts);
    if sized != ids.len() as u64 || sized != amounts.len() as u64 {
        return Err(CapacityError::Sizes {
            sized,
            ids: ids.len(),
            amounts: amounts.len(),
        });
    }
    let mut start = 0;
    Ok((0..shapes.len()).map(move |i| {
        let range = start..start + sizes[i] as usize;
        start = range.end;
        Listed {
            shape: shapes[i],
            nodes: nodes[i],
            ids: &ids[range.clone()],
            amounts: &amounts[range],
            names: None,
        }
    }))
}

/// The entry numbered `id` of a list sorted by number.
fn by_id<T>(list: &[(u32, T)], id: u32) -> Option<&T> {
    let i = list.binary_search_by_key(&id, |(id, _)| *id).ok()?;
    Some(&list[i].1)
}

/// Sets the entry numbered `id` of a list sorted by number, keeping it sorted.
fn set_by_id<T>(list: &mut Vec<(u32, T)>, id: u32, value: T) {
    match list.binary_search_by_key(&id, |(id, _)| *id) {
        Ok(i) => list[i].1 = value,
        Err(i) => list.insert(i, (id, value)),
    }
}

/// Nodes of one shape with the same free amounts: a run of [`GroupTable::free`].
#[derive(Debug, Clone, Copy)]
struct Group {
    shape: u32,
    nodes: u32,
    start: u32,
    len: u32,
}

/// Groups of nodes in two flat arrays (copied, never walked pointer by pointer): the groups,
/// and their free amounts by resource number, each group's sorted by number.
#[derive(Debug, Clone, Default)]
struct GroupTable {
    groups: Vec<Group>,
    free: Vec<(u32, i64)>,
}

impl GroupTable {
    fn with_capacity(groups: usize, free: usize) -> Self {
        Self {
            groups: Vec::with_capacity(groups),
            free: Vec::with_capacity(free),
        }
    }

    fn free(&self, g: &Group) -> &[(u32, i64)] {
        &self.free[g.start as usize..][..g.len as usize]
    }

    fn key(&self, g: &Group) -> (u32, &[(u32, i64)]) {
        (g.shape, self.free(g))
    }

    fn push(&mut self, shape: u32, nodes: u32, free: &[(u32, i64)]) {
        self.groups.push(Group {
            shape,
            nodes,
            start: self.free.len() as u32,
            len: free.len() as u32,
        });
        self.free.extend_from_slice(free);
    }
}

impl PartialEq for GroupTable {
    fn eq(&self, other: &Self) -> bool {
        self.groups.len() == other.groups.len()
            && self
                .groups
                .iter()
                .zip(&other.groups)
                .all(|(a, b)| a.nodes == b.nodes && self.key(a) == other.key(b))
    }
}

impl Eq for GroupTable {}

/// A cluster's capacity as its reports built it. Cloning it is cheap (shared parts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCapacity {
    /// By the stream's shape ids, sorted by id (looked up per group of every report: a few
    /// dozen shapes at most are searched faster than hashed).
    shapes: Arc<Vec<(u32, Shape)>>,
    /// Resource names by this capacity's numbers: one per name, whether the stream numbered
    /// it (`resource_ids`) or a group named it (an agent that sends names).
    resources: Arc<Vec<String>>,
    /// The stream's resource ids → numbers in `resources`, sorted by id (looked up per free
    /// amount of every report).
    resource_ids: Arc<Vec<(u32, u32)>>,
    /// Sorted by shape, then free amounts; no two alike, none of 0 nodes.
    groups: Arc<GroupTable>,
    based: bool,
    /// Per resource number: the free amount summed over every node, and how many groups name
    /// it. Kept as reports change the groups: `fedctl get clusters` asks for every cluster's
    /// sums, and summing ≈ 1,000 groups per cluster per call was a fifth of the scheduler's
    /// CPU with clusters reporting every second.
    sums: Vec<(i128, u32)>,
    /// Nodes in every group.
    nodes: u32,
}

impl ClusterCapacity {
    /// Applies a report: a full one replaces everything, a delta sets the counts it lists.
    /// Nothing changes when it is refused.
    pub fn apply(&mut self, report: &v1::CapacityReport) -> Result<(), CapacityError> {
        *self = self.applied(report)?;
        Ok(())
    }

    /// This capacity with `report` applied, leaving this one as it is (a version the
    /// planner's views may hold).
    pub fn applied(&self, report: &v1::CapacityReport) -> Result<Self, CapacityError> {
        if !report.full && !self.based {
            return Err(CapacityError::NoBase);
        }
        let mut next = if report.full {
            Self::default()
        } else {
            self.clone()
        };
        next.based = true;
        next.learn(report);
        let mut changes = GroupTable::with_capacity(
            report.groups.len() + report.group_shapes.len(),
            report.free_ids.len(),
        );
        for g in &report.groups {
            if g.free_ids.len() != g.free_amounts.len() {
                return Err(CapacityError::Unpaired {
                    ids: g.free_ids.len(),
                    amounts: g.free_amounts.len(),
                    nodes: g.nodes,
                });
            }
            let listed = Listed {
                shape: g.shape,
                nodes: g.nodes,
                ids: &g.free_ids,
                amounts: &g.free_amounts,
                names: Some(&g.free),
            };
            next.take_group(listed, &mut changes)?;
        }
        for listed in columns(report)? {
            next.take_group(listed, &mut changes)?;
        }
        next.merge(&changes);
        Ok(next)
    }

    /// The shape numbered `id` on the stream.
    fn shape(&self, id: u32) -> Option<&Shape> {
        by_id(&self.shapes, id)
    }

    /// Takes in the shapes and resource names the report introduces.
    fn learn(&mut self, report: &v1::CapacityReport) {
        if !report.shapes.is_empty() {
            let shapes = Arc::make_mut(&mut self.shapes);
            for s in &report.shapes {
                let mut taints: Vec<Taint> = s
                    .taints
                    .iter()
                    .map(|t| Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.clone(),
                    })
                    .collect();
                taints.sort();
                let labels = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                set_by_id(shapes, s.id, Shape { labels, taints });
            }
        }
        for r in &report.resources {
            let number = self.number(&r.name);
            set_by_id(Arc::make_mut(&mut self.resource_ids), r.id, number);
        }
    }

    /// The number of the resource `name`, given one if it has none yet.
    fn number(&mut self, name: &str) -> u32 {
        match self.resources.iter().position(|n| n == name) {
            Some(i) => i as u32,
            None => {
                Arc::make_mut(&mut self.resources).push(name.to_owned());
                self.sums.push((0, 0));
                (self.resources.len() - 1) as u32
            }
        }
    }

    /// Adds a group of the report to `changes`, or says why it cannot be taken.
    fn take_group(&mut self, g: Listed<'_>, changes: &mut GroupTable) -> Result<(), CapacityError> {
        if self.shape(g.shape).is_none() {
            return Err(CapacityError::UnknownShape {
                shape: g.shape,
                nodes: g.nodes,
            });
        }
        let start = changes.free.len();
        for (id, amount) in g.ids.iter().zip(g.amounts) {
            let number = *by_id(&self.resource_ids, *id).ok_or(CapacityError::UnknownResource {
                resource: *id,
                nodes: g.nodes,
            })?;
            changes.free.push((number, *amount));
        }
        for (name, amount) in g.names.into_iter().flatten() {
            let number = self.number(name);
            changes.free.push((number, *amount));
        }
        let free = &mut changes.free[start..];
        // Already sorted when the agent numbers resources in the order it first met them.
        if !free.is_sorted() {
            free.sort_unstable();
        }
        if let Some(pair) = free.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(CapacityError::Repeated {
                resource: self.resources[pair[0].0 as usize].clone(),
                nodes: g.nodes,
            });
        }
        changes.groups.push(Group {
            shape: g.shape,
            nodes: g.nodes,
            start: start as u32,
            len: (changes.free.len() - start) as u32,
        });
        Ok(())
    }

    /// Replaces the groups by their merge with `changes`: a change sets its group's count,
    /// 0 removes it; a group listed twice has its last count, as if applied in order.
    fn merge(&mut self, changes: &GroupTable) {
        let key_of = |i: usize| changes.key(&changes.groups[i]);
        // By group, the last listed first, so that deduplicating keeps it.
        let mut order: Vec<usize> = (0..changes.groups.len()).collect();
        order.sort_unstable_by(|&a, &b| key_of(a).cmp(&key_of(b)).then(b.cmp(&a)));
        order.dedup_by(|a, b| key_of(*a) == key_of(*b));
        let old = self.groups.clone();
        let mut merged = GroupTable::with_capacity(
            old.groups.len() + order.len(),
            old.free.len() + changes.free.len(),
        );
        let mut kept = old.groups.iter().peekable();
        for change in order.into_iter().map(|i| &changes.groups[i]) {
            let key = changes.key(change);
            while let Some(g) = kept.next_if(|g| old.key(g) < key) {
                merged.push(g.shape, g.nodes, old.free(g));
            }
            if let Some(g) = kept.next_if(|g| old.key(g) == key) {
                self.count(old.free(g), g.nodes, -1);
            }
            if change.nodes > 0 {
                self.count(key.1, change.nodes, 1);
                merged.push(change.shape, change.nodes, key.1);
            }
        }
        for g in kept {
            merged.push(g.shape, g.nodes, old.free(g));
        }
        self.groups = Arc::new(merged);
    }

    /// Adds (`sign` 1) or takes away (-1) a group of `nodes` nodes with `free` each to the sums.
    fn count(&mut self, free: &[(u32, i64)], nodes: u32, sign: i8) {
        let delta = i128::from(sign) * i128::from(nodes);
        self.nodes = u32::try_from(i128::from(self.nodes) + delta).unwrap_or(0);
        for (number, amount) in free {
            let (sum, groups) = &mut self.sums[*number as usize];
            *sum += delta * i128::from(*amount);
            if sign > 0 {
                *groups += 1;
            } else {
                *groups -= 1;
            }
        }
    }

    /// Every group: its shape, free resources per node, and node count.
    pub fn groups(&self) -> impl Iterator<Item = (&Shape, Free<'_>, u32)> {
        let table = &*self.groups;
        table.groups.iter().filter_map(move |g| {
            let free = Free {
                names: &self.resources,
                amounts: table.free(g),
            };
            Some((self.shape(g.shape)?, free, g.nodes))
        })
    }

    /// The groups keyed as the reporter's view was.
    pub fn to_groups(&self) -> Groups {
        let mut groups = Groups::new();
        for (shape, free, nodes) in self.groups() {
            *groups
                .entry((shape.clone(), free.to_amounts()))
                .or_default() += nodes;
        }
        groups
    }

    /// Free amounts summed over every node (resources some group has), and the node count.
    pub fn totals(&self) -> (Amounts, u32) {
        let totals = self
            .resources
            .iter()
            .zip(&self.sums)
            .filter(|(_, (_, groups))| *groups > 0)
            .map(|(name, (sum, _))| {
                let sum = i64::try_from(*sum).unwrap_or(if *sum < 0 { i64::MIN } else { i64::MAX });
                (name.clone(), sum)
            })
            .collect();
        (totals, self.nodes)
    }
}
