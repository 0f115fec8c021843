//! Command line of `herald-loadtest`: the arguments of a run, the `report` and `merge`
//! subcommands and the hidden `floor-child` subcommand. Parsing only; limits and endpoints are checked by the callers.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Top-level command line: a run by default, or a subcommand.
#[derive(Parser, Debug)]
#[command(
    name = "herald-loadtest",
    version,
    about = "Load generator for Herald, a Socket.IO peer, a plain ws peer and a raw TCP floor",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Optional subcommand; without one, a load run is performed.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Arguments of a load run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands other than a load run.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Rebuild a markdown report (medians of runs) from a directory of JSON summaries.
    Report(ReportArgs),
    /// Merge the JSON summaries of several load processes that ran side by side (one per
    /// server node) into one summary.
    Merge(MergeArgs),
    /// Raw TCP acceptor and writev writer used by the `floor` scenario (started by the tool).
    #[command(hide = true)]
    FloorChild(FloorChildArgs),
}

/// Server implementation under test.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Herald: Centrifugo client protocol over WebSocket (JSON, or Protobuf with `--format`).
    Herald,
    /// The Socket.IO 4 peer in `loadtest/peers` (Engine.IO v4 over WebSocket).
    Socketio,
    /// The plain `ws` peer in `loadtest/peers`.
    Ws,
}

impl Target {
    /// Lowercase name as used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Target::Herald => "herald",
            Target::Socketio => "socketio",
            Target::Ws => "ws",
        }
    }
}

/// How Herald clients connect.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket, bidirectional (`/connection/websocket`).
    Ws,
    /// Server-Sent Events, one-way (`/connection/sse`): token and topics in the query string.
    Sse,
}

impl Transport {
    /// Lowercase name as used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// Encoding of the Centrifugo client protocol on Herald's WebSocket.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON text messages, `\n`-batched.
    Json,
    /// Protobuf (subprotocol `centrifuge-protobuf`): binary messages of length-delimited replies.
    Protobuf,
}

impl Format {
    /// Lowercase name as used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
        }
    }
}

/// Load shape of a run.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Connect N clients, hold them, measure server memory per connection.
    Idle,
    /// All N clients subscribe one topic; publish to it at R/s.
    Broadcast,
    /// Publish at R/s to the personal channels `user:lt-<i>`, round robin.
    Personal,
    /// N concurrent workers connect and disconnect in a loop: connects/s and CPU per connect.
    Churn,
    /// No server under test: raw TCP acceptor + writev writer, the physical limit of this machine.
    Floor,
    /// Every client holds its personal channel and one of `--topics` topics `stock:<k>`;
    /// publish to the topics at `--topic-rate` and to the personal channels at `--personal-rate`.
    Fleet,
}

impl Scenario {
    /// Lowercase name as used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Broadcast => "broadcast",
            Scenario::Personal => "personal",
            Scenario::Churn => "churn",
            Scenario::Floor => "floor",
            Scenario::Fleet => "fleet",
        }
    }
}

