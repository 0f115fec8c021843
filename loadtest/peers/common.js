// Shared by the peer servers of herald-loadtest: configuration from the environment, the
// optional node:cluster workers, and the HTTP publish endpoint, which has the same shape as
// Herald's server API (POST /api/publish {"channel","data"} with X-API-Key -> {"result":{}}).
import cluster from 'node:cluster';

export const config = {
  host: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT ?? 3000),
  redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  apiKey: process.env.API_KEY ?? '',
  workers: Math.max(1, Number(process.env.WORKERS ?? 1)),
};

const MAX_BODY = 1 << 20;

/**
 * Runs `start` once per worker. With WORKERS > 1 the primary forks that many workers that
 * share the listening port (node:cluster round robin) and only supervises them.
 */
export function runWorkers(name, start) {
  if (config.workers > 1 && cluster.isPrimary) {
    for (let i = 0; i < config.workers; i += 1) cluster.fork();
    let stopping = false;
    cluster.on('exit', (worker, code, signal) => {
      if (stopping) return;
      console.error(`${name}: worker ${worker.process.pid} exited (${signal ?? code})`);
      process.exit(1);
    });
    const stop = () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    console.log(`${name}: primary ${process.pid}, ${config.workers} workers on ${config.host}:${config.port}`);
    return;
  }
  start().then(
    () => console.log(`${name}: ${process.pid} listening on ${config.host}:${config.port}`),
    (err) => {
      console.error(`${name}: ${err?.stack ?? err}`);
      process.exit(1);
    },
  );
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * HTTP handler: `POST /api/publish` calls `publish(channel, data)` (a promise); `GET /readyz`
 * answers 200 once `isReady()` is true.
 */
export function httpHandler(publish, isReady) {
  return (req, res) => {
    if (req.method === 'GET' && req.url === '/readyz') {
      reply(res, isReady() ? 200 : 503, {});
      return;
    }
    if (req.method !== 'POST' || req.url !== '/api/publish') {
      reply(res, 404, { error: { code: 104, message: 'method not found' } });
      return;
    }
    if (config.apiKey && req.headers['x-api-key'] !== config.apiKey) {
      reply(res, 401, { error: { code: 101, message: 'unauthorized' } });
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        reply(res, 400, { error: { code: 107, message: 'bad request' } });
        return;
      }
      if (typeof body?.channel !== 'string' || body.channel === '' || body.data === undefined) {
        reply(res, 400, { error: { code: 107, message: 'bad request' } });
        return;
      }
      publish(body.channel, body.data).then(
        () => reply(res, 200, { result: {} }),
        () => reply(res, 200, { error: { code: 100, message: 'internal server error' } }),
      );
    });
  };
}
