//! One row of the change log as every format sees it, and the four ways of
//! writing rows: a fixed-width table, NDJSON, a JSON array and CSV.
//!
//! Each format writes a row as soon as it has it and keeps nothing but a
//! flag or two, so output streams. The table's columns have fixed widths for
//! the same reason: measuring the widest value would mean reading every row
//! first.

use std::io::Write;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{Format, HistoryError};

/// The columns of the `change_history` view, in its order: the fields of
/// every JSON object and the CSV header.
pub const COLUMNS: [&str; 16] = [
    "change_id",
    "detected_at",
    "customer_id",
    "customer_name",
    "profile_id",
    "kind",
    "baseline",
    "profile_name",
    "scan_mode",
    "scan_mode_name",
    "modified_time",
    "old_profile_name",
    "old_scan_mode",
    "old_modified_time",
    "changed_fields",
    "poll_id",
];

/// One row of the `change_history` view. Values are as stored, except
/// `changed_fields`, which is the JSON array itself rather than its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub change_id: i64,
    pub detected_at: String,
    pub customer_id: String,
    pub customer_name: Option<String>,
    pub profile_id: String,
    pub kind: String,
    /// 1 for a row of the customer's first list, else 0 (as in the view).
    pub baseline: i64,
    pub profile_name: Option<String>,
    pub scan_mode: Option<i64>,
    pub scan_mode_name: Option<String>,
    pub modified_time: Option<String>,
    pub old_profile_name: Option<String>,
    pub old_scan_mode: Option<i64>,
    pub old_modified_time: Option<String>,
    pub changed_fields: Option<Vec<String>>,
    pub poll_id: i64,
}

impl HistoryRow {
    /// Reads a row selected with [`COLUMNS`], in that order.
    pub(super) fn decode(row: &SqliteRow) -> Result<HistoryRow, HistoryError> {
        let change_id: i64 = row.try_get(0).map_err(|e| bad(0, e))?;
        let get = |e: sqlx::Error| bad(change_id, e);
        let changed_fields: Option<String> = row.try_get(14).map_err(get)?;
        let changed_fields = changed_fields
            .map(|text| {
                serde_json::from_str::<Vec<String>>(&text).map_err(|e| HistoryError::BadRow {
                    change_id,
                    detail: format!("changed_fields {text:?} is not a JSON array of names: {e}"),
                })
            })
            .transpose()?;
        Ok(HistoryRow {
            change_id,
            detected_at: row.try_get(1).map_err(get)?,
            customer_id: row.try_get(2).map_err(get)?,
            customer_name: row.try_get(3).map_err(get)?,
            profile_id: row.try_get(4).map_err(get)?,
            kind: row.try_get(5).map_err(get)?,
            baseline: row.try_get(6).map_err(get)?,
            profile_name: row.try_get(7).map_err(get)?,
            scan_mode: row.try_get(8).map_err(get)?,
            scan_mode_name: row.try_get(9).map_err(get)?,
            modified_time: row.try_get(10).map_err(get)?,
            old_profile_name: row.try_get(11).map_err(get)?,
            old_scan_mode: row.try_get(12).map_err(get)?,
            old_modified_time: row.try_get(13).map_err(get)?,
            changed_fields,
            poll_id: row.try_get(15).map_err(get)?,
        })
    }

    /// The row as CSV fields, in [`COLUMNS`] order; NULL is an empty field
    /// and `changed_fields` its JSON text.
    fn csv_record(&self) -> [String; 16] {
        fn text(value: &Option<String>) -> String {
            value.clone().unwrap_or_default()
        }
        fn number(value: Option<i64>) -> String {
            value.map(|v| v.to_string()).unwrap_or_default()
        }
        let fields = self
            .changed_fields
            .as_ref()
            .map(|f| serde_json::to_string(f).expect("a list of strings serialises"))
            .unwrap_or_default();
        [
            self.change_id.to_string(),
            self.detected_at.clone(),
            self.customer_id.clone(),
            text(&self.customer_name),
            self.profile_id.clone(),
            self.kind.clone(),
            self.baseline.to_string(),
            text(&self.profile_name),
            number(self.scan_mode),
            text(&self.scan_mode_name),
            text(&self.modified_time),
            text(&self.old_profile_name),
            number(self.old_scan_mode),
            text(&self.old_modified_time),
            fields,
            self.poll_id.to_string(),
        ]
    }
}

