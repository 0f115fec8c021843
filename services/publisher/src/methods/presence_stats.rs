//! `presence_stats`: how many connections and users are in a channel
//! (namespaces with presence only).

use herald_core::channel_ops;

use super::{parse, raw, ChannelRequest, Outcome};
use crate::Publisher;

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: ChannelRequest = parse(body)?;
    let channel = api.channel(&r.channel)?;
    let s = channel_ops::presence_stats(&api.engine, &channel).await?;
    raw(&serde_json::json!({ "num_clients": s.num_clients, "num_users": s.num_users }))
}
