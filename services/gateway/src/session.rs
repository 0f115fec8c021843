//! One client connection's protocol state machine, independent of transport:
//! it takes parsed frames, control commands and timer ticks, and answers
//! with typed replies and pushes ([`Frame`]) through the connection's
//! [`Outbox`]; transports render them. Errors that end the connection are
//! returned as a [`Disconnect`]; the transport closes with it.

mod budget;
use budget::{Budget, Spend};
mod commands;
mod connect;
mod stats;
mod subscribe;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_core::auth::{now_secs, AuthError};
use herald_core::channel::Channel;
use herald_core::control;
use herald_core::metrics::labels::Transport;
use herald_core::protocol::command::parse_frame;
use herald_core::protocol::protobuf;
use herald_core::protocol::reply::{self, Body, Push, Reply};
use herald_core::protocol::{Disconnect, Error, Request, Unsubscribe};
use herald_core::publication::{ClientInfo, RawJson};
use herald_core::refusals;
use rand::Rng;
use tokio::time::Instant;
use tracing::debug;

use crate::frame::Frame;
use crate::outbox::Outbox;
use crate::small_map::SmallMap;
use crate::Gateway;

/// A subscription held by the session.
#[derive(Debug)]
struct Subscription {
    channel: Channel,
    expires_at: Option<i64>,
    chan_info: Option<RawJson>,
}

/// The state of one connection.
pub struct Session {
    gw: Arc<Gateway>,
    conn: u64,
    client: Arc<str>,
    outbox: Arc<Outbox>,
    user: Option<Arc<str>>,
    conn_info: Option<RawJson>,
    expires_at: Option<i64>,
    subs: SmallMap<Subscription>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    connect_deadline: Instant,
    unidirectional: bool,
    /// The transport, for metrics and logs.
    transport: Transport,
    /// Emulation transports: the session id `/emulation` requests name
    /// (boxed: most connections are WebSockets, and every one has the field).
    emulation: Option<Box<Arc<str>>>,
    /// The client's address, for the log of refused tokens.
    peer: Option<SocketAddr>,
    /// Commands the client may still send (`client.commands_per_second`).
    budget: Budget,
}

type Outcome = Result<(), Disconnect>;

/// Commands one frame may carry (SSE: channels one request may name). Above
/// the default `max_subscriptions`, so an SDK that sends every pending
/// subscribe in one frame fits; a frame's replies stay far below
/// [`crate::outbox::MAX_QUEUED_REPLIES`].
pub const MAX_COMMANDS_PER_FRAME: usize = 1024;

impl Session {
    /// A session that has not connected yet.
    pub fn new(gw: Arc<Gateway>, outbox: Arc<Outbox>, peer: Option<SocketAddr>) -> Session {
        let now = Instant::now();
        let interval = gw.config.ping_interval;
        let mut rng = rand::rng();
        let first_ping = interval / 2 + interval.mul_f64(rng.random::<f64>() / 2.0);
        // A v4 id from the thread's generator: `Uuid::new_v4` would make a getrandom call per connection.
        let client = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let conn = gw.next_conn();
        gw.hub.open_session(conn, &outbox);
        let budget = Budget::new(gw.config.commands_per_second, gw.clock_ms());
        Session {
            conn,
            client: Arc::from(client.to_string()),
            connect_deadline: now + gw.config.stale_timeout,
            next_ping: now + first_ping,
            gw,
            outbox,
            user: None,
            conn_info: None,
            expires_at: None,
            subs: SmallMap::default(),
            pong_deadline: None,
            unidirectional: false,
            transport: Transport::WebSocket,
            emulation: None,
            peer,
            budget,
        }
    }

    /// Handles one incoming text frame (one or more newline-separated commands).
    pub async fn handle_frame(&mut self, frame: &str) -> Outcome {
        // Counted before decoding: a frame of many small commands would
        // otherwise decode into many times its own size first.
        let lines = frame.split('\n').filter(|l| !l.trim().is_empty()).count();
        if lines > MAX_COMMANDS_PER_FRAME {
            debug!(client = %self.client, commands = lines, "too many commands in one frame");
            return Err(Disconnect::TOO_MANY_COMMANDS);
        }
        let commands = parse_frame(frame).map_err(|e| {
            debug!(client = %self.client, error = %e, "malformed frame");
            Disconnect::BAD_REQUEST
        })?;
        for command in commands {
            let (id, request) = command.into_request();
            self.handle(id, request).await?;
        }
        Ok(())
    }

