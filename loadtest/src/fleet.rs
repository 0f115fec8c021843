//! The population of connected subscribers: opening N connections at a bounded rate and
//! concurrency, then one receive task per subscriber that answers pings and logs every
//! publication for loss, duplicate and latency accounting; with `--reconnect` it also opens a
//! new connection when the server closes one (`fleet::resume`). Publishing lives in `publish`.

mod resume;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Connection, Dialer, Event, Msg, Payload, Proto};
use crate::ledger::{Routing, SubscriberLog};
use crate::reconnect::{self, Backoff, Tally};
use crate::stats::{new_histogram, unix_micros, Live};

use self::resume::Resume;

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
    /// `--reconnect`: delays between attempts to reopen a connection the server closed.
    pub reconnect: Option<Backoff>,
}

/// How a subscriber ended.
pub struct Outcome {
    /// Publications it received.
    pub log: SubscriberLog,
    /// Why it stopped before the end of the run, if it did.
    pub ended_early: Option<String>,
    /// `--reconnect`: its reconnects and order check.
    pub tally: Option<Tally>,
}

/// What the subscribers did, once stopped.
pub struct Finished {
    /// Publications each received, in user order (`None` for failed attempts).
    pub logs: Vec<Option<SubscriberLog>>,
    /// Why subscribers stopped before the end of the run.
    pub ended: Vec<String>,
    /// `--reconnect`: reconnects and order check summed over the subscribers.
    pub tally: Option<Tally>,
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

