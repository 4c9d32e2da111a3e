//! The compact encoding of one federated Job, shards included, in one store value.
//!
//! A Job over a hundred clusters has a hundred shards, and every change of the Job rewrites its
//! record, so the shards are what the encoding is about: protobuf messages (prost) with the
//! cluster names and the names of enum values interned in one string table per record, shard
//! names that follow the `NAME`, `NAME-2`, … rule kept as their ordinal, local Job uids as 16
//! bytes. The rest of the record (the user's Job, its status and the small fields) stays JSON,
//! so the Kubernetes types keep their own encoding. About 60 bytes per shard instead of ~350 in
//! JSON.
//!
//! The model's types are taken apart field by field without `..`: a field added to them does
//! not compile here until the encoding carries it, so nothing is dropped silently. Enum values
//! are stored by their serde names, so a variant added to the model needs no change here.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use jiff::Timestamp;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::fast_hash::FastMap;
use crate::model::job::{
    ClusterName, Deletion, Detail, FederatedJob, Observed, ObservedPhase, Shard, ShardState,
    StopReason, Uid, Unplaced,
};
use crate::model::sorted_set::SortedSet;
use fedjob_proto::names::shard_name;

/// First byte of a record in this encoding; JSON records (store format 1) start with `{`.
pub const MAGIC: u8 = 0xF2;

/// The record as stored.
#[derive(Clone, PartialEq, Message)]
struct JobRecord {
    /// [`Header`] as JSON.
    #[prost(bytes = "vec", tag = "1")]
    header: Vec<u8>,
    /// Cluster names and enum value names; everything below refers to them by index.
    #[prost(string, repeated, tag = "2")]
    strings: Vec<String>,
    /// Members, as string indexes.
    #[prost(uint32, repeated, tag = "3")]
    members: Vec<u32>,
    /// Planned parallelism per cluster: string index and parallelism, in pairs.
    #[prost(int64, repeated, tag = "4")]
    planned: Vec<i64>,
    #[prost(message, repeated, tag = "5")]
    shards: Vec<ShardRecord>,
}

/// One shard.
#[derive(Clone, PartialEq, Message)]
struct ShardRecord {
    #[prost(uint32, tag = "1")]
    cluster: u32,
    /// The shard's ordinal when its name is `shard_name(job, ordinal)`.
    #[prost(uint32, tag = "2")]
    ordinal: u32,
    /// The name, when it does not follow the rule.
    #[prost(string, tag = "3")]
    name: String,
    #[prost(int32, optional, tag = "4")]
    completions: Option<i32>,
    #[prost(int32, tag = "5")]
    parallelism: i32,
    #[prost(uint64, tag = "6")]
    epoch: u64,
    #[prost(uint32, tag = "7")]
    state: u32,
    #[prost(uint32, optional, tag = "8")]
    stop_reason: Option<u32>,
    #[prost(uint64, tag = "9")]
    revision: u64,
    #[prost(fixed64, tag = "10")]
    fingerprint: u64,
    #[prost(bool, tag = "11")]
    seen: bool,
    #[prost(message, optional, tag = "12")]
    observed: Option<ObservedRecord>,
    /// Completions moved off it by spill-over.
    #[prost(int32, tag = "13")]
    moved: i32,
    #[prost(message, optional, tag = "14")]
    spilled_at: Option<TimeRecord>,
}

/// What an agent last reported of a shard.
#[derive(Clone, PartialEq, Message)]
struct ObservedRecord {
    #[prost(uint32, tag = "1")]
    phase: u32,
    #[prost(int32, tag = "2")]
    active: i32,
    #[prost(int32, tag = "3")]
    succeeded: i32,
    #[prost(int32, tag = "4")]
    failed: i32,
    #[prost(message, optional, tag = "5")]
    start_time: Option<TimeRecord>,
    #[prost(message, optional, tag = "6")]
    completion_time: Option<TimeRecord>,
    /// The local Job's uid as 16 bytes when it is a UUID.
    #[prost(bytes = "vec", tag = "7")]
    local_uuid: Vec<u8>,
    /// The local Job's uid otherwise.
    #[prost(string, tag = "8")]
    local_uid: String,
    #[prost(string, tag = "9")]
    reason: String,
    #[prost(string, tag = "10")]
    message: String,
    #[prost(uint64, tag = "11")]
    revision: u64,
}

