//! Renders a connection's typed frames as Server-Sent Events: pushes without
//! the `push` wrapper (as Centrifugo's unidirectional transports send them),
//! and an `id:` on every publication event that encodes the connection's
//! stream positions, so the browser's own reconnect (`Last-Event-ID`)
//! resumes without loss. Positions come from the typed frames, never from
//! re-reading JSON.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use herald_core::protocol::reply::{Body, ConnectResult, Push, SubscribeResult};
use herald_core::publication::{encode_publication_push, push_body, Publication};
use serde::Serialize;

use crate::frame::Frame;
use crate::small_map::SmallMap;

/// Stream positions per channel: offset and epoch.
pub type Positions = BTreeMap<String, (u64, String)>;

/// One SSE stream's rendering state.
#[derive(Debug, Default)]
pub struct Events {
    /// The tracked channels' positions: a vector sized to them (a stream
    /// tracks one or two channels, and a B-tree node reserves room for eleven).
    positions: SmallMap<(u64, String)>,
    /// Channels by the id of the subscribe command the stream's request made.
    requested: HashMap<u32, String>,
}

/// Why a frame ended the stream before it started: an error reply.
pub type Refused = (u32, &'static str);

#[derive(Serialize)]
struct ConnectEvent<'a> {
    connect: &'a ConnectResult,
}

#[derive(Serialize)]
struct SubscribeEvent<'a> {
    channel: &'a str,
    subscribe: &'a SubscribeResult,
}

impl Events {
    /// Remembers that the subscribe command `id` asked for `channel`.
    pub fn requested(&mut self, id: u32, channel: &str) {
        self.requested.insert(id, channel.to_owned());
    }

    /// About the bytes of the events of `frame` (for sizing a buffer once).
    pub fn size_hint(&self, frame: &Frame) -> usize {
        const EVENT: usize = "id: \ndata: \n\n".len();
        // An offset takes at most 20 digits, and two colons and a comma join the parts.
        let id: usize = self
            .positions
            .iter()
            .map(|(c, (_, e))| c.len() + e.len() + 23)
            .sum();
        EVENT + id + frame.json().len()
    }

    /// Forgets the requested channels once their replies are rendered (all
    /// come before the stream starts): a stream holds nothing it no longer needs.
    pub fn opened(&mut self) {
        self.requested = HashMap::new();
    }

    /// Appends the events for one frame; an error reply is returned.
    pub fn render(&mut self, frame: Frame, out: &mut BytesMut) -> Result<(), Refused> {
        match frame {
            Frame::Ping => out.put_slice(b": ping\n\n"),
            Frame::Channel(push) => {
                if push.offset > 0 {
                    if let Some(position) = self.positions.get_mut(&push.channel) {
                        position.0 = push.offset;
                    }
                    // Written in place: an id per publication is the hot path.
                    out.put_slice(b"id: ");
                    write_positions(out, self.positions.iter());
                    out.put_u8(b'\n');
                }
                event(out, None, &push_body(&push.json));
            }
            Frame::Push(push) => {
                if let Push::Subscribe { channel, result } = &*push {
                    self.track(channel, result);
                }
                event(out, None, &push.encode_body());
            }
            Frame::Json(json) => event(out, None, &json),
            // SSE sessions speak JSON; nothing encodes their frames as Protobuf.
            Frame::Protobuf(_) => {}
            Frame::Reply(reply) => match reply.body {
                Body::Error(e) => return Err((e.code(), e.message())),
                Body::Connect(mut connect) => {
                    let mut recovered = Vec::new();
                    for (channel, result) in &mut connect.subs {
                        self.track(channel, result);
                        let publications = std::mem::take(&mut result.publications);
                        recovered.push((channel.clone(), publications));
                    }
                    let json = serde_json::to_vec(&ConnectEvent { connect: &connect });
                    event(out, None, &json.expect("replies always serialize"));
                    for (channel, publications) in recovered {
                        self.replay(out, &channel, publications);
                    }
                }
                Body::Subscribe(mut subscribe) => {
                    let channel = self.requested.get(&reply.id).cloned().unwrap_or_default();
                    self.track(&channel, &subscribe);
                    let publications = std::mem::take(&mut subscribe.publications);
                    let json = serde_json::to_vec(&SubscribeEvent {
                        channel: &channel,
                        subscribe: &subscribe,
                    });
                    event(out, None, &json.expect("replies always serialize"));
                    self.replay(out, &channel, publications);
                }
                _ => {}
            },
        }
        Ok(())
    }

    /// Starts tracking a recoverable channel at the position before its replayed publications.
    fn track(&mut self, channel: &str, result: &SubscribeResult) {
        if result.recoverable && !result.epoch.is_empty() {
            let replayed = result.publications.len() as u64;
            self.positions.insert(
                Arc::from(channel),
                (result.offset.saturating_sub(replayed), result.epoch.clone()),
            );
        }
    }

    fn replay(&mut self, out: &mut BytesMut, channel: &str, publications: Vec<Publication>) {
        for publication in publications {
            if let Some(position) = self.positions.get_mut(channel) {
                position.0 = position.0.max(publication.offset);
            }
            out.put_slice(b"id: ");
            write_positions(out, self.positions.iter());
            out.put_u8(b'\n');
            let frame = encode_publication_push(channel, &publication);
            event(out, None, &push_body(&frame));
        }
    }
}

/// One event: an optional `id:` line, one `data:` line.
pub fn event(out: &mut BytesMut, id: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_slice(b"data: ");
    out.put_slice(data);
    out.put_slice(b"\n\n");
}

/// `offset:epoch:channel` entries joined by `,` (channel names contain no
/// `,`): an event's id ([`Events`] writes it in place).
#[cfg(test)]
pub fn encode_positions(positions: &Positions) -> String {
    let mut id = String::new();
    write_positions(&mut id, positions.iter());
    id
}

/// Appends the id of `positions` to `out`: `offset:epoch:channel` entries
/// joined by `,` (channel names contain no `,`).
fn write_positions<'a, K: AsRef<str> + 'a>(
    out: &mut impl Write,
    positions: impl Iterator<Item = (&'a K, &'a (u64, String))>,
) {
    for (i, (channel, (offset, epoch))) in positions.enumerate() {
        let channel = channel.as_ref();
        let comma = if i == 0 { "" } else { "," };
        // Writing to memory cannot fail.
        let _ = write!(out, "{comma}{offset}:{epoch}:{channel}");
    }
}

/// Positions from a `Last-Event-ID`; unreadable entries are left out.
pub fn decode_positions(id: &str) -> Positions {
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
