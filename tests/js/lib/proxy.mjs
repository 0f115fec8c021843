// A round-robin TCP balancer for the multi-node suites, on 127.0.0.1 only: each new client
// connection goes to the next backend in the rotation; a backend that refuses is skipped and the
// next one tried, as a load balancer does. Backends join and leave the rotation at run time
// (as Kubernetes adds a ready pod to a Service's endpoints and removes a terminating one);
// connections already established stay where they are until either side closes them.

import net from 'node:net';

export class Proxy {
  /** Starts listening on a free port of 127.0.0.1 with the given backend ports. */
  static async start(backends = []) {
    const p = new Proxy(backends);
    await new Promise((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(0, '127.0.0.1', () => resolve());
    });
    p.port = p.server.address().port;
    return p;
  }

  constructor(backends) {
    this.backends = [...backends];
    this.next = 0;
    this.port = 0;
    /** Connections handed to each backend port so far. */
    this.routed = new Map();
    /** Connections open to each backend port now. */
    this.active = new Map();
    /** Client connections that found no backend accepting. */
    this.refused = 0;
    this.sockets = new Set();
    this.server = net.createServer({ noDelay: true }, (client) => this.#accept(client));
  }

  /** ws:// URL of Herald's WebSocket endpoint through the balancer. */
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/connection/websocket`;
  }

  /** Puts backend `port` into the rotation. */
  add(port) {
    if (!this.backends.includes(port)) this.backends.push(port);
  }

  /** Takes backend `port` out of the rotation; its open connections are left alone. */
  remove(port) {
    this.backends = this.backends.filter((p) => p !== port);
  }

  #track(sock) {
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
  }

  #accept(client) {
    this.#track(client);
    client.pause();
    client.on('error', () => {});
    const candidates = this.backends.length;
    const start = this.next;
    this.next = (this.next + 1) % Math.max(1, candidates);
    const order = Array.from({ length: candidates }, (_, i) => this.backends[(start + i) % candidates]);
    const attempt = (i) => {
      if (client.destroyed) return;
      if (i >= order.length) {
        this.refused++;
        client.destroy();
        return;
      }
      const port = order[i];
      const upstream = net.connect({ host: '127.0.0.1', port, noDelay: true });
      this.#track(upstream);
      const refused = () => attempt(i + 1);
      upstream.once('error', refused);
      upstream.once('connect', () => {
        upstream.removeListener('error', refused);
        this.routed.set(port, (this.routed.get(port) ?? 0) + 1);
        this.active.set(port, (this.active.get(port) ?? 0) + 1);
        upstream.once('close', () => this.active.set(port, this.active.get(port) - 1));
        // A close is passed on gracefully (what was written still arrives, a WebSocket close
        // frame included); an error resets the other side too.
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.once('close', () => upstream.end());
        upstream.once('close', () => client.end());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  }

  /** Stops listening and closes every connection. */
  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}
