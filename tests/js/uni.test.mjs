// Centrifugo's unidirectional transports against real herald processes, with raw clients as
// Centrifugo's documentation writes them: `ws` for /connection/uni_websocket (connect request as
// the first message, then one JSON push per message), Node's streaming `fetch` for
// /connection/uni_sse (`data:` events) and /connection/uni_http_stream (one push per line). Each
// transport gets its personal-channel and token-channel publications, recovers what it missed
// through the connect request's `subs` map, and is told a bad token with Centrifugo's disconnect
// push; on the memory engine and on Redis. Also: Origin and CORS, `cf_connect`, pings, the drain
// push (3001) and the transport label of the metrics.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Herald, signJwt, uid, withTimeout } from './lib/herald.mjs';
import { RedisServer } from './lib/redis.mjs';

const TRANSPORTS = ['uni_websocket', 'uni_sse', 'uni_http_stream'];

/** Pushes received by one client, awaitable. */
class Pushes {
  constructor() {
    this.list = [];
    this.waiters = new Set();
    this.raw = [];
  }

  add(push) {
    this.list.push(push);
    for (const w of [...this.waiters]) w();
  }

  /** The first push (received or future) that passes `filter`. */
  next(filter, what = 'push', timeout = 5000) {
    let w;
    const p = new Promise((resolve) => {
      w = () => {
        const found = this.list.find(filter);
        if (found) resolve(found);
      };
      this.waiters.add(w);
      w();
    });
    return withTimeout(p, timeout, `${what} (got ${JSON.stringify(this.list).slice(0, 400)})`)
      .finally(() => this.waiters.delete(w));
  }
}

/**
 * Opens a unidirectional connection with `request` (the connect request object). Resolves with
 * `{ pushes, ended, close }`; `ended` resolves with `{ code }` (the WebSocket close code, or
 * `undefined` for an HTTP stream that ended).
 */
async function openUni(herald, transport, request, { sseGet = false, headers = {} } = {}) {
  const base = `127.0.0.1:${herald.clientPort}/connection/${transport}`;
  const pushes = new Pushes();
  if (transport === 'uni_websocket') {
    const ws = new WebSocket(`ws://${base}`, { headers });
    ws.on('error', () => {});
    const ended = new Promise((resolve) => ws.on('close', (code) => resolve({ code })));
    ws.on('message', (data) => {
      const text = data.toString();
      pushes.raw.push(text);
      pushes.add(JSON.parse(text)); // one push per message: newline-joined pushes would throw here
    });
    await withTimeout(new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    }), 5000, 'uni_websocket open');
    ws.send(JSON.stringify(request));
    return { pushes, ended, close: () => ws.close(), status: 101, ws };
  }
  const abort = new AbortController();
  const url = sseGet
    ? `http://${base}?cf_connect=${encodeURIComponent(JSON.stringify(request))}`
    : `http://${base}`;
  const res = await fetch(url, {
    method: sseGet ? 'GET' : 'POST',
    body: sseGet ? undefined : JSON.stringify(request),
    headers,
    signal: abort.signal,
  });
  const contentType = res.headers.get('content-type');
  const ended = (async () => {
    if (!res.body) return {};
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          pushes.raw.push(line);
          if (transport === 'uni_sse') {
            if (line.startsWith('data: ')) pushes.add(JSON.parse(line.slice(6)));
          } else if (line !== '') {
            pushes.add(JSON.parse(line));
          }
        }
      }
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
    }
    return {};
  })();
  return { pushes, ended, close: () => abort.abort(), status: res.status, contentType };
}

const connectPush = (c) => c.pushes.next((p) => p.connect, 'connect push');
const pubIn = (channel, n) => (p) => p.channel === channel && p.pub?.data?.n === n;

