//! `scanwatch status`: one row per customer, configured or in the database,
//! with its last poll, failures, snapshot size and last change; exit code 1
//! when any configured customer's last poll failed, for monitoring scripts.

use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::history::status::{self, CustomerStatus};
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit code 1 when the last poll of any configured customer failed; a customer
never polled yet does not count.

Examples:
  scanwatch status
  scanwatch status --format json | jq -r '.[] | select(.last_poll == \"failed\") | .name'")]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table, value_name = "FORMAT")]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// Fixed-width columns; long errors shortened.
    Table,
    /// A JSON array; errors in full.
    Json,
}

pub async fn run(config: &Path, args: Args) -> Result<ExitCode, CliError> {
    let file = super::load_config(config)?;
    let storage = file.storage()?;
    let configured = file.customers()?;
    let store = Store::open_read_only(&storage.database)
        .await
        .map_err(|e| CliError::Failure(e.into()))?;
    let statuses = status::read(&store, &configured)
        .await
        .map_err(|e| CliError::Failure(e.into()));
    store.close().await;
    let statuses = statuses?;

    let mut out = BufWriter::new(std::io::stdout().lock());
    let written = match args.format {
        StatusFormat::Table => status::write_table(&statuses, &mut out),
        StatusFormat::Json => status::write_json(&statuses, &mut out),
    };
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(CliError::Failure(
                anyhow::Error::new(error).context("cannot write the status"),
            ));
        }
        _ => {}
    }
    drop(out);
    failing(&statuses)?;
    Ok(ExitCode::SUCCESS)
}

/// An error naming every configured customer whose last poll failed.
fn failing(statuses: &[CustomerStatus]) -> Result<(), CliError> {
    let failing: Vec<&str> = statuses
        .iter()
        .filter(|s| s.is_failing())
        .map(|s| s.name.as_deref().unwrap_or(&s.customer_id))
        .collect();
    if failing.is_empty() {
        return Ok(());
    }
    Err(CliError::Failure(anyhow::anyhow!(
        "the last poll failed for {} configured customer(s): {}; `scanwatch status --format json` \
         shows each error in full",
        failing.len(),
        failing.join(", ")
    )))
}
