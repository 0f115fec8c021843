//! A Server-Sent Events client for tests: reads `id:`/`data:` events (comments
//! are counted as pings) with a deadline per wait.

use std::collections::VecDeque;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::client::WAIT;

/// One SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` field, parsed as JSON.
    pub data: Value,
}

/// An open event stream.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    events: VecDeque<Event>,
    /// Comment lines (server pings) seen.
    pub pings: u64,
}

impl SseClient {
    /// Opens `url`, optionally resuming with `Last-Event-ID`; a non-200 answer is an error
    /// carrying the status.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> anyhow::Result<SseClient> {
        SseClient::open_with(&reqwest::Client::new(), url, last_event_id).await
    }

    /// Like [`SseClient::open`], through `http` (an https client, for one).
    pub async fn open_with(
        http: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> anyhow::Result<SseClient> {
        let mut req = http.get(url);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await?;
        if response.status() != 200 {
            bail!("status {}", response.status().as_u16());
        }
        Ok(SseClient {
            response,
            buffer: String::new(),
            events: VecDeque::new(),
            pings: 0,
        })
    }

    /// The next event.
    pub async fn next(&mut self) -> anyhow::Result<Event> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .context("timed out waiting for an event")??
                .context("stream ended")?;
            self.buffer.push_str(std::str::from_utf8(&chunk)?);
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v)?);
                    } else if line.starts_with(':') {
                        self.pings += 1;
                    }
                }
                if let Some(data) = data {
                    self.events.push_back(Event { id, data });
                }
            }
        }
    }
}
