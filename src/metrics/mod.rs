//! Prometheus metrics and the health endpoints of `scanwatch run`.
//!
//! This module owns the name, type and help text of every exported metric
//! (the constants in [`names`], the one place they are spelled), the
//! process-wide registry they live in, the functions the poller and the API
//! client call to count what happened, and the HTTP listener that serves
//! `/metrics`, `/healthz` and `/readyz` (see `server`). It decides nothing
//! about polling: it only counts and answers.
//!
//! Counting goes to one process-wide [`Metrics`] whatever the command, so the
//! API client and the poller need no handle passed down to them. A count is a
//! few atomic operations on series created once, with no allocation; a
//! command that never serves `/metrics` (`poll`, `demo`) pays that and nothing
//! else.
//!
//! Per-customer series exist only for the customers of the current config:
//! [`track`] sets them at start and after each reload, seeded from the
//! database, and removes from the registry the series of a customer that
//! left the config (or changed its name), so that no alert keeps firing for
//! a customer nobody polls any more. A poll that ends for a customer not
//! tracked touches no per-customer series.
//!
//! What the listener exposes is counts, times and sizes, labelled with
//! customer IDs and configured names at most: no secret, token, URL or
//! profile data.

mod server;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::customer::{Customer, CustomerId};
use crate::diff::{ChangeKind, Warning};
use crate::poller::{PollOutcome, PollReport};
use crate::store::{Committed, CustomerState, Store};
use crate::timestamp;

pub use server::{Health, Listener, CONTENT_TYPE};

/// The version and commit scanwatch was built from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_HASH: &str = env!("SCANWATCH_GIT_HASH");

/// The heartbeat the scheduler sends for `/healthz` when no watchdog asks for
/// a faster one; `/healthz` fails after three missed beats.
pub const HEALTH_HEARTBEAT: Duration = Duration::from_secs(5);

