//! One run end to end: checks the command line against this machine's limits, then runs a
//! steady scenario (idle, broadcast, personal, floor: `scenario::steady`) or the churn loop
//! (`scenario::churn`). Which server the clients talk to is `scenario::target`; what every
//! scenario samples and returns is `scenario::measure`. Clients and publishing live elsewhere.

mod churn;
mod measure;
mod steady;
mod target;

use anyhow::bail;

use crate::cli::{RunArgs, Scenario, Target, Transport};
use crate::reconnect::Backoff;

pub use measure::Outcome;

/// Runs the scenario of `args`; `nofile` is this process's open-file limit.
pub async fn run(args: &RunArgs, nofile: u64) -> anyhow::Result<Outcome> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let sources = args.source_addrs.clone().map(|s| s.0).unwrap_or_default();
    crate::limits::check_fds(args.connections, args.max_inflight, nofile)?;
    crate::limits::check_ports(
        args.connections,
        sources.len(),
        crate::limits::ephemeral_ports(),
    )?;
    let reconnect = reconnect_policy(args)?;
    match args.scenario {
        Scenario::Churn => churn::run(args, sources).await,
        _ => steady::run(args, sources, reconnect).await,
    }
}

/// The reconnect backoff of `--reconnect`, which only reconnecting WebSocket subscribers of a
/// Herald topic support.
fn reconnect_policy(args: &RunArgs) -> anyhow::Result<Option<Backoff>> {
    if !args.reconnect {
        return Ok(None);
    }
    let supported = args.target == Target::Herald
        && args.transport == Transport::Ws
        && args.scenario == Scenario::Broadcast;
    if !supported {
        bail!("--reconnect needs --target herald, --transport ws and --scenario broadcast");
    }
    let (min, max) = (args.reconnect_min_delay, args.reconnect_max_delay);
    if min.is_zero() || max < min {
        bail!("--reconnect-min-delay must be positive and at most --reconnect-max-delay");
    }
    Ok(Some(Backoff { min, max }))
}
