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
//! sqlx runs every query on the connection's worker thread and hands each
//! statement's result back separately; every hand-off can cost two thread
//! wake-ups, dearer than the SQL itself. So a poll is written in as few
//! queries and statements as the rules allow, each of fixed text, so that
//! its prepared statements are cached:
//! - an unchanged list, recognised by a SHA-256 stored while the snapshot
//!   mirrors the list, is one INSERT of its `polls` row; a trigger on
//!   `polls` keeps the customer's bookkeeping, and no snapshot row is
//!   touched: the `last_seen_at` that every listed profile shares is kept
//!   once per customer (`customers.last_listed_at`) and the public
//!   `profiles` view puts it back on each row;
//! - any other list takes two queries: one that begins the transaction and
//!   reads the customer's state and snapshot as a single row, then the diff
//!   in Rust, then one INSERT into the `poll_writes` view, whose trigger
//!   writes the customer, the snapshot, the `polls` row and the changes
//!   (passed as JSON arrays, so the text never varies), and the commit;
//! - the process remembers each customer's stored digest, read when the
//!   store opens and kept as it writes, so a list it knows to differ skips
//!   the one-INSERT attempt. The memory only chooses which query to try
//!   first: the INSERT checks the stored digest itself, and the diff is
//!   right whatever the database holds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, SqliteConnection};
use tokio::sync::watch;

use crate::config::StorageSettings;
use crate::customer::Customer;
use crate::diff::{self, Change, ChangeKind, Outcome, Previous, Rules, SnapshotEntry, SnapshotOp};
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
    #[error("the stored snapshot is unreadable: {0}")]
    StoredSnapshot(String),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database {} was not written: its check at start did not pass", path.display())]
    Unchecked { path: PathBuf },
    #[error(
        "database {} was deleted or replaced since scanwatch opened it, so what it \
         records goes to a file nobody can read; restart scanwatch to write to the file \
         at that path",
        path.display()
    )]
    Replaced { path: PathBuf },
}

impl StoreError {
    /// Whether retrying later may succeed (a lock held by another process, a
    /// full disk), as opposed to a broken database.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Sql(_))
    }
}

/// The `PRAGMA quick_check` and migrations of a store opened with
/// [`Store::open_checking`].
#[derive(Debug)]
pub struct StartupCheck {
    store: Store,
    passed: watch::Sender<bool>,
}

impl StartupCheck {
    /// Checks and migrates the database, then lets writes through.
    pub async fn run(&self) -> Result<(), StoreError> {
        self.store.check_and_migrate().await?;
        self.passed.send_replace(true);
        Ok(())
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
    /// The connection every write of this process goes through, taken out
    /// of the pool at the first write and kept: polls queue for it here
    /// rather than in SQLite's busy handler, which sleeps, and a pool would
    /// ping a connection (a round trip to its worker thread) each time one
    /// is handed back. Empty again after a failed write: see
    /// [`WriteConnection`].
    writer: Arc<tokio::sync::Mutex<Writer>>,
    path: PathBuf,
    /// Set by [`Store::open_checking`]: true once the start-up check and the
    /// migrations passed; writes wait for it.
    checked: Option<watch::Receiver<bool>>,
    /// The file `path` named when the store opened it. SQLite goes on
    /// writing to an open file after it is deleted or replaced (a backup
    /// restored over it while the service runs), and every later poll would
    /// commit into a file no reader finds; [`Store::file_replaced`] compares
    /// this with what the path names now.
    file: Option<FileIdentity>,
}

/// A file's device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// Elsewhere the check is off: a store opened without an identity never
    /// counts as replaced.
    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<FileIdentity> {
        None
    }
}

impl Store {
    /// Opens (creating it and its folder if needed) the database for writing,
    /// checks it with `PRAGMA quick_check` and applies pending migrations.
    pub async fn open(settings: &StorageSettings) -> Result<Store, StoreError> {
        let store = Self::connect(settings).await?;
        store.check_and_migrate().await?;
        Ok(store)
    }

