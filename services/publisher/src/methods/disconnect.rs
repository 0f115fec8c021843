//! `disconnect`: closes a user's connections (or one of them) on every node,
//! with the given code (3000-4999, see [`Disconnect::is_application`]) or
//! "force disconnect".

use herald_core::control::Command;
use herald_core::protocol::{Disconnect, Error};
use serde::Deserialize;

use super::{parse, Outcome};
use crate::{ApiError, Publisher};

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    user: String,
    client: Option<String>,
    disconnect: Option<Code>,
}

#[derive(Deserialize)]
struct Code {
    code: u16,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse(body)?;
    if r.user.is_empty() {
        return Err(Error::BadRequest.into());
    }
    let code = r
        .disconnect
        .map_or(Disconnect::FORCE_DISCONNECT.code, |d| d.code);
    if !Disconnect::is_application(code) {
        return Err(ApiError::bad_request());
    }
    api.control(Command::Disconnect {
        user: r.user,
        client: r.client,
        code,
        reason: String::new(),
    })
    .await
}
