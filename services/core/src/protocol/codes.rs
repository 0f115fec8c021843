//! Error codes (replies to commands) and disconnect codes (close frames), as
//! listed in Centrifugo's `docs/server/codes.md`.

use serde::Serialize;

/// An error reply to a command: `{"id":N,"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct Error {
    /// Protocol error code.
    pub code: u32,
    /// Human-readable message, fixed per code.
    pub message: &'static str,
    /// Worth retrying: SDKs back off and try again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub temporary: bool,
}

const fn err(code: u32, message: &'static str, temporary: bool) -> Error {
    Error {
        code,
        message,
        temporary,
    }
}

impl Error {
    /// 100.
    pub const INTERNAL: Error = err(100, "internal server error", true);
    /// 101.
    pub const UNAUTHORIZED: Error = err(101, "unauthorized", false);
    /// 102.
    pub const UNKNOWN_CHANNEL: Error = err(102, "unknown channel", false);
    /// 103.
    pub const PERMISSION_DENIED: Error = err(103, "permission denied", false);
    /// 104.
    pub const METHOD_NOT_FOUND: Error = err(104, "method not found", false);
    /// 105.
    pub const ALREADY_SUBSCRIBED: Error = err(105, "already subscribed", false);
    /// 106.
    pub const LIMIT_EXCEEDED: Error = err(106, "limit exceeded", false);
    /// 107.
    pub const BAD_REQUEST: Error = err(107, "bad request", false);
    /// 108.
    pub const NOT_AVAILABLE: Error = err(108, "not available", false);
    /// 109.
    pub const TOKEN_EXPIRED: Error = err(109, "token expired", false);
    /// 110.
    pub const EXPIRED: Error = err(110, "expired", false);
    /// 111.
    pub const TOO_MANY_REQUESTS: Error = err(111, "too many requests", true);
    /// 112.
    pub const UNRECOVERABLE_POSITION: Error = err(112, "unrecoverable position", false);
}

/// Why a connection is closed: the WebSocket close code and reason.
/// 3000-3499 and 4000-4499 tell SDKs to reconnect; 3500-3999 and 4500-4999 are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Disconnect {
    /// Close code.
    pub code: u16,
    /// Close reason (short, sent verbatim).
    pub reason: &'static str,
}

const fn dis(code: u16, reason: &'static str) -> Disconnect {
    Disconnect { code, reason }
}

impl Disconnect {
    /// 1002: a WebSocket frame that breaks RFC 6455.
    pub const PROTOCOL_ERROR: Disconnect = dis(1002, "protocol error");
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_PAYLOAD: Disconnect = dis(1007, "invalid payload");
    /// 1009: frame over the size limit (SDKs do not reconnect).
    pub const MESSAGE_TOO_BIG: Disconnect = dis(1009, "message size limit exceeded");
    /// 3000.
    pub const CONNECTION_CLOSED: Disconnect = dis(3000, "connection closed");
    /// 3001: the node is shutting down; reconnect elsewhere.
    pub const SHUTDOWN: Disconnect = dis(3001, "shutdown");
    /// 3004.
    pub const SERVER_ERROR: Disconnect = dis(3004, "internal server error");
    /// 3005: connection token expired and was not refreshed.
    pub const EXPIRED: Disconnect = dis(3005, "connection expired");
    /// 3008: the client did not keep up with its queue.
    pub const SLOW: Disconnect = dis(3008, "slow");
    /// 3009.
    pub const WRITE_ERROR: Disconnect = dis(3009, "write error");
    /// 3010: the node lost track of state the client relies on.
    pub const INSUFFICIENT_STATE: Disconnect = dis(3010, "insufficient state");
    /// 3011.
    pub const FORCE_RECONNECT: Disconnect = dis(3011, "force reconnect");
    /// 3012: no pong in time.
    pub const NO_PONG: Disconnect = dis(3012, "no pong");
    /// 3500.
    pub const INVALID_TOKEN: Disconnect = dis(3500, "invalid token");
    /// 3501.
    pub const BAD_REQUEST: Disconnect = dis(3501, "bad request");
    /// 3502: never sent connect.
    pub const STALE: Disconnect = dis(3502, "stale");
    /// 3503.
    pub const FORCE_DISCONNECT: Disconnect = dis(3503, "force disconnect");
    /// 3507.
    pub const PERMISSION_DENIED: Disconnect = dis(3507, "permission denied");
}
