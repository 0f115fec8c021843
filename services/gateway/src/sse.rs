//! The Server-Sent Events transport (`/connection/sse`) for one-way clients
//! such as the browser's `EventSource`. Pushes are sent without the `push`
//! wrapper, as Centrifugo's unidirectional transports do; every publication
//! event carries an `id:` encoding the connection's stream positions, so the
//! browser's own reconnect (`Last-Event-ID`) resumes without loss.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{BufMut, Bytes, BytesMut};
use herald_core::metrics::labels::Transport;
use herald_core::protocol::command::{ConnectRequest, SubscribeRequest};
use herald_core::protocol::{Disconnect, Request};
use prometheus::IntGauge;
use serde::Deserialize;
use serde_json::Value;

use crate::admission::Slot;
use crate::cors;
use crate::outbox::Outbox;
use crate::session::{Session, MAX_COMMANDS_PER_FRAME};
use crate::write_stats::WriteStats;
use crate::Gateway;

/// `GET /connection/sse` query.
#[derive(Debug, Deserialize)]
pub struct SseQuery {
    /// Connection token.
    token: Option<String>,
    /// Centrifugo's form: a JSON connect request (`{"token":..}`).
    cf_connect: Option<String>,
    /// Extra channels to subscribe, comma-separated (permission-checked).
    channels: Option<String>,
}

/// Stream positions per channel: offset and epoch.
type Positions = BTreeMap<String, (u64, String)>;

/// `GET /connection/sse`: answers from an accepted origin carry CORS headers
/// (refusals too, so the page can read why).
pub async fn stream(
    State(gw): State<Arc<Gateway>>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<SseQuery>,
) -> Response {
    let peer = remote.map(|Extension(ConnectInfo(addr))| addr);
    let origin = match cors::check(&gw, &headers) {
        Ok(origin) => origin,
        Err(refused) => return refused.into_response(),
    };
    let mut response = match gw.admit() {
        Ok(slot) => open(gw, &headers, query, peer, slot).await,
        Err(refusal) => refusal.into_response(),
    };
    cors::allow(&mut response, origin);
    response
}

async fn open(
    gw: Arc<Gateway>,
    headers: &HeaderMap,
    query: SseQuery,
    peer: Option<SocketAddr>,
    slot: Slot,
) -> Response {
    let extra: Vec<&str> = query
        .channels
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|c| !c.is_empty())
        .collect();
    if extra.len() > MAX_COMMANDS_PER_FRAME {
        return (StatusCode::BAD_REQUEST, "too many channels").into_response();
    }
    let token = match (&query.token, &query.cf_connect) {
        (Some(t), _) => t.clone(),
        (None, Some(json)) => match serde_json::from_str::<Value>(json) {
            Ok(v) => v["token"].as_str().unwrap_or_default().to_owned(),
            Err(_) => return (StatusCode::BAD_REQUEST, "cf_connect is not JSON").into_response(),
        },
        (None, None) => String::new(),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(decode_positions)
        .unwrap_or_default();

    let outbox = Outbox::new(gw.config.queue_size);
    let mut session = Session::new(gw.clone(), outbox.clone(), peer);
    session.set_unidirectional();
    let recover = |channel: &str| {
        let (offset, epoch) = resume.get(channel)?.clone();
        Some(SubscribeRequest {
            channel: channel.to_owned(),
            recover: true,
            offset,
            epoch,
            ..Default::default()
        })
    };
    let subs = resume
        .keys()
        .filter_map(|ch| Some((ch.clone(), recover(ch)?)))
        .collect();
    let connect = ConnectRequest {
        token,
        subs,
        ..Default::default()
    };
    let mut requested = BTreeMap::new();
    let mut outcome = session.handle(1, Request::Connect(connect)).await;
    for (i, channel) in extra.into_iter().enumerate() {
        if outcome.is_err() {
            break;
        }
        let id = i as u32 + 2;
        requested.insert(id, channel.to_owned());
        let request = recover(channel).unwrap_or_else(|| SubscribeRequest {
            channel: channel.to_owned(),
            ..Default::default()
        });
        outcome = session.handle(id, Request::Subscribe(request)).await;
    }
    let mut sse = Sse {
        _slot: slot,
        gauge: gw.metrics.transport(Transport::Sse).connections.clone(),
        gw: gw.clone(),
        outbox,
        session: Some(session),
        positions: Positions::new(),
        requested,
        done: false,
    };
    sse.gauge.inc();
    match outcome {
        // A drain began: the stream opens only to say so, and the browser's
        // reconnect finds another node (an HTTP error would stop `EventSource`).
        Err(reason) if reason == Disconnect::SHUTDOWN => {
            sse.outbox.close(reason);
        }
        Err(reason) => return refusal(u32::from(reason.code), reason.reason),
        Ok(()) => {}
    }
    let mut first = BytesMut::new();
    let frames = sse.outbox.take_frames();
    let mut stats = WriteStats::new(gw.metrics.transport(Transport::Sse));
    stats.handed(frames.iter());
    for frame in frames {
        if let Err((code, message)) = sse.render(frame, &mut first) {
            return refusal(code, &message);
        }
    }
    stats.written(first.len());
    let rest = futures_util::stream::unfold(sse, Sse::next_chunk);
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok(first.freeze()) }),
        rest,
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body))
        .expect("valid response")
}

