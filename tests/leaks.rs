//! Leaks: `scanwatch run` over tens of thousands of polls at the shortest
//! interval, against the simulator, with open file descriptors and resident
//! memory measured once 10% of the polls are done and again at the end.
//! Descriptors must be equal and RSS within max(5%, 2 MiB).
//!
//! SQLite's page cache is bounded (`cache_size`, fixed by the store) but
//! fills as the database grows, which would look like a leak. So the
//! database starts with a padding table larger than that cache: the start-up
//! `PRAGMA quick_check` reads every page and fills the cache to its bound
//! before the first measurement.
//!
//! CI runs 20,000 polls; `scripts/leak-soak.sh` sets `SCANWATCH_LEAK_POLLS`
//! higher for a longer soak.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::sim::*;
use scanwatch::simulator::{Command, SimConfig, Simulator};
use scanwatch::store::Store;

/// `api.max_concurrency` of the daemon under test.
const MAX_CONCURRENCY: usize = 16;

/// More than the store's page cache (2000 pages of 4 KiB).
const PADDING_BYTES: usize = 12 * 1024 * 1024;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a process holds open, from /proc.
#[derive(Debug)]
struct Usage {
    /// Every descriptor that is not a socket, by what it points at (the
    /// database, its WAL, the log, pipes, epoll and event fds), with pipe
    /// inode numbers dropped so that only the kinds and paths are compared.
    files: BTreeMap<String, usize>,
    /// Sockets: the HTTP connections to the API, which the client opens and
    /// keeps alive as the number of polls in flight varies, so their count
    /// is bounded rather than fixed.
    sockets: usize,
    rss_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let mut files = BTreeMap::new();
    let mut sockets = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let Ok(target) = std::fs::read_link(entry.unwrap().path()) else {
            continue; // closed while we looked
        };
        let target = target.to_string_lossy().into_owned();
        if target.starts_with("socket:") {
            sockets += 1;
            continue;
        }
        let kind = match target.split_once(":[") {
            Some((kind, _inode)) => kind.to_owned(),
            None => target,
        };
        *files.entry(kind).or_insert(0) += 1;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    Usage {
        files,
        sockets,
        rss_kib,
    }
}

async fn pad(settings: &scanwatch::config::StorageSettings) {
    let store = Store::open(settings).await.unwrap();
    sqlx::query("CREATE TABLE leak_test_padding (b BLOB)")
        .execute(store.pool())
        .await
        .unwrap();
    let rows = PADDING_BYTES / 3000;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO leak_test_padding SELECT randomblob(3000) FROM n",
    )
    .bind(rows as i64)
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
}

async fn polls_done(reader: &sqlx::SqlitePool) -> u64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM polls")
        .fetch_one(reader)
        .await
        .unwrap() as u64
}

/// Waits, with a deadline, until at least `n` polls are recorded.
async fn until_polls(reader: &sqlx::SqlitePool, n: u64, deadline: Duration) -> u64 {
    let started = Instant::now();
    loop {
        let done = polls_done(reader).await;
        if done >= n {
            return done;
        }
        assert!(
            started.elapsed() < deadline,
            "only {done} of {n} polls after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_twenty_thousand_polls_keeps_descriptors_and_memory_flat() {
    let target = env_number("SCANWATCH_LEAK_POLLS", 20_000);
    let customers = env_number("SCANWATCH_LEAK_CUSTOMERS", 400) as usize;
    let sim = Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            customers,
            profiles: 3,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let setup = SimSetup {
        api: "max_concurrency = 16", // MAX_CONCURRENCY
        schedule: "interval = \"1s\"\njitter = \"0s\"",
        ..SimSetup::default()
    };
    let text = sim_config_text(&sim, dir.path(), &setup);
    let config = write_config(dir.path(), &text);
    pad(&common::settings(&text, dir.path()).storage).await;
    let log = dir.path().join("scanwatch.log");

    let started = Instant::now();
    let mut daemon = scanwatch(&config, &["run"], &log).spawn().unwrap();
    let reader = open_reader(&dir.path().join("scanwatch.db")).await;
    // Enough time for the slowest machine; the rate is printed at the end.
    let deadline = Duration::from_secs(30) + Duration::from_millis(target * 20);

    // Some changes too, so the diff and insert paths run as well as the
    // unchanged-list shortcut: once before the first measurement, so that
    // both paths have warmed up (statement caches, allocator pools) by then,
    // and once between the two measurements.
    until_polls(&reader, target / 20, deadline).await;
    sim.apply(Command::Mutate { count: 200 }).unwrap();
    until_polls(&reader, target / 10, deadline).await;
    let early = usage(daemon.id());
    until_polls(&reader, target / 2, deadline).await;
    sim.apply(Command::Mutate { count: 200 }).unwrap();
    let done = until_polls(&reader, target, deadline).await;
    let late = usage(daemon.id());
    let took = started.elapsed();

    // SAFETY: kill(2) on the pid of a child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let exit = daemon.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "run did not stop cleanly: {exit:?}\n{logs}");

    eprintln!(
        "leak test: {done} polls in {took:?} ({:.0}/s); files {:?} -> {:?}, \
         sockets {} -> {}, rss {} KiB -> {} KiB",
        done as f64 / took.as_secs_f64(),
        early.files,
        late.files,
        early.sockets,
        late.sockets,
        early.rss_kib,
        late.rss_kib
    );
    assert_eq!(late.files, early.files, "open descriptors changed");
    assert!(
        late.sockets <= MAX_CONCURRENCY + 1,
        "{} sockets open with at most {MAX_CONCURRENCY} requests in flight",
        late.sockets
    );
    let allowed = (early.rss_kib / 20).max(2048);
    assert!(
        late.rss_kib.abs_diff(early.rss_kib) < allowed,
        "RSS moved from {} KiB to {} KiB (allowed {allowed} KiB)",
        early.rss_kib,
        late.rss_kib
    );
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM polls WHERE outcome != 'ok'")
        .fetch_one(&reader)
        .await
        .unwrap();
    assert_eq!(failed, 0, "{logs}");
    assert_history_consistent(&reader).await;
}