/// Poll duration buckets, in seconds: from an idle poll over loopback to
/// one that waited out several `Retry-After` pauses.
const POLL_DURATION_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The exported metrics: name as scraped, type, labels and help text.
///
/// Names follow Prometheus conventions: `scanwatch_` first, counters end in
/// `_total`, units (`_seconds`, `_bytes`) come last before it.
pub mod names {
    /// What a metric is, as Prometheus types it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Kind {
        Counter,
        Gauge,
        Histogram,
    }

    /// One exported metric.
    #[derive(Debug, Clone, Copy)]
    pub struct MetricDef {
        pub name: &'static str,
        pub kind: Kind,
        pub labels: &'static [&'static str],
        pub help: &'static str,
    }

    const CUSTOMER: &[&str] = &["customer_id", "customer"];

    pub const BUILD_INFO: MetricDef = MetricDef {
        name: "scanwatch_build_info",
        kind: Kind::Gauge,
        labels: &["version", "git_hash"],
        help: "Always 1; the labels say which version and commit is running",
    };
    pub const POLL_INTERVAL: MetricDef = MetricDef {
        name: "scanwatch_poll_interval_seconds",
        kind: Kind::Gauge,
        labels: &[],
        help: "The configured schedule.interval, for alert rules that count intervals",
    };
    pub const CUSTOMERS: MetricDef = MetricDef {
        name: "scanwatch_customers",
        kind: Kind::Gauge,
        labels: &[],
        help: "Customers in the configuration being polled",
    };
    pub const POLLS: MetricDef = MetricDef {
        name: "scanwatch_polls_total",
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Polls finished, by outcome: ok, failed, or not_recorded when the database \
               refused the write",
    };
    pub const POLL_DURATION: MetricDef = MetricDef {
        name: "scanwatch_poll_duration_seconds",
        kind: Kind::Histogram,
        labels: &["outcome"],
        help: "How long polls took, from the first request to the commit, by outcome",
    };
    pub const API_REQUESTS: MetricDef = MetricDef {
        name: "scanwatch_api_requests_total",
        kind: Kind::Counter,
        labels: &["status_class"],
        help: "Requests to the scan profile API, by the class of the HTTP status answered \
               (1xx to 5xx), or error when no response came (connection failure, timeout); \
               token requests are counted in scanwatch_token_refreshes_total",
    };
    pub const RETRIES: MetricDef = MetricDef {
        name: "scanwatch_request_retries_total",
        kind: Kind::Counter,
        labels: &["endpoint"],
        help: "Requests sent again after a transient failure, by endpoint: api or token",
    };
    pub const RETRY_AFTER_PAUSES: MetricDef = MetricDef {
        name: "scanwatch_retry_after_pauses_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Pauses of every request to the API that a Retry-After header asked for",
    };
    pub const RETRY_AFTER_SECONDS: MetricDef = MetricDef {
        name: "scanwatch_retry_after_pause_seconds_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Seconds of pause that Retry-After headers asked for, added up",
    };
    pub const TOKEN_REFRESHES: MetricDef = MetricDef {
        name: "scanwatch_token_refreshes_total",
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Access tokens requested from the identity service, by outcome: ok, or failed \
               after the token request's own retries",
    };
    pub const TOKEN_FAILURES: MetricDef = MetricDef {
        name: "scanwatch_token_consecutive_failures",
        kind: Kind::Gauge,
        labels: &[],
        help: "Token refreshes that failed since the last one that succeeded",
    };
    pub const CHANGES: MetricDef = MetricDef {
        name: "scanwatch_changes_recorded_total",
        kind: Kind::Counter,
        labels: &["kind", "baseline"],
        help: "Rows written to the change log, by kind (added, changed, removed) and whether \
               they are a customer's baseline (its first list)",
    };
    pub const LAST_SUCCESS: MetricDef = MetricDef {
        name: "scanwatch_customer_last_success_timestamp_seconds",
        kind: Kind::Gauge,
        labels: CUSTOMER,
        help: "Unix time of the customer's last successful poll; for a customer never polled \
               successfully, of its first attempt, or of when it was scheduled if it was \
               never tried",
    };
    pub const CONSECUTIVE_FAILURES: MetricDef = MetricDef {
        name: "scanwatch_customer_consecutive_failures",
        kind: Kind::Gauge,
        labels: CUSTOMER,
        help: "Polls of the customer that failed since its last successful one",
    };
    pub const PROFILES: MetricDef = MetricDef {
        name: "scanwatch_customer_profiles_tracked",
        kind: Kind::Gauge,
        labels: CUSTOMER,
        help: "Scan profiles in the customer's snapshot",
    };
    pub const LAST_POLL_REMOVED: MetricDef = MetricDef {
        name: "scanwatch_customer_last_poll_removed_profiles",
        kind: Kind::Gauge,
        labels: CUSTOMER,
        help: "Profiles recorded as removed by the customer's last successful poll",
    };
    pub const DATABASE_SIZE: MetricDef = MetricDef {
        name: "scanwatch_database_size_bytes",
        kind: Kind::Gauge,
        labels: &[],
        help: "Size of the SQLite database on disk, its write-ahead log included",
    };

    /// Every exported metric, in the order `/metrics` lists them.
    pub const ALL: &[MetricDef] = &[
        BUILD_INFO,
        POLL_INTERVAL,
        CUSTOMERS,
        POLLS,
        POLL_DURATION,
        API_REQUESTS,
        RETRIES,
        RETRY_AFTER_PAUSES,
        RETRY_AFTER_SECONDS,
        TOKEN_REFRESHES,
        TOKEN_FAILURES,
        CHANGES,
        LAST_SUCCESS,
        CONSECUTIVE_FAILURES,
        PROFILES,
        LAST_POLL_REMOVED,
        DATABASE_SIZE,
    ];
}

