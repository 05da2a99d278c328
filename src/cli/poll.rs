//! `scanwatch poll`: one poll of each configured (or named) customer, for
//! cron and for trying a configuration out.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::CliError;
use crate::api::ApiClient;
use crate::customer::{Customer, CustomerId};
use crate::poller::Poller;
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  scanwatch poll --customer 03f7382e-0000-1cda-0000-dd9a000074f0"
)]
pub struct Args {
    /// Poll only this configured customer (repeatable).
    #[arg(long = "customer", value_name = "ID")]
    pub customers: Vec<String>,
}

pub async fn run(config: &Path, args: Args) -> Result<ExitCode, CliError> {
    let file = super::load_config(config)?;
    let settings = file.settings()?;
    let customers = select(&settings.customers, &args.customers)?;
    let api = ApiClient::new(&settings.api, &settings.auth)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let (store, check) = Store::open_checking(&settings.storage)
        .await
        .context("cannot start")?;
    let poller = Arc::new(Poller::new(
        api,
        store,
        settings.detection.clone(),
        settings.schedule.alert_after_failures,
    ));

    // Fetching starts while the database is checked; every write waits for
    // the check, and a failed check stops the run before anything is written.
    let checking = check.run();
    let polling = poll_all(&poller, customers);
    tokio::pin!(polling, checking);
    let failed = tokio::select! {
        checked = &mut checking => {
            checked.context("cannot start")?;
            polling.await
        }
        failed = &mut polling => {
            checking.await.context("cannot start")?;
            failed
        }
    };

    if let Err(error) = poller
        .store()
        .prune_polls(settings.storage.poll_retention)
        .await
    {
        tracing::warn!(error = %error, "pruning old polls failed");
    }
    poller.store().close().await;
    if failed > 0 {
        return Err(CliError::Failure(anyhow::anyhow!(
            "{failed} poll(s) failed; see the log lines above or `scanwatch status`"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls every customer, as many at once as the API client allows, and
/// returns how many polls did not succeed.
///
/// A fixed set of workers takes customers from a shared queue, rather than
/// one task per customer waiting for a place: with 10,000 customers those
/// waiting tasks would hold memory (and scheduler time) for nothing. There
/// are twice as many workers as places, so that while some wait for their
/// turn at the database others keep every place busy with the API.
pub async fn poll_all(poller: &Arc<Poller>, customers: Vec<Customer>) -> usize {
    let workers = (2 * poller.api().max_concurrency()).clamp(1, customers.len().max(1));
    let queue = Arc::new(std::sync::Mutex::new(customers.into_iter()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (poller, queue) = (Arc::clone(poller), Arc::clone(&queue));
        tasks.spawn(async move {
            let mut failed = 0;
            loop {
                let next = queue.lock().expect("queue lock poisoned").next();
                let Some(customer) = next else { break failed };
                if !poller.poll(&customer).await.succeeded() {
                    failed += 1;
                }
            }
        });
    }
    let mut failed = 0;
    while let Some(result) = tasks.join_next().await {
        // A worker that panicked lost its polls; count it as one failure so
        // the exit code says something went wrong.
        failed += result.unwrap_or(1);
    }
    failed
}

/// The configured customers named by `--customer`, or all of them.
fn select(configured: &[Customer], wanted: &[String]) -> Result<Vec<Customer>, CliError> {
    if configured.is_empty() {
        return Err(CliError::Usage(
            "customers: none configured; add a [[customers]] table with an id".to_owned(),
        ));
    }
    if wanted.is_empty() {
        return Ok(configured.to_vec());
    }
    wanted
        .iter()
        .map(|text| {
            let id =
                CustomerId::parse(text).map_err(|e| CliError::Usage(format!("--customer: {e}")))?;
            configured
                .iter()
                .find(|c| c.id == id)
                .cloned()
                .ok_or_else(|| CliError::Usage(format!("--customer: {id} is not in the config")))
        })
        .collect()
}
