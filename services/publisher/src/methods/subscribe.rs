//! `subscribe`: subscribes a user's connections (or one of them) to a channel,
//! on every node, through a control command.

use herald_core::control::Command;
use herald_core::protocol::Error;
use serde::Deserialize;

use super::{parse, Outcome};
use crate::Publisher;

/// A user (optionally one connection of theirs) and a channel; shared with `unsubscribe`.
#[derive(Deserialize)]
pub(super) struct UserChannel {
    #[serde(default)]
    pub(super) user: String,
    #[serde(default)]
    pub(super) channel: String,
    pub(super) client: Option<String>,
}

impl UserChannel {
    /// Parses and checks the request: a known channel and a user.
    pub(super) fn parse(api: &Publisher, body: &str) -> Result<UserChannel, crate::ApiError> {
        let r: UserChannel = parse(body)?;
        api.channel(&r.channel)?;
        if r.user.is_empty() {
            return Err(Error::BadRequest.into());
        }
        Ok(r)
    }
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r = UserChannel::parse(api, body)?;
    api.control(Command::Subscribe {
        user: r.user,
        channel: r.channel,
        client: r.client,
    })
    .await
}
