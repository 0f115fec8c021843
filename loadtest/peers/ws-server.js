// Plain `ws` peer for herald-loadtest. Clients connect to ws://HOST:PORT/?user=<id> (joined to
// channel `user:<id>`), send {"subscribe":"<channel>"} (answered {"subscribed":"<channel>"}) and
// receive {"channel","data"} frames. Publications go through Redis pub/sub: the HTTP endpoint
// PUBLISHes, every worker SUBSCRIBEs to the channels its clients use and fans out locally.
import http from 'node:http';
import { WebSocketServer } from 'ws';
import Redis from 'ioredis';
import { config, httpHandler, runWorkers } from './common.js';

const PING_INTERVAL_MS = 25_000;

runWorkers('ws-peer', async () => {
  const pub = new Redis(config.redisUrl);
  const sub = new Redis(config.redisUrl);
  const local = new Map(); // channel -> Set<WebSocket>
  const redisSubs = new Map(); // channel -> Promise of the SUBSCRIBE acknowledgement

  sub.on('messageBuffer', (channel, message) => {
    const sockets = local.get(channel.toString());
    if (!sockets) return;
    // One Buffer for every socket, sent as a text frame.
    for (const ws of sockets) ws.send(message, { binary: false });
  });

  function join(ws, channel) {
    let sockets = local.get(channel);
    if (!sockets) {
      sockets = new Set();
      local.set(channel, sockets);
    }
    sockets.add(ws);
    ws.channels.add(channel);
    let acked = redisSubs.get(channel);
    if (!acked) {
      acked = sub.subscribe(channel);
      redisSubs.set(channel, acked);
    }
    return acked;
  }

  function leaveAll(ws) {
    for (const channel of ws.channels) {
      const sockets = local.get(channel);
      if (!sockets) continue;
      sockets.delete(ws);
      if (sockets.size === 0) {
        local.delete(channel);
        redisSubs.delete(channel);
        sub.unsubscribe(channel).catch(() => {});
      }
    }
    ws.channels.clear();
  }

  const server = http.createServer(
    httpHandler(
      async (channel, data) => {
        await pub.publish(channel, JSON.stringify({ channel, data }));
      },
      () => pub.status === 'ready' && sub.status === 'ready',
    ),
  );
  const wss = new WebSocketServer({ server, perMessageDeflate: false });

  wss.on('connection', (ws, req) => {
    ws.channels = new Set();
    ws.isAlive = true;
    ws.on('pong', () => {
      ws.isAlive = true;
    });
    ws.on('close', () => leaveAll(ws));
    ws.on('error', () => {});
    ws.on('message', (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw);
      } catch {
        ws.close(1003, 'bad json');
        return;
      }
      if (typeof msg?.subscribe === 'string' && msg.subscribe !== '') {
        join(ws, msg.subscribe).then(
          () => ws.send(JSON.stringify({ subscribed: msg.subscribe })),
          () => ws.send(JSON.stringify({ error: 'subscribe failed' })),
        );
      }
    });
    const user = new URL(req.url, 'http://peer').searchParams.get('user');
    const ready = user ? join(ws, `user:${user}`) : Promise.resolve();
    ready.then(
      () => ws.send(JSON.stringify({ connected: user ?? '' })),
      (err) => {
        console.error(`ws-peer: subscribe user:${user} failed: ${err?.message ?? err}`);
        ws.close(1011, 'subscribe failed');
      },
    );
  });

  setInterval(() => {
    for (const ws of wss.clients) {
      if (!ws.isAlive) {
        ws.terminate();
        continue;
      }
      ws.isAlive = false;
      ws.ping();
    }
  }, PING_INTERVAL_MS).unref();

  await new Promise((resolve) => server.listen({ port: config.port, host: config.host, backlog: 4096 }, resolve));
});
