// Rolling restart with real processes: one redis-server, one publisher, three gateways behind a
// round-robin balancer (lib/proxy.mjs). 1,000 load generator clients and a few official
// `centrifuge` SDK clients receive a steady stream of publications on one channel with history
// while each gateway in turn leaves the rotation, gets SIGTERM and is replaced by a fresh process
// that joins the rotation once ready, as a Kubernetes rolling update does. Every client must end
// with every publication exactly once and in order, every old gateway must exit within its drain
// spread plus a margin, and no publish may fail. Prints clients, publications, losses,
// duplicates, drain times and a histogram of reconnects relative to each SIGTERM. A first,
// quick test checks the balancer itself (rotation, refusing backend skipped, add and remove).
// HERALD_TEST_LOG=1 streams the nodes' and the load generator's logs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { Herald, freePort, uid, withTimeout } from './lib/herald.mjs';
import { LoadTest } from './lib/loadtest.mjs';
import { Proxy } from './lib/proxy.mjs';
import { RedisServer } from './lib/redis.mjs';

const LOAD_CLIENTS = 1000;
const SDK_CLIENTS = 15;
const RATE = 20;
// Long enough for three drains of DRAIN_SPREAD plus the replacements' start-up on a busy machine;
// the test checks that publishing outlasted the rolling restart.
const PUBLISH_FOR = '16s';
const DRAIN_SPREAD_MS = 2000;
const DRAIN_MARGIN_MS = 1500;
const BUCKET_MS = 250;

/** Polls `check` until it holds or `timeout` ms pass (no push signal for these conditions). */
async function until(check, timeout, what) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timeout after ${timeout} ms: ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An SDK client through the balancer, subscribed (recoverable) to `channel`, recording all it sees. */
function sdkClient(url, token, channel) {
  const rec = { pubs: [], subs: [], drops: [], resumes: [], ready: null };
  const c = new Centrifuge(url, {
    websocket: WebSocket, token, minReconnectDelay: 200, maxReconnectDelay: 2000, timeout: 10000,
  });
  c.on('error', () => {});
  c.on('connecting', (ctx) => { if (rec.subs.length > 0) rec.drops.push({ at: Date.now(), code: ctx.code }); });
  const s = c.newSubscription(channel, { recoverable: true, positioned: true, minResubscribeDelay: 200, maxResubscribeDelay: 2000 });
  s.on('error', () => {});
  s.on('publication', (ctx) => rec.pubs.push({ seq: ctx.data?.seq, offset: ctx.offset }));
  rec.ready = new Promise((resolve) => {
    s.on('subscribed', (ctx) => {
      rec.subs.push({ at: Date.now(), wasRecovering: ctx.wasRecovering, recovered: ctx.recovered, offset: ctx.streamPosition?.offset });
      if (rec.subs.length > 1) rec.resumes.push(Date.now());
      resolve();
    });
  });
  s.subscribe();
  c.connect();
  return { c, rec };
}

/** What one SDK client got against the channel's history: lost, duplicated, out of order. */
function auditSdk(rec, history) {
  const seen = new Map();
  let outOfOrder = 0;
  let last = -1;
  for (const p of rec.pubs) {
    seen.set(p.offset, (seen.get(p.offset) ?? 0) + 1);
    if (seen.get(p.offset) === 1) {
      if (p.offset < last) outOfOrder++;
      last = Math.max(last, p.offset);
    }
  }
  const start = rec.subs[0]?.offset ?? 0;
  const expected = history.filter((p) => p.offset > start);
  const lost = expected.filter((p) => !seen.has(p.offset)).length;
  const duplicated = [...seen.values()].reduce((n, k) => n + k - 1, 0);
  const seqAt = new Map(history.map((p) => [p.offset, p.seq]));
  const wrongData = rec.pubs.filter((p) => seqAt.get(p.offset) !== p.seq).length;
  return { lost, duplicated, outOfOrder, wrongData, expected: expected.length, unrecovered: rec.subs.slice(1).filter((s) => !s.recovered).length };
}

