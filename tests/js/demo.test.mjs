// The demo page in a real headless Chromium (playwright-core driving /usr/bin/chromium, or
// CHROMIUM_PATH): herald runs in dev mode (no HMAC secret, so it serves /dev/token and
// /dev/api/publish and publishes a random HRLD price every second). The page must connect,
// show a publication sent through the server API to `user:alice`, show the ticker, publish
// through its own form, raise no page errors, and reconnect by itself after a server restart.
// A screenshot goes to artifacts/demo.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Herald, withTimeout } from './lib/herald.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const screenshot = path.join(here, 'artifacts', 'demo.png');

// Short server pings, so that the page's pong handling is exercised within the test.
const env = { HERALD_CLIENT__PING_INTERVAL: '1s', HERALD_CLIENT__PONG_TIMEOUT: '500ms' };
let herald;
let browser;

before(async () => {
  herald = await Herald.start({ dev: true, env });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  await herald?.stop();
});

const text = (page, sel) => page.locator(sel).innerText();

test('demo page: connects, shows personal publications and the ticker, publishes', { timeout: 60000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  const sockets = [];
  let pings = 0;
  let pongs = 0;
  let pongWaiter = null;
  page.on('websocket', (ws) => {
    sockets.push(ws);
    ws.on('framereceived', (f) => { if (String(f.payload).trim() === '{}') pings += 1; });
    ws.on('framesent', (f) => {
      if (String(f.payload).trim() === '{}') pongs += 1;
      if (pongs >= 3 && pongWaiter) pongWaiter();
    });
  });

  const res = await page.goto(`${herald.clientUrl}/?user=alice`);
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'] || '', /text\/html/);

  await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'connected',
    null, { timeout: 10000 });
  assert.equal((await text(page, '#user')).trim(), 'alice');
  assert.equal(await page.inputValue('#publish-channel'), 'user:alice');

  const api = await herald.api('publish', { channel: 'user:alice', data: { text: 'hello from the api' } });
  assert.equal(api.status, 200, JSON.stringify(api.body));
  assert.ok(api.body.result, JSON.stringify(api.body));
  await page.waitForFunction(() => document.querySelector('#personal')?.textContent.includes('hello from the api'),
    null, { timeout: 5000 });
  const items = await page.locator('#personal li').allInnerTexts();
  assert.ok(items.some((t) => t.includes('{"text":"hello from the api"}')), `items: ${JSON.stringify(items)}`);

  await page.waitForFunction(() => /\d+\.\d{2}/.test(document.querySelector('#ticker')?.textContent || ''),
    null, { timeout: 10000 });
  const price = Number((await text(page, '#ticker')).match(/\d+\.\d+/)[0]);
  assert.ok(price > 0, `price ${price}`);

  await page.fill('#publish-channel', 'nope:1');
  await page.click('#publish-submit');
  await page.waitForFunction(() => /error/.test(document.querySelector('#publish-result')?.textContent || ''),
    null, { timeout: 5000 });
  assert.match(await text(page, '#publish-result'), /102/);

  await page.fill('#publish-channel', 'user:alice');
  await page.fill('#publish-data', '{"text":"sent from the form"}');
  await page.click('#publish-submit');
  await page.waitForFunction(() => /offset/.test(document.querySelector('#publish-result')?.textContent || ''),
    null, { timeout: 5000 });
  assert.match(await text(page, '#publish-result'), /offset \d+/);
  await page.waitForFunction(() => document.querySelector('#personal')?.textContent.includes('sent from the form'),
    null, { timeout: 5000 });

  // Server pings every second: the page answers them and keeps its one connection.
  if (pongs < 3) {
    await withTimeout(new Promise((resolve) => { pongWaiter = resolve; }), 10000, `3 pongs (pings ${pings}, pongs ${pongs})`);
  }
  assert.ok(pings >= pongs && pongs >= 3, `pings ${pings}, pongs ${pongs}`);
  assert.equal(sockets.length, 1, 'one WebSocket for the whole test');
  assert.equal((await text(page, '#status')).trim(), 'connected');

  mkdirSync(path.dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  assert.ok(statSync(screenshot).size > 10000, 'screenshot is not trivial');
  assert.deepEqual(pageErrors, [], 'no page errors');
  await page.close();
});

test('demo page: a guest without ?user= gets a generated id', { timeout: 30000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${herald.clientUrl}/`);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'connected',
    null, { timeout: 10000 });
  const user = (await text(page, '#user')).trim();
  assert.match(user, /^guest-\d{4}$/);
  assert.equal(await page.inputValue('#publish-channel'), `user:${user}`);
  await page.close();
});

test('demo page: reconnects by itself after the server comes back', { timeout: 60000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`${herald.clientUrl}/?user=bob`);
  const status = (want) => page.waitForFunction((w) => document.querySelector('#status')?.textContent.trim() === w,
    want, { timeout: 15000 });
  await status('connected');
  const ports = { client: herald.clientPort, internal: herald.internalPort };
  await herald.kill();
  await status('connecting');
  // Dev mode makes a new secret on every start: the page must fetch a fresh token to get back.
  herald = await Herald.start({ dev: true, env, ports });
  await status('connected');
  await herald.publish('user:bob', { text: 'after the restart' });
  await page.waitForFunction(() => document.querySelector('#personal')?.textContent.includes('after the restart'),
    null, { timeout: 5000 });
  await page.close();
});

test('demo page: outside dev mode it connects with ?token= from its own origin', { timeout: 30000 }, async () => {
  // A secret is configured and no origin allow-list: the page served by the gateway itself is
  // same-origin, so its WebSocket is accepted; the token comes from the URL (`herald gentoken`).
  const prod = await Herald.start();
  try {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${prod.clientUrl}/?token=${prod.token('carol')}`);
    await page.waitForFunction(() => document.querySelector('#status')?.textContent.trim() === 'connected',
      null, { timeout: 10000 });
    assert.equal((await text(page, '#user')).trim(), 'carol');
    const api = await prod.api('publish', { channel: 'user:carol', data: { text: 'token from the url' } });
    assert.equal(api.status, 200, JSON.stringify(api.body));
    await page.waitForFunction(() => document.querySelector('#personal')?.textContent.includes('token from the url'),
      null, { timeout: 5000 });
    assert.deepEqual(pageErrors, [], 'no page errors');
    await page.close();
  } finally {
    await prod.stop();
  }
});
