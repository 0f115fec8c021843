//! The plain `ws` peer: the server greets with `{"connected":..}` once the personal channel is
//! live, `{"subscribe":"ch"}` is answered by `{"subscribed":"ch"}`, publications are
//! `{"channel":..,"data":..}`. Pings are WebSocket control frames, answered by the WebSocket layer.

use serde::Deserialize;
use serde_json::Value;

use super::conn::{Connection, Event, Payload};

/// Waits for the greeting and subscribes `topic`.
pub async fn setup(s: &mut Connection, topic: Option<&str>) -> anyhow::Result<()> {
    await_key(s, "connected").await?;
    if let Some(channel) = topic {
        s.send(serde_json::json!({ "subscribe": channel }).to_string())
            .await?;
        await_key(s, "subscribed").await?;
    }
    Ok(())
}

async fn await_key(s: &mut Connection, key: &str) -> anyhow::Result<()> {
    loop {
        let text = s.recv_text().await?;
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            if let Some(e) = v.get("error") {
                anyhow::bail!("server error: {e}");
            }
            if v.get(key).is_some() {
                return Ok(());
            }
        }
    }
}

#[derive(Deserialize)]
struct Frame {
    data: Option<Payload>,
}

/// Decodes one frame.
pub fn decode(text: &str, out: &mut Vec<Event>) {
    if let Ok(Frame { data: Some(p) }) = serde_json::from_str::<Frame>(text) {
        out.push(Event::Pub(p, None));
    }
}
