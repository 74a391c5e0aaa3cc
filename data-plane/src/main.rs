//! `tollgate-dp`: parse settings, initialise logging, hand over to `run`.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tollgate_data_plane::settings::{Cli, Command};
use tollgate_data_plane::Settings;

/// The proxy allocates and frees small buffers on every request from one
/// thread; mimalloc's thread-local free lists serve that far better than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let settings = match Settings::from_args(*args) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tollgate-dp: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match tollgate_data_plane::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate-dp: {error:#}");
            ExitCode::FAILURE
        }
    }
}
