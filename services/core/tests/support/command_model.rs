//! The commands the command decoder's properties build (`Req`), how a client
//! encodes them and how the decoder's output reads back into them, and the
//! strategies that generate them. Used by `fuzz_command.rs`.

use std::collections::BTreeMap;

use herald_core::protocol::command::{Command, SubscribeRequest};
use herald_core::protocol::Request;
use herald_core::publication::RawJson;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// A command as the test understands it, comparable.
#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    Pong,
    Connect {
        token: String,
        name: String,
        version: String,
        data: Option<Value>,
        subs: BTreeMap<String, Sub>,
    },
    Subscribe(Sub),
    Unsubscribe(String),
    Publish(String, Value),
    Presence(String),
    PresenceStats(String),
    History {
        channel: String,
        limit: i32,
        since: Option<(u64, String)>,
        reverse: bool,
    },
    Ping,
    Send(Option<Value>),
    Rpc(String, Option<Value>),
    Refresh(String),
    SubRefresh(String, String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sub {
    channel: String,
    token: String,
    recover: bool,
    epoch: String,
    offset: u64,
    data: Option<Value>,
    positioned: bool,
    recoverable: bool,
    join_leave: bool,
    flag: i64,
}

/// Raw JSON as a value; nesting past serde_json's recursion limit (which raw
/// values do not count: `publication::is_deeper_than` refuses it later) as its text.
fn value(raw: &RawJson) -> Value {
    serde_json::from_str(raw.get()).unwrap_or_else(|_| Value::String(raw.get().to_owned()))
}

fn sub(s: SubscribeRequest) -> Sub {
    Sub {
        data: s.data.as_ref().map(value),
        channel: s.channel,
        token: s.token,
        recover: s.recover,
        epoch: s.epoch,
        offset: s.offset,
        positioned: s.positioned,
        recoverable: s.recoverable,
        join_leave: s.join_leave,
        flag: s.flag,
    }
}

/// What the decoder made of a command, in the test's terms.
pub fn project(command: Command) -> (u32, Req) {
    let (id, request) = command.into_request();
    let req = match request {
        Request::Pong => Req::Pong,
        Request::Connect(c) => Req::Connect {
            data: c.data.as_ref().map(value),
            subs: c.subs.into_iter().map(|(k, s)| (k, sub(s))).collect(),
            token: c.token,
            name: c.name,
            version: c.version,
        },
        Request::Subscribe(s) => Req::Subscribe(sub(s)),
        Request::Unsubscribe(c) => Req::Unsubscribe(c.channel),
        Request::Publish(p) => Req::Publish(p.channel, value(&p.data)),
        Request::Presence(c) => Req::Presence(c.channel),
        Request::PresenceStats(c) => Req::PresenceStats(c.channel),
        Request::History(h) => Req::History {
            channel: h.channel,
            limit: h.limit,
            since: h.since.map(|s| (s.offset, s.epoch)),
            reverse: h.reverse,
        },
        Request::Ping => Req::Ping,
        Request::Send(s) => Req::Send(s.data.as_ref().map(value)),
        Request::Rpc(r) => Req::Rpc(r.method, r.data.as_ref().map(value)),
        Request::Refresh(r) => Req::Refresh(r.token),
        Request::SubRefresh(r) => Req::SubRefresh(r.channel, r.token),
    };
    (id, req)
}

fn sub_json(s: &Sub) -> Value {
    let mut o = json!({
        "channel": s.channel, "token": s.token, "recover": s.recover, "epoch": s.epoch,
        "offset": s.offset, "positioned": s.positioned, "recoverable": s.recoverable,
        "join_leave": s.join_leave, "flag": s.flag,
    });
    if let Some(d) = &s.data {
        o["data"] = d.clone();
    }
    o
}

/// The protocol's request field and body for `req` (`None` for a pong).
pub fn encode(req: &Req) -> Option<(&'static str, Value)> {
    let with_data = |mut o: Value, data: &Option<Value>| {
        if let Some(d) = data {
            o["data"] = d.clone();
        }
        o
    };
    Some(match req {
        Req::Pong => return None,
        Req::Connect {
            token,
            name,
            version,
            data,
            subs,
        } => {
            let subs: Map<String, Value> =
                subs.iter().map(|(k, s)| (k.clone(), sub_json(s))).collect();
            let o = json!({"token": token, "name": name, "version": version, "subs": subs});
            ("connect", with_data(o, data))
        }
        Req::Subscribe(s) => ("subscribe", sub_json(s)),
        Req::Unsubscribe(c) => ("unsubscribe", json!({ "channel": c })),
        Req::Publish(c, d) => ("publish", json!({"channel": c, "data": d})),
        Req::Presence(c) => ("presence", json!({ "channel": c })),
        Req::PresenceStats(c) => ("presence_stats", json!({ "channel": c })),
        Req::History {
            channel,
            limit,
            since,
            reverse,
        } => {
            let mut o = json!({"channel": channel, "limit": limit, "reverse": reverse});
            if let Some((offset, epoch)) = since {
                o["since"] = json!({"offset": offset, "epoch": epoch});
            }
            ("history", o)
        }
        Req::Ping => ("ping", json!({})),
        Req::Send(d) => ("send", with_data(json!({}), d)),
        Req::Rpc(m, d) => ("rpc", with_data(json!({ "method": m }), d)),
        Req::Refresh(t) => ("refresh", json!({ "token": t })),
        Req::SubRefresh(c, t) => ("sub_refresh", json!({"channel": c, "token": t})),
    })
}

/// Request fields in the order the decoder picks the first one set.
const ORDER: [&str; 12] = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
];