/** A table of how many of each column's values (ms) fall in each BUCKET_MS bucket, up to `limit`. */
function histogram(columns, limit) {
  const buckets = Math.ceil(limit / BUCKET_MS);
  const bucketOf = (v) => Math.min(buckets, Math.floor(v / BUCKET_MS));
  const counts = columns.map(({ values }) => {
    const c = new Array(buckets + 1).fill(0);
    for (const v of values) if (v >= 0) c[bucketOf(v)]++;
    return c;
  });
  const last = Math.max(0, ...counts.map((c) => c.findLastIndex((n) => n > 0)));
  const rows = [`  ${'since SIGTERM'.padStart(14)} ${columns.map((c) => c.name.padStart(7)).join(' ')}`];
  for (let b = 0; b <= last; b++) {
    const label = b < buckets ? `${b * BUCKET_MS}-${(b + 1) * BUCKET_MS} ms` : `${limit}+ ms`;
    const cells = counts.map((c) => String(c[b]).padStart(7)).join(' ');
    rows.push(`  ${label.padStart(14)} ${cells}  ${'#'.repeat(Math.ceil(counts[0][b] / 10))}`);
  }
  return rows.join('\n');
}

/** A TCP server on 127.0.0.1 that answers every line with `<name>:<line>`. */
async function echoServer(name) {
  const srv = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.on('data', (d) => sock.write(`${name}:${d}`));
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { port: srv.address().port, close: () => new Promise((r) => srv.close(r)) };
}

/** Opens a connection through `port`, sends `text` and resolves with the answer (or `closed`). */
function ask(port, text, sock = net.connect({ host: '127.0.0.1', port })) {
  return withTimeout(new Promise((resolve) => {
    sock.on('error', () => {});
    sock.once('data', (d) => resolve({ answer: d.toString(), sock }));
    sock.once('close', () => resolve({ answer: 'closed', sock }));
    sock.write(text);
  }), 3000, `answer through port ${port}`);
}

test('the balancer rotates, skips a refusing backend and keeps connections of a removed one', async () => {
  const [a, b] = [await echoServer('a'), await echoServer('b')];
  const refusing = await freePort();
  const proxy = await Proxy.start([refusing, a.port, b.port]);
  const opened = [];
  try {
    const answers = [];
    for (let i = 0; i < 4; i++) {
      const { answer, sock } = await ask(proxy.port, 'x');
      answers.push(answer);
      opened.push(sock);
    }
    assert.deepEqual(answers.sort(), ['a:x', 'a:x', 'a:x', 'b:x'], 'the refusing backend is skipped for the next one');
    const onA = opened[0];
    proxy.remove(a.port);
    for (let i = 0; i < 3; i++) {
      const { answer, sock } = await ask(proxy.port, 'y');
      opened.push(sock);
      assert.equal(answer, 'b:y', 'a removed backend takes no new connection');
    }
    onA.removeAllListeners('data');
    assert.equal((await ask(proxy.port, 'z', onA)).answer, 'a:z', 'an established connection stays on a removed backend');
    proxy.remove(b.port);
    assert.equal((await ask(proxy.port, 'w')).answer, 'closed', 'no backend accepting: the client is closed');
    assert.equal(proxy.refused, 1);
    proxy.add(a.port);
    const back = await ask(proxy.port, 'v');
    opened.push(back.sock);
    assert.equal(back.answer, 'a:v', 'a backend added again takes connections');
  } finally {
    for (const s of opened) s.destroy();
    await proxy.close();
    await Promise.all([a.close(), b.close()]);
  }
});

