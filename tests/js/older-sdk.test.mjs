// centrifuge-js up to 5.7.4 dispatches the pushes of one WebSocket message asynchronously, and
// the pushes of the next message can overtake them: adjacent publications arrived swapped a few
// times per thousand while the wire order was right (fixed in 5.8.0). Herald sends every push in
// a WebSocket message of its own. This drives that SDK version through bursts of publications
// on one channel (many queued per write, one burst at a time) and checks it sees every one
// once, in order.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Centrifuge } from 'centrifuge-5.7.4';
import WebSocket from 'ws';
import { Herald, uid, waitEvent, withTimeout } from './lib/herald.mjs';

const BURSTS = 50;
const PER_BURST = 100;

test('centrifuge-js 5.7.4 receives bursts of publications once each, in order', async () => {
  const herald = await Herald.start();
  const client = new Centrifuge(herald.wsUrl, { websocket: WebSocket, token: herald.token(uid()) });
  client.on('error', () => {});
  try {
    const channel = uid('burst');
    const sub = client.newSubscription(channel);
    const total = BURSTS * PER_BURST;
    const got = [];
    let arrived = () => {};
    sub.on('publication', (ctx) => {
      got.push(ctx.data.n);
      arrived();
    });
    /** Resolves once `count` publications arrived. */
    const received = (count) => withTimeout(
      new Promise((resolve) => {
        arrived = () => got.length >= count && resolve();
        arrived();
      }),
      10000,
      `${got.length} of ${count} publications arrived`,
    );
    const subscribed = waitEvent(sub, 'subscribed');
    sub.subscribe();
    client.connect();
    await subscribed;
    for (let b = 0; b < BURSTS; b++) {
      const commands = Array.from({ length: PER_BURST }, (_, i) => ({
        publish: { channel, data: { n: b * PER_BURST + i } },
      }));
      // A sequential batch publishes in command order.
      const { status, body } = await herald.api('batch', { commands });
      assert.equal(status, 200);
      assert.equal(body.replies.filter((r) => r.publish).length, PER_BURST, JSON.stringify(body));
      // One burst at a time: the queue stays far below `client.queue_size`.
      await received((b + 1) * PER_BURST);
    }
    const swapped = got.filter((n, i) => i > 0 && n < got[i - 1]).length;
    assert.equal(swapped, 0, `${swapped} publications arrived before one published earlier`);
    assert.deepEqual(got, Array.from({ length: total }, (_, i) => i));
  } finally {
    client.disconnect();
    await herald.stop();
  }
});
