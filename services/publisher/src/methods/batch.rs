//! `batch`: several method calls in one request. Answers as Centrifugo does
//! (`BatchResponse` in its `api.proto`): `{"replies": [...]}` at the top level,
//! not under `result`, one reply per command in command order, each
//! `{"<method>": result}` or `{"error": {...}}`. With `parallel` the commands
//! run concurrently, otherwise one after another, except that consecutive
//! `publish` commands are handed to the engine together, in command order
//! (the engine keeps that order). Metrics count the batch only.

use std::collections::HashMap;
use std::future::Future;

use futures_util::stream::{self, StreamExt};
use herald_core::protocol::Error;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::{to_raw_value, RawValue};

use super::{parse_envelope, raw, Outcome};
use crate::{ApiError, Publisher};

/// Most commands of one parallel batch in flight at once (Centrifugo's
/// `batchRequestMaxConcurrency`): the rest wait for a slot, in order.
const MAX_IN_FLIGHT: usize = 1024;

/// One command: a single method name and its request. Missing or `null`
/// fields are accepted as Centrifugo's decoder accepts them (no commands, not
/// parallel).
type Command = Option<HashMap<String, Box<RawValue>>>;

#[derive(Deserialize)]
struct Request {
    commands: Option<Vec<Command>>,
    parallel: Option<bool>,
}

/// One command's answer: `{"<method>": result}` or `{"error": {...}}`.
struct Reply {
    key: String,
    value: Box<RawValue>,
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(&self.key, &self.value)?;
        map.end()
    }
}

#[derive(Serialize)]
struct Response {
    replies: Vec<Reply>,
}

pub(super) async fn call(api: &Publisher, body: &str) -> Outcome {
    let r: Request = parse_envelope(body)?;
    let commands = r.commands.unwrap_or_default();
    let replies = run_all(commands, r.parallel.unwrap_or(false), is_publish, |c| {
        answer(api, c)
    })
    .await;
    let replies = replies.into_iter().collect::<Result<Vec<_>, _>>()?;
    raw(&Response { replies })
}

/// Runs one command; whatever goes wrong is that command's error reply.
async fn answer(api: &Publisher, command: Command) -> Result<Reply, ApiError> {
    // Centrifugo: a `null` command is a bad request.
    let Some(command) = command else {
        return error_reply(Error::BadRequest.into());
    };
    let mut methods = command.into_iter();
    let outcome = match (methods.next(), methods.next()) {
        // Centrifugo: a command naming no method it knows is "not found".
        (None, _) => Err(Error::MethodNotFound.into()),
        // Which of several methods was meant is anyone's guess.
        (Some(_), Some(_)) => Err(Error::BadRequest.into()),
        // Centrifugo's `Command` has no `batch`: not found, never recursion.
        (Some((method, _)), None) if method == "batch" => Err(Error::MethodNotFound.into()),
        (Some((method, body)), None) => api
            .dispatch(&method, body.get())
            .await
            .map(|result| (method, result)),
    };
    match outcome {
        Ok((key, value)) => Ok(Reply { key, value }),
        Err(e) => error_reply(e),
    }
}

fn error_reply(e: ApiError) -> Result<Reply, ApiError> {
    Ok(Reply {
        key: "error".to_owned(),
        value: to_raw_value(&e.error).map_err(|_| ApiError::from(Error::Internal))?,
    })
}

/// Whether a command is a `publish` (and nothing else).
fn is_publish(command: &Command) -> bool {
    command
        .as_ref()
        .is_some_and(|c| c.len() == 1 && c.contains_key("publish"))
}

/// Answers every command, in command order: concurrently on this task when
/// `parallel` (at most [`MAX_IN_FLIGHT`] at once), else each after the last,
/// except that each run of consecutive commands for which `joins` holds runs
/// together: their first polls come in command order (so each reaches the
/// engine's queue before the next) and the command after them waits for all.
async fn run_all<C, T, F, Fut>(
    commands: Vec<C>,
    parallel: bool,
    joins: impl Fn(&C) -> bool,
    answer: F,
) -> Vec<T>
where
    F: Fn(C) -> Fut,
    Fut: Future<Output = T>,
{
    if parallel {
        return stream::iter(commands)
            .map(answer)
            .buffered(MAX_IN_FLIGHT)
            .collect()
            .await;
    }
    let mut replies = Vec::with_capacity(commands.len());
    let mut commands = commands.into_iter().peekable();
    while let Some(command) = commands.next() {
        if !joins(&command) {
            replies.push(answer(command).await);
            continue;
        }
        let mut run = vec![command];
        while run.len() < MAX_IN_FLIGHT {
            match commands.next_if(&joins) {
                Some(next) => run.push(next),
                None => break,
            }
        }
        let answers = stream::iter(run).map(&answer).buffered(MAX_IN_FLIGHT);
        replies.extend(answers.collect::<Vec<_>>().await);
    }
    replies
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Runs commands that each yield `n` times, logging when they start and
    /// end; those with an odd `n` join their neighbours in a sequential batch.
    async fn logged(yields: Vec<usize>, parallel: bool) -> (Vec<usize>, Vec<String>) {
        let log = Mutex::new(Vec::new());
        let answers = run_all(
            yields.into_iter().enumerate().collect(),
            parallel,
            |(_, n)| n % 2 == 1,
            |(i, n)| {
                let log = &log;
                async move {
                    log.lock().unwrap().push(format!("start {i}"));
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                    log.lock().unwrap().push(format!("end {i}"));
                    i
                }
            },
        )
        .await;
        (answers, log.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_parallel_batch_runs_its_commands_together_and_answers_in_order() {
        let (answers, log) = logged(vec![3, 0, 1], true).await;
        assert_eq!(answers, [0, 1, 2]);
        let slowest_ended = log.iter().position(|e| e == "end 0").unwrap();
        assert!(
            ["start 1", "end 1", "start 2"]
                .iter()
                .all(|e| log[..slowest_ended].iter().any(|l| l == e)),
            "the others run while the slowest waits: {log:?}"
        );
    }

    #[tokio::test]
    async fn a_sequential_batch_runs_each_command_after_the_last() {
        let (answers, log) = logged(vec![4, 0, 2], false).await;
        assert_eq!(answers, [0, 1, 2]);
        assert_eq!(
            log,
            ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
        );
    }

    #[tokio::test]
    async fn a_sequential_batch_starts_consecutive_joining_commands_together_in_order() {
        let (answers, log) = logged(vec![5, 3, 1, 0, 1, 2], false).await;
        assert_eq!(answers, [0, 1, 2, 3, 4, 5]);
        assert_eq!(
            log,
            [
                "start 0", "start 1", "start 2", "end 2", "end 1", "end 0", "start 3", "end 3",
                "start 4", "end 4", "start 5", "end 5"
            ]
        );
    }

    #[test]
    fn a_reply_is_one_key_naming_its_method_or_the_error() {
        let reply = Reply {
            key: "publish".to_owned(),
            value: to_raw_value(&serde_json::json!({"offset": 1})).unwrap(),
        };
        let response = Response {
            replies: vec![reply],
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"replies":[{"publish":{"offset":1}}]}"#
        );
    }
}
