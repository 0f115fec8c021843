//! `info`: every live node, as its heartbeat describes it.

use super::{raw, unavailable, Outcome};
use crate::Publisher;

pub(super) async fn call(api: &Publisher, _body: &str) -> Outcome {
    let nodes = api.engine.nodes().await.map_err(unavailable)?;
    raw(&serde_json::json!({ "nodes": nodes }))
}