/// Connect or subscribe refused before streaming: an HTTP error, so that
/// `EventSource` stops instead of retrying with the same credentials.
fn refusal(code: u32, message: &str) -> Response {
    let status = if code == herald_core::protocol::Error::PermissionDenied.code() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

struct Sse {
    /// Held for the stream's life: the node's count of open connections.
    _slot: Slot,
    gw: Arc<Gateway>,
    outbox: Arc<Outbox>,
    session: Option<Session>,
    positions: Positions,
    requested: BTreeMap<u32, String>,
    gauge: IntGauge,
    done: bool,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.gauge.dec();
        if let Some(session) = self.session.take() {
            let reason = self.outbox.closing();
            self.gw.spawn(session.close(reason));
        }
    }
}

impl Sse {
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Sse)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(reason) = self.outbox.closing() {
                self.done = true;
                if reason == Disconnect::SLOW {
                    self.gw.metrics.transport(Transport::Sse).cut_off();
                }
                let push =
                    herald_core::protocol::reply::disconnect_push(reason.code, reason.reason);
                let mut out = BytesMut::new();
                event(&mut out, None, &unwrap_push(&push));
                return Some((Ok(out.freeze()), self));
            }
            let session = self.session.as_mut().expect("present until drop");
            while let Some(command) = self.outbox.pop_control() {
                if let Err(reason) = Box::pin(session.handle_control(command)).await {
                    self.outbox.close(reason);
                }
            }
            let frames = self.outbox.take_frames();
            if !frames.is_empty() {
                // Counted per chunk handed to the response body: SSE writes one chunk at a time.
                let mut stats = WriteStats::new(self.gw.metrics.transport(Transport::Sse));
                stats.handed(frames.iter());
                let mut out = BytesMut::new();
                for frame in frames {
                    let _ = self.render(frame, &mut out);
                }
                stats.written(out.len());
                return Some((Ok(out.freeze()), self));
            }
            let deadline = session.next_deadline();
            tokio::select! {
                biased;
                () = self.outbox.woken() => {}
                () = tokio::time::sleep_until(deadline) => {
                    if let Err(reason) = Box::pin(session.tick()).await {
                        self.outbox.close(reason);
                    }
                }
            }
        }
    }

    /// Appends the SSE events for one queued frame; an error reply is returned.
    fn render(&mut self, frame: Bytes, out: &mut BytesMut) -> Result<(), (u32, String)> {
        if &frame[..] == herald_core::protocol::reply::PING {
            out.put_slice(b": ping\n\n");
            return Ok(());
        }
        if frame.starts_with(b"{\"push\":") {
            let inner = unwrap_push(&frame);
            if let Some((channel, offset)) = publication_position(&inner) {
                if let Some(position) = self.positions.get_mut(channel) {
                    position.0 = offset;
                }
                let id = encode_positions(&self.positions);
                event(out, Some(&id), &inner);
            } else if inner.windows(13).any(|w| w == b"\"subscribe\":{") {
                let value: Value = serde_json::from_slice(&inner).unwrap_or_default();
                let channel = value["channel"].as_str().unwrap_or_default().to_owned();
                self.track(&channel, &value["subscribe"]);
                event(out, None, &inner);
            } else {
                event(out, None, &inner);
            }
            return Ok(());
        }
        let mut reply: Value = serde_json::from_slice(&frame).unwrap_or_default();
        if let Some(error) = reply.get("error") {
            let code = error["code"].as_u64().unwrap_or(0) as u32;
            return Err((
                code,
                error["message"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        if let Some(connect) = reply.get_mut("connect") {
            let mut recovered = Vec::new();
            if let Some(subs) = connect.get_mut("subs").and_then(Value::as_object_mut) {
                for (channel, result) in subs.iter_mut() {
                    self.track(channel, result);
                    recovered.push((channel.clone(), take_publications(result)));
                }
            }
            let connect = serde_json::json!({ "connect": connect });
            event(out, None, connect.to_string().as_bytes());
            for (channel, publications) in recovered {
                self.replay(out, &channel, publications);
            }
        } else if reply.get("subscribe").is_some() {
            let id = reply["id"].as_u64().unwrap_or(0) as u32;
            let channel = self.requested.get(&id).cloned().unwrap_or_default();
            let mut result = reply["subscribe"].take();
            self.track(&channel, &result);
            let publications = take_publications(&mut result);
            let push = serde_json::json!({ "channel": channel, "subscribe": result });
            event(out, None, push.to_string().as_bytes());
            self.replay(out, &channel, publications);
        }
        Ok(())
    }

    fn track(&mut self, channel: &str, result: &Value) {
        if let (Some(epoch), true) = (
            result["epoch"].as_str(),
            result["recoverable"].as_bool().unwrap_or(false),
        ) {
            let offset = result["offset"].as_u64().unwrap_or(0);
            let replayed = result["publications"].as_array().map_or(0, Vec::len) as u64;
            self.positions.insert(
                channel.to_owned(),
                (offset.saturating_sub(replayed), epoch.to_owned()),
            );
        }
    }

    fn replay(&mut self, out: &mut BytesMut, channel: &str, publications: Vec<Value>) {
        for publication in publications {
            let offset = publication["offset"].as_u64().unwrap_or(0);
            if let Some(position) = self.positions.get_mut(channel) {
                position.0 = position.0.max(offset);
            }
            let id = encode_positions(&self.positions);
            let push = serde_json::json!({ "channel": channel, "pub": publication });
            event(out, Some(&id), push.to_string().as_bytes());
        }
    }
}

fn take_publications(result: &mut Value) -> Vec<Value> {
    match result
        .as_object_mut()
        .and_then(|o| o.remove("publications"))
    {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    }
}

/// `{"push":X}` → `X`, sharing the buffer.
fn unwrap_push(frame: &Bytes) -> Bytes {
    frame.slice(8..frame.len() - 1)
}

fn event(out: &mut BytesMut, id: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

/// Reads channel and offset from `{"channel":"..","pub":{"offset":N` without a full parse
/// (channel names never need JSON escapes).
fn publication_position(inner: &[u8]) -> Option<(&str, u64)> {
    let rest = inner.strip_prefix(b"{\"channel\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let channel = std::str::from_utf8(&rest[..end]).ok()?;
    let rest = rest[end..].strip_prefix(b"\",\"pub\":{\"offset\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let offset = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((channel, offset))
}

/// `offset:epoch:channel` entries joined by `,` (channel names contain no `,`).
fn encode_positions(positions: &Positions) -> String {
    positions
        .iter()
        .map(|(channel, (offset, epoch))| format!("{offset}:{epoch}:{channel}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_positions(id: &str) -> Positions {
    id.split(',')
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let offset = parts.next()?.parse().ok()?;
            let epoch = parts.next()?.to_owned();
            let channel = parts.next()?.to_owned();
            Some((channel, (offset, epoch)))
        })
        .collect()
}

#[cfg(test)]
mod tests;
