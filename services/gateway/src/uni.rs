//! Centrifugo's unidirectional transports: `/connection/uni_websocket`,
//! `/connection/uni_sse` and `/connection/uni_http_stream`. The client sends
//! one connect request, then only receives pushes (one per WebSocket message,
//! SSE event or line). This module owns what they share: the session opened
//! with that request and the [`Stream`] of framed pushes it produces; the
//! transports ([`websocket`], [`http`]) adapt IO. Herald's own one-way SSE
//! endpoint is [`crate::sse`], not this.

pub mod http;
pub mod push;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use herald_core::metrics::labels::Transport;
use herald_core::metrics::TransportMetrics;
use herald_core::protocol::command::ConnectRequest;
use herald_core::protocol::{Disconnect, Request};
use prometheus::IntGauge;
use tokio::time::Instant;

use crate::admission::Slot;
use crate::outbox::{self, Outbox};
use crate::session::Session;
use crate::write_stats::WriteStats;
use crate::ws::codec::{self, Kind};
use crate::Gateway;
use push::Encoded;

/// How a transport frames one push on its wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A WebSocket text message each.
    WebSocket,
    /// `data: <push>\n\n`.
    EventStream,
    /// `<push>\n`.
    Lines,
}

impl Framing {
    /// Appends `push`, framed, to `out`.
    pub fn put(self, out: &mut BytesMut, push: &[u8]) {
        match self {
            Framing::WebSocket => {
                let (header, len) = codec::header(Kind::Text, push.len());
                out.put_slice(&header[..len]);
                out.put_slice(push);
            }
            Framing::EventStream => {
                out.put_slice(b"data: ");
                out.put_slice(push);
                out.put_slice(b"\n\n");
            }
            Framing::Lines => {
                out.put_slice(push);
                out.put_u8(b'\n');
            }
        }
    }
}

/// What a stream has to write next.
#[derive(Debug)]
pub enum Taken {
    /// Framed pushes.
    Write(Bytes),
    /// The last framed pushes (the disconnect push among them): the server ends the connection.
    End(Bytes, Disconnect),
    /// Nothing yet.
    Nothing,
}

/// One unidirectional connection: its session, and its frames rendered as framed pushes.
pub struct Stream {
    /// Held for the connection's life: the node's count of open connections.
    _slot: Slot,
    gw: Arc<Gateway>,
    outbox: Arc<Outbox>,
    session: Option<Session>,
    transport: Transport,
    framing: Framing,
    gauge: IntGauge,
}

impl Stream {
    /// Opens a session and connects it with `request`; a refused connect is
    /// the stream's first and last chunk (Centrifugo's disconnect push).
    pub async fn open(
        gw: Arc<Gateway>,
        request: ConnectRequest,
        peer: Option<SocketAddr>,
        slot: Slot,
        transport: Transport,
        framing: Framing,
    ) -> Stream {
        let outbox = Outbox::new(gw.config.queue_size);
        let mut session = Session::new(gw.clone(), outbox.clone(), peer);
        session.set_unidirectional();
        session.set_transport(transport);
        let gauge = gw.metrics.transport(transport).connections.clone();
        gauge.inc();
        if let Err(reason) = session.handle(1, Request::Connect(request)).await {
            outbox.close(reason);
        }
        Stream {
            _slot: slot,
            gw,
            outbox,
            session: Some(session),
            transport,
            framing,
            gauge,
        }
    }

    fn metrics(&self) -> &TransportMetrics {
        self.gw.metrics.transport(self.transport)
    }

    /// The connection's outbox (wakes the transport's task).
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// When [`Stream::tick`] wants to run next.
    pub fn deadline(&self) -> Instant {
        self.session().next_deadline()
    }

    /// Runs the session's timers (pings, expiry).
    pub async fn tick(&mut self) {
        let session = self.session.as_mut().expect("present until drop");
        if let Err(reason) = Box::pin(session.tick()).await {
            self.outbox.close(reason);
        }
    }

    fn session(&self) -> &Session {
        self.session.as_ref().expect("present until drop")
    }

    /// Takes what is queued, without waiting: control commands are applied,
    /// frames rendered; a closing connection gets its disconnect push last.
    pub async fn take(&mut self) -> Taken {
        let mut out = BytesMut::new();
        loop {
            if let Some(reason) = self.outbox.closing() {
                if reason == Disconnect::SLOW {
                    self.metrics().cut_off();
                }
                if outbox::flushes_before_close(reason) {
                    self.render(&mut out);
                }
                self.framing.put(&mut out, &push::disconnect(reason));
                return Taken::End(out.freeze(), reason);
            }
            let session = self.session.as_mut().expect("present until drop");
            if let Err(reason) = Box::pin(session.handle_controls()).await {
                self.outbox.close(reason);
            }
            self.render(&mut out);
            if self.outbox.closing().is_none() {
                return if out.is_empty() {
                    Taken::Nothing
                } else {
                    Taken::Write(out.freeze())
                };
            }
        }
    }

    /// Renders every queued frame into `out` (counted as one write); a
    /// refused connect closes the connection.
    fn render(&mut self, out: &mut BytesMut) {
        let frames = self.outbox.take_frames();
        if frames.is_empty() {
            return;
        }
        let mut stats = WriteStats::new(self.metrics());
        stats.handed(frames.iter());
        let before = out.len();
        for frame in frames {
            match push::encode(frame) {
                Encoded::Push(push) => self.framing.put(out, &push),
                Encoded::Refused(reason) => {
                    self.outbox.close(reason);
                    break;
                }
                Encoded::Skip => {}
            }
        }
        stats.written(out.len() - before);
    }

    /// Waits for frames, a control command or a close, running the session's
    /// timers meanwhile (for transports that have nothing else to watch).
    pub async fn wait(&mut self) {
        let outbox = self.outbox.clone();
        let deadline = self.deadline();
        tokio::select! {
            biased;
            () = outbox.woken() => {}
            () = tokio::time::sleep_until(deadline) => self.tick().await,
        }
    }

    /// Marks the connection as ended by the transport (a failed write).
    pub fn fail(&self, reason: Disconnect) {
        self.outbox.close(reason);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.gauge.dec();
        if let Some(session) = self.session.take() {
            let reason = self.outbox.closing();
            self.gw.spawn(session.close(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framings() {
        let mut out = BytesMut::new();
        Framing::EventStream.put(&mut out, b"{}");
        Framing::Lines.put(&mut out, b"{\"a\":1}");
        assert_eq!(&out[..], b"data: {}\n\n{\"a\":1}\n");
        let mut ws = BytesMut::new();
        Framing::WebSocket.put(&mut ws, b"{}");
        assert_eq!(&ws[..], &[0x81, 2, b'{', b'}']);
    }
}
