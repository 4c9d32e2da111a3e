//! Member cluster names, interned: one allocation per distinct name for the whole process.
//!
//! A Job over 100 clusters names each of them three times (its members, its planned
//! parallelism, its shards), and the scheduler holds every Job: at 100 clusters × 10,000 Jobs
//! that was three million owned copies of a hundred strings. A [`ClusterName`] is a pointer to
//! the one shared copy, so a Job holding it costs 16 bytes and no allocation.
//!
//! Names are never freed: there are as many as clusters ever registered, which the
//! federation's operators control.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::fast_hash::FastSet;

/// Every name interned so far.
static NAMES: LazyLock<Mutex<FastSet<Arc<str>>>> = LazyLock::new(Mutex::default);

/// The name of a member cluster, shared with every other holder of the same name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterName(Arc<str>);

impl ClusterName {
    /// The shared copy of `name`.
    pub fn new(name: &str) -> Self {
        let mut names = NAMES.lock();
        if let Some(shared) = names.get(name) {
            return Self(Arc::clone(shared));
        }
        let shared: Arc<str> = name.into();
        names.insert(Arc::clone(&shared));
        Self(shared)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ClusterName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ClusterName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ClusterName {
    fn as_ref(&self) -> &str {
        &self.0
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
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for ClusterName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
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
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(!Arc::ptr_eq(&a.0, &ClusterName::new("eu-east").0));
        assert_eq!(a, "eu-west");
        assert_eq!("eu-west", a);
        assert_eq!(a.to_string(), "eu-west");
        assert_eq!(format!("{a:?}"), "\"eu-west\"");
    }

    #[test]
    fn reads_and_writes_as_a_plain_string() {
        let name: ClusterName = serde_json::from_str("\"us-1\"").unwrap();
        assert_eq!(name, "us-1");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"us-1\"");
        assert!(Arc::ptr_eq(&name.0, &ClusterName::new("us-1").0));
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
