//! Accounting of socket writes for one writer: a flusher for its whole life,
//! or a connection's task for one flush. Counts and histograms accumulate
//! locally (no atomics, no locks) and reach the shared metrics in one
//! [`WriteStats::flush`] per round or write batch.
//!
//! `herald_publish_to_write_seconds` is observed per publication frame, when
//! its message is handed to the socket, from the publication's engine time
//! that the frame carries (see [`crate::frame::ChannelPush`]).

use std::time::{SystemTime, UNIX_EPOCH};

use herald_core::metrics::TransportMetrics;

use crate::frame::Frame;
use prometheus::local::{LocalHistogram, LocalIntCounter};

/// One writer's unflushed counts.
pub struct WriteStats {
    frames: LocalIntCounter,
    bytes: LocalIntCounter,
    writes: LocalIntCounter,
    deliveries: LocalIntCounter,
    pushes_per_write: LocalHistogram,
    publish_to_write: LocalHistogram,
    clock: Clock,
}

/// The wall clock, read once for up to [`Clock::REUSE`] writes of one round:
/// reading it costs about as much as the rest of a delivery's accounting,
/// and writes that close together are well inside the metric's millisecond.
#[derive(Default)]
struct Clock {
    now_ms: f64,
    uses: u32,
}

impl Clock {
    const REUSE: u32 = 16;

    fn now_ms(&mut self) -> f64 {
        if self.uses == 0 {
            self.now_ms = wall_clock_ms();
            self.uses = Self::REUSE;
        }
        self.uses -= 1;
        self.now_ms
    }
}

impl WriteStats {
    /// Empty counts for one transport's series.
    pub fn new(metrics: &TransportMetrics) -> WriteStats {
        WriteStats {
            frames: metrics.frames_written.local(),
            bytes: metrics.bytes_written.local(),
            writes: metrics.writes.local(),
            deliveries: metrics.deliveries.local(),
            pushes_per_write: metrics.pushes_per_write.local(),
            publish_to_write: metrics.publish_to_write.local(),
            clock: Clock::default(),
        }
    }

    /// Frames handed to the socket together (one message, one SSE chunk):
    /// counts them, and times every publication among them.
    pub fn handed<'a>(&mut self, frames: impl Iterator<Item = &'a Frame>) {
        let mut count = 0u64;
        let mut now_ms = None;
        for frame in frames {
            count += 1;
            if let Some(time) = frame.publication_time() {
                let now = *now_ms.get_or_insert_with(|| self.clock.now_ms());
                self.deliveries.inc();
                self.publish_to_write
                    .observe(((now - time as f64) / 1000.0).max(0.0));
            }
        }
        if count > 0 {
            self.frames.inc_by(count);
            self.pushes_per_write.observe(count as f64);
        }
    }

    /// One socket write of `bytes`.
    pub fn written(&mut self, bytes: usize) {
        self.writes.inc();
        self.bytes.inc_by(bytes as u64);
    }

    /// Adds the counts to the shared metrics and starts again from zero.
    pub fn flush(&mut self) {
        self.clock.uses = 0;
        self.frames.flush();
        self.bytes.flush();
        self.writes.flush();
        self.deliveries.flush();
        self.pushes_per_write.flush();
        self.publish_to_write.flush();
    }
}

impl Drop for WriteStats {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Milliseconds since the Unix epoch, with the clock's sub-millisecond part.
fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::ChannelPush;
    use bytes::Bytes;
    use herald_core::metrics::labels::Transport;
    use herald_core::publication::{encode_publication_push, Publication};
    use herald_core::Metrics;
    use serde_json::value::RawValue;
    use std::sync::Arc;

    #[test]
    fn counts_reach_the_shared_metrics_on_flush() {
        let metrics = Metrics::new();
        let ws = metrics.transport(Transport::WebSocket);
        let mut stats = WriteStats::new(ws);
        let publication = Publication {
            offset: 1,
            data: RawValue::from_string("1".into()).unwrap(),
            info: None,
            tags: None,
            time: herald_core::now_ms() - 20,
            trace: None,
        };
        let frames = [
            Frame::Channel(Arc::new(ChannelPush::new(
                Arc::from("c"),
                1,
                Some(publication.time),
                encode_publication_push("c", &publication),
            ))),
            Frame::Json(Bytes::from_static(b"{\"id\":1,\"ping\":{}}")),
        ];
        stats.handed(frames.iter());
        stats.written(100);
        assert_eq!(ws.writes.get(), 0, "nothing shared before the flush");
        stats.flush();
        assert_eq!(
            (ws.frames_written.get(), ws.deliveries.get()),
            (2, 1),
            "two frames, one publication"
        );
        assert_eq!((ws.writes.get(), ws.bytes_written.get()), (1, 100));
        assert_eq!(ws.pushes_per_write.get_sample_sum(), 2.0);
        assert_eq!(ws.publish_to_write.get_sample_count(), 1);
        assert!(ws.publish_to_write.get_sample_sum() >= 0.019);
    }
}
