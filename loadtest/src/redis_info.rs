//! Redis's side of a run: `INFO` text (cpu, stats, commandstats) as saved before and after the
//! measured phase by the fleet and storm scripts, one file per instance, reduced to the CPU
//! seconds and commands the run cost, summed over the instances; for a storm, also the commands
//! beyond the steady rate after a node was killed. Reading files only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// What Redis did during a run, summed over its instances (the masters of a cluster).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisFigures {
    /// Instances sampled.
    pub instances: u64,
    /// CPU seconds (user + system, main and background threads).
    pub cpu_s: f64,
    /// Of which user time.
    pub user_cpu_s: f64,
    /// Of which system time.
    pub system_cpu_s: f64,
    /// Commands processed (`total_commands_processed`).
    pub commands: u64,
    /// Calls per command (`cmdstat_<name>` of `INFO commandstats`), without the sampler's own `INFO`.
    pub per_command: BTreeMap<String, u64>,
    /// Storm runs: commands after the kill beyond what the steady rate before it would have
    /// processed in the same time (the cost of the reconnects and their recoveries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm_extra_commands: Option<f64>,
    /// Commands per reconnect, for runs with reconnects: the storm's extra commands when known,
    /// else all commands of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands_per_reconnect: Option<f64>,
}

/// The counters of one `INFO` reply.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    /// When it was taken (Unix seconds), from a `sampled_at_s:` line the scripts put first.
    sampled_at_s: Option<f64>,
    user_cpu_s: f64,
    system_cpu_s: f64,
    commands: u64,
    per_command: BTreeMap<String, u64>,
}

impl Sample {
    /// Parses `INFO` text (`key:value` lines, `#` section headers, CRLF or LF).
    fn parse(text: &str) -> anyhow::Result<Sample> {
        let mut s = Sample::default();
        let mut seen = 0;
        for line in text.lines().map(str::trim_end) {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let num = |v: &str| -> anyhow::Result<f64> {
                v.parse().with_context(|| format!("bad {key} value {v:?}"))
            };
            match key {
                "used_cpu_user" => (s.user_cpu_s, seen) = (num(value)?, seen | 1),
                "used_cpu_sys" => (s.system_cpu_s, seen) = (num(value)?, seen | 2),
                "total_commands_processed" => (s.commands, seen) = (num(value)? as u64, seen | 4),
                "sampled_at_s" => s.sampled_at_s = Some(num(value)?),
                _ => {
                    if let Some(name) = key.strip_prefix("cmdstat_") {
                        let calls = value
                            .split(',')
                            .find_map(|kv| kv.strip_prefix("calls="))
                            .with_context(|| format!("no calls in {line:?}"))?;
                        s.per_command.insert(name.to_owned(), num(calls)? as u64);
                    }
                }
            }
        }
        if seen != 7 {
            bail!("not the reply of INFO cpu, stats and commandstats (no used_cpu_user, used_cpu_sys or total_commands_processed)");
        }
        Ok(s)
    }
}

fn read(p: &PathBuf) -> anyhow::Result<Sample> {
    let text = std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?;
    Sample::parse(&text).with_context(|| format!("parse {}", p.display()))
}

/// The figures of a run from the `INFO` files saved `before` and `after` it, pairwise per
/// instance (same order); with `at_kill` (saved when a node was killed, same order), also the
/// storm's extra commands.
pub fn between(
    before: &[PathBuf],
    at_kill: &[PathBuf],
    after: &[PathBuf],
) -> anyhow::Result<RedisFigures> {
    let n = before.len();
    if after.len() != n || n == 0 || !(at_kill.is_empty() || at_kill.len() == n) {
        bail!(
            "{n} INFO files before the run, {} at the kill and {} after: one of each per Redis instance",
            at_kill.len(),
            after.len()
        );
    }
    let mut out = RedisFigures::default();
    let mut extra = Some(0.0);
    for (k, (b, a)) in before.iter().zip(after).enumerate() {
        let (b, a) = (read(b)?, read(a)?);
        add_delta(&mut out, &b, &a);
        extra = match at_kill.get(k) {
            Some(m) => extra
                .zip(extra_commands(&b, &read(m)?, &a))
                .map(|(x, y)| x + y),
            None => None,
        };
    }
    out.storm_extra_commands = extra;
    Ok(out)
}

