use std::process::ExitCode;

use clap::Parser;
use scanwatch::cli::{self, Cli, Command};

fn main() -> ExitCode {
    configure_memory();
    let cli = Cli::parse();
    let runtime = match runtime_for(&cli.command) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scanwatch: error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("scanwatch: error: {error}");
            error.exit_code()
        }
    }
}

/// The watcher runs on one thread: its polls spend their time waiting on
/// the API, and SQLite works on sqlx's own thread, so a second runtime
/// thread adds only wake-ups between idle workers (a third more CPU per poll
/// in the cycle benchmark; BENCHMARKS.md). The simulator serves many
/// watchers' requests at once and uses every core, so that what a benchmark
/// measures is the watcher and not the simulator.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    match command {
        Command::Simulate(_) => tokio::runtime::Runtime::new(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
}

/// Keeps resident memory to what scanwatch uses, before any thread starts.
///
/// - Transparent huge pages off, where the kernel has them on for every
///   process (`always`): each first touch of a 2 MiB aligned heap region
///   would otherwise make all of it resident.
/// - One malloc arena: glibc gives threads arenas of their own, so what the
///   main thread freed after reading a large config (about 20 MiB for 10,000
///   customers) would not be reused by the runtime's and SQLite's threads,
///   which allocate afterwards. Sharing one arena cost no CPU in the cycle
///   benchmark and took its peak from 47 to 30 MiB (BENCHMARKS.md).
fn configure_memory() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only
    // sets a flag on this process; failure (an old kernel) changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt with M_ARENA_MAX sets a limit glibc reads when a thread
    // first allocates; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