    /// [`Store::open`] that returns before the check and the migrations,
    /// which [`StartupCheck::run`] does: writes wait until it has passed, and
    /// fail with [`StoreError::Unchecked`] once the [`StartupCheck`] is
    /// dropped without passing. `poll` fetches while a large database is
    /// checked (a second or more at 200 MB), so that the check does not add
    /// to the cycle; nothing is written before it passes.
    pub async fn open_checking(
        settings: &StorageSettings,
    ) -> Result<(Store, StartupCheck), StoreError> {
        let unchecked = Self::connect(settings).await?;
        let (passed, checked) = watch::channel(false);
        let store = Store {
            checked: Some(checked),
            ..unchecked.clone()
        };
        Ok((
            store,
            StartupCheck {
                store: unchecked,
                passed,
            },
        ))
    }

    async fn connect(settings: &StorageSettings) -> Result<Store, StoreError> {
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
        // The pool serves the start-up check, the migrations and reads; the
        // writer takes its connection out of it. No ping before each
        // acquire: the connection is in-process, and a dead worker fails the
        // query itself just as clearly.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(600))
            .after_connect(|connection, _| Box::pin(keep_wal_files(connection)))
            .connect_with(options)
            .await
            .map_err(|source| classify_open_error(&path, source))?;
        // The pool's connection is open, so the file exists.
        let file = FileIdentity::of(&path);
        Ok(Store {
            pool,
            writer: Arc::default(),
            path,
            checked: None,
            file,
        })
    }