/// Arguments of a load run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Server implementation under test (ignored by `floor`).
    #[arg(long, value_enum, default_value = "herald")]
    pub target: Target,
    /// Load shape.
    #[arg(long, value_enum, default_value = "broadcast")]
    pub scenario: Scenario,
    /// Number of WebSocket connections (for `churn`: number of concurrent connect/close workers).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Publications per second, open loop (all channels together).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured phase: publishing, idle hold or churn time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Publications during this first part of the measured phase are checked for loss but
    /// left out of the latency histogram.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Wait after all clients are connected before measuring (memory settles, pings spread).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub settle: Duration,
    /// Longest wait for outstanding deliveries once publishing stopped.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub drain: Duration,
    /// WebSocket URL, e.g. `ws://127.0.0.1:8000/connection/websocket`. Herald over WebSocket
    /// also takes a comma-separated list of nodes: connection i goes to the `i mod len`-th, and
    /// a reconnect (`--reconnect`) picks one of the others at random.
    #[arg(long)]
    pub ws_url: Option<String>,
    /// Client transport (Herald target only).
    #[arg(long, value_enum, default_value = "ws")]
    pub transport: Transport,
    /// Protocol format of Herald over WebSocket; `protobuf` needs `--target herald` and
    /// `--transport ws` (the publish API stays JSON).
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Server-Sent Events URL for `--transport sse`; by default derived from `--ws-url`
    /// (`ws://H/connection/websocket` becomes `http://H/connection/sse`).
    #[arg(long)]
    pub sse_url: Option<String>,
    /// First user number: connection i is user `lt-<offset + i>` and `personal` publishes to
    /// those users only, so several processes can share one publish API with distinct users.
    #[arg(long, default_value_t = 0)]
    pub user_offset: usize,
    /// Base URL of the publish API, e.g. `http://127.0.0.1:8000` (`/api/publish` is appended).
    #[arg(long)]
    pub api_url: Option<String>,
    /// API key sent as `X-API-Key`.
    #[arg(long, env = "HERALD_LOADTEST_API_KEY", default_value = "")]
    pub api_key: String,
    /// HMAC secret used to mint HS256 connection tokens (Herald target).
    #[arg(long, env = "HERALD_LOADTEST_HMAC_SECRET", default_value = "")]
    pub hmac_secret: String,
    /// Server process id(s) to sample for RSS and CPU; comma separated values are summed.
    #[arg(long, value_parser = parse_pids)]
    pub server_pid: Option<Pids>,
    /// Local source addresses to bind before connecting: `127.0.0.2-127.0.0.20` or a comma list.
    #[arg(long, value_parser = parse_source_addrs)]
    pub source_addrs: Option<SourceAddrs>,
    /// Topic channel for `broadcast`.
    #[arg(long, default_value = "stock:LOAD")]
    pub channel: String,
    /// `fleet`: topics the clients are spread over; client i holds `stock:<topic-offset + i mod topics>`.
    #[arg(long, default_value_t = 1000)]
    pub topics: usize,
    /// `fleet`: number of the first topic, so that several processes hold distinct topics.
    #[arg(long, default_value_t = 0)]
    pub topic_offset: usize,
    /// `fleet`: topic publications per second, round robin over the topics (`--rate` is unused).
    #[arg(long, default_value_t = 100.0)]
    pub topic_rate: f64,
    /// `fleet`: personal publications per second, round robin over the clients.
    #[arg(long, default_value_t = 0.0)]
    pub personal_rate: f64,
    /// Upper bound on new connections per second while connecting (0 = unlimited).
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Handshakes in flight at once while connecting. Above a server's listen backlog, SYNs
    /// are dropped and cost a one-second retransmission.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Deadline of one connection handshake (TCP, WebSocket, protocol connect and subscribe).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub connect_timeout: Duration,
    /// Publish requests in flight at once; beyond it a scheduled publication is skipped and
    /// reported, so the schedule never slows down (open loop).
    #[arg(long, default_value_t = 256)]
    pub max_inflight: usize,
    /// Publications per API request: above 1, the publications due together go out in
    /// `POST /api/batch` requests (`parallel`) of up to this many, one HTTP round trip for all.
    #[arg(long, default_value_t = 1)]
    pub publish_batch: usize,
    /// `floor`: publications written per writev call to each socket.
    #[arg(long, default_value_t = 1)]
    pub floor_batch: usize,
    /// `floor`: writer threads in the acceptor process.
    #[arg(long, default_value_t = 2)]
    pub floor_writers: usize,
    /// `floor`: length of the bare connect/accept/close storm that follows the fan-out phase.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub floor_churn: Duration,
    /// `floor`: concurrent workers of that storm.
    #[arg(long, default_value_t = 50)]
    pub floor_churn_workers: usize,
    /// `floor`: length of the final loop in which the floor process connects to itself and
    /// accepts (both ends of each connection in one process); 0 skips it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub floor_connect_accept: Duration,
    /// Where to write the JSON summary; plots are written next to it.
    #[arg(long, default_value = "result.json")]
    pub out: PathBuf,
    /// Runtime worker threads of the load generator (default: one per CPU). Fewer threads cap
    /// what the load generator takes from a server running on the same machine.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the SVG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Once connected, print `ready` on stdout and wait for a line on stdin before settling
    /// and measuring, so that several processes start their measured phases together.
    #[arg(long)]
    pub wait_for_go: bool,
    /// Reopen a connection the server closed with a reconnect-advising code (or that dropped)
    /// and subscribe the topic again with recovery from the last position seen; the recovered
    /// publications count as deliveries and arrival order is checked. Herald target, WebSocket
    /// transport, `broadcast` or `fleet` (without personal publications) only.
    #[arg(long)]
    pub reconnect: bool,
    /// `--reconnect`: shortest delay before an attempt; the first one is random between this
    /// and twice this, later ones grow exponentially (jittered, as the centrifuge SDKs).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    pub reconnect_min_delay: Duration,
    /// `--reconnect`: longest delay before an attempt.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub reconnect_max_delay: Duration,
    /// Embed the whole latency histogram in the summary (`latency_histogram`, a few KiB), so
    /// that `merge` can pool the percentiles of several processes exactly.
    #[arg(long)]
    pub save_histogram: bool,
}

