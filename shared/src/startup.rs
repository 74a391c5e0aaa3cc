//! What both binaries (`tollgate-dp` and `tollgate-cp`) share at start-up:
//! the `--log-level`/`--log-format` pair and the logger it sets up, a clap
//! error as the one line a refusal prints (with clap's suggestion for a
//! mistyped flag), and the line a malformed `--config` TOML file is wrong on.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use std::io::IsTerminal;

/// `--log-format`: human-readable lines or one JSON object per line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("'{text}' is not a log format: use text or json")),
        }
    }
}

/// Checks a `--log-level` value (a tracing filter such as `info` or
/// `tollgate_data_plane=debug,info`).
pub fn check_log_level(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("'{filter}' is not a log level or filter: {e}"))
}

/// Installs the global logger writing to stderr.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// What to do with a command line clap refused.
pub enum CliOutcome {
    /// `--help` or `--version`: print clap's text and exit 0.
    Print,
    /// A mistake: print this one line and exit 2.
    Refuse(String),
}

/// Turns a clap error into [`CliOutcome`]; a mistyped flag or subcommand
/// keeps clap's suggestion in the line.
pub fn cli_outcome(error: &clap::Error) -> CliOutcome {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return CliOutcome::Print;
    }
    // clap's rendering spans several lines (usage, tips): keep the first.
    let rendered = error.render().to_string();
    let mut line = rendered
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    let suggestion = [ContextKind::SuggestedArg, ContextKind::SuggestedSubcommand]
        .into_iter()
        .find_map(|kind| match error.get(kind) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            Some(ContextValue::Strings(s)) => s.first().cloned(),
            _ => None,
        });
    if let Some(suggestion) = suggestion {
        line.push_str(&format!("; did you mean '{suggestion}'?"));
    } else if error.kind() == ErrorKind::UnknownArgument {
        line.push_str("; see --help");
    }
    CliOutcome::Refuse(line)
}

/// The 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.get(..at.min(text.len()))
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// A TOML error as one line: `line N: message` when the position is known.
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_string();
    match error.span() {
        Some(span) => format!("line {}: {message}", line_of(text, span.start)),
        None => message,
    }
}

/// The line on which `key` (spelled with `-` or `_`) is set in `text`.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let dashed = key.replace('_', "-");
    let underscored = key.replace('-', "_");
    text.lines()
        .position(|line| {
            let name = line
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            name == dashed || name == underscored
        })
        .map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn toml_errors_name_the_line() {
        let text = "a = 1\nb = [\nc = \"x\"\n";
        let error = toml::from_str::<toml::Table>(text).unwrap_err();
        assert!(
            toml_error(text, &error).starts_with("line 3: "),
            "{}",
            toml_error(text, &error)
        );
        assert_eq!(
            line_of_key("x = 1\nproxy-lisen = 2\n", "proxy_lisen"),
            Some(2)
        );
    }

    #[test]
    fn log_formats_parse() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml"
            .parse::<LogFormat>()
            .unwrap_err()
            .contains("text or json"));
        assert!(check_log_level("info,tollgate_data_plane=debug").is_ok());
        assert!(check_log_level("info,=[").is_err());
    }
}
