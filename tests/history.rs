//! `scanwatch history` end to end: a history recorded through the real poll
//! path, then each filter and each format read back through the binary and
//! compared with the rows of the `change_history` view.

mod common_history;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use common_history::*;
use scanwatch::history::{self, Format, HistoryRow, Query};
use serde_json::Value;
use sqlx::{ConnectOptions, Connection};

#[tokio::test]
async fn without_filters_every_change_is_printed_oldest_first_as_ndjson_to_a_pipe() {
    let s = Seeded::new().await;
    let output = s.run(&["history"]);
    let rows = ndjson(&output);
    assert_eq!(rows, s.expected_rows("").await);
    assert_eq!(rows.len(), SEEDED_ROWS);
    let ids = change_ids(&rows);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn json_ndjson_and_csv_carry_the_same_rows_as_the_view() {
    let s = Seeded::new().await;
    let expected = s.expected_rows("").await;

    let ndjson_rows = ndjson(&s.run(&["history", "--format", "ndjson"]));
    assert_eq!(ndjson_rows, expected);

    let json_output = s.run(&["history", "--format", "json"]);
    assert!(json_output.status.success(), "{}", stderr(&json_output));
    let json_rows: Vec<Value> = serde_json::from_slice(&json_output.stdout).unwrap();
    assert_eq!(json_rows, expected);

    let csv_output = s.run(&["history", "--format", "csv"]);
    assert!(csv_output.status.success(), "{}", stderr(&csv_output));
    let mut reader = csv::Reader::from_reader(&csv_output.stdout[..]);
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, history::COLUMNS);
    let csv_rows: Vec<Value> = reader
        .records()
        .map(|record| csv_row_as_json(&header, &record.unwrap()))
        .collect();
    assert_eq!(csv_rows, expected);
}

/// Reads a CSV record back into the JSON a row would be: empty is NULL,
/// numbers are numbers and `changed_fields` is its JSON text.
fn csv_row_as_json(header: &[String], record: &csv::StringRecord) -> Value {
    let mut object = serde_json::Map::new();
    for (name, field) in header.iter().zip(record.iter()) {
        let value = match name.as_str() {
            _ if field.is_empty() => Value::Null,
            "change_id" | "baseline" | "scan_mode" | "old_scan_mode" | "poll_id" => {
                Value::from(field.parse::<i64>().unwrap())
            }
            "changed_fields" => serde_json::from_str(field).unwrap(),
            _ => Value::from(field),
        };
        object.insert(name.clone(), value);
    }
    Value::Object(object)
}

