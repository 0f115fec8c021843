//! Channel operations offered both to clients (the gateway's session) and to
//! backends (the server API), so that both sides name channels, check options
//! and read history and presence by the same rules. Who may ask (subscribed,
//! API key) is each caller's business, and so is what an engine failure becomes.
//!
//! History `limit`, on both sides: `0` answers the stream position only, `N > 0`
//! at most `N` publications, `-1` as many as the caller's cap allows (Centrifugo's
//! "all", capped: `docs/server/history_and_recovery.md`), any other negative
//! value is error 107 (bad request). The cap is the caller's: the client
//! setting `history_limit` for sessions, [`API_HISTORY_CAP`] for the server API.

use crate::channel::{Channel, ChannelError};
use crate::engine::{Engine, EngineError, HistoryQuery};
use crate::namespace::Namespaces;
use crate::protocol::reply::{HistoryResult, PresenceResult, PresenceStatsResult};
use crate::protocol::Error;
use crate::publication::StreamPosition;

/// Most publications one server API history call answers.
pub const API_HISTORY_CAP: usize = 1000;

/// Why an operation failed: refused by the protocol's rules, or the engine failed
/// (clients get error 100, the server API answers 503).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The request breaks a rule; answered with this error.
    #[error(transparent)]
    Refused(#[from] Error),
    /// The engine call failed; worth retrying.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<ChannelError> for Error {
    fn from(e: ChannelError) -> Error {
        match e {
            ChannelError::BadName => Error::BadRequest,
            ChannelError::UnknownNamespace => Error::UnknownChannel,
        }
    }
}

/// Parses a channel name as given by a client or a backend.
pub fn parse(name: &str, namespaces: &Namespaces) -> Result<Channel, Error> {
    Ok(Channel::parse(name, namespaces)?)
}

/// How many publications a history `limit` asks for, under `cap` (module docs).
pub fn history_limit(limit: i64, cap: usize) -> Result<usize, Error> {
    match limit {
        -1 => Ok(cap),
        n if n < -1 => Err(Error::BadRequest),
        n => Ok(usize::try_from(n).unwrap_or(usize::MAX).min(cap)),
    }
}

/// Reads a channel's history: at most `limit` publications (module docs) after
/// `since`, newest first when `reverse`. A `since` of another epoch is error 112.
pub async fn history(
    engine: &Engine,
    channel: &Channel,
    limit: i64,
    since: Option<StreamPosition>,
    reverse: bool,
    cap: usize,
) -> Result<HistoryResult, Failure> {
    if !channel.options().has_history() {
        return Err(Error::NotAvailable.into());
    }
    let query = HistoryQuery {
        since: since.clone(),
        limit: Some(history_limit(limit, cap)?),
        reverse,
    };
    let history = engine.history(channel, query).await?;
    if since.is_some_and(|s| s.epoch != history.position.epoch) {
        return Err(Error::UnrecoverablePosition.into());
    }
    Ok(HistoryResult {
        publications: history.publications,
        epoch: history.position.epoch,
        offset: history.position.offset,
    })
}

/// Who is in a channel; error 108 unless its namespace keeps presence.
pub async fn presence(engine: &Engine, channel: &Channel) -> Result<PresenceResult, Failure> {
    if !channel.options().presence {
        return Err(Error::NotAvailable.into());
    }
    let presence = engine.presence(channel).await?;
    Ok(PresenceResult { presence })
}

/// How many are in a channel; error 108 unless its namespace keeps presence.
pub async fn presence_stats(
    engine: &Engine,
    channel: &Channel,
) -> Result<PresenceStatsResult, Failure> {
    if !channel.options().presence {
        return Err(Error::NotAvailable.into());
    }
    let stats = engine.presence_stats(channel).await?;
    Ok(PresenceStatsResult {
        num_clients: stats.num_clients,
        num_users: stats.num_users,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{memory::Memory, NoConnections, PublishOptions};
    use serde_json::value::RawValue;

    #[test]
    fn history_limits_mean_the_same_everywhere() {
        assert_eq!(history_limit(0, 300), Ok(0));
        assert_eq!(history_limit(10, 300), Ok(10));
        assert_eq!(history_limit(5000, 300), Ok(300));
        assert_eq!(history_limit(i64::MAX, 300), Ok(300));
        assert_eq!(history_limit(-1, 300), Ok(300));
        assert_eq!(history_limit(-1, API_HISTORY_CAP), Ok(1000));
        assert_eq!(history_limit(-2, 300), Err(Error::BadRequest));
        assert_eq!(history_limit(i64::MIN, 300), Err(Error::BadRequest));
    }

    #[test]
    fn channel_names_map_to_one_error_each() {
        let ns = Namespaces::default();
        assert_eq!(parse("user:42", &ns).unwrap().name(), "user:42");
        assert_eq!(parse("nope:1", &ns).unwrap_err(), Error::UnknownChannel);
        assert_eq!(parse("", &ns).unwrap_err(), Error::BadRequest);
    }

    #[tokio::test]
    async fn history_and_presence_check_the_namespace() {
        let engine = Engine::Memory(Memory::new(Arc::new(NoConnections::default())));
        let ns = Namespaces::default();
        let user = parse("user:1", &ns).unwrap();
        for n in 1..=3 {
            let data = RawValue::from_string(format!("{n}")).unwrap();
            engine
                .publish(&user, data, PublishOptions::default())
                .await
                .unwrap();
        }
        let h = history(&engine, &user, 2, None, true, 300).await.unwrap();
        let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
        assert_eq!((offsets, h.offset), (vec![3, 2], 3));
        let other = Some(StreamPosition {
            offset: 1,
            epoch: "other".into(),
        });
        let stale = history(&engine, &user, -1, other, false, 300).await;
        assert!(matches!(
            stale,
            Err(Failure::Refused(Error::UnrecoverablePosition))
        ));
        let bad = history(&engine, &user, -3, None, false, 300).await;
        assert!(matches!(bad, Err(Failure::Refused(Error::BadRequest))));

        let plain = parse("plain", &ns).unwrap();
        let none = history(&engine, &plain, 1, None, false, 300).await;
        assert!(matches!(none, Err(Failure::Refused(Error::NotAvailable))));
        let none = presence(&engine, &plain).await;
        assert!(matches!(none, Err(Failure::Refused(Error::NotAvailable))));
        let none = presence_stats(&engine, &plain).await;
        assert!(matches!(none, Err(Failure::Refused(Error::NotAvailable))));
    }
}
