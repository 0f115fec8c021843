//! The `floor-child` process: accepts N bare TCP connections, writes one pre-built WebSocket
//! frame per publication line of stdin to every socket from a small pool of writer threads,
//! then accepts and closes new connections, and last connects to itself for a while. Blocking
//! std IO on purpose: no event loop cost in the floor. Driving it is `floor`'s.

use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use crate::cli::FloorChildArgs;
use crate::procstat;

/// Batches queued per writer thread before the reader of stdin waits.
const WRITER_QUEUE: usize = 1024;

/// Line that ends the publications (the sockets stay open until stdin closes).
pub const END: &str = "end";

/// Entry point of the `floor-child` process.
pub fn run_child(args: FloorChildArgs) -> anyhow::Result<()> {
    crate::limits::raise_nofile();
    let listener = listen(&args.listen)?;
    let mut out = io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    let writers = args.writers.max(1);
    let mut shards: Vec<Vec<TcpStream>> = (0..writers).map(|_| Vec::new()).collect();
    for i in 0..args.connections {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        shards[i % writers].push(s);
    }
    writeln!(out, "ready {}", args.connections)?;
    out.flush()?;

    let mut queues = Vec::new();
    let mut threads = Vec::new();
    for shard in shards {
        let (tx, rx) = sync_channel::<Arc<Vec<Vec<u8>>>>(WRITER_QUEUE);
        queues.push(tx);
        threads.push(std::thread::spawn(move || write_loop(shard, rx)));
    }
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut line = String::new();
    let batch_size = args.batch.max(1);
    let mut batch = Vec::with_capacity(batch_size);
    // Exactly `batch_size` publications per writev, like a server whose writer coalesces that
    // many queued messages; "end" (or EOF) flushes the remainder.
    loop {
        line.clear();
        let eof = input.read_line(&mut line)? == 0;
        if eof || line.trim() == END {
            break;
        }
        batch.extend(frame_for_line(&line));
        if batch.len() == batch_size {
            send_batch(
                &queues,
                std::mem::replace(&mut batch, Vec::with_capacity(batch_size)),
            );
        }
    }
    if !batch.is_empty() {
        send_batch(&queues, batch);
    }
    drop(queues);
    let mut open = Vec::new();
    let (mut frames, mut writes) = (0, 0);
    for t in threads {
        let (f, w, socks) = t.join().map_err(|_| anyhow!("writer thread panicked"))?;
        (frames, writes) = (frames + f, writes + w);
        open.push(socks);
    }
    // From now on, bare connect/accept: every new connection is accepted and closed at once.
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    writeln!(out, "done {frames} {writes}")?;
    out.flush()?;
    // Keep the sockets open until the load generator has stopped reading (stdin closed).
    while input.read_line(&mut line)? != 0 {}
    drop(open);
    if !args.connect_accept.is_zero() {
        let threads = args.writers.max(1);
        let before = procstat::sample_self();
        let start = Instant::now();
        let connections = connect_accept_loop(args.connect_accept, threads)?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = procstat::sample_self().cpu_since(&before);
        writeln!(
            out,
            "connect_accept {connections} {threads} {wall:.6} {:.2} {:.2}",
            cpu.user_s, cpu.system_s
        )?;
        out.flush()?;
    }
    Ok(())
}

/// Bare TCP connections with both ends in this process: each of `threads` threads connects to
/// a listener of its own, accepts, closes the accepted end, then the connecting end (so that
/// TIME_WAIT stays on the accepting side, as a server's would), until `length` has passed.
/// Returns the connections made.
pub fn connect_accept_loop(length: Duration, threads: usize) -> anyhow::Result<u64> {
    let deadline = Instant::now() + length;
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let listener = listen("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        handles.push(std::thread::spawn(move || -> io::Result<u64> {
            let mut n = 0;
            while Instant::now() < deadline {
                let client = TcpStream::connect(addr)?;
                let (server, _) = listener.accept()?;
                drop(server);
                drop(client);
                n += 1;
            }
            Ok(n)
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow!("connect/accept thread panicked"))?
            .context("connect/accept loop")?;
    }
    Ok(total)
}
/// Listener with a backlog deep enough for the connect burst (std's default is 128, and a
/// dropped SYN costs the client a one-second retransmission).
fn listen(addr: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad listen address {addr:?}"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn send_batch(queues: &[std::sync::mpsc::SyncSender<Arc<Vec<Vec<u8>>>>], batch: Vec<Vec<u8>>) {
    let batch = Arc::new(batch);
    for q in queues {
        let _ = q.send(batch.clone());
    }
}

/// Frame of a `"<seq> <ts>"` line: the Herald push a subscriber of the topic would receive.
fn frame_for_line(line: &str) -> Option<Vec<u8>> {
    let mut it = line.split_whitespace().map(str::parse::<u64>);
    let (seq, ts) = (it.next()?.ok()?, it.next()?.ok()?);
    let json = format!(
        r#"{{"push":{{"channel":"stock:LOAD","pub":{{"data":{{"seq":{seq},"ts":{ts}}},"offset":{}}}}}}}"#,
        seq + 1
    );
    Some(text_frame(json.as_bytes()))
}

/// Unmasked (server to client) WebSocket text frame, RFC 6455 section 5.2.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x81);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= u16::MAX as usize => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Writes every batch to every socket of the shard; returns frames written, writev calls and
/// the sockets still open. A socket that fails is dropped from the shard.
fn write_loop(
    mut socks: Vec<TcpStream>,
    rx: Receiver<Arc<Vec<Vec<u8>>>>,
) -> (u64, u64, Vec<TcpStream>) {
    let (mut frames, mut writes) = (0u64, 0u64);
    while let Ok(batch) = rx.recv() {
        socks.retain_mut(|s| {
            let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|f| IoSlice::new(f)).collect();
            match write_all_vectored(s, &mut slices, &mut writes) {
                Ok(()) => {
                    frames += batch.len() as u64;
                    true
                }
                Err(_) => false,
            }
        });
    }
    (frames, writes, socks)
}

fn write_all_vectored(
    s: &mut TcpStream,
    mut bufs: &mut [IoSlice<'_>],
    writes: &mut u64,
) -> io::Result<()> {
    while !bufs.is_empty() {
        *writes += 1;
        match s.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{decode, Event, Payload, Proto};

    #[test]
    fn frames_decode_as_herald_pushes() {
        let f = frame_for_line("41 1234\n").unwrap();
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1] as usize, f.len() - 2);
        let mut out = Vec::new();
        decode(
            Proto::Raw,
            None,
            std::str::from_utf8(&f[2..]).unwrap(),
            &mut out,
        );
        assert_eq!(
            out,
            vec![Event::Pub(Payload { seq: 41, ts: 1234 }, Some(42))]
        );
        assert!(frame_for_line("garbage").is_none());
    }

    #[test]
    fn long_frames_use_extended_length() {
        let f = text_frame(&[b'x'; 300]);
        assert_eq!((f[1], u16::from_be_bytes([f[2], f[3]])), (126, 300));
    }
}
