//! The summary behind `scanwatch status`: one row per customer that is
//! configured or has rows in the database, built from the `customers`
//! table, the snapshot and the change log.

use std::io::Write;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::columns::{clean, end_line, fit, short_time};
use super::HistoryError;
use crate::customer::{Customer, CustomerId};
use crate::store::Store;

/// How a customer's last poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastPoll {
    Never,
    Ok,
    Failed,
}

impl LastPoll {
    pub fn as_str(self) -> &'static str {
        match self {
            LastPoll::Never => "never",
            LastPoll::Ok => "ok",
            LastPoll::Failed => "failed",
        }
    }
}

/// One customer's state, as `status --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerStatus {
    pub customer_id: String,
    /// The configured name, else the one stored at the last poll.
    pub name: Option<String>,
    pub configured: bool,
    pub last_polled_at: Option<String>,
    pub last_poll: LastPoll,
    pub last_success_at: Option<String>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Profiles in the snapshot.
    pub profiles: u64,
    pub last_change_at: Option<String>,
}

impl CustomerStatus {
    /// A configured customer whose last poll failed: what makes `status` exit 1.
    pub fn is_failing(&self) -> bool {
        self.configured && self.last_poll == LastPoll::Failed
    }

    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.customer_id)
    }
}

/// Every customer the database knows, with the name stored at its last poll.
pub(super) async fn recorded_names(
    store: &Store,
) -> Result<Vec<(CustomerId, Option<String>)>, HistoryError> {
    let rows = sqlx::query("SELECT customer_id, name FROM customers ORDER BY customer_id")
        .fetch_all(store.pool())
        .await
        .map_err(|e| HistoryError::read(store, e))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let id = CustomerId::parse(row.get(0)).ok()?;
            Some((id, row.get(1)))
        })
        .collect())
}

/// The configured customers in config order, then those only the database
/// knows, ordered by name.
pub async fn read(
    store: &Store,
    configured: &[Customer],
) -> Result<Vec<CustomerStatus>, HistoryError> {
    let rows = sqlx::query(
        "SELECT cu.customer_id, cu.name, cu.last_polled_at, cu.last_success_at, \
         cu.consecutive_failures, cu.last_error, \
         (SELECT count(*) FROM profiles AS p WHERE p.customer_id = cu.customer_id), \
         (SELECT c.detected_at FROM profile_changes AS c WHERE c.customer_id = cu.customer_id \
          ORDER BY c.change_id DESC LIMIT 1) \
         FROM customers AS cu",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| HistoryError::read(store, e))?;

    let mut recorded: Vec<CustomerStatus> = rows
        .iter()
        .map(|row| {
            let last_polled_at: Option<String> = row.get(2);
            let failures = row.get::<i64, _>(4).clamp(0, u32::MAX.into()) as u32;
            CustomerStatus {
                customer_id: row.get(0),
                name: row.get(1),
                configured: false,
                last_poll: match (&last_polled_at, failures) {
                    (None, _) => LastPoll::Never,
                    (Some(_), 0) => LastPoll::Ok,
                    (Some(_), _) => LastPoll::Failed,
                },
                last_polled_at,
                last_success_at: row.get(3),
                consecutive_failures: failures,
                last_error: row.get(5),
                profiles: row.get::<i64, _>(6).max(0) as u64,
                last_change_at: row.get(7),
            }
        })
        .collect();

    let mut statuses = Vec::with_capacity(configured.len() + recorded.len());
    for customer in configured {
        let id = customer.id.as_str();
        let mut status = match recorded.iter().position(|r| r.customer_id == id) {
            Some(index) => recorded.swap_remove(index),
            None => never_polled(id),
        };
        status.configured = true;
        if customer.name.is_some() {
            status.name = customer.name.clone();
        }
        statuses.push(status);
    }
    recorded.sort_by(|a, b| {
        (a.label().to_lowercase(), &a.customer_id).cmp(&(b.label().to_lowercase(), &b.customer_id))
    });
    statuses.extend(recorded);
    Ok(statuses)
}

fn never_polled(customer_id: &str) -> CustomerStatus {
    CustomerStatus {
        customer_id: customer_id.to_owned(),
        name: None,
        configured: true,
        last_polled_at: None,
        last_poll: LastPoll::Never,
        last_success_at: None,
        consecutive_failures: 0,
        last_error: None,
        profiles: 0,
        last_change_at: None,
    }
}

/// Writes the statuses as a JSON array, errors in full.
pub fn write_json(statuses: &[CustomerStatus], out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, statuses)?;
    out.write_all(b"\n")?;
    out.flush()
}

const NAME: usize = 20;
const ID: usize = 36;
const CONFIGURED: usize = 10;
const TIME: usize = 19;
const OUTCOME: usize = 7;
const FAILURES: usize = 8;
const PROFILES: usize = 8;
/// Errors are shortened to this many characters in the table.
const ERROR: usize = 60;

/// Writes the statuses as a fixed-width table; long errors are shortened.
pub fn write_table(statuses: &[CustomerStatus], out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(
        table_line([
            "NAME",
            "CUSTOMER ID",
            "CONFIGURED",
            "LAST POLL (UTC)",
            "OUTCOME",
            "FAILURES",
            "PROFILES",
            "LAST CHANGE (UTC)",
            "LAST ERROR",
        ])
        .as_bytes(),
    )?;
    for status in statuses {
        let last_poll = status
            .last_polled_at
            .as_deref()
            .map_or("never".to_owned(), short_time);
        let last_change = status
            .last_change_at
            .as_deref()
            .map_or("-".to_owned(), short_time);
        let error = status.last_error.as_deref().map_or(String::new(), |e| {
            let e = clean(e);
            if e.chars().count() > ERROR {
                let mut cut: String = e.chars().take(ERROR - 3).collect();
                cut.push_str("...");
                cut
            } else {
                e
            }
        });
        let line = table_line([
            status.label(),
            &status.customer_id,
            if status.configured { "yes" } else { "no" },
            &last_poll,
            status.last_poll.as_str(),
            &status.consecutive_failures.to_string(),
            &status.profiles.to_string(),
            &last_change,
            &error,
        ]);
        out.write_all(line.as_bytes())?;
    }
    out.flush()
}

fn table_line(values: [&str; 9]) -> String {
    let widths = [
        NAME, ID, CONFIGURED, TIME, OUTCOME, FAILURES, PROFILES, TIME,
    ];
    let mut line = String::new();
    for (value, width) in values.iter().zip(widths) {
        line.push_str(&fit(value, width));
        line.push_str("  ");
    }
    line.push_str(&clean(values[8]));
    end_line(line)
}
