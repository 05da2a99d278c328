//! The SQLite database: opening it safely, and writing one poll at a time.
//!
//! Every accepted poll is one write transaction begun with `BEGIN IMMEDIATE`
//! that reads the snapshot, diffs it with [`crate::diff`] and writes the
//! snapshot, the changes, the `polls` row and the customer's state together.
//! Reading the snapshot under the write lock is what makes two processes
//! polling the same customer unable to record a change twice; committing
//! everything at once is what lets a crash at any moment lose nothing (the
//! next poll diffs against the last committed snapshot and finds the change
//! again).
//!
//! An unchanged list is recognised by the SHA-256 of its items, stored while
//! the snapshot mirrors it; such a poll commits with four statements instead
//! of a full diff, because sqlx runs each statement on a worker thread and
//! statement count is what an idle poll costs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection, Transaction};

use crate::config::StorageSettings;
use crate::customer::Customer;
use crate::diff::{self, ChangeKind, Outcome, Previous, Rules, SnapshotEntry, SnapshotOp};
use crate::profile::Profile;
use crate::timestamp;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pages of cache per connection: fixed, so memory stays flat over months.
const CACHE_PAGES: i64 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {} does not exist; check storage.database, or run `scanwatch poll` once to create it",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot create the database folder {}: {source}", path.display())]
    CreateFolder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {}: {source}", path.display())]
    Open { path: PathBuf, source: sqlx::Error },
    #[error(
        "database {} is damaged ({detail}); stop scanwatch and restore it from a backup \
         (`sqlite3 {} \".backup copy.db\"` makes one while scanwatch runs), \
         or move it aside to start a new history",
        path.display(), path.display()
    )]
    Damaged { path: PathBuf, detail: String },
    #[error("cannot update the schema of {}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("stored profile {profile_id} is unreadable: {detail}")]
    StoredProfile { profile_id: String, detail: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether retrying later may succeed (a lock held by another process, a
    /// full disk), as opposed to a broken database.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Sql(_))
    }
}

/// A list the API returned and the poller validated, ready to commit.
#[derive(Debug)]
pub struct AcceptedList<'a> {
    pub customer: &'a Customer,
    pub started_at: String,
    pub http_status: Option<u16>,
    pub profiles: Vec<Profile>,
    pub rules: &'a Rules,
}

/// What a committed poll recorded.
#[derive(Debug)]
pub struct Committed {
    pub poll_id: i64,
    pub finished_at: String,
    pub profiles: usize,
    pub outcome: Outcome,
    /// The customer's consecutive failures before this success.
    pub previous_failures: u32,
}

/// A poll that failed before it had a list.
#[derive(Debug)]
pub struct FailedPoll<'a> {
    pub customer: &'a Customer,
    pub started_at: String,
    pub http_status: Option<u16>,
    pub error: &'a str,
}