    /// Stops the receive tasks and collects what they saw.
    pub async fn finish(self, cancel: &CancellationToken) -> Finished {
        cancel.cancel();
        let mut out = Finished {
            logs: Vec::with_capacity(self.tasks.len()),
            ended: Vec::new(),
            tally: None,
        };
        for t in self.tasks {
            match t.await.ok().flatten() {
                Some(o) => {
                    if let Some(reason) = o.ended_early {
                        out.ended.push(reason);
                    }
                    if let Some(t) = o.tally {
                        out.tally.get_or_insert_with(Tally::default).add(t);
                    }
                    out.logs.push(Some(o.log));
                }
                None => out.logs.push(None),
            }
        }
        out
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
    let user = ctx.user_offset + i;
    let opened = tokio::time::timeout(ctx.connect_timeout, ctx.dialer.open(user)).await;
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
    let subscriber = Subscriber {
        sub: i as u64,
        log: SubscriberLog::default(),
        resume: ctx.reconnect.map(|_| Resume::new(conn.subscribed.as_ref())),
    };
    Some(run(&ctx, user, subscriber, conn).await)
}

/// One subscriber across its connections: what it received and, with `--reconnect`, where it
/// is in the topic's stream.
struct Subscriber {
    sub: u64,
    log: SubscriberLog,
    resume: Option<Resume>,
}

/// Receipts of one batch, added to the shared counters once (they are hot cache lines):
/// first receipts, duplicates, misrouted, frames, reads.
type Counts = [u64; 5];

impl Subscriber {
    /// Accounts one publication at `now` (unix microseconds).
    fn note(&mut self, ctx: &FleetCtx, p: Payload, offset: Option<u64>, now: u64, c: &mut Counts) {
        match ctx
            .routing
            .index_for(self.sub, p.seq)
            .map(|i| self.log.record(i))
        {
            Some(Some(true)) => {
                c[0] += 1;
                ctx.live.record_latency(self.sub as usize, p.ts, now);
                if let Some(r) = self.resume.as_mut() {
                    r.observe(p.seq, offset);
                }
            }
            Some(Some(false)) => c[1] += 1,
            _ => c[2] += 1,
        }
    }
}

fn add_counts(live: &Live, counts: Counts) {
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

/// Why a connection's receive loop stopped.
enum End {
    /// The run is over.
    Cancelled,
    /// The server or the network ended the connection: disconnect code (if any) and reason.
    Lost(Option<u16>, String),
}

/// Receives on `s`, and on every connection that replaces it, until cancelled or until a
/// connection ends without a reconnect.
async fn run(ctx: &FleetCtx, user: usize, mut st: Subscriber, mut s: Connection) -> Outcome {
    let live = &*ctx.live;
    let ended_early = loop {
        let end = receive(ctx, &mut st, &mut s).await;
        live.connected.fetch_sub(1, Ordering::Relaxed);
        let (code, reason) = match end {
            End::Lost(code, reason) => (code, reason),
            End::Cancelled => {
                // Raw floor sockets are simply dropped: the floor process closes them only at exit.
                if s.proto != Proto::Raw {
                    s.close().await;
                }
                break None;
            }
        };
        Live::incr(&live.disconnects);
        let (Some(backoff), Some(resume)) = (ctx.reconnect, st.resume.as_mut()) else {
            break Some(reason);
        };
        if !reconnect::is_advised(code) {
            break Some(reason);
        }
        let (dialer, timeout, cancel) = (&ctx.dialer, ctx.connect_timeout, &ctx.cancel);
        let via = dialer.other_than(s.via);
        let redialed =
            resume::redial(dialer, timeout, cancel, backoff, (user, via), resume, code).await;
        let Some((conn, recovered)) = redialed else {
            break None;
        };
        s = conn;
        Live::incr(&live.connected);
        Live::incr(&live.connects);
        let now = unix_micros();
        let mut counts = Counts::default();
        for (p, offset) in recovered {
            st.note(ctx, p, offset, now, &mut counts);
        }
        add_counts(live, counts);
    };
    Outcome {
        log: st.log,
        ended_early,
        tally: st.resume.map(Resume::into_tally),
    }
}

/// Receives on one connection until cancelled or until the server ends it.
async fn receive(ctx: &FleetCtx, st: &mut Subscriber, s: &mut Connection) -> End {
    let live = &*ctx.live;
    let mut events = Vec::new();
    // One registration with the token for the whole loop: re-creating `cancelled()` per read
    // costs a lock on the token's waiter list each time.
    let cancelled = ctx.cancel.cancelled();
    tokio::pin!(cancelled);
    if let Some(m) = s.pending.take() {
        client::decode_message(s.proto, s.replayed.as_ref(), &m, &mut events);
    }
    loop {
        // Everything already buffered first: one read often holds several frames.
        let mut closed = None;
        let mut frames = 0;
        loop {
            match s.io.next_message() {
                Ok(Some(Msg::Text(t))) => {
                    frames += 1;
                    client::decode(s.proto, s.replayed.as_ref(), t, &mut events);
                }
                Ok(Some(Msg::Binary(b))) => {
                    frames += 1;
                    client::decode_binary(s.proto, b, &mut events);
                }
                Ok(Some(Msg::Close(code, reason))) => {
                    closed = Some((
                        Some(code),
                        format!("closed by server: code {code} {reason:?}"),
                    ));
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    closed = Some((None, format!("protocol error: {e:#}")));
                    break;
                }
            }
        }
        let mut pings = 0;
        if !events.is_empty() {
            let now = unix_micros();
            let mut counts: Counts = [0, 0, 0, frames, 1];
            for ev in events.drain(..) {
                match ev {
                    Event::Pub(p, offset) => st.note(ctx, p, offset, now, &mut counts),
                    Event::Ping => pings += 1,
                    Event::Closed(code, reason) => closed = Some((code, reason)),
                }
            }
            add_counts(live, counts);
        }
        for _ in 0..pings {
            if let Err(e) = s.pong().await {
                closed = Some((None, format!("pong failed: {e:#}")));
            }
        }
        if let Err(e) = s.io.flush().await {
            closed = Some((None, format!("pong failed: {e}")));
        }
        if let Some((code, reason)) = closed {
            return End::Lost(code, reason);
        }
        tokio::select! {
            _ = &mut cancelled => return End::Cancelled,
            r = s.io.fill() => match r {
                Ok(0) => return End::Lost(None, "connection closed by server".to_owned()),
                Ok(_) => {}
                Err(e) => return End::Lost(None, format!("read error: {e}")),
            },
        }
    }
}
