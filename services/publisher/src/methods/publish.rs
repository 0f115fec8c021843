//! `publish`: one publication into one channel; answers its stream position.
//! With an `idempotency_key`, a repeat into the same channel within five
//! minutes answers the first position and publishes nothing.

use std::collections::BTreeMap;

use herald_core::engine::PublishOptions;
use herald_core::metrics::labels::Source;
use herald_core::protocol::Error;
use herald_core::publication::RawJson;
use serde::{Deserialize, Serialize};

use super::{parse, raw, unavailable, Outcome};
use crate::{ApiError, Publisher};

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    channel: String,
    data: Option<RawJson>,
    #[serde(default)]
    skip_history: bool,
    tags: Option<BTreeMap<String, String>>,
    idempotency_key: Option<String>,
}

/// The longest `idempotency_key` accepted, in bytes.
pub(super) const MAX_IDEMPOTENCY_KEY: usize = 128;

/// The request's idempotency key: an empty one means none, as in Centrifugo's
/// API; an over-long one is refused (error 107).
pub(super) fn idempotency_key(key: Option<String>) -> Result<Option<String>, ApiError> {
    match key {
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY => Err(Error::BadRequest.into()),
        Some(k) if k.is_empty() => Ok(None),
        key => Ok(key),
    }
}

/// A publication's place in its channel's stream (empty without history).
#[derive(Serialize, Default)]
pub(super) struct Published {
    #[serde(skip_serializing_if = "is_zero")]
    offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    epoch: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse(body)?;
    let data = r.data.ok_or(Error::BadRequest)?;
    let options = PublishOptions {
        info: None,
        tags: r.tags,
        skip_history: r.skip_history,
        idempotency_key: idempotency_key(r.idempotency_key)?,
    };
    raw(&api.publish(&r.channel, data, options).await?)
}

impl Publisher {
    /// Publishes into the channel called `name` (shared with `broadcast`).
    pub(super) async fn publish(
        &self,
        name: &str,
        data: RawJson,
        options: PublishOptions,
    ) -> Result<Published, ApiError> {
        let channel = self.channel(name)?;
        let timer = self.metrics.publish_seconds.start_timer();
        let position = self
            .engine
            .publish(&channel, data, options)
            .await
            .map_err(|e| {
                self.metrics.engine_errors.inc();
                unavailable(e)
            })?;
        timer.observe_duration();
        self.metrics.published(Source::Api, channel.name());
        Ok(Published {
            offset: position.offset,
            epoch: position.epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_short_and_empty_means_none() {
        let key =
            |k: Option<&str>| idempotency_key(k.map(String::from)).map_err(|e| e.error.code());
        assert_eq!(key(None), Ok(None));
        assert_eq!(key(Some("")), Ok(None));
        assert_eq!(key(Some("order-42")), Ok(Some("order-42".into())));
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY);
        assert_eq!(key(Some(&longest)), Ok(Some(longest.clone())));
        assert_eq!(key(Some(&"k".repeat(MAX_IDEMPOTENCY_KEY + 1))), Err(107));
    }
}
