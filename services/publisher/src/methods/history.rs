//! `history`: a page of a channel's publications and its stream position, by
//! the limit rules shared with clients (`herald_core::channel_ops`).

use herald_core::channel_ops::{self, API_HISTORY_CAP};
use herald_core::publication::StreamPosition;
use serde::Deserialize;

use super::{parse, raw, Outcome};
use crate::Publisher;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    limit: i64,
    since: Option<StreamPosition>,
    #[serde(default)]
    reverse: bool,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse(body)?;
    let channel = api.channel(&r.channel)?;
    let engine = &api.engine;
    let result = channel_ops::history(
        engine,
        &channel,
        r.limit,
        r.since,
        r.reverse,
        API_HISTORY_CAP,
    )
    .await?;
    raw(&result)
}
