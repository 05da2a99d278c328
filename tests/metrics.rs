//! `/metrics`, `/healthz` and `/readyz` of `scanwatch run`, scraped while it
//! polls the embedded simulator and compared with what the database and the
//! simulator say happened. Values are read with a Prometheus text parser.
//!
//! A scrape is compared only once the daemon is frozen: every customer's
//! request is held by the simulator's latency, so no poll can finish between
//! the scrape and the queries it is checked against.

mod common_daemon;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common_daemon::*;
use prometheus_parse::{Sample, Scrape, Value};
use scanwatch::metrics::{Health, Listener};
use scanwatch::scheduler::Event;
use scanwatch::simulator::{Command as SimCommand, Fault, FaultTarget, Simulator};
use scanwatch::store::Store;
use sqlx::Connection;

/// A parsed scrape.
struct Scraped {
    text: String,
    scrape: Scrape,
}

impl Scraped {
    async fn get(base: &str) -> Scraped {
        let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, scanwatch::metrics::CONTENT_TYPE);
        let text = response.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        Scraped { text, scrape }
    }

    fn samples(&self, name: &str) -> Vec<&Sample> {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .collect()
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples(name)
            .into_iter()
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?} in:\n{}", self.text);
        match found[0].value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} is not a single value: {other:?}"),
        }
    }

    /// The sum of every sample of `name`.
    fn total(&self, name: &str) -> f64 {
        self.samples(name)
            .iter()
            .map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                ref other => panic!("{name} is not a single value: {other:?}"),
            })
            .sum()
    }
}

