//! An SSE request the client listener read itself, served without an HTTP
//! server: the answer's head is written here, then the stream runs like a
//! WebSocket. The connection's [`Writer`] owns the socket and a flusher
//! renders queued frames into one chunk per round ([`super::wire`]), without
//! waking the connection's task; the task only notices the client leaving
//! (what the client sends is read and dropped), runs control commands and
//! the session's timers (pings), and writes while the socket is full.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::Response;
use bytes::BytesMut;
use herald_core::metrics::labels::Transport;
use herald_core::metrics::TransportMetrics;
use herald_core::protocol::Disconnect;
use tokio::io::ReadBuf;
use tokio::time::timeout;
use tracing::debug;

use super::wire::Wire;
use super::{open, Events, Opened, SseQuery};
use crate::admission::Slot;
use crate::outbox::{self, Outbox};
use crate::session::Session;
use crate::writer::{Conn, WriteDeadline, Writer};
use crate::ws::{self, write_flushed};
use crate::Gateway;

/// Bytes read (and dropped) per read call, on the stack.
const DISCARD_CHUNK: usize = 512;

/// The largest refusal body written (they are a line of text or JSON).
const REFUSAL_BODY_MAX: usize = 4096;

/// What the listener read of an SSE request.
#[derive(Debug)]
pub struct SseRequest {
    headers: HeaderMap,
    query: SseQuery,
    /// An HTTP/1.0 client: no chunked body, the end of the stream is the end of the connection.
    http10: bool,
}

impl SseRequest {
    /// The request a complete head asks for, if the listener serves it:
    /// `None` for one hyper serves as before (the SDKs' bidirectional
    /// emulation, a query or header hyper would refuse).
    pub fn parse(request: &httparse::Request<'_, '_>) -> Option<SseRequest> {
        let uri: Uri = request.path?.parse().ok()?;
        let Query(query) = Query::<SseQuery>::try_from_uri(&uri).ok()?;
        if query.is_emulation() {
            return None;
        }
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for h in request.headers.iter() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
        }
        Some(SseRequest {
            headers,
            query,
            http10: request.version == Some(0),
        })
    }

    /// Whether the client spoke HTTP/1.0.
    pub fn is_http10(&self) -> bool {
        self.http10
    }
}

/// Answers `request` on `stream` (whatever the client sent after the request
/// is dropped), then runs the stream on a task of its own, sized for the session alone.
pub async fn serve<S: ws::Stream>(
    gw: Arc<Gateway>,
    mut stream: S,
    request: SseRequest,
    peer: SocketAddr,
) {
    let SseRequest {
        headers,
        query,
        http10,
    } = request;
    let opened = open(&gw, &headers, query, Some(peer)).await;
    drop(headers);
    let Opened {
        slot,
        outbox,
        session,
        events,
        first,
        head,
    } = match opened {
        Ok(opened) => opened,
        Err(refused) => {
            let answer = refusal_bytes(refused).await;
            let _ = timeout(gw.config.write_timeout, write_flushed(&mut stream, &answer)).await;
            return;
        }
    };
    let chunked = !http10;
    let answer = head_bytes(&head, chunked, &first);
    drop((head, first));
    let written = timeout(gw.config.write_timeout, write_flushed(&mut stream, &answer)).await;
    drop(answer);
    if !matches!(written, Ok(Ok(()))) {
        debug!("SSE response head not written");
        gw.spawn(session.close(None));
        return;
    }
    let started = Started {
        outbox,
        session,
        events,
        chunked,
        slot,
    };
    gw.spawn(run(gw.clone(), stream.into_conn(), started));
}

/// A stream whose answer's head is written.
struct Started {
    outbox: Arc<Outbox>,
    session: Session,
    events: Events,
    chunked: bool,
    slot: Slot,
}

/// The answer's head, and the first events (as a chunk unless HTTP/1.0).
fn head_bytes(head: &Response<()>, chunked: bool, first: &[u8]) -> Vec<u8> {
    let framing = if chunked {
        "transfer-encoding: chunked\r\n"
    } else {
        "connection: close\r\n"
    };
    let mut out = status_and_headers(head, framing);
    if first.is_empty() {
        return out;
    }
    if chunked {
        out.extend_from_slice(format!("{:x}\r\n", first.len()).as_bytes());
        out.extend_from_slice(first);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(first);
    }
    out
}

