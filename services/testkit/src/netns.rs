//! Network faults on this machine only: a network namespace joined to the host
//! by a veth pair (a /30 in 10.0.0.0/8 derived from the process id), a
//! redis-server inside it, iptables rules (blackhole, random loss, a cut TCP
//! flow) and a delaying TCP relay. Every guard undoes its part on drop.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::resp::command;

/// Namespaces made by this process so far (names and addresses stay unique).
static SEQ: AtomicU32 = AtomicU32::new(0);
/// `ip netns add` is not safe to run concurrently on a fresh `/run/netns`.
static SETUP: Mutex<()> = Mutex::new(());

/// Runs a command to completion; fails with its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// iptables rules in the host's `filter` table, deleted on drop.
#[derive(Default)]
pub struct Rules {
    added: Mutex<Vec<Vec<String>>>,
}

impl Rules {
    /// No rules yet.
    pub fn new() -> Rules {
        Rules::default()
    }

    /// Inserts `spec` (chain first, e.g. `["OUTPUT", "-o", "lo", "-j", "DROP"]`).
    pub fn add(&self, spec: &[&str]) -> anyhow::Result<()> {
        let (chain, rest) = spec.split_first().context("a chain")?;
        let mut args = vec!["-w", "-I", *chain];
        args.extend_from_slice(rest);
        run("iptables", &args)?;
        let owned = spec.iter().map(|s| s.to_string()).collect();
        self.added.lock().expect("rules").push(owned);
        Ok(())
    }

    /// Drops every TCP segment between local ports `a` and `b` on loopback, both ways.
    pub fn cut_loopback_flow(&self, a: u16, b: u16) -> anyhow::Result<()> {
        let (a, b) = (a.to_string(), b.to_string());
        for (from, to) in [(&a, &b), (&b, &a)] {
            self.add(&[
                "OUTPUT", "-o", "lo", "-p", "tcp", "--sport", from, "--dport", to, "-j", "DROP",
            ])?;
        }
        Ok(())
    }

