// Real `redis-server` processes for the multi-node suites: a standalone server and a Cluster of
// masters, each on a free port in 20000-22700 (the cluster bus listens on port + 10000) with a
// temporary directory and no persistence. Readiness is polled with a deadline (`PING` answers
// PONG; `cluster_state:ok` on every node). Servers are killed on `stop()`; a standalone server
// can be started again on the same port (its data is gone: nothing is persisted).

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

const REDIS_SERVER = process.env.REDIS_SERVER_BIN || 'redis-server';
const REDIS_CLI = process.env.REDIS_CLI_BIN || 'redis-cli';
const READY_TIMEOUT = 20000;

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether `port` can be bound on 127.0.0.1 right now. */
function isFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// Ports are taken from [20000, 22700): with the cluster bus at port + 10000 both stay below the
// kernel's ephemeral range (32768 and up), so an outgoing connection (a herald reconnecting while
// a server is down) can neither take a server's port nor connect to itself on it.
const PORT_MIN = 20000;
const PORT_SPAN = 2700;

/** A random free port in [20000, 22700); with `bus`, port + 10000 must be free too. */
export async function freeRedisPort({ bus = false } = {}) {
  for (let i = 0; i < 200; i++) {
    const port = PORT_MIN + Math.floor(Math.random() * PORT_SPAN);
    if (!(await isFree(port))) continue;
    if (bus && !(await isFree(port + 10000))) continue;
    return port;
  }
  throw new Error(`no free port in ${PORT_MIN}-${PORT_MIN + PORT_SPAN}`);
}

/**
 * Sends one command over RESP and resolves with the reply as text (simple string, bulk string,
 * or the error line prefixed with `-`); rejects on a connection error or after `timeout`.
 */
export function redisCommand(port, args, { timeout = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const done = (err, value) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(value);
    };
    const timer = setTimeout(() => done(new Error(`redis ${port}: no reply to ${args[0]} in ${timeout} ms`)), timeout);
    sock.once('error', (e) => done(e));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const text = buf.toString('latin1');
      const eol = text.indexOf('\r\n');
      if (eol < 0) return;
      const kind = text[0];
      const head = text.slice(1, eol);
      if (kind === '+' || kind === ':') return done(null, head);
      if (kind === '-') return done(null, `-${head}`);
      if (kind === '$') {
        const len = Number(head);
        if (len < 0) return done(null, null);
        if (buf.length < eol + 2 + len + 2) return;
        return done(null, buf.subarray(eol + 2, eol + 2 + len).toString('utf8'));
      }
      return done(new Error(`redis ${port}: unexpected reply ${JSON.stringify(text.slice(0, 40))}`));
    });
    const body = args.map((a) => {
      const s = String(a);
      return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
    }).join('');
    sock.write(`*${args.length}\r\n${body}`);
  });
}

/** Polls `check` (async, truthy when done) until it passes or `timeout` passes. */
async function pollUntil(check, timeout, what) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    // No readiness signal exists for redis-server: poll, bounded by the deadline.
    await pause(50);
  }
  throw new Error(`timeout after ${timeout} ms: ${what}${last ? ` (${last.message})` : ''}`);
}

