//! TLS of a node's listeners: the certificates loaded at start, reloaded on
//! request (the owner wires that to SIGHUP), and the internal routes served
//! over TLS. The client listener runs its own handshakes (see
//! `herald_gateway::listener`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use herald_core::tls::Certificate;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// How long a client of the internal port may take to finish its TLS handshake
/// and to send its request headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The certificates of a node's TLS listeners, by listener name.
#[derive(Debug, Clone, Default)]
pub struct Certificates(Vec<(&'static str, Arc<Certificate>)>);

impl Certificates {
    pub(crate) fn push(&mut self, listener: &'static str, certificate: Arc<Certificate>) {
        self.0.push((listener, certificate));
    }

    /// Reads every certificate's files again: new connections get what they
    /// hold; a file that fails to load is logged and its listener keeps the
    /// certificate it has.
    pub fn reload(&self) {
        for (listener, certificate) in &self.0 {
            let file = certificate.cert_file().display();
            match certificate.reload() {
                Ok(()) => info!(listener, %file, "TLS certificate reloaded"),
                Err(e) => warn!(
                    listener,
                    %file,
                    error = %e,
                    "TLS certificate reload failed; keeping the certificate in use"
                ),
            }
        }
    }
}

/// Serves `router` over TLS on `listener` until `stop` is cancelled and the
/// open connections have finished their responses.
pub(crate) async fn serve_https(
    listener: TcpListener,
    router: Router,
    tls: TlsAcceptor,
    stop: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "internal accept failed; pausing for 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = serve_connection(
            stream,
            peer,
            tls.clone(),
            router.clone(),
            http.clone(),
            stop.clone(),
        );
        connections.spawn(connection);
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    router: Router,
    http: http1::Builder,
    stop: CancellationToken,
) {
    let stream = tokio::select! {
        accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)) => accepted,
        () = stop.cancelled() => return,
    };
    let stream = match stream {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            debug!(error = %e, "internal TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!("no internal TLS handshake within the timeout");
            return;
        }
    };
    let service = TowerToHyperService::new(router.layer(Extension(ConnectInfo(peer))));
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        debug!(error = %e, "internal HTTP connection ended with an error");
    }
}
