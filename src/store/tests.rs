use super::*;
use crate::customer::CustomerId;
use serde_json::json;

const CUSTOMER: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";
const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    customer: Customer,
    rules: Rules,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let settings = StorageSettings {
        database: dir.path().join("nested/scanwatch.db"),
        busy_timeout: Duration::from_secs(5),
        poll_retention: Duration::from_secs(3600),
    };
    let store = Store::open(&settings).await.unwrap();
    Fixture {
        _dir: dir,
        store,
        customer: Customer {
            id: CustomerId::parse(CUSTOMER).unwrap(),
            name: Some("Contoso".into()),
        },
        rules: Rules::default(),
    }
}

fn profile(id: &str, name: &str, mode: i64, time: &str) -> Profile {
    Profile::parse(
        0,
        json!({"profileId": id, "profileName": name, "scanMode": mode, "modifiedTime": time}),
    )
    .unwrap()
}

impl Fixture {
    async fn commit(&self, profiles: Vec<Profile>) -> Committed {
        self.commit_on(&self.store, profiles).await
    }

    async fn commit_on(&self, store: &Store, profiles: Vec<Profile>) -> Committed {
        self.commit_on_for(store, &self.customer, profiles).await
    }

    async fn commit_on_for(
        &self,
        store: &Store,
        customer: &Customer,
        profiles: Vec<Profile>,
    ) -> Committed {
        store
            .commit_list(AcceptedList {
                customer,
                started_at: timestamp::now(),
                http_status: Some(200),
                profiles,
                rules: &self.rules,
            })
            .await
            .unwrap()
    }

    /// Records a failed poll, as a 503 after retries would be.
    async fn fail(&self) -> RecordedFailure {
        self.store
            .record_failure(FailedPoll {
                customer: &self.customer,
                started_at: timestamp::now(),
                http_status: Some(503),
                error: "503 from the API",
            })
            .await
            .unwrap()
    }

    async fn changes(&self) -> Vec<(String, String, i64)> {
        sqlx::query_as("SELECT kind, profile_id, baseline FROM profile_changes ORDER BY change_id")
            .fetch_all(self.store.pool())
            .await
            .unwrap()
    }

