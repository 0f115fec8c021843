//! The WebSocket transport (`/connection/websocket`): the upgrade handshake
//! with an Origin check, then one task per connection that reads commands and
//! runs the session's timers. The upgraded connection is the plain
//! `TcpStream` (the client listener, [`crate::listener`], serves HTTP/1.1
//! with nothing layered on the socket) or, on a TLS listener, the TLS stream
//! over it ([`tls`]), owned by the connection's [`Writer`]; the task
//! reads through it. Queued frames are written by a flusher running the
//! writer (messages in the connection's format, JSON or Protobuf, one
//! vectored write each, straight from the frames the hub encoded once for
//! every subscriber); the task writes only while the socket is full.
//!
//! An idle connection holds no buffers: reads go through a buffer on the
//! stack (only the tail of an unfinished frame is kept, see [`codec`]).

pub(crate) mod codec;
#[cfg(feature = "autobahn-echo")]
pub mod echo;
pub mod handshake;
pub mod tls;
mod wire;

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_core::metrics::labels::Transport;
use herald_core::metrics::TransportMetrics;
use herald_core::protocol::{Disconnect, Format};
use herald_core::tls::TlsStream;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, error};

use crate::admission::Slot;
use crate::outbox::{self, Outbox};
use crate::prefixed::Prefixed;
use crate::session::Session;
use crate::writer::{Conn, ReadHalf, WriteDeadline, Writer};
use crate::Gateway;
use codec::{DecodeError, Decoder, Incoming, Kind};
use tls::TlsConn;
use wire::Wire;

/// Path of the WebSocket endpoint.
pub const PATH: &str = "/connection/websocket";

/// Bytes read from the socket per read call (on the stack, not per connection).
const READ_CHUNK: usize = 4096;

/// A stream the client listener serves: a WebSocket upgraded on it runs on
/// its [`Conn`].
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket the connection's writer owns.
    type Conn: Conn;

    /// Hands the stream to a writer.
    fn into_conn(self) -> Self::Conn;
}

impl Stream for TcpStream {
    type Conn = TcpStream;

    fn into_conn(self) -> TcpStream {
        self
    }
}

impl Stream for TlsStream<TcpStream> {
    type Conn = TlsConn;

    fn into_conn(self) -> TlsConn {
        TlsConn::new(self)
    }
}

/// `GET /connection/websocket` when hyper serves it: a request after an
/// earlier one on the same connection, or one the listener did not answer
/// itself (refusals among them).
pub async fn upgrade(State(gw): State<Arc<Gateway>>, mut request: Request) -> Response {
    let headers = request.headers().iter();
    let checked = handshake::check(
        |o, h| gw.is_origin_allowed(o, h),
        request.uri().query(),
        headers.map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    let accepted = match checked {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal.into_response(),
    };
    let (slot, on_upgrade, peer) = match admit_upgrade(&gw, &mut request) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    // The session gets a task of its own, as in `serve_upgraded`: this one
    // would keep the upgrade's state beside the session's for its whole life.
    let session_gw = gw.clone();
    let format = accepted.format();
    gw.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                debug!(error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let gw = session_gw.clone();
        match upgraded.downcast::<TokioIo<Prefixed>>() {
            Ok(parts) => {
                let (stream, decoder) = into_parts(parts);
                session_gw.spawn(run(gw, stream, decoder, peer, slot, format));
            }
            Err(upgraded) => match upgraded.downcast::<TokioIo<Prefixed<TlsStream<TcpStream>>>>() {
                Ok(parts) => {
                    let (stream, decoder) = into_parts(parts);
                    let conn = stream.into_conn();
                    session_gw.spawn(run(gw, conn, decoder, peer, slot, format));
                }
                Err(_) => error!("WebSocket upgrade on a connection not served by listener::serve"),
            },
        }
    });
    accepted.into_response()
}

/// Answers an upgrade request the listener read itself (`buf` holds it, in
/// its first `head` bytes, and whatever the client sent right behind it),
/// then runs the connection on a task of its own, sized for the session alone.
pub async fn serve_upgraded<S: Stream>(
    gw: Arc<Gateway>,
    mut stream: S,
    accepted: handshake::Accepted,
    buf: Vec<u8>,
    head: usize,
    peer: SocketAddr,
    slot: Slot,
) {
    let decoder = Decoder::with_pending(&buf[head..]);
    drop(buf);
    let head = accepted.response_head();
    if let Err(e) = write_flushed(&mut stream, head.as_bytes()).await {
        debug!(error = %e, "WebSocket upgrade response not written");
        return;
    }
    let format = accepted.format();
    gw.spawn(run(
        gw.clone(),
        stream.into_conn(),
        decoder,
        Some(peer),
        slot,
        format,
    ));
}