/// A complete answer refusing the request, then the connection closes.
async fn refusal_bytes(refused: Response) -> Vec<u8> {
    let (head, body) = refused.into_parts();
    let body = axum::body::to_bytes(body, REFUSAL_BODY_MAX)
        .await
        .unwrap_or_default();
    let framing = format!("content-length: {}\r\nconnection: close\r\n", body.len());
    let mut out = status_and_headers(&Response::from_parts(head, ()), &framing);
    out.extend_from_slice(&body);
    out
}

/// The status line and the headers of `head`, then `framing` (header lines)
/// and the blank line.
fn status_and_headers(head: &Response<()>, framing: &str) -> Vec<u8> {
    let status = head.status();
    let mut out = BytesMut::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in head.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(framing.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.to_vec()
}

fn sse_metrics(gw: &Gateway) -> &TransportMetrics {
    gw.metrics.transport(Transport::Sse)
}

/// Sets the stream up and returns the future that runs it (capturing its
/// state in place, as `ws::run` does).
fn run<S: Conn>(
    gw: Arc<Gateway>,
    conn: S,
    started: Started,
) -> impl std::future::Future<Output = ()> + Send {
    let Started {
        outbox,
        mut session,
        events,
        chunked,
        slot,
    } = started;
    let gauge = sse_metrics(&gw).connections.clone();
    gauge.inc();
    let shard = gw.flusher(session.conn());
    let writer = Writer::attach(conn, outbox.clone(), shard, Wire::new(events, chunked));
    async move {
        let reason = serve_stream(&gw, &mut session, &outbox, &writer).await;
        if let Some(reason) = reason {
            if !outbox::flushes_before_close(reason) {
                writer.drop_unsent();
            }
            if reason == Disconnect::SLOW {
                sse_metrics(&gw).cut_off();
            }
            finish(&gw, &writer, reason).await;
        }
        writer.detach();
        drop(writer);
        debug!(client = %session.client_id(), code = ?reason.map(|r| r.code), "SSE stream closed");
        Box::pin(session.close(reason)).await;
        gauge.dec();
        drop(slot);
    }
}

/// Writes what is queued, then the disconnect event and the end of the body.
async fn finish<S: Conn>(gw: &Gateway, writer: &Writer<S, Wire>, reason: Disconnect) {
    let write = async {
        poll_fn(|cx| writer.poll_flush(cx, sse_metrics(gw))).await?;
        writer.push_control(|wire| wire.finish(reason));
        poll_fn(|cx| writer.poll_flush(cx, sse_metrics(gw))).await
    };
    let _ = timeout(gw.config.write_timeout, write).await;
}

/// Runs the stream until it ends; returns the close reason, if the server closes.
async fn serve_stream<S: Conn>(
    gw: &Gateway,
    session: &mut Session,
    outbox: &Outbox,
    writer: &Writer<S, Wire>,
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
            flushed = poll_fn(|cx| writer.poll_flush(cx, sse_metrics(gw))), if task_writes => {
                if flushed.is_err() {
                    return Some(Disconnect::WRITE_ERROR);
                }
            }
            open = poll_fn(|cx| poll_discard(writer, cx)) => {
                if !open {
                    return None;
                }
            }
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

/// Reads and drops what the client sends (an SSE client sends nothing after
/// its request): `false` once the client has closed the connection or it failed.
fn poll_discard<S: Conn>(writer: &Writer<S, Wire>, cx: &mut Context<'_>) -> Poll<bool> {
    let mut chunk = [MaybeUninit::<u8>::uninit(); DISCARD_CHUNK];
    let mut read = ReadBuf::uninit(&mut chunk);
    match ready!(writer.poll_read(cx, &mut read)) {
        Ok(()) => Poll::Ready(!read.filled().is_empty()),
        Err(_) => Poll::Ready(false),
    }
}
