//! Real `redis-server` processes for integration tests: a standalone server and
//! a Cluster of masters, each on free ports with a temporary directory, killed
//! on drop. Readiness is awaited by polling (`PING`, `cluster_state:ok`) with a deadline.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::resp::{command, Reply};

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server on a free port; ready when it answers (as itself).
    pub async fn start() -> anyhow::Result<RedisServer> {
        Self::start_with(Vec::new(), |p| p < 65535).await
    }

    async fn start_with(
        extra: Vec<String>,
        port_ok: impl Fn(u16) -> bool,
    ) -> anyhow::Result<RedisServer> {
        let mut last = None;
        for _ in 0..10 {
            let port = free_port(&port_ok)?;
            let mut server = RedisServer {
                port,
                dir: tempfile::tempdir()?,
                extra: extra.clone(),
                child: None,
            };
            match server.start_again().await {
                Ok(()) => return Ok(server),
                // Another process may have taken the port in between: pick another.
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (its data is lost: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port; ready when it answers (as itself).
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = spawn(self.port, self.dir.path(), &self.extra)?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                bail!(
                    "redis-server on port {} exited with {status}: {}",
                    self.port,
                    self.log_tail()
                );
            }
            // The answer must come from our process: when another server holds the
            // port, ours exits, but that one would answer PING meanwhile.
            if let Ok(Reply::Text(info)) = command(&self.addr(), &["INFO", "server"]).await {
                let ours = self
                    .child
                    .as_ref()
                    .map(|c| format!("process_id:{}\r", c.id()));
                if ours.is_some_and(|p| info.contains(&p)) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} did not answer PING: {}",
                    self.port,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops and starts the server on the same port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again().await
    }

    /// Sends one command (fault injection, inspection).
    pub async fn cmd(&self, args: &[&str]) -> anyhow::Result<Reply> {
        command(&self.addr(), args).await
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, dir: &Path, extra: &[String]) -> anyhow::Result<Child> {
    let port_arg = port.to_string();
    let mut args: Vec<&str> = vec![
        "--port",
        &port_arg,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--logfile",
        "redis.log",
        "--protected-mode",
        "no",
    ];
    args.extend(extra.iter().map(String::as_str));
    Command::new("redis-server")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("redis-server is not installed (not on PATH): install it, e.g. `apt-get install redis-server`")
            } else {
                anyhow::Error::new(e).context("spawning redis-server")
            }
        })
}

fn free_port(ok: impl Fn(u16) -> bool) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if ok(port) {
            return Ok(port);
        }
    }
    bail!("no free port found")
}

/// A Redis Cluster of masters (no replicas), slots split evenly.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes, assigns slots, joins them; ready when every node says `cluster_state:ok`.
    pub async fn start(masters: usize) -> anyhow::Result<RedisCluster> {
        let extra: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "5000",
        ]
        .map(String::from)
        .to_vec();
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            // The cluster bus listens on port + 10000.
            let ok = |p: u16| p < 55535 && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok();
            nodes.push(RedisServer::start_with(extra.clone(), ok).await?);
        }
        let cluster = RedisCluster { nodes };
        let n = masters as u32;
        for (i, node) in cluster.nodes.iter().enumerate() {
            let (start, end) = (i as u32 * 16384 / n, (i as u32 + 1) * 16384 / n - 1);
            let reply = node
                .cmd(&[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &start.to_string(),
                    &end.to_string(),
                ])
                .await?;
            ensure_ok(&reply, "CLUSTER ADDSLOTSRANGE")?;
            let epoch = (i + 1).to_string();
            ensure_ok(
                &node.cmd(&["CLUSTER", "SET-CONFIG-EPOCH", &epoch]).await?,
                "CLUSTER SET-CONFIG-EPOCH",
            )?;
        }
        let first = &cluster.nodes[0];
        for node in &cluster.nodes[1..] {
            let port = node.port.to_string();
            ensure_ok(
                &first.cmd(&["CLUSTER", "MEET", "127.0.0.1", &port]).await?,
                "CLUSTER MEET",
            )?;
        }
        cluster.wait_ok().await?;
        Ok(cluster)
    }

    async fn wait_ok(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let want_nodes = format!("cluster_known_nodes:{}", self.nodes.len());
        loop {
            let mut all = true;
            for node in &self.nodes {
                let info = node
                    .cmd(&["CLUSTER", "INFO"])
                    .await
                    .context("CLUSTER INFO")?;
                let info = info.text().unwrap_or_default();
                all &= info.contains("cluster_state:ok") && info.contains(&want_nodes);
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("cluster did not reach cluster_state:ok");
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `127.0.0.1:<port>` of every node (the engine's `redis_cluster` seeds).
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// The nodes, for fault injection.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

fn ensure_ok(reply: &Reply, what: &str) -> anyhow::Result<()> {
    match reply {
        Reply::Text(s) if s == "OK" => Ok(()),
        other => bail!("{what}: {other:?}"),
    }
}

impl RedisServer {
    /// Kills every connection in subscribe mode (`sub` or `ssub` > 0), RESP3 ones
    /// included (`CLIENT KILL TYPE pubsub` misses those); returns how many.
    pub async fn kill_subscribers(&self) -> anyhow::Result<usize> {
        let list = self.cmd(&["CLIENT", "LIST"]).await?;
        let mut killed = 0;
        for line in list.text().unwrap_or_default().lines() {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    .unwrap_or("0")
                    .to_owned()
            };
            let subscribed = field("sub") != "0" || field("ssub") != "0";
            if subscribed {
                if let Reply::Int(n) = self.cmd(&["CLIENT", "KILL", "ID", &field("id")]).await? {
                    killed += n as usize;
                }
            }
        }
        Ok(killed)
    }
}
