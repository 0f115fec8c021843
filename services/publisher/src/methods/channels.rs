//! `channels`: channels with subscribers over every node and their subscriber
//! counts, optionally filtered by a glob pattern (`*`, `?`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{parse, raw, unavailable, Outcome};
use crate::Publisher;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    pattern: String,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse(body)?;
    let channels = api.engine.channels().await.map_err(unavailable)?;
    let matching: BTreeMap<String, serde_json::Value> = channels
        .into_iter()
        .filter(|(name, _)| r.pattern.is_empty() || glob_match(&r.pattern, name))
        .map(|(name, n)| (name, serde_json::json!({ "num_clients": n })))
        .collect();
    raw(&serde_json::json!({ "channels": matching }))
}

/// Matches `*` (any run) and `?` (one character) wildcards.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob_match("user:*", "user:42"));
        assert!(glob_match("*:4?", "user:42"));
        assert!(!glob_match("stock:*", "user:42"));
        assert!(glob_match("*", ""));
    }
}
