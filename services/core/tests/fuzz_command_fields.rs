//! Property tests of what checks a command's fields: channel names (against
//! the namespaces), namespace names in configuration, the nesting depth of
//! publication data and the newline stripping of raw JSON. Each is compared
//! with its rule written out plainly, on names and JSON of any shape.

use std::collections::HashMap;
use std::time::Duration;

use herald_core::channel::{ChannelError, MAX_LEN};
use herald_core::namespace::{self, ConfigError, Namespaces};
use herald_core::publication::{is_deeper_than, sanitize};
use herald_core::Channel;
use herald_testkit::fuzz;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;

/// Characters allowed in channel names, as the protocol documentation lists them.
const ALLOWED: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.@=+#";

fn channel_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:_.@=+#-]{0,12}",
        // Allowed characters with a few that are not.
        "[a-z0-9:_.@=+# /\\\n\t\x00é,;*?%-]{0,10}",
        "(user|stock|default|chat|nope|User)?:?[a-z0-9:]{0,8}",
        "\\PC{0,10}",
        "(?s).{0,12}",
        "[a-z:]{250,260}",
    ]
}

#[test]
fn channel_names_are_judged_by_the_rules() {
    let mut configured = HashMap::new();
    configured.insert("chat".to_owned(), namespace::Config::default());
    let namespaces = Namespaces::from_config(&configured).unwrap();
    fuzz::run("channel_names", 3000, channel_name(), |name| {
        let colons = name.matches(':').count();
        let bad = name.is_empty()
            || name.len() > MAX_LEN
            || !name.chars().all(|c| ALLOWED.contains(c))
            || colons > 1
            || (colons == 1 && (name.starts_with(':') || name.ends_with(':')));
        let (ns, rest) = name.split_once(':').unwrap_or((namespace::DEFAULT, &name));
        match Channel::parse(&name, &namespaces) {
            Err(ChannelError::BadName) => prop_assert!(bad, "{:?} refused", name),
            Err(ChannelError::UnknownNamespace) => {
                prop_assert!(!bad && namespaces.get(ns).is_none(), "{:?}", name)
            }
            Ok(channel) => {
                prop_assert!(!bad, "{:?} accepted", name);
                prop_assert_eq!(channel.name(), name.as_str());
                prop_assert_eq!(channel.namespace(), ns);
                prop_assert_eq!(channel.rest(), rest);
                prop_assert_eq!(channel.options(), &**namespaces.get(ns).unwrap());
            }
        }
        Ok(())
    });
}

#[test]
fn namespace_names_and_history_are_judged_by_the_rules() {
    let config = (
        prop::option::of(0usize..3),
        prop::option::of((0u64..3).prop_map(Duration::from_secs)),
    );
    // Names that differ only in case configure one namespace twice: not this property.
    let names = prop::collection::hash_map("\\PC{0,6}|[a-zA-Z_-]{1,6}", config, 0..4).prop_filter(
        "names distinct in lower case",
        |names| {
            let lower: std::collections::HashSet<_> =
                names.keys().map(|n| n.to_ascii_lowercase()).collect();
            lower.len() == names.len()
        },
    );
    fuzz::run("namespace_config", 1000, names, |names| {
        let configured: HashMap<String, namespace::Config> = names
            .iter()
            .map(|(name, (size, ttl))| {
                let config = namespace::Config {
                    history_size: *size,
                    history_ttl: *ttl,
                    ..namespace::Config::default()
                };
                (name.clone(), config)
            })
            .collect();
        let bad_name = names.keys().any(|n| {
            n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        match Namespaces::from_config(&configured) {
            Err(ConfigError::BadName { .. }) => prop_assert!(bad_name),
            Err(ConfigError::HalfHistory { name }) => {
                let options = Namespaces::from_config(&HashMap::new()).unwrap();
                let base = options.get(&name).map(|o| (o.history_size, o.history_ttl));
                let (size, ttl) = names
                    .iter()
                    .find(|(n, _)| n.to_ascii_lowercase() == name)
                    .map(|(_, c)| *c)
                    .unwrap();
                let (base_size, base_ttl) = base.unwrap_or((0, Duration::ZERO));
                let (size, ttl) = (size.unwrap_or(base_size), ttl.unwrap_or(base_ttl));
                prop_assert!((size > 0) == ttl.is_zero(), "{}: {} {:?}", name, size, ttl);
            }
            Ok(namespaces) => {
                prop_assert!(!bad_name);
                for name in names.keys() {
                    let channel = format!("{}:x", name.to_ascii_lowercase());
                    prop_assert!(Channel::parse(&channel, &namespaces).is_ok(), "{}", channel);
                }
            }
        }
        Ok(())
    });
}

/// JSON of any shape, with brackets and quotes inside its strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        "[\\[\\]{}\"\\\\a\n]{0,6}".prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(12, 48, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[{\\[\"a]{0,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Levels of arrays and objects (`1` is 0 deep, `{}` 1).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn data_depth_is_the_nesting_of_arrays_and_objects() {
    let strategy = (json_value(), any::<bool>(), 0usize..14);
    fuzz::run("data_depth", 2000, strategy, |(value, pretty, max)| {
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            value.to_string()
        };
        prop_assert_eq!(is_deeper_than(&text, max), depth(&value) > max, "{}", text);
        Ok(())
    });
}

#[test]
fn depth_of_any_text_grows_with_the_limit_and_never_panics() {
    fuzz::run(
        "data_depth_any",
        2000,
        ("(?s).{0,64}", 0usize..8),
        |(text, max)| {
            // Deeper than `max + 1` implies deeper than `max`.
            prop_assert!(!is_deeper_than(&text, max + 1) || is_deeper_than(&text, max));
            Ok(())
        },
    );
}

#[test]
fn sanitized_json_has_no_raw_newlines_and_the_same_value() {
    fuzz::run("sanitize", 1000, json_value(), |value| {
        let raw = RawValue::from_string(serde_json::to_string_pretty(&value).unwrap()).unwrap();
        let clean = sanitize(raw);
        prop_assert!(!clean.get().contains(['\n', '\r']));
        prop_assert_eq!(serde_json::from_str::<Value>(clean.get()).unwrap(), value);
        Ok(())
    });
}
