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
    if args.scenario == Scenario::Fleet {
        check_fleet(args)?;
    }
    match args.scenario {
        Scenario::Churn => churn::run(args, sources).await,
        _ => steady::run(args, sources, reconnect).await,
    }
}

/// The `fleet` options: topics to spread over and something to publish, Herald only.
fn check_fleet(args: &RunArgs) -> anyhow::Result<()> {
    if args.target != Target::Herald {
        bail!("--scenario fleet needs --target herald");
    }
    if args.topics == 0 {
        bail!("--topics must be at least 1");
    }
    let rates = [args.topic_rate, args.personal_rate];
    if rates.iter().any(|r| !r.is_finite() || *r < 0.0) || rates.iter().sum::<f64>() <= 0.0 {
        bail!("--topic-rate and --personal-rate must be non-negative and not both zero");
    }
    Ok(())
}

/// The reconnect backoff of `--reconnect`, which only reconnecting WebSocket subscribers of a
/// Herald topic support.
fn reconnect_policy(args: &RunArgs) -> anyhow::Result<Option<Backoff>> {
    if !args.reconnect {
        return Ok(None);
    }
    let supported = args.target == Target::Herald
        && args.transport == Transport::Ws
        && matches!(args.scenario, Scenario::Broadcast | Scenario::Fleet);
    if !supported {
        bail!(
            "--reconnect needs --target herald, --transport ws and --scenario broadcast or fleet"
        );
    }
    if args.scenario == Scenario::Fleet && args.personal_rate > 0.0 {
        // A new connection recovers its topic only; the personal channel is subscribed by the
        // server on connect, without a position to recover from.
        bail!("--reconnect with --scenario fleet needs --personal-rate 0");
    }
    let (min, max) = (args.reconnect_min_delay, args.reconnect_max_delay);
    if min.is_zero() || max < min {
        bail!("--reconnect-min-delay must be positive and at most --reconnect-max-delay");
    }
    Ok(Some(Backoff { min, max }))
}
