//! Request heads on the client port are capped at 16 KiB: a longer head is
//! answered 431 and the connection closed (a WebSocket upgrade or any other
//! request); heads below the cap are served as before.

use std::time::Duration;

use herald_testkit::herald::Herald;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// Sends `head` (one header of `padding` bytes added) and reads until the
/// server closes; returns what it answered.
async fn exchange(addr: &str, request_line: &str, extra: &str, padding: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{request_line}\r\nHost: {addr}\r\n{extra}X-Padding: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(padding)
    );
    // The server may answer and close before the whole head is written.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

#[tokio::test]
async fn a_head_over_16_kib_gets_431_and_the_connection_closes() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let addr = &h.client_addr;
    let answer = exchange(addr, "GET /health HTTP/1.1", "", 20 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let answer = exchange(
        addr,
        "GET /connection/websocket HTTP/1.1",
        UPGRADE,
        20 * 1024,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let answer = exchange(addr, "GET /health HTTP/1.1", "", 64 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn a_head_of_10_kib_is_still_served() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let addr = &h.client_addr;
    let answer = exchange(addr, "GET /health HTTP/1.1", "", 10 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE}X-Padding: {}\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 101");
}