/// Arguments of `report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Directory holding the JSON summaries (`<target>-<scenario>-<run>.json`).
    #[arg(long, default_value = "loadtest/results")]
    pub results: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "loadtest/RESULTS.md")]
    pub out: PathBuf,
    /// Command that produced the results, quoted in the report.
    #[arg(long, default_value = "loadtest/run-all.sh")]
    pub invocation: String,
}

/// Arguments of `merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Scenario name of the merged summary.
    #[arg(long, default_value = "multinode")]
    pub scenario: String,
    /// Merged summary to write; plots are written next to it.
    #[arg(long)]
    pub out: PathBuf,
    /// Skip the SVG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Redis `INFO` replies saved before the run, one file per instance (comma separated);
    /// with `--redis-after`, Redis CPU and commands go into the summary (`redis`).
    #[arg(long, value_delimiter = ',', requires = "redis_after")]
    pub redis_before: Vec<PathBuf>,
    /// Redis `INFO` replies saved when a node was killed (storm), in the order of
    /// `--redis-before`, each starting with a `sampled_at_s:<unix seconds>` line as the others.
    #[arg(long, value_delimiter = ',', requires = "redis_before")]
    pub redis_at_kill: Vec<PathBuf>,
    /// Redis `INFO` replies saved after the run, in the order of `--redis-before`.
    #[arg(long, value_delimiter = ',', requires = "redis_before")]
    pub redis_after: Vec<PathBuf>,
    /// The gateways' `/metrics` saved before the run, one file per gateway (comma separated);
    /// with `--metrics-after`, Herald's publish-to-write quantiles go into the summary.
    #[arg(long, value_delimiter = ',', requires = "metrics_after")]
    pub metrics_before: Vec<PathBuf>,
    /// The gateways' `/metrics` saved after the run, in the order of `--metrics-before`.
    #[arg(long, value_delimiter = ',', requires = "metrics_before")]
    pub metrics_after: Vec<PathBuf>,
    /// CPU seconds the publisher nodes spent during the run, as the script measured them.
    #[arg(long)]
    pub publisher_cpu_s: Option<f64>,
    /// Summaries to merge, one per load process.
    #[arg(required = true, num_args = 1..)]
    pub parts: Vec<PathBuf>,
}

/// Arguments of the hidden `floor-child`.
#[derive(Args, Debug)]
pub struct FloorChildArgs {
    /// Address to listen on; the bound address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Connections to accept before reading publications from stdin.
    #[arg(long)]
    pub connections: usize,
    /// Writer threads.
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
    /// Publications per writev call.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Length of the connect-to-self loop run once stdin is closed (0: none).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub connect_accept: Duration,
}

/// Process ids of the server under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pids(pub Vec<u32>);

/// Local addresses connections are spread over, round robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<Ipv4Addr>);

fn parse_pids(s: &str) -> anyhow::Result<Pids> {
    let pids = s
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .with_context(|| format!("bad pid {p:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if pids.is_empty() {
        bail!("no pid given");
    }
    Ok(Pids(pids))
}

fn parse_source_addrs(s: &str) -> anyhow::Result<SourceAddrs> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("bad address {a:?}"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("bad address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65_535 {
                bail!("bad address range {part:?}");
            }
            out.extend((a..=b).map(Ipv4Addr::from));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("bad address {part:?}"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("no source address given");
    }
    Ok(SourceAddrs(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addrs_accept_ranges_and_lists() {
        let r = parse_source_addrs("127.0.0.2-127.0.0.4,127.0.1.1").unwrap();
        assert_eq!(r.0.len(), 4);
        assert_eq!(r.0[3], Ipv4Addr::new(127, 0, 1, 1));
        assert!(parse_source_addrs("127.0.0.4-127.0.0.2").is_err());
    }

    #[test]
    fn pids_are_comma_separated() {
        assert_eq!(parse_pids("1, 22,333").unwrap(), Pids(vec![1, 22, 333]));
        assert!(parse_pids("x").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
