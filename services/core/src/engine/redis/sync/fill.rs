//! Gap filling: a worker reads what its dirty channels missed from their
//! history streams (a few reads in flight) and delivers it in order; when the
//! stream no longer reaches back, or its epoch changed, the handler hears
//! `on_unrecoverable` and delivery goes on from the stream's top.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tracing::{debug, warn};

use super::{Worker, CHUNK, READS_IN_FLIGHT};
use crate::engine::redis::scripts::Read;
use crate::engine::EngineError;

impl Worker {
    /// Reads what the given channels missed from their streams and delivers it.
    pub(super) async fn fill(&mut self, mut channels: Vec<Arc<str>>) {
        for _round in 0..4 {
            if channels.is_empty() {
                return;
            }
            let requests: Vec<(Arc<str>, u64)> = channels
                .iter()
                .filter_map(|c| {
                    let s = self.channels.get(c)?;
                    let (last, _) = s.position.as_ref()?;
                    s.dirty.then(|| (c.clone(), *last))
                })
                .collect();
            let shared = &self.shared;
            let reads: Vec<(Arc<str>, Result<Read, EngineError>)> = stream::iter(requests)
                .map(|(channel, last)| async move {
                    let read = shared.read_after(&channel, last, CHUNK).await;
                    (channel, read)
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .collect()
                .await;
            channels = Vec::new();
            for (channel, read) in reads {
                match read {
                    Ok(read) => {
                        let more = self.apply(&channel, read);
                        self.settle(&channel);
                        if more {
                            channels.push(channel);
                        }
                    }
                    Err(e) => debug!(%channel, error = %e, "gap fill failed, retrying later"),
                }
            }
        }
    }

    /// Applies a stream read to a dirty channel; `true` when more must be read.
    fn apply(&mut self, channel: &Arc<str>, read: Read) -> bool {
        let handler = self.shared.handler.clone();
        let gaps = &self.shared.metrics.gaps;
        let resyncs = &self.shared.metrics.resyncs;
        let Some(state) = self.channels.get_mut(channel) else {
            return false;
        };
        let Some((last, epoch)) = state.position.clone() else {
            return false;
        };
        let top = read.position;
        let mut more = false;
        self.shared.positions.unsettle(self.index, channel);
        if top.epoch != *epoch {
            warn!(%channel, "stream epoch changed, publications lost");
            gaps.with_label_values(&["unrecoverable"]).inc();
            resyncs.inc_by(handler.on_unrecoverable(channel));
            state.position = Some((top.offset, Arc::from(top.epoch)));
        } else if top.offset > last {
            let contiguous = read
                .publications
                .iter()
                .enumerate()
                .all(|(i, p)| p.offset == last + 1 + i as u64);
            let reached = last + read.publications.len() as u64;
            if !contiguous || read.publications.is_empty() {
                warn!(%channel, last, top = top.offset, "history does not reach back, publications lost");
                gaps.with_label_values(&["unrecoverable"]).inc();
                resyncs.inc_by(handler.on_unrecoverable(channel));
                state.position = Some((top.offset, epoch));
            } else if reached < top.offset && read.publications.len() < CHUNK {
                // The stream ends before the top: its tail expired or was removed.
                for p in &read.publications {
                    handler.on_publication(channel, p);
                }
                gaps.with_label_values(&["unrecoverable"]).inc();
                resyncs.inc_by(handler.on_unrecoverable(channel));
                state.position = Some((top.offset, epoch));
            } else {
                for p in &read.publications {
                    handler.on_publication(channel, p);
                }
                gaps.with_label_values(&["filled"]).inc();
                state.position = Some((reached, epoch));
                more = reached < top.offset;
            }
        }
        if more {
            return true;
        }
        state.dirty = false;
        self.replay(channel)
    }
}
