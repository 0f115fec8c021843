//! RFC 6455 framing details, checked with a raw socket: close codes that may
//! not appear on the wire are a protocol error (1002), valid ones are echoed,
//! and a 64-bit payload length with its top bit set is a protocol error too.

use std::time::Duration;

use herald_testkit::herald::Herald;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// An upgraded connection, the response head already read.
async fn open(h: &Herald) -> TcpStream {
    let mut stream = TcpStream::connect(&h.client_addr).await.unwrap();
    let head = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        h.client_addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"));
    stream
}

/// A masked client frame (payloads under 126 bytes).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames until a close; returns its payload.
async fn close_payload(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        loop {
            let mut header = [0u8; 2];
            stream.read_exact(&mut header).await.unwrap();
            let len = match header[1] & 0x7f {
                126 => usize::from(stream.read_u16().await.unwrap()),
                127 => stream.read_u64().await.unwrap() as usize,
                n => usize::from(n),
            };
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).await.unwrap();
            if header[0] & 0x0f == 0x8 {
                return payload;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a close frame in time")
}

fn code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

async fn close_with(h: &Herald, payload: &[u8]) -> Vec<u8> {
    let mut stream = open(h).await;
    stream.write_all(&frame(0x8, payload)).await.unwrap();
    close_payload(&mut stream).await
}

#[tokio::test]
async fn close_codes_forbidden_on_the_wire_are_answered_1002() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    for forbidden in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let answer = close_with(&h, &forbidden.to_be_bytes()).await;
        assert_eq!(code(&answer), Some(1002), "close code {forbidden}");
    }
}

#[tokio::test]
async fn valid_close_codes_are_echoed() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    for valid in [1000u16, 1001, 1011, 3000, 4000, 4999] {
        let answer = close_with(&h, &valid.to_be_bytes()).await;
        assert_eq!(code(&answer), Some(valid), "close code {valid}");
    }
    let answer = close_with(&h, b"").await;
    assert!(
        answer.is_empty() || code(&answer) == Some(1000),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_payload_length_with_the_top_bit_set_is_a_protocol_error() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut stream = open(&h).await;
    let mut raw = vec![0x81, 0x80 | 127];
    raw.extend_from_slice(&(1u64 << 63).to_be_bytes());
    raw.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&raw).await.unwrap();
    let answer = close_payload(&mut stream).await;
    assert_eq!(code(&answer), Some(1002), "{answer:?}");
}

#[tokio::test]
async fn the_server_api_closes_only_with_codes_allowed_on_the_wire() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let (mut c, _) = herald_testkit::client::Client::connect(&h.ws_url(), &h.token("closer"))
        .await
        .unwrap();
    for forbidden in [1005, 1006, 2000, 5000] {
        let call = serde_json::json!({ "user": "closer", "disconnect": { "code": forbidden } });
        let (status, body) = h.api("disconnect", call).await.unwrap();
        assert_eq!(status, 400, "code {forbidden}: {body}");
        assert_eq!(body["error"]["code"], 107, "code {forbidden}: {body}");
    }
    let call = serde_json::json!({ "user": "closer", "disconnect": { "code": 4000 } });
    let (status, body) = h.api("disconnect", call).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let (code, _) = c.closed().await.unwrap();
    assert_eq!(code, 4000);
}
