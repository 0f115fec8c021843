// Herald as a cluster: three gateway processes and one publisher process on one Redis, once with a
// standalone Redis and once with a three-master Redis Cluster (sharded pub/sub). Clients are the
// official `centrifuge` SDK (and raw WebSocket where the SDK cannot move to another node).
// Covered: exactly-once, in-order delivery across nodes under pipelined publishing; recovery on a
// different node (client-side subscription with `since`, personal channel through
// `connect.subs`); server API control across nodes (`disconnect`, `subscribe`, `info`); Redis
// killed and restarted twice while publications stream (once with commands in flight, frozen in
// Redis's sockets, once a plain crash; in Cluster the master of a topic channel's slot): readiness
// follows, nothing acknowledged is lost without the client being told `recovered: false`, and the
// API answers HTTP 503 / code 100 within 5 s meanwhile.
// Each describe prints `cluster[<mode>]: publications=.. deliveries=.. p50=..ms p99=..ms`
// (publish-to-deliver latency across nodes, from just before the API call to the SDK's
// publication event) and `cluster[<mode>] redis restart: ...`.
// HERALD_TEST_FRAMES=1 writes the frames of a client with a delivery problem and the publish
// ledger to files in the temporary directory; HERALD_TEST_LOG=1 streams the nodes' logs.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { Herald, RawClient, collect, uid, waitEvent } from './lib/herald.mjs';
import { RedisCluster, RedisServer } from './lib/redis.mjs';

// Exactly-once test: clients per gateway, topic channels, publications and API calls in flight.
const PER_GATEWAY = 3;
const FEEDS = 4;
const TOTAL = 3000;
const IN_FLIGHT = 20;
// Redis restart test.
const RESTART_PER_GATEWAY = 2;
const RESTART_FEEDS = 2;
const RESTART_WORKERS = 4;
const HANG_MS = 5000;
const BURST_PAD = 2048;
const UNPACED_MS = 300;
const OUTAGE_FAILURES = 100;

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` (truthy when done) until it passes or `timeout` ms pass; resolves with its value. */
async function until(check, timeout, what, interval = 50) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timeout after ${timeout} ms: ${typeof what === 'function' ? what() : what}`);
    // State changes here (readiness, heartbeats, counters) have no push signal: poll with a deadline.
    await pause(interval);
  }
}

/** Runs `fn(item)` over `items` with at most `limit` calls in flight. */
async function pool(items, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

const pct = (sorted, p) => (sorted.length === 0 ? NaN
  : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]);
const ms = (v) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');

/** Compresses a sorted list of integers into `a-b,c` ranges for messages. */
function ranges(list) {
  const out = [];
  for (let i = 0; i < list.length; i++) {
    let j = i;
    while (j + 1 < list.length && list[j + 1] === list[j] + 1) j++;
    out.push(i === j ? `${list[i]}` : `${list[i]}-${list[j]}`);
    i = j;
  }
  const s = out.join(',');
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}

/**
 * What one connection saw, per channel, in arrival order: `sub` entries (every `subscribed`
 * event with its recovery flags and stream position) and `pub` entries (seq from the data,
 * offset, arrival time). Also the connection's own transitions (connecting/disconnected codes).
 */
class Recorder {
  constructor(name) {
    this.name = name;
    this.channels = new Map();
    this.transitions = [];
    this.waiters = new Set();
    this.frames = [];
  }

  /** Keeps the last raw frames the connection received (for failure messages). */
  frame(text) {
    this.frames.push({ at: performance.now(), text: text.length > 100000 ? `${text.slice(0, 100000)}...` : text });
    if (this.frames.length > 4000) this.frames.splice(0, 1000);
  }

  /** The kept frames received in [from, to] (performance.now() times), one line each. */
  framesBetween(from, to) {
    return this.frames.filter((f) => f.at >= from && f.at <= to)
      .map((f) => `${f.at.toFixed(1)} ${f.text.replaceAll('\n', ' \\n ')}`);
  }

