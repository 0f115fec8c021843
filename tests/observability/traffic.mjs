// Client traffic for the live observability test, with the official centrifuge SDK (from
// tests/js/node_modules): subscriptions on both gateways, an SSE stream, publications, a client
// command error and a server API error, a server API disconnect with reconnect advice followed by
// a recovery, and a slow client cut off with 3008. Prints one JSON line per step on stdout, then
// `ready` and keeps one SDK client per gateway and the SSE stream open until stdin closes.
// Input: env OBS_CONFIG = {"gateways": [ws urls], "sse": url, "api": url, "apiKey", "secret",
// "metrics": gateway-a metrics url, "queueSize": the gateways' client.queue_size}.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { signJwt, withTimeout, waitEvent } from '../js/lib/herald.mjs';

const require = createRequire(new URL('../js/package.json', import.meta.url));
const { Centrifuge } = require('centrifuge');
const WebSocket = require('ws');

const cfg = JSON.parse(process.env.OBS_CONFIG);
const now = () => Math.floor(Date.now() / 1000);
const token = (user) => signJwt({ sub: user, exp: now() + 3600 }, cfg.secret);
const step = (name, detail = {}) => console.log(JSON.stringify({ step: name, ...detail }));

async function api(method, payload) {
  const res = await fetch(`${cfg.api}/api/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': cfg.apiKey },
    body: JSON.stringify(payload),
  });
  return { status: res.status, body: await res.json() };
}

async function publish(channel, data) {
  const r = await api('publish', { channel, data });
  if (r.status !== 200 || r.body.error) throw new Error(`publish ${channel}: ${JSON.stringify(r)}`);
  return r.body.result;
}

/** An SDK client connected to `url` as `user` and subscribed (recoverable) to `channel`. */
async function sdkClient(url, user, channel) {
  const c = new Centrifuge(url, { websocket: WebSocket, token: token(user), minReconnectDelay: 300, maxReconnectDelay: 1000 });
  c.on('error', () => {});
  const sub = c.newSubscription(channel, { recoverable: true, positioned: true });
  sub.on('error', () => {});
  const subscribed = waitEvent(sub, 'subscribed', { timeout: 10000 });
  sub.subscribe();
  c.connect();
  await subscribed;
  return { c, sub };
}

async function main() {
  const channel = 'feed:obs';
  const [a, b] = await Promise.all([sdkClient(cfg.gateways[0], 'obs-a', channel), sdkClient(cfg.gateways[1], 'obs-b', channel)]);
  const sse = new AbortController();
  const sseRes = await fetch(`${cfg.sse}?token=${token('obs-sse')}&channels=${channel}`, { signal: sse.signal });
  if (sseRes.status !== 200) throw new Error(`SSE: HTTP ${sseRes.status}`);
  const sseReader = sseRes.body.getReader();
  let sseText = '';
  const sseRead = (async () => {
    for (;;) {
      const { value, done } = await sseReader.read();
      if (done) return;
      sseText += Buffer.from(value).toString();
    }
  })().catch(() => {});
  step('subscribed', { gateways: 2, sse: true });

  const got = Promise.all([a.sub, b.sub].map((s) => waitEvent(s, 'publication', { filter: (ctx) => ctx.data?.n === 1, timeout: 10000 })));
  await publish(channel, { n: 1 });
  await got;
  await withTimeout((async () => { while (!sseText.includes('"n":1')) await new Promise((r) => setTimeout(r, 20)); })(), 10000, 'SSE publication');
  step('delivered', { websocket: 2, sse: 1 });

  // Errors: a client command (subscribe to an unknown namespace) and a server API call.
  const bad = b.c.newSubscription('nope:x');
  bad.on('error', () => {});
  // Whichever the SDK reports first; the other wait is left pending, not failed.
  const pending = (p) => p.catch(() => new Promise(() => {}));
  const refused = withTimeout(Promise.race([
    pending(waitEvent(bad, 'error', { timeout: 10000 }).then((ctx) => ctx.error?.code)),
    pending(waitEvent(bad, 'unsubscribed', { timeout: 10000 }).then((ctx) => ctx.code)),
  ]), 10000, 'subscribe refused');
  bad.subscribe();
  const clientErr = await refused;
  const apiErr = await api('publish', { channel: 'nope:x', data: {} });
  if (!apiErr.body.error) throw new Error(`publish to an unknown namespace succeeded: ${JSON.stringify(apiErr)}`);
  step('errors', { client: clientErr, api: apiErr.body.error.code });

  // Disconnect with reconnect advice through the server API, publish while the client is away,
  // then the SDK reconnects and recovers what it missed.
  const r = await sdkClient(cfg.gateways[0], 'obs-recover', channel);
  const away = waitEvent(r.c, 'connecting', { timeout: 10000 });
  const back = waitEvent(r.sub, 'subscribed', { filter: (ctx) => ctx.wasRecovering, timeout: 15000 });
  const missed = waitEvent(r.sub, 'publication', { filter: (ctx) => ctx.data?.n === 2, timeout: 15000 });
  await api('disconnect', { user: 'obs-recover', disconnect: { code: 3011 } });
  const gone = await away;
  await publish(channel, { n: 2 });
  const resumed = await back;
  await missed;
  if (!resumed.recovered) throw new Error('not recovered after the reconnect');
  step('recovered', { code: gone.code, recovered: resumed.recovered });
  r.c.disconnect();

  // A slow client: stops reading its socket while large publications keep coming.
  const slow = await slowClient(cfg.gateways[0], token('obs-slow'), 'feed:slow');
  step('slow', slow);

  console.log('ready');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('end', resolve));
  a.c.disconnect();
  b.c.disconnect();
  sse.abort();
  await sseRead;
}

/** Bytes the kernel may buffer for one loopback connection (send plus receive buffer maxima). */
function socketBuffers() {
  const max = (f) => Number(readFileSync(f, 'utf8').trim().split(/\s+/)[2]);
  return max('/proc/sys/net/ipv4/tcp_rmem') + max('/proc/sys/net/ipv4/tcp_wmem');
}

/** Connects a raw WebSocket, subscribes, pauses reading and publishes large publications until the
 * gateway cuts it off: it stops once gateway-a counts a cut-off, or once it has published twice what
 * the socket buffers and the queue can hold. Then it reads on and returns the close code. */
async function slowClient(url, tok, channel) {
  const ws = new WebSocket(url);
  const messages = [];
  ws.on('message', (m) => messages.push(m.toString()));
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  await waitEvent(ws, 'open', { timeout: 5000 });
  ws.send(JSON.stringify({ id: 1, connect: { token: tok } }) + '\n' + JSON.stringify({ id: 2, subscribe: { channel } }));
  await withTimeout((async () => { while (!messages.some((m) => m.includes('"id":2'))) await new Promise((r) => setTimeout(r, 20)); })(), 5000, 'slow client subscribed');
  ws._socket.pause();
  const blob = 'x'.repeat(16 * 1024);
  const limit = 2 * (Math.ceil(socketBuffers() / blob.length) + cfg.queueSize);
  const cut = /^(herald_slow_client_cutoffs_total\{[^}]*\}|herald_disconnects_total\{[^}]*code="3008"[^}]*\}) [1-9]/m;
  let published = 0;
  while (published < limit) {
    await publish(channel, { n: published, blob });
    published += 1;
    if (published % 20 === 0 && cut.test(await (await fetch(cfg.metrics)).text())) break;
  }
  ws._socket.resume();
  const code = await withTimeout(closed, 45000, 'slow client close');
  if (code !== 3008) throw new Error(`slow client closed with ${code}, not 3008`);
  return { code, published, limit };
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
