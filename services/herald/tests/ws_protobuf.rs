//! The Protobuf format of the client protocol end to end, with a raw client
//! built on the schema's types: format selection, connect, subscriptions,
//! publications, history, presence, recovery, errors, pings and close codes,
//! and fan-out to JSON and Protobuf subscribers of one channel.

#[path = "support/protobuf_client.rs"]
mod protobuf_client;

use herald_core::protocol::protobuf::proto;
use herald_testkit::client::Client;
use herald_testkit::herald::{token_with_secret, Herald};
use protobuf_client::{Ask, ProtoClient};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

const CHAT: &[(&str, &str)] = &[
    ("HERALD_NAMESPACES__CHAT__CLIENT_PUBLISH", "true"),
    ("HERALD_NAMESPACES__CHAT__HISTORY_SIZE", "100"),
    ("HERALD_NAMESPACES__CHAT__HISTORY_TTL", "5m"),
    ("HERALD_NAMESPACES__CHAT__PRESENCE", "true"),
];

fn subscribe(channel: &str) -> proto::Command {
    proto::Command {
        subscribe: Some(proto::SubscribeRequest {
            channel: channel.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn publish(channel: &str, data: &[u8]) -> proto::Command {
    proto::Command {
        publish: Some(proto::PublishRequest {
            channel: channel.to_owned(),
            data: data.to_vec().into(),
        }),
        ..Default::default()
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("payloads are JSON text")
}

#[tokio::test]
async fn connect_subscribe_publish_history_and_presence() {
    let h = Herald::start(BIN, CHAT).await.unwrap();
    let (mut c, connected) = ProtoClient::connect(&h.ws_url(), Ask::Subprotocol, &h.token("7"))
        .await
        .unwrap();
    assert!(!connected.client.is_empty());
    assert!(connected.pong && connected.ping > 0);
    let personal = &connected.subs["user:7"];
    assert!(personal.recoverable && !personal.epoch.is_empty());

    let sent = h.publish("user:7", json!({"to": "you"})).await.unwrap();
    let push = c.next_push().await.unwrap();
    assert_eq!(push.channel, "user:7");
    let publication = push.r#pub.unwrap();
    assert_eq!(json_of(&publication.data), json!({"to": "you"}));
    assert_eq!(json!(publication.offset), sent["offset"]);

    let reply = c.command(subscribe("chat:room")).await.unwrap();
    let result = reply.subscribe.unwrap();
    assert!(result.recoverable && result.offset == 0);
    let (mut reader, _) = ProtoClient::connect(&h.ws_url(), Ask::Query, &h.token("8"))
        .await
        .unwrap();
    reader.command(subscribe("chat:room")).await.unwrap();
    for n in 1..=3 {
        let data = format!("{{\"n\":{n}}}");
        let reply = c
            .command(publish("chat:room", data.as_bytes()))
            .await
            .unwrap();
        assert!(reply.publish.is_some(), "{reply:?}");
    }
    for n in 1..=3u64 {
        let push = reader.next_push().await.unwrap();
        let publication = push.r#pub.unwrap();
        assert_eq!(
            (json_of(&publication.data), publication.offset),
            (json!({"n": n}), n)
        );
        let info = publication.info.unwrap();
        assert_eq!(
            (info.user.as_str(), info.client.as_str()),
            ("7", &*connected.client)
        );
    }

    let history = c
        .command(proto::Command {
            history: Some(proto::HistoryRequest {
                channel: "chat:room".into(),
                limit: 2,
                reverse: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .history
        .unwrap();
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!((offsets, history.offset), (vec![3, 2], 3));
    assert_eq!(json_of(&history.publications[0].data), json!({"n": 3}));

    let presence = c
        .command(proto::Command {
            presence: Some(proto::PresenceRequest {
                channel: "chat:room".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .presence
        .unwrap();
    let mut users: Vec<&str> = presence
        .presence
        .values()
        .map(|i| i.user.as_str())
        .collect();
    users.sort_unstable();
    assert_eq!(users, ["7", "8"]);
    let stats = c
        .command(proto::Command {
            presence_stats: Some(proto::PresenceStatsRequest {
                channel: "chat:room".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .presence_stats
        .unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (2, 2));
}

#[tokio::test]
async fn errors_are_replies_and_the_connection_stays() {
    let h = Herald::start(BIN, CHAT).await.unwrap();
    let (mut c, _) = ProtoClient::connect(&h.ws_url(), Ask::Subprotocol, &h.token("1"))
        .await
        .unwrap();
    let code = |r: proto::Reply| r.error.map(|e| (e.code, e.message, e.temporary));
    let unknown = c.command(subscribe("nope:1")).await.unwrap();
    assert_eq!(code(unknown), Some((102, "unknown channel".into(), false)));
    let other = c.command(subscribe("user:2")).await.unwrap();
    assert_eq!(code(other).map(|e| e.0), Some(103));
    let denied = c.command(publish("stock:X", b"1")).await.unwrap();
    assert_eq!(code(denied).map(|e| e.0), Some(103));
    let rpc = c
        .command(proto::Command {
            rpc: Some(proto::RpcRequest::default()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(code(rpc).map(|e| e.0), Some(104));
    let ping = c
        .command(proto::Command {
            ping: Some(proto::PingRequest {}),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(ping.ping.is_some() && ping.error.is_none());
}

#[tokio::test]
async fn recovery_after_a_reconnect_returns_exactly_what_was_missed() {
    let h = Herald::start(BIN, CHAT).await.unwrap();
    let (mut c, _) = ProtoClient::connect(&h.ws_url(), Ask::Subprotocol, &h.token("r"))
        .await
        .unwrap();
    h.publish("chat:rec", json!({"n": 0})).await.unwrap();
    let first = c
        .command(subscribe("chat:rec"))
        .await
        .unwrap()
        .subscribe
        .unwrap();
    assert_eq!(first.offset, 1);
    drop(c);
    for n in 1..=4 {
        h.publish("chat:rec", json!({ "n": n })).await.unwrap();
    }
    let (mut c, _) = ProtoClient::connect(&h.ws_url(), Ask::Subprotocol, &h.token("r"))
        .await
        .unwrap();
    let mut request = subscribe("chat:rec");
    let sub = request.subscribe.as_mut().unwrap();
    (sub.recover, sub.offset, sub.epoch) = (true, first.offset, first.epoch.clone());
    let again = c.command(request).await.unwrap().subscribe.unwrap();
    assert!(again.recovered && again.was_recovering);
    let got: Vec<(u64, Value)> = again
        .publications
        .iter()
        .map(|p| (p.offset, json_of(&p.data)))
        .collect();
    let want: Vec<(u64, Value)> = (1..=4).map(|n| (n + 1, json!({ "n": n }))).collect();
    assert_eq!(got, want);

    let mut stale = subscribe("chat:other");
    let sub = stale.subscribe.as_mut().unwrap();
    (sub.recover, sub.offset, sub.epoch) = (true, 9, "gone".into());
    let lost = c.command(stale).await.unwrap().subscribe.unwrap();
    assert!(lost.was_recovering && !lost.recovered);
}

#[tokio::test]
async fn pings_are_empty_replies_answered_by_empty_commands() {
    let h = Herald::start(
        BIN,
        &[
            ("HERALD_CLIENT__PING_INTERVAL", "300ms"),
            ("HERALD_CLIENT__PONG_TIMEOUT", "200ms"),
        ],
    )
    .await
    .unwrap();
    let (mut c, _) = ProtoClient::connect(&h.ws_url(), Ask::Subprotocol, &h.token("p"))
        .await
        .unwrap();
    c.wait_pings(3).await.unwrap();
    let reply = c
        .command(proto::Command {
            ping: Some(proto::PingRequest {}),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(reply.ping.is_some(), "still connected after three pings");
}

#[tokio::test]
async fn malformed_frames_and_refused_tokens_close_with_their_codes() {
    let h = Herald::start(BIN, CHAT).await.unwrap();
    let url = h.ws_url();
    let forged = token_with_secret(&json!({"sub": "1"}), "other");
    let mut c = ProtoClient::open(&url, Ask::Subprotocol).await.unwrap();
    c.send(&[proto::Command {
        id: 1,
        connect: Some(proto::ConnectRequest {
            token: forged,
            ..Default::default()
        }),
        ..Default::default()
    }])
    .await
    .unwrap();
    assert_eq!(c.closed().await.unwrap().0, 3500, "invalid token");

    let cases: [(&str, Vec<u8>); 3] = [
        ("truncated frame", vec![9, 1, 2]),
        ("not a command", vec![2, 0xff, 0xff]),
        ("payload not JSON", {
            let mut frame = Vec::new();
            prost::Message::encode_length_delimited(&publish("chat:x", b"\x00\x01"), &mut frame)
                .unwrap();
            frame
        }),
    ];
    for (what, frame) in cases {
        let (mut c, _) = ProtoClient::connect(&url, Ask::Subprotocol, &h.token("1"))
            .await
            .unwrap();
        c.send_raw(frame).await.unwrap();
        assert_eq!(c.closed().await.unwrap().0, 3501, "{what}");
    }

    let (mut c, _) = ProtoClient::connect(&url, Ask::Subprotocol, &h.token("1"))
        .await
        .unwrap();
    c.send(&vec![proto::Command::default(); 1025])
        .await
        .unwrap();
    assert_eq!(c.closed().await.unwrap().0, 3501, "too many commands");

    let (mut c, _) = ProtoClient::connect(&url, Ask::Subprotocol, &h.token("d"))
        .await
        .unwrap();
    let (status, _) = h
        .api(
            "disconnect",
            json!({"user": "d", "disconnect": {"code": 4001, "reason": "bye"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(c.closed().await.unwrap().0, 4001, "server API disconnect");
}

#[tokio::test]
async fn a_text_frame_on_a_protobuf_connection_is_a_bad_request() {
    let h = Herald::start(BIN, &[]).await.unwrap();
    let url = format!("{}?cf_protocol=protobuf", h.ws_url());
    let mut json_speaker = Client::open(&url).await.unwrap();
    json_speaker
        .send_raw(&json!({"id": 1, "connect": {"token": h.token("1")}}).to_string())
        .await
        .unwrap();
    assert_eq!(json_speaker.closed().await.unwrap().0, 3501);
}

#[tokio::test]
async fn json_and_protobuf_subscribers_of_one_channel_get_every_publication_once_in_order() {
    const N: u64 = 1000;
    let h = Herald::start(BIN, &[]).await.unwrap();
    let url = h.ws_url();
    let (mut json_a, _) = Client::connect(&url, &h.token("a")).await.unwrap();
    let (mut proto_b, _) = ProtoClient::connect(&url, Ask::Subprotocol, &h.token("b"))
        .await
        .unwrap();
    let (mut proto_c, _) = ProtoClient::connect(&url, Ask::Query, &h.token("c"))
        .await
        .unwrap();
    let (mut json_d, _) = Client::connect(&url, &h.token("d")).await.unwrap();
    let channel = json!({"subscribe": {"channel": "mixed"}});
    json_a.command(channel.clone()).await.unwrap();
    json_d.command(channel).await.unwrap();
    proto_b.command(subscribe("mixed")).await.unwrap();
    proto_c.command(subscribe("mixed")).await.unwrap();

    let publisher = async {
        for n in 1..=N {
            h.publish("mixed", json!({ "n": n, "s": "é\"" }))
                .await
                .unwrap();
        }
    };
    let json_reader = |mut c: Client| async move {
        for n in 1..=N {
            let push = c.next_push().await.unwrap();
            assert_eq!(push["pub"]["data"], json!({ "n": n, "s": "é\"" }));
        }
        c
    };
    let proto_reader = |mut c: ProtoClient| async move {
        for n in 1..=N {
            let push = c.next_push().await.unwrap();
            assert_eq!(push.channel, "mixed");
            let data = json_of(&push.r#pub.unwrap().data);
            assert_eq!(data, json!({ "n": n, "s": "é\"" }));
        }
        c
    };
    let ((), a, b, c, d) = tokio::join!(
        publisher,
        json_reader(json_a),
        proto_reader(proto_b),
        proto_reader(proto_c),
        json_reader(json_d)
    );
    drop((a, d));
    // Nothing beyond the N publications: a ping's reply comes right after them.
    for mut c in [b, c] {
        let reply = c
            .command(proto::Command {
                ping: Some(proto::PingRequest {}),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(reply.ping.is_some());
        assert!(c.inbox_is_empty(), "no push beyond the publications");
    }
}
