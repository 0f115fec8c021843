//! `unsubscribe`: ends a user's subscriptions (or one connection's) to a
//! channel, on every node, through a control command.

use herald_core::control::Command;

use super::subscribe::UserChannel;
use super::Outcome;
use crate::Publisher;

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r = UserChannel::parse(api, body)?;
    api.control(Command::Unsubscribe {
        user: r.user,
        channel: r.channel,
        client: r.client,
    })
    .await
}
