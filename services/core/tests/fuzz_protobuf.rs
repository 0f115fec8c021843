//! Property tests of the Protobuf command decoder (`protobuf::parse_frame`,
//! `protobuf::count_messages`): any bytes give commands or an error, never a
//! panic, and the count agrees with the decoder; commands a client encodes,
//! several per frame, come back with their ids and requests.

use herald_core::protocol::protobuf::{count_messages, parse_frame, proto};
use herald_core::protocol::Request;
use herald_testkit::fuzz;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;

#[test]
fn any_bytes_decode_or_fail_cleanly() {
    let frame = prop_oneof![
        vec(any::<u8>(), 0..256),
        // Mostly small length prefixes, so that frames of several messages are common.
        vec((0u8..16, vec(any::<u8>(), 0..16)), 0..8).prop_map(|parts| {
            parts
                .into_iter()
                .flat_map(|(len, body)| std::iter::once(len).chain(body))
                .collect()
        }),
    ];
    fuzz::run("protobuf_any_bytes", 5000, frame, |frame| {
        let counted = count_messages(&frame, usize::MAX - 1);
        if let Ok(commands) = parse_frame(&frame) {
            prop_assert_eq!(counted.ok(), Some(commands.len()));
        }
        Ok(())
    });
}

#[test]
fn encoded_commands_come_back_in_order() {
    let command = (
        any::<u32>(),
        0u8..4,
        "[a-z:]{0,12}",
        prop::option::of(0u32..1000),
    );
    fuzz::run(
        "protobuf_round_trip",
        1000,
        vec(command, 0..8),
        |commands| {
            let mut frame = Vec::new();
            for (id, kind, channel, n) in &commands {
                let data = n.map_or_else(Vec::new, |n| format!("{{\"n\":{n}}}").into_bytes());
                let mut c = proto::Command {
                    id: *id,
                    ..Default::default()
                };
                match kind {
                    0 => {
                        c.subscribe = Some(proto::SubscribeRequest {
                            channel: channel.clone(),
                            ..Default::default()
                        })
                    }
                    1 => {
                        c.publish = Some(proto::PublishRequest {
                            channel: channel.clone(),
                            data: data.into(),
                        })
                    }
                    2 => {
                        c.history = Some(proto::HistoryRequest {
                            channel: channel.clone(),
                            limit: 3,
                            ..Default::default()
                        })
                    }
                    _ => {}
                }
                c.encode_length_delimited(&mut frame).unwrap();
            }
            let decoded = parse_frame(&frame);
            let missing_data = commands.iter().any(|(_, k, _, n)| *k == 1 && n.is_none());
            if missing_data {
                prop_assert!(decoded.is_err(), "publish without data is refused");
                return Ok(());
            }
            let decoded = decoded.unwrap();
            prop_assert_eq!(decoded.len(), commands.len());
            for ((id, request), (want_id, kind, channel, n)) in decoded.iter().zip(&commands) {
                prop_assert_eq!(id, want_id);
                match (request, kind) {
                    (Request::Subscribe(s), 0) => prop_assert_eq!(&s.channel, channel),
                    (Request::Publish(p), 1) => {
                        prop_assert_eq!(&p.channel, channel);
                        prop_assert_eq!(p.data.get(), format!("{{\"n\":{}}}", n.unwrap()));
                    }
                    (Request::History(h), 2) => {
                        prop_assert_eq!((&h.channel, h.limit), (channel, 3))
                    }
                    (Request::Pong, 3) => {}
                    (other, kind) => prop_assert!(false, "kind {kind} decoded as {other:?}"),
                }
            }
            Ok(())
        },
    );
}
