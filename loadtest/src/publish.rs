//! Open-loop publisher: a ticker schedules publications at the target rate whatever happens to
//! deliveries; each one is sent on its own task (HTTP publish API) or written to the floor
//! child's stdin. In-flight requests are bounded; a publication that finds no slot is skipped
//! and counted, so an overloaded server shows up as "rate not met" instead of a slower schedule.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use crate::ledger::SeqSet;
use crate::mix::{Kind, Mix};
use crate::stats::{unix_micros, Live};

/// Publish errors quoted in the output.
const MAX_QUOTED_ERRORS: usize = 5;

/// Where publications go.
pub enum Sink {
    /// `POST {api}/api/publish` (or `/api/batch`) with `X-API-Key`.
    Http(HttpTarget),
    /// `floor`: `"<seq> <ts>\n"` lines to the acceptor process.
    Pipe(ChildStdin),
}

impl Sink {
    /// HTTP sink for the API at `api_url` with a pool sized for `max_inflight` requests,
    /// sending up to `batch` publications per request.
    pub fn http(
        api_url: &str,
        key: &str,
        max_inflight: usize,
        batch: usize,
    ) -> anyhow::Result<Sink> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(max_inflight)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()?;
        let api = api_url.trim_end_matches('/');
        let batch = batch.max(1);
        let method = if batch == 1 { "publish" } else { "batch" };
        Ok(Sink::Http(HttpTarget {
            client,
            url: format!("{api}/api/{method}"),
            key: key.to_owned(),
            batch,
        }))
    }
}

/// Channel of each publication.
#[derive(Debug, Clone)]
pub enum Channels {
    /// Every publication to the same channel.
    One(String),
    /// Publication `p` to `user:lt-<offset + p % n>`.
    Personal {
        /// Number of users.
        n: usize,
        /// Number of the first user.
        offset: usize,
    },
    /// `fleet`: topic publications to `stock:<topic_offset + rank % topics>`, personal ones to
    /// `user:lt-<user_offset + rank % n>`, as `mix` splits them.
    Fleet {
        /// The split.
        mix: Mix,
        /// Number of the first user.
        user_offset: usize,
        /// Number of the first topic.
        topic_offset: usize,
    },
}

impl Channels {
    fn for_seq(&self, seq: u64) -> String {
        match self {
            Channels::One(c) => c.clone(),
            Channels::Personal { n, offset } => {
                format!("user:lt-{}", *offset as u64 + seq % (*n).max(1) as u64)
            }
            Channels::Fleet {
                mix,
                user_offset,
                topic_offset,
            } => match mix.kind(seq) {
                Kind::Topic(r) => topic_channel(*topic_offset as u64 + r % mix.topics),
                Kind::Personal(q) => format!("user:lt-{}", *user_offset as u64 + q % mix.n),
            },
        }
    }
}

/// Name of topic `k` of the `fleet` scenario.
pub fn topic_channel(k: u64) -> String {
    format!("stock:{k}")
}

/// Shape of the publishing phase.
pub struct Plan {
    /// Publications per second.
    pub rate: f64,
    /// Length of the phase.
    pub duration: Duration,
    /// Bound on requests in flight.
    pub max_inflight: usize,
    /// Channel of each publication.
    pub channels: Channels,
}

/// Result of the publishing phase.
pub struct Published {
    /// Publication numbers the server accepted.
    pub accepted: SeqSet,
    /// Publications sent (accepted or not).
    pub sent: u64,
    /// Time from the first to the last scheduled publication.
    pub wall: Duration,
    /// First few failures.
    pub errors: Vec<String>,
    /// The floor pipe, handed back so that it is closed only once the subscribers stopped.
    pub pipe: Option<ChildStdin>,
}

/// Publishes per `plan` into `sink`, counting into `live`; returns once every request finished.
pub async fn run(sink: Sink, plan: Plan, live: Arc<Live>) -> anyhow::Result<Published> {
    match sink {
        Sink::Pipe(stdin) => run_pipe(stdin, plan, live).await,
        Sink::Http(target) => run_http(Arc::new(target), plan, live).await,
    }
}

/// Slower rates send each publication a random moment after its slot starts (see [`Schedule`]).
const JITTER_FROM_PERIOD: Duration = Duration::from_millis(2);

/// Longest such delay: a scheduler tick is 1-10 ms.
const MAX_JITTER: Duration = Duration::from_millis(10);

/// Open-loop schedule: how many publications are due at each tick.
///
/// At periods of 2 ms and more each publication gets a slot of one period and is sent after
/// a uniformly random delay of up to half the slot or 10 ms: same mean rate, no fixed phase. A
/// strictly periodic schedule would lock onto the kernel's scheduler tick, which decides
/// whether CPU time is charged as user or system time, and skew that split differently in
/// every run. The delay is kept short so that publications do not bunch up.
struct Schedule {
    ticker: tokio::time::Interval,
    start: Instant,
    period: Duration,
    jitter: Duration,
    rate: f64,
    duration: Duration,
    scheduled: u64,
}

