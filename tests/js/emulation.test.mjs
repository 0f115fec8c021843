// Bidirectional emulation: the official `centrifuge` SDK without WebSocket, over its `http_stream`
// and `sse` transports (`/connection/http_stream`, `/connection/sse?cf_connect=..`, commands
// POSTed to `/emulation`).
// - One node (memory engine), SDK under Node (fetch + ReadableStream; the `eventsource` package
//   for SSE): connect, subscribe, client publish, server publication, error 103, history,
//   presence, recovery after a reconnect; the raw endpoints' answers (unknown node 404, unknown
//   session 204, oversized body 413, CORS preflight, Herald's one-way SSE left as it was); pings
//   on the stream answered through `/emulation` (none: 3012).
// - Limits: admission (503 over `client.max_connections`), a client that stops reading is cut
//   off as slow (3008), on the JSON and on the Protobuf wire.
// - Headless Chromium (playwright-core) on a page of another origin where `WebSocket` throws:
//   the SDK with transports websocket -> http_stream -> sse falls back and passes connect,
//   subscribe, publish and recovery; then again with http_stream unavailable, falling to sse.
// - The SDK's Protobuf build (`centrifuge/build/protobuf`) over `http_stream`: the same
//   scenario, length-delimited replies on the stream and `EmulationRequest`s posted; raw checks
//   with Herald's own schema (protobufjs on `services/core/proto/client.proto`): the connect
//   reply, malformed bodies (400, 413; the node stays up), a frame in the other format (3501).
//   The SDK's `sse` transport cannot carry Protobuf: Herald answers 415 and the SDK falls back.
// - Three nodes on one Redis behind an HTTP balancer that sends each request to the next node:
//   `/emulation` POSTs (JSON and Protobuf) land on nodes that do not hold the session and are
//   forwarded to the one that does (counted by the nodes' `herald_emulation_requests_total`); a
//   node's drain ends its streams with 3001 and the SDK recovers on another node.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Centrifuge as JsonCentrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import { EventSource } from 'eventsource';
import { chromium } from 'playwright-core';
import protobuf from 'protobufjs';
import { Herald, collect, freePort, repoRoot, uid, waitEvent, withTimeout } from './lib/herald.mjs';
import { RedisServer } from './lib/redis.mjs';

const chat = {
  HERALD_NAMESPACES__CHAT__CLIENT_PUBLISH: 'true',
  HERALD_NAMESPACES__CHAT__HISTORY_SIZE: '100',
  HERALD_NAMESPACES__CHAT__HISTORY_TTL: '5m',
  HERALD_NAMESPACES__CHAT__PRESENCE: 'true',
};

const utf8 = { encoder: new TextEncoder(), decoder: new TextDecoder() };

/** The SDK build of each wire, and how application data travels in it. */
const JSON_WIRE = { name: 'json', Centrifuge: JsonCentrifuge, send: (data) => data, read: (data) => data };
const PROTOBUF_WIRE = {
  name: 'protobuf',
  Centrifuge: ProtobufCentrifuge,
  send: (data) => utf8.encoder.encode(JSON.stringify(data)),
  read: (data) => {
    assert.ok(data instanceof Uint8Array, `bytes expected, got ${typeof data}`);
    return JSON.parse(utf8.decoder.decode(data));
  },
};

const endpointOf = (base, transport) => (transport === 'sse'
  ? `${base}/connection/sse` : `${base}/connection/http_stream`);

/**
 * An SDK client of `base` (http://host:port) over the emulation transport `transport` only (or
 * the list of transports `transport`, in order), with the SDK build of `wire`.
 */
function sdk(base, transport, opts = {}, wire = JSON_WIRE) {
  const transports = [transport].flat().map((t) => ({ transport: t, endpoint: endpointOf(base, t) }));
  const c = new wire.Centrifuge(transports, {
    emulationEndpoint: `${base}/emulation`,
    eventsource: EventSource,
    ...opts,
  });
  // The SDK's emitter throws on an unhandled 'error' event: errors are observed explicitly.
  c.on('error', () => {});
  return c;
}

function subscription(c, channel, opts = {}) {
  const s = c.newSubscription(channel, opts);
  s.on('error', () => {});
  return s;
}

async function subscribed(c, channel, opts = {}) {
  const s = subscription(c, channel, opts);
  const ready = waitEvent(s, 'subscribed');
  s.subscribe();
  return { s, ctx: await ready };
}

