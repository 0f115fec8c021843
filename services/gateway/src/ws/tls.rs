//! A TLS WebSocket's socket for the [`Writer`](crate::writer::Writer): the
//! stream behind a lock, taken by the writer for one flush and by the
//! connection's task for one read (neither waits on the other for longer than
//! a non-blocking call). Encrypted bytes the socket did not take stay in the
//! rustls connection (bounded by its buffer limit) until the next flush.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use herald_core::tls::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::writer::Conn;

/// A TLS stream shared by the writer and the connection's task.
pub struct TlsConn(Mutex<TlsStream<TcpStream>>);

impl TlsConn {
    /// Wraps an established TLS stream.
    pub fn new(stream: TlsStream<TcpStream>) -> TlsConn {
        TlsConn(Mutex::new(stream))
    }
}

/// The stream, locked for one write call.
pub struct Locked<'a>(MutexGuard<'a, TlsStream<TcpStream>>);

impl Conn for TlsConn {
    type Write<'a> = Locked<'a>;

    fn write_half(&self) -> Locked<'_> {
        Locked(self.0.lock().expect("poisoned"))
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.lock().expect("poisoned")).poll_read(cx, buf)
    }
}

impl AsyncWrite for Locked<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}
