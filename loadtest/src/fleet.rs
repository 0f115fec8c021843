//! The population of connected subscribers: opening N connections at a bounded rate and
//! concurrency, then one receive task per connection that answers pings and logs every
//! publication for loss, duplicate and latency accounting. Publishing lives in `publish`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Connection, Dialer, Event, Msg, Proto};
use crate::ledger::{Routing, SubscriberLog};
use crate::stats::{new_histogram, unix_micros, Live};

/// Connection errors quoted in the output.
const MAX_QUOTED_ERRORS: usize = 5;

/// What every connection task shares.
pub struct FleetCtx {
    /// Opens connections.
    pub dialer: Dialer,
    /// Counters and latency histograms.
    pub live: Arc<Live>,
    /// Which publications each subscriber expects.
    pub routing: Routing,
    /// Subscriber i connects as user `lt-<user_offset + i>`.
    pub user_offset: usize,
    /// Deadline of one connection handshake.
    pub connect_timeout: Duration,
    /// Stops the receive tasks.
    pub cancel: CancellationToken,
}

/// How a subscriber ended.
pub struct Outcome {
    /// Publications it received.
    pub log: SubscriberLog,
    /// Why it stopped before the end of the run, if it did.
    pub ended_early: Option<String>,
}

/// Connected population after the connect phase.
pub struct Fleet {
    /// One task per connection attempt, in user order; `None` if the attempt failed.
    pub tasks: Vec<JoinHandle<Option<Outcome>>>,
    /// Successful connections.
    pub connected: usize,
    /// Failed attempts.
    pub failed: usize,
    /// Wall time from the first attempt to the last completed one.
    pub wall: Duration,
    /// Handshake latency in microseconds.
    pub connect_latency: Histogram<u64>,
    /// First few failure messages.
    pub errors: Vec<String>,
}

impl Fleet {
    /// Connection handshakes completed per second during the connect phase.
    pub fn connects_per_sec(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 {
            self.connected as f64 / s
        } else {
            0.0
        }
    }

    /// Stops the receive tasks and collects their logs (`None` for failed attempts).
    pub async fn finish(
        self,
        cancel: &CancellationToken,
    ) -> (Vec<Option<SubscriberLog>>, Vec<String>) {
        cancel.cancel();
        let mut logs = Vec::with_capacity(self.tasks.len());
        let mut ended = Vec::new();
        for t in self.tasks {
            match t.await.ok().flatten() {
                Some(o) => {
                    if let Some(reason) = o.ended_early {
                        ended.push(reason);
                    }
                    logs.push(Some(o.log));
                }
                None => logs.push(None),
            }
        }
        (logs, ended)
    }
}

/// Opens `n` connections (user `lt-<user_offset + i>` for the i-th), at most `rate` per second (0: no bound)
/// and `concurrency` handshakes at once, and waits until every attempt has finished.
pub async fn connect_all(ctx: Arc<FleetCtx>, n: usize, rate: f64, concurrency: usize) -> Fleet {
    let (tx, mut rx) = mpsc::channel::<Result<Duration, String>>(1024);
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let start = Instant::now();
    let spawner = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut ticker =
                (rate > 0.0).then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                tasks.push(tokio::spawn(connection(ctx.clone(), i, permit, tx.clone())));
            }
            tasks
        })
    };
    let mut fleet = Fleet {
        tasks: Vec::new(),
        connected: 0,
        failed: 0,
        wall: Duration::ZERO,
        connect_latency: new_histogram(),
        errors: Vec::new(),
    };
    for _ in 0..n {
        match rx.recv().await {
            Some(Ok(d)) => {
                fleet.connected += 1;
                fleet
                    .connect_latency
                    .saturating_record(d.as_micros() as u64);
            }
            Some(Err(e)) => {
                fleet.failed += 1;
                if fleet.errors.len() < MAX_QUOTED_ERRORS {
                    fleet.errors.push(e);
                }
            }
            None => break,
        }
    }
    fleet.wall = start.elapsed();
    fleet.tasks = spawner.await.unwrap_or_default();
    fleet
}

