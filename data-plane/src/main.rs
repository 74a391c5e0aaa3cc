//! `tollgate-dp`: parse settings, initialise logging, hand over to `run`.

use clap::Parser;
use std::process::ExitCode;
use tollgate_data_plane::settings::{Cli, Command};
use tollgate_data_plane::startup::{self, CliOutcome};
use tollgate_data_plane::Settings;

/// The proxy allocates and frees small buffers on every request from one
/// thread; mimalloc's thread-local free lists serve that far better than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate-dp: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => match startup::cli_outcome(&error) {
            CliOutcome::Print => {
                let _ = error.print();
                return ExitCode::SUCCESS;
            }
            CliOutcome::Refuse(line) => return fail(line),
        },
    };
    let Command::Serve(args) = cli.command;
    let settings = match Settings::from_args(*args) {
        Ok(settings) => settings,
        Err(error) => return fail(error),
    };
    let filter = settings
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    startup::init_logging(&filter, settings.log_format);
    match tollgate_data_plane::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate-dp: {error:#}");
            ExitCode::FAILURE
        }
    }
}
