//! The protocol's vocabulary of codes, as listed in Centrifugo's
//! `docs/server/codes.md`: error replies to commands ([`Error`]), reasons a
//! subscription ends ([`Unsubscribe`]) and reasons a connection closes
//! ([`Disconnect`]). The only place where these numbers appear; the HTTP
//! statuses of the server API are the publisher's business.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Why a command failed: an error reply `{"id":N,"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{} ({})", self.message(), self.code())]
pub enum Error {
    /// 100: something broke on the server side (an engine call failed).
    Internal,
    /// 101: the server API key is missing or wrong.
    Unauthorized,
    /// 102: the channel's namespace does not exist.
    UnknownChannel,
    /// 103: the connection may not do this in this channel.
    PermissionDenied,
    /// 104: no such method (client `rpc`, unknown server API method).
    MethodNotFound,
    /// 105: the connection is already subscribed to the channel.
    AlreadySubscribed,
    /// 106: too many subscriptions on one connection.
    LimitExceeded,
    /// 107: a malformed request (bad channel name, missing field, bad limit).
    BadRequest,
    /// 108: the channel does not offer this (history, presence).
    NotAvailable,
    /// 109: the token expired; SDKs refresh it and try again.
    TokenExpired,
    /// 110: expired.
    Expired,
    /// 111: too many requests.
    TooManyRequests,
    /// 112: the stream position asked for belongs to another epoch.
    UnrecoverablePosition,
}

impl Error {
    /// Every condition, in code order.
    pub const ALL: [Error; 13] = [
        Error::Internal,
        Error::Unauthorized,
        Error::UnknownChannel,
        Error::PermissionDenied,
        Error::MethodNotFound,
        Error::AlreadySubscribed,
        Error::LimitExceeded,
        Error::BadRequest,
        Error::NotAvailable,
        Error::TokenExpired,
        Error::Expired,
        Error::TooManyRequests,
        Error::UnrecoverablePosition,
    ];

    /// The protocol error code.
    pub const fn code(self) -> u32 {
        match self {
            Error::Internal => 100,
            Error::Unauthorized => 101,
            Error::UnknownChannel => 102,
            Error::PermissionDenied => 103,
            Error::MethodNotFound => 104,
            Error::AlreadySubscribed => 105,
            Error::LimitExceeded => 106,
            Error::BadRequest => 107,
            Error::NotAvailable => 108,
            Error::TokenExpired => 109,
            Error::Expired => 110,
            Error::TooManyRequests => 111,
            Error::UnrecoverablePosition => 112,
        }
    }

    /// The human-readable message, fixed per code.
    pub const fn message(self) -> &'static str {
        match self {
            Error::Internal => "internal server error",
            Error::Unauthorized => "unauthorized",
            Error::UnknownChannel => "unknown channel",
            Error::PermissionDenied => "permission denied",
            Error::MethodNotFound => "method not found",
            Error::AlreadySubscribed => "already subscribed",
            Error::LimitExceeded => "limit exceeded",
            Error::BadRequest => "bad request",
            Error::NotAvailable => "not available",
            Error::TokenExpired => "token expired",
            Error::Expired => "expired",
            Error::TooManyRequests => "too many requests",
            Error::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// Worth retrying: SDKs back off and try again.
    pub const fn temporary(self) -> bool {
        matches!(self, Error::Internal | Error::TooManyRequests)
    }
}

impl Serialize for Error {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = if self.temporary() { 3 } else { 2 };
        let mut s = serializer.serialize_struct("Error", fields)?;
        s.serialize_field("code", &self.code())?;
        s.serialize_field("message", self.message())?;
        if self.temporary() {
            s.serialize_field("temporary", &true)?;
        }
        s.end()
    }
}

/// Why the server ended one subscription: the code and reason of an unsubscribe
/// push. Codes below 2500 are final; from 2500 SDKs subscribe again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribe {
    /// 2000: the server API (or a control command) unsubscribed the user.
    Server,
    /// 2501: the subscription token expired and was not refreshed.
    Expired,
}

impl Unsubscribe {
    /// The push's code.
    pub const fn code(self) -> u32 {
        match self {
            Unsubscribe::Server => 2000,
            Unsubscribe::Expired => 2501,
        }
    }

    /// The push's reason.
    pub const fn reason(self) -> &'static str {
        match self {
            Unsubscribe::Server => "server unsubscribe",
            Unsubscribe::Expired => "subscription expired",
        }
    }
}

