//! The client listener: accepts TCP connections and reads each one's first
//! request itself. A WebSocket upgrade request that arrives whole is answered
//! right here and the connection goes on as a WebSocket on a task of its own
//! ([`crate::ws::serve_upgraded`]), with no HTTP server or router between the
//! socket and the session; so does an SSE request ([`crate::sse::direct`]).
//! Every other connection is served by
//! hyper's HTTP/1.1 server with the bytes already read put back in front
//! ([`crate::prefixed`]); a WebSocket upgrade hyper serves later on a
//! kept-alive connection still gets its `TcpStream` back (see [`crate::ws`]).
//! With TLS configured, each connection's handshake comes first and all of
//! this happens on the decrypted stream.
//!
//! Stopping (when the node begins draining): the listening socket is closed
//! at once, so new connections are refused and a balancer moves on; every
//! connection still speaking HTTP finishes its response and closes, and
//! `serve` returns once they have. Upgraded WebSockets and SSE streams are
//! closed by the drain, not here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{Accept, TlsAcceptor};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::prefixed::Prefixed;
use crate::sse::{self, direct::SseRequest};
use crate::ws::{self, handshake};
use crate::Gateway;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes read for a first request head at a time (most fit in one read).
const FIRST_READ: usize = 1024;

/// The longest first request head the listener reads itself; longer ones go to hyper.
const FIRST_HEAD_MAX: usize = 4096;

/// Headers a first request may have to be answered by the listener.
const FIRST_HEADERS_MAX: usize = 48;

/// The longest request head served on the client port (hyper's read buffer;
/// it answers a longer head 431 and closes): a head is a few hundred bytes,
/// and thousands of unfinished ones must not hold much memory each.
const HEAD_MAX: usize = 16 * 1024;

/// What the listener shares with its connections.
struct Shared {
    gateway: Arc<Gateway>,
    router: Router,
    http: http1::Builder,
    /// Set when the listener serves TLS.
    tls: Option<TlsAcceptor>,
    connections: TaskTracker,
    /// Cancelled when the node begins draining.
    stop: CancellationToken,
}

/// Serves `router` (and WebSocket upgrades for `gateway`) on `listener`, over
/// TLS when given an acceptor, until `stop` is cancelled and the connections
/// still in HTTP have finished.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    router: Router,
    tls: Option<TlsAcceptor>,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(HEAD_MAX);
    let shared = Arc::new(Shared {
        gateway,
        router,
        http,
        tls,
        connections: TaskTracker::new(),
        stop: stop.clone(),
    });
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after(&e).await;
                    continue;
                }
            },
        };
        match &shared.tls {
            None => shared
                .gateway
                .spawn(first_request(shared.clone(), stream, peer)),
            Some(tls) => shared
                .gateway
                .spawn(handshake(shared.clone(), tls.accept(stream), peer)),
        }
    }
    // Closing the socket refuses whatever arrives from now on (and resets
    // what waits in the accept queue): clients retry on another node.
    drop(listener);
    shared.connections.close();
    shared.connections.wait().await;
}

/// What a connection's first request turned out to be.
enum First {
    /// A complete, acceptable WebSocket upgrade request.
    WebSocket {
        /// What to answer.
        accepted: handshake::Accepted,
        /// Length of the request head; bytes after it are the client's first frames.
        head: usize,
    },
    /// A complete one-way SSE request (not the SDKs' emulation).
    Sse(Box<SseRequest>),
    /// An upgrade to the test-only echo endpoint ([`ws::echo`]).
    #[cfg(feature = "autobahn-echo")]
    Echo {
        accepted: handshake::Accepted,
        head: usize,
    },
    /// Anything else: hyper serves it.
    Http,
}

/// Completes a TLS handshake (within the header read timeout), then goes on
/// as [`first_request`] on the decrypted stream.
async fn handshake(shared: Arc<Shared>, accept: Accept<TcpStream>, peer: SocketAddr) {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(HEADER_READ_TIMEOUT, accept) => accepted,
        () = shared.stop.cancelled() => return,
    };
    match accepted {
        Ok(Ok(stream)) => first_request(shared, stream, peer).await,
        Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
        Err(_) => debug!("no TLS handshake within the header read timeout"),
    }
}

