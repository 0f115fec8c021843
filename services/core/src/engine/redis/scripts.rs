//! The Lua scripts (each one atomic, touching one channel's slot) and the
//! decoding of their replies. Run with `EVALSHA`, loaded again on `NOSCRIPT`
//! (after a Redis restart or failover the script cache is empty).

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::types::scripts::Script;
use fred::types::Value;

use super::envelope;
use crate::engine::EngineError;
use crate::publication::{Publication, StreamPosition};

/// KEYS: stream, meta, and for a keyed publish its result. ARGV: publication
/// JSON, history size, history TTL (ms), epoch to create, meta TTL (s), pub/sub
/// channel, `publish` or `spublish`, result TTL (s), `traceparent` (empty for none).
/// Returns `{offset, epoch}`: a repeated key answers the stored result and
/// publishes nothing.
const PUBLISH: &str = r#"
if KEYS[3] then
  local done = redis.call('get', KEYS[3])
  if done then
    local sep = string.find(done, ':', 1, true)
    return {tonumber(string.sub(done, 1, sep - 1)), string.sub(done, sep + 1)}
  end
end
local offset = redis.call('hincrby', KEYS[2], 's', 1)
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('del', KEYS[1])
end
redis.call('expire', KEYS[2], ARGV[5])
local id = string.format('%d-0', offset)
local added = redis.pcall('xadd', KEYS[1], 'MAXLEN', ARGV[2], id, 'd', ARGV[1])
if type(added) == 'table' and added.err then
  -- A stream left from an older generation: it cannot hold this offset.
  redis.call('del', KEYS[1])
  redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[2], id, 'd', ARGV[1])
end
redis.call('pexpire', KEYS[1], ARGV[3])
local trace = ''
if ARGV[9] ~= '' then
  trace = ',"t":"' .. ARGV[9] .. '"'
end
redis.call(ARGV[7], ARGV[6],
  '{"o":' .. string.format('%d', offset) .. ',"e":"' .. epoch .. '","p":' .. ARGV[1] .. trace .. '}')
if KEYS[3] then
  redis.call('set', KEYS[3], string.format('%d', offset) .. ':' .. epoch, 'EX', ARGV[8])
end
return {offset, epoch}
"#;

/// A keyed publish without history. KEYS: its result. ARGV: pub/sub channel,
/// message, `publish` or `spublish`, result TTL (s). Publishes unless the key
/// was used; the result of a publish without history is empty (`0:`).
const PUBLISH_ONCE: &str = r#"
if redis.call('set', KEYS[1], '0:', 'NX', 'EX', ARGV[4]) then
  redis.call(ARGV[3], ARGV[1], ARGV[2])
end
return 1
"#;

/// KEYS: stream, meta. ARGV: epoch to create, meta TTL (s), start id or `-`/`+`,
/// count (`-1` all, `0` none), `1` for newest first.
/// Returns `{top offset, epoch, entries}`.
const HISTORY: &str = r#"
if redis.call('hsetnx', KEYS[2], 'e', ARGV[1]) == 1 then
  redis.call('expire', KEYS[2], ARGV[2])
  redis.call('del', KEYS[1])
end
local meta = redis.call('hmget', KEYS[2], 's', 'e')
local entries = {}
if ARGV[4] ~= '0' then
  local args
  if ARGV[5] == '1' then
    args = {'xrevrange', KEYS[1], '+', ARGV[3]}
  else
    args = {'xrange', KEYS[1], ARGV[3], '+'}
  end
  if ARGV[4] ~= '-1' then
    table.insert(args, 'COUNT')
    table.insert(args, ARGV[4])
  end
  entries = redis.call(unpack(args))
end
return {meta[1] or '0', meta[2], entries}
"#;

/// KEYS: presence hash, expiry set. ARGV: client, info JSON, expires at (ms), key TTL (s).
const PRESENCE_ADD: &str = r#"
redis.call('zadd', KEYS[2], ARGV[3], ARGV[1])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('expire', KEYS[1], ARGV[4])
redis.call('expire', KEYS[2], ARGV[4])
"#;

