//! `herald-loadtest`: load generator for Herald and its peers (a Socket.IO server, a plain `ws`
//! server, a raw TCP floor). Parses the command line, raises the open-file limit, runs one
//! scenario on a multi-threaded runtime and writes the JSON summary and SVG plots; or runs one
//! of the `report` and `merge` subcommands.

/// mimalloc rather than the system allocator: the load processes' receive and
/// publish loops allocate short-lived buffers, where glibc's bins cost CPU that
/// the machine under test would rather have.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod client;
mod fleet;
mod floor;
mod headline;
mod ledger;
mod limits;
mod merge;
mod mix;
mod monitor;
mod plot;
mod procstat;
mod publish;
mod reconnect;
mod redis_info;
mod report;
mod scenario;
mod scrape;
mod stats;
mod summary;
mod verdict;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, RunArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::FloorChild(args)) => floor::run_child(args).map(|()| ExitCode::SUCCESS),
        Some(Command::Report(args)) => report::run(&args).map(|()| ExitCode::SUCCESS),
        Some(Command::Merge(args)) => merge::run(&args).map(|()| ExitCode::SUCCESS),
        None => run(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a scenario, writes its summary and plots, prints the headline; a run whose figures do
/// not describe the load asked for (see `verdict`) ends with one `error:` line and exit code 1.
fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let nofile = limits::raise_nofile();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.enable_all().build()?;
    let outcome = rt.block_on(scenario::run(&args, nofile))?;
    let s = &outcome.summary;
    s.write(&args.out)?;
    eprintln!("wrote {}", args.out.display());
    if !args.no_plots {
        match plot::write_all(s, &outcome.latency, &args.out) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(e) => eprintln!("plots not written: {e:#}"),
        }
    }
    headline::print(s);
    rt.shutdown_background();
    Ok(match verdict::check(s) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::FAILURE
        }
    })
}