    async fn check_and_migrate(&self) -> Result<(), StoreError> {
        self.quick_check().await?;
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: self.path.clone(),
                source,
            })?;
        self.recall_stored_digests().await
    }

    /// Fills the writer's memory of stored digests from `customers`, so that
    /// a process's first poll of a customer whose list changed goes straight
    /// to the diff, as its later polls do, instead of first trying the one
    /// INSERT of an unchanged list. Each `scanwatch poll` is such a first
    /// poll for every customer. A customer with a failure or an empty list
    /// pending is remembered as `None`: the one INSERT cannot clear those.
    /// Another process may write after this read; the memory only picks
    /// which query runs first, and both check what the file holds.
    async fn recall_stored_digests(&self) -> Result<(), StoreError> {
        // One row for all customers, not a row each: sqlx hands each row
        // across from its worker thread, which at 10,000 customers cost more
        // than the parse. Plain separators suffice, since the IDs scanwatch
        // stores are GUIDs (others are skipped); `hex(NULL)` is ''.
        let listed: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(customer_id || ' ' || hex(substr(CASE \
             WHEN empty_streak = 0 AND consecutive_failures = 0 THEN list_hash END, 1, 8)), ',') \
             FROM customers",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut digests = StoredDigests::default();
        for entry in listed.as_deref().unwrap_or_default().split(',') {
            if let Some((customer_id, prefix)) = entry.split_once(' ') {
                digests.set(customer_id, u64::from_str_radix(prefix, 16).ok());
            }
        }
        self.writer.lock().await.stored_digests = digests;
        Ok(())
    }

    /// Waits until the start-up check of [`Store::open_checking`] passed.
    async fn writable(&self) -> Result<(), StoreError> {
        let Some(checked) = &self.checked else {
            return Ok(());
        };
        if *checked.borrow() {
            return Ok(());
        }
        match checked.clone().wait_for(|passed| *passed).await {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::Unchecked {
                path: self.path.clone(),
            }),
        }
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
            writer: Arc::default(),
            path: path.to_owned(),
            checked: None,
            file: FileIdentity::of(path),
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
        let hash = list_hash(&list.profiles);
        self.commit_list_hashed(list, hash).await
    }

    /// [`Store::commit_list`] for a list whose digest the caller already
    /// took, such as the SHA-256 of the response bodies it was parsed from:
    /// equal digests must mean equal lists, nothing more is assumed.
    pub async fn commit_list_hashed(
        &self,
        list: AcceptedList<'_>,
        hash: [u8; 32],
    ) -> Result<Committed, StoreError> {
        let mut conn = self.write_connection().await?;
        let customer_id = list.customer.id.as_str();
        let worth_trying = conn.slot.stored_digests.worth_trying(customer_id, &hash);
        let unchanged = if worth_trying {
            commit_unchanged(conn.get(), &list, &hash).await
        } else {
            Ok(None)
        };
        let committed = match unchanged {
            Ok(Some(committed)) => Ok((committed, Some(hash))),
            Ok(None) => commit_changed(conn.get(), list, &hash).await,
            Err(error) => Err(error),
        };
        match committed {
            Ok((committed, stored)) => {
                let stored = stored.as_ref().map(digest_prefix);
                conn.slot.stored_digests.set(customer_id, stored);
                conn.release();
                Ok(committed)
            }
            Err(error) => {
                conn.slot.stored_digests.forget(customer_id);
                Err(error)
            }
        }
    }

    /// Records a failed poll: its `polls` row and the customer's failure
    /// state, and nothing else.
    pub async fn record_failure(
        &self,
        poll: FailedPoll<'_>,
    ) -> Result<RecordedFailure, StoreError> {
        let mut conn = self.write_connection().await?;
        let customer_id = poll.customer.id.as_str();
        let recorded = Self::record_failure_on(conn.get(), poll).await;
        match &recorded {
            // The stored digest stays, but an unchanged list cannot be
            // committed by the one INSERT until a success clears the failure.
            Ok(_) => {
                conn.slot.stored_digests.set(customer_id, None);
                conn.release();
            }
            Err(_) => conn.slot.stored_digests.forget(customer_id),
        }
        recorded
    }

    /// Runs one statement on the connection that writes and returns the
    /// first column of its first row, if any. For tests that change that
    /// connection's own settings: `PRAGMA max_page_count` makes a full disk.
    #[doc(hidden)]
    pub async fn execute_on_writer(&self, sql: &str) -> Result<Option<i64>, StoreError> {
        let mut conn = self.write_connection().await?;
        let value = sqlx::query_scalar(sql).fetch_optional(conn.get()).await?;
        conn.release();
        Ok(value)
    }

    /// Locks the write connection, opening it first if need be, once the
    /// start-up check has passed.
    async fn write_connection(&self) -> Result<WriteConnection<'_>, StoreError> {
        self.writable().await?;
        let mut slot = self.writer.lock().await;
        if slot.connection.is_none() {
            slot.connection = Some(self.pool.acquire().await?.detach());
        }
        Ok(WriteConnection {
            slot,
            finished: false,
        })
    }

    async fn record_failure_on(
        conn: &mut SqliteConnection,
        poll: FailedPoll<'_>,
    ) -> Result<RecordedFailure, StoreError> {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let now = timestamp::now();
        let customer_id = poll.customer.id.as_str();
        sqlx::query(
            "INSERT INTO customers (customer_id, name) VALUES (?, ?) \
             ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name",
        )
        .bind(customer_id)
        .bind(&poll.customer.name)
        .execute(&mut *tx)
        .await?;
        // The trigger on `polls` counts the failure and keeps the error.
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
        let failures: i64 =
            sqlx::query_scalar("SELECT consecutive_failures FROM customers WHERE customer_id = ?")
                .bind(customer_id)
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
        let mut conn = self.write_connection().await?;
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let result = sqlx::query(
            "DELETE FROM polls WHERE finished_at < ? AND NOT EXISTS \
             (SELECT 1 FROM profile_changes c WHERE c.poll_id = polls.poll_id)",
        )
        .bind(timestamp::format(cutoff))
        .execute(conn.get())
        .await?;
        conn.release();
        Ok(result.rows_affected())
    }

    /// When each customer was last polled, for resuming a schedule.
    pub async fn last_polled(&self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT customer_id, last_polled_at FROM customers")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every customer's poll state and snapshot size, for the metrics of a
    /// daemon that starts or reloads.
    pub async fn customer_states(&self) -> Result<Vec<CustomerState>, StoreError> {
        let rows = sqlx::query(
            "SELECT customer_id, last_success_at, first_polled_at, consecutive_failures, \
             (SELECT COUNT(*) FROM profile_snapshot p WHERE p.customer_id = c.customer_id) \
             FROM customers c",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| CustomerState {
                customer_id: r.get(0),
                last_success_at: r.get(1),
                first_polled_at: r.get(2),
                consecutive_failures: r.get::<i64, _>(3) as u32,
                profiles: r.get::<i64, _>(4) as u64,
            })
            .collect())
    }

    /// Whether the file at the database's path is no longer the one this
    /// store opened: deleted, or replaced by a rename (a restored backup).
    pub fn file_replaced(&self) -> bool {
        self.file.is_some() && FileIdentity::of(&self.path) != self.file
    }

    /// Whether the database answers a query that reads it, and is still the
    /// file its path names, for the health endpoint.
    pub async fn ping(&self) -> Result<(), StoreError> {
        if self.file_replaced() {
            return Err(StoreError::Replaced {
                path: self.path.clone(),
            });
        }
        sqlx::query("SELECT 1 FROM customers LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(())
    }

    /// Bytes the database takes on disk: the file and its write-ahead log.
    pub fn size_on_disk(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        [self.path.as_os_str(), wal.as_os_str()]
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    pub async fn close(&self) {
        if let Some(writer) = self.writer.lock().await.connection.take() {
            if let Err(error) = writer.close().await {
                tracing::warn!(error = %error, "closing the database connection failed");
            }
        }
        self.pool.close().await;
    }
}

/// A customer's row in `customers`, with the size of its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerState {
    pub customer_id: String,
    pub last_success_at: Option<String>,
    pub first_polled_at: Option<String>,
    pub consecutive_failures: u32,
    pub profiles: u64,
}

