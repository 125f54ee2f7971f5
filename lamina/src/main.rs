//! The `lamina` command. Parses the command line, initialises logging and runs it.

mod admin;
mod cli;
mod deploy;
mod remote;
mod report;
mod up;

use clap::Parser;

fn main() -> std::process::ExitCode {
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