/** Reads `/metrics` of a node and returns the value of `series` (0 when absent). */
async function metric(h, series) {
  const text = await (await fetch(`${h.internalUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const emulationCount = (h, outcome) => metric(h, `herald_emulation_requests_total{outcome="${outcome}"}`);

/**
 * Keeps every message of a stream response (`messages`) as `take(buffer, chunk)` splits them
 * off (it returns the messages and what is left), offers `next` to wait for one, and waits for
 * the connect reply (`connect`). `post(data)` sends frames to `/emulation` for the session,
 * `cancel()` stops reading.
 */
async function streamLog(base, res, empty, take, post) {
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const raw = { res, messages: [], ended: false, listeners: new Set() };
  raw.done = (async () => {
    let buffer = empty;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        break;
      }
      if (chunk.done) break;
      let msgs;
      [msgs, buffer] = take(buffer, chunk.value);
      for (const msg of msgs) {
        raw.messages.push(msg);
        for (const l of [...raw.listeners]) l(msg);
      }
    }
    raw.ended = true;
  })();
  /** The first message from index `from` on (already there or still to come) that passes `filter`. */
  raw.next = (filter, timeout = 5000, from = 0) => {
    const found = raw.messages.slice(from).find(filter);
    if (found) return Promise.resolve(found);
    let l;
    const p = new Promise((resolve) => {
      l = (m) => { if (filter(m)) resolve(m); };
      raw.listeners.add(l);
    });
    return withTimeout(p, timeout, 'stream message').finally(() => raw.listeners.delete(l));
  };
  const reply = await raw.next((m) => m.id === 1);
  assert.ok(reply.connect, JSON.stringify(reply));
  raw.connect = reply.connect;
  raw.post = (data) => fetch(`${base}/emulation`, post({ session: raw.connect.session, node: raw.connect.node, data }));
  raw.cancel = () => reader.cancel().catch(() => {});
  return raw;
}

/**
 * A raw `/connection/http_stream` connection: connects with `token`, keeps every message of the
 * stream (`messages`), and posts frames to `/emulation` for its session.
 */
async function rawStream(base, token) {
  const res = await fetch(`${base}/connection/http_stream`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ id: 1, connect: { token } }),
  });
  const lines = (buffer, chunk) => {
    const all = (buffer + Buffer.from(chunk).toString()).split('\n');
    const rest = all.pop();
    return [all.map((l) => JSON.parse(l)), rest];
  };
  const post = (body) => ({ method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return streamLog(base, res, '', lines, post);
}

/** Herald's Protobuf schema: `Command`, `Reply` and `EmulationRequest`. */
const schema = protobuf.loadSync(path.join(repoRoot, 'services/core/proto/client.proto'));
const pb = (name) => schema.lookupType(`centrifugal.centrifuge.protocol.${name}`);
const Command = pb('Command');
const Reply = pb('Reply');
const EmulationRequest = pb('EmulationRequest');
/** Length-delimited `Command`s, as the SDK frames them. */
const commands = (...cmds) => Buffer.concat(cmds.map((c) => Command.encodeDelimited(Command.create(c)).finish()));
const emulationRequest = (fields) => EmulationRequest.encode(EmulationRequest.create(fields)).finish();
const OCTETS = { 'Content-Type': 'application/octet-stream' };

/**
 * A raw Protobuf `/connection/http_stream` connection, as `rawStream` but with length-delimited
 * `Command`s in and `Reply`s (plain objects, defaults omitted) out.
 */
async function rawProtobufStream(base, token) {
  const res = await fetch(`${base}/connection/http_stream`, {
    method: 'POST', headers: OCTETS, body: commands({ id: 1, connect: { token } }),
  });
  const replies = (buffer, chunk) => {
    let rest = Buffer.concat([buffer, chunk]);
    const msgs = [];
    for (;;) {
      const r = protobuf.Reader.create(rest);
      let length;
      try {
        length = r.uint32();
      } catch {
        break;
      }
      if (r.pos + length > rest.length) break;
      msgs.push(Reply.toObject(Reply.decode(rest.subarray(r.pos, r.pos + length)), { longs: Number }));
      rest = rest.subarray(r.pos + length);
    }
    return [msgs, rest];
  };
  const post = (fields) => ({ method: 'POST', headers: OCTETS, body: emulationRequest(fields) });
  return streamLog(base, res, Buffer.alloc(0), replies, post);
}

/** Connect, subscribe, client publish, server publication, 103, history, presence, recovery. */
async function exercise(base, publisher, transport, track, wire = JSON_WIRE) {
  const user = uid('user');
  const c = track(sdk(base, transport, { token: publisher.token(user) }, wire));
  const connected = waitEvent(c, 'connected');
  c.connect();
  const ctx = await connected;
  assert.equal(ctx.transport, transport);

  const channel = `chat:${uid('room')}`;
  const { s, ctx: sctx } = await subscribed(c, channel, { recoverable: true });
  assert.equal(sctx.recoverable, true);

  const fromApi = waitEvent(s, 'publication');
  const published = await publisher.publish(channel, { from: 'api' });
  assert.equal((await fromApi).offset, published.offset);

  const fromClient = waitEvent(s, 'publication', { filter: (p) => wire.read(p.data).from === 'client' });
  await c.publish(channel, wire.send({ from: 'client' }));
  assert.deepEqual(wire.read((await fromClient).data), { from: 'client' });

  const denied = subscription(c, 'user:someone-else');
  const unsubscribed = waitEvent(denied, 'unsubscribed');
  denied.subscribe();
  assert.equal((await unsubscribed).code, 103);
  assert.equal(c.state, 'connected', 'the connection stays up');

  const history = await s.history({ limit: 10 });
  assert.deepEqual(history.publications.map((p) => wire.read(p.data)), [{ from: 'api' }, { from: 'client' }]);

  const presence = await s.presence();
  assert.deepEqual(Object.values(presence.clients).map((e) => e.user), [user]);
  assert.deepEqual(await s.presenceStats(), { numClients: 1, numUsers: 1 });

  const disconnected = waitEvent(c, 'disconnected');
  c.disconnect();
  await disconnected;
  const missed = [];
  for (let n = 1; n <= 3; n++) missed.push((await publisher.publish(channel, { n })).offset);
  const pubs = collect(s, 'publication');
  const again = waitEvent(s, 'subscribed');
  c.connect();
  const actx = await again;
  assert.equal(actx.wasRecovering, true);
  assert.equal(actx.recovered, true);
  await pubs.until(3);
  assert.deepEqual(pubs.map((p) => p.offset), missed);
  c.disconnect();
}

describe('one node', () => {
  let herald;
  const clients = [];
  const track = (c) => {
    clients.push(c);
    return c;
  };

  before(async () => {
    // Pings every second: the SDK's pongs travel through /emulation during the tests.
    herald = await Herald.start({
      env: {
        ...chat,
        HERALD_AUTH__ALLOWED_ORIGINS: 'https://app.example',
        HERALD_CLIENT__PING_INTERVAL: '1s',
        HERALD_CLIENT__PONG_TIMEOUT: '500ms',
      },
    });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await herald?.stop();
  });

  for (const transport of ['http_stream', 'sse']) {
    test(`SDK over ${transport}: connect, subscribe, publish, 103, history, presence, recovery`, async () => {
      await exercise(herald.clientUrl, herald, transport, track);
      assert.ok(await emulationCount(herald, 'local') > 0, 'commands went through /emulation');
      const label = transport === 'sse' ? 'sse_emulation' : 'http_stream';
      assert.ok(await metric(herald, `herald_connects_total{transport="${label}"}`) >= 2);
    });
  }

  test('SDK, Protobuf build, over http_stream: connect, subscribe, publish, 103, history, presence, recovery', async () => {
    const before = await emulationCount(herald, 'local');
    await exercise(herald.clientUrl, herald, 'http_stream', track, PROTOBUF_WIRE);
    assert.ok(await emulationCount(herald, 'local') > before, 'commands went through /emulation');
  });

  test('Protobuf: the connect reply names the session and the node; replies are length-delimited', async () => {
    const raw = await rawProtobufStream(herald.clientUrl, herald.token(uid('user')));
    assert.equal(raw.res.headers.get('content-type'), 'application/octet-stream');
    assert.match(raw.connect.session, /^[0-9a-f-]{36}$/);
    assert.match(raw.connect.node, /^[0-9a-f-]{36}$/);
    assert.equal(raw.connect.pong, true);
    const { session, node } = raw.connect;
    assert.equal((await raw.post(commands({ id: 2, ping: {} }))).status, 204);
    assert.deepEqual(await raw.next((m) => m.id === 2), { id: 2, ping: {} });
    const post = (fields, headers = OCTETS) => fetch(`${herald.clientUrl}/emulation`, {
      method: 'POST', headers, body: emulationRequest(fields),
    });
    const ping = commands({ id: 3, ping: {} });
    const nobody = '00000000-0000-0000-0000-000000000000';
    assert.equal((await post({ session, node: nobody, data: ping })).status, 404);
    assert.equal((await post({ session: nobody, node, data: ping })).status, 204);
    assert.equal((await post({ session: 'a.b', node, data: ping })).status, 400);
    assert.equal((await post({ session, node, data: Buffer.alloc(70 * 1024) })).status, 413);
    const truncated = await fetch(`${herald.clientUrl}/emulation`, {
      method: 'POST', headers: OCTETS, body: Buffer.from([0x0a, 0x24, 0x30]),
    });
    assert.equal(truncated.status, 400);
    assert.match(await truncated.text(), /^malformed emulation request/);
    const json = await fetch(`${herald.clientUrl}/emulation`, {
      method: 'POST', headers: OCTETS, body: JSON.stringify({ session, node, data: '{}' }),
    });
    assert.equal(json.status, 400, 'a JSON body declared as Protobuf');
    assert.equal(raw.ended, false, 'refused requests leave the session alone');
    assert.equal((await raw.post(commands({ id: 4, ping: {} }))).status, 204);
    assert.deepEqual(await raw.next((m) => m.id === 4), { id: 4, ping: {} });
    raw.cancel();
  });

  test('Protobuf: a malformed opening body is a 400, malformed commands later a 3501', async () => {
    const open = (body, headers = OCTETS) => fetch(`${herald.clientUrl}/connection/http_stream`, {
      method: 'POST', headers, body,
    });
    for (const [what, body] of [
      ['empty', Buffer.alloc(0)],
      ['truncated', Buffer.from([0x0a, 0x08])],
      ['not a Command', Buffer.from([3, 0xff, 0xff, 0xff])],
      ['not a connect', commands({ id: 1, ping: {} })],
      ['JSON', JSON.stringify({ id: 1, connect: {} })],
    ]) {
      const res = await open(body);
      assert.equal(res.status, 400, what);
      assert.match(await res.text(), /connect command/, what);
    }
    assert.equal((await open(Buffer.alloc(70 * 1024))).status, 413);

    const garbled = await rawProtobufStream(herald.clientUrl, herald.token(uid('user')));
    assert.equal((await garbled.post(Buffer.from([5, 1]))).status, 204, 'handed to the session');
    const push = await garbled.next((m) => m.push?.disconnect);
    assert.deepEqual(push.push.disconnect, { code: 3501, reason: 'bad request' });
    await withTimeout(garbled.done, 5000, 'end of the stream');

    const mixed = await rawProtobufStream(herald.clientUrl, herald.token(uid('user')));
    const { session, node } = mixed.connect;
    const asJson = await fetch(`${herald.clientUrl}/emulation`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ session, node, data: '{"id":2,"ping":{}}' }),
    });
    assert.equal(asJson.status, 204);
    const mixedPush = await mixed.next((m) => m.push?.disconnect);
    assert.equal(mixedPush.push.disconnect.code, 3501, 'a JSON frame for a Protobuf connection');
    await withTimeout(mixed.done, 5000, 'end of the stream');

    const ok = await rawProtobufStream(herald.clientUrl, herald.token(uid('user')));
    assert.ok(ok.connect.client, 'the node still serves');
    ok.cancel();
  });

  test('Protobuf over sse is refused with 415; the SDK falls back to http_stream', async () => {
    const token = herald.token(uid('user'));
    // What the SDK's Protobuf build puts in the URL: its connect frame's byte values.
    const cf = [...commands({ id: 1, connect: { token } })].join(',');
    const get = await fetch(`${herald.clientUrl}/connection/sse?cf_connect=${cf}`);
    assert.equal(get.status, 415);
    assert.match(await get.text(), /JSON protocol only.*http_stream/);
    const post = await fetch(`${herald.clientUrl}/connection/sse`, {
      method: 'POST', headers: OCTETS, body: commands({ id: 1, connect: { token } }),
    });
    assert.equal(post.status, 415);

    const c = track(sdk(herald.clientUrl, ['sse', 'http_stream'], { token }, PROTOBUF_WIRE));
    const connected = waitEvent(c, 'connected', { timeout: 10000 });
    c.connect();
    assert.equal((await connected).transport, 'http_stream');
    c.disconnect();
  });

  test('Protobuf: pings go out on the stream, pongs come back through /emulation; no pong: 3012', async () => {
    const raw = await rawProtobufStream(herald.clientUrl, herald.token(uid('user')));
    const isPing = (m) => Object.keys(m).length === 0;
    let from = 0;
    for (let i = 0; i < 2; i++) {
      await raw.next(isPing, 5000, from);
      from = raw.messages.length;
      assert.equal((await raw.post(commands({}))).status, 204);
    }
    const push = await raw.next((m) => m.push?.disconnect, 5000, from);
    assert.deepEqual(push.push.disconnect, { code: 3012, reason: 'no pong' });
    await withTimeout(raw.done, 5000, 'end of the stream');
  });

  test('the connect reply names the session and the node; replies come as NDJSON', async () => {
    const raw = await rawStream(herald.clientUrl, herald.token(uid('user')));
    assert.equal(raw.res.headers.get('content-type'), 'application/x-ndjson');
    assert.match(raw.connect.session, /^[0-9a-f-]{36}$/);
    assert.match(raw.connect.node, /^[0-9a-f-]{36}$/);
    const { session, node } = raw.connect;
    assert.equal((await raw.post(JSON.stringify({ id: 2, ping: {} }))).status, 204);
    assert.deepEqual(await raw.next((m) => m.id === 2), { id: 2, ping: {} });
    const post = (body) => fetch(`${herald.clientUrl}/emulation`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    assert.equal((await post({ session, node: '00000000-0000-0000-0000-000000000000', data: '{}' })).status, 404);
    assert.equal((await post({ session: '00000000-0000-0000-0000-000000000000', node, data: '{}' })).status, 204);
    assert.equal((await post({ session, node })).status, 400, 'data is required');
    assert.equal((await post({ session: 'a.b', node, data: '{}' })).status, 400);
    assert.equal((await post({ session, node, data: 'x'.repeat(70 * 1024) })).status, 413);
    const foreign = await fetch(`${herald.clientUrl}/emulation`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Origin: 'https://evil.example' },
      body: JSON.stringify({ session, node, data: '{}' }),
    });
    assert.equal(foreign.status, 403);
    assert.equal(raw.ended, false, 'refused requests leave the session alone');
    raw.cancel();
  });

  test('pings go out on the stream, pongs come back through /emulation; no pong: 3012', async () => {
    const raw = await rawStream(herald.clientUrl, herald.token(uid('user')));
    const isPing = (m) => Object.keys(m).length === 0;
    let from = 0;
    for (let i = 0; i < 3; i++) {
      await raw.next(isPing, 5000, from);
      from = raw.messages.length;
      assert.equal((await raw.post('{}')).status, 204);
    }
    const push = await raw.next((m) => m.push?.disconnect, 5000, from);
    assert.deepEqual(push.push.disconnect, { code: 3012, reason: 'no pong' });
    await withTimeout(raw.done, 5000, 'end of the stream');
    assert.ok(raw.messages.slice(from).filter(isPing).length === 1, 'closed after the unanswered ping');
  });

  test('CORS preflight of the emulation endpoints from an allowed origin', async () => {
    for (const p of ['/emulation', '/connection/http_stream']) {
      const res = await fetch(`${herald.clientUrl}${p}`, {
        method: 'OPTIONS',
        headers: {
          Origin: 'https://app.example',
          'Access-Control-Request-Method': 'POST',
          'Access-Control-Request-Headers': 'content-type',
        },
      });
      assert.equal(res.status, 204, p);
      assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example', p);
      assert.match(res.headers.get('access-control-allow-methods'), /POST/, p);
      assert.equal(res.headers.get('access-control-allow-headers'), 'content-type', p);
    }
  });

  test('a bare connect request in cf_connect keeps the one-way SSE mode', async () => {
    const user = uid('user');
    const cf = encodeURIComponent(JSON.stringify({ token: herald.token(user) }));
    const res = await fetch(`${herald.clientUrl}/connection/sse?cf_connect=${cf}`);
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const { value } = await withTimeout(reader.read(), 5000, 'first event');
    const text = Buffer.from(value).toString();
    assert.match(text, /^data: \{"connect":\{/m, 'one-way: connect event without a reply id');
    assert.doesNotMatch(text, /"session"/);
    await reader.cancel();
  });
});

describe('limits', () => {
  let herald;

  before(async () => {
    herald = await Herald.start({
      env: { HERALD_CLIENT__MAX_CONNECTIONS: '2', HERALD_CLIENT__QUEUE_SIZE: '8' },
    });
  });

  after(async () => {
    await herald?.stop();
  });

  test('admission: over client.max_connections the stream is refused with 503', async () => {
    const first = await rawStream(herald.clientUrl, herald.token(uid('user')));
    const second = await rawStream(herald.clientUrl, herald.token(uid('user')));
    const third = await fetch(`${herald.clientUrl}/connection/http_stream`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ id: 1, connect: { token: herald.token(uid('user')) } }),
    });
    assert.equal(third.status, 503);
    assert.equal(third.headers.get('retry-after'), '1');
    first.cancel();
    second.cancel();
    await withTimeout(Promise.all([first.done, second.done]), 5000, 'streams end');
  });

  test('a client that stops reading is cut off as slow (3008), stale frames dropped', async () => {
    const user = uid('user');
    const body = Buffer.from(JSON.stringify({ id: 1, connect: { token: herald.token(user) } }));
    const filler = 'x'.repeat(32 * 1024);
    const total = 400;
    const all = (await stalledStream(herald, 'application/json', body,
      (got) => got.includes('"id":1,"connect"'),
      async () => { for (let n = 0; n < total; n++) await herald.publish(`user:${user}`, { n, filler }); },
    )).toString();
    assert.match(all, /\{"push":\{"disconnect":\{"code":3008,"reason":"slow"\}\}\}/);
    const delivered = all.split('"pub":').length - 1;
    assert.ok(delivered < total, `cut off before all ${total} publications (${delivered})`);
    const metrics = await (await fetch(`${herald.internalUrl}/metrics`)).text();
    assert.match(metrics, /herald_slow_client_cutoffs_total\{transport="http_stream"\} 1/);
  });

  test('Protobuf: a client that stops reading is cut off as slow (3008)', async () => {
    const cutoffs = 'herald_slow_client_cutoffs_total{transport="http_stream"}';
    const before = await metric(herald, cutoffs);
    const user = uid('user');
    const body = commands({ id: 1, connect: { token: herald.token(user) } });
    const slow = Reply.encodeDelimited(Reply.create({ push: { disconnect: { code: 3008, reason: 'slow' } } })).finish();
    const filler = 'x'.repeat(32 * 1024);
    const total = 400;
    const all = await stalledStream(herald, 'application/octet-stream', body,
      // The connect reply's first fields: id 1, then the connect result (field 5).
      (got) => got.includes(Buffer.from([0x08, 0x01, 0x2a])),
      async () => { for (let n = 0; n < total; n++) await herald.publish(`user:${user}`, { n, filler }); });
    assert.ok(all.includes(Buffer.from(slow)), 'the stream ends with the slow disconnect push');
    const delivered = all.toString('latin1').split(filler).length - 1;
    assert.ok(delivered < total, `cut off before all ${total} publications (${delivered})`);
    assert.equal(await metric(herald, cutoffs), before + 1);
  });
});

/**
 * Opens an HTTP stream over a raw socket (`body` with `contentType`), waits for `connected` in
 * what came back, stops reading while `publishMany` runs, then reads to the end of the response
 * body. Returns everything read.
 */
async function stalledStream(herald, contentType, body, connected, publishMany) {
  const sock = net.connect({ host: '127.0.0.1', port: herald.clientPort });
  const chunks = [];
  sock.on('data', (c) => chunks.push(c));
  sock.on('error', () => {});
  sock.write(`POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Type: ${contentType}\r\n`
    + `Content-Length: ${body.length}\r\n\r\n`);
  sock.write(body);
  const all = () => Buffer.concat(chunks);
  const deadline = Date.now() + 5000;
  while (!connected(all())) {
    assert.ok(Date.now() < deadline, 'connect reply');
    await new Promise((r) => sock.once('data', r));
  }
  sock.pause();
  await publishMany();
  sock.resume();
  // The body is chunked: it ends with an empty chunk (the connection itself is kept alive).
  const ended = new Promise((resolve) => {
    const check = () => {
      if (all().subarray(-7).toString() === '\r\n0\r\n\r\n') resolve(); else sock.once('data', check);
    };
    check();
  });
  await withTimeout(ended, 10000, 'the end of the response body');
  sock.destroy();
  return all();
}

/** A static server for the browser page (its own origin) and the SDK's browser build. */
async function pageServer() {
  const bundle = readFileSync(path.join(repoRoot, 'tests/js/node_modules/centrifuge/dist/centrifuge.js'));
  const server = http.createServer((req, res) => {
    if (req.url === '/centrifuge.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(bundle);
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' })
        .end('<!doctype html><script>window.WebSocket = function () { throw new Error("blocked"); };</script>'
          + '<script src="/centrifuge.js"></script>');
    }
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${port}` };
}

/** Runs in the page: connect with fallback, subscribe, publish, reconnect and recover. */
async function browserScenario({ base, token, channel, transports }) {
  const log = [];
  const c = new window.Centrifuge(transports.map((t) => ({
    transport: t,
    endpoint: t === 'websocket' ? base.replace('http', 'ws') + '/connection/websocket'
      : t === 'sse' ? `${base}/connection/sse` : `${base}/connection/http_stream`,
  })), { token, emulationEndpoint: `${base}/emulation` });
  c.on('error', () => {});
  const once = (emitter, event, filter = () => true) => new Promise((resolve) => {
    const h = (ctx) => { if (filter(ctx)) { emitter.removeListener(event, h); resolve(ctx); } };
    emitter.on(event, h);
  });
  const connected = once(c, 'connected');
  c.connect();
  const ctx = await connected;
  log.push(['connected', ctx.transport]);
  const s = c.newSubscription(channel, { recoverable: true });
  s.on('error', () => {});
  const sub = once(s, 'subscribed');
  s.subscribe();
  await sub;
  const mine = once(s, 'publication', (p) => p.data.n === 0);
  await c.publish(channel, { n: 0 });
  log.push(['published', (await mine).offset]);
  const disc = once(c, 'disconnected');
  c.disconnect();
  await disc;
  const got = [];
  s.on('publication', (p) => got.push(p.offset));
  const again = once(s, 'subscribed');
  window.herald_ready_to_publish = true;
  await new Promise((resolve) => { window.herald_published = resolve; });
  c.connect();
  const actx = await again;
  log.push(['recovered', actx.recovered, actx.wasRecovering]);
  while (got.length < 3) await new Promise((r) => setTimeout(r, 20));
  log.push(['missed', got]);
  c.disconnect();
  return { log };
}

describe('Chromium without WebSocket', () => {
  let herald;
  let browser;
  let page;
  let site;

  before(async () => {
    site = await pageServer();
    herald = await Herald.start({ env: { ...chat, HERALD_AUTH__ALLOWED_ORIGINS: site.origin } });
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
  });

  after(async () => {
    await browser?.close();
    await herald?.stop();
    site?.server.close();
  });

  for (const transports of [['websocket', 'http_stream', 'sse'], ['websocket', 'sse']]) {
    test(`SDK falls back over ${transports.join(' -> ')}`, { timeout: 60000 }, async () => {
      page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(site.origin);
      const channel = `chat:${uid('b')}`;
      const run = page.evaluate(browserScenario, {
        base: herald.clientUrl, token: herald.token(uid('user')), channel, transports,
      });
      await page.waitForFunction(() => window.herald_ready_to_publish === true, null, { timeout: 20000 });
      const offsets = [];
      for (let n = 1; n <= 3; n++) offsets.push((await herald.publish(channel, { n })).offset);
      await page.evaluate(() => window.herald_published());
      const { log } = await withTimeout(run, 30000, 'browser scenario');
      const expected = transports.at(-2) === 'http_stream' ? 'http_stream' : 'sse';
      assert.deepEqual(log[0], ['connected', expected]);
      assert.equal(log[1][0], 'published');
      assert.deepEqual(log[2], ['recovered', true, true]);
      assert.deepEqual(log[3], ['missed', offsets]);
      assert.deepEqual(errors, []);
      await page.close();
    });
  }
});

/**
 * An HTTP balancer that sends every request to the next backend in turn (no affinity: each
 * `/emulation` POST may land anywhere), streaming responses through. Counts requests by path.
 */
async function roundRobin(ports) {
  let next = 0;
  const routed = [];
  const lb = { routed, ports: [...ports] };
  const server = http.createServer((req, res) => {
    const port = lb.ports[next++ % lb.ports.length];
    routed.push({ path: req.url.split('?')[0], port });
    const up = http.request({
      host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers, agent: false,
    }, (upRes) => {
      res.writeHead(upRes.statusCode, upRes.headers);
      res.flushHeaders();
      upRes.on('data', (chunk) => res.write(chunk));
      upRes.on('end', () => res.end());
    });
    up.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return Object.assign(lb, { server, url: `http://127.0.0.1:${port}` });
}

describe('three nodes on Redis behind a round-robin balancer', () => {
  let redis;
  let nodes = [];
  let lb;
  const clients = [];
  const track = (c) => {
    clients.push(c);
    return c;
  };

  before(async () => {
    redis = await RedisServer.start();
    const env = { ...chat, HERALD_ENGINE__REDIS_URL: redis.url, HERALD_SERVER__DRAIN_SPREAD: '200ms' };
    const first = await Herald.start({ env: { ...env, HERALD_SERVER__NAME: 'n0' } });
    const { secret, apiKey } = first;
    nodes = [first];
    for (const name of ['n1', 'n2']) {
      nodes.push(await Herald.start({ secret, apiKey, env: { ...env, HERALD_SERVER__NAME: name } }));
    }
    lb = await roundRobin(nodes.map((n) => n.clientPort));
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    lb?.server.close();
    for (const n of nodes) await n.stop();
    await redis?.stop();
  });

  for (const transport of ['http_stream', 'sse']) {
    test(`SDK over ${transport}: commands posted to other nodes are forwarded`, async () => {
      const before = await Promise.all(nodes.map((n) => emulationCount(n, 'received')));
      await exercise(lb.url, nodes[0], transport, track);
      const posts = lb.routed.filter((r) => r.path === '/emulation');
      assert.ok(new Set(posts.map((r) => r.port)).size > 1, 'POSTs went to several nodes');
      const after = await Promise.all(nodes.map((n) => emulationCount(n, 'received')));
      const received = after.reduce((a, v, i) => a + v - before[i], 0);
      assert.ok(received > 0, `commands were forwarded (received: ${after})`);
      let forwarded = 0;
      for (const n of nodes) forwarded += await emulationCount(n, 'forwarded');
      assert.ok(forwarded >= received, `forwarded ${forwarded} >= received ${received}`);
    });
  }

  test('SDK, Protobuf build, over http_stream: commands posted to other nodes are forwarded', async () => {
    const before = await Promise.all(nodes.map((n) => emulationCount(n, 'received')));
    const postsBefore = lb.routed.filter((r) => r.path === '/emulation').length;
    await exercise(lb.url, nodes[0], 'http_stream', track, PROTOBUF_WIRE);
    const posts = lb.routed.filter((r) => r.path === '/emulation').slice(postsBefore);
    assert.ok(new Set(posts.map((r) => r.port)).size > 1, 'POSTs went to several nodes');
    const after = await Promise.all(nodes.map((n) => emulationCount(n, 'received')));
    const received = after.reduce((a, v, i) => a + v - before[i], 0);
    assert.ok(received > 0, `Protobuf commands were forwarded (received: ${after})`);
  });

  for (const wire of [JSON_WIRE, PROTOBUF_WIRE]) {
    test(`a draining node ends its streams with 3001; the SDK recovers on another node (${wire.name})`, async () => {
      const user = uid('user');
      const opts = { token: nodes[0].token(user), minReconnectDelay: 1000 };
      const c = track(sdk(lb.url, 'http_stream', opts, wire));
      const connected = waitEvent(c, 'connected');
      c.connect();
      await connected;
      const streams = lb.routed.filter((r) => r.path === '/connection/http_stream');
      const victim = nodes.find((n) => n.clientPort === streams.at(-1).port);
      const publisher = nodes.find((n) => n !== victim && lb.ports.includes(n.clientPort));
      const channel = `chat:${uid('drain')}`;
      const { s } = await subscribed(c, channel, { recoverable: true });
      const first = waitEvent(s, 'publication');
      await publisher.publish(channel, { n: 0 });
      await first;

      const pubs = collect(s, 'publication');
      const told = waitEvent(c, 'connecting', { filter: (ctx) => ctx.code === 3001 });
      const again = waitEvent(s, 'subscribed', { timeout: 10000 });
      lb.ports = lb.ports.filter((p) => p !== victim.clientPort);
      await victim.stop();
      assert.equal((await told).reason, 'shutdown');
      const offsets = [];
      for (let n = 1; n <= 3; n++) offsets.push((await publisher.publish(channel, { n })).offset);
      const ctx = await again;
      assert.equal(ctx.wasRecovering, true);
      assert.equal(ctx.recovered, true);
      await pubs.until(3);
      assert.deepEqual(pubs.map((p) => p.offset), offsets, 'each missed publication once, in order');
      const later = lb.routed.filter((r) => r.path === '/connection/http_stream').at(-1);
      assert.notEqual(later.port, victim.clientPort, 'reconnected to another node');
    });
  }
});
