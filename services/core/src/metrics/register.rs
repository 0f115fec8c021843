//! Registration helpers: each metric family is created and registered in
//! one call (a duplicate name is a programming error and panics at start-up).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Registers a metric and hands it back.
pub(super) fn reg<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

pub(super) fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

pub(super) fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

pub(super) fn histograms(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    b: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(b.to_vec());
    reg(r, HistogramVec::new(opts, labels).expect("valid metric"))
}
