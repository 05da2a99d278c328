//! docs/querying.md cannot rot: every table and view it describes is checked
//! column by column against the real schema, every SQL query in it runs
//! against a history recorded through the real poll path and must return
//! rows, and its `scanwatch history` and `status` examples run too.

mod common_history;

use std::collections::BTreeMap;

use common_history::*;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Column, ConnectOptions, Connection, Row, SqliteConnection, TypeInfo, ValueRef};

const DOC: &str = include_str!("../docs/querying.md");
/// The example IDs the page uses, replaced by the seeded ones.
const EXAMPLE_CUSTOMER: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";
const EXAMPLE_PROFILE: &str = "47dba9a1-1004-4c2d-b2ce-8f5e66f5842d";

/// A `### ` section of the page: its heading and its lines.
struct Section {
    heading: String,
    lines: Vec<String>,
}

fn sections() -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for line in DOC.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            sections.push(Section {
                heading: heading.to_owned(),
                lines: Vec::new(),
            });
        } else if line.starts_with("## ") {
            sections.push(Section {
                heading: String::new(),
                lines: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section.lines.push(line.to_owned());
        }
    }
    sections
}

/// The fenced blocks of `language` in `lines`.
fn blocks(lines: &[String], language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        match &mut current {
            None if line.trim() == format!("```{language}") => current = Some(String::new()),
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Documented columns of each table and view: `### `name` (table)` then
/// rows of `| `column` | meaning |`.
fn documented_schema() -> BTreeMap<String, Vec<String>> {
    let mut schema = BTreeMap::new();
    for section in sections() {
        if !(section.heading.ends_with("(table)") || section.heading.ends_with("(view)")) {
            continue;
        }
        let name = section.heading.split('`').nth(1).unwrap().to_owned();
        let columns = section
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix("| `"))
            .map(|l| l.split('`').next().unwrap().to_owned())
            .collect();
        schema.insert(name, columns);
    }
    schema
}

async fn read_only(s: &Seeded) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(&s.db)
        .read_only(true)
        .connect()
        .await
        .unwrap()
}

/// A row as a JSON object, whatever its columns.
fn row_to_json(row: &SqliteRow) -> Value {
    let mut object = serde_json::Map::new();
    for column in row.columns() {
        let raw = row.try_get_raw(column.ordinal()).unwrap();
        let value = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" => Value::from(row.get::<i64, _>(column.ordinal())),
                "REAL" => Value::from(row.get::<f64, _>(column.ordinal())),
                "BLOB" => Value::from(row.get::<Vec<u8>, _>(column.ordinal()).len()),
                _ => Value::from(row.get::<String, _>(column.ordinal())),
            }
        };
        object.insert(column.name().to_owned(), value);
    }
    Value::Object(object)
}

#[tokio::test]
async fn every_table_and_view_is_documented_column_by_column() {
    let s = Seeded::new().await;
    let mut connection = read_only(&s).await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%' ORDER BY name",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let documented = documented_schema();
    assert_eq!(
        documented.keys().cloned().collect::<Vec<_>>(),
        names,
        "documented tables and views"
    );
    for name in &names {
        let columns: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{name}')"))
                .fetch_all(&mut connection)
                .await
                .unwrap();
        assert_eq!(&documented[name], &columns, "columns of {name}, in order");
    }
    connection.close().await.unwrap();
}

#[tokio::test]
async fn every_ready_query_runs_and_returns_rows() {
    let s = Seeded::new().await;
    let mut connection = read_only(&s).await;
    let mut results: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for section in sections() {
        for sql in blocks(&section.lines, "sql") {
            let sql = sql
                .replace(EXAMPLE_CUSTOMER, &s.contoso)
                .replace(EXAMPLE_PROFILE, &s.renamed);
            let rows = sqlx::query(&sql)
                .fetch_all(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", section.heading));
            assert!(
                !rows.is_empty(),
                "{} returned nothing:\n{sql}",
                section.heading
            );
            results.insert(
                section.heading.clone(),
                rows.iter().map(row_to_json).collect(),
            );
        }
    }
    connection.close().await.unwrap();
    assert!(results.len() >= 12, "{} queries", results.len());

    // A few answers the seed makes certain.
    let failing = &results["Customers failing now"];
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0]["customer_id"], NORTHWIND);
    assert_eq!(failing[0]["consecutive_failures"], 2);

    let life = &results["The full life of one profile"];
    let kinds: Vec<&str> = life.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["added", "changed", "changed"]);

    let removed = &results["Profiles removed in the last 30 days"];
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["profile_id"], s.removed.as_str());

    let switched = &results["Profiles whose scan mode changed"];
    let ids: Vec<&str> = switched
        .iter()
        .map(|r| r["profile_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [s.switched.as_str(), s.renamed.as_str()]);
    assert_ne!(switched[0]["old_mode"], switched[0]["new_mode"]);

    let renamed = &results["Renamed profiles"];
    assert_eq!(renamed.len(), 3, "two renames at Contoso, one at Fabrikam");

    let created = &results["Profiles created since watching began"];
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["profile_name"], "Legal Teams");

    let contoso = &results["Everything that changed for one customer"];
    assert_eq!(contoso.len(), 5);

    let per_mode = &results["Current profiles per customer, by scan mode"];
    let contoso_now = per_mode
        .iter()
        .find(|r| r["customer"] == "Contoso")
        .unwrap();
    assert_eq!(contoso_now["total"], 3);

    let raw = &results["The JSON of a profile's last recorded version"];
    let profile: Value = serde_json::from_str(raw[0]["raw_json"].as_str().unwrap()).unwrap();
    assert_eq!(profile["profileName"], "Finance Mailboxes (EU, all)");
}

#[tokio::test]
async fn the_documented_history_and_status_commands_run() {
    let s = Seeded::new().await;
    let mut ran = 0;
    for section in sections() {
        for block in blocks(&section.lines, "sh") {
            for line in block.lines() {
                let runnable = (line.starts_with("scanwatch history")
                    || line.starts_with("scanwatch status"))
                    && !line.contains(['|', '>']);
                if !runnable {
                    continue;
                }
                let line = line.replace(EXAMPLE_PROFILE, &s.renamed);
                let words: Vec<&str> = line.split_whitespace().skip(1).collect();
                let output = s.run(&words);
                let expected = if words[0] == "status" { 1 } else { 0 };
                assert_eq!(
                    output.status.code(),
                    Some(expected),
                    "{line}: {}",
                    stderr(&output)
                );
                assert!(!output.stdout.is_empty(), "{line} printed nothing");
                ran += 1;
            }
        }
    }
    assert!(ran >= 5, "{ran} commands");
}