#[derive(Clone, PartialEq, Message)]
struct TimeRecord {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The small part of a record, as JSON.
#[derive(Serialize, Deserialize)]
struct Header<J> {
    format: u32,
    job: J,
    unplaced: Unplaced,
    grow_members: bool,
    deletion: Option<Deletion>,
}

/// Why a record does not decode.
pub type DecodeError = String;

/// Encodes `record`, shards included.
pub fn encode(record: &FederatedJob) -> Vec<u8> {
    let FederatedJob {
        format,
        job,
        members,
        planned,
        unplaced,
        shards,
        grow_members,
        deletion,
    } = record;
    let header = Header {
        format: *format,
        job,
        unplaced: *unplaced,
        grow_members: *grow_members,
        deletion: deletion.clone(),
    };
    let mut strings = Strings::default();
    let job_name = record.name();
    let message = JobRecord {
        header: serde_json::to_vec(&header).expect("records serialise"),
        members: members.iter().map(|m| strings.index(m)).collect(),
        planned: planned
            .iter()
            .flat_map(|(c, p)| [i64::from(strings.index(c)), i64::from(*p)])
            .collect(),
        shards: shards
            .iter()
            .map(|s| encode_shard(s, job_name, &mut strings))
            .collect(),
        strings: strings.list,
    };
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(MAGIC);
    message.encode(&mut out).expect("a Vec grows");
    out
}

fn encode_shard(shard: &Shard, job_name: &str, strings: &mut Strings) -> ShardRecord {
    let Shard {
        cluster,
        name,
        completions,
        parallelism,
        epoch,
        state,
        stop_reason,
        revision,
        fingerprint,
        seen,
        observed,
        moved,
        spilled_at,
    } = shard;
    let ordinal = ordinal_of(name, job_name);
    ShardRecord {
        cluster: strings.index(cluster),
        ordinal: ordinal.unwrap_or(0),
        name: if ordinal.is_some() {
            String::new()
        } else {
            name.clone()
        },
        completions: *completions,
        parallelism: *parallelism,
        epoch: *epoch,
        state: strings.variant(state),
        stop_reason: stop_reason.as_ref().map(|r| strings.variant(r)),
        revision: *revision,
        fingerprint: *fingerprint,
        seen: *seen,
        observed: observed.as_ref().map(|o| encode_observed(o, strings)),
        moved: *moved,
        spilled_at: spilled_at.get().map(time_record),
    }
}

fn encode_observed(observed: &Observed, strings: &mut Strings) -> ObservedRecord {
    let Observed {
        phase,
        active,
        succeeded,
        failed,
        start_time,
        completion_time,
        local_uid,
        detail,
        revision,
    } = observed;
    ObservedRecord {
        phase: strings.variant(phase),
        active: *active,
        succeeded: *succeeded,
        failed: *failed,
        start_time: start_time.get().map(time_record),
        completion_time: completion_time.get().map(time_record),
        local_uuid: match local_uid {
            Uid::Uuid(bytes) => bytes.to_vec(),
            _ => Vec::new(),
        },
        local_uid: match local_uid {
            Uid::Text(text) => text.to_string(),
            _ => String::new(),
        },
        reason: detail.reason().to_owned(),
        message: detail.message().to_owned(),
        revision: *revision,
    }
}

/// Decodes a record written by [`encode`] (starting with [`MAGIC`]).
pub fn decode(bytes: &[u8]) -> Result<FederatedJob, DecodeError> {
    let body = bytes
        .strip_prefix(&[MAGIC])
        .ok_or("not a compact Job record")?;
    let message = JobRecord::decode(body).map_err(|e| e.to_string())?;
    let header: Header<k8s_openapi::api::batch::v1::Job> =
        serde_json::from_slice(&message.header).map_err(|e| format!("header: {e}"))?;
    let strings = Decoded::new(&message.strings);
    let members = message
        .members
        .iter()
        .map(|&i| strings.cluster(i))
        .collect::<Result<SortedSet<_>, _>>()?;
    let mut planned = BTreeMap::new();
    for pair in message.planned.chunks(2) {
        let [cluster, parallelism] = pair else {
            return Err("planned: an odd number of values".into());
        };
        let cluster = u32::try_from(*cluster).map_err(|_| "planned: bad cluster index")?;
        let parallelism = i32::try_from(*parallelism).map_err(|_| "planned: bad parallelism")?;
        planned.insert(strings.cluster(cluster)?, parallelism);
    }
    let job_name = header.job.metadata.name.clone().unwrap_or_default();
    let shards = message
        .shards
        .into_iter()
        .map(|s| decode_shard(s, &job_name, &strings))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FederatedJob {
        format: header.format,
        job: header.job,
        members,
        planned,
        unplaced: header.unplaced,
        shards,
        grow_members: header.grow_members,
        deletion: header.deletion,
    })
}

fn decode_shard(
    s: ShardRecord,
    job_name: &str,
    strings: &Decoded<'_>,
) -> Result<Shard, DecodeError> {
    Ok(Shard {
        cluster: strings.cluster(s.cluster)?,
        name: if s.name.is_empty() {
            shard_name(job_name, s.ordinal)
        } else {
            s.name
        },
        completions: s.completions,
        parallelism: s.parallelism,
        epoch: s.epoch,
        state: strings.variant::<ShardState>(s.state)?,
        stop_reason: s
            .stop_reason
            .map(|r| strings.variant::<StopReason>(r))
            .transpose()?,
        revision: s.revision,
        fingerprint: s.fingerprint,
        seen: s.seen,
        observed: s
            .observed
            .map(|o| decode_observed(o, strings))
            .transpose()?,
        moved: s.moved,
        spilled_at: s.spilled_at.map(timestamp).transpose()?.into(),
    })
}