/// The write connection, locked for one write, which may leave it inside a
/// transaction sqlx does not know of (the poll queries begin and commit
/// their own). Unless [`WriteConnection::release`] says the write finished,
/// the connection is dropped, which closes it and so rolls back whatever it
/// had begun; the next write opens a fresh one. That covers a poll future
/// dropped between two round trips (an abandoned poll at shutdown), and
/// errors after which SQLite rolled back by itself (SQLITE_FULL,
/// SQLITE_IOERR): sqlx's own ROLLBACK then fails, its count of open
/// transactions stays at one, and it would refuse every later `BEGIN
/// IMMEDIATE` on that connection, so one full disk would stop all polls
/// until a restart.
struct WriteConnection<'a> {
    slot: tokio::sync::MutexGuard<'a, Writer>,
    finished: bool,
}

/// What the process's writes share: the connection, and what it last wrote.
#[derive(Debug, Default)]
struct Writer {
    connection: Option<SqliteConnection>,
    stored_digests: StoredDigests,
}

/// What the writer knows of each customer's stored `list_hash`, read at
/// start-up and kept as it writes, so that a list known to differ skips the
/// one INSERT of an unchanged poll. It holds every customer in the database
/// and those polled since, so each entry is small: the GUID as 16 bytes and
/// the digest's first 8 bytes. A prefix is enough because this only picks
/// the first query; the INSERT compares the whole digest.
#[derive(Debug, Default, PartialEq)]
struct StoredDigests(HashMap<uuid::Uuid, Option<u64>>);

