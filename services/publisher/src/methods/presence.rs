//! `presence`: who is in a channel (namespaces with presence only).

use herald_core::channel_ops;

use super::{parse, raw, ChannelRequest, Outcome};
use crate::Publisher;

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: ChannelRequest = parse(body)?;
    let channel = api.channel(&r.channel)?;
    let result = channel_ops::presence(&api.engine, &channel).await?;
    raw(&serde_json::json!({ "presence": result.presence }))
}
