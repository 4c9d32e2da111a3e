//! Small values that keep a shard compact: a million shards are held at 100 clusters ×
//! 10,000 Jobs, and each of these replaces a field that took two to three times its size
//! (an owned string with its allocation, or an `Option` of a 16-byte timestamp).

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant or none, in 8 bytes: nanoseconds since the Unix epoch, `i64::MIN` for none.
///
/// Covers 1677-09-21 to 2262-04-11 exactly, to the nanosecond; an instant outside that
/// (which no cluster reports) is held as none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PackedTime(i64);

impl PackedTime {
    /// No instant.
    pub const NONE: Self = Self(i64::MIN);

    /// `time`, or none when it is none or out of range.
    pub fn new(time: Option<Timestamp>) -> Self {
        time.and_then(|t| i64::try_from(t.as_nanosecond()).ok())
            .filter(|&n| n != i64::MIN)
            .map_or(Self::NONE, Self)
    }

    /// The instant, if any.
    pub fn get(self) -> Option<Timestamp> {
        (self != Self::NONE)
            .then(|| Timestamp::from_nanosecond(i128::from(self.0)).expect("in range"))
    }

    /// Whether there is an instant.
    pub fn is_some(self) -> bool {
        self != Self::NONE
    }

    /// Whether there is none.
    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// This instant, or `other` when there is none.
    pub fn or(self, other: Self) -> Self {
        if self.is_some() { self } else { other }
    }
}

impl Default for PackedTime {
    fn default() -> Self {
        Self::NONE
    }
}

impl From<Option<Timestamp>> for PackedTime {
    fn from(time: Option<Timestamp>) -> Self {
        Self::new(time)
    }
}

impl From<Timestamp> for PackedTime {
    fn from(time: Timestamp) -> Self {
        Self::new(Some(time))
    }
}

impl fmt::Debug for PackedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl Serialize for PackedTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PackedTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<Timestamp>::deserialize(deserializer).map(Self::new)
    }
}

/// A Kubernetes object uid: 16 bytes for the UUIDs API servers make, the text otherwise.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Uid {
    /// None reported.
    #[default]
    None,
    /// A UUID whose canonical text (lower-case, hyphenated) is the uid.
    Uuid([u8; 16]),
    /// Any other text.
    Text(Box<str>),
}

impl Uid {
    /// The uid `text` (none when empty).
    pub fn new(text: &str) -> Self {
        if text.is_empty() {
            return Self::None;
        }
        // Only the canonical form is packed, so the text reads back exactly as reported.
        match uuid::Uuid::try_parse(text) {
            Ok(u) if is_canonical(&u, text) => Self::Uuid(*u.as_bytes()),
            _ => Self::Text(text.into()),
        }
    }

    /// Whether no uid was reported.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Whether this is the uid `text`.
    pub fn is(&self, text: &str) -> bool {
        match self {
            Self::None => text.is_empty(),
            // Written out and compared: writing 16 bytes out costs less than parsing 36
            // characters.
            Self::Uuid(bytes) => is_canonical(&uuid::Uuid::from_bytes(*bytes), text),
            Self::Text(t) => **t == *text,
        }
    }
}

/// Whether `text` is `uuid` written lower-case and hyphenated.
fn is_canonical(uuid: &uuid::Uuid, text: &str) -> bool {
    let mut buffer = uuid::Uuid::encode_buffer();
    let canonical: &str = uuid.hyphenated().encode_lower(&mut buffer);
    canonical == text
}

