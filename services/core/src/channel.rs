//! Channel names: `namespace:rest` or a bare name in the default namespace.
//! Parsing checks length and characters and finds the namespace's options; it
//! does not decide who may subscribe (that is the gateway's session).

use std::sync::Arc;

use crate::namespace::{self, Namespaces, Options};

/// Longest accepted channel name, in bytes.
pub const MAX_LEN: usize = 255;

/// A validated channel name with its namespace's options.
#[derive(Debug, Clone)]
pub struct Channel {
    name: Arc<str>,
    split: Option<usize>,
    options: Arc<Options>,
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// Empty, too long, or with characters outside the allowed set.
    #[error("invalid channel name")]
    BadName,
    /// The namespace before `:` is not configured.
    #[error("unknown channel")]
    UnknownNamespace,
}

impl Channel {
    /// Parses an untrusted channel name.
    pub fn parse(name: &str, namespaces: &Namespaces) -> Result<Channel, ChannelError> {
        if name.is_empty() || name.len() > MAX_LEN || !name.bytes().all(is_allowed) {
            return Err(ChannelError::BadName);
        }
        let (ns, split) = match name.find(':') {
            Some(i) if i > 0 && i + 1 < name.len() && !name[i + 1..].contains(':') => {
                (&name[..i], Some(i))
            }
            Some(_) => return Err(ChannelError::BadName),
            None => (namespace::DEFAULT, None),
        };
        let options = namespaces
            .get(ns)
            .ok_or(ChannelError::UnknownNamespace)?
            .clone();
        Ok(Channel {
            name: Arc::from(name),
            split,
            options,
        })
    }

    /// The full channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shared full name, cheap to clone into maps.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The part after `:` (the whole name in the default namespace).
    pub fn rest(&self) -> &str {
        match self.split {
            Some(i) => &self.name[i + 1..],
            None => &self.name,
        }
    }

    /// The namespace's name ([`namespace::DEFAULT`] for a bare name).
    pub fn namespace(&self) -> &str {
        match self.split {
            Some(i) => &self.name[..i],
            None => namespace::DEFAULT,
        }
    }

    /// The namespace's options.
    pub fn options(&self) -> &Options {
        &self.options
    }
}

fn is_allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.' | b'@' | b'=' | b'+' | b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespaced_and_bare_names() {
        let ns = Namespaces::default();
        let c = Channel::parse("user:42", &ns).unwrap();
        assert_eq!(c.rest(), "42");
        assert!(c.options().personal);
        let c = Channel::parse("news", &ns).unwrap();
        assert_eq!(c.rest(), "news");
        assert!(!c.options().has_history());
    }

    #[test]
    fn rejects_bad_names_and_unknown_namespaces() {
        let ns = Namespaces::default();
        for bad in [
            "",
            "user:",
            ":x",
            "a:b:c",
            "sp ace",
            "new\nline",
            &"x".repeat(256),
        ] {
            assert_eq!(
                Channel::parse(bad, &ns).unwrap_err(),
                ChannelError::BadName,
                "{bad:?}"
            );
        }
        assert_eq!(
            Channel::parse("nope:1", &ns).unwrap_err(),
            ChannelError::UnknownNamespace
        );
    }
}
