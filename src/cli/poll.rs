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
    let store = Store::open(&settings.storage)
        .await
        .context("cannot start")?;
    let poller = Arc::new(Poller::new(
        api,
        store,
        settings.detection.clone(),
        settings.schedule.alert_after_failures,
    ));

    let failed = poll_all(&poller, customers).await;

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
pub async fn poll_all(poller: &Arc<Poller>, customers: Vec<Customer>) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for customer in customers {
        let poller = Arc::clone(poller);
        tasks.spawn(async move { poller.poll(&customer).await.succeeded() });
    }
    let mut failed = 0;
    while let Some(result) = tasks.join_next().await {
        if !matches!(result, Ok(true)) {
            failed += 1;
        }
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
