// Compatibility with the official `centrifuge` JavaScript SDK (v5, under Node with `ws`), once per
// wire: JSON (`centrifuge`) and Protobuf (`centrifuge/build/protobuf`, which speaks the
// `centrifuge-protobuf` subprotocol in binary frames and carries payloads as bytes: here the
// bytes of JSON text). Each run has one herald with an HMAC secret, an API key and two namespaces
// added through the environment (`chat`: history, presence, client publish; `secret`:
// subscription token required). It covers connecting, the server-side personal channel,
// client-side subscriptions, the server API and its key check, every client error code the SDK
// reacts to, history and presence, and recovery after a reconnect for both client-side and
// server-side subscriptions.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Centrifuge as JsonCentrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';
import { Herald, RawClient, collect, signJwt, uid, waitEvent } from './lib/herald.mjs';

const utf8 = { encoder: new TextEncoder(), decoder: new TextDecoder() };

/** The SDK build of each wire, and how application data travels in it. */
const WIRES = [
  { name: 'json', Centrifuge: JsonCentrifuge, send: (data) => data, read: (data) => data },
  {
    name: 'protobuf',
    Centrifuge: ProtobufCentrifuge,
    send: (data) => utf8.encoder.encode(JSON.stringify(data)),
    read: (data) => {
      assert.ok(data instanceof Uint8Array, `bytes expected, got ${typeof data}`);
      return JSON.parse(utf8.decoder.decode(data));
    },
  },
];

for (const wire of WIRES) {
  describe(`centrifuge SDK, ${wire.name} wire`, () => suite(wire));
}

