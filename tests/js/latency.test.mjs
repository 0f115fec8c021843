// Publish-to-receive latency through one herald: 1,000 publications sent one after another
// through the server API to a single `centrifuge` SDK client subscribed to a `stock:` channel.
// Each must arrive exactly once and in publish order (offsets consecutive); the latency from the
// start of each API call to the SDK's publication event is printed as
// `latency: n=1000 p50=..ms p99=..ms max=..ms`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { Herald, collect, uid, waitEvent } from './lib/herald.mjs';

const N = 1000;
let herald;

before(async () => {
  herald = await Herald.start();
});

after(() => herald?.stop());

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

test(`${N} publications arrive once, in order; latency printed`, { timeout: 120000 }, async () => {
  const c = new Centrifuge(herald.wsUrl, { websocket: WebSocket, token: herald.token(uid('lat')) });
  c.on('error', () => {});
  const connected = waitEvent(c, 'connected');
  c.connect();
  await connected;
  const channel = `stock:${uid('LAT')}`;
  const s = c.newSubscription(channel);
  s.on('error', () => {});
  const subscribed = waitEvent(s, 'subscribed');
  s.subscribe();
  await subscribed;

  const sentAt = new Array(N);
  const latency = new Array(N);
  const received = collect(s, 'publication');
  s.on('publication', (ctx) => {
    const seq = ctx.data?.seq;
    if (Number.isInteger(seq) && seq >= 0 && seq < N && latency[seq] === undefined) {
      latency[seq] = performance.now() - sentAt[seq];
    }
  });

  const offsets = [];
  try {
    for (let seq = 0; seq < N; seq++) {
      sentAt[seq] = performance.now();
      offsets.push((await herald.publish(channel, { seq, pad: 'p'.repeat(64) })).offset);
    }
    await received.until(N, 20000);
    // Anything extra (a duplicate) would already be queued behind the last one: one round trip
    // to the server flushes it out before counting.
    await s.presenceStats().catch(() => {});
  } finally {
    c.disconnect();
  }

  const seqs = received.map((p) => p.data.seq);
  assert.equal(seqs.length, N, 'exactly N publications, no duplicates');
  assert.deepEqual(seqs, [...Array(N).keys()], 'in publish order');
  assert.deepEqual(received.map((p) => p.offset), offsets, 'offsets match the API results');
  for (let i = 1; i < N; i++) assert.equal(offsets[i], offsets[i - 1] + 1, 'offsets consecutive');

  const sorted = [...latency].sort((a, b) => a - b);
  const fmt = (v) => v.toFixed(2);
  console.log(`latency: n=${N} p50=${fmt(pct(sorted, 50))}ms p99=${fmt(pct(sorted, 99))}ms max=${fmt(sorted[N - 1])}ms`);
  assert.ok(sorted.every((v) => Number.isFinite(v) && v >= 0));
});
