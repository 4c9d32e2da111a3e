//! The store's keys inside etcd's key space: every key lives under the `--etcd-prefix`, and
//! etcd's key-values and events become the store's.

use super::EtcdError;
use super::pb::mvccpb;
use crate::store::{KeyValue, Revision, StoreError, WatchEvent};

/// Maps the store's keys to etcd keys under one prefix and back.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: Vec<u8>,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.as_bytes().to_vec(),
        }
    }

    /// The prefix, as configured (after normalisation).
    pub(super) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The etcd key of the store's `key`.
    pub(super) fn full(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The etcd range `[key, range_end)` holding every store key that starts with `prefix`.
    pub(super) fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full(prefix);
        if start.is_empty() {
            // Both "\0": etcd's way of saying every key.
            return (vec![0], vec![0]);
        }
        let end = prefix_end(&start);
        (start, end)
    }

    /// The store's key for an etcd key under the prefix.
    pub(super) fn strip(&self, key: &[u8]) -> Result<String, StoreError> {
        let rest = key.strip_prefix(self.prefix.as_slice()).ok_or_else(|| {
            protocol(format!(
                "etcd returned the key {:?}, which is outside the prefix {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&self.prefix)
            ))
        })?;
        String::from_utf8(rest.to_vec()).map_err(|_| {
            protocol(format!(
                "the key {:?} under the prefix is not UTF-8; something other than fedjob \
                 writes there",
                String::from_utf8_lossy(key)
            ))
        })
    }

    /// etcd's key-value as the store's.
    pub(super) fn key_value(&self, kv: mvccpb::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.strip(&kv.key)?,
            value: kv.value,
            create_revision: revision(kv.create_revision),
            mod_revision: revision(kv.mod_revision),
        })
    }

    /// etcd's watch event as the store's.
    pub(super) fn event(&self, event: mvccpb::Event) -> Result<WatchEvent, StoreError> {
        let kv = event
            .kv
            .ok_or_else(|| protocol("a watch event without a key-value".to_owned()))?;
        match mvccpb::event::EventType::try_from(event.r#type) {
            Ok(mvccpb::event::EventType::Put) => Ok(WatchEvent::Put(self.key_value(kv)?)),
            Ok(mvccpb::event::EventType::Delete) => Ok(WatchEvent::Delete {
                key: self.strip(&kv.key)?,
                mod_revision: revision(kv.mod_revision),
                prev: event.prev_kv.map(|p| self.key_value(p)).transpose()?,
            }),
            Err(_) => Err(protocol(format!(
                "a watch event of unknown type {}",
                event.r#type
            ))),
        }
    }
}

/// etcd's signed revision as the store's (etcd never sends a negative one).
pub(super) fn revision(revision: i64) -> Revision {
    u64::try_from(revision).unwrap_or(0)
}

/// The store's revision as etcd's signed one.
pub(super) fn etcd_revision(revision: Revision) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// The smallest key greater than every key starting with `prefix`: the prefix with its last
/// byte below 0xff incremented and what follows dropped; "\0" (no end) when there is none.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn protocol(message: String) -> StoreError {
    StoreError::backend("reading etcd's answer", EtcdError::Protocol(message))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/fedjob/"), b"/fedjob0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys::new("/fedjob/");
        assert_eq!(keys.full("jobs/a"), b"/fedjob/jobs/a".to_vec());
        assert_eq!(
            keys.range("jobs/"),
            (b"/fedjob/jobs/".to_vec(), b"/fedjob/jobs0".to_vec())
        );
        assert_eq!(keys.range(""), (b"/fedjob/".to_vec(), b"/fedjob0".to_vec()));
        assert_eq!(keys.strip(b"/fedjob/jobs/a").unwrap(), "jobs/a");
        assert!(keys.strip(b"/other/jobs/a").is_err());
        assert!(keys.strip(b"/fedjob/\xff").is_err());
        // Without a prefix, listing everything is etcd's "\0".."\0".
        assert_eq!(Keys::new("").range(""), (vec![0], vec![0]));
    }

    #[test]
    fn events_map_to_the_stores() {
        let keys = Keys::new("/p/");
        let kv = |key: &[u8], value: &'static [u8], create, modified| mvccpb::KeyValue {
            key: Bytes::copy_from_slice(key),
            value: Bytes::from_static(value),
            create_revision: create,
            mod_revision: modified,
            version: 1,
            lease: 0,
        };
        let put = mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: Some(kv(b"/p/a", b"v", 5, 7)),
            prev_kv: None,
        };
        assert_eq!(
            keys.event(put).unwrap(),
            WatchEvent::Put(KeyValue {
                key: "a".into(),
                value: Bytes::from_static(b"v"),
                create_revision: 5,
                mod_revision: 7
            })
        );
        let delete = mvccpb::Event {
            r#type: mvccpb::event::EventType::Delete as i32,
            kv: Some(kv(b"/p/a", b"", 0, 9)),
            prev_kv: Some(kv(b"/p/a", b"v", 5, 7)),
        };
        assert_eq!(
            keys.event(delete).unwrap(),
            WatchEvent::Delete {
                key: "a".into(),
                mod_revision: 9,
                prev: Some(KeyValue {
                    key: "a".into(),
                    value: Bytes::from_static(b"v"),
                    create_revision: 5,
                    mod_revision: 7
                })
            }
        );
    }
}