impl StoredDigests {
    /// Whether the one INSERT may succeed: the customer is unknown (new, or
    /// its last write failed) or its stored digest is this list's.
    fn worth_trying(&self, customer_id: &str, hash: &[u8; 32]) -> bool {
        self.get(customer_id)
            .is_none_or(|stored| stored == Some(digest_prefix(hash)))
    }

    /// `None` when unknown; `Some(None)` when the stored digest is NULL, or
    /// a failure or an empty list is pending, which the one INSERT will not
    /// clear.
    fn get(&self, customer_id: &str) -> Option<Option<u64>> {
        let id = uuid::Uuid::try_parse(customer_id).ok()?;
        self.0.get(&id).copied()
    }

    fn set(&mut self, customer_id: &str, prefix: Option<u64>) {
        if let Ok(id) = uuid::Uuid::try_parse(customer_id) {
            self.0.insert(id, prefix);
        }
    }

    fn forget(&mut self, customer_id: &str) {
        if let Ok(id) = uuid::Uuid::try_parse(customer_id) {
            self.0.remove(&id);
        }
    }
}

/// The first 8 bytes of a digest, read as SQLite's `hex()` writes them.
fn digest_prefix(hash: &[u8; 32]) -> u64 {
    let mut prefix = [0; 8];
    prefix.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(prefix)
}

impl WriteConnection<'_> {
    fn get(&mut self) -> &mut SqliteConnection {
        self.slot
            .connection
            .as_mut()
            .expect("opened by write_connection")
    }

    fn release(mut self) {
        self.finished = true;
    }
}

impl Drop for WriteConnection<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.slot.connection.take();
        }
    }
}

