//! Process sampling from `/proc`: CPU time (utime/stime of `/proc/PID/stat`) and resident memory
//! (`VmRSS` of `/proc/PID/status`), summed over the processes of a multi-process server.
//! Linux only; reads files, keeps no state.

use anyhow::{bail, Context};

/// Clock ticks per second of `/proc/PID/stat` times. `USER_HZ` is 100 on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// One sample of a set of processes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User CPU seconds since each process started, summed.
    pub user_s: f64,
    /// System CPU seconds since each process started, summed.
    pub system_s: f64,
    /// Resident set size in bytes, summed.
    pub rss_bytes: u64,
}

impl ProcSample {
    /// CPU consumed between `earlier` and `self`.
    pub fn cpu_since(&self, earlier: &ProcSample) -> CpuDelta {
        CpuDelta {
            user_s: (self.user_s - earlier.user_s).max(0.0),
            system_s: (self.system_s - earlier.system_s).max(0.0),
        }
    }
}

/// CPU time spent over an interval.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CpuDelta {
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub system_s: f64,
}

impl CpuDelta {
    /// User plus system seconds.
    pub fn total_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// Samples `pids` (summed); fails if any of them is gone.
pub fn sample(pids: &[u32]) -> anyhow::Result<ProcSample> {
    let mut out = ProcSample::default();
    for &pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("process {pid} is not running"))?;
        let (user, system) = parse_stat_times(&stat)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is not running"))?;
        out.user_s += user;
        out.system_s += system;
        out.rss_bytes += parse_status_rss(&status).unwrap_or(0);
    }
    Ok(out)
}

/// One-minute load average of the machine: how busy it was besides this run.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples this process.
pub fn sample_self() -> ProcSample {
    sample(&[std::process::id()]).unwrap_or_default()
}

/// User and system seconds from the text of `/proc/PID/stat`.
fn parse_stat_times(stat: &str) -> anyhow::Result<(f64, f64)> {
    // The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        bail!("malformed /proc stat line");
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    if fields.len() < 13 {
        bail!("short /proc stat line");
    }
    let ticks = |s: &str| s.parse::<u64>().map(|t| t as f64 / TICKS_PER_SEC);
    Ok((ticks(fields[11])?, ticks(fields[12])?))
}

/// `VmRSS` in bytes from the text of `/proc/PID/status`.
fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_survive_odd_command_names() {
        let line = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 1523 0 0 0 250 75 0 0 20 0 \
                    3 0 100 1000000 300 18446744073709551615";
        assert_eq!(parse_stat_times(line).unwrap(), (2.5, 0.75));
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tnode\nVmPeak:\t 999 kB\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(parse_status_rss(status), Some(2 * 1024 * 1024));
    }

    #[test]
    fn self_sample_is_plausible() {
        let s = sample_self();
        assert!(s.rss_bytes > 0);
        let d = s.cpu_since(&ProcSample::default());
        assert!(d.total_s() >= 0.0);
    }
}