function suite(engine) {
  describe(`unidirectional transports (${engine} engine)`, () => {
    let herald;
    let redis;
    before(async () => {
      const env = {};
      if (engine === 'redis') {
        redis = await RedisServer.start();
        env.HERALD_ENGINE__REDIS_URL = redis.url;
      }
      herald = await Herald.start({ env });
    });
    after(async () => {
      await herald?.stop();
      await redis?.stop();
      redis?.removeDir();
    });

    for (const transport of TRANSPORTS) {
      test(`${transport}: personal and token channels deliver publications`, async () => {
        const user = uid();
        const topic = `stock:${uid('T')}`;
        const extra = `stock:${uid('S')}`;
        // `channels` claim and Centrifugo's `subs` claim both subscribe server-side.
        const token = signJwt({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600, channels: [topic], subs: { [extra]: {} } }, herald.secret);
        const c = await openUni(herald, transport, { token, name: 'raw', version: '0' });
        assert.equal(c.status, transport === 'uni_websocket' ? 101 : 200);
        if (transport === 'uni_sse') assert.equal(c.contentType, 'text/event-stream; charset=utf-8');
        const { connect } = await connectPush(c);
        assert.ok(connect.client, 'client id');
        assert.equal(connect.pong, undefined, 'no pong for a unidirectional client');
        assert.deepEqual(Object.keys(connect.subs).sort(), [extra, topic, `user:${user}`].sort());
        assert.equal(connect.subs[`user:${user}`].recoverable, true);
        await herald.publish(`user:${user}`, { n: 1 });
        await herald.publish(topic, { n: 2 });
        await herald.publish(extra, { n: 3 });
        const personal = await c.pushes.next(pubIn(`user:${user}`, 1), 'personal publication');
        assert.equal(personal.pub.offset, 1);
        await c.pushes.next(pubIn(topic, 2), 'topic publication');
        await c.pushes.next(pubIn(extra, 3), 'subs-claim publication');
        c.close();
        await withTimeout(c.ended, 5000, 'client end');
      });

      test(`${transport}: a new connection recovers what it missed, in order`, async () => {
        const user = uid();
        const channel = `user:${user}`;
        const first = await openUni(herald, transport, { token: herald.token(user) });
        const { connect } = await connectPush(first);
        const epoch = connect.subs[channel].epoch;
        assert.ok(epoch, 'epoch');
        await herald.publish(channel, { n: 1 });
        const seen = await first.pushes.next(pubIn(channel, 1), 'first publication');
        first.close();
        await withTimeout(first.ended, 5000, 'first client end');
        for (const n of [2, 3, 4]) await herald.publish(channel, { n });
        const again = await openUni(herald, transport, {
          token: herald.token(user),
          subs: { [channel]: { recover: true, offset: seen.pub.offset, epoch } },
        });
        const sub = (await connectPush(again)).connect.subs[channel];
        assert.equal(sub.recovered, true, JSON.stringify(sub));
        assert.equal(sub.was_recovering, true);
        assert.deepEqual(sub.publications.map((p) => p.data.n), [2, 3, 4]);
        assert.deepEqual(sub.publications.map((p) => p.offset), [2, 3, 4]);
        assert.equal(sub.offset, 4);
        // Live publications follow the recovered ones.
        await herald.publish(channel, { n: 5 });
        const live = await again.pushes.next(pubIn(channel, 5), 'live publication');
        assert.equal(live.pub.offset, 5);
        assert.equal(again.pushes.list.filter((p) => p.pub).length, 1, 'recovered ones only in the connect push');
        again.close();
      });

      test(`${transport}: a bad token gets Centrifugo's disconnect (3500)`, async () => {
        const forged = signJwt({ sub: uid(), exp: Math.floor(Date.now() / 1000) + 3600 }, 'not-the-secret');
        const c = await openUni(herald, transport, { token: forged });
        const push = await c.pushes.next((p) => p.disconnect, 'disconnect push');
        assert.deepEqual(push, { disconnect: { code: 3500, reason: 'invalid token' } });
        const ended = await withTimeout(c.ended, 5000, 'end after disconnect');
        if (transport === 'uni_websocket') assert.equal(ended.code, 3500);
        else assert.equal(c.status, 200, 'Centrifugo answers 200 and ends the stream');
        assert.equal(c.pushes.list.filter((p) => p.connect).length, 0);
      });
    }

    test('an expired token disconnects with 3005', async () => {
      const token = herald.token(uid(), { exp: Math.floor(Date.now() / 1000) - 60 });
      const c = await openUni(herald, 'uni_http_stream', { token });
      const push = await c.pushes.next((p) => p.disconnect, 'disconnect push');
      assert.equal(push.disconnect.code, 3005);
      await withTimeout(c.ended, 5000, 'stream end');
    });
  });
}

suite('memory');
suite('redis');

