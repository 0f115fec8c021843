//! The Centrifugo client protocol, JSON variant (protocol v2, as the official
//! SDKs speak it): commands in, replies and pushes out, error and disconnect
//! codes. Pure data and codec; the state machine lives in the gateway's session.

pub mod codes;
pub mod command;
pub mod reply;

pub use codes::{Disconnect, Error, Unsubscribe};
pub use command::{Command, Request};
pub use reply::Reply;