/// Admits an upgrade request hyper serves: the node's slot, the upgrade to
/// await and the client's address, or the answer refusing it.
pub(crate) fn admit_upgrade(
    gw: &Gateway,
    request: &mut Request,
) -> Result<(Slot, OnUpgrade, Option<SocketAddr>), Box<Response>> {
    let slot = gw
        .admit()
        .map_err(|refusal| Box::new(refusal.into_response()))?;
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        let refusal = (
            StatusCode::UPGRADE_REQUIRED,
            "connection cannot be upgraded",
        );
        return Err(Box::new(refusal.into_response()));
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    Ok((slot, on_upgrade, peer))
}

/// Writes `bytes` and flushes them (a TLS stream holds them until flushed).
pub(crate) async fn write_flushed(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The read side of an upgraded socket with its decoder state.
pub(crate) struct Reader<R> {
    io: R,
    decoder: Decoder,
    limit: usize,
}

/// Why reading ended with an error.
pub(crate) enum ReadError {
    Io,
    Decode(DecodeError),
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads messages of at most `limit` bytes from `io`, after what `decoder` holds.
    pub(crate) fn new(io: R, decoder: Decoder, limit: usize) -> Reader<R> {
        Reader { io, decoder, limit }
    }

    /// The next complete message; `None` at end of stream.
    pub(crate) fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Incoming>, ReadError>> {
        if self.decoder.has_partial() {
            if let Some(message) = self
                .decoder
                .decode(&[], self.limit)
                .map_err(ReadError::Decode)?
            {
                return Poll::Ready(Ok(Some(message)));
            }
        }
        loop {
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read)).map_err(|_| ReadError::Io)?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(None));
            }
            let decoded = self.decoder.decode(read.filled(), self.limit);
            if let Some(message) = decoded.map_err(ReadError::Decode)? {
                return Poll::Ready(Ok(Some(message)));
            }
        }
    }
}

/// The stream behind a completed upgrade, and a decoder holding the bytes the
/// client sent right behind its upgrade request (read by the HTTP server).
pub(crate) async fn upgraded(on_upgrade: OnUpgrade) -> Option<(TcpStream, Decoder)> {
    let upgraded = on_upgrade
        .await
        .map_err(|e| debug!(error = %e, "WebSocket upgrade failed"))
        .ok()?;
    let Ok(parts) = upgraded.downcast::<TokioIo<Prefixed>>() else {
        error!("WebSocket upgrade on a plain connection not served by listener::serve");
        return None;
    };
    Some(into_parts(parts))
}

/// The stream and decoder of an upgrade's parts.
fn into_parts<S>(parts: hyper::upgrade::Parts<TokioIo<Prefixed<S>>>) -> (S, Decoder) {
    let (stream, mut pending) = parts.io.into_inner().into_parts();
    pending.extend_from_slice(&parts.read_buf);
    (stream, Decoder::with_pending(&pending))
}

/// Sets the connection up and returns the future that runs it. The future
/// captures its state in place: an `async fn` would hold its arguments twice,
/// as captures and as locals, for the life of the connection.
fn run<S: Conn>(
    gw: Arc<Gateway>,
    stream: S,
    decoder: Decoder,
    peer: Option<SocketAddr>,
    slot: Slot,
    format: Format,
) -> impl std::future::Future<Output = ()> + Send {
    let gauge = ws_metrics(&gw).connections.clone();
    gauge.inc();
    let outbox = Outbox::new(gw.config.queue_size);
    let mut session = Session::new(gw.clone(), outbox.clone(), peer);
    let batch = gw.config.write_batch;
    let shard = gw.flusher(session.conn());
    let writer = Writer::attach(stream, outbox.clone(), shard, Wire::new(batch, format));
    let mut reader = Reader {
        io: ReadHalf(writer.clone()),
        decoder,
        limit: gw.config.max_message_size,
    };
    async move {
        let reason = serve(&gw, &mut reader, &mut session, &outbox, &writer, format).await;
        if let Some(reason) = reason {
            if !outbox::flushes_before_close(reason) {
                writer.drop_unsent();
            }
            if reason == Disconnect::SLOW {
                ws_metrics(&gw).cut_off();
            }
            close(&gw, &writer, Some((reason.code, reason.reason))).await;
        }
        writer.detach();
        drop((reader, writer));
        debug!(client = %session.client_id(), code = ?reason.map(|r| r.code), "connection closed");
        Box::pin(session.close(reason)).await;
        gauge.dec();
        drop(slot);
    }
}