impl Schedule {
    fn new(rate: f64, duration: Duration) -> Self {
        let rate = rate.max(0.001);
        // Sub-millisecond periods are served by sending every due publication on a 1 ms tick.
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Schedule {
            ticker,
            start: Instant::now(),
            period,
            jitter: (period / 2).min(MAX_JITTER),
            rate,
            duration,
            scheduled: 0,
        }
    }

    /// Waits for the next tick; the number of publications now due, `None` once the phase is over.
    async fn due(&mut self) -> Option<u64> {
        if self.period >= JITTER_FROM_PERIOD {
            let delay = self.jitter.mul_f64(rand::random::<f64>());
            let at = self.period * self.scheduled as u32 + delay;
            if at >= self.duration {
                return None;
            }
            tokio::time::sleep_until(self.start + at).await;
            self.scheduled += 1;
            return Some(1);
        }
        self.ticker.tick().await;
        let elapsed = self.start.elapsed();
        if elapsed >= self.duration {
            return None;
        }
        let due = (elapsed.as_secs_f64() * self.rate) as u64 + 1;
        let n = due.saturating_sub(self.scheduled);
        self.scheduled = self.scheduled.max(due);
        Some(n)
    }

    fn wall(&self) -> Duration {
        self.start.elapsed().min(self.duration)
    }
}

async fn run_pipe(mut stdin: ChildStdin, plan: Plan, live: Arc<Live>) -> anyhow::Result<Published> {
    let mut schedule = Schedule::new(plan.rate, plan.duration);
    let mut accepted = SeqSet::default();
    let mut sent = 0u64;
    while let Some(n) = schedule.due().await {
        let mut lines = String::new();
        for _ in 0..n {
            lines.push_str(&format!("{sent} {}\n", unix_micros()));
            accepted.insert(sent);
            sent += 1;
        }
        stdin
            .write_all(lines.as_bytes())
            .await
            .context("floor writer is gone")?;
        live.published.fetch_add(n, Ordering::Relaxed);
    }
    stdin
        .write_all(format!("{}\n", crate::floor::END).as_bytes())
        .await?;
    stdin.flush().await?;
    Ok(Published {
        accepted,
        sent,
        wall: schedule.wall(),
        errors: Vec::new(),
        pipe: Some(stdin),
    })
}

/// The publish API: where requests go and how many publications each carries.
pub struct HttpTarget {
    client: reqwest::Client,
    url: String,
    key: String,
    batch: usize,
}

async fn run_http(
    target: Arc<HttpTarget>,
    plan: Plan,
    live: Arc<Live>,
) -> anyhow::Result<Published> {
    let accepted = Arc::new(Mutex::new(SeqSet::default()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let max_inflight = plan.max_inflight.max(1);
    let slots = Arc::new(Semaphore::new(max_inflight));
    let mut schedule = Schedule::new(plan.rate, plan.duration);
    let mut sent = 0u64;
    while let Some(mut due) = schedule.due().await {
        while due > 0 {
            let n = due.min(target.batch as u64);
            due -= n;
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                live.publish_skipped.fetch_add(n, Ordering::Relaxed);
                continue;
            };
            let seqs: Vec<u64> = (sent..sent + n).collect();
            sent += n;
            let channels: Vec<String> = seqs.iter().map(|&s| plan.channels.for_seq(s)).collect();
            let (target, live) = (target.clone(), live.clone());
            let (accepted, errors) = (accepted.clone(), errors.clone());
            tokio::spawn(async move {
                let outcomes = match target.batch {
                    1 => vec![publish_one(&target, &channels[0], seqs[0]).await],
                    _ => publish_batch(&target, &channels, &seqs).await,
                };
                for (seq, outcome) in seqs.into_iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => {
                            accepted
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(seq);
                            Live::incr(&live.published);
                        }
                        Err(e) => {
                            Live::incr(&live.publish_errors);
                            let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
                            if errors.len() < MAX_QUOTED_ERRORS {
                                errors.push(format!("{e:#}"));
                            }
                        }
                    }
                }
                // Released only once the outcomes are recorded: the end of the phase waits for
                // every slot, so nothing may be recorded after that.
                drop(permit);
            });
        }
    }
    let wall = schedule.wall();
    // Every slot back means every request has finished.
    let _all = slots.acquire_many(max_inflight as u32).await?;
    let accepted = std::mem::take(&mut *accepted.lock().unwrap_or_else(|e| e.into_inner()));
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Published {
        accepted,
        sent,
        wall,
        errors,
        pipe: None,
    })
}

/// Body of a publish request; `ts` is taken as late as possible.
fn body(channel: &str, seq: u64, ts: u64) -> String {
    format!(
        r#"{{"channel":{},"data":{{"seq":{seq},"ts":{ts}}}}}"#,
        serde_json::to_string(channel).unwrap_or_default()
    )
}

