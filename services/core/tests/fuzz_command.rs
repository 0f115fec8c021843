//! Property tests of the command decoder (`parse_frame`, `Command::into_request`):
//! the committed corpus (`fuzz/corpus/command/`: frames as the centrifuge SDK
//! sends them, batches, every command type, malformed ones) and mutations of
//! it never panic and give bounded output; any commands a client encodes
//! come back as sent, one per line, whatever whitespace surrounds them.

#[path = "support/command_model.rs"]
mod command_model;

use command_model::{encode, project, rank, req, Req};
use herald_core::protocol::command::{parse_frame, Command};
use herald_testkit::fuzz;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

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
