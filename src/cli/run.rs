//! `scanwatch run`: the daemon. Polls every configured customer on its
//! schedule until SIGTERM or SIGINT.
//!
//! This file only wires things together: the config, the store, one
//! [`Poller`] (so the API client's limits hold across the whole daemon), the
//! [`Scheduler`], the signals, the systemd notify protocol, the metrics
//! listener and the hourly pruning of old `polls` rows. When each customer is
//! due is the scheduler's business; what a poll records is the poller's.
//!
//! SIGHUP re-reads the config: customers added start polling, customers
//! removed stop (their history stays), and an invalid new config is logged
//! and the old one kept. Only `[[customers]]` changes apply on reload; the
//! other sections take effect at the next restart, and a reload that
//! changes them says so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

use super::CliError;
use crate::api::ApiClient;
use crate::config::{ConfigFile, Settings};
use crate::customer::{Customer, CustomerId};
use crate::metrics::{self, Health};
use crate::notify::Notifier;
use crate::poller::{PollReport, Poller};
use crate::scheduler::{Event, Roster, Scheduler, Timing};
use crate::store::{Store, StoreError};
use crate::timestamp;

/// How often old `polls` rows are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Stops on SIGTERM or SIGINT; SIGHUP re-reads [[customers]].\n\
    Example:\n  scanwatch run --config /etc/scanwatch/scanwatch.toml"
)]
pub struct Args {}

pub async fn run(config: &Path, _args: Args) -> Result<ExitCode, CliError> {
    let file = super::load_config(config)?;
    let settings = file.settings()?;
    require_customers(&settings)?;
    let api = ApiClient::new(&settings.api, &settings.auth)
        .map_err(|e| CliError::Usage(e.to_string()))?;

    // Listening before anything slow starts means a stop asked for during
    // startup is kept, not lost.
    let signals = Signals::listen().context("cannot listen for signals")?;

    let store = Store::open(&settings.storage)
        .await
        .context("cannot start")?;
    let roster = resume(&store, settings.customers.clone())
        .await
        .context("cannot read when customers were last polled")?;
    let poller = Arc::new(Poller::new(
        api,
        store.clone(),
        settings.detection.clone(),
        settings.schedule.alert_after_failures,
    ));
    let notifier = Notifier::from_env();
    let heartbeat = metrics::heartbeat_period(
        notifier.watchdog_period(),
        settings.metrics_listen.is_some(),
    );
    let health = Health::new(heartbeat);
    health.set_store(store.clone());
    let _listener = metrics::serve(settings.metrics_listen, &health).await?;
    metrics::set_poll_interval(settings.schedule.interval);
    metrics::track(&store, &settings.customers).await;
    tracing::info!(
        customers = settings.customers.len(),
        database = %settings.storage.database.display(),
        interval_s = settings.schedule.interval.as_secs(),
        watchdog_ms = notifier.watchdog_period().map(|p| p.as_millis() as u64),
        "scanwatch starting"
    );

    let (roster_sender, roster) = watch::channel(roster);
    let pruning = tokio::spawn(prune_hourly(store.clone(), settings.storage.poll_retention));
    let reloading = tokio::spawn(reload_on_hangup(Reload {
        hangup: signals.hangup,
        path: file.path().to_owned(),
        current: settings.clone(),
        store: store.clone(),
        roster: roster_sender,
        notifier: notifier.clone(),
    }));

    let poll = move |customer: Customer| {
        let poller = Arc::clone(&poller);
        async move { poller.poll(&customer).await }
    };
    let mut scheduler = Scheduler::new(
        Timing::from(&settings.schedule),
        poll,
        with_health(
            health,
            &notifier,
            watching_the_file(store.clone(), observer(notifier.clone())),
        ),
    );
    if let Some(period) = heartbeat {
        scheduler = scheduler.heartbeat(period);
    }
    let stop = stop_requested(signals.terminate, signals.interrupt, notifier);
    let stopped = scheduler.run(roster, stop).await;

    reloading.abort();
    pruning.abort();
    store.close().await;
    tracing::info!(
        finished_in_grace = stopped.finished_in_grace,
        abandoned = stopped.abandoned.len(),
        "scanwatch stopped"
    );
    Ok(ExitCode::SUCCESS)
}

fn require_customers(settings: &Settings) -> Result<(), CliError> {
    if settings.customers.is_empty() {
        return Err(CliError::Usage(
            "customers: none configured; add a [[customers]] table with an id".to_owned(),
        ));
    }
    Ok(())
}

/// The signals the daemon answers.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// Resolves at the first SIGTERM or SIGINT, after telling systemd.
async fn stop_requested(mut terminate: Signal, mut interrupt: Signal, notifier: Notifier) {
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "stop requested");
    notifier.stopping();
}