test('rolling restart of three gateways behind a balancer: every publication once, in order, to every client', { timeout: 90000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'herald-rolling-'));
  const secret = randomBytes(24).toString('hex');
  const apiKey = randomBytes(12).toString('hex');
  const channel = `feed:${uid('roll')}`;
  let redis;
  let proxy;
  let load;
  let publisher;
  const nodes = new Set();
  const sdk = [];
  try {
    redis = await RedisServer.start();
    const env = {
      HERALD_ENGINE__REDIS_URL: redis.url,
      HERALD_NAMESPACES__FEED__HISTORY_SIZE: '1000',
      HERALD_NAMESPACES__FEED__HISTORY_TTL: '300s',
      HERALD_SERVER__DRAIN_SPREAD: `${DRAIN_SPREAD_MS}ms`,
      HERALD_SERVER__DRAIN_TIMEOUT: '10s',
      NO_COLOR: '1',
    };
    let generation = 0;
    const startNode = async (role, name) => {
      const h = await Herald.start({ secret, apiKey, env: { ...env, HERALD_SERVER__ROLE: role, HERALD_SERVER__NAME: name } });
      nodes.add(h);
      return h;
    };
    const gateway = () => startNode('gateway', `gw-${generation++}`);
    const started = await Promise.all([startNode('publisher', 'pub'), gateway(), gateway(), gateway()]);
    publisher = started[0];
    const gateways = started.slice(1);
    proxy = await Proxy.start(gateways.map((g) => g.clientPort));

    load = LoadTest.start([
      '--target', 'herald', '--scenario', 'broadcast', '--reconnect',
      '--connections', String(LOAD_CLIENTS), '--rate', String(RATE), '--duration', PUBLISH_FOR,
      '--settle', '0s', '--drain', '10s', '--channel', channel,
      '--ws-url', proxy.wsUrl, '--api-url', publisher.internalUrl,
      '--reconnect-min-delay', '200ms', '--reconnect-max-delay', '2s',
    ], {
      out: path.join(dir, 'rolling.json'),
      env: { HERALD_LOADTEST_API_KEY: apiKey, HERALD_LOADTEST_HMAC_SECRET: secret },
    });
    await load.ready(30000);
    for (let i = 0; i < SDK_CLIENTS; i++) sdk.push(sdkClient(proxy.wsUrl, gateways[0].token(uid('sdk')), channel));
    await withTimeout(Promise.all(sdk.map((s) => s.rec.ready)), 10000, 'SDK clients subscribed');
    load.go();
    // Steady delivery first: a second's worth of publications at every SDK client.
    await until(() => sdk.every((s) => s.rec.pubs.length >= RATE), 15000, 'publications flowing');

    const drains = [];
    for (const [i, old] of gateways.entries()) {
      const connections = proxy.active.get(old.clientPort) ?? 0;
      proxy.remove(old.clientPort);
      const exited = new Promise((resolve) => old.proc.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
      const sigterm = { wall: Date.now(), mono: performance.now() };
      old.proc.kill('SIGTERM');
      const fresh = await gateway();
      proxy.add(fresh.clientPort);
      const exit = await withTimeout(exited, 15000, `gateway ${old.name} to exit:\n${old.log()}`);
      nodes.delete(old);
      gateways[i] = fresh;
      drains.push({
        name: old.name, connections, sigterm: sigterm.wall, ms: exit.at - sigterm.mono, code: exit.code, signal: exit.signal, log: old.log(),
      });
    }
    // Publishing must outlast the rolling restart (checked below): more publications after the last exit.
    const after = sdk[0].rec.pubs.length;
    const outlasted = await until(() => sdk[0].rec.pubs.length >= after + RATE / 2, 5000, 'publications')
      .then(() => true, () => false);

    const summary = await load.finished(60000);
    const history = await publisher.api('history', { channel, limit: -1 });
    assert.equal(history.status, 200, JSON.stringify(history.body));
    const stream = history.body.result.publications.map((p) => ({ offset: p.offset, seq: p.data.seq }));
    const lastOffset = stream.at(-1)?.offset;
    await withTimeout(Promise.all(sdk.map((s) => until(() => s.rec.pubs.some((p) => p.offset === lastOffset), 10000, 'SDK clients caught up'))),
      15000, 'SDK clients caught up');
    const audits = sdk.map((s) => auditSdk(s.rec, stream));

    // Report.
    const sigterms = drains.map((d) => d.sigterm);
    const since = (t) => {
      const s = sigterms.filter((x) => x <= t).at(-1);
      return s === undefined ? -1 : t - s;
    };
    const events = summary.reconnect_events ?? [];
    const closed = [...events.map((e) => e.closed_ms), ...sdk.flatMap((s) => s.rec.drops.map((d) => d.at))].map(since);
    const resumed = [...events.map((e) => e.resumed_ms), ...sdk.flatMap((s) => s.rec.resumes)].map(since);
    const sdkSum = (k) => audits.reduce((n, a) => n + a[k], 0);
    const lines = [
      `rolling: clients ${summary.connections} load generator + ${sdk.length} SDK, publications ${summary.published} (${RATE}/s), `
        + `publish errors ${summary.publish.errors}, skipped ${summary.publish.skipped}`,
      `rolling: load generator lost ${summary.lost}, duplicated ${summary.duplicates}, out of order ${summary.out_of_order}, `
        + `reconnects ${summary.reconnects} (recovered ${summary.recovered}, unrecovered ${summary.unrecovered}, `
        + `${summary.recovered_publications} publications recovered, ${summary.reconnect_failures} failed attempts)`,
      `rolling: SDK clients lost ${sdkSum('lost')}, duplicated ${sdkSum('duplicated')}, out of order ${sdkSum('outOfOrder')}, `
        + `reconnects ${sdk.reduce((n, s) => n + s.rec.resumes.length, 0)} (unrecovered ${sdkSum('unrecovered')})`,
      `rolling: drain times ${drains.map((d) => `${d.name} ${(d.ms / 1000).toFixed(2)} s (${d.connections} connections)`).join(', ')} `
        + `(limit ${((DRAIN_SPREAD_MS + DRAIN_MARGIN_MS) / 1000).toFixed(1)} s)`,
      `rolling: connections routed by the balancer per gateway port ${JSON.stringify(Object.fromEntries(proxy.routed))}, refused ${proxy.refused}`,
      'rolling: reconnects relative to the latest SIGTERM (closed = connection lost, resumed = subscribed again)',
      histogram([{ name: 'closed', values: closed }, { name: 'resumed', values: resumed }], 4000),
    ];
    console.log(lines.join('\n'));

    // Assertions.
    assert.equal(summary.connections, LOAD_CLIENTS, 'every load generator client connected');
    assert.equal(summary.publish.errors, 0, `publish errors: ${JSON.stringify(summary.errors)}`);
    assert.equal(summary.published, summary.publish.sent, 'every publication sent was accepted');
    assert.equal(summary.published, stream.length, 'the channel history holds every publication');
    assert.equal(summary.lost, 0, `load generator clients lost publications: ${JSON.stringify(summary.errors)}`);
    assert.equal(summary.duplicates, 0, 'load generator clients got duplicates');
    assert.equal(summary.out_of_order, 0, 'load generator clients got publications out of order');
    assert.equal(summary.misrouted, 0);
    assert.equal(summary.unrecovered, 0, 'a reconnect was told recovered: false');
    assert.equal(summary.delivered, summary.published * LOAD_CLIENTS);
    assert.deepEqual(summary.errors, [], 'load generator errors');
    assert.ok(summary.reconnects >= LOAD_CLIENTS, `every load generator client moved at least once (${summary.reconnects} reconnects)`);
    for (const [i, a] of audits.entries()) {
      assert.deepEqual({ lost: a.lost, duplicated: a.duplicated, outOfOrder: a.outOfOrder, wrongData: a.wrongData, unrecovered: a.unrecovered },
        { lost: 0, duplicated: 0, outOfOrder: 0, wrongData: 0, unrecovered: 0 }, `SDK client ${i}`);
      assert.equal(a.expected, stream.length, `SDK client ${i} subscribed before the first publication`);
      assert.ok(sdk[i].rec.resumes.length >= 1, `SDK client ${i} moved at least once`);
    }
    for (const d of drains) {
      assert.equal(d.code, 0, `${d.name} exit code (signal ${d.signal}):\n${d.log}`);
      assert.ok(d.ms <= DRAIN_SPREAD_MS + DRAIN_MARGIN_MS, `${d.name} took ${d.ms.toFixed(0)} ms to exit after SIGTERM:\n${d.log}`);
    }
    const spread = (values) => Math.max(...values) - Math.min(...values);
    for (const [i, t] of sigterms.entries()) {
      const next = sigterms[i + 1] ?? Infinity;
      const own = events.map((e) => e.closed_ms).filter((c) => c >= t && c < next && c - t < DRAIN_SPREAD_MS + DRAIN_MARGIN_MS).map((c) => c - t);
      assert.ok(own.length > 0 && spread(own) >= DRAIN_SPREAD_MS / 2,
        `${drains[i].name}: closes spread over ${own.length ? spread(own) : 0} ms, expected most of the ${DRAIN_SPREAD_MS} ms drain`);
    }
    assert.ok(outlasted, 'publishing ended before the rolling restart did: raise PUBLISH_FOR');
  } finally {
    for (const s of sdk) s.c.disconnect();
    await load?.kill();

    await Promise.all([...nodes].map((h) => h.kill()));
    await proxy?.close();
    await redis?.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
