//! `/connection/uni_websocket`: a WebSocket whose client sends one message,
//! the connect request (or passes it as JSON in the `cf_connect` query
//! parameter), and then only receives: one push per text message, as
//! Centrifugo sends them by default. Later client messages are read and
//! ignored (pings answered). The connection's task writes, whole chunks at a
//! time, so control frames never split a message.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use herald_core::metrics::labels::Transport;
use herald_core::protocol::command::ConnectRequest;
use herald_core::protocol::Disconnect;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::debug;

use super::{push, Framing, Stream, Taken};
use crate::admission::Slot;
use crate::ws::codec::{self, DecodeError, Decoder, Incoming, Kind};
use crate::ws::{admit_upgrade, handshake, upgraded, ReadError, Reader};
use crate::Gateway;

/// Path of the endpoint.
pub const PATH: &str = "/connection/uni_websocket";

/// `GET /connection/uni_websocket` query.
#[derive(Debug, Deserialize)]
pub struct UniQuery {
    /// The connect request, JSON (else the client's first message).
    cf_connect: Option<String>,
}

/// The upgrade: Origin and handshake checks, admission, then the connection on a task of its own.
pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    Query(query): Query<UniQuery>,
    mut request: Request,
) -> Response {
    let headers = request.headers().iter();
    let checked = handshake::check(
        |o, h| gw.is_origin_allowed(o, h),
        None,
        headers.map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let accepted = match checked {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    let connect = match query.cf_connect.as_deref().map(str::as_bytes) {
        Some(json) => match push::parse_connect(json) {
            Ok(connect) => Some(connect),
            Err(_) => return (StatusCode::BAD_REQUEST, "invalid connect request").into_response(),
        },
        None => None,
    };
    let (slot, on_upgrade, peer) = match admit_upgrade(&gw, &mut request) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let session_gw = gw.clone();
    gw.spawn(async move {
        if let Some((stream, decoder)) = upgraded(on_upgrade).await {
            session_gw.spawn(run(
                session_gw.clone(),
                stream,
                decoder,
                connect,
                peer,
                slot,
            ));
        }
    });
    accepted.into_response()
}

async fn run(
    gw: Arc<Gateway>,
    stream: TcpStream,
    decoder: Decoder,
    connect: Option<ConnectRequest>,
    peer: Option<SocketAddr>,
    slot: Slot,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = Reader::new(read, decoder, gw.config.max_message_size);
    let request = match connect {
        Some(request) => request,
        None => match first_message(&gw, &mut reader, &mut write).await {
            Ok(request) => request,
            Err(Some(reason)) => {
                let _ = send(&gw, &mut write, &close_frame(reason.code, reason.reason)).await;
                return;
            }
            Err(None) => return,
        },
    };
    let mut stream = Stream::open(
        gw.clone(),
        request,
        peer,
        slot,
        Transport::UniWebSocket,
        Framing::WebSocket,
    )
    .await;
    serve(&gw, &mut stream, &mut reader, &mut write).await;
    debug!(code = ?stream.outbox().closing().map(|r| r.code), "unidirectional WebSocket closed");
}

/// The connect request the client sends first, within `client.stale_timeout`.
/// `Err(None)`: the client went away; `Err(Some)`: close with that reason.
async fn first_message(
    gw: &Gateway,
    reader: &mut Reader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
) -> Result<ConnectRequest, Option<Disconnect>> {
    let deadline = tokio::time::Instant::now() + gw.config.stale_timeout;
    loop {
        let message = tokio::time::timeout_at(deadline, poll_fn(|cx| reader.poll_message(cx)))
            .await
            .map_err(|_| Some(Disconnect::STALE))?;
        match message {
            Ok(Some(Incoming::Text(text))) => {
                return push::parse_connect(text.as_bytes()).map_err(|e| {
                    debug!(error = %e, "unreadable connect request");
                    Some(Disconnect::BAD_REQUEST)
                });
            }
            Ok(Some(Incoming::Ping(payload))) => {
                if send(gw, write, &control(Kind::Pong, &payload))
                    .await
                    .is_err()
                {
                    return Err(None);
                }
            }
            Ok(Some(Incoming::Binary(_))) => return Err(Some(Disconnect::BAD_REQUEST)),
            Ok(Some(Incoming::Close(_)) | None) | Err(ReadError::Io) => return Err(None),
            Err(ReadError::Decode(e)) => return Err(Some(decode_close(e))),
        }
    }
}

/// Runs the connection until either side ends it.
async fn serve(
    gw: &Gateway,
    stream: &mut Stream,
    reader: &mut Reader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
) {
    loop {
        match stream.take().await {
            Taken::Write(chunk) => {
                if send(gw, write, &chunk).await.is_err() {
                    stream.fail(Disconnect::WRITE_ERROR);
                    return;
                }
            }
            Taken::End(chunk, reason) => {
                let mut out = BytesMut::from(&chunk[..]);
                out.put_slice(&close_frame(reason.code, reason.reason));
                let _ = send(gw, write, &out).await;
                return;
            }
            Taken::Nothing => {}
        }
        let outbox = stream.outbox().clone();
        let deadline = stream.deadline();
        tokio::select! {
            biased;
            () = outbox.woken() => {}
            message = poll_fn(|cx| reader.poll_message(cx)) => match message {
                Ok(Some(Incoming::Ping(payload))) => {
                    if send(gw, write, &control(Kind::Pong, &payload)).await.is_err() {
                        stream.fail(Disconnect::WRITE_ERROR);
                        return;
                    }
                }
                // Centrifugo reads and drops what a unidirectional client sends.
                Ok(Some(Incoming::Text(_) | Incoming::Binary(_))) => {}
                Ok(Some(Incoming::Close(code))) => {
                    let payload = code.map(u16::to_be_bytes).unwrap_or_default();
                    let echo = control(Kind::Close, if code.is_some() { &payload } else { &[] });
                    let _ = send(gw, write, &echo).await;
                    return;
                }
                Ok(None) | Err(ReadError::Io) => return,
                Err(ReadError::Decode(e)) => stream.fail(decode_close(e)),
            },
            () = tokio::time::sleep_until(deadline) => stream.tick().await,
        }
    }
}

/// Writes `bytes` whole within `client.write_timeout`.
async fn send<W: AsyncWrite + Unpin>(gw: &Gateway, write: &mut W, bytes: &[u8]) -> Result<(), ()> {
    match timeout(gw.config.write_timeout, write.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

fn control(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let (header, len) = codec::header(kind, payload.len());
    let mut frame = Vec::with_capacity(len + payload.len());
    frame.extend_from_slice(&header[..len]);
    frame.extend_from_slice(payload);
    frame
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    control(Kind::Close, &payload)
}

fn decode_close(error: DecodeError) -> Disconnect {
    match error {
        DecodeError::TooBig => Disconnect::MESSAGE_TOO_BIG,
        DecodeError::InvalidUtf8 => Disconnect::INVALID_PAYLOAD,
        DecodeError::Protocol(_) => Disconnect::PROTOCOL_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_carry_code_and_reason() {
        assert_eq!(
            close_frame(3500, "invalid token"),
            [&[0x88, 15, 0x0d, 0xac][..], b"invalid token"].concat()
        );
    }
}
