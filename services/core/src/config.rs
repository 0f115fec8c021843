//! Serde helpers shared by every configuration section: human durations
//! (`"25s"`, `"5m"`) and lists given either as arrays or comma-separated strings
//! (the only form environment variables can carry).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Deserializes a duration from a humantime string (`"1h"`, `"500ms"`) or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(t.trim()).map_err(serde::de::Error::custom),
    }
}

/// Like [`duration`], for optional fields.
pub fn opt_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

/// Deserializes a list from an array or a comma-separated string; blanks are dropped.
pub fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::List(l) => l,
        Raw::Text(t) => t.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "duration")]
        d: Duration,
        #[serde(deserialize_with = "string_list")]
        l: Vec<String>,
    }

    #[test]
    fn parses_human_durations_and_comma_lists() {
        let p: Probe = serde_json::from_str(r#"{"d":"1m 5s","l":"a, b,,c"}"#).unwrap();
        assert_eq!(p.d, Duration::from_secs(65));
        assert_eq!(p.l, ["a", "b", "c"]);
        let p: Probe = serde_json::from_str(r#"{"d":3,"l":["x"]}"#).unwrap();
        assert_eq!(p.d, Duration::from_secs(3));
        assert_eq!(p.l, ["x"]);
        assert!(serde_json::from_str::<Probe>(r#"{"d":"soon","l":""}"#).is_err());
    }
}
