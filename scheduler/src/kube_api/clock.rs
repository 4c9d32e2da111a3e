//! Wall-clock timestamps as Kubernetes writes them (RFC 3339, whole seconds, UTC) and the
//! human durations its tables print.

use std::time::Duration;

use jiff::Timestamp;

/// Now, as `2026-11-28T13:46:53Z`.
pub fn now() -> String {
    format(Timestamp::now())
}

/// A timestamp as `metav1.Time` marshals it.
pub fn format(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses an RFC 3339 timestamp.
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// How long ago `s` was (zero for the future or garbage).
pub fn since(s: &str) -> Duration {
    parse(s)
        .map(|t| between(t, Timestamp::now()))
        .unwrap_or_default()
}

/// The time from `a` to `b` (zero when `b` is earlier).
pub fn between(a: Timestamp, b: Timestamp) -> Duration {
    let nanos = b.as_nanosecond() - a.as_nanosecond();
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

/// `duration.HumanDuration` from apimachinery: `45s`, `3m20s`, `5h`, `2d3h`.
pub fn human(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(119)), "119s");
        assert_eq!(human(Duration::from_secs(200)), "3m20s");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(5 * 3600)), "5h");
        assert_eq!(human(Duration::from_secs(51 * 3600)), "2d3h");
    }

    #[test]
    fn timestamps_round_trip() {
        let s = now();
        assert!(s.ends_with('Z') && s.len() == 20, "{s}");
        assert_eq!(format(parse(&s).unwrap()), s);
    }
}
