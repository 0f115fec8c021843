//! One emulation connection's response body: opens the session with the
//! connect frame of the opening request, then pumps it — client frames from
//! the session's [`Inbox`] (posted to `/emulation`), control commands, timers
//! — and renders the outbox's frames for the wire in the connection's format
//! (JSON or Protobuf), one body chunk per wake-up. A closing session ends the
//! stream with a disconnect push.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use herald_core::control::ClientFrame;
use herald_core::metrics::labels::Transport;
use herald_core::protocol::{protobuf, reply, Disconnect, Format};
use prometheus::IntGauge;

use crate::admission::Slot;
use crate::cors;
use crate::hub::emulation::Inbox;
use crate::outbox::{self, Outbox};
use crate::session::Session;
use crate::write_stats::WriteStats;
use crate::Gateway;

/// How frames are written on the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `/connection/http_stream`: JSON replies and pushes one per line, or
    /// length-delimited Protobuf ones back to back.
    HttpStream(Format),
    /// `/connection/sse` with a connect command: one `data:` event per JSON
    /// reply or push (centrifuge-js's `sse` transport speaks JSON only).
    Sse,
}

impl Wire {
    fn transport(self) -> Transport {
        match self {
            Wire::HttpStream(_) => Transport::HttpStream,
            Wire::Sse => Transport::SseEmulation,
        }
    }

    fn format(self) -> Format {
        match self {
            Wire::HttpStream(format) => format,
            Wire::Sse => Format::Json,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Wire::HttpStream(Format::Json) => "application/x-ndjson",
            Wire::HttpStream(Format::Protobuf) => "application/octet-stream",
            Wire::Sse => "text/event-stream",
        }
    }

    /// Appends one encoded reply or push.
    fn put(self, out: &mut BytesMut, encoded: &[u8]) {
        match self {
            Wire::HttpStream(Format::Json) => {
                out.put_slice(encoded);
                out.put_u8(b'\n');
            }
            // Length-delimited already.
            Wire::HttpStream(Format::Protobuf) => out.put_slice(encoded),
            Wire::Sse => {
                out.put_slice(b"data: ");
                out.put_slice(encoded);
                out.put_slice(b"\n\n");
            }
        }
    }

    /// Appends the disconnect push that ends the stream.
    fn put_disconnect(self, out: &mut BytesMut, reason: Disconnect) {
        let push = match self.format() {
            Format::Json => reply::disconnect_push(reason.code, reason.reason),
            Format::Protobuf => protobuf::disconnect_push(reason.code, reason.reason),
        };
        self.put(out, &push);
    }
}

