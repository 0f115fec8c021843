//! The bounded vocabularies of Herald's metric labels: every value a labelled
//! series can take is listed here, so that the registry creates each series
//! at zero when the process starts. Ids (channels, users, clients) never are.

/// The client transport of a connection (label `transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `/connection/websocket`.
    WebSocket,
    /// `/connection/sse`.
    Sse,
    /// `/connection/uni_websocket`.
    UniWebSocket,
    /// `/connection/uni_sse`.
    UniSse,
    /// `/connection/uni_http_stream`.
    UniHttpStream,
    /// `/connection/http_stream`: bidirectional emulation over a streamed response.
    HttpStream,
    /// `/connection/sse` with a connect command: bidirectional emulation over SSE.
    SseEmulation,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 7] = [
        Transport::WebSocket,
        Transport::Sse,
        Transport::UniWebSocket,
        Transport::UniSse,
        Transport::UniHttpStream,
        Transport::HttpStream,
        Transport::SseEmulation,
    ];

    /// The label value.
    pub const fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::UniWebSocket => "uni_websocket",
            Transport::UniSse => "uni_sse",
            Transport::UniHttpStream => "uni_http_stream",
            Transport::HttpStream => "http_stream",
            Transport::SseEmulation => "sse_emulation",
        }
    }
}

/// What became of an `/emulation` request (label `outcome` of
/// `herald_emulation_requests_total`): applied to a session of this node
/// (`local`), sent to the node holding the session (`forwarded`), applied here
/// after another node sent it (`received`), or dropped: no such session, no
/// such node, or the session's queue of requests was full (`busy`).
pub const EMULATION_OUTCOMES: [&str; 6] = [
    "local",
    "forwarded",
    "received",
    "unknown_session",
    "unknown_node",
    "busy",
];

/// Where a publication came from (label `source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The server API.
    Api,
    /// A client's `publish` command.
    Client,
}

/// Where a recovery's answer came from (label `from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryFrom {
    /// The memory engine, or this node's own delivery state (nothing was missed).
    Memory,
    /// A read of the Redis history stream.
    Redis,
}

/// Server API methods (label `method` of `herald_api_*`); requests for any
/// other name count as `unknown`.
pub const API_METHODS: [&str; 14] = [
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "batch",
    "rpc",
];

/// Client protocol commands that get a reply (label `method` of `herald_client_command_*`).
pub const CLIENT_METHODS: [&str; 11] = [
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "rpc",
    "refresh",
    "sub_refresh",
];

/// Label value of a close code outside [`crate::protocol::Disconnect::ALL`]
/// (the server API may close with any application code).
pub const OTHER_CODE: &str = "other";

/// Kinds of Redis errors (label `kind` of `herald_redis_errors_total`).
pub const REDIS_ERROR_KINDS: [&str; 4] = ["timeout", "connection", "script", "other"];

/// Outcomes of a Redis gap check (label `outcome` of `herald_redis_gap_checks_total`).
pub const GAP_OUTCOMES: [&str; 2] = ["filled", "unrecoverable"];

/// Redis operations timed by the engine (label `op` of `herald_redis_command_duration_seconds`).
pub const REDIS_OPS: [&str; 10] = [
    "publish",
    "spublish",
    "history",
    "remove_history",
    "presence",
    "subscribe",
    "unsubscribe",
    "heartbeat",
    "nodes",
    "channels",
];
