//! What the kernel says about a process: resident memory (`/proc/PID/status`) and CPU time
//! (`/proc/PID/stat`), and how busy the machine is (`/proc/loadavg`).

use std::sync::OnceLock;

use anyhow::{Context as _, bail};
use serde::Serialize;

/// Memory and CPU of one process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// Resident set size now, MiB (`VmRSS`).
    pub rss_mb: f64,
    /// Peak resident set size since the process started, MiB (`VmHWM`).
    pub peak_rss_mb: f64,
    /// User plus system CPU time since the process started, seconds.
    pub cpu_s: f64,
}

/// Reads `/proc/PID/status` and `/proc/PID/stat`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(ProcSample {
        rss_mb: status_kb(&status, "VmRSS:")? / 1024.0,
        peak_rss_mb: status_kb(&status, "VmHWM:")? / 1024.0,
        cpu_s: cpu_ticks(&stat)? as f64 / clock_ticks_per_second() as f64,
    })
}

/// A `kB` field of `/proc/PID/status`.
fn status_kb(status: &str, field: &str) -> anyhow::Result<f64> {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/PID/status"))?;
    let kb = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<f64>()
        .with_context(|| format!("parsing {line:?}"))?;
    Ok(kb)
}

/// `utime + stime` (fields 14 and 15) of `/proc/PID/stat`, in clock ticks. The command name
/// (field 2) may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("malformed /proc/PID/stat: {stat:?}");
    };
    // rest starts with field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .with_context(|| format!("no field {n} in /proc/PID/stat"))?
            .parse::<u64>()
            .with_context(|| format!("field {n} of /proc/PID/stat"))
    };
    Ok(field(14)? + field(15)?)
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` (the workspace forbids `unsafe`, so no libc);
/// 100 where getconf is missing, the value on every Linux architecture in practice.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|_| values.next().unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_mb > 0.0 && s.peak_rss_mb >= s.rss_mb, "{s:?}");
        assert!(s.cpu_s >= 0.0);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(cpu_ticks(stat).unwrap(), 300);
        assert!(cpu_ticks("garbage").is_err());
    }

    #[test]
    fn status_fields_in_kb() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kb(status, "VmHWM:").unwrap(), 2048.0);
        assert!(status_kb(status, "VmSwap:").is_err());
    }
}
