//! A WebSocket echo endpoint ([`PATH`]) built only with the `autobahn-echo`
//! feature, for the Autobahn conformance cases (`scripts/autobahn/test.sh`):
//! Herald's handshake check and frame decoder with the client endpoint's
//! close and ping rules, sending text and binary messages back. It has no
//! session, hub or outbox, so it writes its frames itself, one at a time.

use std::time::Duration;

use herald_core::protocol::Disconnect;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::codec::{header, DecodeError, Decoder, Kind, Message};
use super::handshake::{self, Accepted};

/// Path of the echo endpoint.
pub const PATH: &str = "/autobahn/echo";

/// The largest message echoed: the Autobahn 9.x cases send up to 16 MiB (the
/// client endpoint's limit is `client.max_message_size`, 64 KiB by default).
const MAX_MESSAGE: usize = 16 << 20;

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 64 * 1024;

/// How long the closing frame may take to write.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// An acceptable upgrade request for [`PATH`]; `None` for anything else,
/// which the listener hands to the HTTP server as usual.
pub fn accepts(
    request: &httparse::Request<'_, '_>,
    origin_allowed: impl Fn(Option<&str>, Option<&str>) -> bool,
) -> Option<Accepted> {
    let path = request.path?;
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if request.method != Some("GET") || request.version != Some(1) || path != PATH {
        return None;
    }
    let headers = request.headers.iter().map(|h| (h.name, h.value));
    handshake::check(origin_allowed, None, headers).ok()
}

/// Answers the upgrade (`pending` holds what the client sent behind its
/// request) and echoes messages until the client closes, the connection
/// fails, or `stop` (the node draining) is cancelled.
pub async fn serve(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    accepted: &Accepted,
    pending: &[u8],
    stop: CancellationToken,
) {
    if let Err(e) = super::write_flushed(&mut stream, accepted.response_head().as_bytes()).await {
        debug!(error = %e, "echo upgrade response not written");
        return;
    }
    let mut decoder = Decoder::with_pending(pending);
    let close = tokio::select! {
        close = echo(&mut stream, &mut decoder) => close,
        // A frame may be half written: the connection is dropped without a close frame.
        () = stop.cancelled() => Ok(None),
    };
    match close {
        Ok(Some(payload)) => {
            let write = write_frame(&mut stream, Kind::Close, &payload);
            let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, write).await;
        }
        Ok(None) => {}
        Err(e) => debug!(error = %e, "echo connection failed"),
    }
}

/// Echoes messages and answers pings; returns the payload of the close frame
/// to send, or `None` when the client went away without one.
async fn echo(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    decoder: &mut Decoder,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        let message = match next(stream, decoder, &mut chunk).await? {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(None),
            Err(e) => {
                debug!(error = %e, "unreadable WebSocket frame on the echo endpoint");
                return Ok(Some(close_payload(disconnect(&e))));
            }
        };
        match message {
            Message::Text(text) => write_frame(stream, Kind::Text, text.as_bytes()).await?,
            Message::Binary(bytes) => write_frame(stream, Kind::Binary, &bytes).await?,
            Message::Ping(payload) => write_frame(stream, Kind::Pong, &payload).await?,
            // As the client endpoint: the close code goes back, without a reason.
            Message::Close(code) => {
                let code = code.map(|code| Disconnect { code, reason: "" });
                return Ok(Some(code.map_or_else(Vec::new, close_payload)));
            }
        }
    }
}

/// The next message, read as the client endpoint's reader does: what an
/// earlier read left buffered first, then from the socket. `Ok(Ok(None))` at
/// end of stream.
async fn next(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    decoder: &mut Decoder,
    chunk: &mut [u8],
) -> std::io::Result<Result<Option<Message>, DecodeError>> {
    if decoder.has_partial() {
        match decoder.decode_message(&[], MAX_MESSAGE) {
            Ok(None) => {}
            decoded => return Ok(decoded),
        }
    }
    loop {
        let n = stream.read(chunk).await?;
        if n == 0 {
            return Ok(Ok(None));
        }
        match decoder.decode_message(&chunk[..n], MAX_MESSAGE) {
            Ok(None) => {}
            decoded => return Ok(decoded),
        }
    }
}

/// The close code for an unreadable frame, as the client endpoint closes with.
fn disconnect(error: &DecodeError) -> Disconnect {
    match error {
        DecodeError::TooBig => Disconnect::MESSAGE_TOO_BIG,
        DecodeError::InvalidUtf8 => Disconnect::INVALID_PAYLOAD,
        DecodeError::Protocol(_) => Disconnect::PROTOCOL_ERROR,
    }
}

fn close_payload(close: Disconnect) -> Vec<u8> {
    let mut payload = close.code.to_be_bytes().to_vec();
    payload.extend_from_slice(close.reason.as_bytes());
    payload
}

/// Writes one unmasked, final frame.
async fn write_frame(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    kind: Kind,
    payload: &[u8],
) -> std::io::Result<()> {
    let (head, len) = header(kind, payload.len());
    let mut frame = Vec::with_capacity(len + payload.len());
    frame.extend_from_slice(&head[..len]);
    frame.extend_from_slice(payload);
    super::write_flushed(stream, &frame).await
}
