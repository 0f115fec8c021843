// Test kit for the JavaScript suites: starts a real `herald` process on free ports, mints
// HS256 tokens with node's crypto, calls the server API, and offers small event helpers
// (every wait has a timeout; nothing sleeps to synchronise).

import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

/** Repository root (tests/js/lib -> ../../..). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Path of the herald binary: `HERALD_BIN`, relative paths taken from the repository root. */
export function heraldBin() {
  return path.resolve(repoRoot, process.env.HERALD_BIN || 'target/debug/herald');
}

/** A free TCP port on 127.0.0.1, found by binding port 0. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** Signs `claims` as an HS256 JWT (or with `alg`/`signature` overridden, to forge bad ones). */
export function signJwt(claims, secret, { alg = 'HS256', signature } = {}) {
  const head = b64url(JSON.stringify({ alg, typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const input = `${head}.${body}`;
  if (alg === 'none') return `${input}.`;
  const sig = signature ?? createHmac('sha256', secret).update(input).digest('base64url');
  return `${input}.${sig}`;
}

const now = () => Math.floor(Date.now() / 1000);

/** Resolves after `ms`, or rejects with `message` if `promise` is still pending by then. */
export function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${message}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The first `event` on `emitter` (an EventEmitter-like) whose argument passes `filter`. */
export function waitEvent(emitter, event, { filter = () => true, timeout = 5000 } = {}) {
  let handler;
  const p = new Promise((resolve) => {
    handler = (ctx) => {
      if (filter(ctx)) resolve(ctx);
    };
    emitter.on(event, handler);
  });
  return withTimeout(p, timeout, `event '${event}'`).finally(() => emitter.removeListener(event, handler));
}

/** Collects `event` arguments into an array, from now on. */
export function collect(emitter, event, filter = () => true) {
  const items = [];
  const waiters = [];
  emitter.on(event, (ctx) => {
    if (!filter(ctx)) return;
    items.push(ctx);
    for (const w of [...waiters]) {
      if (items.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(items);
      }
    }
  });
  /** Resolves with the items once there are at least `n` of them. */
  items.until = (n, timeout = 5000) => {
    if (items.length >= n) return Promise.resolve(items);
    return withTimeout(new Promise((resolve) => waiters.push({ n, resolve })), timeout,
      `${n} '${event}' events (got ${items.length})`);
  };
  return items;
}

/**
 * A running herald process. Use `Herald.start(opts)`; call `stop()` when done.
 * opts.env: extra environment; opts.dev: do not set the HMAC secret (dev mode);
 * opts.ports: `{ client, internal }` to reuse the ports of an earlier process;
 * opts.secret / opts.apiKey: share them between the nodes of one cluster (random by default).
 */
export class Herald {
  static async start({ env = {}, dev = false, ports, secret: givenSecret, apiKey: givenKey } = {}) {
    const bin = heraldBin();
    if (!existsSync(bin)) throw new Error(`herald binary not found at ${bin} (build it or set HERALD_BIN)`);
    const clientPort = ports?.client ?? await freePort();
    const internalPort = ports?.internal ?? await freePort();
    const secret = givenSecret ?? randomBytes(24).toString('hex');
    const apiKey = givenKey ?? randomBytes(12).toString('hex');
    const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HERALD_')));
    const fullEnv = {
      ...baseEnv,
      ...(dev ? {} : { HERALD_AUTH__HMAC_SECRET: secret }),
      HERALD_API__KEY: apiKey,
      HERALD_SERVER__CLIENT_ADDR: `127.0.0.1:${clientPort}`,
      HERALD_SERVER__INTERNAL_ADDR: `127.0.0.1:${internalPort}`,
      ...env,
    };
    const proc = spawn(bin, [], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const h = new Herald(proc, { clientPort, internalPort, secret: dev ? null : secret, apiKey, name: fullEnv.HERALD_SERVER__NAME });
    await h.#waitReady();
    return h;
  }

  #log = [];
  #exited;

  constructor(proc, { clientPort, internalPort, secret, apiKey, name }) {
    this.proc = proc;
    this.name = name;
    this.clientPort = clientPort;
    this.internalPort = internalPort;
    this.secret = secret;
    this.apiKey = apiKey;
    this.clientUrl = `http://127.0.0.1:${clientPort}`;
    this.wsUrl = `ws://127.0.0.1:${clientPort}/connection/websocket`;
    this.internalUrl = `http://127.0.0.1:${internalPort}`;
    const keep = (chunk) => {
      this.#log.push(chunk.toString());
      if (this.#log.length > 400) this.#log.splice(0, 100);
      if (process.env.HERALD_TEST_LOG) {
        process.stderr.write(this.name ? chunk.toString().replace(/^(?=.)/gm, `[${this.name}] `) : chunk);
      }
    };
    proc.stdout.on('data', keep);
    proc.stderr.on('data', keep);
    this.#exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** The last lines the process wrote (for failure messages). */
  log() {
    return this.#log.join('').split('\n').slice(-40).join('\n');
  }

  async #waitReady(timeout = 20000) {
    const deadline = Date.now() + timeout;
    let exited = null;
    this.#exited.then((e) => { exited = e; });
    let last = 'no answer';
    while (Date.now() < deadline) {
      if (exited) throw new Error(`herald exited (${JSON.stringify(exited)}) before ready:\n${this.log()}`);
      try {
        const res = await fetch(`${this.internalUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
        last = `HTTP ${res.status}`;
      } catch (e) {
        last = e.cause?.code || e.message;
      }
      // Readiness has no push signal: poll it, bounded by the deadline.
      await new Promise((r) => setTimeout(r, 50));
    }
    this.proc.kill('SIGKILL');
    throw new Error(`herald not ready after ${timeout} ms (${last}):\n${this.log()}`);
  }

  /** Kills the process at once (SIGKILL), as a crash would, and waits for it to exit. */
  async kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.#exited;
  }

  /** Stops the process (SIGTERM, then SIGKILL after 5 s). */
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(timer);
  }

  /** The HTTP status of `/readyz` (0 when there is no answer within `timeout` ms). */
  async readyz(timeout = 2000) {
    try {
      const res = await fetch(`${this.internalUrl}/readyz`, { signal: AbortSignal.timeout(timeout) });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** A connection JWT for `user` (claims `sub`, `exp`, optional `info`, `channels`). */
  token(user, { ttl = 3600, exp, info, channels, secret } = {}) {
    const claims = { sub: user, exp: exp ?? now() + ttl };
    if (info !== undefined) claims.info = info;
    if (channels !== undefined) claims.channels = channels;
    return signJwt(claims, secret ?? this.secret);
  }

  /** A subscription JWT for `user` in `channel`. */
  subToken(user, channel, { ttl = 3600, secret } = {}) {
    return signJwt({ sub: user, channel, exp: now() + ttl }, secret ?? this.secret);
  }

  /**
   * POSTs `/api/<method>` on the internal port; returns `{ status, body }`.
   * opts.timeout: abort (reject with a TimeoutError) when the answer takes longer, in ms.
   */
  async api(method, payload, { headers = { 'X-API-Key': this.apiKey }, timeout } = {}) {
    const res = await fetch(`${this.internalUrl}/api/${method}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify(payload),
      ...(timeout ? { signal: AbortSignal.timeout(timeout) } : {}),
    });
    const text = await res.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = text; }
    return { status: res.status, body };
  }

  /** Publishes through the server API and returns its `result`, failing on any error. */
  async publish(channel, data) {
    const { status, body } = await this.api('publish', { channel, data });
    if (status !== 200 || !body || body.error || !body.result) {
      throw new Error(`publish to ${channel} failed: HTTP ${status} ${JSON.stringify(body)}`);
    }
    return body.result;
  }
}

/**
 * A raw WebSocket protocol client: splits frames on `\n`, keeps every message it got,
 * matches replies to commands by id, and records the close code.
 */
export class RawClient {
  static open(url, { origin, headers, maxPayload } = {}) {
    const ws = new WebSocket(url, { origin, headers, maxPayload });
    const c = new RawClient(ws);
    return withTimeout(new Promise((resolve, reject) => {
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (_req, res) => {
        const err = new Error(`unexpected response ${res.statusCode}`);
        err.statusCode = res.statusCode;
        res.resume();
        reject(err);
      });
      ws.once('error', reject);
    }), 5000, `open ${url}`);
  }

  constructor(ws) {
    this.ws = ws;
    this.nextId = 1;
    this.messages = [];
    this.frames = [];
    this.#listeners = new Set();
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on('error', () => {});
    ws.on('message', (data) => {
      const text = data.toString();
      this.frames.push(text);
      for (const line of text.trim().split('\n')) {
        if (line === '') continue;
        const msg = JSON.parse(line);
        this.messages.push(msg);
        for (const l of [...this.#listeners]) l(msg);
      }
    });
  }

  #listeners;

  /** Sends raw text as one frame. */
  sendRaw(text) {
    this.ws.send(text);
  }

  /** Sends commands (objects) in one frame, assigning ids where `id` is not set. */
  send(...cmds) {
    for (const c of cmds) if (c.id === undefined) c.id = this.nextId++;
    this.ws.send(cmds.map((c) => JSON.stringify(c)).join('\n'));
    return cmds.map((c) => c.id);
  }

  /** The first message (already received from index `from` on, or future) that passes `filter`. */
  next(filter, timeout = 5000, what = 'message', from = 0) {
    const found = this.messages.slice(from).find(filter);
    if (found) return Promise.resolve(found);
    let l;
    const p = new Promise((resolve) => {
      l = (msg) => { if (filter(msg)) resolve(msg); };
      this.#listeners.add(l);
    });
    return withTimeout(p, timeout, what).finally(() => this.#listeners.delete(l));
  }

  /** Sends one command and resolves with its reply. */
  async call(cmd, timeout = 5000) {
    const [id] = this.send(cmd);
    return this.next((m) => m.id === id, timeout, `reply to ${JSON.stringify(cmd).slice(0, 80)}`);
  }

  /** Sends `connect` with `token` and resolves with the reply, failing on an error reply. */
  async connect(token, extra = {}, timeout = 5000) {
    const reply = await this.call({ connect: token === undefined ? { ...extra } : { token, ...extra } }, timeout);
    if (reply.error) throw new Error(`connect failed: ${JSON.stringify(reply.error)}`);
    return reply.connect;
  }

  /** The close code and reason, within `timeout`. */
  waitClose(timeout = 5000) {
    return withTimeout(this.closed, timeout, 'connection close');
  }

  close() {
    this.ws.close();
  }
}

/** A short unique id for users and channels. */
export function uid(prefix = 'u') {
  return `${prefix}${randomBytes(4).toString('hex')}`;
}
