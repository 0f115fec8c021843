//! Protobuf commands in: a binary frame holds one or more length-delimited
//! `Command` messages, decoded into the typed requests the JSON decoder
//! produces ([`Request`]), so the session does not know the format. Payloads
//! (`data`) must be JSON text, as every subscriber of a channel reads the
//! same publication, JSON clients included.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use super::proto;
use crate::protocol::command::{
    ChannelRequest, ConnectRequest, HistoryRequest, PublishRequest, RefreshRequest, RpcRequest,
    SendRequest, SubRefreshRequest, SubscribeRequest,
};
use crate::protocol::Request;
use crate::publication::{sanitize, RawJson, StreamPosition};

/// Why a binary frame cannot be read as commands.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A length prefix that is malformed or longer than what follows.
    #[error("truncated length-delimited message")]
    Truncated,
    /// A message that is not a `Command`.
    #[error("malformed command: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A payload that is not JSON text.
    #[error("{field} is not JSON")]
    NotJson {
        /// The field.
        field: &'static str,
    },
    /// A publish without data.
    #[error("publish without data")]
    MissingData,
}

/// The messages of a frame, each a byte range, without decoding them.
fn messages(frame: &[u8]) -> impl Iterator<Item = Result<&[u8], DecodeError>> {
    let mut rest = frame;
    std::iter::from_fn(move || (!rest.is_empty()).then(|| next_message(&mut rest)))
}

fn next_message<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let len = prost::encoding::decode_varint(rest).map_err(|_| DecodeError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
    if len > rest.len() {
        return Err(DecodeError::Truncated);
    }
    let (message, tail) = rest.split_at(len);
    *rest = tail;
    Ok(message)
}

/// How many length-delimited messages `frame` holds, counting at most
/// `max + 1` (a caller refuses a frame of too many before decoding any).
pub fn count_messages(frame: &[u8], max: usize) -> Result<usize, DecodeError> {
    messages(frame)
        .take(max.saturating_add(1))
        .try_fold(0, |n, m| m.map(|_| n + 1))
}

/// Decodes every command of one binary frame into its id and request.
pub fn parse_frame(frame: &[u8]) -> Result<Vec<(u32, Request)>, DecodeError> {
    messages(frame)
        .map(|m| command(proto::Command::decode(m?)?))
        .collect()
}

/// The body of a Protobuf `POST /emulation`: one `EmulationRequest`, not
/// length-delimited (centrifuge-js `ProtobufCodec.encodeEmulationRequest`).
/// Its `data` shares the body's buffer.
pub fn emulation_request(body: Bytes) -> Result<proto::EmulationRequest, DecodeError> {
    Ok(proto::EmulationRequest::decode(body)?)
}

/// The id and request of a decoded command: the first request field set, as in JSON.
fn command(c: proto::Command) -> Result<(u32, Request), DecodeError> {
    let request = if let Some(r) = c.connect {
        Request::Connect(connect(r)?)
    } else if let Some(r) = c.subscribe {
        Request::Subscribe(subscribe(r)?)
    } else if let Some(r) = c.unsubscribe {
        Request::Unsubscribe(ChannelRequest { channel: r.channel })
    } else if let Some(r) = c.publish {
        let data = json(r.data, "publish.data")?.ok_or(DecodeError::MissingData)?;
        Request::Publish(PublishRequest {
            channel: r.channel,
            data,
        })
    } else if let Some(r) = c.presence {
        Request::Presence(ChannelRequest { channel: r.channel })
    } else if let Some(r) = c.presence_stats {
        Request::PresenceStats(ChannelRequest { channel: r.channel })
    } else if let Some(r) = c.history {
        Request::History(HistoryRequest {
            channel: r.channel,
            limit: r.limit,
            since: r.since.map(|s| StreamPosition {
                offset: s.offset,
                epoch: s.epoch,
            }),
            reverse: r.reverse,
        })
    } else if c.ping.is_some() {
        Request::Ping
    } else if let Some(r) = c.send {
        Request::Send(SendRequest {
            data: json(r.data, "send.data")?,
        })
    } else if let Some(r) = c.rpc {
        Request::Rpc(RpcRequest {
            method: r.method,
            data: json(r.data, "rpc.data")?,
        })
    } else if let Some(r) = c.refresh {
        Request::Refresh(RefreshRequest { token: r.token })
    } else if let Some(r) = c.sub_refresh {
        Request::SubRefresh(SubRefreshRequest {
            channel: r.channel,
            token: r.token,
        })
    } else {
        Request::Pong
    };
    Ok((c.id, request))
}