/// KEYS: presence hash, expiry set. ARGV: client.
const PRESENCE_REMOVE: &str = r#"
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
"#;

/// KEYS: presence hash, expiry set. ARGV: now (ms). Drops expired entries, returns the rest's values.
const PRESENCE_GET: &str = r#"
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', ARGV[1])
for _, client in ipairs(expired) do
  redis.call('hdel', KEYS[1], client)
end
if #expired > 0 then
  redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[1])
end
return redis.call('hvals', KEYS[1])
"#;

/// The engine's scripts.
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) publish_once: Script,
    pub(super) history: Script,
    pub(super) presence_add: Script,
    pub(super) presence_remove: Script,
    pub(super) presence_get: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            publish: Script::from_lua(PUBLISH),
            publish_once: Script::from_lua(PUBLISH_ONCE),
            history: Script::from_lua(HISTORY),
            presence_add: Script::from_lua(PRESENCE_ADD),
            presence_remove: Script::from_lua(PRESENCE_REMOVE),
            presence_get: Script::from_lua(PRESENCE_GET),
        }
    }

    /// Loads every script (on every primary in Cluster), so the first calls skip the `NOSCRIPT` round trip.
    pub(super) async fn load(&self, client: &Client) -> Result<(), FredError> {
        for s in [
            &self.publish,
            &self.publish_once,
            &self.history,
            &self.presence_add,
            &self.presence_remove,
            &self.presence_get,
        ] {
            s.load(client).await?;
        }
        Ok(())
    }
}

/// Runs a script by hash, loading it when the server does not know it.
pub(super) async fn run(
    script: &Script,
    client: &Client,
    keys: Vec<String>,
    args: Vec<Value>,
) -> Result<Value, FredError> {
    script.evalsha_with_reload(client, keys, args).await
}

fn malformed(what: &str) -> EngineError {
    EngineError::Internal(format!("malformed redis reply: {what}"))
}

/// Decodes the publish script's `{offset, epoch}`.
pub(super) fn position(reply: Value) -> Result<StreamPosition, EngineError> {
    let mut parts = reply.into_array().into_iter();
    let offset = parts
        .next()
        .and_then(|v| v.as_u64())
        .ok_or_else(|| malformed("offset"))?;
    let epoch = parts
        .next()
        .and_then(|v| v.into_string())
        .ok_or_else(|| malformed("epoch"))?;
    Ok(StreamPosition { offset, epoch })
}

/// A history script reply: the stream's top position and the entries read.
#[derive(Debug)]
pub(super) struct Read {
    pub(super) position: StreamPosition,
    pub(super) publications: Vec<Publication>,
}

/// Decodes the history script's `{top, epoch, entries}`.
pub(super) fn read(reply: Value) -> Result<Read, EngineError> {
    let mut parts = reply.into_array().into_iter();
    let offset = parts.next().and_then(|v| v.as_u64()).unwrap_or(0);
    let epoch = parts
        .next()
        .and_then(|v| v.into_string())
        .ok_or_else(|| malformed("epoch"))?;
    let entries = parts.next().map(Value::into_array).unwrap_or_default();
    let mut publications = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut entry = entry.into_array().into_iter();
        let id = entry
            .next()
            .and_then(|v| v.into_string())
            .ok_or_else(|| malformed("entry id"))?;
        let offset = id
            .split('-')
            .next()
            .and_then(|o| o.parse::<u64>().ok())
            .ok_or_else(|| malformed("entry id"))?;
        let fields = entry.next().map(Value::into_array).unwrap_or_default();
        let data = fields
            .chunks(2)
            .find(|kv| kv[0].as_bytes() == Some(b"d"))
            .and_then(|kv| kv.get(1))
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| malformed("entry data"))?;
        let publication =
            envelope::decode_stored(offset, data).map_err(|e| malformed(&e.to_string()))?;
        publications.push(publication);
    }
    Ok(Read {
        position: StreamPosition { offset, epoch },
        publications,
    })
}