/// What a recorded failure left behind.
#[derive(Debug, Clone, Copy)]
pub struct RecordedFailure {
    pub poll_id: i64,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating it and its folder if needed) the database for writing,
    /// checks it with `PRAGMA quick_check` and applies pending migrations.
    pub async fn open(settings: &StorageSettings) -> Result<Store, StoreError> {
        let path = settings.database.clone();
        if let Some(folder) = path.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::CreateFolder {
                path: folder.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(settings.busy_timeout)
            .foreign_keys(true)
            .pragma("cache_size", CACHE_PAGES.to_string());
        // One connection: polls of this process queue for it in the pool
        // rather than in SQLite's busy handler, which sleeps.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(600))
            .connect_with(options)
            .await
            .map_err(|source| classify_open_error(&path, source))?;
        let store = Store { pool, path };
        store.quick_check().await?;
        MIGRATOR
            .run(&store.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: store.path.clone(),
                source,
            })?;
        Ok(store)
    }

    /// Opens an existing database for reading only: `history` and `status`
    /// must never create or migrate one, and can run beside the daemon.
    pub async fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("cache_size", CACHE_PAGES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| classify_open_error(path, source))?;
        Ok(Store {
            pool,
            path: path.to_owned(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn quick_check(&self) -> Result<(), StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&self.pool)
            .await
            .map_err(|source| classify_open_error(&self.path, source))?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Damaged {
                path: self.path.clone(),
                detail: rows.join("; "),
            })
        }
    }

    /// Diffs and commits an accepted list in one `BEGIN IMMEDIATE` transaction.
    pub async fn commit_list(&self, list: AcceptedList<'_>) -> Result<Committed, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let committed = Self::commit_list_on(&mut conn, list).await;
        discard_after_failure(&mut conn, committed.is_err());
        committed
    }

    async fn commit_list_on(
        conn: &mut SqliteConnection,
        list: AcceptedList<'_>,
    ) -> Result<Committed, StoreError> {
        let hash = list_hash(&list.profiles);
        let profiles = list.profiles.len();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let now = timestamp::now();
        let customer_id = list.customer.id.as_str();

        let state = sqlx::query(
            "SELECT empty_streak, list_hash, consecutive_failures FROM customers \
             WHERE customer_id = ?",
        )
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (empty_streak, stored_hash, previous_failures) = match &state {
            Some(row) => (
                row.get::<i64, _>(0) as u32,
                row.get::<Option<Vec<u8>>, _>(1),
                row.get::<i64, _>(2) as u32,
            ),
            None => {
                sqlx::query("INSERT INTO customers (customer_id, name) VALUES (?, ?)")
                    .bind(customer_id)
                    .bind(&list.customer.name)
                    .execute(&mut *tx)
                    .await?;
                (0, None, 0)
            }
        };

        let outcome = if empty_streak == 0 && stored_hash.as_deref() == Some(&hash[..]) {
            Outcome {
                settled: true,
                ..Outcome::default()
            }
        } else {
            let previous = read_previous(&mut tx, customer_id, empty_streak).await?;
            let outcome = diff::diff(&previous, list.profiles, list.rules);
            apply_ops(&mut tx, customer_id, &outcome.ops, &now).await?;
            outcome
        };

        if profiles > 0 {
            sqlx::query(
                "UPDATE profiles SET last_seen_at = ?1 WHERE customer_id = ?2 AND missing_polls = 0",
            )
            .bind(&now)
            .bind(customer_id)
            .execute(&mut *tx)
            .await?;
        }
        let poll_id: i64 = sqlx::query_scalar(
            "INSERT INTO polls (customer_id, started_at, finished_at, outcome, http_status, \
             profiles, added, changed, removed) VALUES (?, ?, ?, 'ok', ?, ?, ?, ?, ?) \
             RETURNING poll_id",
        )
        .bind(customer_id)
        .bind(&list.started_at)
        .bind(&now)
        .bind(list.http_status)
        .bind(profiles as i64)
        .bind(outcome.count(ChangeKind::Added) as i64)
        .bind(outcome.count(ChangeKind::Changed) as i64)
        .bind(outcome.count(ChangeKind::Removed) as i64)
        .fetch_one(&mut *tx)
        .await?;
        insert_changes(&mut tx, customer_id, poll_id, &now, &outcome).await?;
        sqlx::query(
            "UPDATE customers SET name = ?1, first_polled_at = coalesce(first_polled_at, ?2), \
             last_polled_at = ?2, last_success_at = ?2, consecutive_failures = 0, \
             last_error = NULL, empty_streak = ?3, list_hash = ?4 WHERE customer_id = ?5",
        )
        .bind(&list.customer.name)
        .bind(&now)
        .bind(outcome.empty_streak as i64)
        .bind(outcome.settled.then_some(&hash[..]))
        .bind(customer_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        Ok(Committed {
            poll_id,
            finished_at: now,
            profiles,
            outcome,
            previous_failures,
        })
    }

    /// Records a failed poll: its `polls` row and the customer's failure
    /// state, and nothing else.
    pub async fn record_failure(
        &self,
        poll: FailedPoll<'_>,
    ) -> Result<RecordedFailure, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let recorded = Self::record_failure_on(&mut conn, poll).await;
        discard_after_failure(&mut conn, recorded.is_err());
        recorded
    }

    async fn record_failure_on(
        conn: &mut SqliteConnection,
        poll: FailedPoll<'_>,
    ) -> Result<RecordedFailure, StoreError> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let now = timestamp::now();
        let customer_id = poll.customer.id.as_str();
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO customers (customer_id, name, first_polled_at, last_polled_at, \
             consecutive_failures, last_error) VALUES (?1, ?2, ?3, ?3, 1, ?4) \
             ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name, \
             first_polled_at = coalesce(first_polled_at, excluded.first_polled_at), \
             last_polled_at = excluded.last_polled_at, \
             consecutive_failures = consecutive_failures + 1, last_error = excluded.last_error \
             RETURNING consecutive_failures",
        )
        .bind(customer_id)
        .bind(&poll.customer.name)
        .bind(&now)
        .bind(poll.error)
        .fetch_one(&mut *tx)
        .await?;
        let poll_id: i64 = sqlx::query_scalar(
            "INSERT INTO polls (customer_id, started_at, finished_at, outcome, http_status, error) \
             VALUES (?, ?, ?, 'failed', ?, ?) RETURNING poll_id",
        )
        .bind(customer_id)
        .bind(&poll.started_at)
        .bind(&now)
        .bind(poll.http_status)
        .bind(poll.error)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RecordedFailure {
            poll_id,
            consecutive_failures: failures as u32,
        })
    }

    /// Deletes `polls` rows older than `retention` that no change refers to;
    /// the rows behind recorded changes stay for as long as the history.
    pub async fn prune_polls(&self, retention: Duration) -> Result<u64, StoreError> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let result = sqlx::query(
            "DELETE FROM polls WHERE finished_at < ? AND NOT EXISTS \
             (SELECT 1 FROM profile_changes c WHERE c.poll_id = polls.poll_id)",
        )
        .bind(timestamp::format(cutoff))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }

    /// When each customer was last polled, for resuming a schedule.
    pub async fn last_polled(&self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT customer_id, last_polled_at FROM customers")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Closes a connection whose write failed instead of returning it to the
/// pool, which opens a fresh one. SQLite rolls a transaction back by itself
/// on some errors (SQLITE_FULL, SQLITE_IOERR); sqlx's own ROLLBACK then
/// fails, its count of open transactions stays at one, and it would refuse
/// every later `BEGIN IMMEDIATE` on that connection: one full disk would
/// stop all polls until a restart.
fn discard_after_failure(conn: &mut PoolConnection<Sqlite>, failed: bool) {
    if failed {
        conn.close_on_drop();
    }
}

/// The SHA-256 of a list's items, in order, as canonical JSON.
fn list_hash(profiles: &[Profile]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for profile in profiles {
        // serde_json's map keeps keys sorted, so equal objects hash alike.
        hasher.update(profile.raw_json().as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().into()
}

async fn read_previous(
    tx: &mut Transaction<'_, Sqlite>,
    customer_id: &str,
    empty_streak: u32,
) -> Result<Previous, StoreError> {
    let rows = sqlx::query(
        "SELECT profile_id, raw_json, missing_polls FROM profiles \
         WHERE customer_id = ? ORDER BY profile_id",
    )
    .bind(customer_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut snapshot = Vec::with_capacity(rows.len());
    for row in rows {
        let profile_id: String = row.get(0);
        let raw: &str = row.get(1);
        let value = serde_json::from_str(raw).map_err(|e| StoreError::StoredProfile {
            profile_id: profile_id.clone(),
            detail: e.to_string(),
        })?;
        let profile = Profile::parse(0, value).map_err(|e| StoreError::StoredProfile {
            profile_id,
            detail: e.to_string(),
        })?;
        snapshot.push(SnapshotEntry {
            profile,
            missing_polls: row.get::<i64, _>(2) as u32,
        });
    }
    let has_history = if snapshot.is_empty() {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM profile_changes WHERE customer_id = ?)")
            .bind(customer_id)
            .fetch_one(&mut **tx)
            .await?
    } else {
        true
    };
    Ok(Previous {
        snapshot,
        empty_streak,
        has_history,
    })
}

async fn apply_ops(
    tx: &mut Transaction<'_, Sqlite>,
    customer_id: &str,
    ops: &[SnapshotOp],
    now: &str,
) -> Result<(), StoreError> {
    for op in ops {
        match op {
            SnapshotOp::Put(profile) => {
                sqlx::query(
                    "INSERT INTO profiles (customer_id, profile_id, profile_name, scan_mode, \
                     modified_time, raw_json, first_seen_at, last_seen_at, missing_polls) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 0) \
                     ON CONFLICT (customer_id, profile_id) DO UPDATE SET \
                     profile_name = excluded.profile_name, scan_mode = excluded.scan_mode, \
                     modified_time = excluded.modified_time, raw_json = excluded.raw_json, \
                     last_seen_at = excluded.last_seen_at, missing_polls = 0",
                )
                .bind(customer_id)
                .bind(&profile.id)
                .bind(&profile.name)
                .bind(profile.scan_mode)
                .bind(&profile.modified_time)
                .bind(profile.raw_json())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            SnapshotOp::Missing {
                profile_id,
                missing_polls,
            } => {
                sqlx::query(
                    "UPDATE profiles SET missing_polls = ? WHERE customer_id = ? AND profile_id = ?",
                )
                .bind(*missing_polls as i64)
                .bind(customer_id)
                .bind(profile_id)
                .execute(&mut **tx)
                .await?;
            }
            SnapshotOp::Delete { profile_id } => {
                sqlx::query("DELETE FROM profiles WHERE customer_id = ? AND profile_id = ?")
                    .bind(customer_id)
                    .bind(profile_id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn insert_changes(
    tx: &mut Transaction<'_, Sqlite>,
    customer_id: &str,
    poll_id: i64,
    now: &str,
    outcome: &Outcome,
) -> Result<(), StoreError> {
    for change in &outcome.changes {
        let previous = change.previous.as_ref();
        let fields = change
            .changed_fields
            .as_ref()
            .map(|f| serde_json::to_string(f).expect("a list of strings serialises"));
        sqlx::query(
            "INSERT INTO profile_changes (poll_id, customer_id, profile_id, kind, baseline, \
             detected_at, profile_name, scan_mode, modified_time, old_profile_name, \
             old_scan_mode, old_modified_time, changed_fields, raw_json) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(poll_id)
        .bind(customer_id)
        .bind(&change.profile.id)
        .bind(change.kind.as_str())
        .bind(change.baseline)
        .bind(now)
        .bind(&change.profile.name)
        .bind(change.profile.scan_mode)
        .bind(&change.profile.modified_time)
        .bind(previous.and_then(|p| p.name.as_ref()))
        .bind(previous.and_then(|p| p.scan_mode))
        .bind(previous.and_then(|p| p.modified_time.as_ref()))
        .bind(fields)
        .bind(change.profile.raw_json())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Tells a damaged file from an unreachable one, so the message says what to do.
fn classify_open_error(path: &Path, source: sqlx::Error) -> StoreError {
    let damaged = source
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| i64::from_str(&code).ok())
        // SQLITE_CORRUPT and SQLITE_NOTADB, with or without extended bits.
        .is_some_and(|code| matches!(code & 0xff, 11 | 26));
    if damaged {
        StoreError::Damaged {
            path: path.to_owned(),
            detail: source.to_string(),
        }
    } else {
        StoreError::Open {
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
