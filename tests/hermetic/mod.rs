//! The scanwatch binary as a child process that reads only what its test
//! gives it.
//!
//! scanwatch takes settings from the environment as well as from its config
//! file: `SCANWATCH_CONFIG`, any `SCANWATCH__SECTION__KEY` override,
//! `RUST_LOG`, and what systemd sets for a service (`STATE_DIRECTORY`,
//! `CREDENTIALS_DIRECTORY`, `JOURNAL_STREAM`, `NOTIFY_SOCKET`, the
//! watchdog's). A suite run from the shell of someone who operates the
//! service, or inside a unit, would otherwise test that environment rather
//! than the config the test wrote: an exported `SCANWATCH__STORAGE__DATABASE`
//! would even point a test's polls at a real database.

use std::process::Command;

/// What systemd, the journal and tracing set that changes how scanwatch runs.
const SERVICE_VARIABLES: [&str; 7] = [
    "RUST_LOG",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// The binary, with every variable it reads removed from its environment;
/// a test sets back the ones it means to exercise.
pub fn scanwatch() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scanwatch"));
    for (name, _) in std::env::vars_os() {
        if read_by_scanwatch(&name.to_string_lossy()) {
            command.env_remove(name);
        }
    }
    command
}

fn read_by_scanwatch(name: &str) -> bool {
    name.starts_with("SCANWATCH") || SERVICE_VARIABLES.contains(&name)
}
