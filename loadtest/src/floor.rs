//! The `floor` baseline seen from the load generator: a separate process of this binary
//! (`floor::child`, the `floor-child` subcommand) accepts N bare TCP connections and writes a
//! Herald push per publication to every socket; its CPU is the physical cost of fan-out and of
//! accepting on this machine, with no protocol work. This module starts it, feeds it and reads
//! its reports, last its CPU per connect+accept+close counting both ends of a bare connection.

mod child;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader as AsyncBufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::summary::ConnectAccept;

pub use self::child::{run_child, END};

/// The floor process seen from the load generator.
pub struct FloorServer {
    child: Child,
    stdout: Lines<AsyncBufReader<ChildStdout>>,
    /// Address it accepts on.
    pub addr: SocketAddr,
    /// Its process id, sampled like a server's.
    pub pid: u32,
    /// Whether it ends with the connect-to-self loop.
    connect_accept: bool,
}

impl FloorServer {
    /// Starts the floor process for `connections` sockets; `connect_accept` is the length of
    /// its final connect-to-self loop (zero: none).
    pub async fn spawn(
        connections: usize,
        writers: usize,
        batch: usize,
        connect_accept: Duration,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["floor-child", "--listen", "127.0.0.1:0"])
            .args(["--connections", &connections.to_string()])
            .args([
                "--writers",
                &writers.to_string(),
                "--batch",
                &batch.to_string(),
            ])
            .args([
                "--connect-accept",
                &humantime::format_duration(connect_accept).to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start the floor process")?;
        let pid = child.id().ok_or_else(|| anyhow!("floor process exited"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut stdout = AsyncBufReader::new(stdout).lines();
        let line = next_line(&mut stdout, "listening").await?;
        let addr = line
            .parse()
            .with_context(|| format!("bad floor address {line:?}"))?;
        Ok(FloorServer {
            child,
            stdout,
            addr,
            pid,
            connect_accept: !connect_accept.is_zero(),
        })
    }

    /// Waits until every connection has been accepted.
    pub async fn ready(&mut self) -> anyhow::Result<()> {
        next_line(&mut self.stdout, "ready").await.map(drop)
    }

    /// The pipe publications are written to; closing it ends the floor process.
    pub fn take_stdin(&mut self) -> anyhow::Result<ChildStdin> {
        self.child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("floor stdin already taken"))
    }

    /// Waits until every publication is written (after the `end` line); returns the frames
    /// written and the writev calls made. The process then accepts and closes new connections.
    pub async fn done(&mut self) -> anyhow::Result<(u64, u64)> {
        let done = next_line(&mut self.stdout, "done").await?;
        let mut it = done.split_whitespace().map(str::parse::<u64>);
        let frames = it.next().transpose()?.unwrap_or(0);
        let writes = it.next().transpose()?.unwrap_or(0);
        Ok((frames, writes))
    }

    /// Waits for the connect-to-self loop, if any, and for the process to exit (its stdin must
    /// be closed by then).
    pub async fn finish(mut self) -> anyhow::Result<Option<ConnectAccept>> {
        let mut result = None;
        if self.connect_accept {
            eprintln!("floor process connecting to itself (both ends of each connection)");
            let line = next_line(&mut self.stdout, "connect_accept").await?;
            result = Some(
                parse_connect_accept(&line)
                    .with_context(|| format!("bad connect_accept line {line:?}"))?,
            );
        }
        self.child.wait().await?;
        Ok(result)
    }
}

async fn next_line(
    lines: &mut Lines<AsyncBufReader<ChildStdout>>,
    word: &str,
) -> anyhow::Result<String> {
    while let Some(line) = lines.next_line().await? {
        if let Some(rest) = line.strip_prefix(word) {
            return Ok(rest.trim().to_owned());
        }
    }
    bail!("floor process ended before saying {word:?}")
}
/// `<connections> <threads> <wall s> <user s> <system s>` of the `connect_accept` line.
fn parse_connect_accept(line: &str) -> anyhow::Result<ConnectAccept> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let [connections, threads, wall, user, system] = f[..] else {
        bail!("expected 5 fields");
    };
    let (user_s, system_s): (f64, f64) = (user.parse()?, system.parse()?);
    Ok(ConnectAccept::new(
        connections.parse()?,
        threads.parse()?,
        wall.parse()?,
        user_s,
        system_s,
    ))
}
#[cfg(test)]
mod tests {
    use super::child::connect_accept_loop;
    use super::*;
    #[test]
    fn connect_accept_loop_reports_both_ends() {
        let n = connect_accept_loop(Duration::from_millis(50), 2).unwrap();
        assert!(n > 0);
        let c = parse_connect_accept("2000 2 2.000000 0.03 0.06").unwrap();
        assert_eq!((c.connections, c.threads), (2000, 2));
        assert!((c.cpu_us_per_connect_accept.unwrap() - 45.0).abs() < 1e-9);
        assert!((c.per_sec - 1000.0).abs() < 1e-9);
        assert!(parse_connect_accept("1 2 3").is_err());
    }
}
