//! The command line: one file per subcommand, each with its clap `Args` and
//! a `run` that returns the process exit code.
//!
//! Exit codes are the same everywhere: 0 success, 1 a runtime failure (a poll
//! failed, the database cannot be opened), 2 a usage or configuration error,
//! printed as one line naming the flag or key at fault.

pub mod check_config;
pub mod completions;
pub mod demo;
pub mod history;
pub mod poll;
pub mod run;
pub mod simulate;
pub mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, ConfigFile, LogSettings};

/// scanwatch: keeps an exact, append-only history of the scan profiles of
/// AvePoint Elements customers.
#[derive(Debug, Parser)]
#[command(name = "scanwatch", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML). Keys can be overridden by SCANWATCH__SECTION__KEY variables.
    #[arg(
        long,
        global = true,
        env = "SCANWATCH_CONFIG",
        default_value = crate::config::DEFAULT_PATH,
        value_name = "PATH"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: poll every configured customer on its schedule until SIGTERM/SIGINT.
    Run(run::Args),
    /// Poll each configured customer once, then exit (1 if any poll failed).
    Poll(poll::Args),
    /// Run the watcher against the embedded simulator and print what it recorded.
    Demo(demo::Args),
    /// Serve the embedded fake API on loopback and print a config for it.
    Simulate(simulate::Args),
    /// Validate the config and print it with secrets redacted; --probe also tries the API.
    CheckConfig(check_config::Args),
    /// Print the recorded changes, oldest first, filtered and formatted.
    History(history::Args),
    /// One row per customer: last poll, failures, profiles, last change (1 if any poll failed).
    Status(status::Args),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one per subcommand into a folder.
    Man(completions::ManArgs),
}

/// How a command ends when it does not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag or configuration: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed at run time: exit code 1.
    #[error("{0:#}")]
    Failure(#[from] anyhow::Error),
}

impl From<ConfigError> for CliError {
    fn from(error: ConfigError) -> Self {
        CliError::Usage(error.to_string())
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Failure(_) => ExitCode::from(1),
        }
    }
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run(args) => run::run(&cli.config, args).await,
        Command::Poll(args) => poll::run(&cli.config, args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::CheckConfig(args) => check_config::run(&cli.config, args).await,
        Command::History(args) => history::run(&cli.config, args).await,
        Command::Status(args) => status::run(&cli.config, args).await,
        Command::Completions(args) => completions::run_completions(args),
        Command::Man(args) => completions::run_man(args),
    }
}

/// Loads the config file and starts logging as it says, then reports the
/// file's warnings (which need logging to be up).
pub fn load_config(path: &Path) -> Result<ConfigFile, CliError> {
    let file = ConfigFile::load(path)?;
    crate::logging::init(&file.log()?);
    for warning in file.warnings() {
        tracing::warn!(config = %file.path().display(), "{warning}");
    }
    Ok(file)
}

/// Starts logging with the defaults, for commands that read no config.
pub fn default_logging() {
    crate::logging::init(&LogSettings::default());
}
