//! Durations as users of Kubernetes tools type them: Go's `time.ParseDuration` grammar
//! (`300ms`, `1.5h`, `2h45m`, `1m30s`; units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`; a bare `0`),
//! the one grammar of every fedjob flag and of kubesim's `fedjob.io/sim-duration` annotation.
//!
//! [`parse`] follows Go's algorithm step for step (integer arithmetic, the same overflow
//! limit), refusing only what a `time.Duration` flag would refuse, plus negative values, which
//! no fedjob duration can be. [`format()`] writes Go's `Duration.String()`, which [`parse`] reads
//! back exactly.

use std::fmt;
use std::time::Duration;

/// The units, in nanoseconds; `µ` is accepted as both U+00B5 and U+03BC, as Go does.
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// The unit list as error messages show it.
const UNIT_LIST: &str = "ns, us, µs, ms, s, m, h";

/// The longest Go duration, `2562047h47m16.854775807s`, in nanoseconds.
const MAX_NANOS: u64 = i64::MAX as u64;

/// A text that is not a duration; `Display` says why and what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {problem}")]
pub struct ParseDurationError {
    input: String,
    problem: Problem,
}

/// What is wrong with a duration text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    /// Not numbers with units at all.
    Syntax,
    /// A number without a unit (`30`): Go takes no bare numbers but `0`.
    MissingUnit,
    /// A unit Go does not know.
    UnknownUnit(String),
    /// A negative duration (Go takes them; nothing in fedjob can wait a negative time).
    Negative,
    /// Beyond `2562047h47m16.854775807s`.
    TooLarge,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax => write!(
                f,
                "expected numbers with units, e.g. 300ms, 1.5h, 2h45m (units {UNIT_LIST})"
            ),
            Problem::MissingUnit => write!(f, "a number needs a unit, e.g. 30s ({UNIT_LIST})"),
            Problem::UnknownUnit(unit) => write!(f, "unknown unit {unit:?} (units {UNIT_LIST})"),
            Problem::Negative => f.write_str("must not be negative"),
            Problem::TooLarge => f.write_str("must be at most 2562047h47m16.854775807s"),
        }
    }
}

/// Parses a duration in Go's `time.ParseDuration` grammar; negative durations are refused.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let fail = |problem| ParseDurationError {
        input: input.to_owned(),
        problem,
    };
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(fail(Problem::Syntax));
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(fail(Problem::Syntax));
        }
        let (whole, rest) = leading_int(s).ok_or_else(|| fail(Problem::TooLarge))?;
        let has_whole = rest.len() != s.len();
        s = rest;
        let (mut fraction, mut scale, mut has_fraction) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, rest2) = leading_fraction(rest);
            has_fraction = rest2.len() != rest.len();
            (fraction, scale, s) = (f, sc, rest2);
        }
        if !has_whole && !has_fraction {
            return Err(fail(Problem::Syntax));
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(fail(Problem::MissingUnit));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let unit = UNITS
            .iter()
            .find(|(name, _)| *name == unit_text)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| fail(Problem::UnknownUnit(unit_text.to_owned())))?;
        if whole > (1u64 << 63) / unit {
            return Err(fail(Problem::TooLarge));
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // As Go: a float is exact enough for fractions of the largest unit (3.6e12 ns).
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > 1u64 << 63 {
                return Err(fail(Problem::TooLarge));
            }
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= 1u64 << 63)
            .ok_or_else(|| fail(Problem::TooLarge))?;
    }
    if negative && total > 0 {
        return Err(fail(Problem::Negative));
    }
    if total > MAX_NANOS {
        return Err(fail(Problem::TooLarge));
    }
    Ok(Duration::from_nanos(total))
}

/// The leading decimal integer of `s` and the rest; `None` on overflow (as Go's `leadingInt`).
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut value: u64 = 0;
    for b in s[..digits].bytes() {
        if value > (1u64 << 63) / 10 {
            return None;
        }
        value = value * 10 + u64::from(b - b'0');
        if value > 1u64 << 63 {
            return None;
        }
    }
    Some((value, &s[digits..]))
}

