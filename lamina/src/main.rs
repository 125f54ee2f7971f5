//! The `lamina` command. Parses the command line, initialises logging and runs it.

mod admin;
mod cli;
mod deploy;
mod remote;
mod report;
mod up;

use clap::Parser;

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

fn main() -> std::process::ExitCode {
    keep_backtraces_for_panics_only();
    let cli = cli::Cli::parse();
    cli::init_tracing(&cli.log_format);
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
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lamina: {e:#}");
            let code = if e.downcast_ref::<cli::UsageError>().is_some() {
                64
            } else {
                1
            };
            std::process::ExitCode::from(code)
        }
    }
}
