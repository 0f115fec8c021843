//! Namespaces: per-channel-family options (`user`, `stock`, ...) and their
//! configuration. Built-ins are merged with configured overrides field by field,
//! so `HERALD_NAMESPACES__USER__HISTORY_SIZE=10` changes only that one option.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Who may subscribe to a namespace's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscribePolicy {
    /// Any connection, anonymous ones included.
    Anonymous,
    /// Any authenticated connection.
    Any,
    /// Only with a subscription token for that channel.
    Token,
    /// Only the user whose id is the part after `:`.
    Owner,
}

/// One namespace's configuration as written by the operator; unset fields keep their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway subscribes `<namespace>:<user id>` server-side on connect.
    pub personal: Option<bool>,
    /// Who may subscribe.
    pub subscribe: Option<SubscribePolicy>,
    /// Publications kept for recovery; 0 disables history (and offsets).
    pub history_size: Option<usize>,
    /// How long history is kept after the last publication.
    #[serde(default, deserialize_with = "crate::config::opt_duration")]
    pub history_ttl: Option<Duration>,
    /// A fresh subscription receives the latest publication in its reply.
    pub replay_latest: Option<bool>,
    /// Track who is subscribed (presence, presence_stats).
    pub presence: Option<bool>,
    /// Push join/leave events to subscribers.
    pub join_leave: Option<bool>,
    /// Clients may publish into the namespace's channels.
    pub client_publish: Option<bool>,
}

/// Resolved options of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// See [`Config::personal`].
    pub personal: bool,
    /// See [`Config::subscribe`].
    pub subscribe: SubscribePolicy,
    /// See [`Config::history_size`].
    pub history_size: usize,
    /// See [`Config::history_ttl`].
    pub history_ttl: Duration,
    /// See [`Config::replay_latest`].
    pub replay_latest: bool,
    /// See [`Config::presence`].
    pub presence: bool,
    /// See [`Config::join_leave`].
    pub join_leave: bool,
    /// See [`Config::client_publish`].
    pub client_publish: bool,
}

impl Options {
    /// Options of a namespace nobody configured: any authenticated subscriber, no history.
    pub const PLAIN: Options = Options {
        personal: false,
        subscribe: SubscribePolicy::Any,
        history_size: 0,
        history_ttl: Duration::ZERO,
        replay_latest: false,
        presence: false,
        join_leave: false,
        client_publish: false,
    };

    /// Whether publications carry offsets and can be recovered.
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    fn merged(mut self, c: &Config) -> Options {
        let o = &mut self;
        o.personal = c.personal.unwrap_or(o.personal);
        o.subscribe = c.subscribe.unwrap_or(o.subscribe);
        o.history_size = c.history_size.unwrap_or(o.history_size);
        o.history_ttl = c.history_ttl.unwrap_or(o.history_ttl);
        o.replay_latest = c.replay_latest.unwrap_or(o.replay_latest);
        o.presence = c.presence.unwrap_or(o.presence);
        o.join_leave = c.join_leave.unwrap_or(o.join_leave);
        o.client_publish = c.client_publish.unwrap_or(o.client_publish);
        if o.personal {
            o.subscribe = SubscribePolicy::Owner;
        }
        self
    }
}

/// Errors in namespace configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A namespace name that channels could never use.
    #[error("namespaces.{name}: invalid namespace name (use letters, digits, '_' and '-')")]
    BadName {
        /// The offending name.
        name: String,
    },
    /// Positive history size with zero TTL or the reverse.
    #[error("namespaces.{name}: history_size and history_ttl must both be set (or both zero)")]
    HalfHistory {
        /// The namespace.
        name: String,
    },
}

/// All namespaces of a node. `default` configures bare channel names (no `:`).
#[derive(Debug, Clone)]
pub struct Namespaces {
    by_name: HashMap<String, Arc<Options>>,
}

/// Name of the namespace that holds channels without a `:`.
pub const DEFAULT: &str = "default";

impl Namespaces {
    /// Built-in namespaces merged with configured ones.
    pub fn from_config(configured: &HashMap<String, Config>) -> Result<Namespaces, ConfigError> {
        let mut by_name = HashMap::new();
        for (name, options) in builtins() {
            by_name.insert(name.to_owned(), options);
        }
        for (name, cfg) in configured {
            let name = name.to_ascii_lowercase();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ConfigError::BadName { name });
            }
            let base = by_name.get(&name).cloned().unwrap_or(Options::PLAIN);
            let options = base.merged(cfg);
            if (options.history_size > 0) == options.history_ttl.is_zero() {
                return Err(ConfigError::HalfHistory { name });
            }
            by_name.insert(name, options);
        }
        Ok(Namespaces {
            by_name: by_name.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        })
    }

    /// Options of a namespace, if it exists.
    pub fn get(&self, name: &str) -> Option<&Arc<Options>> {
        self.by_name.get(name)
    }

    /// Every namespace's name, `default` included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Namespaces whose `<name>:<user>` channel every connection joins server-side.
    pub fn personal(&self) -> impl Iterator<Item = &str> {
        self.by_name
            .iter()
            .filter(|(_, o)| o.personal)
            .map(|(n, _)| n.as_str())
    }
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces::from_config(&HashMap::new()).expect("built-ins are valid")
    }
}

fn builtins() -> [(&'static str, Options); 3] {
    [
        (
            "user",
            Options {
                personal: true,
                subscribe: SubscribePolicy::Owner,
                history_size: 100,
                history_ttl: Duration::from_secs(300),
                ..Options::PLAIN
            },
        ),
        (
            "stock",
            Options {
                history_size: 1,
                history_ttl: Duration::from_secs(60),
                replay_latest: true,
                ..Options::PLAIN
            },
        ),
        (DEFAULT, Options::PLAIN),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_field_by_field() {
        let mut cfg = HashMap::new();
        cfg.insert(
            "user".to_owned(),
            Config {
                history_size: Some(7),
                ..Config::default()
            },
        );
        cfg.insert(
            "chat".to_owned(),
            Config {
                client_publish: Some(true),
                ..Config::default()
            },
        );
        let ns = Namespaces::from_config(&cfg).unwrap();
        let user = ns.get("user").unwrap();
        assert_eq!(user.history_size, 7);
        assert_eq!(user.history_ttl, Duration::from_secs(300));
        assert!(user.personal);
        assert!(ns.get("chat").unwrap().client_publish);
        assert!(!ns.get("chat").unwrap().has_history());
        assert_eq!(ns.personal().collect::<Vec<_>>(), ["user"]);
    }

    #[test]
    fn rejects_half_configured_history_and_bad_names() {
        let mut cfg = HashMap::new();
        cfg.insert(
            "chat".to_owned(),
            Config {
                history_size: Some(5),
                ..Config::default()
            },
        );
        assert!(matches!(
            Namespaces::from_config(&cfg),
            Err(ConfigError::HalfHistory { .. })
        ));
        let mut cfg = HashMap::new();
        cfg.insert("a:b".to_owned(), Config::default());
        assert!(matches!(
            Namespaces::from_config(&cfg),
            Err(ConfigError::BadName { .. })
        ));
    }
}