/// Reads an accepted connection's first request and hands the connection on:
/// to a WebSocket task, or to an HTTP task that stopping waits for.
async fn first_request<S: ws::Stream>(shared: Arc<Shared>, mut stream: S, peer: SocketAddr) {
    let mut buf = Vec::new();
    let first = tokio::select! {
        first = tokio::time::timeout(
            HEADER_READ_TIMEOUT,
            read_first(&mut stream, &mut buf, &shared.gateway),
        ) => first,
        () = shared.stop.cancelled() => return,
    };
    match first {
        Ok(Ok(First::WebSocket { accepted, head })) => match shared.gateway.admit() {
            Ok(slot) => {
                let gw = shared.gateway.clone();
                ws::serve_upgraded(gw, stream, accepted, buf, head, peer, slot).await;
            }
            Err(refusal) => {
                let _ = ws::write_flushed(&mut stream, refusal.raw_response().as_bytes()).await;
            }
        },
        Ok(Ok(First::Sse(request))) => {
            drop(buf);
            sse::direct::serve(shared.gateway.clone(), stream, *request, peer).await;
        }
        #[cfg(feature = "autobahn-echo")]
        Ok(Ok(First::Echo { accepted, head })) => {
            ws::echo::serve(stream, &accepted, &buf[head..], shared.stop.clone()).await;
        }
        Ok(Ok(First::Http)) => {
            let io = Prefixed::new(buf, stream);
            shared
                .connections
                .spawn(serve_http(shared.clone(), io, peer));
        }
        Ok(Err(e)) => debug!(error = %e, "connection ended before its first request"),
        Err(_) => debug!("no request within the header read timeout"),
    }
}

/// Reads until the first request head is complete (or cannot be answered
/// here) and classifies it.
async fn read_first(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    gw: &Gateway,
) -> io::Result<First> {
    loop {
        buf.reserve(FIRST_READ);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(first) = classify(buf, |o, h| gw.is_origin_allowed(o, h)) {
            return Ok(first);
        }
    }
}

/// `None` while the head is incomplete and shorter than [`FIRST_HEAD_MAX`];
/// a longer head, complete or not, is left to hyper (which refuses one over
/// [`HEAD_MAX`]). `origin_allowed` is [`Gateway::is_origin_allowed`].
fn classify(
    buf: &[u8],
    origin_allowed: impl Fn(Option<&str>, Option<&str>) -> bool,
) -> Option<First> {
    let mut headers = [httparse::EMPTY_HEADER; FIRST_HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= FIRST_HEAD_MAX => n,
        Ok(httparse::Status::Partial) if buf.len() < FIRST_HEAD_MAX => return None,
        _ => return Some(First::Http),
    };
    #[cfg(feature = "autobahn-echo")]
    if let Some(accepted) = ws::echo::accepts(&request, &origin_allowed) {
        return Some(First::Echo { accepted, head });
    }
    let target = request.path.unwrap_or_default();
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    if request.method != Some("GET") {
        return Some(First::Http);
    }
    if path == sse::PATH {
        return Some(match SseRequest::parse(&request) {
            Some(sse) => First::Sse(Box::new(sse)),
            None => First::Http,
        });
    }
    if request.version != Some(1) || path != ws::PATH {
        return Some(First::Http);
    }
    let headers = request.headers.iter().map(|h| (h.name, h.value));
    match handshake::check(&origin_allowed, query, headers) {
        Ok(accepted) => Some(First::WebSocket { accepted, head }),
        Err(_) => Some(First::Http),
    }
}

/// Serves HTTP/1.1 on `io` until the client is done or stopping has finished it.
/// Handlers find the client's address as axum's `ConnectInfo<SocketAddr>`.
async fn serve_http<S>(shared: Arc<Shared>, io: Prefixed<S>, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone().layer(Extension(ConnectInfo(peer)));
    let service = TowerToHyperService::new(router);
    let connection = shared
        .http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shared.stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// After a failed accept: per-connection errors (the peer gave up) need no
/// pause; running out of file descriptors or memory does, or the loop would spin.
async fn pause_after(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    warn!(error = %error, "accept failed; pausing the listener for 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod properties;
