//! The WebSocket layer end to end: upgrades (refused, after another request,
//! with a frame in the same packet), malformed, oversize and binary frames,
//! WebSocket pings, fragments, subprotocol and the close handshake. The
//! protocol carried over it is in `ws_protocol.rs`.

use herald_testkit::client::Client;
use herald_testkit::herald::Herald;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

#[tokio::test]
async fn malformed_oversize_and_binary_frames_close_with_protocol_codes() {
    let h = Herald::start(BIN, &[("HERALD_CLIENT__MAX_MESSAGE_SIZE", "4096")])
        .await
        .unwrap();
    let cases: [(&str, u16); 3] = [
        ("{not json", 3501),
        (r#"{"id":"one"}"#, 3501),
        (r#"{"id":1,"connect":{"token":5}}"#, 3501),
    ];
    for (frame, code) in cases {
        let mut c = Client::open(&h.ws_url()).await.unwrap();
        c.send_raw(frame).await.unwrap();
        assert_eq!(c.closed().await.unwrap().0, code, "{frame}");
    }
    let (mut c, _) = Client::connect(&h.ws_url(), &h.token("big")).await.unwrap();
    c.send_raw(&format!(
        r#"{{"id":2,"publish":{{"channel":"stock:A","data":"{}"}}}}"#,
        "y".repeat(8192)
    ))
    .await
    .unwrap();
    assert_eq!(c.closed().await.unwrap().0, 1009);
    assert_eq!(h.readyz().await, Some(200), "the node is unharmed");
}

#[tokio::test]
async fn websocket_pings_fragments_subprotocol_and_close_handshake() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
    use tokio_tungstenite::tungstenite::Message;

    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut request = h.ws_url().into_client_request().unwrap();
    let asked = "centrifuge-json".parse().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", asked);
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "centrifuge-json"
    );

    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    let connect = json!({"id": 1, "connect": {"token": h.token("frag")}}).to_string();
    let (head, tail) = connect.as_bytes().split_at(connect.len() / 2);
    let first = Frame::message(head.to_vec(), OpCode::Data(Data::Text), false);
    let rest = Frame::message(tail.to_vec(), OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(first)).await.unwrap();
    ws.send(Message::Frame(rest)).await.unwrap();

    let mut replies = Vec::new();
    while replies.len() < 2 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("answer in time")
            .expect("stream open")
            .unwrap();
        replies.push(message);
    }
    assert_eq!(replies[0], Message::Pong("are you there".into()));
    let Message::Text(reply) = &replies[1] else {
        panic!("expected the connect reply, got {:?}", replies[1]);
    };
    let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
    assert_eq!(
        reply["id"], 1,
        "a fragmented command is one command: {reply}"
    );
    assert!(reply["connect"]["client"].is_string(), "{reply}");

    let bye = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    ws.send(Message::Close(Some(bye))).await.unwrap();
    let echoed = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected the close echo, got {other:?}"),
        }
    };
    assert_eq!(echoed.map(|f| f.code), Some(CloseCode::Normal));
}

/// A client may send its first frame in the same packet as the upgrade request:
/// the bytes read past the request belong to the WebSocket.
#[tokio::test]
async fn a_frame_sent_with_the_upgrade_request_is_answered() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut socket = tokio::net::TcpStream::connect(&h.client_addr)
        .await
        .unwrap();
    upgrade_and_connect(&h, &mut socket).await;
}

/// An upgrade that follows another request on a kept-alive connection is
/// served by the HTTP server, and works the same.
#[tokio::test]
async fn an_upgrade_after_a_request_on_the_same_connection_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = Herald::start(BIN, &[]).await.unwrap();
    let mut socket = tokio::net::TcpStream::connect(&h.client_addr)
        .await
        .unwrap();
    let health = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", h.client_addr);
    socket.write_all(health.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"ok") {
        let mut chunk = [0u8; 1024];
        let n = socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&chunk[..n]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200"));
    upgrade_and_connect(&h, &mut socket).await;
}

/// Upgrade requests the server refuses get an HTTP answer saying why.
#[tokio::test]
async fn refused_upgrades_say_why() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let h = Herald::start(BIN, &[]).await.unwrap();
    for (headers, status) in [
        (
            "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: a2V5\r\n",
            "426",
        ),
        ("Sec-WebSocket-Version: 13\r\n", "400"),
    ] {
        let mut socket = tokio::net::TcpStream::connect(&h.client_addr)
            .await
            .unwrap();
        let request = format!(
            "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\n{headers}\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut response = [0u8; 12];
        socket.read_exact(&mut response).await.unwrap();
        assert_eq!(&response[9..], status.as_bytes(), "{headers}");
    }
}

/// Sends an upgrade request with a connect command right behind it, in one
/// write, and checks the `101` and the connect reply.
async fn upgrade_and_connect(h: &Herald, socket: &mut tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    let connect = json!({"id": 7, "connect": {"token": h.token("early")}}).to_string();
    let mut packet = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        h.client_addr
    )
    .into_bytes();
    let mut frame = Frame::message(connect.into_bytes(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some([0x11, 0x22, 0x33, 0x44]);
    frame.format(&mut packet).unwrap();
    socket.write_all(&packet).await.unwrap();

    let mut received = Vec::new();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed early: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..n]);
            if let Some(payload) = first_text_frame(&received) {
                break payload;
            }
        }
    })
    .await
    .expect("connect reply in time");
    assert!(
        received.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    let head = String::from_utf8_lossy(&received).to_lowercase();
    assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"));
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["id"], 7, "{reply}");
    assert!(reply["connect"]["client"].is_string(), "{reply}");
}

/// The payload of the first frame after the HTTP response head, once complete.
fn first_text_frame(received: &[u8]) -> Option<Vec<u8>> {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut cursor = std::io::Cursor::new(&received[head_end..]);
    let (header, length) = FrameHeader::parse(&mut cursor).unwrap()?;
    assert!(
        header.is_final && header.opcode == OpCode::Data(Data::Text),
        "{header:?}"
    );
    let start = usize::try_from(cursor.position()).unwrap();
    let payload = cursor
        .get_ref()
        .get(start..start + usize::try_from(length).unwrap())?;
    Some(payload.to_vec())
}