    /// Deletes every rule added so far.
    pub fn clear(&self) {
        let added = std::mem::take(&mut *self.added.lock().expect("rules"));
        for spec in added.iter().rev() {
            let (chain, rest) = spec.split_first().expect("a chain");
            let mut args = vec!["-w", "-D", chain.as_str()];
            args.extend(rest.iter().map(String::as_str));
            if let Err(e) = run("iptables", &args) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A network namespace reached from the host through a veth pair.
pub struct Netns {
    name: String,
    host_if: String,
    ns_ip: String,
    host_ip: String,
    rules: Rules,
}

impl Netns {
    /// Creates the namespace, the pair and the addresses (`.1` host, `.2` inside).
    pub fn create() -> anyhow::Result<Netns> {
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let block = (pid.wrapping_mul(16).wrapping_add(seq)) % (1 << 22);
        let base = (10u32 << 24) | (block << 2);
        let ip = |host: u32| std::net::Ipv4Addr::from(base + host).to_string();
        let ns = Netns {
            name: format!("hf{pid}n{seq}"),
            host_if: format!("hf{pid}h{seq}"),
            ns_ip: ip(2),
            host_ip: ip(1),
            rules: Rules::new(),
        };
        let _serial = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        ns.sweep_stale();
        let ns_if = format!("hf{pid}p{seq}");
        let (name, host_if) = (ns.name.as_str(), ns.host_if.as_str());
        run("ip", &["netns", "add", name])?;
        run(
            "ip",
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", &ns_if, "netns", name,
            ],
        )?;
        run(
            "ip",
            &["addr", "add", &format!("{}/30", ns.host_ip), "dev", host_if],
        )?;
        run("ip", &["link", "set", host_if, "up"])?;
        let inside = format!("{}/30", ns.ns_ip);
        run("ip", &["-n", name, "addr", "add", &inside, "dev", &ns_if])?;
        run("ip", &["-n", name, "link", "set", &ns_if, "up"])?;
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Leftovers of a killed run with the same names: the namespace and rules on its interface.
    fn sweep_stale(&self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &self.host_if]);
        let listing = run("iptables", &["-w", "-S"]).unwrap_or_default();
        for line in listing.lines() {
            if line.starts_with("-A ") && line.split_whitespace().any(|w| w == self.host_if) {
                let mut args = vec!["-w", "-D"];
                args.extend(line[3..].split_whitespace());
                let _ = run("iptables", &args);
            }
        }
    }

    /// The address inside the namespace.
    pub fn ns_ip(&self) -> &str {
        &self.ns_ip
    }

    /// The host's address on the pair.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// Silently drops every packet on the pair, both ways (TCP sees no reset, only silence).
    pub fn blackhole(&self) -> anyhow::Result<()> {
        self.rules
            .add(&["OUTPUT", "-o", &self.host_if, "-j", "DROP"])?;
        self.rules
            .add(&["INPUT", "-i", &self.host_if, "-j", "DROP"])
    }

    /// Drops each packet on the pair with probability `p`, both ways.
    pub fn loss(&self, p: f64) -> anyhow::Result<()> {
        let p = p.to_string();
        let random = [
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            p.as_str(),
        ];
        for (chain, dir) in [("OUTPUT", "-o"), ("INPUT", "-i")] {
            let mut spec = vec![chain, dir, self.host_if.as_str()];
            spec.extend_from_slice(&random);
            spec.extend_from_slice(&["-j", "DROP"]);
            self.rules.add(&spec)?;
        }
        Ok(())
    }

    /// Packets the fault rules on the pair have dropped so far.
    pub fn dropped_packets(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for chain in ["OUTPUT", "INPUT"] {
            let listing = run("iptables", &["-w", "-L", chain, "-v", "-x", "-n"])?;
            for line in listing.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.contains(&self.host_if.as_str()) && words.contains(&"DROP") {
                    total += words[0].parse::<u64>().unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    /// Removes every fault rule on the pair.
    pub fn heal(&self) {
        self.rules.clear();
    }

    /// Starts redis-server inside the namespace on port 6379; ready when it answers `PING`.
    pub async fn start_redis(&self) -> anyhow::Result<NsRedis> {
        let dir = tempfile::tempdir()?;
        let child = Command::new("ip")
            .args(["netns", "exec", self.name.as_str(), "redis-server"])
            .args([
                "--port",
                "6379",
                "--bind",
                self.ns_ip.as_str(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--logfile", "redis.log"])
            .args(["--protected-mode", "no"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning redis-server in the namespace")?;
        let mut redis = NsRedis {
            child,
            addr: format!("{}:6379", self.ns_ip),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = redis.child.try_wait()? {
                bail!("redis-server in {} exited: {status}", self.name);
            }
            if command(&redis.addr, &["PING"]).await.is_ok() {
                return Ok(redis);
            }
            if Instant::now() > deadline {
                bail!("redis-server in {} did not answer PING", self.name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.rules.clear();
        // Deleting one end of the pair deletes both.
        for args in [
            &["link", "del", self.host_if.as_str()][..],
            &["netns", "del", self.name.as_str()],
        ] {
            if let Err(e) = run("ip", args) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// A redis-server running inside a [`Netns`]; killed on drop.
pub struct NsRedis {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl NsRedis {
    /// `redis://<ns ip>:6379`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// `<ns ip>:6379`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for NsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay on loopback that holds every chunk, in each direction, for
/// `delay` ± `jitter` (order kept): latency for a kernel without `netem`.
pub struct DelayRelay {
    addr: std::net::SocketAddr,
    task: JoinHandle<()>,
}

impl DelayRelay {
    /// Listens on `127.0.0.1:0` and relays every connection to `target`.
    pub async fn start(target: &str, delay: Duration, jitter: Duration) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            // Dropping the set (when the relay is dropped) aborts every flow.
            let mut flows = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                flows.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(pump(ir, ow, delay, jitter), pump(or, iw, delay, jitter));
                });
            }
        });
        Ok(DelayRelay { addr, task })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk released no earlier than its arrival plus a random delay.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    jitter: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let reader = async move {
        let mut last = tokio::time::Instant::now();
        loop {
            let mut buf = vec![0; 16 * 1024];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.truncate(n);
            let spread = rand::rng().random_range(0.0..=2.0) * jitter.as_secs_f64();
            let hold = (delay + jitter).saturating_sub(Duration::from_secs_f64(spread));
            // A byte stream cannot overtake itself: never release before the previous chunk.
            last = last.max(tokio::time::Instant::now() + hold);
            if tx.send((last, buf)).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
