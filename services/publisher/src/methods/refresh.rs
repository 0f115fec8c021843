//! `refresh`: moves a user's connection expiry (or expires them now) on every node.

use herald_core::control::Command;
use herald_core::protocol::Error;
use serde::Deserialize;

use super::{parse, Outcome};
use crate::Publisher;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    user: String,
    client: Option<String>,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expire_at: i64,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse(body)?;
    if r.user.is_empty() {
        return Err(Error::BadRequest.into());
    }
    api.control(Command::Refresh {
        user: r.user,
        client: r.client,
        expired: r.expired,
        expire_at: r.expire_at,
    })
    .await
}