async fn connection(
    ctx: Arc<FleetCtx>,
    i: usize,
    permit: OwnedSemaphorePermit,
    events: mpsc::Sender<Result<Duration, String>>,
) -> Option<Outcome> {
    let t0 = Instant::now();
    let opened =
        tokio::time::timeout(ctx.connect_timeout, ctx.dialer.open(ctx.user_offset + i)).await;
    drop(permit);
    let conn = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            Live::incr(&ctx.live.connect_errors);
            let _ = events.send(Err(format!("{e:#}"))).await;
            return None;
        }
        Err(_) => {
            Live::incr(&ctx.live.connect_errors);
            let _ = events.send(Err("handshake timed out".to_owned())).await;
            return None;
        }
    };
    Live::incr(&ctx.live.connected);
    Live::incr(&ctx.live.connects);
    let _ = events.send(Ok(t0.elapsed())).await;
    drop(events);
    Some(receive(&ctx, i as u64, conn).await)
}

/// Receives until cancelled or until the server ends the connection.
async fn receive(ctx: &FleetCtx, sub: u64, mut s: Connection) -> Outcome {
    let live = &*ctx.live;
    let mut log = SubscriberLog::default();
    let mut events = Vec::new();
    let mut replies = Vec::new();
    // One registration with the token for the whole loop: re-creating `cancelled()` per read
    // costs a lock on the token's waiter list each time.
    let cancelled = ctx.cancel.cancelled();
    tokio::pin!(cancelled);
    let ended_early = loop {
        // Everything already buffered first: one read often holds several frames.
        let mut closed = None;
        let mut frames = 0;
        loop {
            match s.io.next_message() {
                Ok(Some(Msg::Text(t))) => {
                    frames += 1;
                    client::decode(s.proto, s.replayed.as_ref(), t, &mut events);
                }
                Ok(Some(Msg::Close(code, reason))) => {
                    closed = Some(format!("closed by server: code {code} {reason:?}"));
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    closed = Some(format!("protocol error: {e:#}"));
                    break;
                }
            }
        }
        if !events.is_empty() {
            let now = unix_micros();
            // Shared counters are bumped once per read, not per message: they are hot cache lines.
            let mut counts = [0, 0, 0, frames, 1];
            for ev in events.drain(..) {
                match ev {
                    Event::Pub(p) => {
                        let first = ctx.routing.index_for(sub, p.seq).map(|i| log.record(i));
                        match first {
                            Some(Some(true)) => {
                                counts[0] += 1;
                                live.record_latency(sub as usize, p.ts, now);
                            }
                            Some(Some(false)) => counts[1] += 1,
                            _ => counts[2] += 1,
                        }
                    }
                    Event::Reply(r) if s.proto != Proto::Herald || s.pong => replies.push(r),
                    Event::Reply(_) => {}
                    Event::Closed(reason) => closed = Some(reason),
                }
            }
            let counters = [
                &live.delivered,
                &live.duplicates,
                &live.misrouted,
                &live.frames,
                &live.reads,
            ];
            for (counter, n) in counters.into_iter().zip(counts) {
                if n > 0 {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        for r in replies.drain(..) {
            if let Err(e) = s.send(r).await {
                closed = Some(format!("pong failed: {e}"));
            }
        }
        if let Err(e) = s.io.flush().await {
            closed = Some(format!("pong failed: {e}"));
        }
        if closed.is_some() {
            break closed;
        }
        tokio::select! {
            _ = &mut cancelled => break None,
            r = s.io.fill() => match r {
                Ok(0) => break Some("connection closed by server".to_owned()),
                Ok(_) => {}
                Err(e) => break Some(format!("read error: {e}")),
            },
        }
    };
    live.connected.fetch_sub(1, Ordering::Relaxed);
    if ended_early.is_some() {
        Live::incr(&live.disconnects);
    } else if s.proto != Proto::Raw {
        // Raw floor sockets are simply dropped: the floor process closes them only at exit.
        s.close().await;
    }
    Outcome { log, ended_early }
}
