//! The `lamina` command. Parses the command line, initialises logging and runs it.

mod cli;
mod commands;
mod options;
mod remote;

use clap::Parser;

/// A mistake in how lamina was invoked (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// With `RUST_BACKTRACE` set, every library error (anyhow's, tract's) captures a backtrace
/// too, and some are built on hot paths: tract's tree ensembles build one per leaf they
/// visit, which makes a random forest several times slower. Panics keep theirs.
#[allow(unsafe_code)]
fn keep_backtraces_for_panics_only() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so
        // nothing can read the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAMINA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    keep_backtraces_for_panics_only();
    let cli = cli::Cli::parse();
    init_tracing(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lamina")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lamina: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    match runtime.block_on(cli.command.run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lamina: {e:#}");
            let code = if e.downcast_ref::<UsageError>().is_some() {
                64
            } else {
                1
            };
            std::process::ExitCode::from(code)
        }
    }
}