/// Waits until a scrape satisfies `check`.
async fn until_scraped(base: &str, what: &str, check: impl Fn(&Scraped) -> bool) -> Scraped {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let scraped = Scraped::get(base).await;
        if check(&scraped) {
            return scraped;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not in time; last scrape:\n{}",
            scraped.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Holds every API response back for a minute and waits until each of
/// `customers` has a request held: from then on no poll can finish.
async fn freeze(sim: &Simulator, customers: usize) {
    sim.apply(SimCommand::ClearFaults).unwrap();
    // Built from JSON, as the control endpoint takes it, so that fields
    // added to the command later keep their defaults here.
    let hold = serde_json::json!({"op": "set_latency", "latency_ms": 60_000});
    sim.apply(serde_json::from_value(hold).unwrap()).unwrap();
    // Requests arriving from now on are held, and a customer never has two
    // in flight, so this many more arrivals means each customer has one.
    let arrived = sim.counters().api_requests;
    until("every customer's request held", || async {
        sim.counters().api_requests >= arrived + customers as u64
    })
    .await;
}

/// Arms a status fault on the list of `customer` (every customer if `None`).
fn inject(
    sim: &Simulator,
    customer: Option<&str>,
    status: u16,
    retry_after: Option<&str>,
    count: Option<u32>,
) {
    sim.apply(SimCommand::InjectFault {
        customer: customer.map(str::to_owned),
        target: FaultTarget::List,
        fault: Fault::Status {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: None,
        },
        count,
        probability: None,
        seed: None,
        after: None,
    })
    .unwrap();
}

/// Waits until `GET url` answers `status`, and returns the body.
async fn until_status(url: &str, status: u16) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (got, body) = get(url).await;
        if got == status {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} still answers {got}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one(db: &Path, sql: &str, customer: &str) -> i64 {
    count(db, sql, customer).await
}

/// Unix seconds of a stored time.
fn unix(stored: &str) -> f64 {
    let at = chrono::DateTime::parse_from_rfc3339(stored).unwrap();
    at.timestamp() as f64 + f64::from(at.timestamp_subsec_micros()) / 1e6
}

async fn last_success(db: &Path, customer: &str) -> f64 {
    let store = Store::open_read_only(db).await.unwrap();
    let at: String =
        sqlx::query_scalar("SELECT last_success_at FROM customers WHERE customer_id = ?")
            .bind(customer)
            .fetch_one(store.pool())
            .await
            .unwrap();
    store.close().await;
    unix(&at)
}

#[tokio::test]
async fn polls_failures_retries_and_changes_on_metrics_match_what_the_database_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(2).await;
    let ids = sim.customer_ids();
    let (a, b) = (ids[0].as_str(), ids[1].as_str());
    let text = config(
        &sim,
        &db,
        &ids,
        &Extra {
            schedule: "interval = \"1s\"\njitter = \"0s\"\nshutdown_grace = \"2s\"",
            api: "timeout = \"90s\"\nretries = 2",
            metrics: true,
            ..Extra::default()
        },
    );
    let mut daemon = Daemon::start(dir.path(), &text, &[]);
    let base = daemon.metrics_url().await;

    // During: the first scrapes already carry the configuration.
    let first = until_scraped(&base, "two customers tracked", |s| {
        s.value("scanwatch_customers", &[]) == 2.0
    })
    .await;
    assert_eq!(first.value("scanwatch_poll_interval_seconds", &[]), 1.0);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(first.value("scanwatch_build_info", &version), 1.0);
    until("both customers polled twice", || async {
        polls(&db, a, "ok").await >= 2 && polls(&db, b, "ok").await >= 2
    })
    .await;
    let during = Scraped::get(&base).await;
    let baseline = [("kind", "added"), ("baseline", "true")];
    assert_eq!(
        during.value("scanwatch_changes_recorded_total", &baseline),
        10.0,
        "five profiles of each customer, as their baseline"
    );
    assert!(during.value("scanwatch_polls_total", &[("outcome", "ok")]) >= 4.0);

    // Changes at A: one profile added, one renamed, one deleted.
    let served = sim.profiles(a);
    let profile_id = |i: usize| served[i]["profileId"].as_str().unwrap().to_owned();
    sim.apply(SimCommand::AddProfile {
        customer: a.to_owned(),
        profile_name: Some("Nightly".to_owned()),
        scan_mode: None,
    })
    .unwrap();
    sim.apply(SimCommand::RenameProfile {
        customer: a.to_owned(),
        profile_id: profile_id(0),
        profile_name: "Renamed".to_owned(),
    })
    .unwrap();
    sim.apply(SimCommand::DeleteProfile {
        customer: a.to_owned(),
        profile_id: profile_id(1),
    })
    .unwrap();
    let live_changes =
        "SELECT COUNT(*) FROM profile_changes WHERE customer_id = ? AND baseline = 0";
    until("A's three changes recorded", || async {
        one(&db, live_changes, a).await == 3
    })
    .await;

    // B gets a 404 (not retried) on every request from now on; A gets one
    // 500 and one 429 asking for a one-second pause, and retries past both.
    inject(&sim, Some(b), 404, None, None);
    until("B failed twice", || async {
        polls(&db, b, "failed").await >= 2
    })
    .await;
    inject(&sim, Some(a), 500, None, Some(1));
    inject(&sim, Some(a), 429, Some("1"), Some(1));
    until_scraped(&base, "A's retries counted", |s| {
        s.value("scanwatch_request_retries_total", &[("endpoint", "api")]) == 2.0
    })
    .await;

    freeze(&sim, 2).await;
    let m = Scraped::get(&base).await;
    let counters = sim.counters();
    let faults_fired = sim.faults_fired();

    // Polls, by outcome and in the duration histogram.
    let ok = polls(&db, a, "ok").await + polls(&db, b, "ok").await;
    assert_eq!(polls(&db, a, "failed").await, 0);
    let failed = polls(&db, b, "failed").await;
    let outcome = |o| [("outcome", o)];
    assert_eq!(m.value("scanwatch_polls_total", &outcome("ok")), ok as f64);
    assert_eq!(
        m.value("scanwatch_polls_total", &outcome("failed")),
        failed as f64
    );
    assert_eq!(
        m.value("scanwatch_polls_total", &outcome("not_recorded")),
        0.0
    );
    let durations = "scanwatch_poll_duration_seconds_count";
    assert_eq!(m.value(durations, &outcome("ok")), ok as f64);
    assert_eq!(m.value(durations, &outcome("failed")), failed as f64);
    assert!(m.value("scanwatch_poll_duration_seconds_sum", &outcome("ok")) > 0.0);

    // Changes by kind.
    let changes = "scanwatch_changes_recorded_total";
    let of = |kind, baseline| m.value(changes, &[("kind", kind), ("baseline", baseline)]);
    assert_eq!(of("added", "true"), 10.0);
    assert_eq!(of("added", "false"), 1.0);
    assert_eq!(of("changed", "false"), 1.0);
    assert_eq!(of("removed", "false"), 1.0);
    assert_eq!(of("removed", "true") + of("changed", "true"), 0.0);

    // Requests: every response the simulator sent, by class; the two held
    // requests have no answer yet.
    let requests = "scanwatch_api_requests_total";
    let class = |c| m.value(requests, &[("status_class", c)]);
    assert_eq!(m.total(requests), (counters.api_requests - 2) as f64);
    assert_eq!(class("4xx"), (failed + 1) as f64, "B's 404s and A's 429");
    assert_eq!(class("5xx"), 1.0, "A's 500");
    assert_eq!(class("5xx") + class("4xx"), faults_fired as f64);
    assert_eq!(class("error"), 0.0);
    assert_eq!(
        class("2xx"),
        (counters.api_requests - 2 - faults_fired) as f64
    );
    let retries = "scanwatch_request_retries_total";
    assert_eq!(
        m.value(retries, &[("endpoint", "api")]),
        2.0,
        "after the 500 and after the 429; a 404 is not retried"
    );
    assert_eq!(m.value(retries, &[("endpoint", "token")]), 0.0);
    assert_eq!(m.value("scanwatch_retry_after_pauses_total", &[]), 1.0);
    assert_eq!(
        m.value("scanwatch_retry_after_pause_seconds_total", &[]),
        1.0
    );
    let refreshes = "scanwatch_token_refreshes_total";
    assert_eq!(
        m.value(refreshes, &outcome("ok")),
        counters.token_requests as f64
    );
    assert_eq!(m.value(refreshes, &outcome("failed")), 0.0);

    // Per customer, as the database has it.
    for (id, name) in [(a, "Customer 1"), (b, "Customer 2")] {
        let labels = [("customer_id", id), ("customer", name)];
        let last = m.value("scanwatch_customer_last_success_timestamp_seconds", &labels);
        assert!(
            (last - last_success(&db, id).await).abs() < 1e-5,
            "{id}: {last}"
        );
        let failures = "SELECT consecutive_failures FROM customers WHERE customer_id = ?";
        assert_eq!(
            m.value("scanwatch_customer_consecutive_failures", &labels),
            one(&db, failures, id).await as f64
        );
        let profiles = "SELECT COUNT(*) FROM profiles WHERE customer_id = ?";
        assert_eq!(
            m.value("scanwatch_customer_profiles_tracked", &labels),
            one(&db, profiles, id).await as f64
        );
        let removed = "SELECT removed FROM polls WHERE customer_id = ? AND outcome = 'ok' \
                       ORDER BY poll_id DESC LIMIT 1";
        assert_eq!(
            m.value("scanwatch_customer_last_poll_removed_profiles", &labels),
            one(&db, removed, id).await as f64
        );
    }
    assert_eq!(
        m.value("scanwatch_customer_profiles_tracked", &[("customer_id", a)]),
        5.0
    );

    let on_disk: u64 = [db.clone(), dir.path().join("scanwatch.db-wal")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(
        m.value("scanwatch_database_size_bytes", &[]),
        on_disk as f64
    );
    for secret in [
        sim.config().client_secret.as_str(),
        sim.base_url().as_str(),
        "Renamed",
        "Nightly",
    ] {
        assert!(!m.text.contains(secret), "/metrics shows {secret}");
    }

    // A reload that drops B removes its series; A's stay.
    let only_a = config(
        &sim,
        &db,
        &ids[..1],
        &Extra {
            schedule: "interval = \"1s\"\njitter = \"0s\"\nshutdown_grace = \"2s\"",
            api: "timeout = \"90s\"\nretries = 2",
            metrics: true,
            ..Extra::default()
        },
    );
    write_private(&daemon.config, &only_a);
    daemon.signal(libc::SIGHUP);
    let reloaded = until_scraped(&base, "B's series gone", |s| {
        s.value("scanwatch_customers", &[]) == 1.0
    })
    .await;
    let per_customer: Vec<&Sample> = reloaded
        .scrape
        .samples
        .iter()
        .filter(|s| s.labels.get("customer_id").is_some())
        .collect();
    assert_eq!(per_customer.len(), 4, "A's four series: {per_customer:?}");
    assert!(per_customer
        .iter()
        .all(|s| s.labels.get("customer_id") == Some(a)));

    // A running scheduler and a database that answers make a healthy daemon;
    // a stopping scheduler does not, while its held poll gets the grace.
    assert_eq!(
        get(&format!("{base}/healthz")).await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        (200, "ready\n".to_owned())
    );
    daemon.signal(libc::SIGTERM);
    let stopping = until_status(&format!("{base}/healthz"), 503).await;
    assert_eq!(stopping, "shutting down: the scheduler is stopping\n");
    assert_eq!(
        get(&format!("{base}/readyz")).await,
        (503, "shutting down\n".to_owned())
    );
    let status = daemon.exit_within(DEADLINE).await.expect("exits");
    assert!(status.success());
}

#[tokio::test]
async fn token_refreshes_and_polls_the_database_refused_are_counted_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(1).await;
    let ids = sim.customer_ids();
    let a = ids[0].as_str();
    let text = config(
        &sim,
        &db,
        &ids,
        &Extra {
            schedule: "interval = \"1s\"\njitter = \"0s\"\nshutdown_grace = \"1s\"",
            api: "timeout = \"90s\"\nretries = 1",
            storage: "busy_timeout = \"100ms\"",
            metrics: true,
            ..Extra::default()
        },
    );
    let mut daemon = Daemon::start(dir.path(), &text, &[]);
    let base = daemon.metrics_url().await;
    until("polled once", || async { polls(&db, a, "ok").await >= 1 }).await;

    // Revoked tokens make the next request a 401; the refresh it asks for
    // fails twice (a retry), which fails that poll; the next poll gets one.
    sim.apply(SimCommand::InjectFault {
        customer: None,
        target: FaultTarget::Token,
        fault: Fault::Status {
            status: 503,
            retry_after: None,
            body: None,
        },
        count: Some(2),
        probability: None,
        seed: None,
        after: None,
    })
    .unwrap();
    sim.apply(SimCommand::RevokeTokens).unwrap();
    let refreshed = until_scraped(&base, "a failed refresh", |s| {
        s.value("scanwatch_token_refreshes_total", &[("outcome", "failed")]) == 1.0
    })
    .await;
    assert!(refreshed.value("scanwatch_token_consecutive_failures", &[]) <= 1.0);
    until_scraped(&base, "a refresh after the failed one", |s| {
        s.value("scanwatch_token_refreshes_total", &[("outcome", "ok")]) == 2.0
    })
    .await;

    // Another writer holding the database makes the daemon's write fail.
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    until_scraped(&base, "a poll not recorded", |s| {
        s.value("scanwatch_polls_total", &[("outcome", "not_recorded")]) >= 1.0
    })
    .await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();

    freeze(&sim, 1).await;
    let m = Scraped::get(&base).await;
    let counters = sim.counters();
    let outcome = |o| [("outcome", o)];
    let refreshes = "scanwatch_token_refreshes_total";
    assert_eq!(m.value(refreshes, &outcome("failed")), 1.0);
    assert_eq!(m.value(refreshes, &outcome("ok")), 2.0);
    assert_eq!(
        counters.token_requests, 4,
        "one token, two failed attempts, one token"
    );
    assert_eq!(
        m.value("scanwatch_request_retries_total", &[("endpoint", "token")]),
        1.0
    );
    assert_eq!(m.value("scanwatch_token_consecutive_failures", &[]), 0.0);
    assert_eq!(
        m.value("scanwatch_api_requests_total", &[("status_class", "4xx")]),
        1.0,
        "the 401 of the revoked token"
    );
    let failed = polls(&db, a, "failed").await;
    assert_eq!(failed, 1, "the poll whose refresh failed");
    assert_eq!(m.value("scanwatch_polls_total", &outcome("failed")), 1.0);
    let ok = polls(&db, a, "ok").await;
    assert_eq!(m.value("scanwatch_polls_total", &outcome("ok")), ok as f64);
    let not_recorded = m.value("scanwatch_polls_total", &outcome("not_recorded"));
    assert!(not_recorded >= 1.0);
    assert_eq!(
        m.value(
            "scanwatch_poll_duration_seconds_count",
            &outcome("not_recorded")
        ),
        not_recorded
    );
    daemon.stop().await;
}

#[tokio::test]
async fn healthz_reports_a_stalled_scheduler_and_a_database_that_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&storage_settings(dir.path())).await.unwrap();
    let health = Health::new(Some(Duration::from_secs(1)));
    let listener = Listener::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&health))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr());
    let healthz = format!("{base}/healthz");
    let readyz = format!("{base}/readyz");

    assert_eq!(
        get(&readyz).await,
        (
            503,
            "starting: the first schedule is not set yet\n".to_owned()
        )
    );
    assert_eq!(
        get(&healthz).await,
        (503, "starting: the scheduler has not started\n".to_owned())
    );

    health.set_store(store.clone());
    scheduled(&health);
    assert_eq!(get(&readyz).await, (200, "ready\n".to_owned()));
    assert_eq!(get(&healthz).await, (200, "ok\n".to_owned()));

    // No heartbeat for three periods: the loop counts as stalled.
    let stalled = until_status(&healthz, 503).await;
    assert!(
        stalled.starts_with("scheduler loop stalled: no heartbeat for "),
        "{stalled}"
    );
    assert!(stalled.ends_with("s (expected every 1s)\n"), "{stalled}");
    assert_eq!(stalled.lines().count(), 1);

    // A heartbeat again, but the database is gone.
    health.observe(&Event::<()>::Heartbeat);
    assert_eq!(get(&healthz).await, (200, "ok\n".to_owned()));
    store.close().await;
    let (status, body) = get(&healthz).await;
    assert_eq!(status, 503);
    assert!(body.starts_with("database does not answer: "), "{body}");
    assert_eq!(body.lines().count(), 1);
    assert_eq!(get(&readyz).await.0, 200, "readiness is about startup");

    let (status, _) = get(&format!("{base}/other")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn healthz_fails_once_the_database_file_is_replaced_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let settings = storage_settings(dir.path());
    let store = Store::open(&settings).await.unwrap();
    let health = Health::new(None);
    health.set_store(store.clone());
    scheduled(&health);
    let listener = Listener::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&health))
        .await
        .unwrap();
    let healthz = format!("http://{}/healthz", listener.local_addr());
    assert_eq!(get(&healthz).await, (200, "ok\n".to_owned()));

    // A backup restored over the database while the service runs: the path
    // names a new file, and the store still holds the old one open.
    let database = &settings.database;
    let restored = dir.path().join("restored.db");
    std::fs::copy(database, &restored).unwrap();
    std::fs::rename(&restored, database).unwrap();
    let (status, body) = get(&healthz).await;
    assert_eq!(status, 503);
    assert!(
        body.starts_with(&format!(
            "database {} was deleted or replaced",
            database.display()
        )),
        "{body}"
    );
    assert!(body.contains("restart scanwatch"), "{body}");
    assert_eq!(body.lines().count(), 1);

    // Deleted outright: the same answer.
    std::fs::remove_file(database).unwrap();
    let (status, body) = get(&healthz).await;
    assert_eq!(status, 503);
    assert!(body.contains("was deleted or replaced"), "{body}");
}

/// Tells `health` the scheduler set its first schedule.
fn scheduled(health: &Health) {
    health.observe(&Event::<()>::Scheduled {
        customers: 1,
        added: 1,
        removed: 0,
        next_due: None,
    });
}

fn storage_settings(dir: &Path) -> scanwatch::config::StorageSettings {
    let text = format!(
        "[auth]\nclient_id = \"x\"\nclient_secret = \"y\"\n[storage]\ndatabase = \"{}\"\n\
         [[customers]]\nid = \"03f7382e-0000-1cda-0000-dd9a000074f0\"\n",
        dir.join("scanwatch.db").display()
    );
    scanwatch::config::ConfigFile::from_toml_ignoring_environment(
        &dir.join("scanwatch.toml"),
        &text,
    )
    .unwrap()
    .storage()
    .unwrap()
}
