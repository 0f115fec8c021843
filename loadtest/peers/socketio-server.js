// Socket.IO 4 peer for herald-loadtest, WebSocket transport only. Clients connect to
// ws://HOST:PORT/socket.io/?EIO=4&transport=websocket&user=<id> (joined to room `user:<id>`),
// emit `subscribe` with a channel name (acknowledged) and receive `publication` events
// {channel, data}. The HTTP endpoint publishes through Redis with @socket.io/redis-emitter; each
// server receives it through @socket.io/redis-adapter and broadcasts to the room locally.
import http from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { Emitter } from '@socket.io/redis-emitter';
import Redis from 'ioredis';
import { config, httpHandler, runWorkers } from './common.js';

runWorkers('socketio-peer', async () => {
  const pubClient = new Redis(config.redisUrl);
  const subClient = pubClient.duplicate();
  const emitterClient = new Redis(config.redisUrl);
  const emitter = new Emitter(emitterClient);

  const server = http.createServer(
    httpHandler(
      async (channel, data) => {
        emitter.to(channel).emit('publication', { channel, data });
      },
      () => [pubClient, subClient, emitterClient].every((c) => c.status === 'ready'),
    ),
  );
  const io = new Server(server, {
    transports: ['websocket'],
    serveClient: false,
    perMessageDeflate: false,
    adapter: createAdapter(pubClient, subClient),
  });

  io.on('connection', (socket) => {
    const { user } = socket.handshake.query;
    if (typeof user === 'string' && user !== '') socket.join(`user:${user}`);
    socket.on('subscribe', (channel, ack) => {
      if (typeof channel === 'string' && channel !== '') socket.join(channel);
      if (typeof ack === 'function') ack({ ok: true });
    });
  });

  await new Promise((resolve) => server.listen({ port: config.port, host: config.host, backlog: 4096 }, resolve));
});