fn decode_observed(o: ObservedRecord, strings: &Decoded<'_>) -> Result<Observed, DecodeError> {
    let local_uid = if o.local_uuid.is_empty() {
        Uid::new(&o.local_uid)
    } else {
        Uid::Uuid(
            o.local_uuid
                .as_slice()
                .try_into()
                .map_err(|_| format!("local uid: {} bytes, not 16", o.local_uuid.len()))?,
        )
    };
    Ok(Observed {
        phase: strings.variant::<ObservedPhase>(o.phase)?,
        active: o.active,
        succeeded: o.succeeded,
        failed: o.failed,
        start_time: o.start_time.map(timestamp).transpose()?.into(),
        completion_time: o.completion_time.map(timestamp).transpose()?.into(),
        local_uid,
        detail: Detail::new(&o.reason, &o.message),
        revision: o.revision,
    })
}

/// The ordinal `k` such that `name == shard_name(job, k)`, if any (the first shard is 1).
fn ordinal_of(name: &str, job: &str) -> Option<u32> {
    if name == job {
        return Some(1);
    }
    let k: u32 = name.strip_prefix(job)?.strip_prefix('-')?.parse().ok()?;
    (k >= 2 && shard_name(job, k) == name).then_some(k)
}

fn time_record(t: Timestamp) -> TimeRecord {
    TimeRecord {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

fn timestamp(t: TimeRecord) -> Result<Timestamp, DecodeError> {
    Timestamp::new(t.seconds, t.nanos).map_err(|e| format!("timestamp: {e}"))
}

/// The string table being built for one record.
#[derive(Default)]
struct Strings {
    list: Vec<String>,
    index: FastMap<String, u32>,
    /// Enum values already named: (type, hash of the variant) → string index. Naming one
    /// through serde costs ~100 ns, and a record names a few per shard.
    variants: FastMap<(TypeId, u64), u32>,
}

impl Strings {
    fn index(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = u32::try_from(self.list.len()).expect("fewer than 2^32 strings");
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }

    /// The index of an enum value's serde name.
    fn variant<T: Serialize + 'static>(&mut self, value: &T) -> u32 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::mem::discriminant(value).hash(&mut hasher);
        let key = (TypeId::of::<T>(), hasher.finish());
        if let Some(&i) = self.variants.get(&key) {
            return i;
        }
        let name = match serde_json::to_value(value) {
            Ok(serde_json::Value::String(name)) => name,
            other => panic!("a unit enum value serialises to its name, not {other:?}"),
        };
        let i = self.index(&name);
        self.variants.insert(key, i);
        i
    }
}

/// The string table of a record being read.
struct Decoded<'a> {
    strings: &'a [String],
    /// Enum values already read: (type, string index) → the value.
    variants: RefCell<HashMap<(TypeId, u32), Box<dyn Any>>>,
    /// Cluster names already interned, by string index: a record names each cluster two or
    /// three times, and interning takes a process-wide lock.
    clusters: RefCell<HashMap<u32, ClusterName>>,
}

impl<'a> Decoded<'a> {
    fn new(strings: &'a [String]) -> Self {
        Self {
            strings,
            variants: RefCell::default(),
            clusters: RefCell::default(),
        }
    }

    fn cluster(&self, i: u32) -> Result<ClusterName, DecodeError> {
        if let Some(name) = self.clusters.borrow().get(&i) {
            return Ok(*name);
        }
        let name = ClusterName::new(self.get(i)?);
        self.clusters.borrow_mut().insert(i, name);
        Ok(name)
    }

    fn get(&self, i: u32) -> Result<&'a str, DecodeError> {
        self.strings
            .get(i as usize)
            .map(String::as_str)
            .ok_or_else(|| format!("string index {i} out of range"))
    }

    fn variant<T: for<'de> Deserialize<'de> + Copy + 'static>(
        &self,
        i: u32,
    ) -> Result<T, DecodeError> {
        let key = (TypeId::of::<T>(), i);
        if let Some(v) = self.variants.borrow().get(&key) {
            return Ok(*v.downcast_ref::<T>().expect("stored under its own type"));
        }
        let name = self.get(i)?;
        let value: T = serde_json::from_value(serde_json::Value::String(name.to_owned()))
            .map_err(|e| format!("{name:?}: {e}"))?;
        self.variants.borrow_mut().insert(key, Box::new(value));
        Ok(value)
    }
}