  #list(channel) {
    let l = this.channels.get(channel);
    if (!l) this.channels.set(channel, (l = []));
    return l;
  }

  sub(channel, ctx) {
    this.#list(channel).push({
      kind: 'sub',
      wasRecovering: ctx.wasRecovering === true,
      recovered: ctx.recovered === true,
      epoch: ctx.streamPosition?.epoch ?? '',
      offset: ctx.streamPosition?.offset ?? 0,
      withPublications: ctx.hasRecoveredPublications === true,
      at: performance.now(),
    });
    this.#wake();
  }

  pub(channel, ctx) {
    this.#list(channel).push({
      kind: 'pub', seq: ctx.data?.seq, mark: ctx.data?.mark === true, offset: ctx.offset, at: performance.now(),
    });
    this.#wake();
  }

  events(channel) {
    return this.channels.get(channel) ?? [];
  }

  has(channel, seq) {
    return this.events(channel).some((e) => e.kind === 'pub' && e.seq === seq);
  }

  #wake() {
    for (const w of [...this.waiters]) {
      if (w.check()) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** Resolves when `check()` holds (checked now and after every event), or rejects after `timeout`. */
  when(check, timeout, what) {
    if (check()) return Promise.resolve();
    let w;
    const p = new Promise((resolve) => { w = { check, resolve }; this.waiters.add(w); });
    let timer;
    const t = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${timeout} ms: ${this.name}: ${typeof what === 'function' ? what() : what}`)), timeout);
    });
    return Promise.race([p, t]).finally(() => { clearTimeout(timer); this.waiters.delete(w); });
  }
}

/** A WebSocket class for the SDK that also hands every received frame to `rec.frame`. */
function tapped(rec) {
  return class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.on('message', (data) => rec.frame(data.toString()));
    }
  };
}

/** Every publication made through the API: seq -> channel, ack (epoch, offset) and send time. */
class Ledger {
  constructor(publisher) {
    this.publisher = publisher;
    this.nextSeq = 0;
    this.acked = new Map();
    this.byChannel = new Map();
    this.failures = [];
  }

  /** Publishes `{seq, ...extra}` to `channel`; records the ack or the failure; never throws. */
  async publish(channel, extra = {}, { timeout = 30000 } = {}) {
    const seq = this.nextSeq++;
    const sentAt = performance.now();
    let status = 0;
    let body = null;
    let error = null;
    try {
      ({ status, body } = await this.publisher.api('publish', { channel, data: { seq, ...extra } }, { timeout }));
    } catch (e) {
      error = e.name === 'TimeoutError' ? `no answer within ${timeout} ms` : `${e.name}: ${e.message}`;
    }
    const took = performance.now() - sentAt;
    const result = body?.result;
    if (!error && status === 200 && result && Number.isInteger(result.offset) && result.epoch) {
      const ack = { seq, channel, epoch: result.epoch, offset: result.offset, sentAt, took };
      this.acked.set(seq, ack);
      let m = this.byChannel.get(channel);
      if (!m) this.byChannel.set(channel, (m = new Map()));
      m.set(seq, ack);
      return { ok: true, ack };
    }
    const failure = { seq, channel, status, body, error, took, at: sentAt };
    this.failures.push(failure);
    return { ok: false, failure };
  }

  /** The acks of `channel` (seq -> ack). */
  of(channel) {
    return this.byChannel.get(channel) ?? new Map();
  }
}

/**
 * Audits what one connection saw of one channel against the acknowledged publications: no
 * duplicate, offsets strictly increasing within an epoch, and every acknowledged publication
 * delivered unless the client was told (a `subscribed` event with `recovered: false`, after
 * which the stream restarts at the position that event carries). Returns counters and problems.
 */
function audit(events, acks) {
  const problems = [];
  const show = (e) => (e.kind === 'sub'
    ? `subscribed(wasRecovering=${e.wasRecovering} recovered=${e.recovered} pos=${e.offset}@${e.epoch}${e.withPublications ? ' +publications' : ''})`
    : `pub(offset=${e.offset} seq=${e.seq})`);
  const context = (i) => `${events.slice(Math.max(0, i - 3), i + 1).map(show).join(' > ')} at ${events[i].at.toFixed(1)}`;
  const byEpoch = new Map();
  for (const a of acks.values()) {
    let l = byEpoch.get(a.epoch);
    if (!l) byEpoch.set(a.epoch, (l = []));
    l.push(a.offset);
  }
  for (const l of byEpoch.values()) l.sort((x, y) => x - y);
  const between = (epoch, lo, hi) => (byEpoch.get(epoch) ?? []).filter((o) => o > lo && o < hi);
  const got = new Set();
  const epochsLeft = new Set();
  let pos = null;
  let lastSub = -1;
  let delivered = 0;
  let unacked = 0;
  const unackedSeqs = [];
  let resubscribes = 0;
  let toldLost = 0;
  for (const [i, e] of events.entries()) {
    if (e.kind === 'sub') {
      lastSub = i;
      if (pos === null) {
        pos = { epoch: e.epoch, offset: e.offset };
        continue;
      }
      resubscribes++;
      if (e.wasRecovering && e.recovered) continue;
      if (e.wasRecovering) toldLost++;
      if (e.epoch !== pos.epoch) epochsLeft.add(pos.epoch);
      pos = { epoch: e.epoch, offset: e.offset };
      continue;
    }
    if (got.has(e.seq)) {
      problems.push(`duplicate: seq ${e.seq} (offset ${e.offset})`);
      continue;
    }
    got.add(e.seq);
    delivered++;
    const a = acks.get(e.seq);
    if (!a) {
      // Published, though the API call failed (e.g. Redis died after applying it): not acknowledged.
      unacked++;
      unackedSeqs.push(e.seq);
      if (pos) pos.offset = e.offset;
      continue;
    }
    if (e.offset !== a.offset) problems.push(`seq ${e.seq}: delivered with offset ${e.offset}, API acknowledged ${a.offset}`);
    if (pos === null) {
      problems.push(`seq ${e.seq} (offset ${a.offset}) delivered before any subscribed event`);
    } else if (a.epoch === pos.epoch) {
      if (a.offset <= pos.offset) {
        const afterReply = events.slice(lastSub + 1, i).every((x) => x.kind === 'pub' && x.offset < a.offset);
        problems.push(afterReply && lastSub >= 0 && events[lastSub].offset >= a.offset
          ? `offset ${a.offset} delivered after a subscribe reply whose position ${events[lastSub].offset}@${events[lastSub].epoch} already covers it: ${context(i)}`
          : `out of order: offset ${a.offset} after ${pos.offset} (epoch ${a.epoch}): ${context(i)}`);
      } else if (a.offset !== pos.offset + 1) {
        const lost = between(a.epoch, pos.offset, a.offset);
        if (lost.length) problems.push(`silently lost: offsets ${ranges(lost)} of epoch ${a.epoch} (offset ${a.offset} came after ${pos.offset}): ${context(i)}`);
      }
    } else {
      if (epochsLeft.has(a.epoch)) problems.push(`offset ${a.offset} of an earlier epoch ${a.epoch} after epoch ${pos.epoch}`);
      const lostOld = between(pos.epoch, pos.offset, Infinity);
      const lostNew = between(a.epoch, 0, a.offset);
      if (lostOld.length || lostNew.length) {
        const toldLater = events.slice(i + 1).some((x) => x.kind === 'sub' && x.wasRecovering && !x.recovered);
        problems.push(`epoch changed ${pos.epoch} -> ${a.epoch} without a subscribed event: skipped `
          + `${ranges(lostOld) || 'nothing'} of ${pos.epoch} and ${ranges(lostNew) || 'nothing'} of ${a.epoch} `
          + `(${toldLater ? 'recovered:false came only later' : 'never told'}): ${context(i)}`);
      }
      epochsLeft.add(pos.epoch);
    }
    if (pos) pos = { epoch: a.epoch, offset: Math.max(a.offset, a.epoch === pos.epoch ? pos.offset : 0) };
  }
  if (pos) {
    const lost = between(pos.epoch, pos.offset, Infinity);
    if (lost.length) problems.push(`never delivered: offsets ${ranges(lost)} of epoch ${pos.epoch} (last ${pos.offset})`);
  }
  return { delivered, unacked, unackedSeqs, resubscribes, toldLost, problems };
}

for (const mode of ['standalone', 'cluster']) {
  describe(`cluster[${mode}]`, { timeout: 600000 }, () => {
    let redis;
    let gateways = [];
    let publisher;
    let token;
    const live = new Set();
    // Filled by the Redis restart test, checked by the one after it.
    let outageApi = null;
    let outageApiSummary = '';

    before(async () => {
      redis = mode === 'standalone' ? await RedisServer.start() : await RedisCluster.start(3);
      const secret = randomBytes(24).toString('hex');
      const apiKey = randomBytes(12).toString('hex');
      const env = {
        ...(mode === 'standalone'
          ? { HERALD_ENGINE__REDIS_URL: redis.url }
          : { HERALD_ENGINE__REDIS_CLUSTER: redis.urls }),
        HERALD_NAMESPACES__FEED__HISTORY_SIZE: '5000',
        HERALD_NAMESPACES__FEED__HISTORY_TTL: '5m',
        HERALD_SERVER__DRAIN_SPREAD: '200ms',
        HERALD_SERVER__DRAIN_TIMEOUT: '5s',
      };
      const start = (role, name) => Herald.start({
        secret, apiKey, env: { ...env, HERALD_SERVER__ROLE: role, HERALD_SERVER__NAME: name },
      });
      const nodes = await Promise.allSettled([
        start('gateway', 'gw-a'), start('gateway', 'gw-b'), start('gateway', 'gw-c'), start('publisher', 'pub'),
      ]);
      const failed = nodes.find((n) => n.status === 'rejected');
      if (failed) {
        await Promise.all(nodes.filter((n) => n.status === 'fulfilled').map((n) => n.value.kill()));
        throw failed.reason;
      }
      [gateways[0], gateways[1], gateways[2], publisher] = nodes.map((n) => n.value);
      gateways = gateways.slice(0, 3);
      token = (user) => gateways[0].token(user);
    });

    after(async () => {
      for (const c of live) c.disconnect();
      await Promise.all([...gateways, publisher].filter(Boolean).map((h) => h.stop()));
      await redis?.destroy();
    });

    /** Gateway logs, for failure messages. */
    const logs = () => gateways.map((g, i) => `--- gateway ${'abc'[i]} ---\n${g.log()}`).join('\n')
      + `\n--- publisher ---\n${publisher.log()}`;

    /** An SDK client of `user` on gateway `gw` (not connected yet), recorded into `rec`. */
    function sdk(gw, user, rec) {
      const c = new Centrifuge(gateways[gw].wsUrl, {
        websocket: rec ? tapped(rec) : WebSocket,
        token: token(user),
        minReconnectDelay: 100,
        maxReconnectDelay: 2000,
        timeout: 10000,
      });
      c.on('error', () => {});
      live.add(c);
      if (rec) {
        c.on('subscribed', (ctx) => rec.sub(ctx.channel, ctx));
        c.on('publication', (ctx) => rec.pub(ctx.channel, ctx));
        c.on('connecting', (ctx) => rec.transitions.push(`connecting ${ctx.code} ${ctx.reason}`));
        c.on('disconnected', (ctx) => rec.transitions.push(`disconnected ${ctx.code} ${ctx.reason}`));
      }
      return c;
    }

    function subscribe(c, channel, rec, opts = {}) {
      const s = c.newSubscription(channel, { recoverable: true, minResubscribeDelay: 100, maxResubscribeDelay: 2000, ...opts });
      s.on('error', () => {});
      if (rec) {
        s.on('subscribed', (ctx) => rec.sub(channel, ctx));
        s.on('publication', (ctx) => rec.pub(channel, ctx));
        s.on('subscribing', (ctx) => rec.transitions.push(`${channel} subscribing ${ctx.code} ${ctx.reason}`));
      }
      return s;
    }

    function close(...cs) {
      for (const c of cs) {
        c.disconnect();
        live.delete(c);
      }
    }

    /**
     * `perGateway` SDK clients on every gateway, each subscribed to `feeds` (recoverable) and
     * to its personal channel; resolves once every subscription is subscribed.
     */
    async function fleet(perGateway, feeds) {
      const members = [];
      for (let gw = 0; gw < gateways.length; gw++) {
        for (let k = 0; k < perGateway; k++) {
          const user = uid(`${'abc'[gw]}${k}-`);
          const rec = new Recorder(`client ${user} on gateway ${'abc'[gw]}`);
          const c = sdk(gw, user, rec);
          const personal = `user:${user}`;
          const channels = [personal, ...feeds];
          for (const f of feeds) subscribe(c, f, rec).subscribe();
          c.connect();
          members.push({ c, rec, user, personal, channels });
        }
      }
      await Promise.all(members.map((m) => m.rec.when(
        () => m.channels.every((ch) => m.rec.events(ch).some((e) => e.kind === 'sub')),
        30000, () => `subscribed to ${m.channels.filter((ch) => !m.rec.events(ch).length).join(',')}`)));
      return members;
    }

    /** Publishes one marker per channel and waits until every member got the markers of its channels. */
    async function markAndWait(ledger, members, channels, timeout) {
      const markers = new Map();
      for (const ch of channels) {
        const r = await ledger.publish(ch, { mark: true });
        assert.ok(r.ok, `marker publish to ${ch} failed: ${JSON.stringify(r.failure)}`);
        markers.set(ch, r.ack.seq);
      }
      await Promise.all(members.map((m) => m.rec.when(
        () => m.channels.every((ch) => m.rec.has(ch, markers.get(ch))),
        timeout,
        () => `markers of ${m.channels.filter((ch) => !m.rec.has(ch, markers.get(ch))).join(',')} `
          + `(state ${m.c.state}; transitions: ${m.rec.transitions.slice(-5).join('; ')})`,
      )));
    }

    test('every subscriber on every gateway gets every publication exactly once, in offset order', { timeout: 240000 }, async () => {
      const feeds = Array.from({ length: FEEDS }, (_, i) => `feed:${uid(`x${i}-`)}`);
      const members = await fleet(PER_GATEWAY, feeds);
      const users = members.map((m) => m.personal);
      // Two in three publications go to the topic channels (every client), one in three to a personal channel.
      const plan = Array.from({ length: TOTAL }, (_, i) => (i % 3 === 2 ? users[Math.floor(i / 3) % users.length] : feeds[i % FEEDS]));
      const ledger = new Ledger(publisher);
      const began = performance.now();
      try {
        await pool(plan, IN_FLIGHT, (ch) => ledger.publish(ch));
        const publishSecs = (performance.now() - began) / 1000;
        assert.equal(ledger.failures.length, 0,
          `API failures: ${ledger.failures.length}, first: ${JSON.stringify(ledger.failures.slice(0, 3))}`);
        await markAndWait(ledger, members, [...feeds, ...users], 90000);
        const totalSecs = (performance.now() - began) / 1000;

        const latencies = [];
        const problems = [];
        for (const m of members) {
          for (const ch of m.channels) {
            const acks = ledger.of(ch);
            const events = m.rec.events(ch);
            const r = audit(events, acks);
            for (const p of r.problems) problems.push(`${m.rec.name} ${ch}: ${p}`);
            if (r.resubscribes) problems.push(`${m.rec.name} ${ch}: ${r.resubscribes} resubscribes (${m.rec.transitions.join('; ')})`);
            if (r.delivered !== acks.size) problems.push(`${m.rec.name} ${ch}: delivered ${r.delivered} of ${acks.size} acknowledged`);
            // Offsets strictly consecutive from the first one seen.
            const offsets = events.filter((e) => e.kind === 'pub').map((e) => e.offset);
            for (let i = 1; i < offsets.length; i++) {
              if (offsets[i] !== offsets[i - 1] + 1) {
                problems.push(`${m.rec.name} ${ch}: offset ${offsets[i]} after ${offsets[i - 1]}`);
                break;
              }
            }
            for (const e of events) {
              const a = e.kind === 'pub' && !e.mark ? acks.get(e.seq) : null;
              if (a) latencies.push(e.at - a.sentAt);
            }
          }
        }
        assert.deepEqual(problems.slice(0, 20), [], `${problems.length} problems`);
        latencies.sort((a, b) => a - b);
        // Without the end markers (one publication per channel).
        const line = `cluster[${mode}]: publications=${ledger.acked.size - feeds.length - users.length} deliveries=${latencies.length} `
          + `clients=${members.length} gateways=${gateways.length} p50=${ms(pct(latencies, 50))}ms `
          + `p99=${ms(pct(latencies, 99))}ms max=${ms(latencies[latencies.length - 1])}ms `
          + `publish=${publishSecs.toFixed(1)}s total=${totalSecs.toFixed(1)}s`;
        console.log(line);
      } finally {
        close(...members.map((m) => m.c));
      }
    });

    test('recovery on another gateway: client-side subscription with since, personal channel through connect.subs', { timeout: 120000 }, async () => {
      const user = uid('mover');
      const personal = `user:${user}`;
      const feed = `feed:${uid('rec')}`;
      const opened = [];
      try {
        // On gateway A: subscribed to the feed and (server-side) to the personal channel.
        const a = sdk(0, user);
        opened.push(a);
        const personalSub = waitEvent(a, 'subscribed', { filter: (x) => x.channel === personal, timeout: 15000 });
        const s = subscribe(a, feed);
        const subbed = waitEvent(s, 'subscribed', { timeout: 15000 });
        const seenFeed = collect(s, 'publication');
        const seenPersonal = collect(a, 'publication', (p) => p.channel === personal);
        s.subscribe();
        a.connect();
        const first = await subbed;
        assert.equal(first.recoverable, true, 'feed subscription is recoverable');
        const pctx = await personalSub;
        assert.equal(pctx.recoverable, true, 'personal channel is recoverable');

        const before = [];
        for (let n = 0; n < 5; n++) before.push(await publisher.publish(feed, { n }));
        const beforePersonal = [];
        for (let n = 0; n < 3; n++) beforePersonal.push(await publisher.publish(personal, { n }));
        await seenFeed.until(5, 15000);
        await seenPersonal.until(3, 15000);
        const feedPos = { offset: seenFeed[4].offset, epoch: before[4].epoch };
        const personalPos = { offset: seenPersonal[2].offset, epoch: beforePersonal[2].epoch };
        assert.equal(feedPos.offset, before[4].offset);
        assert.equal(first.streamPosition?.epoch, before[0].epoch, 'subscribe reply epoch is the stream epoch');

        const gone = waitEvent(a, 'disconnected');
        a.disconnect();
        await gone;

        const missed = [];
        for (let n = 5; n < 15; n++) missed.push(await publisher.publish(feed, { n }));
        const missedPersonal = [];
        for (let n = 3; n < 10; n++) missedPersonal.push(await publisher.publish(personal, { n }));

        // Gateway B, a new SDK instance, the subscription given the position through `since`.
        const b = sdk(1, user);
        opened.push(b);
        const s2 = subscribe(b, feed, null, { since: feedPos });
        const recovered = collect(s2, 'publication');
        const resub = waitEvent(s2, 'subscribed', { timeout: 15000 });
        s2.subscribe();
        b.connect();
        const ctx = await resub;
        assert.equal(ctx.wasRecovering, true, 'was recovering');
        assert.equal(ctx.recovered, true, `recovered on gateway B (ctx ${JSON.stringify(ctx)})`);
        await recovered.until(10, 15000);
        const live1 = await publisher.publish(feed, { n: 15 });
        await recovered.until(11, 15000);
        assert.deepEqual(recovered.map((p) => p.data.n), [...Array(11).keys()].map((k) => k + 5), 'exactly the missed ones, then the live one');
        assert.deepEqual(recovered.map((p) => p.offset), [...missed, live1].map((r) => r.offset));

        // Gateway C, raw protocol: the personal channel recovered through connect.subs.
        const raw = await RawClient.open(gateways[2].wsUrl);
        try {
          const reply = await raw.connect(token(user), {
            subs: { [personal]: { recover: true, offset: personalPos.offset, epoch: personalPos.epoch } },
          }, 15000);
          const sub = reply.subs?.[personal];
          assert.ok(sub, `connect reply has subs[${personal}]: ${JSON.stringify(reply)}`);
          assert.equal(sub.was_recovering, true, JSON.stringify(sub));
          assert.equal(sub.recovered, true, JSON.stringify(sub));
          assert.equal(sub.epoch, personalPos.epoch);
          assert.deepEqual((sub.publications ?? []).map((p) => p.offset), missedPersonal.map((r) => r.offset), 'exactly the missed offsets');
          assert.deepEqual((sub.publications ?? []).map((p) => p.data.n), [3, 4, 5, 6, 7, 8, 9]);
          const livePush = raw.next((m) => m.push?.channel === personal && m.push.pub?.data?.n === 10, 15000, 'live personal publication');
          const live2 = await publisher.publish(personal, { n: 10 });
          assert.equal((await livePush).push.pub.offset, live2.offset);
        } finally {
          raw.close();
        }

        // A position from an epoch that never existed is not recovered.
        const stale = await RawClient.open(gateways[2].wsUrl);
        try {
          const reply = await stale.connect(token(user), { subs: { [personal]: { recover: true, offset: 1, epoch: 'not-an-epoch' } } }, 15000);
          const sub = reply.subs?.[personal];
          assert.equal(sub?.was_recovering, true, JSON.stringify(sub));
          assert.notEqual(sub?.recovered, true, `an unknown epoch must not be recovered: ${JSON.stringify(sub)}`);
          assert.equal(sub?.epoch, personalPos.epoch, 'the reply carries the current epoch');
        } finally {
          stale.close();
        }
      } finally {
        close(...opened);
      }
    });

    test('server API control reaches other nodes: disconnect, subscribe, info', { timeout: 120000 }, async () => {
      const opened = [];
      const connectOn = async (gw, user) => {
        const c = sdk(gw, user);
        opened.push(c);
        const ok = waitEvent(c, 'connected', { timeout: 15000 });
        c.connect();
        await ok;
        return c;
      };
      try {
        // disconnect: the user's connections on gateways C and A close with 3503; others stay.
        const victim = uid('victim');
        const onC = await connectOn(2, victim);
        const onA = await connectOn(0, victim);
        const bystander = await connectOn(1, uid('bystander'));
        const closedC = waitEvent(onC, 'disconnected', { timeout: 15000 });
        const closedA = waitEvent(onA, 'disconnected', { timeout: 15000 });
        const res = await publisher.api('disconnect', { user: victim });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.ok(res.body.result, JSON.stringify(res.body));
        assert.equal((await closedC).code, 3503, 'closed on gateway C with 3503');
        assert.equal((await closedA).code, 3503, 'closed on gateway A with 3503');
        assert.equal(bystander.state, 'connected', 'another user is not affected');

        // subscribe: a connection on gateway B gets the server-side subscription and its publications.
        const member = uid('member');
        const c = await connectOn(1, member);
        const channel = `feed:${uid('srv')}`;
        const subscribed = waitEvent(c, 'subscribed', { filter: (x) => x.channel === channel, timeout: 15000 });
        const sres = await publisher.api('subscribe', { user: member, channel });
        assert.equal(sres.status, 200, JSON.stringify(sres.body));
        assert.ok(sres.body.result, JSON.stringify(sres.body));
        await subscribed;
        const pub = waitEvent(c, 'publication', { filter: (x) => x.channel === channel, timeout: 15000 });
        const ack = await publisher.publish(channel, { hello: member });
        const got = await pub;
        assert.deepEqual(got.data, { hello: member });
        assert.equal(got.offset, ack.offset);

        // info: four nodes with their client counts (1 on A, 2 on B, 3 on C).
        close(...opened.splice(0));
        for (const [gw, n] of [[0, 1], [1, 2], [2, 3]]) {
          for (let k = 0; k < n; k++) await connectOn(gw, uid(`info${gw}-`));
        }
        const want = { 'gw-a': 1, 'gw-b': 2, 'gw-c': 3, pub: 0 };
        let last;
        await until(async () => {
          const r = await publisher.api('info', {});
          last = r.body;
          const nodes = r.body?.result?.nodes;
          if (!Array.isArray(nodes) || nodes.length !== 4) return false;
          const got = Object.fromEntries(nodes.map((n) => [n.name, n.num_clients ?? 0]));
          return Object.entries(want).every(([name, count]) => got[name] === count);
        }, 20000, () => `info lists ${JSON.stringify(want)}; last: ${JSON.stringify(last)}`, 250);
        for (const n of last.result.nodes) {
          assert.equal(typeof n.uid, 'string');
          assert.ok(n.uid.length > 0, 'uid is set');
        }
        assert.equal(new Set(last.result.nodes.map((n) => n.uid)).size, 4, 'distinct node uids');
      } finally {
        close(...opened);
      }
    });

    test(`Redis ${mode === 'standalone' ? 'restarted' : 'master restarted'} mid-stream: nothing acknowledged is lost silently`, { timeout: 240000 }, async () => {
      const feeds = Array.from({ length: RESTART_FEEDS }, (_, i) => `feed:${uid(`r${i}-`)}`);
      const members = await fleet(RESTART_PER_GATEWAY, feeds);
      const channels = [...feeds, ...members.map((m) => m.personal)];
      const ledger = new Ledger(publisher);
      let stop = false;
      let k = 0;
      const kills = [];
      // Time a publish waited for its answer, not counting the time Redis was frozen on purpose.
      const freezes = [];
      const waited = (x) => {
        const answeredAt = (x.sentAt ?? x.at) + x.took;
        let from = x.sentAt ?? x.at;
        for (const f of freezes) if (from < f.to && answeredAt > f.from) from = Math.max(from, f.to);
        return answeredAt - from;
      };
      const worker = async () => {
        while (!stop) {
          // The client waits longer than HANG_MS so that a slow answer is seen (and reported) as it is.
          await ledger.publish(channels[k++ % channels.length], {}, { timeout: 3 * HANG_MS });
          // Pace the loop (an outage answers fast): about RESTART_WORKERS * 100 calls a second at
          // most; back to back in the first moments after a kill, while the engine finds out.
          const last = kills.at(-1);
          if (!(last && performance.now() < last.at + UNPACED_MS)) await pause(10);
        }
      };
      const readiness = { publisherDown: false };
      const servers = mode === 'standalone' ? [redis] : redis.nodes;
      // The Redis that dies serves the first topic channel (in Cluster: the master of its slot).
      const victim = mode === 'standalone' ? redis : await redis.nodeOf(feeds[0]);

      /**
       * Kills the victim (after `beforeKill`), keeps it down until every gateway is not ready
       * and OUTAGE_FAILURES publishes have failed, starts it again, and waits until every
       * gateway is ready and 100 more publications are acknowledged.
       */
      const outage = async (kind, beforeKill) => {
        const o = { kind, at: 0, notReadyAfter: NaN, readyAfter: NaN, failed: 0 };
        const failedBefore = ledger.failures.length;
        const { pending } = beforeKill ? await beforeKill() : { pending: null };
        o.at = performance.now();
        kills.push(o);
        await victim.stop();
        for (const n of servers) if (n !== victim) n.thaw();
        if (freezes.at(-1)?.to === Infinity) {
          freezes.at(-1).to = o.at;
          o.frozenMs = o.at - freezes.at(-1).from;
        }
        await until(async () => {
          const codes = await Promise.all(gateways.map((g) => g.readyz()));
          if ((await publisher.readyz()) === 503) readiness.publisherDown = true;
          return codes.every((c) => c === 503);
        }, 20000, `${kind}: every gateway /readyz 503 while Redis is down`, 50);
        o.notReadyAfter = performance.now() - o.at;
        await until(() => ledger.failures.length >= failedBefore + OUTAGE_FAILURES, 30000,
          () => `${kind}: ${OUTAGE_FAILURES} publishes fail while Redis is down (got ${ledger.failures.length - failedBefore})`);
        await pending;
        o.failed = ledger.failures.length - failedBefore;
        await victim.startAgain();
        if (mode === 'cluster') await redis.waitOk(30000);
        const back = performance.now();
        await until(async () => (await Promise.all(gateways.map((g) => g.readyz()))).every((c) => c === 200),
          30000, `${kind}: every gateway /readyz 200 after Redis is back`, 50);
        o.readyAfter = performance.now() - back;
        const ackedAtReturn = ledger.acked.size;
        await until(() => ledger.acked.size >= ackedAtReturn + 100, 30000,
          () => `${kind}: 100 acks after Redis is back (got ${ledger.acked.size - ackedAtReturn}; last failure ${JSON.stringify(ledger.failures.at(-1))})`);
      };

      const workers = Array.from({ length: RESTART_WORKERS }, worker);
      try {
        await until(() => ledger.acked.size >= 100, 30000, () => `100 acks before the outage (got ${ledger.acked.size}, failures ${JSON.stringify(ledger.failures.slice(-2))})`);
        // 1. Publications in flight when the connection drops: freeze Redis, publish a burst (big
        //    payloads), and kill Redis once those commands sit unread in its sockets.
        await outage('in-flight', async () => {
          freezes.push({ from: performance.now(), to: Infinity });
          for (const n of servers) n.freeze();
          // Enough that some of the burst (nothing else is that big) waits in the victim's sockets.
          const unread = () => victim.unreadBytes();
          const unreadBefore = await unread();
          let seen = 0;
          const pad = 'p'.repeat(BURST_PAD);
          const burst = Promise.all(channels.map((ch) => ledger.publish(ch, { pad }, { timeout: 3 * HANG_MS })));
          await until(async () => (seen = await unread()) >= unreadBefore + 2 * BURST_PAD, 20000,
            () => `the burst reaches the frozen Redis (${seen - unreadBefore} bytes unread)`, 10);
          // Wrapped: an async function returning a promise would wait for it.
          return { pending: burst };
        });
        // 2. A plain crash while publications stream.
        await outage('crash');
        stop = true;
        await Promise.all(workers);

        // API errors during the outage: HTTP 503 with error code 100; no answer slower than HANG_MS.
        const sinceKill = (at) => {
          const o = [...kills].reverse().find((x) => x.at <= at + 1000) ?? kills[0];
          return `${Math.round(at - o.at)} ms from the ${o.kind} kill`;
        };
        const wrong = ledger.failures.filter((f) => f.error || f.status !== 503 || f.body?.error?.code !== 100);
        const answers = [...ledger.failures, ...ledger.acked.values()];
        const hangs = answers.filter((x) => waited(x) > HANG_MS);
        const slowest = Math.max(0, ...answers.map(waited));

        await markAndWait(ledger, members, channels, 90000);
        const problems = [];
        let delivered = 0;
        let toldLost = 0;
        let resubscribes = 0;
        let unacked = 0;
        const unackedSeqs = new Set();
        for (const m of members) {
          for (const ch of m.channels) {
            const r = audit(m.rec.events(ch), ledger.of(ch));
            delivered += r.delivered;
            toldLost += r.toldLost;
            resubscribes += r.resubscribes;
            unacked += r.unacked;
            for (const seq of r.unackedSeqs) unackedSeqs.add(seq);
            for (const p of r.problems) {
              problems.push(`${m.rec.name} ${ch}: ${p} [${m.rec.transitions.slice(-4).join('; ')}]`);
              if (process.env.HERALD_TEST_FRAMES) {
                const file = path.join(os.tmpdir(), `herald-frames-${m.user}.log`);
                writeFileSync(file, `${m.rec.framesBetween(0, Infinity).join('\n')}\n`);
                console.error(`frames of ${m.rec.name}: ${file}`);
              }
            }
          }
        }
        const transitions = new Map();
        for (const m of members) for (const tr of m.rec.transitions) transitions.set(tr, (transitions.get(tr) ?? 0) + 1);
        const line = `cluster[${mode}] redis restart: acked=${ledger.acked.size} failed=${ledger.failures.length} `
          + `(not 503/100: ${wrong.length}, slower than ${HANG_MS}ms: ${hangs.length}, slowest ${ms(slowest)}ms) delivered=${delivered} `
          + `unacked_delivered=${unacked} resubscribes=${resubscribes} recovered_false=${toldLost} `
          + kills.map((o) => `${o.kind}: ${o.frozenMs ? `frozen=${ms(o.frozenMs)}ms ` : ''}not_ready_after=${ms(o.notReadyAfter)}ms ready_after_restart=${ms(o.readyAfter)}ms failed=${o.failed}`).join(', ')
          + ` publisher_readyz_503=${readiness.publisherDown} transitions=${JSON.stringify(Object.fromEntries(transitions))}`;
        console.log(line);
        if (unackedSeqs.size) {
          // Not a failure (a failed call may have been applied), but worth knowing: a caller retrying it duplicates it.
          const why = ledger.failures.filter((f) => unackedSeqs.has(f.seq))
            .map((f) => `seq ${f.seq} ${f.channel}: HTTP ${f.status} ${JSON.stringify(f.body?.error ?? f.error)} after ${Math.round(f.took)} ms, sent ${sinceKill(f.at)}`);
          const note = `cluster[${mode}] delivered though the API answered an error: ${why.join('; ')}`;
          console.log(note);
        }
        if (process.env.HERALD_TEST_FRAMES && problems.length) {
          const file = path.join(os.tmpdir(), `herald-ledger-${mode}.log`);
          const rows = [...kills.map((o) => `${o.at.toFixed(1)} KILL ${o.kind}`),
            ...[...ledger.acked.values()].map((a) => `${a.sentAt.toFixed(1)} ack seq=${a.seq} ${a.channel} ${a.offset}@${a.epoch} took=${a.took.toFixed(1)}`)];
          writeFileSync(file, `${rows.sort((x, y) => parseFloat(x) - parseFloat(y)).join('\n')}\n`);
          console.error(`ledger: ${file}`);
        }
        // The API's answers during the outages are checked by the next test.
        outageApi = [
          ...wrong.slice(0, 5).map((f) => `publish not answered HTTP 503/code 100: ${JSON.stringify({ status: f.status, body: f.body, error: f.error, took: Math.round(f.took) })}`),
          ...hangs.slice(0, 5).map((h) => `publish answered after ${Math.round(waited(h))} ms (> ${HANG_MS}), `
            + `sent ${sinceKill(h.sentAt ?? h.at)}: ${h.offset !== undefined ? `acknowledged offset ${h.offset}` : JSON.stringify({ status: h.status, body: h.body, error: h.error })}`),
        ];
        outageApiSummary = `${ledger.failures.length} failed publishes, ${wrong.length} not HTTP 503/code 100, ${hangs.length} answered after more than ${HANG_MS} ms`;
        const failures = [
          ...problems.slice(0, 15),
          ...members.filter((m) => m.c.state !== 'connected').map((m) => `${m.rec.name} is ${m.c.state}`),
        ];
        assert.deepEqual(failures, [], `${problems.length} delivery problems`);
      } catch (e) {
        for (const n of servers) n.thaw();
        stop = true;
        await Promise.all(workers);
        // A timeout rather than a failed check: the nodes' last log lines say where it stood.
        if (!(e instanceof assert.AssertionError)) e.message += `\n${logs()}`;
        throw e;
      } finally {
        close(...members.map((m) => m.c));
      }
    });

    test(`publishes while Redis is down answer HTTP 503 with code 100 within ${HANG_MS / 1000} s`, (t) => {
      if (outageApi === null) {
        t.skip('the Redis restart test did not get that far');
        return;
      }
      t.diagnostic(outageApiSummary);
      assert.deepEqual(outageApi, [], outageApiSummary);
    });
  });
}
