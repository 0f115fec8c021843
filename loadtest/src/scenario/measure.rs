//! What every scenario samples and hands back: the server's processes and their CPU and memory
//! between two phases, the finished run's `Outcome`, and how many errors a summary quotes.
//! Building the summary itself is left to each scenario.

use hdrhistogram::Histogram;

use crate::cli::RunArgs;
use crate::procstat::{self, CpuDelta, ProcSample};
use crate::summary::Summary;

/// Errors quoted in the summary.
pub const MAX_ERRORS: usize = 10;

/// A finished run: its summary and full latency histogram (for the percentile plot).
pub struct Outcome {
    /// The JSON summary.
    pub summary: Summary,
    /// Publish-to-receive latency in microseconds.
    pub latency: Histogram<u64>,
}

/// Server process ids from the command line.
pub fn server_pids(args: &RunArgs) -> Vec<u32> {
    args.server_pid.clone().map(|p| p.0).unwrap_or_default()
}

/// Samples the server, if any; a server that disappeared is an error.
pub fn sample(pids: &[u32]) -> anyhow::Result<Option<ProcSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    procstat::sample(pids).map(Some)
}

/// CPU used between two samples, when both exist.
pub fn cpu_between(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<CpuDelta> {
    Some(b?.cpu_since(&a?))
}
