//! Socket.IO v5 over Engine.IO v4 WebSocket transport, spoken directly: open packet `0{..}`,
//! namespace connect `40`, acknowledged `subscribe` event, `publication` events, ping `2` → `3`.

use anyhow::bail;
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::conn::{Connection, Event, Payload};

/// Waits for the open packet, joins the default namespace and subscribes `topic`.
pub async fn setup(s: &mut Connection, topic: Option<&str>) -> anyhow::Result<()> {
    let open = s.recv_text().await?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open:?}");
    }
    s.send("40").await?;
    await_packet(s, "40").await?;
    if let Some(channel) = topic {
        // Event with ack id 1: `421[...]`, acknowledged by `431[...]`.
        s.send(format!("421{}", serde_json::json!(["subscribe", channel])))
            .await?;
        await_packet(s, "431").await?;
    }
    Ok(())
}

/// Waits for a packet starting with `prefix`, answering pings meanwhile.
async fn await_packet(s: &mut Connection, prefix: &str) -> anyhow::Result<String> {
    loop {
        let p = s.recv_text().await?;
        if p.starts_with(prefix) {
            return Ok(p);
        }
        match p.as_str() {
            "2" => s.send("3").await?,
            _ if p.starts_with("44") => bail!("namespace connect refused: {p}"),
            _ if p.starts_with('1') => bail!("engine.io close"),
            _ => {}
        }
    }
}

#[derive(Deserialize)]
struct Publication {
    data: Payload,
}

/// Decodes one packet: `publication` events, pings, namespace disconnect and engine close.
pub fn decode(text: &str, out: &mut Vec<Event>) {
    if let Some(body) = text.strip_prefix("42") {
        if let Ok((_, p)) = serde_json::from_str::<(IgnoredAny, Publication)>(body) {
            out.push(Event::Pub(p.data, None));
        }
        return;
    }
    match text {
        "2" => out.push(Event::Ping),
        "1" => out.push(Event::Closed(None, "engine.io close".to_owned())),
        _ if text.starts_with("41") => {
            out.push(Event::Closed(None, "namespace disconnect".to_owned()))
        }
        _ => {}
    }
}
