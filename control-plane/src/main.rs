//! `tollgate-cp`: parse settings, initialise logging, hand over to the library.

use clap::Parser;
use std::process::ExitCode;
use tollgate_control_plane::settings::{CertCommand, Cli, Command};
use tollgate_shared::startup::{self, CliOutcome};

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate-cp: {message}");
    ExitCode::from(2)
}

fn cert(command: CertCommand) -> ExitCode {
    let result = match command {
        CertCommand::Init { out } => tollgate_control_plane::cert::init(&out),
        CertCommand::Issue { ca_dir, name, out } => {
            tollgate_control_plane::cert::issue(&ca_dir, &name, &out)
        }
    };
    match result {
        Ok(files) => {
            for file in files {
                println!("{}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(err),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => match startup::cli_outcome(&err) {
            CliOutcome::Print => {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            CliOutcome::Refuse(line) => return fail(line),
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(format!("cannot start the async runtime: {err}")),
    };
    let result = match cli.command {
        Command::Serve(args) => match args.resolve() {
            Ok(settings) => {
                startup::init_logging(&settings.log_level, settings.log_format);
                runtime.block_on(tollgate_control_plane::serve(settings))
            }
            Err(err) => return fail(err),
        },
        Command::Cert { command } => return cert(command),
        Command::Status(args) => {
            let url = args
                .admin_url
                .unwrap_or_else(|| "http://127.0.0.1:8001".into());
            return match runtime.block_on(tollgate_control_plane::status_command::run(
                &url,
                args.admin_token_file.as_deref(),
            )) {
                Ok(table) => {
                    print!("{table}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("tollgate-cp: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Migrate(args) => match args.resolve() {
            Ok(settings) => {
                startup::init_logging(&settings.log_level, settings.log_format);
                runtime.block_on(tollgate_control_plane::migrate(settings))
            }
            Err(err) => return fail(err),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format!("{err:#}")),
    }
}