describe('unidirectional transports: requests, origins, pings, drain, metrics', () => {
  let herald;
  before(async () => {
    herald = await Herald.start({
      env: { HERALD_AUTH__ALLOWED_ORIGINS: 'http://good.example', HERALD_CLIENT__PING_INTERVAL: '1s', HERALD_CLIENT__PONG_TIMEOUT: '500ms' },
    });
  });
  after(() => herald?.stop());

  test('uni_sse takes the connect request as GET cf_connect too', async () => {
    const user = uid();
    const c = await openUni(herald, 'uni_sse', { token: herald.token(user) }, { sseGet: true });
    assert.equal(c.status, 200);
    assert.ok((await connectPush(c)).connect.subs[`user:${user}`]);
    assert.equal(c.pushes.raw[0], '', 'the stream opens with an empty line');
    await herald.publish(`user:${user}`, { n: 1 });
    await c.pushes.next(pubIn(`user:${user}`, 1), 'publication');
    c.close();
  });

  test('unreadable connect requests are refused', async () => {
    const base = `http://127.0.0.1:${herald.clientPort}/connection`;
    const post = await fetch(`${base}/uni_http_stream`, { method: 'POST', body: '{"token":' });
    assert.equal(post.status, 400);
    const get = await fetch(`${base}/uni_sse?cf_connect=${encodeURIComponent('{"token":')}`);
    assert.equal(get.status, 400);
    const big = await fetch(`${base}/uni_sse`, { method: 'POST', body: JSON.stringify({ token: 'x'.repeat(70000) }) });
    assert.equal(big.status, 413);
    const ws = new WebSocket(`ws://127.0.0.1:${herald.clientPort}/connection/uni_websocket`);
    ws.on('error', () => {});
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('open', () => ws.send('{"token":'));
    assert.equal(await withTimeout(closed, 5000, 'close'), 3501);
  });

  test('origins: foreign ones are refused, allowed ones get CORS', async () => {
    const user = uid();
    const evil = await fetch(`http://127.0.0.1:${herald.clientPort}/connection/uni_http_stream`, {
      method: 'POST', headers: { Origin: 'http://evil.example' }, body: '{}',
    });
    assert.equal(evil.status, 403);
    const preflight = await fetch(`http://127.0.0.1:${herald.clientPort}/connection/uni_http_stream`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://good.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://good.example');
    assert.equal(preflight.headers.get('access-control-allow-methods'), 'POST');
    const c = await openUni(herald, 'uni_sse', { token: herald.token(user) }, { headers: { Origin: 'http://good.example' } });
    await connectPush(c);
    c.close();
    await assert.rejects(
      openUni(herald, 'uni_websocket', { token: herald.token(user) }, { headers: { Origin: 'http://evil.example' } }),
      /HTTP 403/,
    );
  });

  test('pings are empty pushes', async () => {
    for (const transport of TRANSPORTS) {
      const c = await openUni(herald, transport, { token: herald.token(uid()) });
      assert.equal((await connectPush(c)).connect.ping, 1);
      await c.pushes.next((p) => Object.keys(p).length === 0, `${transport} ping`, 4000);
      c.close();
    }
  });

  test('metrics carry each transport label', async () => {
    const c = await openUni(herald, 'uni_websocket', { token: herald.token(uid()) });
    await connectPush(c);
    const text = await (await fetch(`${herald.internalUrl}/metrics`)).text();
    const value = (name) => Number(text.split('\n').find((l) => l.startsWith(name))?.split(' ').pop());
    assert.equal(value('herald_connections{transport="uni_websocket"}'), 1);
    assert.ok(value('herald_connects_total{transport="uni_sse"}') >= 1);
    assert.ok(value('herald_connects_total{transport="uni_http_stream"}') >= 1);
    c.close();
  });

  test('a draining node tells every unidirectional client to reconnect (3001)', async () => {
    const clients = [];
    for (const transport of TRANSPORTS) {
      const c = await openUni(herald, transport, { token: herald.token(uid()) });
      await connectPush(c);
      clients.push([transport, c]);
    }
    herald.proc.kill('SIGTERM');
    for (const [transport, c] of clients) {
      const push = await c.pushes.next((p) => p.disconnect, `${transport} disconnect`, 10000);
      assert.deepEqual(push, { disconnect: { code: 3001, reason: 'shutdown' } });
      const ended = await withTimeout(c.ended, 10000, `${transport} end`);
      if (transport === 'uni_websocket') assert.equal(ended.code, 3001);
    }
  });
});

describe('unidirectional transports: slow clients', () => {
  let herald;
  before(async () => {
    herald = await Herald.start({ env: { HERALD_CLIENT__QUEUE_SIZE: '8', HERALD_CLIENT__WRITE_TIMEOUT: '60s' } });
  });
  after(() => herald?.stop());

  test('a uni_websocket client that does not read is cut off with 3008', async () => {
    const user = uid();
    const c = await openUni(herald, 'uni_websocket', { token: herald.token(user) });
    await connectPush(c);
    c.ws._socket.pause();
    // 8 MiB, about twice what the socket buffers hold (a paused reader's window stays small, the
    // send buffer grows to 4 MiB at most): the server's write blocks and its queue of 8 overflows.
    const total = 32;
    const payload = 'x'.repeat(256 * 1024);
    for (let n = 1; n <= total; n++) await herald.publish(`user:${user}`, { n, payload });
    c.ws._socket.resume();
    const { code } = await withTimeout(c.ended, 20000, 'cut-off');
    assert.equal(code, 3008);
    const pubs = c.pushes.list.filter((p) => p.pub).length;
    assert.ok(pubs < total, `got ${pubs} of ${total}`);
    assert.deepEqual(c.pushes.list.at(-1), { disconnect: { code: 3008, reason: 'slow' } });
  });
});