#[tokio::test]
async fn changed_fields_is_a_json_array_in_json_and_ndjson() {
    let s = Seeded::new().await;
    for format in ["json", "ndjson"] {
        let output = s.run(&["history", "--kind", "changed", "--format", format]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        let rows: Vec<Value> = if format == "json" {
            serde_json::from_str(&text).unwrap()
        } else {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        assert_eq!(rows.len(), 4);
        for row in &rows {
            let fields = row["changed_fields"].as_array().expect("an array");
            assert!(fields.iter().all(Value::is_string), "{row}");
            assert_eq!(row.as_object().unwrap().len(), history::COLUMNS.len());
        }
    }
}

#[tokio::test]
async fn a_customer_is_selected_by_id_by_configured_name_or_by_stored_name() {
    let s = Seeded::new().await;
    let contoso = s
        .expected_rows(&format!("WHERE customer_id = '{}'", s.contoso))
        .await;
    let litware = s
        .expected_rows(&format!("WHERE customer_id = '{}'", s.litware))
        .await;
    assert_eq!(contoso.len(), 8);

    assert_eq!(
        ndjson(&s.run(&["history", "--customer", &s.contoso])),
        contoso
    );
    let upper = s.contoso.to_uppercase();
    assert_eq!(ndjson(&s.run(&["history", "--customer", &upper])), contoso);
    assert_eq!(
        ndjson(&s.run(&["history", "--customer", "contoso"])),
        contoso
    );
    // Litware is not in the history config: only the database knows its name.
    assert_eq!(
        ndjson(&s.run(&["history", "--customer", "Litware"])),
        litware
    );

    let both = ndjson(&s.run(&["history", "--customer", "Litware", "--customer", "Contoso"]));
    let mut expected = [contoso, litware].concat();
    expected.sort_by_key(|r| r["change_id"].as_i64());
    assert_eq!(both, expected);
}

#[tokio::test]
async fn an_unknown_customer_is_one_usage_line_naming_the_flag() {
    let s = Seeded::new().await;
    for unknown in ["Wingtip", "ffffffff-0000-4000-8000-000000000000"] {
        let output = s.run(&["history", "--customer", unknown]);
        assert_eq!(output.status.code(), Some(2), "{unknown}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.contains("--customer") && message.contains(unknown),
            "{message}"
        );
        assert!(output.stdout.is_empty());
    }
}

#[tokio::test]
async fn a_configured_customer_never_polled_has_an_empty_history() {
    let s = Seeded::new().await;
    let output = s.run(&["history", "--customer", "Tailspin", "--format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "[]\n");
}

#[tokio::test]
async fn the_profile_filter_gives_the_whole_life_of_one_profile() {
    let s = Seeded::new().await;
    let upper = s.renamed.to_uppercase();
    let rows = ndjson(&s.run(&["history", "--profile", &upper]));
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["added", "changed", "changed"]);
    assert_eq!(rows[0]["baseline"], 1);
    assert_eq!(rows[2]["profile_name"], "Finance Mailboxes (EU, all)");
    assert_eq!(rows[2]["old_profile_name"], "Finance Mailboxes (EU)");
    assert!(rows.iter().all(|r| r["profile_id"] == s.renamed.as_str()));
}

#[tokio::test]
async fn kinds_can_be_combined_and_each_selects_only_its_rows() {
    let s = Seeded::new().await;
    for (args, filter) in [
        (vec!["--kind", "removed"], "WHERE kind = 'removed'"),
        (vec!["--kind", "changed"], "WHERE kind = 'changed'"),
        (
            vec!["--kind", "added", "--kind", "removed"],
            "WHERE kind IN ('added', 'removed')",
        ),
    ] {
        let rows = ndjson(&s.run(&[&["history"], &args[..]].concat()));
        let expected = s.expected_rows(filter).await;
        assert!(!expected.is_empty(), "{filter}");
        assert_eq!(rows, expected, "{args:?}");
    }
    let removed = ndjson(&s.run(&["history", "--kind", "removed"]));
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["profile_id"], s.removed.as_str());
}

#[tokio::test]
async fn baseline_rows_can_be_included_excluded_or_shown_alone() {
    let s = Seeded::new().await;
    let all = ndjson(&s.run(&["history"]));
    let default = ndjson(&s.run(&["history", "--baseline", "include"]));
    let excluded = ndjson(&s.run(&["history", "--baseline", "exclude"]));
    let only = ndjson(&s.run(&["history", "--baseline", "only"]));
    assert_eq!(default, all);
    assert_eq!(only.len(), 9);
    assert!(only
        .iter()
        .all(|r| r["baseline"] == 1 && r["kind"] == "added"));
    assert_eq!(excluded.len(), SEEDED_ROWS - 9);
    assert!(excluded.iter().all(|r| r["baseline"] == 0));
    // The non-baseline addition is still there.
    assert!(excluded.iter().any(|r| r["profile_id"] == s.added.as_str()));
}

#[tokio::test]
async fn a_limit_keeps_the_newest_rows_and_prints_them_oldest_first() {
    let s = Seeded::new().await;
    let all = change_ids(&ndjson(&s.run(&["history"])));
    let last_four = change_ids(&ndjson(&s.run(&["history", "--limit", "4"])));
    assert_eq!(last_four, all[all.len() - 4..]);

    let limited = ndjson(&s.run(&["history", "--kind", "changed", "--limit", "2"]));
    let changed = s.expected_rows("WHERE kind = 'changed'").await;
    assert_eq!(limited, changed[changed.len() - 2..]);

    assert!(ndjson(&s.run(&["history", "--limit", "0"])).is_empty());
}

#[tokio::test]
async fn since_and_until_take_rfc3339_times_and_ages() {
    let s = Seeded::new().await;
    // A change detected ten days ago, written as an older scanwatch would have.
    let mut connection = s.connect().await;
    let old = scanwatch::timestamp::format(chrono::Utc::now() - chrono::Duration::days(10));
    let poll_id: i64 = sqlx::query_scalar(
        "INSERT INTO polls (customer_id, started_at, finished_at, outcome, profiles, added) \
         VALUES (?1, ?2, ?2, 'ok', 1, 1) RETURNING poll_id",
    )
    .bind(&s.fabrikam)
    .bind(&old)
    .fetch_one(&mut connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO profile_changes (poll_id, customer_id, profile_id, kind, detected_at, \
         profile_name, scan_mode) VALUES (?, ?, 'old-profile', 'added', ?, 'Old', 0)",
    )
    .bind(poll_id)
    .bind(&s.fabrikam)
    .bind(&old)
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();

    let ids = |args: &[&str]| -> Vec<String> {
        ndjson(&s.run(&[&["history"], args].concat()))
            .iter()
            .map(|r| r["profile_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let everything = ids(&[]);
    assert_eq!(everything.len(), SEEDED_ROWS + 1);

    // Ages.
    assert_eq!(ids(&["--since", "7d"]).len(), SEEDED_ROWS);
    assert_eq!(ids(&["--since", "30d"]).len(), SEEDED_ROWS + 1);
    assert_eq!(ids(&["--until", "7d"]), ["old-profile"]);
    assert!(ids(&["--since", "12h", "--until", "1h"]).is_empty());

    // RFC 3339, in UTC and with an offset: --since is inclusive, --until exclusive.
    let since = ndjson(&s.run(&["history", "--since", &s.second_round_at]));
    let expected = s
        .expected_rows(&format!("WHERE detected_at >= '{}'", s.second_round_at))
        .await;
    assert_eq!(since, expected);
    assert_eq!(since.len(), 6);
    let until = ndjson(&s.run(&["history", "--until", &s.second_round_at]));
    assert_eq!(until.len() + since.len(), SEEDED_ROWS + 1);

    let instant = chrono::DateTime::parse_from_rfc3339(&s.second_round_at).unwrap();
    let offset = instant
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    assert!(offset.ends_with("+02:00"), "{offset}");
    assert_eq!(ndjson(&s.run(&["history", "--since", &offset])), since);
}

#[tokio::test]
async fn a_bad_time_or_an_empty_window_is_one_usage_line_naming_the_flag() {
    let s = Seeded::new().await;
    for (args, flag) in [
        (vec!["--since", "last tuesday"], "--since"),
        (vec!["--until", "2025-13-45"], "--until"),
        (vec!["--since", "1h", "--until", "2h"], "--until"),
    ] {
        let output = s.run(&[&["history"], &args[..]].concat());
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains(flag), "{message}");
    }
    let output = s.run(&["history", "--kind", "renamed"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--kind"));
}

#[tokio::test]
async fn the_table_shows_names_modes_and_old_to_new_in_fixed_columns() {
    let s = Seeded::new().await;
    let output = s.run(&["history", "--format", "table"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), SEEDED_ROWS + 1);
    let header = lines[0];
    assert!(header.starts_with(" CHANGE  DETECTED (UTC)"), "{header}");

    let column = header.find("PROFILE ID").unwrap();
    for line in &lines[1..] {
        let profile_id = &line[column..column + 36];
        assert!(
            scanwatch::customer::CustomerId::parse(profile_id).is_ok(),
            "{line}"
        );
    }
    let contoso_rows = lines.iter().filter(|l| l.contains("  Contoso  ")).count();
    assert_eq!(contoso_rows, 8);

    let last = lines.last().unwrap();
    assert!(
        last.contains("  changed   Finance Mailboxes (EU, ~"),
        "{last}"
    );
    assert!(
        last.contains("name \"Finance Mailboxes (EU)\" -> \"Finance Mailboxes (EU, all)\""),
        "{last}"
    );
    assert!(
        last.contains("mode Express -> Advanced") || last.contains("mode Advanced -> Express"),
        "{last}"
    );
    assert!(lines[1].contains("  baseline  "), "{}", lines[1]);
    let switched = lines
        .iter()
        .find(|l| l.contains(&s.switched) && l.contains("  changed  "))
        .unwrap();
    assert!(
        switched.contains("mode Express -> Advanced")
            || switched.contains("mode Advanced -> Express"),
        "{switched}"
    );
}

#[tokio::test]
async fn history_needs_no_secret_and_the_config_has_none() {
    let s = Seeded::new().await;
    let config = std::fs::read_to_string(&s.config).unwrap();
    assert!(!config.contains("[auth]"));
    let output = s.run(&["history", "--format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test]
async fn history_reads_while_another_connection_holds_a_write_transaction() {
    let s = Seeded::new().await;
    let mut writer = s.connect().await;
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
    let poll_id: i64 = sqlx::query_scalar(
        "INSERT INTO polls (customer_id, started_at, finished_at, outcome, profiles, added) \
         VALUES (?1, '2030-01-01T00:00:00.000000Z', '2030-01-01T00:00:00.000000Z', 'ok', 1, 1) \
         RETURNING poll_id",
    )
    .bind(&s.contoso)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO profile_changes (poll_id, customer_id, profile_id, kind, detected_at) \
         VALUES (?, ?, 'uncommitted', 'added', '2030-01-01T00:00:00.000000Z')",
    )
    .bind(poll_id)
    .bind(&s.contoso)
    .execute(&mut *tx)
    .await
    .unwrap();

    // The writer holds the write lock: a reader neither waits nor sees it.
    let during = ndjson(&s.run(&["history"]));
    assert_eq!(during.len(), SEEDED_ROWS);
    let status = s.run(&["status", "--format", "json"]);
    assert_eq!(status.status.code(), Some(1), "{}", stderr(&status));

    tx.commit().await.unwrap();
    let after = ndjson(&s.run(&["history"]));
    assert_eq!(after.len(), SEEDED_ROWS + 1);
    assert_eq!(after.last().unwrap()["profile_id"], "uncommitted");
    writer.close().await.unwrap();
}

#[tokio::test]
async fn history_works_after_every_writer_has_closed_the_database() {
    let s = Seeded::new().await;
    s.poller.store().close().await;
    let rows = ndjson(&s.run(&["history"]));
    assert_eq!(rows.len(), SEEDED_ROWS);
}

#[test]
fn a_missing_database_is_an_error_naming_the_resolved_path_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scanwatch.toml");
    std::fs::write(&config, "[storage]\ndatabase = \"data/history.db\"\n").unwrap();
    for command in ["history", "status"] {
        let output = scanwatch(&config, &[command]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{command}");
        let message = stderr(&output);
        let resolved = dir.path().join("data/history.db");
        assert!(message.contains(resolved.to_str().unwrap()), "{message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            !dir.path().join("data").exists(),
            "{command} created a folder"
        );
    }
}

#[test]
fn a_file_without_the_schema_is_refused_and_left_unmigrated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    let config = dir.path().join("scanwatch.toml");
    std::fs::write(&config, "[storage]\ndatabase = \"empty.db\"\n").unwrap();
    let output = scanwatch(&config, &["history"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("no change_history view"), "{message}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "history wrote to it"
    );
}

#[tokio::test]
async fn history_print_with_the_default_query_writes_the_demo_table() {
    let s = Seeded::new().await;
    let mut out: Vec<u8> = Vec::new();
    let written = history::print(s.poller.store(), &Query::default(), Format::Table, &mut out)
        .await
        .unwrap();
    assert_eq!(written as usize, SEEDED_ROWS);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), SEEDED_ROWS + 1);

    let mut out: Vec<u8> = Vec::new();
    history::print(
        s.poller.store(),
        &Query::default(),
        Format::Ndjson,
        &mut out,
    )
    .await
    .unwrap();
    let rows: Vec<HistoryRow> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), SEEDED_ROWS);
    assert!(rows
        .iter()
        .filter(|r| r.kind == "changed")
        .all(|r| r.changed_fields.as_ref().is_some_and(|f| !f.is_empty())));
}

#[tokio::test]
async fn an_empty_selection_prints_a_note_in_the_table_and_nothing_in_ndjson() {
    let s = Seeded::new().await;
    let table = s.run(&["history", "--customer", "Tailspin", "--format", "table"]);
    assert!(table.status.success());
    assert!(stdout(&table).ends_with("(no changes match)\n"));
    let rows = s.run(&["history", "--customer", "Tailspin"]);
    assert!(rows.status.success());
    assert!(rows.stdout.is_empty());
    let csv = s.run(&["history", "--customer", "Tailspin", "--format", "csv"]);
    assert_eq!(stdout(&csv).trim_end(), history::COLUMNS.join(","));
}

/// Fills `db` (already migrated) with `rows` changes of one customer, in one
/// statement: the shape of a long-lived history without polling for it.
async fn fill(db: &std::path::Path, rows: u64) {
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let customer = "03f7382e-0000-1cda-0000-dd9a000074f0";
    sqlx::query("INSERT INTO customers (customer_id, name) VALUES (?, 'Contoso Holdings Ltd')")
        .bind(customer)
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO polls (poll_id, customer_id, started_at, finished_at, outcome, profiles) \
         VALUES (1, ?1, '2025-09-11T03:19:14.000000Z', '2025-09-11T03:19:14.000000Z', 'ok', 0)",
    )
    .bind(customer)
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
         INSERT INTO profile_changes (poll_id, customer_id, profile_id, kind, baseline, \
         detected_at, profile_name, scan_mode, modified_time, old_profile_name, old_scan_mode, \
         old_modified_time, changed_fields, raw_json) \
         SELECT 1, ?1, printf('%08x-0000-4000-8000-%012x', i, i), \
         CASE i % 3 WHEN 0 THEN 'added' WHEN 1 THEN 'changed' ELSE 'removed' END, 0, \
         strftime('%Y-%m-%dT%H:%M:%S.000000Z', 1757560754 + i, 'unixepoch'), \
         printf('Finance Mailboxes and Sites %d', i), i % 2, \
         strftime('%Y-%m-%dT%H:%M:%S.000000Z', 1757560000 + i, 'unixepoch'), \
         CASE i % 3 WHEN 1 THEN printf('Finance Mailboxes %d', i) END, \
         CASE i % 3 WHEN 1 THEN (i + 1) % 2 END, \
         CASE i % 3 WHEN 1 THEN '2025-09-01T00:00:00.000000Z' END, \
         CASE i % 3 WHEN 1 THEN '[\"modifiedTime\",\"profileName\",\"scanMode\"]' END, \
         '{}' FROM n",
    )
    .bind(customer)
    .bind(rows as i64)
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.unwrap();
}

/// A child's output and its memory, sampled while it wrote.
struct Measured {
    exit_code: Option<i32>,
    lines: u64,
    bytes: u64,
    /// VmHWM (peak resident memory) once a quarter of the lines had arrived.
    quarter_peak_kib: u64,
    /// VmHWM at the last sample, near the end of the output.
    last_peak_kib: u64,
    samples: u64,
    stderr: String,
}

/// VmHWM of a running process: the most resident memory it has used so far.
/// `None` once it has exited.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `command`, which should print `expected` lines, drains its stdout
/// line by line, and samples its peak memory from /proc every `every` lines. The kernel's high-water mark only
/// grows, so the last sample bounds everything before it; sampling as the
/// output arrives needs no timer. (`wait4`'s `ru_maxrss` would be simpler,
/// but on Linux it also counts the test process the child was spawned
/// from, whose memory depends on the other tests running beside it.)
fn run_measured(command: &mut std::process::Command, expected: u64, every: u64) -> Measured {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });

    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let (mut lines, mut bytes, mut samples) = (0u64, 0u64, 0u64);
    let (mut quarter_peak_kib, mut last_peak_kib) = (0, 0);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).unwrap() > 0 {
        lines += 1;
        bytes += line.len() as u64;
        line.clear();
        if lines % every == 0 {
            if let Some(peak) = peak_rss_kib(pid) {
                if lines <= expected / 4 {
                    quarter_peak_kib = peak;
                }
                last_peak_kib = peak;
                samples += 1;
            }
        }
    }
    let status = child.wait().unwrap();
    Measured {
        exit_code: status.code(),
        lines,
        bytes,
        quarter_peak_kib,
        last_peak_kib,
        samples,
        stderr: errors.join().unwrap(),
    }
}

