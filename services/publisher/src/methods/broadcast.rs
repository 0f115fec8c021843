//! `broadcast`: one payload into several channels at once; answers one result
//! or error per channel, in the order given. An `idempotency_key` applies to
//! each channel on its own, as in `publish`.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use herald_core::engine::PublishOptions;
use herald_core::protocol::Error;
use herald_core::publication::RawJson;
use serde::Deserialize;

use super::publish::idempotency_key;
use super::{parse, raw, Outcome};
use crate::Publisher;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    channels: Vec<String>,
    data: Option<RawJson>,
    #[serde(default)]
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
    idempotency_key: Option<String>,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse(body)?;
    let data = r.data.ok_or(Error::BadRequest)?;
    if r.channels.is_empty() {
        return Err(Error::BadRequest.into());
    }
    let key = idempotency_key(r.idempotency_key)?;
    // Concurrently on the current task, keeping the order of the channels.
    let publishes = r.channels.iter().map(|name| {
        let options = PublishOptions {
            info: None,
            tags: r.tags.clone(),
            skip_history: r.skip_history,
            idempotency_key: key.clone(),
            trace: None,
        };
        let data = data.clone();
        async move { api.publish(name, data, options).await }
    });
    let mut responses = Vec::with_capacity(r.channels.len());
    for outcome in join_all(publishes).await {
        responses.push(match outcome {
            Ok(result) => serde_json::json!({ "result": result }),
            Err(e) => serde_json::json!({ "error": e.error }),
        });
    }
    raw(&serde_json::json!({ "responses": responses }))
}