fn ws_metrics(gw: &Gateway) -> &TransportMetrics {
    gw.metrics.transport(Transport::WebSocket)
}

/// Writes what is queued, then a close frame.
async fn close<S: Conn>(gw: &Gateway, writer: &Writer<S, Wire>, close: Option<(u16, &str)>) {
    let payload = close.map_or_else(Vec::new, |(code, reason)| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        p
    });
    let write = async {
        // What was queued before the close (replies among them) goes first: a
        // control frame would overtake it.
        poll_fn(|cx| writer.poll_flush(cx, ws_metrics(gw))).await?;
        writer.push_control(|wire| wire.push_control(Kind::Close, &payload));
        poll_fn(|cx| writer.poll_flush(cx, ws_metrics(gw))).await
    };
    let _ = timeout(gw.config.write_timeout, write).await;
}

/// Runs the connection until it ends; returns the close reason, if the server closes.
async fn serve<R: AsyncRead + Unpin, S: Conn>(
    gw: &Gateway,
    reader: &mut Reader<R>,
    session: &mut Session,
    outbox: &Outbox,
    writer: &Writer<S, Wire>,
    format: Format,
) -> Option<Disconnect> {
    let timer = tokio::time::sleep_until(session.next_deadline());
    tokio::pin!(timer);
    let mut write_deadline = WriteDeadline::default();
    loop {
        if let Some(reason) = outbox.closing() {
            return Some(reason);
        }
        if let Err(reason) = Box::pin(session.handle_controls()).await {
            return Some(reason);
        }
        let task_writes = outbox.task_writes();
        let next = write_deadline.next(
            task_writes,
            gw.config.write_timeout,
            session.next_deadline(),
        );
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        tokio::select! {
            biased;
            () = outbox.woken() => {}
            flushed = poll_fn(|cx| writer.poll_flush(cx, ws_metrics(gw))), if task_writes => {
                if flushed.is_err() {
                    return Some(Disconnect::WRITE_ERROR);
                }
            }
            incoming = poll_fn(|cx| reader.poll_message(cx)) => match incoming {
                Ok(Some(Incoming::Text(text))) if format == Format::Json => {
                    if let Err(reason) = Box::pin(session.handle_frame(&text)).await {
                        return Some(reason);
                    }
                }
                Ok(Some(Incoming::Binary(frame))) if format == Format::Protobuf => {
                    if let Err(reason) = Box::pin(session.handle_protobuf_frame(&frame)).await {
                        return Some(reason);
                    }
                }
                Ok(Some(Incoming::Text(_) | Incoming::Binary(_))) => {
                    return Some(Disconnect::BAD_REQUEST)
                }
                Ok(Some(Incoming::Ping(payload))) => {
                    writer.push_control(|wire| wire.push_control(Kind::Pong, &payload));
                }
                Ok(Some(Incoming::Close(code))) => {
                    close(gw, writer, code.map(|c| (c, ""))).await;
                    return None;
                }
                Ok(None) | Err(ReadError::Io) => return None,
                Err(ReadError::Decode(e)) => {
                    debug!(client = %session.client_id(), error = %e, "unreadable WebSocket frame");
                    return Some(match e {
                        DecodeError::TooBig => Disconnect::MESSAGE_TOO_BIG,
                        DecodeError::InvalidUtf8 => Disconnect::INVALID_PAYLOAD,
                        DecodeError::Protocol(_) => Disconnect::PROTOCOL_ERROR,
                    });
                }
            },
            () = &mut timer => {
                if write_deadline.passed() {
                    return Some(Disconnect::WRITE_ERROR);
                }
                if let Err(reason) = Box::pin(session.tick()).await {
                    return Some(reason);
                }
            }
        }
    }
}