fn bad(change_id: i64, error: sqlx::Error) -> HistoryError {
    HistoryError::BadRow {
        change_id,
        detail: error.to_string(),
    }
}

/// A format in the middle of writing.
pub(super) enum Sink<'a> {
    Table(&'a mut (dyn Write + Send)),
    Ndjson(&'a mut (dyn Write + Send)),
    Json {
        out: &'a mut (dyn Write + Send),
        first: bool,
    },
    Csv(Box<csv::Writer<&'a mut (dyn Write + Send)>>),
}

impl<'a> Sink<'a> {
    /// Writes what comes before the first row: a header, or `[`.
    pub(super) fn start(
        format: Format,
        out: &'a mut (dyn Write + Send),
    ) -> Result<Sink<'a>, HistoryError> {
        Ok(match format {
            Format::Table => {
                out.write_all(table::header().as_bytes())?;
                Sink::Table(out)
            }
            Format::Ndjson => Sink::Ndjson(out),
            Format::Json => {
                out.write_all(b"[")?;
                Sink::Json { out, first: true }
            }
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record(COLUMNS).map_err(csv_error)?;
                Sink::Csv(Box::new(writer))
            }
        })
    }

    pub(super) fn write(&mut self, row: &HistoryRow) -> Result<(), HistoryError> {
        match self {
            Sink::Table(out) => out.write_all(table::line(row).as_bytes())?,
            Sink::Ndjson(out) => {
                serde_json::to_writer(&mut **out, row).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
            Sink::Json { out, first } => {
                out.write_all(if *first { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut **out, row).map_err(std::io::Error::from)?;
                *first = false;
            }
            Sink::Csv(writer) => writer.write_record(row.csv_record()).map_err(csv_error)?,
        }
        Ok(())
    }

    /// Writes what comes after the last row and flushes.
    pub(super) fn finish(self, written: u64) -> Result<(), HistoryError> {
        match self {
            Sink::Table(out) => {
                if written == 0 {
                    out.write_all(b"(no changes match)\n")?;
                }
                out.flush()?;
            }
            Sink::Ndjson(out) => out.flush()?,
            Sink::Json { out, first } => {
                out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
                out.flush()?;
            }
            Sink::Csv(mut writer) => writer.flush()?,
        }
        Ok(())
    }
}

fn csv_error(error: csv::Error) -> HistoryError {
    HistoryError::Write(error.into())
}

/// The fixed-width table.
mod table {
    use super::HistoryRow;
    use crate::history::columns::{clean, end_line, fit, short_time};
    use crate::profile::field;

    const CHANGE: usize = 7;
    const DETECTED: usize = 19;
    const CUSTOMER: usize = 20;
    const KIND: usize = 8;
    const PROFILE: usize = 24;
    const MODE: usize = 8;
    const PROFILE_ID: usize = 36;

    pub fn header() -> String {
        compose(
            "CHANGE",
            "DETECTED (UTC)",
            "CUSTOMER",
            "KIND",
            "PROFILE",
            "MODE",
            "PROFILE ID",
            "CHANGES",
        )
    }

    pub fn line(row: &HistoryRow) -> String {
        let kind = if row.baseline == 1 {
            "baseline"
        } else {
            &row.kind
        };
        compose(
            &row.change_id.to_string(),
            &short_time(&row.detected_at),
            row.customer_name.as_deref().unwrap_or(&row.customer_id),
            kind,
            row.profile_name.as_deref().unwrap_or(""),
            row.scan_mode_name.as_deref().unwrap_or(""),
            &row.profile_id,
            &changes(row),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn compose(
        change: &str,
        detected: &str,
        customer: &str,
        kind: &str,
        profile: &str,
        mode: &str,
        profile_id: &str,
        changes: &str,
    ) -> String {
        let mut line = format!("{:>CHANGE$}", clean(change));
        for (value, width) in [
            (detected, DETECTED),
            (customer, CUSTOMER),
            (kind, KIND),
            (profile, PROFILE),
            (mode, MODE),
            (profile_id, PROFILE_ID),
        ] {
            line.push_str("  ");
            line.push_str(&fit(value, width));
        }
        line.push_str("  ");
        line.push_str(&clean(changes));
        end_line(line)
    }

    /// `old -> new` for each changed field: name and mode first, then any
    /// other field by name, and `modifiedTime`, which moves with every edit,
    /// last.
    fn changes(row: &HistoryRow) -> String {
        let Some(fields) = &row.changed_fields else {
            return String::new();
        };
        let rank = |field: &str| match field {
            field::NAME => 0,
            field::SCAN_MODE => 1,
            field::MODIFIED_TIME => 3,
            _ => 2,
        };
        let mut fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        fields.sort_by_key(|f| rank(f));
        let parts: Vec<String> = fields
            .into_iter()
            .map(|name| match name {
                field::NAME => format!(
                    "name {} -> {}",
                    quoted(row.old_profile_name.as_deref()),
                    quoted(row.profile_name.as_deref())
                ),
                field::SCAN_MODE => format!(
                    "mode {} -> {}",
                    mode_name(row.old_scan_mode),
                    mode_name(row.scan_mode)
                ),
                field::MODIFIED_TIME => format!(
                    "modified {} -> {}",
                    row.old_modified_time
                        .as_deref()
                        .map_or("(none)".to_owned(), short_time),
                    row.modified_time
                        .as_deref()
                        .map_or("(none)".to_owned(), short_time)
                ),
                other => format!("{other} changed"),
            })
            .collect();
        parts.join("; ")
    }

    fn quoted(value: Option<&str>) -> String {
        value.map_or("(none)".to_owned(), |v| format!("\"{v}\""))
    }

    /// The same names the view gives `scan_mode_name`.
    fn mode_name(mode: Option<i64>) -> String {
        match mode {
            Some(0) => "Express".to_owned(),
            Some(1) => "Advanced".to_owned(),
            Some(other) => other.to_string(),
            None => "(none)".to_owned(),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn changed_row() -> HistoryRow {
            HistoryRow {
                change_id: 42,
                detected_at: "2025-09-12T10:00:00.000000Z".to_owned(),
                customer_id: "03f7382e-0000-1cda-0000-dd9a000074f0".to_owned(),
                customer_name: Some("Contoso".to_owned()),
                profile_id: "47dba9a1-1004-4c2d-b2ce-8f5e66f5842d".to_owned(),
                kind: "changed".to_owned(),
                baseline: 0,
                profile_name: Some("Finance Sites".to_owned()),
                scan_mode: Some(1),
                scan_mode_name: Some("Advanced".to_owned()),
                modified_time: Some("2025-09-12T09:59:00.000000Z".to_owned()),
                old_profile_name: Some("Finance Mailboxes".to_owned()),
                old_scan_mode: Some(0),
                old_modified_time: Some("2025-09-11T03:19:14.000000Z".to_owned()),
                changed_fields: Some(vec![
                    "modifiedTime".to_owned(),
                    "profileName".to_owned(),
                    "scanMode".to_owned(),
                    "owner".to_owned(),
                ]),
                poll_id: 7,
            }
        }

        #[test]
        fn a_change_shows_old_and_new_for_each_field() {
            let line = line(&changed_row());
            assert!(
                line.ends_with(
                    "name \"Finance Mailboxes\" -> \"Finance Sites\"; \
                     mode Express -> Advanced; owner changed; \
                     modified 2025-09-11 03:19:14 -> 2025-09-12 09:59:00\n"
                ),
                "{line}"
            );
        }

        #[test]
        fn columns_start_at_the_same_place_in_header_and_rows() {
            let mut long = changed_row();
            long.customer_name = Some("A customer with a very long name indeed".to_owned());
            long.profile_name = Some("Line\nbreak".to_owned());
            let header = header();
            for row in [line(&changed_row()), line(&long)] {
                let profile_id = row.find("47dba9a1").unwrap();
                assert_eq!(profile_id, header.find("PROFILE ID").unwrap(), "{row}");
                assert_eq!(row.find("Advanced"), header.find("MODE"), "{row}");
                assert_eq!(row.lines().count(), 1);
            }
            assert!(line(&long).contains("A customer with a v~"));
        }

        #[test]
        fn a_baseline_row_says_baseline_and_has_no_changes() {
            let mut row = changed_row();
            row.kind = "added".to_owned();
            row.baseline = 1;
            row.changed_fields = None;
            let line = line(&row);
            assert!(line.contains("  baseline  "), "{line}");
            assert!(
                line.ends_with("47dba9a1-1004-4c2d-b2ce-8f5e66f5842d\n"),
                "{line}"
            );
        }
    }
}
