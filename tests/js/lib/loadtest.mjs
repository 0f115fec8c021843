// The `herald-loadtest` binary as a child process of the Node suites: started with
// `--wait-for-go`, it connects its clients and says `ready` on stdout; `go()` starts its measured
// phase; `finished()` waits for it to end by itself and reads its JSON summary. The binary is
// `HERALD_LOADTEST_BIN` (relative paths from the repository root), by default the debug build.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, withTimeout } from './herald.mjs';

/** Path of the load generator binary. */
export function loadtestBin() {
  return path.resolve(repoRoot, process.env.HERALD_LOADTEST_BIN || 'target/debug/herald-loadtest');
}

export class LoadTest {
  /**
   * Starts the load generator with `args` (`--wait-for-go` and `--no-plots` are added) writing
   * its summary to `out`; `env` is added to the environment (the API key and HMAC secret go
   * there rather than on the command line).
   */
  static start(args, { out, env = {} }) {
    const bin = loadtestBin();
    if (!existsSync(bin)) {
      throw new Error(`herald-loadtest not found at ${bin} (cargo build --workspace --all-targets, or set HERALD_LOADTEST_BIN)`);
    }
    const proc = spawn(bin, [...args, '--wait-for-go', '--no-plots', '--out', out], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    return new LoadTest(proc, out);
  }

  #stderr = [];
  #stdout = '';
  #readyWaiters = [];

  constructor(proc, out) {
    this.proc = proc;
    this.out = out;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.stderr.on('data', (chunk) => {
      this.#stderr.push(chunk.toString());
      if (this.#stderr.length > 200) this.#stderr.splice(0, 50);
      if (process.env.HERALD_TEST_LOG) process.stderr.write(chunk.toString().replace(/^(?=.)/gm, '[loadtest] '));
    });
    proc.stdout.on('data', (chunk) => {
      this.#stdout += chunk.toString();
      if (this.#stdout.split('\n').includes('ready')) for (const w of this.#readyWaiters.splice(0)) w();
    });
  }

  /** The last lines the load generator wrote on stderr. */
  log() {
    return this.#stderr.join('').split('\n').slice(-30).join('\n');
  }

  /** Resolves once every client is connected (`ready`); rejects if the process exits first. */
  ready(timeout) {
    const ready = new Promise((resolve) => this.#readyWaiters.push(resolve));
    const early = this.exited.then((e) => { throw new Error(`herald-loadtest exited before ready (${JSON.stringify(e)}):\n${this.log()}`); });
    return withTimeout(Promise.race([ready, early]), timeout, `herald-loadtest ready:\n${this.log()}`);
  }

  /** Starts the measured phase. */
  go() {
    this.proc.stdin.write('go\n');
  }

  /** Waits for the run to end by itself (exit code 0) and returns its summary. */
  async finished(timeout) {
    const e = await withTimeout(this.exited, timeout, `herald-loadtest to finish:\n${this.log()}`);
    if (e.code !== 0) throw new Error(`herald-loadtest failed (${JSON.stringify(e)}):\n${this.log()}`);
    return JSON.parse(readFileSync(this.out, 'utf8'));
  }

  /** Kills the process if it still runs. */
  async kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.exited;
  }
}
