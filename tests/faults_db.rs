//! Database faults: a lock held by another writer past `busy_timeout`, a
//! full disk at every possible point of a poll's transaction, and a damaged
//! file at start. Whatever fails, a poll is recorded whole or not at all, and
//! the next poll records what the failed one missed, exactly once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sim::*;
use scanwatch::poller::{PollOutcome, PollReport};
use scanwatch::simulator::Command as SimCommand;

const RENAMED: &str = "Renamed while the disk was in trouble";

fn not_recorded(report: &PollReport) -> &str {
    match &report.outcome {
        PollOutcome::NotRecorded { error } => error,
        other => panic!("expected a poll the database refused, got {other:?}"),
    }
}

/// Everything a poll could have written: polls, customers, snapshot, changes.
async fn everything(h: &SimHarness) -> (Vec<PollRow>, Vec<String>, (Vec<String>, Vec<String>)) {
    let customers: Vec<String> = sqlx::query_scalar(
        "SELECT json_array(customer_id, name, first_polled_at, last_polled_at, \
         last_success_at, consecutive_failures, last_error, empty_streak, hex(list_hash)) \
         FROM customers ORDER BY customer_id",
    )
    .fetch_all(h.pool())
    .await
    .unwrap();
    (
        poll_rows(h.pool()).await,
        customers,
        common::dump(h.poller.store()).await,
    )
}

fn rename_first(h: &SimHarness) -> String {
    let id = h.served()[0]["profileId"].as_str().unwrap().to_owned();
    h.apply(SimCommand::RenameProfile {
        customer: h.customer_id().to_owned(),
        profile_id: id.clone(),
        profile_name: RENAMED.to_owned(),
    });
    id
}

#[tokio::test]
async fn a_writer_holding_the_lock_past_busy_timeout_leaves_no_half_poll_and_the_next_poll_catches_up(
) {
    let setup = SimSetup {
        storage: "busy_timeout = \"200ms\"",
        ..SimSetup::default()
    };
    let h = SimHarness::start(setup).await;
    assert_eq!(ok_counts(&h.poll().await), (5, 5, 0, 0));
    let renamed = rename_first(&h);
    let before = everything(&h).await;

    let other_writer = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path(&h).display()))
        .await
        .unwrap();
    let lock = other_writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let report = h.poll().await;
    let error = not_recorded(&report);
    assert!(error.contains("locked"), "{error}");
    lock.rollback().await.unwrap();
    other_writer.close().await;
    assert_eq!(
        everything(&h).await,
        before,
        "a refused poll left rows behind"
    );

    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    let changes = change_rows(h.pool()).await;
    let new: Vec<_> = changes[5..].iter().map(ChangeRow::summary).collect();
    assert_eq!(
        new,
        vec![(
            "changed",
            renamed.as_str(),
            false,
            Some(RENAMED),
            Some(r#"["modifiedTime","profileName"]"#)
        )]
    );
    assert_history_consistent(h.pool()).await;
}

fn db_path(h: &SimHarness) -> std::path::PathBuf {
    h.dir.path().join("scanwatch.db")
}

/// `PRAGMA max_page_count` is per connection, so setting it on the store's
/// write connection caps the poller's own writes: a full disk, in process.
async fn cap_pages(h: &SimHarness, extra: i64) -> i64 {
    let store = h.poller.store();
    let pages = store.execute_on_writer("PRAGMA page_count").await.unwrap();
    let pages = pages.expect("page_count answers");
    let cap = store
        .execute_on_writer(&format!("PRAGMA max_page_count = {}", pages + extra))
        .await
        .unwrap();
    assert_eq!(cap, Some(pages + extra));
    pages
}

