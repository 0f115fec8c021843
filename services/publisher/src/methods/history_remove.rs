//! `history_remove`: drops a channel's publications; its stream position stays.

use super::{parse, raw, unavailable, ChannelRequest, Empty, Outcome};
use crate::Publisher;

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: ChannelRequest = parse(body)?;
    let channel = api.channel(&r.channel)?;
    api.engine
        .remove_history(&channel)
        .await
        .map_err(unavailable)?;
    raw(&Empty {})
}