impl From<&str> for Uid {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Uuid(bytes) => fmt::Display::fmt(&uuid::Uuid::from_bytes(*bytes).hyphenated(), f),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// The reason and message an agent gave for a shard's phase; most reports have neither, so
/// they take one pointer until one is set.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Detail(Option<Box<(Box<str>, Box<str>)>>);

impl Detail {
    /// `reason` and `message` (nothing held when both are empty).
    pub fn new(reason: &str, message: &str) -> Self {
        if reason.is_empty() && message.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::new((reason.into(), message.into()))))
        }
    }

    /// The reason, empty when none was given.
    pub fn reason(&self) -> &str {
        self.0.as_ref().map_or("", |d| &d.0)
    }

    /// The message, empty when none was given.
    pub fn message(&self) -> &str {
        self.0.as_ref().map_or("", |d| &d.1)
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detail")
            .field("reason", &self.reason())
            .field("message", &self.message())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const API_SERVER_UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

    #[test]
    fn an_api_server_uid_is_held_in_16_bytes_and_reads_back_the_same() {
        let uid = Uid::new(API_SERVER_UID);
        assert!(matches!(uid, Uid::Uuid(_)));
        assert_eq!(uid.to_string(), API_SERVER_UID);
        assert!(uid.is(API_SERVER_UID));
        assert!(
            !uid.is("1B4E28BA-2FA1-11D2-883F-0016D3CCA427"),
            "another text"
        );
        // Upper case is a UUID too, but not the text that was reported: kept as text.
        let upper = Uid::new("1B4E28BA-2FA1-11D2-883F-0016D3CCA427");
        assert!(matches!(upper, Uid::Text(_)));
        assert_eq!(upper.to_string(), "1B4E28BA-2FA1-11D2-883F-0016D3CCA427");
        assert!(!upper.is(API_SERVER_UID));
        assert!(Uid::new("").is_empty() && Uid::new("").is(""));
        assert!(!uid.is_empty() && !uid.is(""));
    }

    #[test]
    fn detail_holds_nothing_until_set() {
        assert_eq!(Detail::new("", ""), Detail::default());
        let d = Detail::new("BackoffLimitExceeded", "");
        assert_eq!((d.reason(), d.message()), ("BackoffLimitExceeded", ""));
        let d = Detail::new("", "quota");
        assert_eq!((d.reason(), d.message()), ("", "quota"));
    }

    #[test]
    fn a_packed_time_is_the_instant_to_the_nanosecond() {
        let t = Timestamp::new(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(PackedTime::from(t).get(), Some(t));
        assert_eq!(PackedTime::new(None).get(), None);
        assert!(PackedTime::default().is_none());
        assert_eq!(PackedTime::NONE.or(t.into()).get(), Some(t));
        assert_eq!(PackedTime::from(t).or(PackedTime::NONE).get(), Some(t));
        // Beyond what 64 bits of nanoseconds hold: none, rather than another instant.
        let far = Timestamp::new(10_000_000_000, 0).unwrap();
        assert_eq!(PackedTime::from(far).get(), None);
        assert_eq!(
            serde_json::to_string(&PackedTime::from(t)).unwrap(),
            "\"2023-11-14T22:13:20.123456789Z\""
        );
        assert_eq!(
            serde_json::from_str::<PackedTime>("null").unwrap(),
            PackedTime::NONE
        );
    }

    proptest! {
        /// Any instant 64 bits of nanoseconds hold reads back exactly.
        #[test]
        fn a_packed_time_reads_back_any_instant_in_range(
            nanos in (i64::MIN + 1)..=i64::MAX,
        ) {
            let t = Timestamp::from_nanosecond(i128::from(nanos)).unwrap();
            prop_assert_eq!(PackedTime::from(t).get(), Some(t));
        }

        /// Any uid reads back as the text it was made from, and is that text and no other.
        #[test]
        fn a_uid_is_exactly_its_text(
            text in prop_oneof![
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "[0-9a-fA-F-]{0,40}",
                "[ -~]{0,20}",
            ],
            other in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ) {
            let uid = Uid::new(&text);
            prop_assert_eq!(uid.to_string(), text.clone());
            prop_assert!(uid.is(&text));
            prop_assert_eq!(uid.is(&other), other == text);
            prop_assert_eq!(uid.is_empty(), text.is_empty());
        }
    }
}