    /// Handles one incoming binary frame of the Protobuf format (one or more
    /// length-delimited commands).
    pub async fn handle_protobuf_frame(&mut self, frame: &[u8]) -> Outcome {
        let malformed = |e: protobuf::DecodeError| {
            debug!(client = %self.client, error = %e, "malformed frame");
            Disconnect::BAD_REQUEST
        };
        let count = protobuf::count_messages(frame, MAX_COMMANDS_PER_FRAME).map_err(malformed)?;
        if count > MAX_COMMANDS_PER_FRAME {
            debug!(client = %self.client, "too many commands in one frame");
            return Err(Disconnect::TOO_MANY_COMMANDS);
        }
        for (id, request) in protobuf::parse_frame(frame).map_err(malformed)? {
            self.handle(id, request).await?;
        }
        Ok(())
    }

    /// Handles one command (transports without client frames build them, e.g. SSE).
    pub async fn handle(&mut self, id: u32, request: Request) -> Outcome {
        if let Request::Pong = request {
            if id != 0 || self.pong_deadline.take().is_none() {
                return Err(Disconnect::BAD_REQUEST);
            }
            return Ok(());
        }
        if let Request::Send(_) = request {
            return if self.user.is_some() {
                Ok(())
            } else {
                Err(Disconnect::BAD_REQUEST)
            };
        }
        if id == 0 {
            return Err(Disconnect::BAD_REQUEST);
        }
        let connected = self.user.is_some();
        if matches!(request, Request::Connect(_)) == connected {
            return Err(Disconnect::BAD_REQUEST);
        }
        match self.spend_command() {
            Spend::Run => {}
            Spend::Refuse => {
                self.reply(id, Body::Error(Error::TooManyRequests));
                return Ok(());
            }
            Spend::Close => return Err(Disconnect::TOO_MANY_REQUESTS),
        }
        let method = stats::method_name(&request);
        let started = std::time::Instant::now();
        let answer = self.answer(id, request).await;
        self.count_command(method, &answer, started.elapsed());
        match answer? {
            Ok(()) => Ok(()),
            Err(e) => {
                self.reply(id, Body::Error(e));
                Ok(())
            }
        }
    }

    /// Takes one command from the client's budget; commands of unidirectional
    /// sessions come from the request that opened them, not from the client.
    fn spend_command(&mut self) -> Spend {
        let per_second = self.gw.config.commands_per_second;
        if per_second == 0 || self.unidirectional {
            return Spend::Run;
        }
        self.budget.spend(per_second, self.gw.clock_ms())
    }

    /// Runs one command; the connect and subscribe replies are queued by
    /// their handlers, every other success here, an error by the caller.
    async fn answer(&mut self, id: u32, request: Request) -> Result<Result<(), Error>, Disconnect> {
        let body = match request {
            Request::Connect(r) => return self.connect(id, r).await,
            Request::Subscribe(r) => return self.subscribe(id, r).await,
            Request::Unsubscribe(r) => self.unsubscribe(&r.channel).await.map(Body::Unsubscribe),
            Request::Publish(r) => self.publish(r).await.map(Body::Publish),
            Request::Presence(r) => self.presence(&r.channel).await.map(Body::Presence),
            Request::PresenceStats(r) => self
                .presence_stats(&r.channel)
                .await
                .map(Body::PresenceStats),
            Request::History(r) => self.history(r).await.map(Body::History),
            Request::Ping => Ok(Body::Ping(reply::Empty {})),
            Request::Rpc(_) => Err(Error::MethodNotFound),
            Request::Refresh(r) => self.refresh(&r.token).await?.map(Body::Refresh),
            Request::SubRefresh(r) => self
                .sub_refresh(&r.channel, &r.token)
                .await?
                .map(Body::SubRefresh),
            Request::Pong | Request::Send(_) => unreachable!("handled above"),
        };
        Ok(body.map(|body| self.reply(id, body)))
    }

    /// Logs a refused token (rate-limited, see [`refusals`]) and answers it: an
    /// expired token is an error reply (SDKs refresh it), any other ends the connection.
    fn token_refused<T>(
        &self,
        kind: &str,
        error: &AuthError,
    ) -> Result<Result<T, Error>, Disconnect> {
        refusals::refused(kind, self.transport.label(), error, self.peer);
        match error {
            AuthError::TokenExpired => Ok(Err(Error::TokenExpired)),
            _ => Err(Disconnect::INVALID_TOKEN),
        }
    }

    fn reply(&self, id: u32, body: Body) {
        self.outbox.reply(Frame::from(Reply { id, body }));
    }