/// Why a connection is closed: the WebSocket close code and reason.
/// 3000-3499 and 4000-4499 tell SDKs to reconnect; 3500-3999 and 4500-4999 are terminal.
/// A struct rather than an enum: the server API may close with any code it is given.
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
    /// 1000: the client went away by itself (the server sends no close of its own).
    pub const NORMAL: Disconnect = dis(1000, "normal closure");
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
    /// 3011: the server API closed the connection and the client may come back.
    pub const FORCE_RECONNECT: Disconnect = dis(3011, "force reconnect");
    /// 3012: no pong in time.
    pub const NO_PONG: Disconnect = dis(3012, "no pong");
    /// 3013: the client kept sending commands over `client.commands_per_second`.
    pub const TOO_MANY_REQUESTS: Disconnect = dis(3013, "too many requests");
    /// 3500.
    pub const INVALID_TOKEN: Disconnect = dis(3500, "invalid token");
    /// 3501.
    pub const BAD_REQUEST: Disconnect = dis(3501, "bad request");
    /// 3501: one frame carried more commands than a connection may send at once.
    pub const TOO_MANY_COMMANDS: Disconnect = dis(3501, "too many commands");
    /// 3502: never sent connect.
    pub const STALE: Disconnect = dis(3502, "stale");
    /// 3503: the server API closed the connection for good (its default code).
    pub const FORCE_DISCONNECT: Disconnect = dis(3503, "force disconnect");
    /// 3507.
    pub const PERMISSION_DENIED: Disconnect = dis(3507, "permission denied");

    /// Every close the server names, in code order (the vocabulary of the
    /// `code` label of `herald_disconnects_total`).
    pub const ALL: [Disconnect; 20] = [
        Disconnect::NORMAL,
        Disconnect::PROTOCOL_ERROR,
        Disconnect::INVALID_PAYLOAD,
        Disconnect::MESSAGE_TOO_BIG,
        Disconnect::CONNECTION_CLOSED,
        Disconnect::SHUTDOWN,
        Disconnect::SERVER_ERROR,
        Disconnect::EXPIRED,
        Disconnect::SLOW,
        Disconnect::WRITE_ERROR,
        Disconnect::INSUFFICIENT_STATE,
        Disconnect::FORCE_RECONNECT,
        Disconnect::NO_PONG,
        Disconnect::TOO_MANY_REQUESTS,
        Disconnect::INVALID_TOKEN,
        Disconnect::BAD_REQUEST,
        Disconnect::TOO_MANY_COMMANDS,
        Disconnect::STALE,
        Disconnect::FORCE_DISCONNECT,
        Disconnect::PERMISSION_DENIED,
    ];

    /// Whether the server API may close connections with `code`: the ranges
    /// Centrifugo leaves to applications (and RFC 6455 allows on the wire).
    pub const fn is_application(code: u16) -> bool {
        matches!(code, 3000..=4999)
    }

    /// Whether SDKs give up after this close instead of reconnecting.
    pub const fn is_terminal(code: u16) -> bool {
        matches!(code, 3500..=3999 | 4500..=4999)
    }

    /// A close ordered through the server API with `code`: its reason says
    /// whether the client should come back.
    pub const fn forced(code: u16) -> Disconnect {
        let reason = if Disconnect::is_terminal(code) {
            Disconnect::FORCE_DISCONNECT.reason
        } else {
            Disconnect::FORCE_RECONNECT.reason
        };
        Disconnect { code, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_protocol_table() {
        let table: Vec<(u32, &str, bool)> = Error::ALL
            .iter()
            .map(|e| (e.code(), e.message(), e.temporary()))
            .collect();
        assert_eq!(
            table,
            [
                (100, "internal server error", true),
                (101, "unauthorized", false),
                (102, "unknown channel", false),
                (103, "permission denied", false),
                (104, "method not found", false),
                (105, "already subscribed", false),
                (106, "limit exceeded", false),
                (107, "bad request", false),
                (108, "not available", false),
                (109, "token expired", false),
                (110, "expired", false),
                (111, "too many requests", true),
                (112, "unrecoverable position", false),
            ]
        );
        assert_eq!(
            serde_json::to_string(&Error::UnknownChannel).unwrap(),
            r#"{"code":102,"message":"unknown channel"}"#
        );
        assert_eq!(
            serde_json::to_string(&Error::TooManyRequests).unwrap(),
            r#"{"code":111,"message":"too many requests","temporary":true}"#
        );
        assert_eq!(Error::BadRequest.to_string(), "bad request (107)");
    }

    #[test]
    fn unsubscribe_reasons_and_forced_disconnects() {
        assert_eq!(
            (Unsubscribe::Server.code(), Unsubscribe::Server.reason()),
            (2000, "server unsubscribe")
        );
        assert_eq!(
            (Unsubscribe::Expired.code(), Unsubscribe::Expired.reason()),
            (2501, "subscription expired")
        );
        assert_eq!(Disconnect::forced(3503), Disconnect::FORCE_DISCONNECT);
        assert_eq!(Disconnect::forced(3011), Disconnect::FORCE_RECONNECT);
        assert_eq!(Disconnect::forced(4999).reason, "force disconnect");
        assert_eq!(Disconnect::forced(4000).reason, "force reconnect");
        assert_eq!(Disconnect::forced(3000).reason, "force reconnect");
        assert!(Disconnect::ALL.windows(2).all(|w| w[0].code <= w[1].code));
    }
}
