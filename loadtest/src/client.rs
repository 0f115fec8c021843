//! Clients of the targets: dialing from spread source addresses (`client::dial`), the transport
//! (WebSocket in `client::wire`, Server-Sent Events in `client::sse`), the per-protocol handshake
//! (`client::herald`, `client::socketio`, `client::ws`) and decoding of incoming messages into
//! publications and pings (`client::conn` holds the connection and that vocabulary).
//! Delivery accounting is left to the caller.

mod conn;
mod dial;
mod herald;
mod socketio;
mod sse;
mod wire;
mod ws;

pub use conn::{Connection, Event, Message, Payload, Position, Proto, Replayed, Subscribed};
pub use dial::{Dialer, Topic};
pub use wire::Msg;

/// Decodes one text message of `proto` into `out`; `replayed` is the connection's
/// [`Connection::replayed`].
pub fn decode(proto: Proto, replayed: Option<&Replayed>, text: &str, out: &mut Vec<Event>) {
    match proto {
        Proto::Herald | Proto::Raw => herald::decode(text, out),
        Proto::HeraldProtobuf => {}
        Proto::HeraldSse => herald::decode_sse(text, replayed, out),
        Proto::Socketio => socketio::decode(text, out),
        Proto::Ws => ws::decode(text, out),
    }
}

/// Decodes one binary message of `proto` into `out`: only the Protobuf format sends them.
pub fn decode_binary(proto: Proto, data: &[u8], out: &mut Vec<Event>) {
    if proto == Proto::HeraldProtobuf {
        herald::protobuf::decode(data, out);
    }
}

/// Decodes a message kept whole (the rest of the handshake's last message).
pub fn decode_message(
    proto: Proto,
    replayed: Option<&Replayed>,
    m: &Message,
    out: &mut Vec<Event>,
) {
    match m {
        Message::Text(t) => decode(proto, replayed, t, out),
        Message::Binary(b) => decode_binary(proto, b, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_frames_may_batch_pushes_and_pings() {
        let mut out = Vec::new();
        let frame = "{\"push\":{\"channel\":\"stock:LOAD\",\"pub\":{\"data\":{\"seq\":7,\"ts\":99},\"offset\":8}}}\n{}\n{\"id\":3,\"subscribe\":{}}";
        decode(Proto::Herald, None, frame, &mut out);
        assert_eq!(
            out,
            vec![Event::Pub(Payload { seq: 7, ts: 99 }, Some(8)), Event::Ping]
        );
    }

    #[test]
    fn socketio_events_and_pings() {
        let mut out = Vec::new();
        decode(Proto::Socketio, None, "2", &mut out);
        decode(
            Proto::Socketio,
            None,
            r#"42["publication",{"channel":"stock:LOAD","data":{"seq":1,"ts":5}}]"#,
            &mut out,
        );
        decode(Proto::Socketio, None, "41", &mut out);
        assert_eq!(out[0], Event::Ping);
        assert_eq!(out[1], Event::Pub(Payload { seq: 1, ts: 5 }, None));
        assert!(matches!(out[2], Event::Closed(None, _)));
    }

    #[test]
    fn ws_peer_frames() {
        let mut out = Vec::new();
        decode(
            Proto::Ws,
            None,
            r#"{"channel":"user:lt-1","data":{"seq":2,"ts":3}}"#,
            &mut out,
        );
        decode(Proto::Ws, None, r#"{"subscribed":"x"}"#, &mut out);
        assert_eq!(out, vec![Event::Pub(Payload { seq: 2, ts: 3 }, None)]);
    }
}