/// How much the peak may still grow over the last three quarters of a
/// 200,000-row history. By then SQLite's page cache (2000 pages, 8 MiB) is
/// full, so anything kept per row would show here.
const GROWTH_BOUND_KIB: u64 = 4 * 1024;
/// Peak resident memory allowed while printing it, debug build included.
/// Holding the rows would take well over 100 MiB.
const PEAK_BOUND_KIB: u64 = 64 * 1024;

/// Prints a 200,000-row history in `format`, which frames the rows with
/// `framing` lines of its own (a header, brackets), and checks that the peak
/// memory stays flat while it does.
async fn streams_in_flat_memory(format: &str, framing: u64) {
    let rows = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let settings = scanwatch::config::ConfigFile::from_toml_ignoring_environment(
        &dir.path().join("scanwatch.toml"),
        "[storage]\ndatabase = \"big.db\"\n",
    )
    .unwrap()
    .storage()
    .unwrap();
    scanwatch::store::Store::open(&settings)
        .await
        .unwrap()
        .close()
        .await;
    fill(&dir.path().join("big.db"), rows).await;
    let config = dir.path().join("scanwatch.toml");
    std::fs::write(&config, "[storage]\ndatabase = \"big.db\"\n").unwrap();

    let mut command = scanwatch(&config, &["history", "--format", format]);
    let measured = run_measured(&mut command, rows + framing, 2_000);
    assert_eq!(measured.exit_code, Some(0), "{}", measured.stderr);
    assert_eq!(measured.lines, rows + framing, "every row and the framing");
    // Streaming keeps the statement open for seconds: no "slow statement" warning.
    assert!(measured.stderr.is_empty(), "{}", measured.stderr);
    assert!(
        measured.bytes > 30 << 20,
        "the output is large enough to matter"
    );
    assert!(measured.samples >= 90, "{} samples", measured.samples);
    eprintln!(
        "peak RSS: {} KiB after a quarter of the rows, {} KiB after {} rows ({} MiB of {format})",
        measured.quarter_peak_kib,
        measured.last_peak_kib,
        rows,
        measured.bytes >> 20
    );
    assert!(
        // The kernel sums per-CPU counters lazily, so two readings of the
        // peak can differ by a little either way: no underflow on a dip.
        measured
            .last_peak_kib
            .saturating_sub(measured.quarter_peak_kib)
            < GROWTH_BOUND_KIB,
        "peak RSS grew from {} KiB to {} KiB",
        measured.quarter_peak_kib,
        measured.last_peak_kib
    );
    assert!(
        measured.last_peak_kib < PEAK_BOUND_KIB,
        "peak RSS {} KiB",
        measured.last_peak_kib
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200000_row_history_streams_as_csv_in_flat_memory() {
    streams_in_flat_memory("csv", 1).await;
}

/// One JSON array is the format most tempting to build in memory first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200000_row_history_streams_as_one_json_array_in_flat_memory() {
    streams_in_flat_memory("json", 2).await;
}

#[tokio::test]
async fn a_reader_that_stops_early_ends_history_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let settings = scanwatch::config::ConfigFile::from_toml_ignoring_environment(
        &dir.path().join("scanwatch.toml"),
        "[storage]\ndatabase = \"big.db\"\n",
    )
    .unwrap()
    .storage()
    .unwrap();
    scanwatch::store::Store::open(&settings)
        .await
        .unwrap()
        .close()
        .await;
    fill(&dir.path().join("big.db"), 5_000).await;
    let config = dir.path().join("scanwatch.toml");
    std::fs::write(&config, "[storage]\ndatabase = \"big.db\"\n").unwrap();

    // Like `scanwatch history | head -n 1`: read one line, then close the pipe.
    let mut child = scanwatch(&config, &["history"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"change_id\":1,"), "{first}");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}

