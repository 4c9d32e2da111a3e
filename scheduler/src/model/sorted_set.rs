//! A set kept as a sorted vector, for the small sets every Job holds.
//!
//! A federated Job's members are up to a few thousand cluster names, written when the Job is
//! planned and read on every change. As a `BTreeSet` built by inserting names in order its
//! nodes were half full (35 bytes per 16-byte name, 35 MB at 100 clusters × 10,000 Jobs), and
//! every copy of the Job (every change makes one) allocated each node again. Sorted in one
//! vector the set costs its names alone and copies in one allocation; an insert moves the
//! names after it, which at these sizes and rates costs less than a tree's pointer chasing.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of `T` in ascending order, without duplicates.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q: Ord + ?Sized>(&self, value: &Q) -> Result<usize, usize>
    where
        T: Borrow<Q>,
    {
        self.0.binary_search_by(|v| v.borrow().cmp(value))
    }

    /// Whether `value` is in the set.
    pub fn contains<Q: Ord + ?Sized>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.find(value).is_ok()
    }

    /// Adds `value`; false when it was there already.
    pub fn insert(&mut self, value: T) -> bool {
        match self.find(&value) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Removes `value`; false when it was not there.
    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match self.find(value) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Keeps the values for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&T) -> bool) {
        self.0.retain(keep);
    }

    /// The values in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Restores order after values were pushed, keeping no spare room: the set lives as long
    /// as its Job's version.
    fn normalise(&mut self) {
        self.0.sort_unstable();
        self.0.dedup();
        self.0.shrink_to_fit();
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, values: I) {
        self.0.extend(values);
        self.normalise();
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let mut set = Self(values.into_iter().collect());
        set.normalise();
        set
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for SortedSet<T> {
    fn from(values: [T; N]) -> Self {
        values.into_iter().collect()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(&self.0).finish()
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::deserialize(deserializer)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_and_writes_json_as_a_sorted_list() {
        let set: SortedSet<String> = serde_json::from_str(r#"["c2","c1","c2"]"#).unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), ["c1", "c2"]);
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["c1","c2"]"#);
        assert!(set.contains("c1") && !set.contains("c3"));
    }

    /// One operation on a set of small numbers.
    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Remove(u8),
        Extend(Vec<u8>),
        RetainEven,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..16u8).prop_map(Op::Insert),
            2 => (0..16u8).prop_map(Op::Remove),
            2 => proptest::collection::vec(0..16u8, 0..6).prop_map(Op::Extend),
            1 => Just(Op::RetainEven),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// For any sequence of operations the set answers as a `BTreeSet` does.
        #[test]
        fn behaves_as_a_btree_set(ops in proptest::collection::vec(op(), 0..40)) {
            let (mut set, mut model) = (SortedSet::new(), BTreeSet::new());
            for op in ops {
                match op {
                    Op::Insert(v) => prop_assert_eq!(set.insert(v), model.insert(v)),
                    Op::Remove(v) => prop_assert_eq!(set.remove(&v), model.remove(&v)),
                    Op::Extend(vs) => {
                        set.extend(vs.iter().copied());
                        model.extend(vs);
                    }
                    Op::RetainEven => {
                        set.retain(|v| v % 2 == 0);
                        model.retain(|v| v % 2 == 0);
                    }
                    Op::Clear => {
                        set.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.iter().collect::<Vec<_>>());
                prop_assert_eq!((set.len(), set.is_empty()), (model.len(), model.is_empty()));
                for v in 0..16u8 {
                    prop_assert_eq!(set.contains(&v), model.contains(&v));
                }
            }
        }
    }
}
