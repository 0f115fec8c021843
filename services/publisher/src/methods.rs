//! The server API methods, one module each, behind [`METHODS`]: the one table
//! that both dispatches a call and lists what the API answers. Helpers the
//! methods share (body parsing, result encoding, engine failures) live here.

mod batch;
mod broadcast;
mod channels;
mod disconnect;
mod history;
mod history_remove;
mod info;
mod presence;
mod presence_stats;
mod publish;
mod refresh;
mod rpc;
mod subscribe;
mod unsubscribe;

use std::future::Future;
use std::pin::Pin;

use axum::http::StatusCode;
use herald_core::channel::Channel;
use herald_core::channel_ops::{self, Failure};
use herald_core::control;
use herald_core::engine::EngineError;
use herald_core::protocol::Error;
use herald_core::publication::{is_deeper_than, MAX_DATA_DEPTH};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::{to_raw_value, RawValue};
use tracing::warn;

use crate::{ApiError, Publisher};

/// What a method answers: its result, or an error reply.
pub(crate) type Outcome = Result<Box<RawValue>, ApiError>;

/// A running method call.
pub(crate) type Call<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// One method: takes the request body (JSON), answers its result.
pub(crate) type Method = for<'a> fn(&'a Publisher, &'a str) -> Call<'a>;

macro_rules! table {
    ($($name:literal => $module:ident),* $(,)?) => {
        /// Every method the API answers, by name.
        pub(crate) const METHODS: &[(&str, Method)] = &[
            $(($name, |api, body| Box::pin($module::call(api, body)))),*
        ];
    };
}

table! {
    "publish" => publish,
    "broadcast" => broadcast,
    "subscribe" => subscribe,
    "unsubscribe" => unsubscribe,
    "disconnect" => disconnect,
    "refresh" => refresh,
    "presence" => presence,
    "presence_stats" => presence_stats,
    "history" => history,
    "history_remove" => history_remove,
    "channels" => channels,
    "info" => info,
    "batch" => batch,
    "rpc" => rpc,
}

/// The method called `name`.
pub(crate) fn find(name: &str) -> Option<Method> {
    METHODS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
}

impl Publisher {
    /// Runs the method called `method`; an unknown name is 404 with error 104.
    pub(crate) async fn dispatch(&self, method: &str, body: &str) -> Outcome {
        match find(method) {
            Some(call) => call(self, body).await,
            None => Err(ApiError::status(
                StatusCode::NOT_FOUND,
                Error::MethodNotFound,
            )),
        }
    }

    fn channel(&self, name: &str) -> Result<Channel, ApiError> {
        Ok(channel_ops::parse(name, &self.namespaces)?)
    }

    async fn control(&self, command: control::Command) -> Outcome {
        self.engine
            .publish_control(&command)
            .await
            .map_err(unavailable)?;
        raw(&Empty {})
    }
}

/// Requests that only name a channel.
#[derive(Deserialize)]
struct ChannelRequest {
    #[serde(default)]
    channel: String,
}

/// An empty result, `{}`.
#[derive(Serialize)]
struct Empty {}

/// Decodes a method's request. Publication data nested deeper than
/// [`MAX_DATA_DEPTH`] is a bad request: the request's own object is one
/// level more (no method takes deeper JSON of another kind).
fn parse<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    if is_deeper_than(body, MAX_DATA_DEPTH + 1) {
        return Err(ApiError::bad_request());
    }
    parse_envelope(body)
}

/// Decodes a request that wraps other methods' requests (each checked by its method).
fn parse_envelope<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|_| ApiError::bad_request())
}

fn raw<T: Serialize>(value: &T) -> Outcome {
    to_raw_value(value).map_err(|_| ApiError::from(Error::Internal))
}

fn unavailable(e: EngineError) -> ApiError {
    warn!(error = %e, "engine call failed");
    ApiError::status(StatusCode::SERVICE_UNAVAILABLE, Error::Internal)
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> ApiError {
        match failure {
            Failure::Refused(e) => e.into(),
            Failure::Engine(e) => unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{find, METHODS};

    #[test]
    fn the_table_lists_each_method_once() {
        let names: Vec<&str> = METHODS.iter().map(|(n, _)| *n).collect();
        let unique: HashSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert_eq!(names.len(), 14);
        assert!(find("publish").is_some() && find("rpc").is_some());
        assert!(find("no_such_method").is_none());
        assert_eq!(
            names,
            herald_core::metrics::labels::API_METHODS,
            "the metrics create a series for every method"
        );
    }
}
