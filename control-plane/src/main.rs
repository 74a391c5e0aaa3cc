//! `tollgate-cp`: parse settings, initialise logging, hand over to the library.

use clap::Parser;
use std::process::ExitCode;
use tollgate_control_plane::settings::{CertCommand, Cli, Command};

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

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
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) || matches!(
                err.kind(),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            // clap's rendering spans several lines (usage, tips): keep the first.
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            return fail(first.trim_start_matches("error: "));
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(format!("cannot start the async runtime: {err}")),
    };
    let result = match cli.command {
        Command::Serve(args) => match args.resolve() {
            Ok(settings) => {
                init_tracing(&settings.log_level);
                runtime.block_on(tollgate_control_plane::serve(settings))
            }
            Err(err) => return fail(err),
        },
        Command::Cert { command } => return cert(command),
        Command::Migrate(args) => match args.resolve() {
            Ok(settings) => {
                init_tracing(&settings.log_level);
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
