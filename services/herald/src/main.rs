//! `herald`: the binary. Parses the command line, loads configuration, sets up
//! logging and runs the chosen roles until SIGTERM/SIGINT. Everything else
//! lives in the libraries.

mod app;
mod cli;
mod dev;
mod selftest;
mod settings;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let settings = match settings::Settings::load(&cli) {
        Ok(s) => s,
        Err(e) if matches!(cli.command, Some(cli::Command::Selftest(_))) => {
            eprintln!("herald: selftest failed at configuration: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("herald: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Some(cli::Command::Selftest(args)) => {
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
        Some(cli::Command::CheckConfig) => {
            println!(
                "configuration ok (role {}, engine {})",
                settings.server.role,
                settings.engine_name()
            );
            ExitCode::SUCCESS
        }
        Some(cli::Command::Gentoken(args)) => match cli::gentoken(&settings, &args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("herald: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        None | Some(cli::Command::Run) => {
            init_logging();
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(app::run(settings)) {
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