    async fn snapshot(&self) -> Vec<(String, Option<String>, String)> {
        sqlx::query_as(
            "SELECT profile_id, profile_name, raw_json FROM profiles ORDER BY profile_id",
        )
        .fetch_all(self.store.pool())
        .await
        .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_first_list_is_recorded_as_baseline_additions() {
    let f = fixture().await;
    let committed = f
        .commit(vec![
            profile(A, "One", 0, "2025-01-01T00:00:00Z"),
            profile(B, "Two", 1, "2025-01-01T00:00:00Z"),
        ])
        .await;
    assert_eq!(committed.outcome.changes.len(), 2);
    assert_eq!(
        f.changes().await,
        vec![("added".into(), A.into(), 1), ("added".into(), B.into(), 1)]
    );
    let (outcome, added, profiles): (String, i64, i64) =
        sqlx::query_as("SELECT outcome, added, profiles FROM polls WHERE poll_id = ?")
            .bind(committed.poll_id)
            .fetch_one(f.store.pool())
            .await
            .unwrap();
    assert_eq!((outcome.as_str(), added, profiles), ("ok", 2, 2));
    let (name, failures): (Option<String>, i64) =
        sqlx::query_as("SELECT name, consecutive_failures FROM customers WHERE customer_id = ?")
            .bind(CUSTOMER)
            .fetch_one(f.store.pool())
            .await
            .unwrap();
    assert_eq!((name.as_deref(), failures), (Some("Contoso"), 0));
}

#[tokio::test]
async fn the_same_list_twice_records_nothing_the_second_time() {
    let f = fixture().await;
    let list = vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")];
    f.commit(list.clone()).await;
    let snapshot_before = f.snapshot().await;
    let second = f.commit(list).await;
    assert!(second.outcome.changes.is_empty());
    assert_eq!(f.changes().await.len(), 1);
    assert_eq!(f.snapshot().await, snapshot_before);
    assert_eq!(f.count("polls").await, 2);
}

#[tokio::test]
async fn a_change_a_removal_and_a_readdition_are_recorded_in_order() {
    let f = fixture().await;
    f.commit(vec![
        profile(A, "One", 0, "2025-01-01T00:00:00Z"),
        profile(B, "Two", 1, "2025-01-01T00:00:00Z"),
    ])
    .await;
    f.commit(vec![profile(A, "Uno", 0, "2025-01-02T00:00:00Z")])
        .await;
    f.commit(vec![
        profile(A, "Uno", 0, "2025-01-02T00:00:00Z"),
        profile(B, "Two", 1, "2025-01-01T00:00:00Z"),
    ])
    .await;

    assert_eq!(
        f.changes().await,
        vec![
            ("added".into(), A.into(), 1),
            ("added".into(), B.into(), 1),
            ("changed".into(), A.into(), 0),
            ("removed".into(), B.into(), 0),
            ("added".into(), B.into(), 0),
        ]
    );
    let (fields, old_name, new_name): (String, String, String) = sqlx::query_as(
        "SELECT changed_fields, old_profile_name, profile_name FROM profile_changes \
         WHERE kind = 'changed'",
    )
    .fetch_one(f.store.pool())
    .await
    .unwrap();
    assert_eq!(fields, r#"["modifiedTime","profileName"]"#);
    assert_eq!((old_name.as_str(), new_name.as_str()), ("One", "Uno"));
    let (removed_name, removed_fields): (String, Option<String>) = sqlx::query_as(
        "SELECT profile_name, changed_fields FROM profile_changes WHERE kind = 'removed'",
    )
    .fetch_one(f.store.pool())
    .await
    .unwrap();
    assert_eq!((removed_name.as_str(), removed_fields), ("Two", None));
}

#[tokio::test]
async fn a_formatting_change_refreshes_raw_json_without_a_change() {
    let f = fixture().await;
    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    f.commit(vec![profile(
        &A.to_uppercase(),
        "One",
        0,
        "2025-01-01T00:00:00.000Z",
    )])
    .await;
    assert_eq!(f.changes().await.len(), 1);
    let snapshot = f.snapshot().await;
    assert!(
        snapshot[0].2.contains("2025-01-01T00:00:00.000Z"),
        "{:?}",
        snapshot
    );
    assert_eq!(snapshot[0].0, A);
}

#[tokio::test]
async fn an_empty_list_is_held_then_removes_everything() {
    let f = fixture().await;
    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    let held = f.commit(vec![]).await;
    assert!(held.outcome.changes.is_empty());
    assert_eq!(f.snapshot().await.len(), 1);
    let streak: i64 = sqlx::query_scalar("SELECT empty_streak FROM customers")
        .fetch_one(f.store.pool())
        .await
        .unwrap();
    assert_eq!(streak, 1);

    f.commit(vec![]).await;
    assert!(f.snapshot().await.is_empty());
    assert_eq!(f.changes().await.last().unwrap().0, "removed");
}

#[tokio::test]
async fn a_failure_touches_only_its_poll_row_and_the_customer_state() {
    let f = fixture().await;
    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    let snapshot = f.snapshot().await;
    let changes = f.changes().await;
    for expected in 1..=2 {
        let recorded = f.fail().await;
        assert_eq!(recorded.consecutive_failures, expected);
    }
    assert_eq!(f.snapshot().await, snapshot);
    assert_eq!(f.changes().await, changes);
    let (failures, error): (i64, String) =
        sqlx::query_as("SELECT consecutive_failures, last_error FROM customers")
            .fetch_one(f.store.pool())
            .await
            .unwrap();
    assert_eq!((failures, error.as_str()), (2, "503 from the API"));

    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    let failures: i64 = sqlx::query_scalar("SELECT consecutive_failures FROM customers")
        .fetch_one(f.store.pool())
        .await
        .unwrap();
    assert_eq!(failures, 0);
}

#[tokio::test]
async fn the_change_log_refuses_updates_and_deletes() {
    let f = fixture().await;
    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    for sql in [
        "UPDATE profile_changes SET profile_name = 'x'",
        "DELETE FROM profile_changes",
    ] {
        let err = sqlx::query(sql).execute(f.store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(f.changes().await.len(), 1);
}

#[tokio::test]
async fn a_doubled_change_row_is_impossible() {
    let f = fixture().await;
    let committed = f
        .commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    let err = sqlx::query(
        "INSERT INTO profile_changes (poll_id, customer_id, profile_id, kind, detected_at) \
         VALUES (?, ?, ?, 'added', 'x')",
    )
    .bind(committed.poll_id)
    .bind(CUSTOMER)
    .bind(A)
    .execute(f.store.pool())
    .await
    .unwrap_err();
    assert!(err.to_string().contains("UNIQUE"), "{err}");
}

#[tokio::test]
async fn old_polls_without_changes_are_pruned_and_the_rest_kept() {
    let f = fixture().await;
    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    f.commit(vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")])
        .await;
    assert_eq!(
        f.store
            .prune_polls(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(f.store.prune_polls(Duration::ZERO).await.unwrap(), 1);
    let remaining: Vec<i64> = sqlx::query_scalar("SELECT added FROM polls")
        .fetch_all(f.store.pool())
        .await
        .unwrap();
    assert_eq!(remaining, vec![1]);
}

#[tokio::test]
async fn poll_ids_are_never_reused_even_after_the_newest_polls_are_pruned() {
    let f = fixture().await;
    let one = profile(A, "One", 0, "2025-01-01T00:00:00Z");
    let first = f.commit(vec![one.clone()]).await.poll_id;
    f.commit(vec![one.clone()]).await;
    let newest = f.commit(vec![one]).await.poll_id;
    // The two unchanged polls, the newest rows of `polls`, go.
    assert_eq!(f.store.prune_polls(Duration::ZERO).await.unwrap(), 2);

    let renamed = f
        .commit(vec![profile(A, "One, renamed", 0, "2025-01-02T00:00:00Z")])
        .await;
    assert!(renamed.poll_id > newest, "{} reused", renamed.poll_id);
    let rows: Vec<(i64, Option<i64>)> =
        sqlx::query_as("SELECT poll_id, changed FROM polls ORDER BY poll_id")
            .fetch_all(f.store.pool())
            .await
            .unwrap();
    assert_eq!(rows, vec![(first, Some(0)), (renamed.poll_id, Some(1))]);
    let recorded_by: Vec<i64> =
        sqlx::query_scalar("SELECT poll_id FROM profile_changes WHERE kind = 'changed'")
            .fetch_all(f.store.pool())
            .await
            .unwrap();
    assert_eq!(recorded_by, vec![renamed.poll_id]);
}

/// A second store on the fixture's file, as another process would have.
async fn other_writer(f: &Fixture) -> Store {
    Store::open(&StorageSettings {
        database: f.store.path().to_owned(),
        busy_timeout: Duration::from_secs(5),
        poll_retention: Duration::from_secs(3600),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_list_remembered_as_stored_is_still_diffed_when_another_writer_changed_it() {
    let f = fixture().await;
    let other = other_writer(&f).await;
    let one = profile(A, "One", 0, "2025-01-01T00:00:00Z");
    let renamed = profile(A, "One, renamed", 0, "2025-01-02T00:00:00Z");
    f.commit(vec![one.clone()]).await;
    f.commit_on(&other, vec![renamed]).await;

    // This process last stored `one`; the file holds the rename.
    let back = f.commit(vec![one]).await;
    assert_eq!(back.outcome.count(ChangeKind::Changed), 1);
    assert_eq!(
        f.changes().await,
        vec![
            ("added".into(), A.into(), 1),
            ("changed".into(), A.into(), 0),
            ("changed".into(), A.into(), 0),
        ]
    );
    assert_eq!(f.snapshot().await[0].1.as_deref(), Some("One"));
    other.close().await;
}

#[tokio::test]
async fn a_list_remembered_as_different_is_recorded_as_unchanged_when_another_writer_stored_it() {
    let f = fixture().await;
    let other = other_writer(&f).await;
    let one = profile(A, "One", 0, "2025-01-01T00:00:00Z");
    let renamed = profile(A, "One, renamed", 0, "2025-01-02T00:00:00Z");
    f.commit(vec![one]).await;
    f.commit_on(&other, vec![renamed.clone()]).await;

    let same = f.commit(vec![renamed.clone()]).await;
    assert!(same.outcome.changes.is_empty());
    assert_eq!(f.count("profile_changes").await, 2);
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT list_hash FROM customers")
        .fetch_one(f.store.pool())
        .await
        .unwrap();
    assert_eq!(
        stored,
        Some(list_hash(std::slice::from_ref(&renamed)).to_vec())
    );
    // And from then on the process knows it: the next poll is unchanged too.
    assert!(f.commit(vec![renamed]).await.outcome.changes.is_empty());
    assert_eq!(f.count("polls").await, 4);
    other.close().await;
}

#[tokio::test]
async fn a_store_opened_on_a_database_knows_each_customers_stored_digest() {
    let f = fixture().await;
    let other = Customer {
        id: CustomerId::parse("0badf00d-0000-4000-8000-000000000003").unwrap(),
        name: None,
    };
    let one = profile(A, "One", 0, "2025-01-01T00:00:00Z");
    f.commit(vec![one.clone()]).await;
    // The other customer is listed once, then fails: its digest stays
    // stored, but the one INSERT cannot clear the failure.
    f.commit_on_for(&f.store, &other, vec![one.clone()]).await;
    f.store
        .record_failure(FailedPoll {
            customer: &other,
            started_at: timestamp::now(),
            http_status: Some(503),
            error: "503 from the API",
        })
        .await
        .unwrap();

    let reopened = other_writer(&f).await;
    let hash = list_hash(std::slice::from_ref(&one));
    {
        let writer = reopened.writer.lock().await;
        let remembered = &writer.stored_digests;
        assert_eq!(remembered.get(CUSTOMER), Some(Some(digest_prefix(&hash))));
        assert_eq!(remembered.get(other.id.as_str()), Some(None));
        assert_eq!(remembered.0.len(), 2);
        assert!(remembered.worth_trying(CUSTOMER, &hash));
        assert!(!remembered.worth_trying(other.id.as_str(), &hash));
    }

    // What it remembers is what the one INSERT checks: the same list is an
    // unchanged poll, and a changed one is diffed.
    assert!(f
        .commit_on(&reopened, vec![one])
        .await
        .outcome
        .changes
        .is_empty());
    let renamed = profile(A, "One, renamed", 0, "2025-01-02T00:00:00Z");
    let changed = f.commit_on(&reopened, vec![renamed]).await;
    assert_eq!(changed.outcome.count(ChangeKind::Changed), 1);
    reopened.close().await;
}

#[tokio::test]
async fn a_damaged_file_is_reported_with_restore_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let settings = StorageSettings {
        database: path,
        busy_timeout: Duration::from_secs(1),
        poll_retention: Duration::from_secs(1),
    };
    let err = Store::open(&settings).await.unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains(".backup"), "{err}");
}

#[tokio::test]
async fn read_only_open_never_creates_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let err = Store::open_read_only(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }));
    assert!(!path.exists());
}

#[tokio::test]
async fn history_prints_exactly_the_columns_of_the_change_history_view() {
    let f = fixture().await;
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('change_history') ORDER BY cid")
            .fetch_all(f.store.pool())
            .await
            .unwrap();
    assert_eq!(columns, crate::history::COLUMNS);
}

/// `last_seen_at` of every snapshot profile, through the public `profiles`
/// view and, to check they agree, the `current_profiles` view.
async fn last_seen(f: &Fixture) -> Vec<(String, String, i64)> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT profile_id, last_seen_at, missing_polls FROM profiles ORDER BY profile_id",
    )
    .fetch_all(f.store.pool())
    .await
    .unwrap();
    let current: Vec<(String, String)> =
        sqlx::query_as("SELECT profile_id, last_seen_at FROM current_profiles ORDER BY 1")
            .fetch_all(f.store.pool())
            .await
            .unwrap();
    let from_profiles: Vec<(String, String)> = rows
        .iter()
        .map(|(id, at, _)| (id.clone(), at.clone()))
        .collect();
    assert_eq!(current, from_profiles);
    rows
}

#[tokio::test]
async fn last_seen_at_follows_the_lists_that_held_each_profile() {
    let mut f = fixture().await;
    f.rules.removal_confirmations = 3;
    let a = profile(A, "One", 0, "2025-01-01T00:00:00Z");
    let b = profile(B, "Two", 1, "2025-01-01T00:00:00Z");
    let seen = |id: &str, at: &str, missing| (id.to_owned(), at.to_owned(), missing);

    let first = f.commit(vec![a.clone(), b.clone()]).await;
    assert_eq!(
        last_seen(&f).await,
        vec![
            seen(A, &first.finished_at, 0),
            seen(B, &first.finished_at, 0)
        ]
    );

    // An unchanged list moves every profile on, though it writes no
    // snapshot row.
    let unchanged = f.commit(vec![a.clone(), b.clone()]).await;
    assert!(unchanged.outcome.changes.is_empty());
    assert_ne!(unchanged.finished_at, first.finished_at);
    assert_eq!(
        last_seen(&f).await,
        vec![
            seen(A, &unchanged.finished_at, 0),
            seen(B, &unchanged.finished_at, 0)
        ]
    );

    // Missing from two lists: B keeps the time of the last list that held it.
    let without_b = f.commit(vec![a.clone()]).await;
    let again_without_b = f.commit(vec![a.clone()]).await;
    assert_eq!(
        last_seen(&f).await,
        vec![
            seen(A, &again_without_b.finished_at, 0),
            seen(B, &unchanged.finished_at, 2)
        ]
    );
    assert_ne!(without_b.finished_at, again_without_b.finished_at);

    // Neither a failure nor an empty list that is not believed yet is a
    // list that held anything.
    f.fail().await;
    f.commit(vec![]).await;
    assert_eq!(
        last_seen(&f).await,
        vec![
            seen(A, &again_without_b.finished_at, 0),
            seen(B, &unchanged.finished_at, 2)
        ]
    );

    // B comes back before its removal was confirmed.
    let back = f.commit(vec![a, b]).await;
    assert!(back.outcome.changes.is_empty());
    assert_eq!(
        last_seen(&f).await,
        vec![seen(A, &back.finished_at, 0), seen(B, &back.finished_at, 0)]
    );
}

#[tokio::test]
async fn a_database_of_the_first_schema_keeps_every_value_when_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePool::connect_with(options).await.unwrap();
    let first_schema = sqlx::migrate::Migrator {
        migrations: MIGRATOR.migrations[..1].to_vec().into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    first_schema.run(&pool).await.unwrap();
    // What the first schema's writer left: two listed profiles sharing the
    // last list's time, one missing since an earlier list, and a customer
    // whose profiles were all removed.
    sqlx::raw_sql(
        "INSERT INTO customers (customer_id, name, last_success_at) VALUES \
         ('c1', 'One', '2026-01-03T00:00:00.000000Z'), ('c2', NULL, NULL); \
         INSERT INTO profiles VALUES \
         ('c1', 'p1', 'A', 0, NULL, '{}', '2026-01-01T00:00:00.000000Z', \
          '2026-01-03T00:00:00.000000Z', 0), \
         ('c1', 'p2', 'B', 1, NULL, '{\"x\":1}', '2026-01-02T00:00:00.000000Z', \
          '2026-01-03T00:00:00.000000Z', 0), \
         ('c1', 'p3', NULL, NULL, '2025-12-01T00:00:00.000000Z', '{}', \
          '2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z', 1);",
    )
    .execute(&pool)
    .await
    .unwrap();
    let columns = "customer_id, profile_id, profile_name, scan_mode, modified_time, raw_json, \
                   first_seen_at, last_seen_at, missing_polls";
    type Row = (
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
        String,
        String,
        i64,
    );
    let read = format!("SELECT {columns} FROM profiles ORDER BY 1, 2");
    let before: Vec<Row> = sqlx::query_as(&read).fetch_all(&pool).await.unwrap();
    assert_eq!(before.len(), 3);
    pool.close().await;

    let store = Store::open(&StorageSettings {
        database: path,
        busy_timeout: Duration::from_secs(5),
        poll_retention: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    let after: Vec<Row> = sqlx::query_as(&read).fetch_all(store.pool()).await.unwrap();
    assert_eq!(after, before);
    let listed: Vec<Option<String>> =
        sqlx::query_scalar("SELECT last_listed_at FROM customers ORDER BY customer_id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        listed,
        vec![Some("2026-01-03T00:00:00.000000Z".to_owned()), None]
    );
}

#[tokio::test]
async fn an_unchanged_list_under_a_new_name_updates_the_name_and_nothing_else() {
    let mut f = fixture().await;
    let list = vec![profile(A, "One", 0, "2025-01-01T00:00:00Z")];
    let first = f.commit(list.clone()).await;
    f.customer.name = Some("Contoso Ltd".into());
    let renamed = f.commit(list.clone()).await;
    assert!(renamed.outcome.changes.is_empty());
    let row: (Option<String>, String, String, i64) = sqlx::query_as(
        "SELECT name, first_polled_at, last_success_at, consecutive_failures FROM customers",
    )
    .fetch_one(f.store.pool())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            Some("Contoso Ltd".to_owned()),
            first.finished_at.clone(),
            renamed.finished_at.clone(),
            0
        )
    );
    // The next identical poll takes the one-statement path again: it adds a
    // `polls` row and moves the times on, and records nothing.
    let again = f.commit(list).await;
    let polls: Vec<(i64, String)> =
        sqlx::query_as("SELECT poll_id, finished_at FROM polls ORDER BY poll_id")
            .fetch_all(f.store.pool())
            .await
            .unwrap();
    assert_eq!(polls.len(), 3);
    assert_eq!(polls[2], (again.poll_id, again.finished_at.clone()));
    let last_success: String = sqlx::query_scalar("SELECT last_success_at FROM customers")
        .fetch_one(f.store.pool())
        .await
        .unwrap();
    assert_eq!(last_success, again.finished_at);
    assert_eq!(f.changes().await.len(), 1);
}
