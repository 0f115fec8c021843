//! `rpc`: known to the API, but Herald has no server-side procedures: always error 104.

use herald_core::protocol::Error;

use super::Outcome;
use crate::Publisher;

pub(super) async fn call(_api: &Publisher, _body: &str) -> Outcome {
    Err(Error::MethodNotFound.into())
}
