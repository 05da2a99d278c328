//! `scanwatch history`: prints the recorded changes, oldest first, filtered
//! by customer, profile, kind, time and baseline.
//!
//! It reads only `[storage]` and the customer names from the config, opens
//! the database read-only (so it runs beside the daemon and needs no
//! secret), and leaves the SQL and the formats to [`crate::history`].

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::config::ConfigFile;
use crate::diff::ChangeKind;
use crate::history::{self, Baseline, Format, Query, ResolveError};
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Times are RFC 3339 (2025-09-01T00:00:00Z), a date (2025-09-01, midnight UTC)
or an age counted back from now (7d, 12h, 1h30m). --since is inclusive,
--until exclusive.

Examples:
  scanwatch history --customer Contoso --since 7d
  scanwatch history --kind changed --baseline exclude --format csv > changes.csv
  scanwatch history --profile 47dba9a1-1004-4c2d-b2ce-8f5e66f5842d --format table
  scanwatch history --since 2025-09-01 --until 2025-10-01 | jq -c 'select(.kind == \"removed\")'")]
pub struct Args {
    /// Only this customer, by ID or by name (repeatable).
    #[arg(long = "customer", value_name = "ID|NAME")]
    pub customers: Vec<String>,
    /// Only this scan profile.
    #[arg(long, value_name = "ID")]
    pub profile: Option<String>,
    /// Only changes of this kind (repeatable).
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    pub kinds: Vec<Kind>,
    /// Only changes detected at or after this time or age.
    #[arg(long, value_name = "TIME|AGE")]
    pub since: Option<String>,
    /// Only changes detected before this time or age.
    #[arg(long, value_name = "TIME|AGE")]
    pub until: Option<String>,
    /// Whether to show the rows of each customer's first list.
    #[arg(long, value_enum, default_value_t = Baseline::Include, value_name = "WHICH")]
    pub baseline: Baseline,
    /// Only the N newest changes (still printed oldest first).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Output format [default: table on a terminal, ndjson otherwise].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Added,
    Changed,
    Removed,
}

impl From<Kind> for ChangeKind {
    fn from(kind: Kind) -> ChangeKind {
        match kind {
            Kind::Added => ChangeKind::Added,
            Kind::Changed => ChangeKind::Changed,
            Kind::Removed => ChangeKind::Removed,
        }
    }
}

pub async fn run(config: &Path, args: Args) -> Result<ExitCode, CliError> {
    let file = load_config(config)?;
    let storage = file.storage()?;
    let configured = file.customers()?;
    let mut query = query_without_customers(&args)?;

    let store = Store::open_read_only(&storage.database)
        .await
        .map_err(|e| CliError::Failure(e.into()))?;
    query.customers = history::resolve_customers(&store, &configured, &args.customers)
        .await
        .map_err(|e| match e {
            ResolveError::Unknown(e) => CliError::Usage(format!("--customer: {e}")),
            ResolveError::History(e) => CliError::Failure(e.into()),
        })?;

    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let format = args.format.unwrap_or(if terminal {
        Format::Table
    } else {
        Format::Ndjson
    });
    // A terminal gets each row as it comes (stdout is line-buffered); a pipe
    // or file gets full buffers.
    let mut out: Box<dyn Write + Send> = if terminal {
        Box::new(stdout)
    } else {
        Box::new(BufWriter::with_capacity(64 * 1024, stdout))
    };
    let printed = history::print(&store, &query, format, &mut *out).await;
    store.close().await;
    match printed {
        Ok(rows) => {
            tracing::debug!(rows, "history printed");
            Ok(ExitCode::SUCCESS)
        }
        // `scanwatch history | head` is a normal way to end.
        Err(error) if error.is_broken_pipe() => Ok(ExitCode::SUCCESS),
        Err(error) => Err(CliError::Failure(error.into())),
    }
}

/// [`super::load_config`], except that sqlx's slow-statement warning is off:
/// a streamed history keeps its one statement open for as long as the
/// reader takes, which is not a slow query.
fn load_config(path: &Path) -> Result<ConfigFile, CliError> {
    let file = ConfigFile::load(path)?;
    let mut log = file.log()?;
    log.level = format!("{},sqlx::query=error", log.level);
    crate::logging::init(&log);
    for warning in file.warnings() {
        tracing::warn!(config = %file.path().display(), "{warning}");
    }
    Ok(file)
}

/// Every filter but `--customer`, which needs the database to resolve names.
fn query_without_customers(args: &Args) -> Result<Query, CliError> {
    let now = chrono::Utc::now();
    let bound = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| history::parse_time_bound(t, now))
            .transpose()
            .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
    };
    let since = bound("--since", &args.since)?;
    let until = bound("--until", &args.until)?;
    if let (Some(since), Some(until)) = (&since, &until) {
        if since >= until {
            return Err(CliError::Usage(format!(
                "--until: {until} is not after --since {since}, so nothing could match"
            )));
        }
    }
    let profile = args.profile.as_deref().map(str::trim);
    if profile.is_some_and(str::is_empty) {
        return Err(CliError::Usage(
            "--profile: must name a profile ID".to_owned(),
        ));
    }
    Ok(Query {
        customers: Vec::new(),
        profile: profile.map(str::to_lowercase),
        kinds: args.kinds.iter().map(|&k| k.into()).collect(),
        since,
        until,
        baseline: args.baseline,
        limit: args.limit,
    })
}
