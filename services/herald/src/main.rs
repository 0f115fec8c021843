//! `herald`: the binary. Parses the command line, loads configuration, sets up
//! logs and trace export, binds the listeners and runs a [`herald_node::Node`] until
//! SIGTERM/SIGINT (SIGHUP reloads the TLS certificates). Everything else
//! lives in the libraries.

mod cli;
mod dev;
mod selftest;
mod settings;
mod telemetry;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use herald_node::{Listeners, Node};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{Cli, Command};
use crate::settings::Settings;

/// Exit code for invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(s) => s,
        Err(e) if matches!(cli.command, Some(Command::Selftest(_))) => {
            eprintln!("herald: selftest failed at configuration: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("herald: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(Command::Selftest(args)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(selftest::run(&settings, &args)) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(failure) => {
                    eprintln!("herald: {failure}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::CheckConfig) => {
            println!(
                "configuration ok (role {}, engine {})",
                settings.server.role,
                settings.engine_name()
            );
            ExitCode::SUCCESS
        }
        Some(Command::Gentoken(args)) => {
            let Some(secret) = settings.auth.hmac_secret.as_deref() else {
                eprintln!("herald: gentoken needs auth.hmac_secret (HERALD_AUTH__HMAC_SECRET)");
                return ExitCode::from(EXIT_CONFIG);
            };
            let ttl = (!args.ttl.is_zero()).then_some(args.ttl);
            let token = herald_core::auth::mint_connect(secret, &args.user, ttl, args.channels);
            println!("{token}");
            ExitCode::SUCCESS
        }
        None | Some(Command::Run) => {
            let node = settings.server.name.clone().unwrap_or_else(host_name);
            let _telemetry = match telemetry::init(&node) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("herald: invalid configuration: {e:#}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = settings.server.worker_threads {
                runtime.worker_threads(n);
            }
            let runtime = runtime.enable_all().build().expect("tokio runtime");
            let outcome = runtime.block_on(run(settings));
            // The runtime goes before the telemetry guard, which flushes spans with blocking IO.
            drop(runtime);
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "herald stopped");
                    eprintln!("herald: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Binds the listeners and runs the node until SIGTERM or SIGINT; SIGHUP
/// reloads the listeners' TLS certificates.
async fn run(mut settings: Settings) -> anyhow::Result<()> {
    if settings.dev_mode {
        dev::prepare(&mut settings);
    }
    // Installed before anything listens: a SIGTERM from then on drains.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let server = &settings.server;
    // Only a node with TLS listeners takes SIGHUP over (else it keeps its default action).
    let has_tls = [&server.client_tls, &server.internal_tls]
        .iter()
        .any(|tls| tls.cert_file.is_some());
    let mut hangup = match has_tls {
        true => Some(signal(SignalKind::hangup()).context("SIGHUP handler")?),
        false => None,
    };
    let internal = bind(server.internal_addr, "server.internal_addr")?;
    let client = if server.role.has_gateway() {
        Some(bind(server.client_addr, "server.client_addr")?)
    } else {
        None
    };
    let config = settings.node_config(host_name);
    let node = Node::start(config, Listeners { client, internal }).await?;
    if let (true, Some(client)) = (settings.dev_mode, node.client_addr()) {
        dev::announce(client, node.internal_addr(), &settings);
    }
    let certificates = node.certificates();
    let reload = async move {
        while let Some(hangup) = &mut hangup {
            if hangup.recv().await.is_none() {
                break;
            }
            certificates.reload();
        }
        std::future::pending().await
    };
    tokio::select! {
        () = node.run(stop) => {}
        () = reload => {}
    }
    Ok(())
}

fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    herald_node::bind(addr).with_context(|| format!("{key}: cannot listen on {addr}"))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "herald".into())
}
