//! Crash consistency: `scanwatch run` (the real binary) against the
//! simulator while it mutates many times a second, killed with SIGKILL at
//! seeded random moments and restarted each time. After one clean
//! `scanwatch poll`, the history must hold without an oracle: replaying the
//! change log gives the snapshot, the snapshot is the simulator's data,
//! kinds come in a valid order, and every change belongs to a successful
//! poll that could have produced it.
//!
//! CI kills 50 times; `scripts/crash-soak.sh` runs the same test with
//! `SCANWATCH_CRASH_KILLS=200` (or more) and a fresh seed. The kill moments
//! are the point of the test, so each life lasts a seeded random time; no
//! wait here hopes that a race resolves.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::sim::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scanwatch::simulator::{Command, Fault, FaultTarget, SimConfig, Simulator};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Mutates the simulated world every `every` until `stop` is set; the task
/// ends after its last mutation.
fn keep_mutating(
    sim: &Arc<Simulator>,
    every: Duration,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (sim, stop) = (Arc::clone(sim), Arc::clone(stop));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            sim.apply(Command::Mutate { count: 1 }).unwrap();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_run_at_random_moments_never_loses_invents_or_doubles_a_change() {
    let kills = env_number("SCANWATCH_CRASH_KILLS", 50);
    let seed = env_number("SCANWATCH_CRASH_SEED", 20_251_203);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let sim = Arc::new(
        Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                customers: 24,
                profiles: 6,
                seed,
                ..SimConfig::default()
            },
        )
        .await
        .unwrap(),
    );
    // Some requests fail too, so failed polls are among the interrupted ones.
    sim.apply(Command::InjectFault {
        customer: None,
        target: FaultTarget::List,
        fault: Fault::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
        count: None,
        probability: Some(0.05),
        seed: Some(seed),
        after: None,
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let setup = SimSetup {
        retries: 0,
        api: "max_concurrency = 8",
        schedule: "interval = \"1s\"\njitter = \"0s\"\nshutdown_grace = \"1s\"",
        ..SimSetup::default()
    };
    let config = write_config(dir.path(), &sim_config_text(&sim, dir.path(), &setup));
    let db = dir.path().join("scanwatch.db");
    let log = dir.path().join("scanwatch.log");

    let stop = Arc::new(AtomicBool::new(false));
    let mutating = keep_mutating(&sim, Duration::from_millis(4), &stop);

    let mut interrupted = 0;
    for kill in 0..kills {
        let requests_before = sim.counters().api_requests;
        let polls_before = count_polls(&db).await;
        let mut daemon = scanwatch(&config, &["run"], &log).spawn().unwrap();
        let life = Duration::from_millis(rng.random_range(120..700));
        tokio::time::sleep(life).await;
        let exited = daemon.try_wait().unwrap();
        assert!(
            exited.is_none(),
            "run exited by itself before kill {kill}: {exited:?}"
        );
        daemon.kill().unwrap();
        daemon.wait().unwrap();

        // A list request that never became a polls row was a poll in flight.
        let requests = sim.counters().api_requests - requests_before;
        let polls = count_polls(&db).await - polls_before;
        if requests > polls {
            interrupted += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    mutating.await.unwrap();
    sim.apply(Command::ClearFaults).unwrap();

    let clean = scanwatch(&config, &["poll"], &log).output().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(clean.status.success(), "the clean poll failed: {logs}");
    assert!(interrupted > 0, "no kill of {kills} landed during a poll");

    let pool = open_reader(&db).await;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_history_consistent(&pool).await;
    assert_eq!(snapshot_contents(&pool).await, simulator_contents(&sim));
    let changed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM profile_changes WHERE baseline = 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(changed > 0, "the run recorded no change at all");
    eprintln!(
        "crash test: {kills} kills survived (seed {seed}), {interrupted} during a poll, \
         {changed} changes recorded"
    );
}

async fn count_polls(db: &std::path::Path) -> u64 {
    if !db.exists() {
        return 0;
    }
    let pool = open_reader(db).await;
    let polls: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM polls")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    // Killed before its migrations ran: no table yet.
    polls.unwrap_or(0) as u64
}
