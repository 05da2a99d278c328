//! Leaks: `scanwatch run` over tens of thousands of polls at the shortest
//! interval, against the simulator, with open file descriptors and resident
//! memory measured once 10% of the polls are done and again at the end.
//! Descriptors other than sockets must be the same, sockets (the client's
//! keep-alive connections, which vary with the polls in flight) at most
//! `max_concurrency` + 1, and RSS within max(5%, 2 MiB).
//!
//! SQLite's page cache is bounded (`cache_size`, fixed by the store) but
//! fills as the database grows, which would look like a leak. So the
//! database starts with a padding table larger than that cache: the start-up
//! `PRAGMA quick_check` reads every page and fills the cache to its bound
//! before the first measurement.
//!
//! CI runs 60,000 polls; `scripts/leak-soak.sh` sets `SCANWATCH_LEAK_POLLS`
//! higher for a longer soak.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::sim::*;
use scanwatch::simulator::{Command, SimConfig, Simulator};
use scanwatch::store::Store;

/// `api.max_concurrency` of the daemon under test.
const MAX_CONCURRENCY: usize = 16;

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
    /// keeps alive as the number of polls in flight varies (a connection is
    /// back in the pool a moment after its poll's slot is free), so their
    /// count is bounded rather than fixed.
    sockets: usize,
    rss_kib: u64,
    threads: u64,
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
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    Usage {
        files,
        sockets,
        rss_kib,
        threads,
    }
}

/// Fills the database with half again as many bytes as the page cache the
/// store gives its connections holds, read from the store's own connection.
async fn pad(settings: &scanwatch::config::StorageSettings) {
    let store = Store::open(settings).await.unwrap();
    let pool = store.pool();
    let cache_size: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(pool)
        .await
        .unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(pool)
        .await
        .unwrap();
    // A negative cache_size is a size in KiB, a positive one in pages.
    let cache_bytes = if cache_size < 0 {
        -cache_size * 1024
    } else {
        cache_size * page_size
    };
    let padding_bytes = cache_bytes as usize * 3 / 2;
    sqlx::query("CREATE TABLE leak_test_padding (b BLOB)")
        .execute(store.pool())
        .await
        .unwrap();
    let rows = padding_bytes / 3000;
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

/// Slows every response just enough that the daemon has `MAX_CONCURRENCY`
/// polls in flight most of the time, for a few seconds, then speeds up again.
///
/// Each poll in flight holds one keep-alive connection, and the client keeps
/// up to `max_concurrency` of them idle. At full speed how many it holds
/// depends on how the polls happen to bunch, so without this the pool, and
/// the memory that goes with it, could still be growing to its size after the
/// first measurement and look like a leak.
async fn fill_the_connection_pool(sim: &Simulator, reader: &sqlx::SqlitePool, deadline: Duration) {
    let latency = |latency_ms| Command::SetLatency {
        customer: None,
        latency_ms,
        jitter_ms: None,
    };
    // 16 slots at 40 ms a poll serve 400 polls a second, what the customers
    // ask for: every slot is busy, and no backlog builds up.
    sim.apply(latency(40)).unwrap();
    let rounds = polls_done(reader).await + 100 * MAX_CONCURRENCY as u64;
    until_polls(reader, rounds, deadline).await;
    sim.apply(latency(0)).unwrap();
}

/// `usage` at a moment, with the RSS taken as the median of `SAMPLES`
/// readings over a second: what the polls in flight hold at one instant
/// (their lists, buffers and tasks) comes and goes with how they bunch, and
/// is not what a leak looks like.
async fn settled_usage(pid: u32) -> Usage {
    const SAMPLES: usize = 21;
    let mut readings = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        readings.push(usage(pid).rss_kib);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    readings.sort_unstable();
    Usage {
        rss_kib: readings[SAMPLES / 2],
        ..usage(pid)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_sixty_thousand_polls_keeps_descriptors_and_memory_flat() {
    let target = env_number("SCANWATCH_LEAK_POLLS", 60_000);
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
    fill_the_connection_pool(&sim, &reader, deadline).await;
    until_polls(&reader, target / 20, deadline).await;
    sim.apply(Command::Mutate { count: 200 }).unwrap();
    until_polls(&reader, target / 10, deadline).await;
    let early = settled_usage(daemon.id()).await;
    until_polls(&reader, target / 2, deadline).await;
    sim.apply(Command::Mutate { count: 200 }).unwrap();
    let done = until_polls(&reader, target, deadline).await;
    let late = settled_usage(daemon.id()).await;
    let took = started.elapsed();

    // SAFETY: kill(2) on the pid of a child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let exit = daemon.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(exit.success(), "run did not stop cleanly: {exit:?}\n{logs}");

    eprintln!(
        "leak test: {done} polls in {took:?} ({:.0}/s); files {:?} -> {:?}, \
         sockets {} -> {}, threads {} -> {}, rss {} KiB -> {} KiB",
        done as f64 / took.as_secs_f64(),
        early.files,
        late.files,
        early.sockets,
        late.sockets,
        early.threads,
        late.threads,
        early.rss_kib,
        late.rss_kib
    );
    assert_eq!(late.files, early.files, "open descriptors changed");
    // At most one connection per request in flight, and as many again idle
    // in the pool (`pool_max_idle_per_host` is `max_concurrency`); a leak of
    // one socket in a thousand polls would pass this long before the end.
    assert!(
        late.sockets <= 2 * MAX_CONCURRENCY,
        "{} sockets open with at most {MAX_CONCURRENCY} requests in flight (early: {})",
        late.sockets,
        early.sockets
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