use names::{Kind, MetricDef};

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusClassLabel {
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    kind: &'static str,
    baseline: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CustomerLabels {
    customer_id: String,
    customer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    git_hash: &'static str,
}

/// One configured customer's series, created when it is tracked.
#[derive(Debug)]
struct CustomerSeries {
    labels: CustomerLabels,
    last_success: FloatGauge,
    failures: Gauge,
    profiles: Gauge,
    removed: Gauge,
}

/// The registry and every series scanwatch exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Set once a listener serves this registry; until then nothing reads
    /// the per-customer series, and [`track`] skips its database query.
    serving: AtomicBool,
    poll_interval: FloatGauge,
    customers_configured: Gauge,
    polls: Family<OutcomeLabel, Counter>,
    poll_duration: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    api_requests: Family<StatusClassLabel, Counter>,
    retries: Family<EndpointLabel, Counter>,
    retry_after_pauses: Counter,
    retry_after_seconds: FloatCounter,
    token_refreshes: Family<OutcomeLabel, Counter>,
    token_failures: Gauge,
    changes: Family<ChangeLabels, Counter>,
    last_success: Family<CustomerLabels, FloatGauge>,
    consecutive_failures: Family<CustomerLabels, Gauge>,
    profiles: Family<CustomerLabels, Gauge>,
    last_poll_removed: Family<CustomerLabels, Gauge>,
    database_size: Gauge,
    customers: Mutex<HashMap<CustomerId, CustomerSeries>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and the label sets known in
    /// advance created at zero, so that rates work from the first scrape.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            serving: AtomicBool::new(false),
            poll_interval: FloatGauge::default(),
            customers_configured: Gauge::default(),
            polls: Family::default(),
            poll_duration: Family::new_with_constructor(poll_duration_histogram),
            api_requests: Family::default(),
            retries: Family::default(),
            retry_after_pauses: Counter::default(),
            retry_after_seconds: FloatCounter::default(),
            token_refreshes: Family::default(),
            token_failures: Gauge::default(),
            changes: Family::default(),
            last_success: Family::default(),
            consecutive_failures: Family::default(),
            profiles: Family::default(),
            last_poll_removed: Family::default(),
            database_size: Gauge::default(),
            customers: Mutex::new(HashMap::new()),
        };
        metrics.register_all();
        metrics.create_known_series();
        metrics
    }

    fn register_all(&mut self) {
        use names::*;
        let build_info: Family<BuildLabels, Gauge> = Family::default();
        build_info
            .get_or_create(&BuildLabels {
                version: VERSION,
                git_hash: GIT_HASH,
            })
            .set(1);
        let registry = &mut self.registry;
        register(registry, &BUILD_INFO, build_info);
        register(registry, &POLL_INTERVAL, self.poll_interval.clone());
        register(registry, &CUSTOMERS, self.customers_configured.clone());
        register(registry, &POLLS, self.polls.clone());
        register(registry, &POLL_DURATION, self.poll_duration.clone());
        register(registry, &API_REQUESTS, self.api_requests.clone());
        register(registry, &RETRIES, self.retries.clone());
        register(
            registry,
            &RETRY_AFTER_PAUSES,
            self.retry_after_pauses.clone(),
        );
        register(
            registry,
            &RETRY_AFTER_SECONDS,
            self.retry_after_seconds.clone(),
        );
        register(registry, &TOKEN_REFRESHES, self.token_refreshes.clone());
        register(registry, &TOKEN_FAILURES, self.token_failures.clone());
        register(registry, &CHANGES, self.changes.clone());
        register(registry, &LAST_SUCCESS, self.last_success.clone());
        register(
            registry,
            &CONSECUTIVE_FAILURES,
            self.consecutive_failures.clone(),
        );
        register(registry, &PROFILES, self.profiles.clone());
        register(registry, &LAST_POLL_REMOVED, self.last_poll_removed.clone());
        register(registry, &DATABASE_SIZE, self.database_size.clone());
    }

    fn create_known_series(&self) {
        for outcome in ["ok", "failed", "not_recorded"] {
            self.polls.get_or_create_owned(&OutcomeLabel { outcome });
        }
        for outcome in ["ok", "failed"] {
            self.token_refreshes
                .get_or_create_owned(&OutcomeLabel { outcome });
        }
        for status_class in ["2xx", "3xx", "4xx", "5xx", "error"] {
            self.api_requests
                .get_or_create_owned(&StatusClassLabel { status_class });
        }
        for endpoint in ["api", "token"] {
            self.retries
                .get_or_create_owned(&EndpointLabel { endpoint });
        }
        for kind in [ChangeKind::Added, ChangeKind::Changed, ChangeKind::Removed] {
            for baseline in ["true", "false"] {
                let kind = kind.as_str();
                self.changes
                    .get_or_create_owned(&ChangeLabels { kind, baseline });
            }
        }
    }

    /// The registry in the OpenMetrics text format, after refreshing the
    /// values that are read at scrape time.
    pub fn encode(&self, database_size: Option<u64>) -> String {
        if let Some(size) = database_size {
            self.database_size
                .set(i64::try_from(size).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    pub fn set_poll_interval(&self, interval: Duration) {
        self.poll_interval.set(interval.as_secs_f64());
    }

    /// Counts one response (`Some(status)`) or one request that got none.
    pub fn api_response(&self, status: Option<u16>) {
        let status_class = status_class(status);
        self.api_requests
            .get_or_create(&StatusClassLabel { status_class })
            .inc();
    }

    /// Counts a retry of an API request.
    pub fn api_retry(&self) {
        self.retries
            .get_or_create(&EndpointLabel { endpoint: "api" })
            .inc();
    }

    /// Counts a pause of every request to the API that a `Retry-After` asked
    /// for, whether or not a retry of the request that got it follows.
    pub fn retry_after_pause(&self, wait: Duration) {
        self.retry_after_pauses.inc();
        self.retry_after_seconds.inc_by(wait.as_secs_f64());
    }

    pub fn token_retry(&self) {
        self.retries
            .get_or_create(&EndpointLabel { endpoint: "token" })
            .inc();
    }

    pub fn token_refresh(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.token_refreshes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        if ok {
            self.token_failures.set(0);
        } else {
            self.token_failures.inc();
        }
    }

    /// Counts a finished poll, and updates the customer's failure count
    /// when the poll failed.
    pub fn poll_finished(&self, customer: &CustomerId, report: &PollReport) {
        let outcome = match &report.outcome {
            PollOutcome::Ok { .. } => "ok",
            PollOutcome::Failed { .. } => "failed",
            PollOutcome::NotRecorded { .. } => "not_recorded",
        };
        let label = OutcomeLabel { outcome };
        self.polls.get_or_create(&label).inc();
        self.poll_duration
            .get_or_create(&label)
            .observe(report.duration.as_secs_f64());
        if let PollOutcome::Failed { .. } = report.outcome {
            if let Some(series) = self.series().get(customer) {
                series.failures.set(i64::from(report.consecutive_failures));
            }
        }
    }

    /// Counts the changes a committed poll recorded and updates the
    /// customer's success time, snapshot size and removals.
    pub fn list_committed(&self, customer: &CustomerId, committed: &Committed) {
        let mut removed = 0;
        for change in &committed.outcome.changes {
            if change.kind == ChangeKind::Removed {
                removed += 1;
            }
            let labels = ChangeLabels {
                kind: change.kind.as_str(),
                baseline: if change.baseline { "true" } else { "false" },
            };
            self.changes.get_or_create(&labels).inc();
        }
        if let Some(series) = self.series().get(customer) {
            if let Some(at) = unix_seconds(&committed.finished_at) {
                series.last_success.set(at);
            }
            series.failures.set(0);
            series.profiles.set(snapshot_size(committed) as i64);
            series.removed.set(removed);
        }
    }

    /// Makes the per-customer series those of `customers`: new customers get
    /// series seeded from their `states` row (if any), customers that left or
    /// were renamed lose theirs. `now` stands for "when it was scheduled".
    pub fn track_customers(
        &self,
        customers: &[Customer],
        states: &[CustomerState],
        now: SystemTime,
    ) {
        let mut series = self.series();
        let wanted: HashMap<&CustomerId, CustomerLabels> = customers
            .iter()
            .map(|c| (&c.id, customer_labels(c)))
            .collect();
        series.retain(|id, current| {
            let keep = wanted.get(id) == Some(&current.labels);
            if !keep {
                self.remove_series(&current.labels);
            }
            keep
        });

        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        for customer in customers {
            if series.contains_key(&customer.id) {
                continue;
            }
            let labels = customer_labels(customer);
            let state = states
                .iter()
                .find(|s| s.customer_id == customer.id.as_str());
            let created = self.create_series(labels);
            let since = state
                .and_then(|s| {
                    s.last_success_at
                        .as_deref()
                        .or(s.first_polled_at.as_deref())
                })
                .and_then(unix_seconds)
                .unwrap_or(now);
            created.last_success.set(since);
            if let Some(state) = state {
                created.failures.set(i64::from(state.consecutive_failures));
                created.profiles.set(state.profiles as i64);
            }
            series.insert(customer.id.clone(), created);
        }
        self.customers_configured.set(series.len() as i64);
    }

    fn create_series(&self, labels: CustomerLabels) -> CustomerSeries {
        CustomerSeries {
            last_success: self.last_success.get_or_create_owned(&labels),
            failures: self.consecutive_failures.get_or_create_owned(&labels),
            profiles: self.profiles.get_or_create_owned(&labels),
            removed: self.last_poll_removed.get_or_create_owned(&labels),
            labels,
        }
    }

    fn remove_series(&self, labels: &CustomerLabels) {
        self.last_success.remove(labels);
        self.consecutive_failures.remove(labels);
        self.profiles.remove(labels);
        self.last_poll_removed.remove(labels);
    }

    fn series(&self) -> MutexGuard<'_, HashMap<CustomerId, CustomerSeries>> {
        // The map holds plain handles; a panic elsewhere cannot leave it
        // half-updated in a way that matters.
        self.customers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn register(registry: &mut Registry, def: &MetricDef, metric: impl Metric) {
    // prometheus-client appends `_total` and the unit itself.
    let mut name = def.name;
    if def.kind == Kind::Counter {
        name = name
            .strip_suffix("_total")
            .expect("counter names end in _total");
    }
    let unit = [("_seconds", Unit::Seconds), ("_bytes", Unit::Bytes)]
        .into_iter()
        .find_map(|(suffix, unit)| name.strip_suffix(suffix).map(|base| (base, unit)));
    match unit {
        Some((base, unit)) => registry.register_with_unit(base, def.help, unit, metric),
        None => registry.register(name, def.help, metric),
    }
}

fn poll_duration_histogram() -> Histogram {
    Histogram::new(POLL_DURATION_BUCKETS)
}

fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "error",
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) => "other",
    }
}

