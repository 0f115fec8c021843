//! `publish`: one publication into one channel; answers its stream position.

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
    raw(&api
        .publish(&r.channel, data, r.skip_history, r.tags)
        .await?)
}

impl Publisher {
    /// Publishes into the channel called `name` (shared with `broadcast`).
    pub(super) async fn publish(
        &self,
        name: &str,
        data: RawJson,
        skip_history: bool,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<Published, ApiError> {
        let channel = self.channel(name)?;
        let options = PublishOptions {
            info: None,
            tags,
            skip_history,
            idempotency_key: None,
        };
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