/// The unit's layout: the state folder and the database belong to the
/// service, and its group may read them but not write them
/// (`StateDirectoryMode=0750`, `UMask=0027`). `nobody` in group `nogroup`
/// stands in for an admin in the service's group.
#[tokio::test]
async fn a_member_of_the_service_group_reads_the_history_while_the_service_is_stopped() {
    use std::os::unix::fs::{chown, PermissionsExt};
    const READER: u32 = 65534;

    // SAFETY: geteuid has no preconditions and touches no memory of ours.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root so that this test can hand files to another user"
        );
        println!("skipped: needs root to hand the files to another user");
        return;
    }
    let s = Seeded::new().await;
    s.poller.store().close().await;
    let folder = s.db.parent().unwrap();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        chown(&path, Some(0), Some(READER)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    chown(folder, Some(0), Some(READER)).unwrap();
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o750)).unwrap();

    let as_reader = |program: &std::ffi::OsStr, args: Vec<&std::ffi::OsStr>| {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(program)
            .args(args);
        command
    };
    let inner = scanwatch(&s.config, &["history"]);
    let mut history = as_reader(inner.get_program(), inner.get_args().collect());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => history.env(key, value),
            None => history.env_remove(key),
        };
    }
    let rows = ndjson(&history.output().unwrap());
    assert_eq!(rows.len(), SEEDED_ROWS);

    if which("sqlite3") {
        let output = as_reader(
            "sqlite3".as_ref(),
            vec![
                "-readonly".as_ref(),
                s.db.as_os_str(),
                "SELECT count(*) FROM profile_changes".as_ref(),
            ],
        )
        .output()
        .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(stdout(&output).trim(), SEEDED_ROWS.to_string());
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
