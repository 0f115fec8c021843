// Wire-level behaviour that the SDK hides, checked with a raw `ws` client against real herald
// processes: bad frames and commands before connect close with 3501, unknown fields are ignored
// while wrong types are rejected, several newline-separated commands in one frame all get replies,
// a `stock:` subscriber gets the latest value in its subscribe reply, recovery from a stale epoch
// reports `recovered` false, server pings (`{}`) expect a pong or the connection closes with 3012,
// the Origin allow-list answers 403 to foreign browsers, and frames over 64 KiB close with 1009.

import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Herald, RawClient, uid } from './lib/herald.mjs';

const isPing = (m) => typeof m === 'object' && m !== null && Object.keys(m).length === 0;

describe('framing and commands', () => {
  let herald;
  before(async () => {
    herald = await Herald.start({ env: { HERALD_AUTH__ALLOWED_ORIGINS: 'http://good.example' } });
  });
  after(() => herald?.stop());

  const open = (opts) => RawClient.open(herald.wsUrl, opts);

  test('malformed JSON frame closes with 3501', async () => {
    const ws = await open();
    await ws.connect(herald.token(uid()));
    ws.sendRaw('{"id":2,"subscribe":{"channel":');
    const { code } = await ws.waitClose();
    assert.equal(code, 3501);
  });

  test('a command before connect closes with 3501', async () => {
    const ws = await open();
    ws.send({ subscribe: { channel: 'stock:EARLY' } });
    const { code } = await ws.waitClose();
    assert.equal(code, 3501);
    assert.equal(ws.messages.filter((m) => m.subscribe).length, 0, 'no subscribe result');
  });

  test('a command without id (not send, not pong) closes with 3501', async () => {
    const ws = await open();
    await ws.connect(herald.token(uid()));
    ws.sendRaw(JSON.stringify({ subscribe: { channel: 'stock:NOID' } }));
    const { code } = await ws.waitClose();
    assert.equal(code, 3501);
  });

  test('an unsolicited pong closes with 3501', async () => {
    const ws = await open();
    await ws.connect(herald.token(uid()));
    ws.sendRaw('{}');
    const { code } = await ws.waitClose();
    assert.equal(code, 3501);
  });

  test('unknown fields are ignored', async () => {
    const ws = await open();
    try {
      const reply = await ws.call({
        connect: { token: herald.token(uid()), name: 'raw', not_a_field: { deep: [1, 2] } },
        also_unknown: 42,
      });
      assert.equal(reply.error, undefined, JSON.stringify(reply));
      assert.equal(typeof reply.connect?.client, 'string', JSON.stringify(reply));
      const sub = await ws.call({ subscribe: { channel: 'stock:UNK', future_option: 'x' } });
      assert.ok(sub.subscribe, JSON.stringify(sub));
    } finally {
      ws.close();
    }
  });

  test('a field of the wrong type closes with 3501', async () => {
    const ws = await open();
    ws.send({ connect: { token: 12345 } });
    const { code } = await ws.waitClose();
    assert.equal(code, 3501);
  });

  test('a wrong type after connect closes with 3501', async () => {
    const ws = await open();
    await ws.connect(herald.token(uid()));
    ws.send({ subscribe: { channel: ['stock:A'] } });
    const { code } = await ws.waitClose();
    assert.equal(code, 3501);
  });

  test('several commands in one frame all get replies', async () => {
    const ws = await open();
    try {
      const ids = ws.send(
        { connect: { token: herald.token(uid()) } },
        { subscribe: { channel: 'stock:B1' } },
        { subscribe: { channel: 'stock:B2' } },
        { unsubscribe: { channel: 'stock:B1' } },
      );
      const replies = await Promise.all(ids.map((id) => ws.next((m) => m.id === id, 5000, `reply ${id}`)));
      assert.ok(replies[0].connect, JSON.stringify(replies[0]));
      assert.ok(replies[1].subscribe, JSON.stringify(replies[1]));
      assert.ok(replies[2].subscribe, JSON.stringify(replies[2]));
      assert.deepEqual(replies[3], { id: ids[3], unsubscribe: {} });
      // Replies come in command order (the SDK matches by id, but order is what Centrifugo does).
      const order = ws.messages.filter((m) => ids.includes(m.id)).map((m) => m.id);
      assert.deepEqual(order, ids);
    } finally {
      ws.close();
    }
  });

  test('stock:* replays the latest value to a new subscriber', async () => {
    const channel = `stock:${uid('L')}`;
    await herald.publish(channel, { price: 1 });
    const last = await herald.publish(channel, { price: 2 });
    const ws = await open();
    try {
      await ws.connect(herald.token(uid()));
      const reply = await ws.call({ subscribe: { channel } });
      const pubs = (reply.subscribe?.publications ?? []).map(({ offset, data }) => ({ offset, data }));
      assert.deepEqual(pubs, [{ offset: last.offset, data: { price: 2 } }], JSON.stringify(reply));
      assert.ok(reply.subscribe.publications[0].time > 0, 'publications carry their publish time');
      assert.equal(reply.subscribe.offset, last.offset);
      assert.equal(reply.subscribe.epoch, last.epoch);
    } finally {
      ws.close();
    }
  });

  test('recovering from a position of another epoch is not recovered', async () => {
    const channel = `user:${uid()}`;
    const user = channel.slice(5);
    await herald.publish(channel, { n: 1 });
    const ws = await open();
    try {
      const conn = await ws.connect(herald.token(user), { subs: { [channel]: { recover: true, offset: 1, epoch: 'stale-epoch' } } });
      const sub = conn.subs?.[channel];
      assert.ok(sub, JSON.stringify(conn));
      assert.equal(sub.was_recovering, true, JSON.stringify(sub));
      assert.notEqual(sub.recovered, true, JSON.stringify(sub));
      assert.notEqual(sub.epoch, 'stale-epoch');
    } finally {
      ws.close();
    }
  });

  test('a foreign Origin gets 403', async () => {
    await assert.rejects(open({ origin: 'http://evil.example' }), (err) => {
      assert.equal(err.statusCode, 403);
      return true;
    });
  });

  test('an allowed Origin connects', async () => {
    const ws = await open({ origin: 'http://good.example' });
    try {
      const conn = await ws.connect(herald.token(uid()));
      assert.equal(typeof conn.client, 'string');
    } finally {
      ws.close();
    }
  });

  test('no Origin (not a browser) connects', async () => {
    const ws = await open();
    try {
      const conn = await ws.connect(herald.token(uid()));
      assert.equal(typeof conn.client, 'string');
    } finally {
      ws.close();
    }
  });

  test('a frame over 64 KiB closes with 1009', async () => {
    const ws = await open();
    await ws.connect(herald.token(uid()));
    const big = JSON.stringify({ id: 9, publish: { channel: 'stock:BIG', data: { blob: 'x'.repeat(70 * 1024) } } });
    assert.ok(big.length > 64 * 1024);
    ws.sendRaw(big);
    const { code } = await ws.waitClose();
    assert.equal(code, 1009);
  });

  test('a frame just under 64 KiB is accepted', async () => {
    const ws = await open();
    try {
      await ws.connect(herald.token(uid()));
      const channel = 'stock:FIT';
      await ws.call({ subscribe: { channel } });
      const data = { blob: 'y'.repeat(60 * 1024) };
      const reply = await ws.call({ publish: { channel, data } });
      // stock:* does not allow client publish: the point is that the frame was read, not its result.
      assert.equal(reply.error?.code, 103, JSON.stringify(reply).slice(0, 200));
    } finally {
      ws.close();
    }
  });
});

describe('server ping', () => {
  let herald;
  before(async () => {
    herald = await Herald.start({
      env: { HERALD_CLIENT__PING_INTERVAL: '1s', HERALD_CLIENT__PONG_TIMEOUT: '500ms' },
    });
  });
  after(() => herald?.stop());

  test('pings are {} and a missing pong closes with 3012', async () => {
    const ws = await RawClient.open(herald.wsUrl);
    const conn = await ws.connect(herald.token(uid()));
    assert.equal(conn.ping, 1, 'connect result announces the ping interval in seconds');
    assert.equal(conn.pong, true, 'connect result asks for pongs');
    const from = ws.messages.length;
    await ws.next(isPing, 3000, 'first ping', from);
    const afterFirst = ws.messages.length;
    ws.sendRaw('{}');
    await ws.next(isPing, 3000, 'second ping (pong accepted)', afterFirst);
    const started = Date.now();
    const { code } = await ws.waitClose(3000);
    assert.equal(code, 3012);
    assert.ok(Date.now() - started < 2000, 'closed within the pong timeout');
  });
});