/// Commands from `kill` to `after` beyond the rate from `before` to `kill` over the same time;
/// `None` without the sampling times.
fn extra_commands(before: &Sample, kill: &Sample, after: &Sample) -> Option<f64> {
    let (t0, t1, t2) = (
        before.sampled_at_s?,
        kill.sampled_at_s?,
        after.sampled_at_s?,
    );
    if t1 <= t0 || t2 < t1 {
        return None;
    }
    let rate = kill.commands.saturating_sub(before.commands) as f64 / (t1 - t0);
    let after_kill = after.commands.saturating_sub(kill.commands) as f64;
    Some((after_kill - rate * (t2 - t1)).max(0.0))
}

fn add_delta(out: &mut RedisFigures, b: &Sample, a: &Sample) {
    out.instances += 1;
    out.user_cpu_s += a.user_cpu_s - b.user_cpu_s;
    out.system_cpu_s += a.system_cpu_s - b.system_cpu_s;
    out.cpu_s = out.user_cpu_s + out.system_cpu_s;
    // The `INFO` that took the first sample is counted in the second.
    let info = a.per_command.get("info").copied().unwrap_or(0)
        - b.per_command.get("info").copied().unwrap_or(0);
    out.commands += (a.commands - b.commands.min(a.commands)).saturating_sub(info.min(1));
    for (name, &calls) in &a.per_command {
        let delta = calls.saturating_sub(b.per_command.get(name).copied().unwrap_or(0));
        let delta = if name == "info" {
            delta.saturating_sub(1)
        } else {
            delta
        };
        if delta > 0 {
            *out.per_command.entry(name.clone()).or_default() += delta;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.25\r\n# Stats\r\n\
        total_commands_processed:100\r\n# Commandstats\r\n\
        cmdstat_info:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_fcall:calls=40,usec=400,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n";
    const AFTER: &str = "# CPU\r\nused_cpu_sys:2.0\r\nused_cpu_user:3.0\r\n# Stats\r\n\
        total_commands_processed:161\r\n# Commandstats\r\n\
        cmdstat_info:calls=4,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_fcall:calls=90,usec=400,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_xrange:calls=10,usec=400,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn deltas_leave_out_the_sampler() {
        let mut out = RedisFigures::default();
        let (b, a) = (
            Sample::parse(BEFORE).unwrap(),
            Sample::parse(AFTER).unwrap(),
        );
        add_delta(&mut out, &b, &a);
        add_delta(&mut out, &b, &a);
        assert_eq!(out.instances, 2);
        assert!((out.cpu_s - 2.5).abs() < 1e-9, "{}", out.cpu_s);
        assert_eq!(out.commands, 120);
        assert_eq!(
            out.per_command,
            BTreeMap::from([("fcall".to_owned(), 100), ("xrange".to_owned(), 20)])
        );
    }

    #[test]
    fn storm_commands_are_those_beyond_the_steady_rate() {
        let at = |t: f64, commands: u64| Sample {
            sampled_at_s: Some(t),
            commands,
            ..Sample::default()
        };
        // 100/s for 10 s, then 3,000 in the next 10 s: 2,000 beyond the steady rate.
        let extra = extra_commands(&at(0.0, 0), &at(10.0, 1_000), &at(20.0, 4_000));
        assert_eq!(extra, Some(2_000.0));
        assert_eq!(
            extra_commands(&Sample::default(), &at(1.0, 1), &at(2.0, 2)),
            None
        );
        let parsed = Sample::parse(&format!("sampled_at_s:12.5\n{BEFORE}")).unwrap();
        assert_eq!(parsed.sampled_at_s, Some(12.5));
    }

    #[test]
    fn other_text_is_refused() {
        let e = Sample::parse("hello").unwrap_err();
        assert!(e.to_string().contains("INFO"), "{e}");
        assert!(
            Sample::parse("used_cpu_user:x\nused_cpu_sys:1\ntotal_commands_processed:1").is_err()
        );
    }
}
