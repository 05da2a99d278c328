use std::process::ExitCode;

use clap::Parser;
use scanwatch::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: glibc keeps freed memory in one arena
/// per thread, so what the config loader freed on the main thread was not
/// reused by the runtime's threads (see BENCHMARKS.md for the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
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