/** One `redis-server` process. */
export class RedisServer {
  /**
   * Starts a server on a free port; ready when it answers PING.
   * opts.cluster: cluster mode (`--cluster-enabled yes`, node timeout 2 s).
   */
  static async start({ cluster = false } = {}) {
    let last;
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freeRedisPort({ bus: cluster });
      const server = new RedisServer(port, { cluster });
      try {
        await server.startAgain();
        return server;
      } catch (e) {
        // Another process may have taken the port in between: try another one.
        last = e;
        await server.stop();
        server.removeDir();
      }
    }
    throw last;
  }

  constructor(port, { cluster = false } = {}) {
    this.port = port;
    this.cluster = cluster;
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'herald-redis-'));
    this.proc = null;
    this.exited = null;
  }

  /** `redis://127.0.0.1:<port>`. */
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** `127.0.0.1:<port>`. */
  get addr() {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the process on this server's port (again); ready when it answers PING. */
  async startAgain() {
    await this.stop();
    const args = [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--logfile', path.join(this.dir, 'redis.log'), '--protected-mode', 'no',
    ];
    if (this.cluster) {
      args.push('--cluster-enabled', 'yes', '--cluster-config-file', path.join(this.dir, 'nodes.conf'),
        '--cluster-node-timeout', '2000');
    }
    const proc = spawn(REDIS_SERVER, args, { stdio: 'ignore' });
    this.proc = proc;
    let exit = null;
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => { exit = { code, signal }; resolve(exit); });
      proc.once('error', (e) => { exit = { error: e.message }; resolve(exit); });
    });
    await pollUntil(async () => {
      if (exit) throw new Error(`redis-server exited ${JSON.stringify(exit)}: ${this.logTail()}`);
      return (await redisCommand(this.port, ['PING'], { timeout: 1000 })) === 'PONG';
    }, READY_TIMEOUT, `redis-server on ${this.port} answers PING`).catch((e) => {
      if (exit) throw new Error(`redis-server on ${this.port} exited ${JSON.stringify(exit)}: ${this.logTail()}`);
      throw e;
    });
  }

  /** Kills the process (SIGKILL, as a crash would) and waits until it has exited. */
  async stop() {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await this.exited;
  }

  /** Suspends the process (SIGSTOP): connections stay open, commands get no answer. */
  freeze() {
    this.proc?.kill('SIGSTOP');
  }

  /** Resumes a suspended process (SIGCONT). */
  thaw() {
    this.proc?.kill('SIGCONT');
  }

  /**
   * Bytes received on the server's connections and not read yet (`ss`, filtered in the kernel):
   * while the server is frozen, the commands clients have sent it.
   */
  async unreadBytes() {
    const { stdout } = await execFileP('ss', ['-tnH', 'state', 'established', `( sport = :${this.port} )`]);
    let total = 0;
    for (const line of stdout.split('\n')) {
      const recvQ = Number(line.trim().split(/\s+/)[0]);
      if (Number.isFinite(recvQ)) total += recvQ;
    }
    return total;
  }

  /** Kills the server and starts it again on the same port (empty: nothing was persisted). */
  async restart() {
    await this.stop();
    await this.startAgain();
  }

  /** Sends one command; see `redisCommand`. */
  cmd(...args) {
    return redisCommand(this.port, args);
  }

  /** The last lines of the server's log. */
  logTail(n = 5) {
    try {
      return readFileSync(path.join(this.dir, 'redis.log'), 'utf8').trim().split('\n').slice(-n).join(' | ');
    } catch {
      return '(no log)';
    }
  }

  /** Removes the temporary directory (after `stop()`). */
  removeDir() {
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops the server and removes its directory. */
  async destroy() {
    await this.stop();
    this.removeDir();
  }
}

/** A Redis Cluster of masters without replicas, slots split evenly by `redis-cli --cluster create`. */
export class RedisCluster {
  /** Starts `masters` nodes and joins them; ready when every node says `cluster_state:ok`. */
  static async start(masters = 3) {
    const nodes = [];
    try {
      for (let i = 0; i < masters; i++) nodes.push(await RedisServer.start({ cluster: true }));
      const cluster = new RedisCluster(nodes);
      await cluster.#create();
      await cluster.waitOk();
      return cluster;
    } catch (e) {
      for (const n of nodes) await n.destroy();
      throw e;
    }
  }

  constructor(nodes) {
    this.nodes = nodes;
  }

  /** Seed URLs, comma-separated, as `HERALD_ENGINE__REDIS_CLUSTER` takes them. */
  get urls() {
    return this.nodes.map((n) => n.url).join(',');
  }

  #create() {
    const args = ['--cluster', 'create', ...this.nodes.map((n) => n.addr), '--cluster-replicas', '0', '--cluster-yes'];
    return new Promise((resolve, reject) => {
      const proc = spawn(REDIS_CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout.on('data', (c) => { out += c; });
      proc.stderr.on('data', (c) => { out += c; });
      const timer = setTimeout(() => proc.kill('SIGKILL'), READY_TIMEOUT);
      proc.once('error', (e) => { clearTimeout(timer); reject(e); });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`redis-cli --cluster create exited ${code}: ${out.slice(-800)}`));
      });
    });
  }

  /** Resolves once every node reports `cluster_state:ok`, all slots assigned and every node known. */
  waitOk(timeout = READY_TIMEOUT) {
    return pollUntil(async () => {
      for (const n of this.nodes) {
        const info = await n.cmd('CLUSTER', 'INFO');
        if (typeof info !== 'string' || !info.includes('cluster_state:ok')) return false;
        if (!info.includes('cluster_slots_ok:16384')) return false;
        if (!info.includes(`cluster_known_nodes:${this.nodes.length}`)) return false;
      }
      return true;
    }, timeout, 'cluster_state:ok on every node');
  }

  /** The node serving the slot of `key` (a `{tag}` inside the key counts, as Redis hashes it). */
  async nodeOf(key) {
    const slot = Number(await this.nodes[0].cmd('CLUSTER', 'KEYSLOT', key));
    for (const n of this.nodes) {
      const me = String(await n.cmd('CLUSTER', 'NODES')).split('\n').find((l) => l.includes('myself'));
      for (const range of me?.split(' ').slice(8) ?? []) {
        const [lo, hi = lo] = range.split('-').map(Number);
        if (slot >= lo && slot <= hi) return n;
      }
    }
    throw new Error(`no node serves slot ${slot} of ${key}`);
  }

  /** Kills node `i` and starts it again on its port; it rejoins from its nodes.conf, without data. */
  async restartNode(i) {
    await this.nodes[i].restart();
  }

  /** Stops every node and removes their directories. */
  async destroy() {
    for (const n of this.nodes) await n.destroy();
  }
}
