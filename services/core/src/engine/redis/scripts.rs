//! The Lua scripts (each one atomic, touching one channel's slot) and the
//! decoding of their replies. Run with `EVALSHA`, loaded again on `NOSCRIPT`
//! (after a Redis restart or failover the script cache is empty).

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::ClientLike;
use fred::types::config::{Options, Server};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};

use super::envelope;
use crate::engine::EngineError;
use crate::publication::{Publication, StreamPosition};

/// The body of the batch publish scripts: stores and publishes publications
/// in submission order, each exactly as a lone one would be. It expects
/// `keys` (per publication: stream, meta, and for a keyed one its result) and
/// `first`, the index of the first publication's arguments. ARGV[1]: `publish`
/// or `spublish`, ARGV[2]: result TTL (s); from `first`, eight per
/// publication: publication JSON, history size, history TTL (ms), epoch to
/// create, meta TTL (s), pub/sub channel, `traceparent` (empty for none), `1`
/// when it has an idempotency key.
/// Returns one `{offset, epoch}` per publication (a repeated key answers the
/// stored result and publishes nothing), or `{0, '', error}` for one that
/// failed: a failure stops only its own publication.
macro_rules! publish_batch_body {
    () => {
        r#"
local function publish(stream, meta, result, body, size, ttl, epoch_new, meta_ttl, channel, trace)
  if result then
    local done = redis.call('get', result)
    if done then
      local sep = string.find(done, ':', 1, true)
      return {tonumber(string.sub(done, 1, sep - 1)), string.sub(done, sep + 1)}
    end
  end
  local offset = redis.call('hincrby', meta, 's', 1)
  local epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = epoch_new
    redis.call('hset', meta, 'e', epoch)
    redis.call('del', stream)
  end
  redis.call('expire', meta, meta_ttl)
  local id = string.format('%d-0', offset)
  local added = redis.pcall('xadd', stream, 'MAXLEN', size, id, 'd', body)
  if type(added) == 'table' and added.err then
    -- A stream left from an older generation: it cannot hold this offset.
    redis.call('del', stream)
    redis.call('xadd', stream, 'MAXLEN', size, id, 'd', body)
  end
  redis.call('pexpire', stream, ttl)
  local traced = ''
  if trace ~= '' then
    traced = ',"t":"' .. trace .. '"'
  end
  redis.call(ARGV[1], channel,
    '{"o":' .. string.format('%d', offset) .. ',"e":"' .. epoch .. '","p":' .. body .. traced .. '}')
  if result then
    redis.call('set', result, string.format('%d', offset) .. ':' .. epoch, 'EX', ARGV[2])
  end
  return {offset, epoch}
end
local replies = {}
local k = 1
for a = first, #ARGV, 8 do
  local result = nil
  if ARGV[a + 7] == '1' then
    result = keys[k + 2]
  end
  local ok, reply = pcall(publish, keys[k], keys[k + 1], result, ARGV[a], ARGV[a + 1],
    ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  if ok then
    replies[#replies + 1] = reply
  else
    local message = reply
    if type(reply) == 'table' then
      message = reply.err
    end
    replies[#replies + 1] = {0, '', tostring(message)}
  end
  if result then
    k = k + 3
  else
    k = k + 2
  end
end
return replies
"#
    };
}

/// The batch publish script for one Cluster slot (or standalone Redis): the
/// keys are KEYS, the publications' arguments start at ARGV[3].
const PUBLISH_BATCH: &str = concat!("local keys, first = KEYS, 3\n", publish_batch_body!());

/// The batch publish script for one Cluster node: publications of several
/// slots that node serves. No key is declared (Redis refuses declared keys of
/// several slots; the client sends the call to the node, see [`run_on`]):
/// ARGV[3] is the number of keys, which follow in ARGV, then the
/// publications' arguments. A key whose slot the node does not serve (it
/// moved meanwhile) fails its own publication only, before it changed anything.
const PUBLISH_BATCH_NODE: &str = concat!(
    "#!lua flags=allow-cross-slot-keys\n",
    "local count = tonumber(ARGV[3])\n",
    "local keys, first = {unpack(ARGV, 4, 3 + count)}, 4 + count\n",
    publish_batch_body!()
);

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
    pub(super) publish_batch: Script,
    /// Redis Cluster only (script flags need Redis 7, as sharded pub/sub does).
    pub(super) publish_batch_node: Script,
    pub(super) publish_once: Script,
    pub(super) history: Script,
    pub(super) presence_add: Script,
    pub(super) presence_remove: Script,
    pub(super) presence_get: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            publish_batch: Script::from_lua(PUBLISH_BATCH),
            publish_batch_node: Script::from_lua(PUBLISH_BATCH_NODE),
            publish_once: Script::from_lua(PUBLISH_ONCE),
            history: Script::from_lua(HISTORY),
            presence_add: Script::from_lua(PRESENCE_ADD),
            presence_remove: Script::from_lua(PRESENCE_REMOVE),
            presence_get: Script::from_lua(PRESENCE_GET),
        }
    }

    /// Loads every script (on every primary in Cluster), so the first calls skip the `NOSCRIPT` round trip.
    pub(super) async fn load(&self, client: &Client, cluster: bool) -> Result<(), FredError> {
        if cluster {
            self.publish_batch_node.load(client).await?;
        }
        for s in [
            &self.publish_batch,
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

/// Runs a script that declares no key on the Cluster node `node`, with the
/// arguments `args` in order, loading it when the node does not know it.
pub(super) async fn run_on(
    script: &Script,
    client: &Client,
    node: &Server,
    args: &[&[Value]],
) -> Result<Value, FredError> {
    let options = Options {
        cluster_node: Some(node.clone()),
        ..Options::default()
    };
    let routed = client.with_options(&options);
    let evalsha = || CustomCommand::new_static("EVALSHA", ClusterHash::Random, false);
    let full = || {
        let mut full = Vec::with_capacity(2 + args.iter().map(|a| a.len()).sum::<usize>());
        full.push(Value::from(script.sha1().clone()));
        full.push(0.into());
        for part in args {
            full.extend_from_slice(part);
        }
        full
    };
    match routed.custom(evalsha(), full()).await {
        Err(e) if e.details().starts_with("NOSCRIPT") => {
            script.load(client).await?;
            routed.custom(evalsha(), full()).await
        }
        result => result,
    }
}

fn malformed(what: &str) -> EngineError {
    EngineError::Internal(format!("malformed redis reply: {what}"))
}

/// Decodes the batch publish script's reply: one position or error per
/// publication, `count` in all.
pub(super) fn positions(reply: Value, count: usize) -> Vec<Result<StreamPosition, EngineError>> {
    let mut replies: Vec<_> = reply.into_array().into_iter().map(position).collect();
    replies.resize_with(count, || Err(malformed("publication missing")));
    replies.truncate(count);
    replies
}

/// Decodes one `{offset, epoch}`, or a failed publication's `{0, '', error}`.
fn position(reply: Value) -> Result<StreamPosition, EngineError> {
    let mut parts = reply.into_array().into_iter();
    let offset = parts
        .next()
        .and_then(|v| v.as_u64())
        .ok_or_else(|| malformed("offset"))?;
    let epoch = parts
        .next()
        .and_then(|v| v.into_string())
        .ok_or_else(|| malformed("epoch"))?;
    // A stored result of a publish without history is `0:`: only a third part marks a failure.
    if let Some(error) = parts.next() {
        let error = error.into_string().unwrap_or_default();
        return Err(EngineError::Internal(format!("redis publish: {error}")));
    }
    Ok(StreamPosition { offset, epoch })
}

/// Whether a publication of the node's batch script failed because its slot
/// is not served by the node the call reached (it moved): nothing of it ran.
pub(super) fn slot_moved(e: &EngineError) -> bool {
    matches!(e, EngineError::Internal(m) if m.contains("non local key"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn array(values: Vec<Value>) -> Value {
        Value::Array(values)
    }

    #[test]
    fn batch_replies_decode_per_publication() {
        let reply = array(vec![
            array(vec![7.into(), "ep".into()]),
            array(vec![0.into(), "".into()]),
            array(vec![0.into(), "".into(), "ERR OOM".into()]),
        ]);
        let decoded = positions(reply, 4);
        assert_eq!(decoded.len(), 4);
        let position = |offset, epoch: &str| StreamPosition {
            offset,
            epoch: epoch.into(),
        };
        assert_eq!(decoded[0].as_ref().unwrap(), &position(7, "ep"));
        // A repeated key of a publish without history: its stored result, no failure.
        assert_eq!(decoded[1].as_ref().unwrap(), &position(0, ""));
        assert!(matches!(&decoded[2], Err(EngineError::Internal(m)) if m.contains("ERR OOM")));
        assert!(matches!(&decoded[3], Err(EngineError::Internal(_))));
        assert_eq!(positions(array(vec![]), 0).len(), 0);
    }
}
