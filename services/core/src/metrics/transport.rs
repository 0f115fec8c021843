//! One transport's connection and write metrics, resolved once from the
//! labelled families so that connections and writers never look a series up.

use std::collections::HashMap;

use prometheus::{Histogram, IntCounter, IntGauge};

use super::labels::{Transport, OTHER_CODE};
use super::Families;
use crate::protocol::Disconnect;

/// The series of one `transport` label value.
#[derive(Debug, Clone)]
pub struct TransportMetrics {
    /// `herald_connections`.
    pub connections: IntGauge,
    /// `herald_connects_total`.
    pub connects: IntCounter,
    /// `herald_connection_duration_seconds`.
    pub duration: Histogram,
    /// `herald_slow_client_cutoffs_total`.
    pub slow_cutoffs: IntCounter,
    /// `herald_connection_queue_high_water_frames`.
    pub queue_high_water: Histogram,
    /// `herald_deliveries_total`.
    pub deliveries: IntCounter,
    /// `herald_frames_written_total`.
    pub frames_written: IntCounter,
    /// `herald_bytes_written_total`.
    pub bytes_written: IntCounter,
    /// `herald_writes_total`.
    pub writes: IntCounter,
    /// `herald_pushes_per_write`.
    pub pushes_per_write: Histogram,
    /// `herald_publish_to_write_seconds`.
    pub publish_to_write: Histogram,
    disconnects: HashMap<u16, IntCounter>,
    other_disconnects: IntCounter,
}

impl TransportMetrics {
    pub(super) fn new(f: &Families, transport: Transport) -> TransportMetrics {
        let t = transport.label();
        let disconnects = Disconnect::ALL
            .iter()
            .map(|d| {
                let code = d.code.to_string();
                (d.code, f.disconnects.with_label_values(&[t, &code]))
            })
            .collect();
        TransportMetrics {
            connections: f.connections.with_label_values(&[t]),
            connects: f.connects.with_label_values(&[t]),
            duration: f.connection_duration.with_label_values(&[t]),
            slow_cutoffs: f.slow_cutoffs.with_label_values(&[t]),
            queue_high_water: f.queue_high_water.with_label_values(&[t]),
            deliveries: f.deliveries.with_label_values(&[t]),
            frames_written: f.frames_written.with_label_values(&[t]),
            bytes_written: f.bytes_written.with_label_values(&[t]),
            writes: f.writes.with_label_values(&[t]),
            pushes_per_write: f.pushes_per_write.with_label_values(&[t]),
            publish_to_write: f.publish_to_write.with_label_values(&[t]),
            disconnects,
            other_disconnects: f.disconnects.with_label_values(&[t, OTHER_CODE]),
        }
    }

    /// Counts a slow client cut off, when its transport acts on the cut-off
    /// (the close handshake with a full socket can take the write timeout).
    pub fn cut_off(&self) {
        self.slow_cutoffs.inc();
    }

    /// Counts a closed connection: its close code (`other` outside the
    /// protocol's table), lifetime and the fullest its queue ever was.
    pub fn closed(&self, code: u16, lifetime_seconds: f64, queue_high_water: usize) {
        self.disconnects
            .get(&code)
            .unwrap_or(&self.other_disconnects)
            .inc();
        self.duration.observe(lifetime_seconds);
        self.queue_high_water.observe(queue_high_water as f64);
    }
}