pub fn rank(req: &Req) -> usize {
    encode(req).map_or(ORDER.len(), |(field, _)| {
        ORDER.iter().position(|f| *f == field).unwrap()
    })
}

/// JSON of any shape: strings with escapes, newlines and any Unicode;
/// integers (floats need not print back the same).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("(?s).{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Optional data as a client sends it: JSON `null` reads as no data.
fn data() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(json_value().prop_filter("null is no data", |v| !v.is_null()))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9:_.-]{0,16}", "(?s).{0,24}"]
}

fn sub_strategy() -> impl Strategy<Value = Sub> {
    (
        (text(), text(), any::<bool>(), text(), any::<u64>()),
        (
            data(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            any::<i64>(),
        ),
    )
        .prop_map(
            |(
                (channel, token, recover, epoch, offset),
                (data, positioned, recoverable, join_leave, flag),
            )| Sub {
                channel,
                token,
                recover,
                epoch,
                offset,
                data,
                positioned,
                recoverable,
                join_leave,
                flag,
            },
        )
}

pub fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        Just(Req::Pong),
        (
            text(),
            text(),
            text(),
            data(),
            btree_map(text(), sub_strategy(), 0..3)
        )
            .prop_map(|(token, name, version, data, subs)| Req::Connect {
                token,
                name,
                version,
                data,
                subs
            }),
        sub_strategy().prop_map(Req::Subscribe),
        text().prop_map(Req::Unsubscribe),
        (text(), json_value()).prop_map(|(c, d)| Req::Publish(c, d)),
        text().prop_map(Req::Presence),
        text().prop_map(Req::PresenceStats),
        (
            text(),
            any::<i32>(),
            prop::option::of((any::<u64>(), text())),
            any::<bool>()
        )
            .prop_map(|(channel, limit, since, reverse)| Req::History {
                channel,
                limit,
                since,
                reverse
            }),
        Just(Req::Ping),
        data().prop_map(Req::Send),
        (text(), data()).prop_map(|(m, d)| Req::Rpc(m, d)),
        text().prop_map(Req::Refresh),
        (text(), text()).prop_map(|(c, t)| Req::SubRefresh(c, t)),
    ]
}
