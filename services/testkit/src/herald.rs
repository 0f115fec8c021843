//! A real `herald` process on loopback ports it picks itself (it binds port 0
//! and logs the addresses it got, which the kit reads: no port is released
//! and reused), with helpers for its server API, tokens and probes. Killed on
//! drop; its log is kept in a temp file.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// Test secret and key used unless a test asks for dev mode.
pub const SECRET: &str = "test-secret";
/// See [`SECRET`].
pub const API_KEY: &str = "test-api-key";

/// A running herald.
pub struct Herald {
    child: Child,
    /// Client listener, `127.0.0.1:port` (empty for role publisher).
    pub client_addr: String,
    /// Internal listener.
    pub internal_addr: String,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

/// How long a starting process may take to report its listeners.
const LISTENING_WITHIN: Duration = Duration::from_secs(10);

impl Herald {
    /// Starts `bin` with the test secret and key plus `env`, ready when `/readyz` answers 200.
    pub async fn start(bin: impl AsRef<Path>, env: &[(&str, &str)]) -> anyhow::Result<Herald> {
        let mut all = vec![
            ("HERALD_AUTH__HMAC_SECRET", SECRET),
            ("HERALD_API__KEY", API_KEY),
        ];
        all.extend_from_slice(env);
        let herald = Herald::spawn(bin, &all).await?;
        herald.wait_ready().await?;
        Ok(herald)
    }

    /// Spawns `bin` with exactly `env` (plus port-0 listener addresses) and
    /// waits until it reports its listeners, not until it is ready.
    pub async fn spawn(bin: impl AsRef<Path>, env: &[(&str, &str)]) -> anyhow::Result<Herald> {
        let log = tempfile::NamedTempFile::new()?;
        let mut cmd = Command::new(bin.as_ref());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("HERALD_SERVER__CLIENT_ADDR", "127.0.0.1:0")
            .env("HERALD_SERVER__INTERNAL_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.as_ref().display()))?;
        let mut herald = Herald {
            child,
            client_addr: String::new(),
            internal_addr: String::new(),
            log,
            http: reqwest::Client::new(),
        };
        let deadline = tokio::time::Instant::now() + LISTENING_WITHIN;
        loop {
            if let Some((client, internal)) = listening(&herald.log()) {
                (herald.client_addr, herald.internal_addr) = (client, internal);
                return Ok(herald);
            }
            if let Some(status) = herald.child.try_wait()? {
                bail!(
                    "herald exited ({status}) before listening; log:\n{}",
                    herald.log()
                );
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "herald reported no listeners within {LISTENING_WITHIN:?}; log:\n{}",
                    herald.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `/readyz` answers 200 (10 s at most).
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.readyz().await == Some(200) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("herald not ready within 10s; log:\n{}", self.log())
    }

    /// `/readyz` status, or `None` when nothing answers.
    pub async fn readyz(&self) -> Option<u16> {
        let url = format!("http://{}/readyz", self.internal_addr);
        self.http
            .get(url)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// The `/metrics` exposition text.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.internal_addr);
        match self.http.get(url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// `ws://.../connection/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.client_addr)
    }

    /// A connection token for `user`, valid for an hour.
    pub fn token(&self, user: &str) -> String {
        token(&json!({ "sub": user, "exp": now() + 3600 }))
    }

    /// Calls `/api/<method>` with the test key; returns status and JSON body.
    pub async fn api(&self, method: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.api_with_key(method, body, Some(API_KEY)).await
    }

    /// Calls `/api/<method>` with any key (or none).
    pub async fn api_with_key(
        &self,
        method: &str,
        body: Value,
        key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        self.api_request(method, body, key, &[]).await
    }

    /// Calls `/api/<method>` with the test key and extra request headers.
    pub async fn api_with_headers(
        &self,
        method: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        self.api_request(method, body, Some(API_KEY), headers).await
    }

    async fn api_request(
        &self,
        method: &str,
        body: Value,
        key: Option<&str>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("http://{}/api/{method}", self.internal_addr))
            .body(body.to_string());
        if let Some(key) = key {
            req = req.header("X-API-Key", key);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Publishes through the API and returns the result object.
    pub async fn publish(&self, channel: &str, data: Value) -> anyhow::Result<Value> {
        let (status, body) = self
            .api("publish", json!({ "channel": channel, "data": data }))
            .await?;
        if status != 200 || body.get("result").is_none() {
            bail!("publish failed: {status} {body}");
        }
        Ok(body["result"].clone())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.signal("TERM")
    }

    /// Sends SIGHUP.
    pub fn hangup(&self) -> anyhow::Result<()> {
        self.signal("HUP")
    }

    fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("already exited")?;
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill failed");
        Ok(())
    }

    /// Waits until the log holds `count` lines containing `needle` (10 s at most).
    pub async fn wait_log(&self, needle: &str, count: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.lines().filter(|l| l.contains(needle)).count() >= count {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{count} lines with {needle:?} not logged within 10s; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit (with a deadline).
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .context("herald did not exit in time")?
            .context("wait failed")
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The client (empty when absent) and internal addresses from the node's
/// `listening` log line, plain (`client=127.0.0.1:41234 internal=...`) or JSON.
fn listening(log: &str) -> Option<(String, String)> {
    let line = log
        .lines()
        .find(|l| l.contains("listening") && l.contains("internal"))?;
    if let Ok(json) = serde_json::from_str::<Value>(line) {
        let field = |name: &str| json["fields"][name].as_str().unwrap_or_default().to_owned();
        return Some((field("client"), field("internal")));
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    let internal = field("internal");
    (!internal.is_empty()).then(|| (field("client"), internal))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs claims with the test secret (HS256).
pub fn token(claims: &Value) -> String {
    token_with_secret(claims, SECRET)
}

/// Signs claims with any secret (HS256).
pub fn token_with_secret(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signing")
}

/// Runs `bin` with arguments and `env` to completion: exit code, stdout, stderr.
pub async fn run_command(
    bin: impl AsRef<Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<(i32, String, String)> {
    let out = Command::new(bin.as_ref())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .await?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