fn customer_labels(customer: &Customer) -> CustomerLabels {
    CustomerLabels {
        customer_id: customer.id.as_str().to_owned(),
        customer: customer.label().to_owned(),
    }
}

/// The snapshot's size after a commit: the list, plus profiles kept while
/// their removal waits for confirmation, or the whole previous snapshot
/// while an empty list waits for confirmation.
fn snapshot_size(committed: &Committed) -> usize {
    let outcome = &committed.outcome;
    let held = outcome.warnings.iter().find_map(|w| match w {
        Warning::EmptyListHeld {
            snapshot_profiles, ..
        } => Some(*snapshot_profiles),
        _ => None,
    });
    held.unwrap_or_else(|| {
        let waiting = outcome
            .ops
            .iter()
            .filter(|op| matches!(op, crate::diff::SnapshotOp::Missing { .. }))
            .count();
        committed.profiles + waiting
    })
}

fn unix_seconds(stored: &str) -> Option<f64> {
    let at = timestamp::parse_api_time(stored)?;
    Some(at.timestamp() as f64 + f64::from(at.timestamp_subsec_micros()) / 1e6)
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// See [`Metrics::api_response`].
pub fn api_response(status: Option<u16>) {
    global().api_response(status);
}

/// See [`Metrics::api_retry`].
pub fn api_retry() {
    global().api_retry();
}

/// See [`Metrics::retry_after_pause`].
pub fn retry_after_pause(wait: Duration) {
    global().retry_after_pause(wait);
}

/// See [`Metrics::token_retry`].
pub fn token_retry() {
    global().token_retry();
}

/// See [`Metrics::token_refresh`].
pub fn token_refresh(ok: bool) {
    global().token_refresh(ok);
}

/// See [`Metrics::poll_finished`].
pub fn poll_finished(customer: &CustomerId, report: &PollReport) {
    global().poll_finished(customer, report);
}

/// See [`Metrics::list_committed`].
pub fn list_committed(customer: &CustomerId, committed: &Committed) {
    global().list_committed(customer, committed);
}

/// See [`Metrics::set_poll_interval`].
pub fn set_poll_interval(interval: Duration) {
    global().set_poll_interval(interval);
}

/// Sets the per-customer series to `customers`, seeded from the database,
/// when a listener serves them; does nothing otherwise.
pub async fn track(store: &Store, customers: &[Customer]) {
    let metrics = global();
    if !metrics.serving.load(Ordering::Relaxed) {
        return;
    }
    let states = match store.customer_states().await {
        Ok(states) => states,
        Err(error) => {
            // The series still follow the config; only their starting
            // values are unknown until each customer's next poll.
            tracing::warn!(
                error = %error,
                "customer state not read; per-customer metrics start empty"
            );
            Vec::new()
        }
    };
    metrics.track_customers(customers, &states, SystemTime::now());
}

/// Starts the listener when `[metrics] listen` is set, and logs where.
pub async fn serve(
    listen: Option<std::net::SocketAddr>,
    health: &std::sync::Arc<Health>,
) -> anyhow::Result<Option<Listener>> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let listener = Listener::start(addr, std::sync::Arc::clone(health))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (metrics.listen): {e}"))?;
    tracing::info!(address = %listener.local_addr(), "metrics listening");
    Ok(Some(listener))
}

/// The heartbeat the scheduler should send: the watchdog's period, or
/// [`HEALTH_HEARTBEAT`] when `/healthz` is served and it is shorter.
pub fn heartbeat_period(watchdog: Option<Duration>, serving: bool) -> Option<Duration> {
    match (watchdog, serving) {
        (Some(watchdog), true) => Some(watchdog.min(HEALTH_HEARTBEAT)),
        (None, true) => Some(HEALTH_HEARTBEAT),
        (watchdog, false) => watchdog,
    }
}

#[cfg(test)]
mod tests;
