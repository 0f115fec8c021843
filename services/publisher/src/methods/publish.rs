//! `publish`: one publication into one channel; answers its stream position.
//! With an `idempotency_key`, a repeat into the same channel within five
//! minutes answers the first position and publishes nothing.

use std::collections::BTreeMap;

use herald_core::engine::PublishOptions;
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

/// Refuses an empty or over-long idempotency key (error 107).
pub(super) fn check_idempotency_key(key: &Option<String>) -> Result<(), ApiError> {
    match key {
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY => Err(Error::BadRequest.into()),
        _ => Ok(()),
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
    check_idempotency_key(&r.idempotency_key)?;
    let options = PublishOptions {
        info: None,
        tags: r.tags,
        skip_history: r.skip_history,
        idempotency_key: r.idempotency_key,
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
        self.metrics.publications.with_label_values(&["api"]).inc();
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
    fn idempotency_keys_are_non_empty_and_short() {
        let code = |key: Option<&str>| {
            check_idempotency_key(&key.map(String::from))
                .err()
                .map(|e| e.error.code())
        };
        assert_eq!(code(None), None);
        assert_eq!(code(Some("order-42")), None);
        assert_eq!(code(Some(&"k".repeat(MAX_IDEMPOTENCY_KEY))), None);
        assert_eq!(code(Some(&"k".repeat(MAX_IDEMPOTENCY_KEY + 1))), Some(107));
        assert_eq!(code(Some("")), Some(107));
    }
}