/// The SHA-256 of a list's items, in order, as canonical JSON.
pub fn list_hash(profiles: &[Profile]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for profile in profiles {
        // serde_json's map keeps keys sorted, so equal objects hash alike.
        hasher.update(profile.raw_json().as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().into()
}

/// The whole poll of an unchanged list: a single INSERT of its `polls` row,
/// which inserts nothing unless the snapshot is known to mirror the list
/// whose digest is `:hash` (the stored digest matches, no empty list is
/// pending, no failure has to be cleared, the name is current). The
/// customer's bookkeeping follows from the `polls_keep_customer_state`
/// trigger in the same statement. A lone write statement takes SQLite's
/// write lock before it reads, as `BEGIN IMMEDIATE` does, so the condition
/// is checked under the lock; and it is one hand-off to sqlx's worker, with
/// one result back.
static COMMIT_UNCHANGED: LazyLock<Named> = LazyLock::new(|| {
    Named::new(
        "INSERT INTO polls (customer_id, started_at, finished_at, outcome, http_status, \
         profiles) SELECT :customer, :started, :now, 'ok', :status, :profiles \
         FROM customers WHERE customer_id = :customer AND list_hash = :hash \
         AND empty_streak = 0 AND consecutive_failures = 0 AND name IS :name",
    )
});

/// Commits `list` if the stored digest says the snapshot already mirrors
/// it; `None` when a full diff is needed.
async fn commit_unchanged(
    conn: &mut SqliteConnection,
    list: &AcceptedList<'_>,
    hash: &[u8; 32],
) -> Result<Option<Committed>, StoreError> {
    let now = timestamp::now();
    let result = COMMIT_UNCHANGED
        .query(&[
            ("customer", Arg::Text(Some(list.customer.id.as_str()))),
            ("name", Arg::Text(list.customer.name.as_deref())),
            ("now", Arg::Text(Some(&now))),
            ("started", Arg::Text(Some(&list.started_at))),
            ("status", Arg::Int(list.http_status.map(i64::from))),
            ("profiles", Arg::Int(Some(list.profiles.len() as i64))),
            ("hash", Arg::Blob(Some(&hash[..]))),
        ])
        .execute(&mut *conn)
        .await?;
    if result.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(Some(Committed {
        poll_id: result.last_insert_rowid(),
        finished_at: now,
        profiles: list.profiles.len(),
        outcome: Outcome {
            settled: true,
            ..Outcome::default()
        },
        previous_failures: 0,
    }))
}

/// Begins the transaction and reads, under its write lock, the customer's
/// state and its snapshot as one row: NULL state columns when the customer
/// has no row yet, the snapshot as a JSON array of `[profile_id, raw_json,
/// missing_polls]`, and the ID the poll will get (what AUTOINCREMENT would
/// choose; exact because the write lock is held until the commit).
///
/// Whether the customer has history needs the change log's index only when
/// the snapshot is empty (a `CASE` evaluates only the branch it takes),
/// which saves a random page of that index on most polls that changed. One
/// row rather than one per profile because sqlx hands every row across from
/// its worker thread separately, and each hand-off can cost a thread
/// wake-up that is dearer than reading the row.
const READ_PREVIOUS: &str = "BEGIN IMMEDIATE;\
     SELECT c.empty_streak, c.consecutive_failures, c.last_listed_at, \
     CASE WHEN EXISTS (SELECT 1 FROM profile_snapshot WHERE customer_id = ?1) THEN 1 \
     ELSE EXISTS (SELECT 1 FROM profile_changes WHERE customer_id = ?1) END, \
     (SELECT json_group_array(json_array(p.profile_id, p.raw_json, p.missing_polls) \
     ORDER BY p.profile_id) FROM profile_snapshot AS p WHERE p.customer_id = ?1), \
     max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'polls'), 0), \
     coalesce((SELECT max(poll_id) FROM polls), 0)) + 1 \
     FROM (SELECT ?1 AS id) AS k \
     LEFT JOIN customers AS c ON c.customer_id = k.id;";

/// Writes a diffed poll and commits: one row into the `poll_writes` view,
/// whose trigger (`poll_writes_apply`) writes the customer, the snapshot,
/// the poll and its changes. One statement instead of one per table,
/// because every statement's result is a hand-off back from sqlx's worker
/// thread. The snapshot writes and the changes come as JSON arrays, so the
/// text never varies with how much changed and is prepared once.
static WRITE_CHANGED: LazyLock<Named> = LazyLock::new(|| {
    Named::new(
        "INSERT INTO poll_writes (poll_id, customer_id, name, empty_streak, list_hash, \
         started_at, finished_at, http_status, profiles, added, changed, removed, listed, \
         puts, missing, deletes, changes) \
         VALUES (:poll, :customer, :name, :empty_streak, :hash, :started, :now, :status, \
         :profiles, :added, :changed, :removed, :listed, :puts, :missing, :deletes, \
         :changes);\
         COMMIT;",
    )
});

/// Reads the snapshot, diffs `list` against it and writes the outcome, in
/// one transaction of two round trips. Returns with it the `list_hash` now
/// stored: `hash` when the snapshot mirrors the list, else none.
async fn commit_changed(
    conn: &mut SqliteConnection,
    list: AcceptedList<'_>,
    hash: &[u8; 32],
) -> Result<(Committed, Option<[u8; 32]>), StoreError> {
    let customer_id = list.customer.id.as_str();
    let profiles = list.profiles.len();
    let rows = sqlx::query(READ_PREVIOUS)
        .bind(customer_id)
        .fetch_all(&mut *conn)
        .await?;
    let Some(row) = rows.first() else {
        return Err(sqlx::Error::RowNotFound.into());
    };
    let PreviousState {
        previous,
        failures: previous_failures,
        listed,
        poll_id,
    } = read_previous(row)?;
    let outcome = diff::diff(&previous, list.profiles, list.rules);

    let now = timestamp::now();
    let count = |kind| Arg::Int(Some(outcome.count(kind) as i64));
    let puts = snapshot_json(&outcome.ops, OpKind::Put);
    let missing = snapshot_json(&outcome.ops, OpKind::Missing);
    let deletes = snapshot_json(&outcome.ops, OpKind::Delete);
    let changes = changes_json(&outcome.changes);
    WRITE_CHANGED
        .query(&[
            ("poll", Arg::Int(Some(poll_id))),
            ("customer", Arg::Text(Some(customer_id))),
            ("name", Arg::Text(list.customer.name.as_deref())),
            ("now", Arg::Text(Some(&now))),
            ("started", Arg::Text(Some(&list.started_at))),
            ("status", Arg::Int(list.http_status.map(i64::from))),
            ("profiles", Arg::Int(Some(profiles as i64))),
            ("added", count(ChangeKind::Added)),
            ("changed", count(ChangeKind::Changed)),
            ("removed", count(ChangeKind::Removed)),
            (
                "empty_streak",
                Arg::Int(Some(i64::from(outcome.empty_streak))),
            ),
            ("hash", Arg::Blob(outcome.settled.then_some(&hash[..]))),
            ("listed", Arg::Text(listed.as_deref())),
            ("puts", Arg::Text(Some(&puts))),
            ("missing", Arg::Text(Some(&missing))),
            ("deletes", Arg::Text(Some(&deletes))),
            ("changes", Arg::Text(Some(&changes))),
        ])
        .execute(&mut *conn)
        .await?;

    let stored = outcome.settled.then_some(*hash);
    let committed = Committed {
        poll_id,
        finished_at: now,
        profiles,
        outcome,
        previous_failures,
    };
    Ok((committed, stored))
}

/// A multi-statement query written with `:name` parameters, rewritten to
/// plain `?` ones bound in order of appearance. sqlx binds numbered
/// parameters (`?3`) across statements only when every statement uses each
/// number below its largest; these statements do not, and names read better.
struct Named {
    sql: String,
    order: Vec<String>,
}

/// A value for a [`Named`] parameter.
#[derive(Clone, Copy)]
enum Arg<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Blob(Option<&'a [u8]>),
}

impl Named {
    fn new(template: &str) -> Named {
        let mut sql = String::with_capacity(template.len());
        let mut order = Vec::new();
        let mut rest = template;
        while let Some(at) = rest.find(':') {
            sql.push_str(&rest[..at]);
            let name_len = rest[at + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - at - 1);
            order.push(rest[at + 1..at + 1 + name_len].to_owned());
            sql.push('?');
            rest = &rest[at + 1 + name_len..];
        }
        sql.push_str(rest);
        Named { sql, order }
    }

    /// The query with `args` bound; every name used must be given.
    fn query<'q>(
        &'q self,
        args: &[(&str, Arg<'q>)],
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        let mut query = sqlx::query(&self.sql);
        for name in &self.order {
            let arg = args
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, arg)| *arg)
                .unwrap_or_else(|| panic!("no value for :{name}"));
            query = match arg {
                Arg::Text(v) => query.bind(v),
                Arg::Int(v) => query.bind(v),
                Arg::Blob(v) => query.bind(v),
            };
        }
        query
    }
}

/// What [`READ_PREVIOUS`] read: the snapshot and state the diff needs, the
/// customer's consecutive failures before this poll, its `last_listed_at`,
/// and the ID this poll's row will have.
struct PreviousState {
    previous: Previous,
    failures: u32,
    listed: Option<String>,
    poll_id: i64,
}

fn read_previous(row: &SqliteRow) -> Result<PreviousState, StoreError> {
    let empty_streak = row.try_get::<Option<i64>, _>(0)?.unwrap_or(0) as u32;
    let failures = row.try_get::<Option<i64>, _>(1)?.unwrap_or(0) as u32;
    let listed = row.try_get::<Option<String>, _>(2)?;
    let has_history = row.try_get::<bool, _>(3)?;
    let stored: &str = row.try_get(4)?;
    let poll_id: i64 = row.try_get(5)?;
    let stored: Vec<(String, String, u32)> =
        serde_json::from_str(stored).map_err(|e| StoreError::StoredSnapshot(e.to_string()))?;
    let mut snapshot = Vec::with_capacity(stored.len());
    for (profile_id, raw, missing_polls) in stored {
        let value = serde_json::from_str(&raw).map_err(|e| StoreError::StoredProfile {
            profile_id: profile_id.clone(),
            detail: e.to_string(),
        })?;
        let profile = Profile::parse(0, value).map_err(|e| StoreError::StoredProfile {
            profile_id,
            detail: e.to_string(),
        })?;
        snapshot.push(SnapshotEntry {
            profile,
            missing_polls,
        });
    }
    let previous = Previous {
        has_history: has_history || !snapshot.is_empty(),
        snapshot,
        empty_streak,
    };
    Ok(PreviousState {
        previous,
        failures,
        listed,
        poll_id,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum OpKind {
    Put,
    Missing,
    Delete,
}

impl OpKind {
    fn of(op: &SnapshotOp) -> OpKind {
        match op {
            SnapshotOp::Put(_) => OpKind::Put,
            SnapshotOp::Missing { .. } => OpKind::Missing,
            SnapshotOp::Delete { .. } => OpKind::Delete,
        }
    }
}

/// The snapshot writes of one kind as a JSON array `poll_writes` reads.
fn snapshot_json(ops: &[SnapshotOp], kind: OpKind) -> String {
    let rows: Vec<serde_json::Value> = ops
        .iter()
        .filter(|op| OpKind::of(op) == kind)
        .map(|op| match op {
            SnapshotOp::Put(p) => {
                serde_json::json!([p.id, p.name, p.scan_mode, p.modified_time, p.raw_json()])
            }
            SnapshotOp::Missing {
                profile_id,
                missing_polls,
            } => serde_json::json!([profile_id, missing_polls]),
            SnapshotOp::Delete { profile_id } => serde_json::json!(profile_id),
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// The changes, in order, as the JSON array `poll_writes` reads.
fn changes_json(changes: &[Change]) -> String {
    let rows: Vec<serde_json::Value> = changes
        .iter()
        .map(|change| {
            let previous = change.previous.as_ref();
            let fields = change
                .changed_fields
                .as_ref()
                .map(|f| serde_json::to_string(f).expect("a list of strings serialises"));
            serde_json::json!([
                change.profile.id,
                change.kind.as_str(),
                i64::from(change.baseline),
                change.profile.name,
                change.profile.scan_mode,
                change.profile.modified_time,
                previous.and_then(|p| p.name.as_ref()),
                previous.and_then(|p| p.scan_mode),
                previous.and_then(|p| p.modified_time.as_ref()),
                fields,
                change.profile.raw_json(),
            ])
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Asks SQLite to keep the `-wal` and `-shm` files when this connection, the
/// last one, closes (`SQLITE_FCNTL_PERSIST_WAL`), instead of deleting them.
///
/// A WAL database can be opened read-only only while those files exist or
/// can be created. The service's state folder is writable by the service
/// alone, so without them an admin in its group could run `scanwatch
/// history` or `sqlite3` only while the service runs.
async fn keep_wal_files(connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    use std::ffi::c_int;

    let mut handle = connection.lock_handle().await?;
    let mut keep: c_int = 1;
    // SAFETY: the handle is an open connection, locked for the length of
    // this call; SQLite reads and writes `keep`, a live c_int, only within it.
    let code = unsafe {
        libsqlite3_sys::sqlite3_file_control(
            handle.as_raw_handle().as_ptr(),
            c"main".as_ptr(),
            libsqlite3_sys::SQLITE_FCNTL_PERSIST_WAL,
            (&mut keep as *mut c_int).cast(),
        )
    };
    if code != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Protocol(format!(
            "cannot ask SQLite to keep the WAL files (code {code})"
        )));
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