#[tokio::test]
async fn with_the_disk_full_at_any_point_a_poll_is_recorded_whole_or_not_at_all() {
    let h = SimHarness::start(SimSetup::default()).await;
    assert_eq!(ok_counts(&h.poll().await), (5, 5, 0, 0));

    // A poll big enough to need dozens of new pages: 30 long-named
    // additions, a rename and a removal.
    let customer = h.customer_id().to_owned();
    for i in 0..30 {
        h.apply(SimCommand::AddProfile {
            customer: customer.clone(),
            profile_name: Some(format!("{i:03} {}", "long name ".repeat(30))),
            scan_mode: Some(i % 2),
        });
    }
    let renamed = rename_first(&h);
    let removed = h.served()[1]["profileId"].as_str().unwrap().to_owned();
    h.apply(SimCommand::DeleteProfile {
        customer,
        profile_id: removed.clone(),
    });
    let before = everything(&h).await;

    let mut refused = 0;
    let mut extra = 0;
    let committed = loop {
        assert!(extra < 500, "the poll never fitted");
        cap_pages(&h, extra).await;
        let report = h.poll().await;
        match &report.outcome {
            PollOutcome::NotRecorded { error } => {
                assert!(error.contains("full"), "{error}");
                assert_eq!(
                    everything(&h).await,
                    before,
                    "half a poll at +{extra} pages"
                );
                refused += 1;
                extra += 1;
            }
            PollOutcome::Ok { .. } => break ok_counts(&report),
            other => panic!("unexpected outcome at +{extra} pages: {other:?}"),
        }
    };
    assert!(refused >= 10, "only {refused} page budgets were too small");
    assert_eq!(committed, (34, 30, 1, 1));

    let changes = change_rows(h.pool()).await;
    let new = &changes[5..];
    assert_eq!(new.len(), 32);
    assert_eq!(
        new.iter()
            .filter(|c| c.kind == "added" && !c.baseline)
            .count(),
        30
    );
    assert!(new
        .iter()
        .any(|c| c.kind == "changed" && c.profile_id == renamed));
    assert!(new
        .iter()
        .any(|c| c.kind == "removed" && c.profile_id == removed));
    let polls = poll_rows(h.pool()).await;
    assert_eq!(polls.len(), 2, "each refused attempt left no polls row");
    assert_eq!(
        snapshot_contents(h.pool()).await,
        served_contents(h.customer_id(), &h.served())
    );
    assert_history_consistent(h.pool()).await;
}

/// Regression: SQLite rolls a transaction back by itself on SQLITE_FULL,
/// sqlx's own ROLLBACK then fails and its transaction count stays at one,
/// and every later `BEGIN IMMEDIATE` on that connection was refused ("begin_with
/// at non-zero transaction depth"): one full disk stopped all polls until
/// a restart.
#[tokio::test]
async fn a_poll_after_the_disk_filled_up_succeeds_once_there_is_room_again() {
    let h = SimHarness::start(SimSetup::default()).await;
    assert_eq!(ok_counts(&h.poll().await), (5, 5, 0, 0));
    let customer = h.customer_id().to_owned();
    for i in 0..40 {
        h.apply(SimCommand::AddProfile {
            customer: customer.clone(),
            profile_name: Some(format!("{i:03} {}", "long name ".repeat(40))),
            scan_mode: None,
        });
    }
    cap_pages(&h, 0).await;
    let error = not_recorded(&h.poll().await).to_owned();
    assert!(error.contains("full"), "{error}");

    h.poller
        .store()
        .execute_on_writer("PRAGMA max_page_count = 1073741823")
        .await
        .unwrap();
    assert_eq!(ok_counts(&h.poll().await), (45, 40, 0, 0));
    assert_eq!(ok_counts(&h.poll().await), (45, 0, 0, 0));
    assert_history_consistent(h.pool()).await;
}

