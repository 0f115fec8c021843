//! Redis key and pub/sub channel names. Every per-channel name carries the
//! channel in a `{...}` hash tag, so a channel's stream, meta hash, presence and
//! pub/sub channel live in one Cluster slot and one Lua script may touch them all.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// Names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    pubsub_prefix: String,
    probe_prefix: String,
    control: String,
    node_prefix: String,
}

impl Keys {
    /// Names under `prefix`; braces would break the hash tags, so they are refused.
    pub(super) fn new(prefix: &str) -> Result<Keys, String> {
        if prefix.contains(['{', '}']) {
            return Err(format!("redis_prefix {prefix:?} must not contain braces"));
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
            pubsub_prefix: format!("{prefix}.pub.{{"),
            probe_prefix: format!("{prefix}.probe."),
            control: format!("{prefix}.control"),
            node_prefix: format!("{prefix}.node."),
        })
    }

    /// The history stream: entry id `<offset>-0`, field `d` holds the publication.
    pub(super) fn stream(&self, channel: &str) -> String {
        format!("{}.stream.{{{channel}}}", self.prefix)
    }

    /// The meta hash: `s` is the top offset, `e` the epoch.
    pub(super) fn meta(&self, channel: &str) -> String {
        format!("{}.meta.{{{channel}}}", self.prefix)
    }

    /// Presence: client id -> `ClientInfo` JSON.
    pub(super) fn presence(&self, channel: &str) -> String {
        format!("{}.presence.{{{channel}}}", self.prefix)
    }

    /// Presence expiry: sorted set of client ids scored by expiry time (ms).
    pub(super) fn presence_expiry(&self, channel: &str) -> String {
        format!("{}.presence_exp.{{{channel}}}", self.prefix)
    }

    /// The first result (`offset:epoch`) of a publish into `channel` with an
    /// idempotency `key`; the key follows the hash tag, so it may hold anything.
    pub(super) fn result(&self, channel: &str, key: &str) -> String {
        format!("{}.idem.{{{channel}}}.{key}", self.prefix)
    }

    /// The pub/sub channel carrying a channel's publications, joins and leaves.
    pub(super) fn pubsub(&self, channel: &str) -> String {
        format!("{}{channel}}}", self.pubsub_prefix)
    }

    /// The channel name inside a pub/sub channel name made by [`Keys::pubsub`].
    pub(super) fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub
            .strip_prefix(self.pubsub_prefix.as_str())?
            .strip_suffix('}')
    }

    /// The cluster-wide control channel (plain `PUBLISH`, even in Cluster).
    pub(super) fn control(&self) -> String {
        self.control.clone()
    }

    /// Whether a pub/sub channel name is the control channel.
    pub(super) fn is_control(&self, pubsub: &str) -> bool {
        pubsub == self.control
    }

    /// The channel of commands for node `uid` alone (emulation requests).
    pub(super) fn node(&self, uid: &str) -> String {
        format!("{}{uid}", self.node_prefix)
    }

    /// Whether a pub/sub channel name is a node's own channel.
    pub(super) fn is_node(&self, pubsub: &str) -> bool {
        pubsub.starts_with(self.node_prefix.as_str())
    }

    /// Hash of live nodes: node uid -> heartbeat JSON.
    pub(super) fn nodes(&self) -> String {
        format!("{}.nodes", self.prefix)
    }

    /// One node's channel map, refreshed with its heartbeat.
    pub(super) fn node_channels(&self, uid: &str) -> String {
        format!("{}.node_channels.{uid}", self.prefix)
    }

    /// A readiness probe channel of subscriber connection `conn`; `tag` pins it to a Cluster slot.
    pub(super) fn probe(&self, uid: &str, conn: usize, tag: &str) -> String {
        format!("{}{uid}.{conn}.{{{tag}}}", self.probe_prefix)
    }

    /// Whether a pub/sub channel name is a probe channel.
    pub(super) fn is_probe(&self, pubsub: &str) -> bool {
        pubsub.starts_with(self.probe_prefix.as_str())
    }
}

/// A stable hash of a channel name, used to pick its subscriber connection and worker.
pub(super) fn spread(channel: &str) -> usize {
    let mut h = DefaultHasher::new();
    channel.hash(&mut h);
    h.finish() as usize
}

/// A hash tag whose Cluster slot lies in `start..=end` (probe channels cover every master).
pub(super) fn tag_in_slots(start: u16, end: u16) -> String {
    (0u32..)
        .map(|n| format!("p{n}"))
        .find(|tag| (start..=end).contains(&fred::util::redis_keyslot(tag.as_bytes())))
        .expect("some tag hashes into every non-empty slot range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::util::redis_keyslot;

    #[test]
    fn a_channels_names_share_one_slot() {
        let k = Keys::new("herald").unwrap();
        let ch = "user:42";
        let slot = redis_keyslot(ch.as_bytes());
        for name in [
            k.stream(ch),
            k.meta(ch),
            k.presence(ch),
            k.presence_expiry(ch),
            k.pubsub(ch),
            k.result(ch, "retry-1"),
            k.result(ch, "}{odd}"),
        ] {
            assert_eq!(redis_keyslot(name.as_bytes()), slot, "{name}");
        }
        assert_eq!(k.pubsub(ch), "herald.pub.{user:42}");
        assert_eq!(k.channel_of(&k.pubsub(ch)), Some(ch));
        assert_eq!(k.channel_of("herald.control"), None);
        assert!(Keys::new("a{b").is_err());
    }

    #[test]
    fn probe_tags_land_in_their_range() {
        for (start, end) in [(0, 5460), (5461, 10922), (10923, 16383), (100, 100)] {
            let tag = tag_in_slots(start, end);
            assert!((start..=end).contains(&redis_keyslot(tag.as_bytes())));
        }
        let k = Keys::new("h").unwrap();
        let probe = k.probe("uid", 1, "p7");
        assert!(k.is_probe(&probe));
        assert_eq!(redis_keyslot(probe.as_bytes()), redis_keyslot(b"p7"));
    }
}
