//! The WebSocket transport (`/connection/websocket`): upgrade with an Origin
//! check and small buffers, then one task per connection that reads commands,
//! runs the session's timers and writes queued frames, coalescing everything
//! queued into one newline-delimited frame per write.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use herald_core::protocol::Disconnect;
use tokio::time::timeout;
use tracing::debug;

use crate::outbox::{Frames, Outbox};
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
    let (outbox, mut frames) = Outbox::new(gw.config.queue_size);
    let mut session = Session::new(gw.clone(), outbox.clone());
    let reason = serve(&gw, &mut socket, &mut session, &outbox, &mut frames).await;
    if let Some(reason) = reason {
        if reason != Disconnect::SLOW {
            let mut pending = Vec::new();
            while let Ok(frame) = frames.try_recv() {
                pending.push(frame);
            }
            if !pending.is_empty() {
                let _ = write(&gw, &mut socket, &mut pending).await;
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: reason.code,
            reason: Utf8Bytes::from_static(reason.reason),
        }));
        let _ = timeout(gw.config.write_timeout, socket.send(close)).await;
    }
    debug!(client = %session.client_id(), code = ?reason.map(|r| r.code), "connection closed");
    session.close(reason).await;
    gauge.dec();
}

/// Runs the connection until it ends; returns the close reason, if the server closes.
async fn serve(
    gw: &Gateway,
    socket: &mut WebSocket,
    session: &mut Session,
    outbox: &Outbox,
    frames: &mut Frames,
) -> Option<Disconnect> {
    let mut batch = Vec::new();
    let timer = tokio::time::sleep_until(session.next_deadline());
    tokio::pin!(timer);
    loop {
        if let Some(reason) = outbox.closing() {
            return Some(reason);
        }
        let next = session.next_deadline();
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        tokio::select! {
            biased;
            n = frames.recv_many(&mut batch, gw.config.write_batch) => {
                if n == 0 {
                    return None;
                }
                if write(gw, socket, &mut batch).await.is_err() {
                    return Some(Disconnect::WRITE_ERROR);
                }
            }
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
            () = outbox.woken() => {
                while let Some(command) = outbox.pop_control() {
                    if let Err(reason) = Box::pin(session.handle_control(command)).await {
                        return Some(reason);
                    }
                }
            }
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

/// Writes queued frames as one WebSocket message (newline-delimited), one flush.
async fn write(gw: &Gateway, socket: &mut WebSocket, batch: &mut Vec<Bytes>) -> Result<(), ()> {
    let mut start = 0;
    while start < batch.len() {
        let mut end = start + 1;
        let mut size = batch[start].len();
        while end < batch.len() && size + batch[end].len() < MAX_COALESCED {
            size += batch[end].len() + 1;
            end += 1;
        }
        let payload = if end - start == 1 {
            batch[start].clone()
        } else {
            let mut joined = BytesMut::with_capacity(size);
            for (i, frame) in batch[start..end].iter().enumerate() {
                if i > 0 {
                    joined.extend_from_slice(b"\n");
                }
                joined.extend_from_slice(frame);
            }
            joined.freeze()
        };
        let text = Utf8Bytes::try_from(payload).map_err(|_| ())?;
        match timeout(gw.config.write_timeout, socket.send(Message::Text(text))).await {
            Ok(Ok(())) => {}
            _ => return Err(()),
        }
        start = end;
    }
    batch.clear();
    Ok(())
}