/// Damages the b-tree page holding the snapshot (`profile_snapshot`) of a
/// checkpointed database, leaving its header (and so its opening) intact.
async fn damage_profiles_page(db: &Path) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&pool)
        .await
        .unwrap();
    let root: i64 =
        sqlx::query_scalar("SELECT rootpage FROM sqlite_schema WHERE name = 'profile_snapshot'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let mut bytes = std::fs::read(db).unwrap();
    let at = ((root - 1) * page_size) as usize;
    // One more cell than the page holds: its pointer reads as offset 0.
    let header = if root == 1 { at + 100 } else { at };
    let cells = u16::from_be_bytes([bytes[header + 3], bytes[header + 4]]);
    bytes[header + 3..header + 5].copy_from_slice(&(cells + 1).to_be_bytes());
    std::fs::write(db, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_damaged_before_start_stops_poll_and_run_with_exit_1_and_restore_advice() {
    let h = SimHarness::start(SimSetup::default()).await;
    assert_eq!(ok_counts(&h.poll().await), (5, 5, 0, 0));
    h.poller.store().close().await;
    let db = db_path(&h);
    damage_profiles_page(&db).await;
    let damaged = std::fs::read(&db).unwrap();

    let text = sim_config_text(&h.sim, h.dir.path(), &SimSetup::default());
    let config = write_config(h.dir.path(), &text);
    for command in ["poll", "run"] {
        let output = common::hermetic::scanwatch()
            .arg(command)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        for part in [
            "is damaged",
            "out of range",
            "restore it from a backup",
            ".backup copy.db",
        ] {
            assert!(
                stderr.contains(part),
                "{command}: {part:?} missing from: {stderr}"
            );
        }
        assert_eq!(
            std::fs::read(&db).unwrap(),
            damaged,
            "{command} wrote to the damaged file"
        );
    }
    assert_eq!(h.sim.counters().api_requests, 1, "the API was called");
}

/// Counts the log lines (JSON) whose message is `message`.
fn logged(log: &Path, message: &str) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message || l["message"] == message)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_keeps_polling_through_a_locked_database_and_records_what_it_missed_once() {
    let setup = SimSetup {
        storage: "busy_timeout = \"100ms\"",
        schedule: "interval = \"1s\"\njitter = \"0s\"",
        ..SimSetup::default()
    };
    let h = SimHarness::start(setup.clone()).await;
    let config = write_config(h.dir.path(), &sim_config_text(&h.sim, h.dir.path(), &setup));
    let log = h.dir.path().join("run.log");
    let reader = open_reader(&db_path(&h)).await;
    let polls = |n: i64| {
        let reader = reader.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM polls")
                .fetch_one(&reader)
                .await
                .unwrap()
                >= n
        }
    };
    let deadline = Duration::from_secs(20);
    let mut daemon = scanwatch(&config, &["run"], &log).spawn().unwrap();
    assert!(wait_until(deadline, || polls(1)).await, "no first poll");

    let lock = h.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM polls")
        .fetch_one(&reader)
        .await
        .unwrap();
    let renamed = rename_first(&h);
    let refused = wait_until(deadline, || async {
        logged(&log, "poll not recorded; the database refused the write") >= 2
    })
    .await;
    assert!(
        refused,
        "run never met the lock: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "run died of a locked database"
    );
    let during: i64 = sqlx::query_scalar("SELECT count(*) FROM polls")
        .fetch_one(&reader)
        .await
        .unwrap();
    assert_eq!(during, held, "a poll was recorded through the lock");
    lock.rollback().await.unwrap();

    let caught_up = wait_until(deadline, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM profile_changes WHERE kind = 'changed'")
            .fetch_one(&reader)
            .await
            .unwrap()
            >= 1
    })
    .await;
    assert!(caught_up, "the rename was never recorded");
    // SAFETY: kill(2) on the pid of a child this test spawned and still owns.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    assert!(daemon.wait().unwrap().success());

    let changes = change_rows(&reader).await;
    let new: Vec<_> = changes[5..].iter().map(ChangeRow::summary).collect();
    assert_eq!(
        new,
        vec![(
            "changed",
            renamed.as_str(),
            false,
            Some(RENAMED),
            Some(r#"["modifiedTime","profileName"]"#)
        )]
    );
    assert_eq!(
        snapshot_contents(&reader).await,
        served_contents(h.customer_id(), &h.served())
    );
    assert_history_consistent(&reader).await;
}
