//! `scanwatch completions SHELL` and `scanwatch man`: shell completion
//! scripts (clap_complete) and manual pages (clap_mangen), both generated
//! from the same clap definitions as `--help`, so they cannot drift from it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, CliError};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  scanwatch completions bash > /etc/bash_completion.d/scanwatch
  scanwatch completions zsh > \"${fpath[1]}/_scanwatch\"
  scanwatch completions fish > ~/.config/fish/completions/scanwatch.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  scanwatch man | man -l -
  scanwatch man --dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write scanwatch.1 and one page per subcommand (scanwatch-history.1, ...)
    /// into this folder instead of printing scanwatch.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run_completions(args: CompletionsArgs) -> Result<ExitCode, CliError> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut command, "scanwatch", &mut out);
    write_stdout(&out)
}

pub fn run_man(args: ManArgs) -> Result<ExitCode, CliError> {
    let command = Cli::command();
    if let Some(dir) = args.dir {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::generate_to(command, &dir)
            .with_context(|| format!("cannot write manual pages into {}", dir.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut out)
        .context("cannot render the manual page")?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode, CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Failure(
            anyhow::Error::new(error).context("cannot write to stdout"),
        )),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completions(shell: Shell) -> String {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "scanwatch", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn completions_in_each_shell_know_the_subcommands_and_history_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            for word in ["history", "status", "poll", "baseline", "since", "ndjson"] {
                assert!(script.contains(word), "{shell}: {word}");
            }
        }
    }

    #[test]
    fn the_manual_page_lists_the_subcommands_and_one_page_each_is_written() {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie"), "roff");
        assert!(page.contains("scanwatch\\-history"), "{page}");

        let dir = tempfile::tempdir().unwrap();
        run_man(ManArgs {
            dir: Some(dir.path().join("man1")),
        })
        .unwrap();
        let history = std::fs::read_to_string(dir.path().join("man1/scanwatch-history.1")).unwrap();
        assert!(history.contains("\\-\\-baseline"), "{history}");
        assert!(dir.path().join("man1/scanwatch.1").is_file());
    }

    #[test]
    fn every_subcommand_help_ends_with_an_example() {
        let mut command = Cli::command();
        command.build();
        // clap's own `help` subcommand is the one without an example.
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let after = sub
                .get_after_help()
                .or(sub.get_after_long_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                after.contains("Example") && after.contains("scanwatch "),
                "{} has no example in its --help",
                sub.get_name()
            );
        }
    }
}
