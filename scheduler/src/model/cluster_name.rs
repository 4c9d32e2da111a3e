//! Member cluster names, interned: one allocation per distinct name for the whole process.
//!
//! A Job over 100 clusters names each of them three times (its members, its planned
//! parallelism, its shards), and the scheduler holds every Job: at 100 clusters × 10,000 Jobs
//! that was three million owned copies of a hundred strings. A [`ClusterName`] is a pointer to
//! the one shared copy, so a Job holding it costs 8 bytes and no allocation, and copying a
//! Job (as every change does) copies the pointer without touching a reference count that
//! every Job in the cluster shares. The pointer is thin (to a shared `&str`, not to the text
//! with its length beside the pointer): 8 bytes less per shard, per member and per planned
//! share, 24 MB at 100 clusters × 10,000 Jobs, for one more (always cached) load to read it.
//!
//! Names are never freed: there are as many as clusters ever registered, which the
//! federation's operators control. Two names are equal exactly when they point to the same
//! copy.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::LazyLock;

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fast_hash::FastMap;

/// Every name interned so far: its text, and the one shared reference to it.
static NAMES: LazyLock<Mutex<FastMap<&'static str, &'static &'static str>>> =
    LazyLock::new(Mutex::default);

/// The name of a member cluster, shared with every other holder of the same name.
#[derive(Clone, Copy)]
pub struct ClusterName(&'static &'static str);

impl ClusterName {
    /// The shared copy of `name`.
    pub fn new(name: &str) -> Self {
        let mut names = NAMES.lock();
        if let Some(shared) = names.get(name) {
            return Self(shared);
        }
        let text: &'static str = Box::leak(name.into());
        let shared: &'static &'static str = Box::leak(Box::new(text));
        names.insert(text, shared);
        Self(shared)
    }

    /// The name as text.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl PartialEq for ClusterName {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for ClusterName {}

impl PartialOrd for ClusterName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClusterName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}

impl Hash for ClusterName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the text hashes: maps keyed by names are looked up by `&str`.
        self.as_str().hash(state);
    }
}

impl Deref for ClusterName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ClusterName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ClusterName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ClusterName {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<&String> for ClusterName {
    fn from(name: &String) -> Self {
        Self::new(name)
    }
}

impl From<String> for ClusterName {
    fn from(name: String) -> Self {
        Self::new(&name)
    }
}

impl From<&ClusterName> for String {
    fn from(name: &ClusterName) -> Self {
        name.as_str().to_owned()
    }
}

impl From<ClusterName> for String {
    fn from(name: ClusterName) -> Self {
        name.as_str().to_owned()
    }
}

impl PartialEq<str> for ClusterName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ClusterName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for ClusterName {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<ClusterName> for str {
    fn eq(&self, other: &ClusterName) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<ClusterName> for &str {
    fn eq(&self, other: &ClusterName) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<ClusterName> for String {
    fn eq(&self, other: &ClusterName) -> bool {
        self == other.as_str()
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for ClusterName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ClusterName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::new(&name))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn equal_names_share_one_copy() {
        let a = ClusterName::new("eu-west");
        let b = ClusterName::from(String::from("eu-west"));
        assert!(std::ptr::eq(a.0, b.0));
        assert_ne!(a, ClusterName::new("eu-east"));
        assert!(a < ClusterName::new("eu-z") && ClusterName::new("eu-east") < a);
        assert_eq!(a, "eu-west");
        assert_eq!("eu-west", a);
        assert_eq!(a.to_string(), "eu-west");
        assert_eq!(format!("{a:?}"), "\"eu-west\"");
        // Thin: one pointer, as often as a Job names a cluster.
        assert_eq!(size_of::<ClusterName>(), 8);
    }

    #[test]
    fn reads_and_writes_as_a_plain_string() {
        let name: ClusterName = serde_json::from_str("\"us-1\"").unwrap();
        assert_eq!(name, "us-1");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"us-1\"");
        assert!(std::ptr::eq(name.0, ClusterName::new("us-1").0));
    }

    proptest! {
        /// Sets of names order and look up as sets of the strings would.
        #[test]
        fn orders_and_finds_like_its_text(names in proptest::collection::vec("[a-c]{0,3}", 0..12)) {
            let interned: BTreeSet<ClusterName> = names.iter().map(|n| ClusterName::new(n)).collect();
            let text: BTreeSet<&str> = names.iter().map(String::as_str).collect();
            let listed: Vec<&str> = interned.iter().map(ClusterName::as_str).collect();
            prop_assert_eq!(listed, text.iter().copied().collect::<Vec<_>>());
            for n in ["", "a", "ab", "abc", "d"] {
                prop_assert_eq!(interned.contains(n), text.contains(n));
            }
        }
    }
}
