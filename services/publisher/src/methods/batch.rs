//! `batch`: several method calls in one request, run in order; each answers
//! its result or its error. A batch inside a batch is a bad request.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{parse_envelope, raw, Outcome};
use crate::{ApiError, Publisher};

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    commands: Vec<HashMap<String, Box<RawValue>>>,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse_envelope(body)?;
    let mut replies: Vec<HashMap<String, Box<RawValue>>> = Vec::with_capacity(r.commands.len());
    for command in r.commands {
        let Some((method, body)) = command.into_iter().next() else {
            return Err(ApiError::bad_request());
        };
        if method == "batch" {
            return Err(ApiError::bad_request());
        }
        let mut reply = HashMap::new();
        match api.dispatch(&method, body.get()).await {
            Ok(result) => reply.insert(method, result),
            Err(e) => reply.insert("error".to_owned(), raw(&e.error)?),
        };
        replies.push(reply);
    }
    raw(&serde_json::json!({ "replies": replies }))
}