/// Sends `body` to the API; the reply as JSON, or why there is none.
async fn post(target: &HttpTarget, body: String) -> anyhow::Result<Value> {
    let resp = target
        .client
        .post(&target.url)
        .header("X-API-Key", &target.key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
        match text.trim() {
            "" => anyhow::bail!("{status} at {}", target.url),
            text => anyhow::bail!("{status} at {}: {text}", target.url),
        }
    }
    serde_json::from_slice(&bytes).context("publish reply is not JSON")
}

async fn publish_one(target: &HttpTarget, channel: &str, seq: u64) -> anyhow::Result<()> {
    let v = post(target, body(channel, seq, unix_micros())).await?;
    if let Some(e) = v.get("error") {
        anyhow::bail!("publish error reply: {e}");
    }
    if v.get("result").is_none() {
        anyhow::bail!("publish reply without result: {v}");
    }
    Ok(())
}

/// Body of a batch request: one `publish` command per publication, run in parallel.
fn batch_body(channels: &[String], seqs: &[u64], ts: u64) -> String {
    let mut body = String::from(r#"{"parallel":true,"commands":["#);
    for (i, (channel, &seq)) in channels.iter().zip(seqs).enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r#"{"publish":"#);
        body.push_str(&self::body(channel, seq, ts));
        body.push('}');
    }
    body.push_str("]}");
    body
}

/// One `/api/batch` request for the publications `seqs`; each one's outcome, in order (a
/// failed request fails them all).
async fn publish_batch(
    target: &HttpTarget,
    channels: &[String],
    seqs: &[u64],
) -> Vec<anyhow::Result<()>> {
    let reply = post(target, batch_body(channels, seqs, unix_micros())).await;
    let replies = reply.and_then(|v| match v.get("replies").and_then(Value::as_array) {
        Some(r) if r.len() == seqs.len() => Ok(r.clone()),
        _ => anyhow::bail!("batch reply without one reply per publication: {v}"),
    });
    match replies {
        Ok(replies) => replies
            .iter()
            .map(|r| match (r.get("publish"), r.get("error")) {
                (Some(_), None) => Ok(()),
                (_, Some(e)) => anyhow::bail!("publish error reply: {e}"),
                _ => anyhow::bail!("batch reply item without publish result: {r}"),
            })
            .collect(),
        Err(e) => {
            let e = format!("{e:#}");
            seqs.iter().map(|_| Err(anyhow::anyhow!("{e}"))).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_api_shape() {
        let v: Value = serde_json::from_str(&body("stock:LOAD", 3, 17)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"channel": "stock:LOAD", "data": {"seq": 3, "ts": 17}})
        );
        assert_eq!(
            Channels::Personal { n: 4, offset: 0 }.for_seq(6),
            "user:lt-2"
        );
        let shifted = Channels::Personal {
            n: 4,
            offset: 15_000,
        };
        assert_eq!(shifted.for_seq(6), "user:lt-15002");
        let fleet = Channels::Fleet {
            mix: Mix::new(10, 4, 100.0, 100.0).unwrap(),
            user_offset: 20,
            topic_offset: 8,
        };
        let names: Vec<String> = (0..4).map(|s| fleet.for_seq(s)).collect();
        assert_eq!(names, ["stock:8", "user:lt-20", "stock:9", "user:lt-21"]);
    }

    #[test]
    fn batch_body_is_one_publish_command_per_publication() {
        let channels = ["user:lt-1".to_owned(), "user:lt-2".to_owned()];
        let v: Value = serde_json::from_str(&batch_body(&channels, &[5, 6], 9)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"parallel": true, "commands": [
                {"publish": {"channel": "user:lt-1", "data": {"seq": 5, "ts": 9}}},
                {"publish": {"channel": "user:lt-2", "data": {"seq": 6, "ts": 9}}},
            ]})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_is_open_loop() {
        let mut s = Schedule::new(1000.0, Duration::from_millis(100));
        let mut total = 0;
        while let Some(n) = s.due().await {
            total += n;
        }
        assert!((99..=101).contains(&total), "{total}");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_schedules_send_once_per_slot_a_random_moment_after_it_starts() {
        let period = Duration::from_millis(50);
        let mut s = Schedule::new(20.0, Duration::from_secs(1));
        let mut offsets = Vec::new();
        while let Some(n) = s.due().await {
            assert_eq!(n, 1);
            let at = s.start.elapsed();
            let slot = offsets.len() as u32;
            // The timer rounds up to whole milliseconds: the slot's end is reachable.
            assert!(
                at >= period * slot && at <= period * (slot + 1),
                "{at:?} outside slot {slot}"
            );
            offsets.push((at - period * slot).as_micros());
        }
        assert_eq!(offsets.len(), 20);
        offsets.dedup();
        assert!(offsets.len() > 1, "every publication at the same phase");
    }
}