/// Turns scheduler events into systemd notifications: `READY=1` once a
/// schedule is set (at start and at the end of each reload), `STATUS=` after
/// each batch of polls, `WATCHDOG=1` on each heartbeat of the loop.
fn observer(notifier: Notifier) -> impl FnMut(Event<PollReport>) {
    let mut customers = 0;
    let mut failed = 0;
    move |event| match event {
        Event::Scheduled {
            customers: count,
            next_due,
            ..
        } => {
            customers = count;
            let next = next_due.map_or("none".to_owned(), |d| format!("{}s", d.as_secs()));
            notifier.ready(&format!("{count} customers scheduled; next poll in {next}"));
        }
        Event::Finished { output, .. } => {
            if !output.succeeded() {
                failed += 1;
            }
        }
        Event::Idle { polls } => {
            notifier.status(&format!(
                "{customers} customers; last batch: {} ok, {failed} failed",
                polls.saturating_sub(failed)
            ));
            failed = 0;
        }
        Event::Heartbeat => notifier.watchdog(),
        Event::Stopping { .. } => {}
    }
}

/// Logs an error after the first batch of polls that follows the database
/// file's deletion or replacement. SQLite goes on writing to the file it
/// opened, so until a restart every poll commits where no reader finds it;
/// `/healthz` says so too, but not everyone probes it.
fn watching_the_file(
    store: Store,
    mut observe: impl FnMut(Event<PollReport>),
) -> impl FnMut(Event<PollReport>) {
    let mut reported = false;
    move |event| {
        if matches!(event, Event::Idle { .. }) && !reported && store.file_replaced() {
            reported = true;
            tracing::error!(
                database = %store.path().display(),
                "database file deleted or replaced since it was opened; restart scanwatch"
            );
        }
        observe(event);
    }
}

/// Lets `health` see every scheduler event before `observe` does. The
/// heartbeat also runs for `/healthz`; systemd hears it only if it asked.
fn with_health(
    health: Arc<Health>,
    notifier: &Notifier,
    mut observe: impl FnMut(Event<PollReport>),
) -> impl FnMut(Event<PollReport>) {
    let watchdog = notifier.watchdog_period().is_some();
    move |event| {
        health.observe(&event);
        if watchdog || !matches!(event, Event::Heartbeat) {
            observe(event);
        }
    }
}

/// The roster for `customers`, with how long ago the database says each was
/// last polled, so that a restart resumes the schedule instead of restarting it.
async fn resume(store: &Store, customers: Vec<Customer>) -> Result<Roster, StoreError> {
    let now = chrono::Utc::now();
    let since_last_poll: HashMap<CustomerId, Duration> = store
        .last_polled()
        .await?
        .into_iter()
        .filter_map(|(id, at)| {
            let id = CustomerId::parse(&id).ok()?;
            let at = timestamp::parse_api_time(&at?)?;
            // A last poll in the future (a clock set back) counts as just now.
            Some((id, (now - at).to_std().unwrap_or(Duration::ZERO)))
        })
        .collect();
    Ok(Roster {
        customers,
        since_last_poll,
    })
}

async fn prune_hourly(store: Store, retention: Duration) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    loop {
        every.tick().await;
        match store.prune_polls(retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old polls pruned"),
            Err(error) => tracing::warn!(error = %error, "pruning old polls failed"),
        }
    }
}

/// What a SIGHUP needs.
struct Reload {
    hangup: Signal,
    path: PathBuf,
    current: Settings,
    store: Store,
    roster: watch::Sender<Roster>,
    notifier: Notifier,
}

async fn reload_on_hangup(mut reload: Reload) {
    while reload.hangup.recv().await.is_some() {
        reload.notifier.reloading();
        tracing::info!(config = %reload.path.display(), "reloading the configuration");
        match read_new_settings(&reload.path, &reload.current) {
            Ok(next) => match resume(&reload.store, next.customers.clone()).await {
                // The scheduler answers a new roster with `READY=1`.
                Ok(roster) => {
                    metrics::track(&reload.store, &next.customers).await;
                    reload.roster.send_replace(roster);
                    reload.current = next;
                }
                Err(error) => reload_failed(&reload, &error.to_string()),
            },
            Err(error) => reload_failed(&reload, &error.to_string()),
        }
    }
}

fn reload_failed(reload: &Reload, error: &str) {
    tracing::error!(
        config = %reload.path.display(),
        error,
        "configuration reload failed; the previous configuration stays"
    );
    reload
        .notifier
        .ready("reload failed; running with the previous configuration");
}

/// Reads and validates the config again, and warns about changes that only
/// a restart applies.
fn read_new_settings(path: &Path, current: &Settings) -> Result<Settings, CliError> {
    let file = ConfigFile::load(path)?;
    let next = file.settings()?;
    require_customers(&next)?;
    for warning in file.warnings() {
        tracing::warn!(config = %path.display(), "{warning}");
    }
    if restart_only(&next) != restart_only(current) {
        tracing::warn!(
            config = %path.display(),
            "settings outside [[customers]] changed; they take effect at the next restart"
        );
    }
    Ok(next)
}

/// Everything but the customers, in a comparable form. Secrets print
/// redacted, so a new secret in the same place is not seen as a change;
/// that needs a restart anyway, and the docs say so.
fn restart_only(settings: &Settings) -> String {
    format!(
        "{:?}",
        (
            &settings.api,
            &settings.auth,
            &settings.schedule,
            &settings.storage,
            &settings.detection,
            &settings.metrics_listen,
            &settings.log,
        )
    )
}
