//! The `gateway.deliver` span: opened around a publication's local fan-out
//! when it carries a sampled trace context, as a child of the span that
//! published it. It ends once the frames are queued to the subscribers'
//! outboxes, not when the sockets have written them.

use herald_core::publication::Publication;
use herald_core::trace::{TraceParent, TARGET};

use super::{shard, Hub};

impl Hub {
    /// [`Hub::deliver`] inside a `gateway.deliver` span continuing `parent`.
    #[cold]
    #[inline(never)]
    pub(super) fn deliver_traced(
        &self,
        channel: &str,
        publication: &Publication,
        parent: &TraceParent,
    ) {
        let span = tracing::trace_span!(
            target: TARGET,
            "gateway.deliver",
            otel.kind = "consumer",
            node = %self.name,
            channel,
            subscribers = self.local_subscribers(channel),
        );
        parent.adopt(&span);
        let _entered = span.enter();
        self.deliver(channel, publication);
    }

    fn local_subscribers(&self, channel: &str) -> usize {
        self.channels[shard(channel)]
            .read()
            .expect("poisoned")
            .get(channel)
            .map_or(0, |s| s.len())
    }
}
