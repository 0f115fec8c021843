//! `report`: rebuilds the markdown results page from a directory of JSON summaries. One table
//! per scenario, one column per target, each cell the median over the runs; plus the machine,
//! the commands that produced the numbers and links to the plots of each cell's first run.
//! Multi-node runs are the merged summaries of `merge` (scenario `multinode`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::ReportArgs;
use crate::summary::{sibling, Summary};

/// Report columns: Herald over Server-Sent Events (`--transport sse`) is a target of its own.
const TARGETS: [&str; 5] = ["herald", "herald-sse", "socketio", "ws", "floor"];
const SCENARIOS: [&str; 6] = [
    "broadcast",
    "personal",
    "multinode",
    "idle",
    "churn",
    "floor",
];

/// One row of a table: label, extractor, decimals.
struct Row(&'static str, fn(&Summary) -> Option<f64>, usize);

fn rows(scenario: &str) -> Vec<Row> {
    let lat = [
        Row("latency p50 (ms)", |s| s.latency_ms.p50, 2),
        Row("latency p90 (ms)", |s| s.latency_ms.p90, 2),
        Row("latency p99 (ms)", |s| s.latency_ms.p99, 2),
        Row("latency p99.9 (ms)", |s| s.latency_ms.p999, 2),
        Row("latency max (ms)", |s| s.latency_ms.max, 2),
    ];
    let mut r = vec![Row("connections", |s| Some(s.connections as f64), 0)];
    match scenario {
        "broadcast" | "personal" | "multinode" | "floor" => {
            r.push(Row(
                "publications/s accepted",
                |s| Some(s.publish.achieved_rate),
                1,
            ));
            r.push(Row("deliveries/s", |s| Some(s.deliveries_per_sec), 0));
            r.extend(lat);
            r.push(Row(
                "expected deliveries",
                |s| Some(s.expected_deliveries as f64),
                0,
            ));
            r.push(Row("lost", |s| Some(s.lost as f64), 0));
            r.push(Row("duplicates", |s| Some(s.duplicates as f64), 0));
            r.push(Row("server CPU (s)", |s| s.server.cpu_seconds, 2));
            r.push(Row(
                "server CPU µs / delivery",
                |s| s.cpu_us_per_delivery,
                3,
            ));
            r.push(Row("  of which user", |s| s.user_cpu_us_per_delivery, 3));
            r.push(Row(
                "  of which system",
                |s| s.system_cpu_us_per_delivery,
                3,
            ));
            r.push(Row("server RSS (MiB)", |s| s.server.rss_bytes.map(mib), 1));
            r.push(Row(
                "deliveries per frame (WebSocket) or event (SSE)",
                |s| s.receive.deliveries_per_frame,
                2,
            ));
        }
        "idle" => {
            r.push(Row("server RSS (MiB)", |s| s.server.rss_bytes.map(mib), 1));
            r.push(Row(
                "RSS / connection (bytes)",
                |s| s.server.rss_bytes_per_connection,
                0,
            ));
        }
        _ => {}
    }
    if scenario == "floor" {
        r.push(Row(
            "bare connect/accept storm: connects/s",
            |s| Some(s.connects_per_sec),
            0,
        ));
        r.push(Row(
            "  CPU µs / accept+close, accepting end (floor process)",
            accept_cpu_us,
            1,
        ));
        r.push(Row(
            "  CPU µs / connect+close, connecting end (load generator)",
            |s| s.loadgen_cpu_us_per_connect,
            1,
        ));
        r.push(Row(
            "CPU µs / connect+accept+close, both ends in one process",
            |s| s.cpu_us_per_connect_accept,
            1,
        ));
        r.push(Row(
            "  connections/s of that loop",
            |s| s.connect_accept.as_ref().map(|c| c.per_sec),
            0,
        ));
    }
    if scenario == "idle" || scenario == "churn" {
        r.push(Row("connects/s", |s| Some(s.connects_per_sec), 0));
        r.push(Row("server CPU µs / connect", |s| s.cpu_us_per_connect, 1));
    }
    if scenario == "floor" || scenario == "idle" || scenario == "churn" {
        r.push(Row(
            "connect latency p50 (ms)",
            |s| s.connect_latency_ms.p50,
            2,
        ));
        r.push(Row(
            "connect latency p99 (ms)",
            |s| s.connect_latency_ms.p99,
            2,
        ));
        r.push(Row(
            "connect failures",
            |s| Some(s.connect_failures as f64),
            0,
        ));
    }
    r.push(Row(
        "load generator CPU (s)",
        |s| Some(s.loadgen.cpu_seconds),
        1,
    ));
    r.push(Row("host load average at start", |s| s.host_load[0], 2));
    r
}

/// The floor's CPU per accepted bare connection; summaries written before the both-ends loop
/// existed kept it in `cpu_us_per_connect`.
fn accept_cpu_us(s: &Summary) -> Option<f64> {
    s.cpu_us_per_accept.or(s.cpu_us_per_connect)
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

/// Median of the present values.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Writes the report.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let mut runs: BTreeMap<(String, String), Vec<(PathBuf, Summary)>> = BTreeMap::new();
    let dir = std::fs::read_dir(&args.results)
        .with_context(|| format!("read {}", args.results.display()))?;
    let mut files: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for path in files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let Ok(s) = Summary::read(&path) else {
            continue;
        };
        if s.scenario.is_empty() {
            continue;
        }
        runs.entry((s.scenario.clone(), column(&s)))
            .or_default()
            .push((path, s));
    }
    let md = render(&runs, args)?;
    std::fs::write(&args.out, md)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

type Runs = BTreeMap<(String, String), Vec<(PathBuf, Summary)>>;

/// Column of a summary: its target, with the transport when it is not the default WebSocket.
fn column(s: &Summary) -> String {
    match s.transport.as_str() {
        "sse" => format!("{}-sse", s.target),
        _ => s.target.clone(),
    }
}

fn render(runs: &Runs, args: &ReportArgs) -> anyhow::Result<String> {
    let base = args.out.parent().unwrap_or(Path::new(""));
    let rel = |p: &Path| -> String {
        let p = p.strip_prefix(base).unwrap_or(p);
        p.to_string_lossy().into_owned()
    };
    let mut md = String::new();
    writeln!(md, "# Load test results\n")?;
    writeln!(
        md,
        "Generated by `herald-loadtest report` from the JSON summaries in `{}`. Each cell is the \
         median over the runs of that scenario and target (run count in the header). Regenerate \
         everything with `{}`.\n",
        args.results.display(),
        args.invocation
    )?;
    writeln!(md, "## Machine\n")?;
    for line in machine() {
        writeln!(md, "- {line}")?;
    }
    writeln!(
        md,
        "- The load generator, Redis and the server under test share this machine and its cores; \
         figures are comparable between targets, not absolute. The `host load average` row \
         shows how busy the machine was with other work when each run started (ideally below 1).\n"
    )?;
    writeln!(
        md,
        "Server CPU comes from `/proc/PID/stat` (10 ms ticks) summed over the server's \
         processes; the floor's figures are those of its acceptor/writer process.\n"
    )?;
    writeln!(md, "Targets: **herald** (Herald, Centrifugo protocol over WebSocket; **herald-sse**: over Server-Sent Events), **socketio** (Socket.IO 4 with the Redis adapter, publishing through `@socket.io/redis-emitter`), **ws** (`ws` + ioredis pub/sub), **floor** (no server: a raw TCP acceptor writing pre-built frames with writev, the physical limit).\n")?;
    for scenario in SCENARIOS {
        let cols: Vec<&str> = TARGETS
            .iter()
            .copied()
            .filter(|t| runs.contains_key(&(scenario.to_owned(), (*t).to_owned())))
            .collect();
        if cols.is_empty() {
            continue;
        }
        let first = &runs[&(scenario.to_owned(), cols[0].to_owned())][0].1;
        writeln!(md, "## {}\n", heading(scenario, first))?;
        if let Some(note) = note(scenario, first) {
            writeln!(md, "{note}\n")?;
        }
        let header: Vec<String> = cols
            .iter()
            .map(|t| {
                format!(
                    "{t} ({} runs)",
                    runs[&(scenario.to_owned(), (*t).to_owned())].len()
                )
            })
            .collect();
        writeln!(md, "| | {} |", header.join(" | "))?;
        writeln!(md, "|---|{}", "---:|".repeat(cols.len()))?;
        for Row(label, f, decimals) in rows(scenario) {
            let cells: Vec<String> = cols
                .iter()
                .map(|t| {
                    let v = runs[&(scenario.to_owned(), (*t).to_owned())]
                        .iter()
                        .filter_map(|(_, s)| f(s))
                        .collect();
                    median(v).map_or_else(|| "–".to_owned(), |m| format!("{m:.decimals$}"))
                })
                .collect();
            writeln!(md, "| {label} | {} |", cells.join(" | "))?;
        }
        let plots: Vec<String> = cols
            .iter()
            .map(|t| {
                let p = &runs[&(scenario.to_owned(), (*t).to_owned())][0].0;
                ["latency-percentiles", "latency-over-time", "throughput"]
                    .iter()
                    .map(|k| format!("[{k}]({})", rel(&sibling(p, k))))
                    .collect::<Vec<_>>()
                    .join(" · ")
            })
            .collect();
        writeln!(md, "| plots (first run) | {} |\n", plots.join(" | "))?;
        ratios(&mut md, runs, scenario)?;
    }
    writeln!(md, "## Commands\n")?;
    writeln!(
        md,
        "First run of each cell, as recorded in its summary (`command` field; ports and pids \
         change from run to run, `run-all.sh` starts a fresh server for each):\n\n```"
    )?;
    for list in runs.values() {
        if let Some((_, s)) = list.first() {
            writeln!(md, "{}", shell_line(&s.command))?;
        }
    }
    writeln!(md, "```")?;
    Ok(md)
}

fn heading(scenario: &str, s: &Summary) -> String {
    let rate = s.publish.target_rate;
    let dur = s.duration_s.round();
    match scenario {
        "broadcast" => format!(
            "Broadcast: {} subscribers of one channel, {rate} publications/s for {dur} s",
            s.connections_requested
        ),
        "personal" => format!(
            "Personal: {} users, {rate} publications/s round robin over `user:<id>` for {dur} s",
            s.connections_requested
        ),
        "multinode" => format!(
            "Multi-node: {} users over {} Herald gateways on one Redis, {rate} publications/s \
             round robin over `user:<id>` through a publisher node for {dur} s",
            s.connections_requested,
            s.merged_parts.max(1),
        ),
        "idle" => format!(
            "Idle: {} connections held for {dur} s",
            s.connections_requested
        ),
        "churn" => format!(
            "Churn: {} workers connecting and disconnecting for {dur} s",
            s.connections_requested
        ),
        _ => format!(
            "Floor: raw TCP, {} sockets, {rate} frames/s each for {dur} s",
            s.connections_requested
        ),
    }
}

/// What a scenario's table needs explained beyond its heading.
fn note(scenario: &str, s: &Summary) -> Option<String> {
    match scenario {
        "multinode" => Some(format!(
            "One load process per gateway (`loadtest/run-multinode.sh`), each with its own users \
             (`--user-offset`) and publishing only to them through the publisher node, so every \
             publication crosses Redis; the table shows their merged summaries (`herald-loadtest \
             merge`). Server CPU and RSS are the gateways' sums (the publisher node and Redis \
             are not counted); latency percentiles are {}.",
            if s.latency_pooled {
                "those of the pooled deliveries of all processes"
            } else {
                "the largest of the processes' (an upper bound)"
            }
        )),
        _ => None,
    }
}

/// Herald's cost as a multiple of the floor and of the peers.
fn ratios(md: &mut String, runs: &Runs, scenario: &str) -> anyhow::Result<()> {
    let med = |sc: &str, t: &str, f: fn(&Summary) -> Option<f64>| {
        runs.get(&(sc.to_owned(), t.to_owned()))
            .and_then(|l| median(l.iter().filter_map(|(_, s)| f(s)).collect()))
    };
    let mut any = false;
    for t in ["herald", "herald-sse", "socketio", "ws"] {
        for line in ratio_lines(scenario, t, med) {
            writeln!(md, "{line}")?;
            any = true;
        }
    }
    if any {
        md.push('\n');
    }
    Ok(())
}

/// The ratio lines of target `t` in `scenario`, given the median of a figure of a cell.
fn ratio_lines(
    scenario: &str,
    t: &str,
    med: impl Fn(&str, &str, fn(&Summary) -> Option<f64>) -> Option<f64>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = |metric: &str, v: Option<f64>, floor: Option<f64>, what: &str| {
        if let (Some(v), Some(fl)) = (v, floor.filter(|f| *f > 0.0)) {
            out.push(format!(
                "- {t}: {metric} = {:.1} × the floor's {what} ({fl:.1} µs)",
                v / fl
            ));
        }
    };
    match scenario {
        // The floor writes the same frames to the same sockets: only broadcast compares.
        "broadcast" => line(
            "server CPU µs per delivery",
            med(scenario, t, |s| s.cpu_us_per_delivery),
            med("floor", "floor", |s| s.cpu_us_per_delivery),
            "CPU µs per frame written",
        ),
        "idle" | "churn" => {
            let v = med(scenario, t, |s| s.cpu_us_per_connect);
            line(
                "server CPU µs per connect (server side of a full handshake)",
                v,
                med("floor", "floor", |s| s.cpu_us_per_connect_accept),
                "CPU µs per bare TCP connect+accept+close counting both ends",
            );
            line(
                "server CPU µs per connect (server side of a full handshake)",
                v,
                med("floor", "floor", accept_cpu_us),
                "CPU µs per bare TCP accept+close, accepting end only",
            );
        }
        _ => {}
    }
    out
}

fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                "target/release/herald-loadtest".to_owned()
            } else if a
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(str::to_owned)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb / 1_048_576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    vec![
        format!("CPU: {model}, {cpus} logical CPUs in /proc/cpuinfo, nproc = {nproc}"),
        format!("Memory: {mem}"),
        format!("Kernel: Linux {}", kernel.trim()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn churn_compares_with_both_floor_figures() {
        let med = |sc: &str, t: &str, f: fn(&Summary) -> Option<f64>| {
            let s = match (sc, t) {
                ("floor", "floor") => Summary {
                    cpu_us_per_accept: Some(9.0),
                    cpu_us_per_connect_accept: Some(45.0),
                    ..Summary::default()
                },
                ("churn", "herald") => Summary {
                    cpu_us_per_connect: Some(135.0),
                    ..Summary::default()
                },
                _ => return None,
            };
            f(&s)
        };
        let lines = ratio_lines("churn", "herald", med);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("= 3.0 ×") && lines[0].contains("both ends (45.0 µs)"));
        assert!(lines[1].contains("= 15.0 ×") && lines[1].contains("accepting end only"));
        assert!(ratio_lines("churn", "ws", med).is_empty());
        let old_floor = Summary {
            cpu_us_per_connect: Some(8.0),
            ..Summary::default()
        };
        assert_eq!(accept_cpu_us(&old_floor), Some(8.0));
    }

    #[test]
    fn sse_runs_get_a_column_of_their_own() {
        let mut s = Summary {
            target: "herald".into(),
            transport: "ws".into(),
            ..Summary::default()
        };
        assert_eq!(column(&s), "herald");
        s.transport = "sse".into();
        assert_eq!(column(&s), "herald-sse");
        assert!(TARGETS.contains(&"herald-sse"));
    }

    #[test]
    fn commands_are_quoted_for_the_shell() {
        let argv = ["/x/herald-loadtest", "--channel", "a b", "--rate", "10"].map(String::from);
        assert_eq!(
            shell_line(&argv),
            "target/release/herald-loadtest --channel 'a b' --rate 10"
        );
    }
}
