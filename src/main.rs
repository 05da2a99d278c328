use std::process::ExitCode;

use clap::Parser;
use scanwatch::cli::{self, Cli};

/// mimalloc instead of glibc's malloc: glibc keeps freed memory in one arena
/// per thread, so what the config loader freed on the main thread was not
/// reused by the runtime's threads (see BENCHMARKS.md for the figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    disable_transparent_huge_pages();
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

/// Opts this process out of transparent huge pages, where the kernel has
/// them on for every process (`always`): the allocator's regions are 2 MiB
/// aligned, so each first touch of one would make 2 MiB resident, which
/// doubled the peak memory of a 10,000-customer poll (see BENCHMARKS.md).
/// scanwatch's heap is small and short-lived; huge pages buy it nothing.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only
    // sets a flag on this process; failure (an old kernel) changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
