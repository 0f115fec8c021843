//! Fuzz helpers for the property tests of Herald's untrusted-input parsers:
//! the committed corpus (`fuzz/corpus/<target>/`), byte-level mutations of
//! its entries, and a bounded run that persists failing seeds in
//! `fuzz/regressions/` and prints how many cases it ran. No parser here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseResult, TestRunner};

/// The repository's `fuzz/` directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file of `fuzz/corpus/<target>/` as its name and bytes, sorted by name;
/// panics when there are none (a corpus gone missing must not pass as empty).
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let path = dir().join("corpus").join(target);
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", path.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("corpus file"))
        })
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "corpus {} is empty", path.display());
    entries
}

/// One edit a mutation applies; positions and indices are taken modulo the
/// input's length so that every edit applies to every input.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flips one bit.
    Flip(usize, u8),
    /// Overwrites one byte.
    Set(usize, u8),
    /// Inserts one byte.
    Insert(usize, u8),
    /// Deletes up to `n` bytes.
    Delete(usize, u8),
    /// Inserts one of the `tokens` the target's grammar is made of.
    Token(usize, usize),
    /// Repeats a slice of up to 64 bytes right after itself.
    Repeat(usize, u8),
    /// Keeps only the first bytes.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1u8..16).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(p, t)| Edit::Token(p, t)),
        (any::<usize>(), 1u8..64).prop_map(|(p, n)| Edit::Repeat(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Applies `edits` to `input` in order.
pub fn apply(mut input: Vec<u8>, edits: &[Edit], tokens: &[&[u8]]) -> Vec<u8> {
    for edit in edits {
        let len = input.len();
        let at = |p: usize| p % (len + 1);
        match *edit {
            Edit::Flip(p, bit) if len > 0 => input[p % len] ^= 1 << bit,
            Edit::Set(p, b) if len > 0 => input[p % len] = b,
            Edit::Insert(p, b) => input.insert(at(p), b),
            Edit::Delete(p, n) if len > 0 => {
                let start = p % len;
                input.drain(start..(start + usize::from(n)).min(len));
            }
            Edit::Token(p, t) if !tokens.is_empty() => {
                let token = tokens[t % tokens.len()];
                input.splice(at(p)..at(p), token.iter().copied());
            }
            Edit::Repeat(p, n) if len > 0 => {
                let start = p % len;
                let end = (start + usize::from(n)).min(len);
                let copy = input[start..end].to_vec();
                input.splice(end..end, copy);
            }
            Edit::Truncate(p) => input.truncate(at(p)),
            _ => {}
        }
    }
    input
}

/// A corpus entry (as its index and bytes) with up to `max_edits` edits applied;
/// shrinks towards the first entry and fewer edits.
pub fn mutated(
    corpus: &[(String, Vec<u8>)],
    tokens: &'static [&'static [u8]],
    max_edits: usize,
) -> impl Strategy<Value = (usize, Vec<u8>)> {
    let entries: Vec<Vec<u8>> = corpus.iter().map(|(_, bytes)| bytes.clone()).collect();
    (
        0..entries.len(),
        proptest::collection::vec(edit(), 0..=max_edits),
    )
        .prop_map(move |(i, edits)| (i, apply(entries[i].clone(), &edits, tokens)))
}

/// Cases each property runs: `PROPTEST_CASES` when set (the long runs),
/// else `default` (small enough that `cargo test` stays fast).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `test` on `cases(default)` values of `strategy`, first replaying the
/// seeds saved in `fuzz/regressions/<name>.txt` (where a new failure's seed is
/// saved), then prints `fuzz <name>: N cases in T` on stderr, past the test
/// harness's capture so that CI logs show it. Panics on a failure, with the
/// shrunk input.
pub fn run<S: Strategy>(
    name: &str,
    default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    // proptest wants a `&'static str`; one small string per property and test process.
    let file = dir().join("regressions").join(format!("{name}.txt"));
    let file: &'static str = Box::leak(file.to_string_lossy().into_owned().into_boxed_str());
    let cases = cases(default);
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    };
    let ran = AtomicUsize::new(0);
    let started = Instant::now();
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    let _ = writeln!(
        std::io::stderr(),
        "fuzz {name}: {} cases ({cases} asked) in {:.2?}",
        ran.load(Ordering::Relaxed),
        started.elapsed()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// `name` with each letter's case chosen by a bit of `mask`.
pub fn recase(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if (mask >> (i % 64)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}