/** The suite, against a herald of its own, with the SDK build of `wire`. */
function suite(wire) {
  const { Centrifuge } = wire;
  let herald;
  const clients = [];

  before(async () => {
    herald = await Herald.start({
      env: {
        HERALD_NAMESPACES__CHAT__CLIENT_PUBLISH: 'true',
        HERALD_NAMESPACES__CHAT__HISTORY_SIZE: '100',
        HERALD_NAMESPACES__CHAT__HISTORY_TTL: '5m',
        HERALD_NAMESPACES__CHAT__PRESENCE: 'true',
        HERALD_NAMESPACES__SECRET__SUBSCRIBE: 'token',
      },
    });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await herald?.stop();
  });

  /** A Centrifuge client (not connected yet) that is disconnected after the file. */
  function client(opts = {}) {
    const c = new Centrifuge(herald.wsUrl, { websocket: WebSocket, ...opts });
    // The SDK's emitter throws on an unhandled 'error' event: errors are observed explicitly.
    c.on('error', () => {});
    clients.push(c);
    return c;
  }

  function subscription(c, channel, opts = {}) {
    const s = c.newSubscription(channel, opts);
    s.on('error', () => {});
    return s;
  }

  /** A connected client of a fresh user. */
  async function connected(user = uid('user'), opts = {}) {
    const c = client({ token: herald.token(user), ...opts });
    const ready = waitEvent(c, 'connected');
    c.connect();
    const ctx = await ready;
    return { c, user, ctx };
  }

  test('connects with a valid token', async () => {
    const { c, ctx } = await connected();
    assert.equal(c.state, 'connected');
    assert.equal(typeof ctx.client, 'string');
    assert.ok(ctx.client.length > 0, 'client id is set');
    assert.equal(ctx.transport, 'websocket');
  });

  test('server-side personal channel: subscribed on connect, API publications arrive', async () => {
    const user = uid('user');
    const c = client({ token: herald.token(user) });
    const subscribed = waitEvent(c, 'subscribed', { filter: (ctx) => ctx.channel === `user:${user}` });
    c.connect();
    const sctx = await subscribed;
    assert.equal(sctx.channel, `user:${user}`);
    const pub = waitEvent(c, 'publication', { filter: (ctx) => ctx.channel === `user:${user}` });
    const result = await herald.publish(`user:${user}`, { text: 'for you' });
    const ctx = await pub;
    assert.deepEqual(wire.read(ctx.data), { text: 'for you' });
    assert.equal(typeof result.offset, 'number');
    assert.equal(ctx.offset, result.offset, 'publication carries the offset the API returned');
  });

  test('client-side subscription to stock:* and an API publication', async () => {
    const { c } = await connected();
    const channel = `stock:${uid('X')}`;
    const s = subscription(c, channel);
    const subscribed = waitEvent(s, 'subscribed');
    s.subscribe();
    await subscribed;
    assert.equal(s.state, 'subscribed');
    const pub = waitEvent(s, 'publication');
    await herald.publish(channel, { symbol: 'X', price: 1.5 });
    assert.deepEqual(wire.read((await pub).data), { symbol: 'X', price: 1.5 });
  });

  test('server API rejects a wrong or missing key with 401, accepts Authorization: apikey', async () => {
    const body = { channel: 'stock:KEY', data: { n: 1 } };
    const wrong = await herald.api('publish', body, { headers: { 'X-API-Key': 'nope' } });
    assert.equal(wrong.status, 401);
    const missing = await herald.api('publish', body, { headers: {} });
    assert.equal(missing.status, 401);
    const alt = await herald.api('publish', body, { headers: { Authorization: `apikey ${herald.apiKey}` } });
    assert.equal(alt.status, 200);
    assert.ok(alt.body.result, `result expected, got ${JSON.stringify(alt.body)}`);
  });

  test('expired token: error 109, the SDK calls getToken again and connects', async () => {
    const user = uid('user');
    let calls = 0;
    const c = client({
      getToken: async () => {
        calls += 1;
        return calls === 1 ? herald.token(user, { exp: Math.floor(Date.now() / 1000) - 60 }) : herald.token(user);
      },
    });
    const err = waitEvent(c, 'error', { filter: (e) => e.type === 'connect' });
    const ready = waitEvent(c, 'connected', { timeout: 10000 });
    c.connect();
    const e = await err;
    assert.equal(e.error.code, 109);
    await ready;
    assert.equal(calls, 2, 'getToken called once more after 109');
  });

  async function expectDisconnected(token, code) {
    const c = client(token === undefined ? {} : { token });
    const disc = waitEvent(c, 'disconnected');
    c.connect();
    const ctx = await disc;
    assert.equal(ctx.code, code, `disconnect code (reason: ${ctx.reason})`);
    assert.equal(c.state, 'disconnected');
  }

  test('bad signature: disconnected with 3500', async () => {
    await expectDisconnected(herald.token('mallory', { secret: 'not-the-secret' }), 3500);
  });

  test('alg none token: disconnected with 3500', async () => {
    const token = signJwt({ sub: 'mallory', exp: Math.floor(Date.now() / 1000) + 3600 }, '', { alg: 'none' });
    await expectDisconnected(token, 3500);
  });

  test('no token: disconnected with 3501', async () => {
    await expectDisconnected(undefined, 3501);
  });

  async function expectSubscribeRejected(channel, code, subOpts = {}) {
    const { c } = await connected();
    const s = subscription(c, channel, subOpts);
    const unsub = waitEvent(s, 'unsubscribed');
    s.subscribe();
    const ctx = await unsub;
    assert.equal(ctx.code, code, `unsubscribed code (reason: ${ctx.reason})`);
    assert.equal(c.state, 'connected', 'the connection stays up');
  }

  test('subscribe to an unknown namespace: 102', async () => {
    await expectSubscribeRejected('nope:1', 102);
  });

  test("subscribe to someone else's personal channel: 103", async () => {
    await expectSubscribeRejected('user:other', 103);
  });

  test('subscribe twice on one connection: 105 (raw ws)', async () => {
    const ws = await RawClient.open(herald.wsUrl);
    try {
      await ws.connect(herald.token(uid('user')));
      const first = await ws.call({ subscribe: { channel: 'stock:TWICE' } });
      assert.equal(first.error, undefined, JSON.stringify(first));
      assert.ok(first.subscribe, 'subscribe result');
      const second = await ws.call({ subscribe: { channel: 'stock:TWICE' } });
      assert.equal(second.error?.code, 105, JSON.stringify(second));
    } finally {
      ws.close();
    }
  });

  test('secret:* without a subscription token: 103', async () => {
    await expectSubscribeRejected(`secret:${uid('s')}`, 103);
  });

  test('secret:* with a valid subscription token: subscribed', async () => {
    const { c, user } = await connected();
    const channel = `secret:${uid('s')}`;
    let calls = 0;
    const s = subscription(c, channel, {
      getToken: async (ctx) => {
        calls += 1;
        assert.equal(ctx.channel, channel);
        return herald.subToken(user, channel);
      },
    });
    const subscribed = waitEvent(s, 'subscribed');
    s.subscribe();
    await subscribed;
    assert.equal(calls, 1);
    const pub = waitEvent(s, 'publication');
    await herald.publish(channel, { secret: true });
    assert.deepEqual(wire.read((await pub).data), { secret: true });
  });

  test('client publish: allowed in chat:*, 103 in stock:*', async () => {
    const { c } = await connected();
    const { c: reader } = await connected();
    const channel = `chat:${uid('pub')}`;
    const s = subscription(reader, channel);
    const subscribed = waitEvent(s, 'subscribed');
    s.subscribe();
    await subscribed;
    const pub = waitEvent(s, 'publication');
    await c.publish(channel, wire.send({ text: 'from a client' }));
    const ctx = await pub;
    assert.deepEqual(wire.read(ctx.data), { text: 'from a client' });
    await assert.rejects(c.publish('stock:NOPUB', wire.send({ price: 1 })), (err) => {
      assert.equal(err.code, 103, JSON.stringify(err));
      return true;
    });
  });

  test('history of a channel with history', async () => {
    const { c } = await connected();
    const channel = `chat:${uid('hist')}`;
    const offsets = [];
    for (let i = 0; i < 3; i++) offsets.push((await herald.publish(channel, { i })).offset);
    const s = subscription(c, channel);
    const subscribed = waitEvent(s, 'subscribed');
    s.subscribe();
    await subscribed;
    const h = await s.history({ limit: 10 });
    assert.deepEqual(h.publications.map((p) => wire.read(p.data)), [{ i: 0 }, { i: 1 }, { i: 2 }]);
    assert.deepEqual(h.publications.map((p) => p.offset), offsets);
    assert.equal(h.offset, offsets[2]);
    assert.equal(typeof h.epoch, 'string');
    assert.ok(h.epoch.length > 0, 'epoch is set');
    const top = await s.history({ limit: 0 });
    assert.equal(top.publications.length, 0, 'limit 0 returns only the position');
    assert.equal(top.offset, offsets[2]);
    const api = await herald.api('history', { channel, limit: 2, reverse: true });
    assert.deepEqual(api.body.result.publications.map((p) => p.data), [{ i: 2 }, { i: 1 }]);
  });

  test('presence and presence stats of a channel with presence', async () => {
    const channel = `chat:${uid('pres')}`;
    const a = await connected();
    const b = await connected();
    const subs = [];
    for (const { c } of [a, b]) {
      const s = subscription(c, channel);
      const subscribed = waitEvent(s, 'subscribed');
      s.subscribe();
      await subscribed;
      subs.push(s);
    }
    const p = await subs[0].presence();
    const entries = Object.values(p.clients);
    assert.deepEqual(entries.map((e) => e.user).sort(), [a.user, b.user].sort());
    assert.deepEqual(Object.keys(p.clients).sort(), [a.ctx.client, b.ctx.client].sort());
    const stats = await subs[1].presenceStats();
    assert.equal(stats.numClients, 2);
    assert.equal(stats.numUsers, 2);
    const api = await herald.api('presence_stats', { channel });
    assert.deepEqual(api.body.result, { num_clients: 2, num_users: 2 });
  });

  test('recovery of a client-side subscription after a reconnect', async () => {
    const { c } = await connected();
    const channel = `chat:room${uid('')}`;
    const s = subscription(c, channel, { recoverable: true });
    const first = waitEvent(s, 'subscribed');
    s.subscribe();
    const fctx = await first;
    assert.equal(fctx.recoverable, true, 'subscription is recoverable');
    const seen = waitEvent(s, 'publication');
    const before = await herald.publish(channel, { n: 0 });
    assert.equal((await seen).offset, before.offset);
    const disc = waitEvent(c, 'disconnected');
    c.disconnect();
    await disc;
    const sent = [];
    for (let n = 1; n <= 5; n++) sent.push((await herald.publish(channel, { n })).offset);
    assert.deepEqual(sent, [1, 2, 3, 4, 5].map((k) => before.offset + k), 'offsets are consecutive');
    const pubs = collect(s, 'publication');
    const again = waitEvent(s, 'subscribed');
    c.connect();
    const ctx = await again;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    await pubs.until(5);
    assert.deepEqual(pubs.map((p) => wire.read(p.data).n), [1, 2, 3, 4, 5]);
    assert.deepEqual(pubs.map((p) => p.offset), sent);
  });

  test('recovery of the server-side personal channel through connect.subs', async () => {
    const user = uid('user');
    const c = client({ token: herald.token(user) });
    const channel = `user:${user}`;
    const first = waitEvent(c, 'subscribed', { filter: (x) => x.channel === channel });
    c.connect();
    const fctx = await first;
    assert.equal(fctx.recoverable, true, 'personal channel is recoverable');
    const seen = waitEvent(c, 'publication', { filter: (p) => p.channel === channel });
    const before = await herald.publish(channel, { n: 0 });
    assert.equal((await seen).offset, before.offset);
    const disc = waitEvent(c, 'disconnected');
    c.disconnect();
    await disc;
    for (let n = 1; n <= 5; n++) await herald.publish(channel, { n });
    const pubs = collect(c, 'publication', (p) => p.channel === channel);
    const again = waitEvent(c, 'subscribed', { filter: (x) => x.channel === channel });
    c.connect();
    const ctx = await again;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    await pubs.until(5);
    assert.deepEqual(pubs.map((p) => wire.read(p.data).n), [1, 2, 3, 4, 5]);
    assert.deepEqual(pubs.map((p) => p.offset), [1, 2, 3, 4, 5].map((k) => before.offset + k));
  });
}
