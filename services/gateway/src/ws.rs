//! The WebSocket transport (`/connection/websocket`): upgrade with an Origin
//! check and small buffers, then one task per connection that reads commands,
//! runs the session's timers and writes queued frames, coalescing everything
//! queued into one newline-delimited frame per write.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use herald_core::protocol::Disconnect;
use tokio::time::timeout;
use tracing::debug;

use crate::outbox::Outbox;
use crate::session::Session;
use crate::Gateway;

/// Bytes coalesced into one write at most (a single larger frame is still sent whole).
const MAX_COALESCED: usize = 64 * 1024;

/// `GET /connection/websocket`.
pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !gw.is_origin_allowed(origin) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let c = &gw.config;
    ws.read_buffer_size(c.read_buffer_size)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_COALESCED + c.max_message_size.max(1 << 20))
        .max_message_size(c.max_message_size)
        .max_frame_size(c.max_message_size)
        .protocols(["centrifuge-json"])
        .on_upgrade(move |socket| run(gw, socket))
}

async fn run(gw: Arc<Gateway>, mut socket: WebSocket) {
    let gauge = gw.metrics.connections.with_label_values(&["websocket"]);
    gauge.inc();
    let outbox = Outbox::new(gw.config.queue_size);
    let mut session = Session::new(gw.clone(), outbox.clone());
    let reason = serve(&gw, &mut socket, &mut session, &outbox).await;
    if let Some(reason) = reason {
        // Replies queued before an error close are still owed to the client; after
        // a slow or insufficient-state close, queued frames are stale.
        if reason != Disconnect::SLOW && reason != Disconnect::INSUFFICIENT_STATE {
            let _ = write(&gw, &mut socket, outbox.take_frames()).await;
        }
        let close = Message::Close(Some(CloseFrame {
            code: reason.code,
            reason: Utf8Bytes::from_static(reason.reason),
        }));
        let _ = timeout(gw.config.write_timeout, socket.send(close)).await;
    }
    debug!(client = %session.client_id(), code = ?reason.map(|r| r.code), "connection closed");
    Box::pin(session.close(reason)).await;
    gauge.dec();
}

/// Runs the connection until it ends; returns the close reason, if the server closes.
async fn serve(
    gw: &Gateway,
    socket: &mut WebSocket,
    session: &mut Session,
    outbox: &Outbox,
) -> Option<Disconnect> {
    let timer = tokio::time::sleep_until(session.next_deadline());
    tokio::pin!(timer);
    loop {
        if let Some(reason) = outbox.closing() {
            return Some(reason);
        }
        while let Some(command) = outbox.pop_control() {
            if let Err(reason) = Box::pin(session.handle_control(command)).await {
                return Some(reason);
            }
        }
        let frames = outbox.take_frames();
        if !frames.is_empty() {
            if write(gw, socket, frames).await.is_err() {
                return Some(Disconnect::WRITE_ERROR);
            }
            continue;
        }
        let next = session.next_deadline();
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        tokio::select! {
            biased;
            () = outbox.woken() => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(reason) = Box::pin(session.handle_frame(text.as_str())).await {
                        return Some(reason);
                    }
                }
                Some(Ok(Message::Binary(_))) => return Some(Disconnect::BAD_REQUEST),
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(_)) => {}
                Some(Err(e)) => return is_too_big(e).then_some(Disconnect::MESSAGE_TOO_BIG),
            },
            () = &mut timer => {
                if let Err(reason) = Box::pin(session.tick()).await {
                    return Some(reason);
                }
            }
        }
    }
}

fn is_too_big(e: axum::Error) -> bool {
    matches!(
        e.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Writes queued frames as WebSocket messages of newline-delimited frames
/// (up to `write_batch` frames or 64 KiB each), then flushes once.
async fn write(gw: &Gateway, socket: &mut WebSocket, frames: VecDeque<Bytes>) -> Result<(), ()> {
    let mut frames = frames.into_iter().peekable();
    while let Some(first) = frames.next() {
        let mut message = None::<BytesMut>;
        let mut count = 1;
        while let Some(next) = frames.peek() {
            let size = message.as_ref().map_or(first.len(), BytesMut::len);
            if count >= gw.config.write_batch || size + next.len() >= MAX_COALESCED {
                break;
            }
            let joined = message.get_or_insert_with(|| {
                let mut m = BytesMut::with_capacity(MAX_COALESCED.min(first.len() * 8));
                m.extend_from_slice(&first);
                m
            });
            joined.extend_from_slice(b"\n");
            joined.extend_from_slice(&frames.next().expect("peeked"));
            count += 1;
        }
        let payload = message.map_or(first, BytesMut::freeze);
        let text = Utf8Bytes::try_from(payload).map_err(|_| ())?;
        let more = frames.peek().is_some();
        let sent = if more {
            timeout(gw.config.write_timeout, socket.feed(Message::Text(text))).await
        } else {
            timeout(gw.config.write_timeout, socket.send(Message::Text(text))).await
        };
        if !matches!(sent, Ok(Ok(()))) {
            return Err(());
        }
    }
    Ok(())
}