    fn client_info(&self, chan_info: Option<RawJson>) -> ClientInfo {
        ClientInfo {
            user: self.user.as_deref().unwrap_or_default().to_owned(),
            client: self.client.to_string(),
            conn_info: self.conn_info.clone(),
            chan_info,
        }
    }

    /// Applies the cluster-wide commands waiting in the outbox, until one ends the connection.
    pub async fn handle_controls(&mut self) -> Outcome {
        while let Some(command) = self.outbox.pop_control() {
            Box::pin(self.handle_control(command)).await?;
        }
        Ok(())
    }

    /// Applies a cluster-wide command addressed to this connection.
    async fn handle_control(&mut self, command: control::Command) -> Outcome {
        match command {
            control::Command::Disconnect { code, .. } => Err(Disconnect::forced(code)),
            control::Command::Subscribe { channel, .. } => {
                self.server_subscribe(&channel).await;
                Ok(())
            }
            control::Command::Unsubscribe { channel, .. } => {
                if self.subs.contains_key(channel.as_str()) {
                    self.leave(&channel).await;
                    self.outbox.send(Frame::from(Push::Unsubscribe {
                        channel,
                        why: Unsubscribe::Server,
                    }));
                }
                Ok(())
            }
            control::Command::Refresh {
                expired, expire_at, ..
            } => {
                if expired {
                    return Err(Disconnect::EXPIRED);
                }
                self.expires_at = (expire_at > 0).then_some(expire_at);
                Ok(())
            }
        }
    }

    /// When [`Session::tick`] wants to run next.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.next_ping;
        if let Some(d) = self.pong_deadline {
            next = next.min(d);
        }
        if self.user.is_none() {
            next = next.min(self.connect_deadline);
        }
        next
    }

    /// Runs timers: stale connections, pings and pongs, expiry, presence refresh.
    pub async fn tick(&mut self) -> Outcome {
        let now = Instant::now();
        if self.user.is_none() && now >= self.connect_deadline {
            return Err(Disconnect::STALE);
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            return Err(Disconnect::NO_PONG);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.gw.config.ping_interval;
            if self.user.is_some() {
                self.outbox.send(Frame::Ping);
                if !self.unidirectional {
                    self.pong_deadline = Some(now + self.gw.config.pong_timeout);
                }
                self.check_expiry().await?;
                self.refresh_presence().await;
            }
        }
        Ok(())
    }

    async fn check_expiry(&mut self) -> Outcome {
        let grace = self.gw.config.expired_grace.as_secs() as i64;
        let now = now_secs();
        if self.expires_at.is_some_and(|exp| now > exp + grace) {
            return Err(Disconnect::EXPIRED);
        }
        let expired: Vec<Arc<str>> = self
            .subs
            .iter()
            .filter(|(_, s)| s.expires_at.is_some_and(|exp| now > exp + grace))
            .map(|(k, _)| k.clone())
            .collect();
        for channel in expired {
            self.outbox.send(Frame::from(Push::Unsubscribe {
                channel: channel.to_string(),
                why: Unsubscribe::Expired,
            }));
            self.leave(&channel).await;
        }
        Ok(())
    }

    /// Leaves every channel and deregisters (the hub forgets the session when
    /// it drops); call once when the connection ends.
    pub async fn close(mut self, reason: Option<Disconnect>) {
        self.count_close(reason.unwrap_or(Disconnect::NORMAL).code);
        let channels: Vec<Arc<str>> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.leave(&channel).await;
        }
    }

    /// Marks a transport that cannot answer pings (SSE).
    pub fn set_unidirectional(&mut self) {
        self.unidirectional = true;
        self.transport = Transport::Sse;
    }

    /// Names the transport in metrics and logs (after [`Session::set_unidirectional`]).
    pub fn set_transport(&mut self, transport: Transport) {
        self.transport = transport;
    }

    /// Marks a session of an emulation transport: the client sends its
    /// commands in `/emulation` requests naming `session`.
    pub fn set_emulation(&mut self, transport: Transport, session: Arc<str>) {
        self.transport = transport;
        self.emulation = Some(Box::new(session));
    }

    /// The connection id the client sees.
    pub fn client_id(&self) -> &str {
        &self.client
    }

    /// The process-unique connection number.
    pub fn conn(&self) -> u64 {
        self.conn
    }

    /// The outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.gw.hub.end_session(self.user.as_deref(), self.conn);
    }
}

/// How long to wait before the next timer check, never zero.
pub fn until(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
