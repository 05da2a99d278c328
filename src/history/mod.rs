//! Reading the change log back: the filters of `scanwatch history`, the SQL
//! they become, and the four output formats; plus the per-customer summary
//! behind `scanwatch status` (see [`status`]).
//!
//! Everything here reads through the `change_history` view, the same public
//! interface `sqlite3` users query, so the command and a hand-written query
//! cannot disagree. Rows are streamed: sqlx hands them over through a bounded
//! channel and each is written before the next is read, so memory stays flat
//! however long the history is. With `--limit N` SQLite keeps the N newest in
//! its sorter, which is what the user asked for.
//!
//! This module never writes to the database and knows nothing of the config
//! file or of clap's parsing; `cli::history` and `cli::status` turn flags into
//! a [`Query`] and pick the [`Format`].

mod columns;
mod format;
mod query;
pub mod status;
mod time;

use std::io::Write;
use std::path::PathBuf;

use futures_util::TryStreamExt;

use crate::customer::{Customer, CustomerId};
use crate::diff::ChangeKind;
use crate::store::Store;

pub use format::{HistoryRow, COLUMNS};
pub use time::{parse_time_bound, InvalidTime};

/// Which changes to print. `Query::default()` means every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only these customers; empty means all.
    pub customers: Vec<CustomerId>,
    /// Only this profile (compared lower-case, as IDs are stored).
    pub profile: Option<String>,
    /// Only these kinds; empty means all.
    pub kinds: Vec<ChangeKind>,
    /// Only changes detected at or after this time (fixed stored form).
    pub since: Option<String>,
    /// Only changes detected before this time (fixed stored form).
    pub until: Option<String>,
    pub baseline: Baseline,
    /// Only the N newest changes by `change_id`, still printed oldest first.
    pub limit: Option<u64>,
}

/// What to do with baseline rows (the `added` rows of a customer's first list).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    #[default]
    Include,
    Exclude,
    Only,
}

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Fixed-width columns for people; a change shows `old -> new` per field.
    Table,
    /// One JSON object per line, written as rows arrive.
    Ndjson,
    /// One JSON array of objects.
    Json,
    /// RFC 4180 CSV with a header row.
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "database {} has no change_history view: it is not a scanwatch database, \
         or no `scanwatch poll` or `scanwatch run` has set it up yet",
        path.display()
    )]
    NotScanwatch { path: PathBuf },
    #[error("cannot read the history from {}: {source}", path.display())]
    Read { path: PathBuf, source: sqlx::Error },
    #[error("change {change_id} is unreadable: {detail}")]
    BadRow { change_id: i64, detail: String },
    #[error("cannot write the output: {0}")]
    Write(#[from] std::io::Error),
}

impl HistoryError {
    /// The reader went away (`scanwatch history | head`): not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, HistoryError::Write(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    fn read(store: &Store, source: sqlx::Error) -> HistoryError {
        let missing_schema = source
            .as_database_error()
            .is_some_and(|e| e.message().starts_with("no such table"));
        if missing_schema {
            HistoryError::NotScanwatch {
                path: store.path().to_owned(),
            }
        } else {
            HistoryError::Read {
                path: store.path().to_owned(),
                source,
            }
        }
    }
}

/// Writes the changes `query` selects to `out` in `format`, oldest first,
/// one row at a time, and returns how many rows it wrote. `out` is flushed
/// at the end.
pub async fn print(
    store: &Store,
    query: &Query,
    format: Format,
    out: &mut (dyn Write + Send),
) -> Result<u64, HistoryError> {
    let mut sql = query::build(query);
    let mut rows = sql.build().fetch(store.pool());
    let mut sink = format::Sink::start(format, out)?;
    let mut written = 0;
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| HistoryError::read(store, e))?
    {
        sink.write(&HistoryRow::decode(&row)?)?;
        written += 1;
    }
    sink.finish(written)?;
    Ok(written)
}

/// A `--customer` value that names no configured or recorded customer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither the ID nor the name of a configured customer or one in the database")]
pub struct UnknownCustomer(pub String);

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Unknown(#[from] UnknownCustomer),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// Turns `--customer` values into customer IDs. A value matches a customer
/// by ID, or by name (ignoring case) as configured or as last stored in the
/// database; a name shared by several customers selects them all.
pub async fn resolve_customers(
    store: &Store,
    configured: &[Customer],
    wanted: &[String],
) -> Result<Vec<CustomerId>, ResolveError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let recorded = status::recorded_names(store).await?;
    let mut ids: Vec<CustomerId> = Vec::new();
    for text in wanted {
        let matches = matching_customers(text, configured, &recorded);
        if matches.is_empty() {
            return Err(UnknownCustomer(text.clone()).into());
        }
        for id in matches {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

fn matching_customers(
    text: &str,
    configured: &[Customer],
    recorded: &[(CustomerId, Option<String>)],
) -> Vec<CustomerId> {
    let known = configured
        .iter()
        .map(|c| (&c.id, c.name.as_deref()))
        .chain(recorded.iter().map(|(id, name)| (id, name.as_deref())));
    if let Ok(id) = CustomerId::parse(text) {
        return known
            .filter(|(known, _)| **known == id)
            .take(1)
            .map(|(id, _)| id.clone())
            .collect();
    }
    let wanted = text.trim().to_lowercase();
    let mut ids: Vec<CustomerId> = Vec::new();
    for (id, name) in known {
        if name.is_some_and(|n| n.trim().to_lowercase() == wanted) && !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str, name: Option<&str>) -> Customer {
        Customer {
            id: CustomerId::parse(id).unwrap(),
            name: name.map(str::to_owned),
        }
    }

    const A: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";
    const B: &str = "13f7382e-0000-1cda-0000-dd9a000074f0";
    const C: &str = "23f7382e-0000-1cda-0000-dd9a000074f0";

    #[test]
    fn a_name_matches_configured_and_recorded_customers_ignoring_case() {
        let configured = [customer(A, Some("Contoso")), customer(B, None)];
        let recorded = [(CustomerId::parse(C).unwrap(), Some("contoso".to_owned()))];
        let ids = matching_customers("CONTOSO", &configured, &recorded);
        assert_eq!(ids, [configured[0].id.clone(), recorded[0].0.clone()]);
    }

    #[test]
    fn an_id_matches_only_a_known_customer() {
        let configured = [customer(A, Some("Contoso"))];
        assert_eq!(
            matching_customers(&A.to_uppercase(), &configured, &[]),
            [configured[0].id.clone()]
        );
        assert!(matching_customers(B, &configured, &[]).is_empty());
    }

    #[test]
    fn a_customer_named_in_config_and_database_is_selected_once() {
        let configured = [customer(A, Some("Contoso"))];
        let recorded = [(configured[0].id.clone(), Some("Contoso".to_owned()))];
        assert_eq!(
            matching_customers("contoso", &configured, &recorded),
            [configured[0].id.clone()]
        );
    }
}
