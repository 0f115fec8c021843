//! The Server-Sent Events transport (`/connection/sse`) for one-way clients
//! such as the browser's `EventSource`: builds the session's connect and
//! subscribe commands from the request, then streams the connection's frames
//! as events (see [`events`]). A request the client listener reads first on
//! its connection is served there without an HTTP server ([`direct`]: the
//! flushers write the events, as for a WebSocket); one hyper serves (a later
//! request on a kept-alive connection, a head too long for the listener)
//! streams a response body, one chunk per wake-up. Both read the request and
//! open the session through [`open`]. A `cf_connect` holding a protocol
//! command (`{"id":1,"connect":{..}}`, what the SDKs' `sse` transport sends)
//! selects bidirectional emulation instead ([`crate::emulation::sse`]).

pub mod direct;
mod events;
mod wire;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::{Bytes, BytesMut};
use herald_core::metrics::labels::Transport;
use herald_core::protocol::command::{ConnectRequest, SubscribeRequest};
use herald_core::protocol::reply::disconnect_push;
use herald_core::protocol::{Disconnect, Request};
use herald_core::publication::push_body;
use prometheus::IntGauge;
use serde::Deserialize;
use serde_json::Value;

use crate::admission::Slot;
use crate::cors;
use crate::emulation;
use crate::outbox::{self, Outbox};
use crate::session::{Session, MAX_COMMANDS_PER_FRAME};
use crate::write_stats::WriteStats;
use crate::Gateway;
use events::{decode_positions, event, Events};

/// Path of the SSE endpoint.
pub const PATH: &str = "/connection/sse";

/// `GET /connection/sse` query.
#[derive(Debug, Default, Deserialize)]
pub struct SseQuery {
    /// Connection token.
    token: Option<String>,
    /// Centrifugo's form: a JSON connect request (`{"token":..}`).
    cf_connect: Option<String>,
    /// Extra channels to subscribe, comma-separated (permission-checked).
    channels: Option<String>,
}

impl SseQuery {
    /// Whether `cf_connect` selects the SDKs' bidirectional emulation: a
    /// connect command, or the Protobuf build's stringified frame (refused).
    pub fn is_emulation(&self) -> bool {
        self.cf_connect.as_deref().is_some_and(|connect| {
            emulation::is_connect_command(connect)
                || emulation::sse::is_stringified_protobuf(connect)
        })
    }
}

/// `GET /connection/sse` when hyper serves it: answers from an accepted
/// origin carry CORS headers (refusals too, so the page can read why).
pub async fn stream(
    State(gw): State<Arc<Gateway>>,
    remote: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<SseQuery>,
) -> Response {
    let peer = remote.map(|Extension(ConnectInfo(addr))| addr);
    if let Some(connect) = query.cf_connect.as_deref() {
        if emulation::is_connect_command(connect) {
            return emulation::sse::open(gw, &headers, peer, connect).await;
        }
        if emulation::sse::is_stringified_protobuf(connect) {
            return emulation::sse::refuse_protobuf(&gw, &headers);
        }
    }
    let opened = match open(&gw, &headers, query, peer).await {
        Ok(opened) => opened,
        Err(refused) => return refused,
    };
    let (head, _) = opened.head.into_parts();
    let sse = Sse {
        _slot: opened.slot,
        gauge: gw.metrics.transport(Transport::Sse).connections.clone(),
        gw,
        outbox: opened.outbox,
        session: Some(opened.session),
        events: opened.events,
        done: false,
    };
    sse.gauge.inc();
    let first = opened.first.freeze();
    let rest = futures_util::stream::unfold(sse, Sse::next_chunk);
    let body =
        futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    Response::from_parts(head, Body::from_stream(body))
}

/// A stream whose session is connected and subscribed, not answered yet.
pub(crate) struct Opened {
    /// Held for the stream's life: the node's count of open connections.
    pub slot: Slot,
    /// The connection's outgoing side.
    pub outbox: Arc<Outbox>,
    /// Connected, subscribed to what the request asked for.
    pub session: Session,
    /// Positions of the recoverable channels so far.
    pub events: Events,
    /// The events of the frames queued while opening (connect and subscribe
    /// results, recovered publications).
    pub first: BytesMut,
    /// The answer's status and headers (its body is the stream).
    pub head: Response<()>,
}