fn connect(r: proto::ConnectRequest) -> Result<ConnectRequest, DecodeError> {
    let subs = r
        .subs
        .into_iter()
        .map(|(channel, s)| Ok((channel, subscribe(s)?)))
        .collect::<Result<HashMap<_, _>, DecodeError>>()?;
    Ok(ConnectRequest {
        token: r.token,
        data: json(r.data, "connect.data")?,
        subs,
        name: r.name,
        version: r.version,
    })
}

fn subscribe(r: proto::SubscribeRequest) -> Result<SubscribeRequest, DecodeError> {
    Ok(SubscribeRequest {
        channel: r.channel,
        token: r.token,
        recover: r.recover,
        epoch: r.epoch,
        offset: r.offset,
        data: json(r.data, "subscribe.data")?,
        positioned: r.positioned,
        recoverable: r.recoverable,
        join_leave: r.join_leave,
        flag: r.flag,
    })
}

/// A payload as JSON (raw newlines removed, as the JSON decoder's line
/// framing guarantees); empty is none.
fn json(bytes: Bytes, field: &'static str) -> Result<Option<RawJson>, DecodeError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let raw: RawJson =
        serde_json::from_slice(&bytes).map_err(|_| DecodeError::NotJson { field })?;
    Ok(Some(sanitize(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delimited(commands: &[proto::Command]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in commands {
            c.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn decodes_several_commands_into_typed_requests() {
        let frame = delimited(&[
            proto::Command {
                id: 1,
                connect: Some(proto::ConnectRequest {
                    token: "t".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            proto::Command {
                id: 2,
                publish: Some(proto::PublishRequest {
                    channel: "c".into(),
                    data: Bytes::from_static(b"{\n\"a\": 1}"),
                }),
                ..Default::default()
            },
            proto::Command::default(),
        ]);
        assert_eq!(count_messages(&frame, 10).unwrap(), 3);
        let mut it = parse_frame(&frame).unwrap().into_iter();
        assert!(matches!(it.next(), Some((1, Request::Connect(c))) if c.token == "t"));
        assert!(
            matches!(it.next(), Some((2, Request::Publish(p))) if p.channel == "c" && p.data.get() == "{\"a\": 1}")
        );
        assert!(matches!(it.next(), Some((0, Request::Pong))));
    }

    #[test]
    fn refuses_truncated_frames_and_payloads_that_are_not_json() {
        assert!(matches!(
            parse_frame(&[5, 1, 2]),
            Err(DecodeError::Truncated)
        ));
        assert!(matches!(parse_frame(&[0xff]), Err(DecodeError::Truncated)));
        assert!(matches!(
            parse_frame(&[2, 0xff, 0xff]),
            Err(DecodeError::Malformed(_))
        ));
        let frame = delimited(&[proto::Command {
            id: 1,
            publish: Some(proto::PublishRequest {
                channel: "c".into(),
                data: Bytes::from_static(b"\x00binary"),
            }),
            ..Default::default()
        }]);
        assert!(matches!(
            parse_frame(&frame),
            Err(DecodeError::NotJson { .. })
        ));
        let empty = delimited(&[proto::Command {
            id: 1,
            publish: Some(proto::PublishRequest::default()),
            ..Default::default()
        }]);
        assert!(matches!(parse_frame(&empty), Err(DecodeError::MissingData)));
    }

    #[test]
    fn emulation_requests_are_one_plain_message() {
        let request = proto::EmulationRequest {
            node: "n".into(),
            session: "s".into(),
            data: Bytes::from_static(&[0]),
        };
        let decoded = emulation_request(Bytes::from(request.encode_to_vec())).unwrap();
        assert_eq!(decoded, request);
        assert!(matches!(
            emulation_request(Bytes::from_static(&[0x0a, 5, b'n'])),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn counting_stops_after_the_limit() {
        assert_eq!(count_messages(&[0; 100_000], 1024).unwrap(), 1025);
        assert_eq!(count_messages(&[], 1024).unwrap(), 0);
    }
}