/// The leading fraction digits of `s` as `(value, scale, rest)`, meaning `value / scale`;
/// digits beyond what fits are dropped (as Go's `leadingFraction`).
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (mut value, mut scale, mut overflow) = (0u64, 1f64, false);
    for b in s[..digits].bytes() {
        if overflow {
            continue;
        }
        if value > (i64::MAX as u64) / 10 {
            overflow = true;
            continue;
        }
        let next = value * 10 + u64::from(b - b'0');
        if next > i64::MAX as u64 {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &s[digits..])
}

/// Writes `d` as Go's `Duration.String()` does: `0s`, `1.5µs`, `300ms`, `1m30s`, `2h45m0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000_000_000 {
        return match nanos {
            0 => "0s".to_owned(),
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", decimal(n, 3)),
            n => format!("{}ms", decimal(n, 6)),
        };
    }
    let seconds = nanos / 1_000_000_000;
    let fraction = decimal(nanos % 1_000_000_000, 9);
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    // `decimal` of a fraction below 1 starts with "0": keep what follows it.
    let fraction = &fraction[1..];
    match (hours, minutes) {
        (0, 0) => format!("{seconds}{fraction}s"),
        (0, m) => format!("{m}m{seconds}{fraction}s"),
        (h, m) => format!("{h}h{m}m{seconds}{fraction}s"),
    }
}

/// `value / 10^places` in decimal, without trailing zeros (nor a point when whole).
fn decimal(value: u128, places: u32) -> String {
    let scale = 10u128.pow(places);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = places as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn what_kubernetes_users_type() {
        for (text, want) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("300ms", ms(300)),
            ("1.5h", Duration::from_secs(5400)),
            ("2h45m", Duration::from_secs(9900)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", ms(1500)),
            (".5s", ms(500)),
            ("5.s", Duration::from_secs(5)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("100μs", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("1.000000001s", Duration::new(1, 1)),
            (
                "2562047h47m16.854775807s",
                Duration::from_nanos(i64::MAX as u64),
            ),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (text, message) in [
            (
                "",
                "invalid duration \"\": expected numbers with units, e.g. 300ms, 1.5h, 2h45m (units ns, us, µs, ms, s, m, h)",
            ),
            (
                "soon",
                "invalid duration \"soon\": expected numbers with units, e.g. 300ms, 1.5h, 2h45m (units ns, us, µs, ms, s, m, h)",
            ),
            (
                "30",
                "invalid duration \"30\": a number needs a unit, e.g. 30s (ns, us, µs, ms, s, m, h)",
            ),
            (
                "1.5",
                "invalid duration \"1.5\": a number needs a unit, e.g. 30s (ns, us, µs, ms, s, m, h)",
            ),
            (
                "5y",
                "invalid duration \"5y\": unknown unit \"y\" (units ns, us, µs, ms, s, m, h)",
            ),
            (
                "1m30",
                "invalid duration \"1m30\": a number needs a unit, e.g. 30s (ns, us, µs, ms, s, m, h)",
            ),
            ("-1s", "invalid duration \"-1s\": must not be negative"),
            (
                "2562047h47m16.854775808s",
                "invalid duration \"2562047h47m16.854775808s\": must be at most 2562047h47m16.854775807s",
            ),
        ] {
            assert_eq!(
                parse(text).map_err(|e| e.to_string()),
                Err(message.to_owned())
            );
        }
        for bad in [
            " 5s",
            "5s ",
            "1..2s",
            ".s",
            "s",
            "-",
            "1 s",
            "1S",
            "9223372036854775808ns",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_as_go_does() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_nanos(1500), "1.5µs"),
            (ms(300), "300ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (ms(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(9900), "2h45m0s"),
            (Duration::new(1, 1), "1.000000001s"),
            (
                Duration::from_nanos(i64::MAX as u64),
                "2562047h47m16.854775807s",
            ),
        ] {
            assert_eq!(format(d), text);
        }
    }

    proptest! {
        #[test]
        fn a_formatted_duration_parses_back(nanos in 0..=i64::MAX as u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn every_component_adds_up(
            parts in proptest::collection::vec((0u64..100_000, 0usize..UNITS.len()), 1..6)
        ) {
            let text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            let want: u64 = parts.iter().map(|(n, u)| n * UNITS[*u].1).sum();
            prop_assert_eq!(parse(&text), Ok(Duration::from_nanos(want)));
        }
    }
}