/// What both paths do before streaming: the Origin check, admission, then
/// the session's connect and subscribes from the request. `Err` is the
/// complete answer refusing the request (with CORS headers for an accepted
/// origin). A drain in progress opens the stream only to say so, and the
/// browser's reconnect finds another node (an HTTP error would stop `EventSource`).
pub(crate) async fn open(
    gw: &Arc<Gateway>,
    headers: &HeaderMap,
    query: SseQuery,
    peer: Option<SocketAddr>,
) -> Result<Opened, Response> {
    let origin = cors::check(gw, headers).map_err(IntoResponse::into_response)?;
    let with_cors = |mut response: Response| {
        cors::allow(&mut response, origin.clone());
        response
    };
    let slot = gw
        .admit()
        .map_err(|refusal| with_cors(refusal.into_response()))?;
    let extra: Vec<&str> = query
        .channels
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter(|c| !c.is_empty())
        .collect();
    if extra.len() > MAX_COMMANDS_PER_FRAME {
        return Err(with_cors(
            (StatusCode::BAD_REQUEST, "too many channels").into_response(),
        ));
    }
    let token = match (&query.token, &query.cf_connect) {
        (Some(t), _) => t.clone(),
        (None, Some(json)) => match serde_json::from_str::<Value>(json) {
            Ok(v) => v["token"].as_str().unwrap_or_default().to_owned(),
            Err(_) => {
                let refusal = (StatusCode::BAD_REQUEST, "cf_connect is not JSON");
                return Err(with_cors(refusal.into_response()));
            }
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
    let mut events = Events::default();
    let mut outcome = session.handle(1, Request::Connect(connect)).await;
    for (i, channel) in extra.into_iter().enumerate() {
        if outcome.is_err() {
            break;
        }
        let id = i as u32 + 2;
        events.requested(id, channel);
        let request = recover(channel).unwrap_or_else(|| SubscribeRequest {
            channel: channel.to_owned(),
            ..Default::default()
        });
        outcome = session.handle(id, Request::Subscribe(request)).await;
    }
    let refused = match outcome {
        Err(reason) if reason == Disconnect::SHUTDOWN => {
            outbox.close(reason);
            None
        }
        Err(reason) => Some((u32::from(reason.code), reason.reason)),
        Ok(()) => None,
    };
    let mut first = BytesMut::new();
    let rendered = render_queued(gw, &outbox, &mut events, &mut first);
    events.opened();
    if let Some((code, message)) = refused.or(rendered.err()) {
        gw.spawn(session.close(outbox.closing()));
        return Err(with_cors(refusal(code, message)));
    }
    let mut head = Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(())
        .expect("valid response head");
    cors::allow_head(head.headers_mut(), origin);
    Ok(Opened {
        slot,
        outbox,
        session,
        events,
        first,
        head,
    })
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

/// A stream hyper serves: the state behind its response body.
struct Sse {
    /// Held for the stream's life: the node's count of open connections.
    _slot: Slot,
    gw: Arc<Gateway>,
    outbox: Arc<Outbox>,
    session: Option<Session>,
    events: Events,
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
                let mut out = BytesMut::new();
                if outbox::flushes_before_close(reason) {
                    let _ = render_queued(&self.gw, &self.outbox, &mut self.events, &mut out);
                }
                let push = disconnect_push(reason.code, reason.reason);
                event(&mut out, None, &push_body(&push));
                return Some((Ok(out.freeze()), self));
            }
            let session = self.session.as_mut().expect("present until drop");
            if let Err(reason) = Box::pin(session.handle_controls()).await {
                self.outbox.close(reason);
            }
            let mut out = BytesMut::new();
            let _ = render_queued(&self.gw, &self.outbox, &mut self.events, &mut out);
            if !out.is_empty() {
                return Some((Ok(out.freeze()), self));
            }
            let session = self.session.as_mut().expect("present until drop");
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
}

/// Renders every queued frame into `out` as one chunk for the response
/// body (counted as one write). The first error reply is returned (it
/// refuses a stream that has not started; later ones are dropped).
fn render_queued(
    gw: &Gateway,
    outbox: &Outbox,
    events: &mut Events,
    out: &mut BytesMut,
) -> Result<(), events::Refused> {
    let frames = outbox.take_frames();
    if frames.is_empty() {
        return Ok(());
    }
    let mut stats = WriteStats::new(gw.metrics.transport(Transport::Sse));
    stats.handed(frames.iter());
    let before = out.len();
    let mut rendered = Ok(());
    for frame in frames {
        rendered = rendered.and(events.render(frame, out));
    }
    stats.written(out.len() - before);
    rendered
}
