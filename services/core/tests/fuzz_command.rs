//! Property tests of the command decoder (`parse_frame`, `Command::into_request`):
//! the committed corpus (`fuzz/corpus/command/`: frames as the centrifuge SDK
//! sends them, batches, every command type, malformed ones) and mutations of
//! it never panic and give bounded output; any commands a client encodes
//! come back as sent, one per line, whatever whitespace surrounds them.

use std::collections::BTreeMap;

use herald_core::protocol::command::{parse_frame, Command};
use herald_core::protocol::Request;
use herald_core::publication::RawJson;
use herald_testkit::fuzz;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

/// A command as the test understands it, comparable.
#[derive(Debug, Clone, PartialEq)]
enum Req {
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
struct Sub {
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

fn sub(s: herald_core::protocol::command::SubscribeRequest) -> Sub {
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
fn project(command: Command) -> (u32, Req) {
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
fn encode(req: &Req) -> Option<(&'static str, Value)> {
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

fn rank(req: &Req) -> usize {
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

fn req() -> impl Strategy<Value = Req> {
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

#[test]
fn commands_come_back_as_encoded_in_any_batch() {
    let command = (any::<u32>(), req(), prop::option::of(req()), any::<bool>());
    let blank = select(vec!["", " ", "\t", "\r", "  \r"]);
    let strategy = vec((command, blank.clone(), blank, any::<bool>()), 1..6);
    fuzz::run("command_round_trip", 1000, strategy, |commands| {
        let (mut frame, mut expected) = (String::new(), Vec::new());
        for ((id, first, second, unknown), before, after, empty_line) in commands {
            let mut object = Map::new();
            object.insert("id".into(), id.into());
            if unknown {
                object.insert("future_field".into(), json!({"x": [1]}));
            }
            // With two requests set, the protocol's order decides, not the text's.
            let mut picked = first.clone();
            // A second request of the first's kind would replace it in the object.
            let second = second.filter(|s| rank(s) != rank(&first));
            for req in std::iter::once(&first).chain(&second) {
                if let Some((field, body)) = encode(req) {
                    object.insert(field.into(), body);
                }
                if rank(req) < rank(&picked) {
                    picked = req.clone();
                }
            }
            let line = serde_json::to_string(&Value::Object(object)).unwrap();
            frame.push_str(&format!("{before}{line}{after}\n"));
            if empty_line {
                frame.push_str(&format!("{before}\n"));
            }
            expected.push((id, picked));
        }
        let got: Vec<(u32, Req)> = parse_frame(&frame)
            .map_err(|e| TestCaseError::fail(format!("{e}: {frame}")))?
            .into_iter()
            .map(project)
            .collect();
        prop_assert_eq!(got, expected);
        Ok(())
    });
}

/// Pieces of command frames that mutations insert.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\n",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"null",
    b"true",
    b"-0",
    b"1e999",
    b"4294967296",
    b"18446744073709551616",
    b"\"id\":4294967295,",
    b"\"connect\":{},",
    b"\"subscribe\":{\"channel\":\"a\"},",
    b"\"data\":",
    b"\"subs\":{\"a\":{}}",
    b"\xc3\xa9",
    b"\xf0\x9f\x98\x80",
];

/// Bytes of memory the decoded commands of a frame may take per byte of
/// frame, their vector's spare capacity included.
const BYTES_PER_FRAME_BYTE: usize = 64;

/// The bytes `commands` hold for themselves (what they point to is in the frame's text).
fn footprint(commands: &Vec<Command>) -> usize {
    commands.capacity() * std::mem::size_of::<Command>()
}

#[test]
fn a_frame_of_empty_commands_takes_a_bounded_multiple_of_its_size() {
    // `{}` and a newline is the cheapest command: a whole frame of them
    // (`client.max_message_size`'s default) must not take megabytes.
    let frame = "{}\n".repeat(64 * 1024 / 3);
    let commands = parse_frame(&frame).unwrap();
    assert_eq!(commands.len(), 64 * 1024 / 3);
    let bytes = footprint(&commands);
    assert!(
        bytes <= BYTES_PER_FRAME_BYTE * frame.len(),
        "{bytes} bytes for a frame of {}",
        frame.len()
    );
}

#[test]
fn corpus_and_mutations_decode_without_panic_and_within_bounds() {
    let corpus = fuzz::corpus("command");
    for (name, entry) in &corpus {
        let frame = std::str::from_utf8(entry).expect("corpus frames are text");
        // `invalid-*` entries are frames the decoder must refuse; all others it must take.
        let parsed = parse_frame(frame);
        assert_eq!(
            parsed.is_err(),
            name.starts_with("invalid-"),
            "{name}: {parsed:?}"
        );
    }
    let strategy = fuzz::mutated(&corpus, TOKENS, 8);
    fuzz::run("command_mutations", 3000, strategy, |(_, bytes)| {
        let frame = String::from_utf8_lossy(&bytes);
        let Ok(commands) = parse_frame(&frame) else {
            return Ok(());
        };
        let lines = frame.split('\n').filter(|l| !l.trim().is_empty()).count();
        prop_assert_eq!(commands.len(), lines);
        prop_assert!(footprint(&commands) <= BYTES_PER_FRAME_BYTE * frame.len().max(16));
        for command in commands {
            let (_, req) = project(command);
            // Whatever the decoder kept came from the frame: no field outgrows it.
            let debug = format!("{req:?}");
            prop_assert!(debug.len() <= 64 * frame.len() + 256, "{}", debug);
        }
        Ok(())
    });
}