/// Opens a connection whose connect command is the body of a POST (in the
/// format of `wire`).
pub async fn open_posted(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body: Body,
    wire: Wire,
) -> Response {
    let connect = match super::read_body(&gw, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let connect = match wire.format() {
        Format::Protobuf => ClientFrame::Protobuf(connect),
        Format::Json => match String::from_utf8(connect.into()) {
            Ok(text) => ClientFrame::Json(text),
            Err(_) => {
                return (StatusCode::BAD_REQUEST, "connect command is not UTF-8").into_response()
            }
        },
    };
    open(gw.clone(), headers, peer, connect, wire).await
}

/// Opens an emulation connection whose first frame (the connect command) is
/// `connect`: checks the origin and admission, registers the session under a
/// new session id, handles the frame and answers with the streaming body.
pub async fn open(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    connect: ClientFrame,
    wire: Wire,
) -> Response {
    let origin = match cors::check(&gw, headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let mut response = if super::opens_with_connect(&connect) {
        match gw.admit() {
            Ok(slot) => respond(gw, peer, connect, wire, slot).await,
            Err(refusal) => refusal.into_response(),
        }
    } else {
        let message = "the body does not open with a connect command";
        (StatusCode::BAD_REQUEST, message).into_response()
    };
    cors::allow(&mut response, origin);
    response
}

async fn respond(
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    connect: ClientFrame,
    wire: Wire,
    slot: Slot,
) -> Response {
    let mut stream = Stream::new(gw, peer, wire, slot);
    let session = stream.session.as_mut().expect("present until drop");
    if let Err(reason) = handle_frame(session, wire.format(), connect).await {
        stream.outbox.close(reason);
    }
    let mut first = BytesMut::new();
    stream.render_queued(&mut first);
    let first = futures_util::stream::once(async move { Ok(first.freeze()) });
    let rest = futures_util::stream::unfold(stream, Stream::next_chunk);
    Response::builder()
        .header(header::CONTENT_TYPE, wire.content_type())
        .header(
            header::CACHE_CONTROL,
            "private, no-cache, no-store, must-revalidate",
        )
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(futures_util::StreamExt::chain(
            first, rest,
        )))
        .expect("valid response")
}

/// Hands a client frame to the session; a frame in the other format than the
/// connection's is a bad request, as on a WebSocket.
async fn handle_frame(
    session: &mut Session,
    format: Format,
    frame: ClientFrame,
) -> Result<(), Disconnect> {
    match (format, frame) {
        (Format::Json, ClientFrame::Json(text)) => session.handle_frame(&text).await,
        (Format::Protobuf, ClientFrame::Protobuf(bytes)) => {
            session.handle_protobuf_frame(&bytes).await
        }
        _ => Err(Disconnect::BAD_REQUEST),
    }
}

/// A session with its stream state; ends the session when dropped.
struct Stream {
    /// Held for the stream's life: the node's count of open connections.
    _slot: Slot,
    gw: Arc<Gateway>,
    wire: Wire,
    id: Arc<str>,
    outbox: Arc<Outbox>,
    inbox: Arc<Inbox>,
    session: Option<Session>,
    gauge: IntGauge,
    done: bool,
}

impl Stream {
    fn new(gw: Arc<Gateway>, peer: Option<SocketAddr>, wire: Wire, slot: Slot) -> Stream {
        let outbox = Outbox::new(gw.config.queue_size);
        let mut session = Session::new(gw.clone(), outbox.clone(), peer);
        let id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        session.set_emulation(wire.transport(), id.clone());
        let inbox = Arc::new(Inbox::default());
        gw.hub.emulation().insert(id.clone(), inbox.clone());
        let gauge = gw.metrics.transport(wire.transport()).connections.clone();
        gauge.inc();
        Stream {
            _slot: slot,
            gw,
            wire,
            id,
            outbox,
            inbox,
            session: Some(session),
            gauge,
            done: false,
        }
    }

    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Stream)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(reason) = self.outbox.closing() {
                self.done = true;
                if reason == Disconnect::SLOW {
                    self.gw.metrics.transport(self.wire.transport()).cut_off();
                }
                let mut out = BytesMut::new();
                if outbox::flushes_before_close(reason) {
                    self.render_queued(&mut out);
                }
                self.wire.put_disconnect(&mut out, reason);
                return Some((Ok(out.freeze()), self));
            }
            let session = self.session.as_mut().expect("present until drop");
            if let Err(reason) = Box::pin(session.handle_controls()).await {
                self.outbox.close(reason);
            }
            while self.outbox.closing().is_none() {
                let Some(frame) = self.inbox.take() else {
                    break;
                };
                let handled = handle_frame(session, self.wire.format(), frame);
                if let Err(reason) = Box::pin(handled).await {
                    self.outbox.close(reason);
                }
            }
            if self.outbox.closing().is_some() {
                continue;
            }
            let mut out = BytesMut::new();
            self.render_queued(&mut out);
            if !out.is_empty() {
                return Some((Ok(out.freeze()), self));
            }
            let session = self.session.as_mut().expect("present until drop");
            let deadline = session.next_deadline();
            tokio::select! {
                biased;
                () = self.outbox.woken() => {}
                () = self.inbox.woken() => {}
                () = tokio::time::sleep_until(deadline) => {
                    if let Err(reason) = Box::pin(session.tick()).await {
                        self.outbox.close(reason);
                    }
                }
            }
        }
    }

    /// Renders every queued frame into `out` (counted as one write).
    fn render_queued(&mut self, out: &mut BytesMut) {
        let mut frames = self.outbox.take_frames();
        if frames.is_empty() {
            return;
        }
        let mut stats = WriteStats::new(self.gw.metrics.transport(self.wire.transport()));
        stats.handed(frames.iter());
        let before = out.len();
        let format = self.wire.format();
        for frame in frames.iter_mut() {
            frame.encode(format);
            self.wire.put(out, frame.bytes(format));
        }
        stats.written(out.len() - before);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.gauge.dec();
        self.gw.hub.emulation().remove(&self.id);
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
    fn each_wire_frames_one_message() {
        let mut out = BytesMut::new();
        let json = Wire::HttpStream(Format::Json);
        json.put(&mut out, br#"{"id":1}"#);
        json.put(&mut out, b"{}");
        assert_eq!(&out[..], b"{\"id\":1}\n{}\n");
        let mut out = BytesMut::new();
        Wire::Sse.put(&mut out, br#"{"id":1}"#);
        assert_eq!(&out[..], b"data: {\"id\":1}\n\n");
        let mut out = BytesMut::new();
        let binary = Wire::HttpStream(Format::Protobuf);
        binary.put(&mut out, protobuf::PING);
        binary.put(&mut out, &[2, 8, 1]);
        assert_eq!(&out[..], [0, 2, 8, 1], "length-delimited, nothing between");
    }

    #[test]
    fn the_closing_push_is_in_the_connection_format() {
        let mut out = BytesMut::new();
        Wire::HttpStream(Format::Json).put_disconnect(&mut out, Disconnect::SHUTDOWN);
        assert!(out.starts_with(br#"{"push":{"disconnect":{"code":3001"#));
        let mut out = BytesMut::new();
        Wire::HttpStream(Format::Protobuf).put_disconnect(&mut out, Disconnect::SHUTDOWN);
        let shutdown = Disconnect::SHUTDOWN;
        assert_eq!(
            &out[..],
            &protobuf::disconnect_push(shutdown.code, shutdown.reason)[..]
        );
    }
}
