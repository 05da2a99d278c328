use std::time::{Duration, SystemTime};

use prometheus_parse::{Sample, Scrape, Value};

use super::*;
use crate::diff::{Change, Outcome, SnapshotOp};
use crate::profile::Profile;

const A: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";
const B: &str = "03f7382e-0000-1cda-0000-dd9a000074f1";

fn customer(id: &str, name: Option<&str>) -> Customer {
    Customer {
        id: CustomerId::parse(id).unwrap(),
        name: name.map(str::to_owned),
    }
}

fn scrape(metrics: &Metrics) -> Scrape {
    let text = metrics.encode(Some(12_288));
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn samples<'a>(scrape: &'a Scrape, name: &str) -> Vec<&'a Sample> {
    scrape.samples.iter().filter(|s| s.metric == name).collect()
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples(scrape, name)
        .into_iter()
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is not a single value: {other:?}"),
    }
}

fn profile(id: &str) -> Profile {
    Profile::parse(0, serde_json::json!({"profileId": id, "profileName": id})).unwrap()
}

fn change(kind: ChangeKind, baseline: bool, id: &str) -> Change {
    Change {
        kind,
        baseline,
        profile: profile(id),
        previous: None,
        changed_fields: None,
    }
}

fn committed(profiles: usize, outcome: Outcome) -> Committed {
    Committed {
        poll_id: 1,
        finished_at: "2025-09-11T03:19:14.250000Z".to_owned(),
        profiles,
        outcome,
        previous_failures: 0,
    }
}

#[test]
fn every_metric_is_exported_under_its_documented_name_and_type() {
    let metrics = Metrics::new();
    metrics.track_customers(&[customer(A, None)], &[], SystemTime::now());
    metrics.poll_finished(
        &CustomerId::parse(A).unwrap(),
        &PollReport {
            poll_id: Some(1),
            outcome: PollOutcome::Ok {
                http_status: 200,
                profiles: 0,
                added: 0,
                changed: 0,
                removed: 0,
            },
            duration: Duration::from_millis(300),
            consecutive_failures: 0,
        },
    );
    let text = metrics.encode(Some(1));

    for def in names::ALL {
        let family = match def.kind {
            Kind::Counter => def.name.strip_suffix("_total").unwrap(),
            _ => def.name,
        };
        let kind = match def.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} typed {kind} in:\n{text}"
        );
        let sample = match def.kind {
            Kind::Histogram => format!("{}_count", def.name),
            _ => def.name.to_owned(),
        };
        let parsed = scrape(&metrics);
        let found = parsed
            .samples
            .iter()
            .find(|s| s.metric == sample || s.metric == def.name)
            .unwrap_or_else(|| panic!("no sample of {} in:\n{text}", def.name));
        let mut labels: Vec<&str> = found.labels.keys().map(String::as_str).collect();
        labels.retain(|l| *l != "le");
        labels.sort_unstable();
        let mut documented = def.labels.to_vec();
        documented.sort_unstable();
        assert_eq!(labels, documented, "labels of {}", def.name);
    }
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
}

#[test]
fn build_info_names_the_version_and_a_commit() {
    let parsed = scrape(&Metrics::new());
    let info = value(
        &parsed,
        "scanwatch_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert_eq!(info, 1.0);
    let hash = samples(&parsed, "scanwatch_build_info")[0]
        .labels
        .get("git_hash")
        .unwrap()
        .to_owned();
    assert!(
        hash == "unknown" || (hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit())),
        "{hash}"
    );
}

#[test]
fn responses_are_counted_by_status_class_and_retries_by_endpoint() {
    let metrics = Metrics::new();
    metrics.api_response(Some(200));
    metrics.api_response(Some(204));
    metrics.api_response(Some(429));
    metrics.api_response(Some(503));
    metrics.api_response(None);
    metrics.api_retry();
    metrics.api_retry();
    metrics.retry_after_pause(Duration::from_millis(1500));
    metrics.token_retry();

    let parsed = scrape(&metrics);
    let requests = "scanwatch_api_requests_total";
    assert_eq!(value(&parsed, requests, &[("status_class", "2xx")]), 2.0);
    assert_eq!(value(&parsed, requests, &[("status_class", "4xx")]), 1.0);
    assert_eq!(value(&parsed, requests, &[("status_class", "5xx")]), 1.0);
    assert_eq!(value(&parsed, requests, &[("status_class", "error")]), 1.0);
    let retries = "scanwatch_request_retries_total";
    assert_eq!(value(&parsed, retries, &[("endpoint", "api")]), 2.0);
    assert_eq!(value(&parsed, retries, &[("endpoint", "token")]), 1.0);
    assert_eq!(
        value(&parsed, "scanwatch_retry_after_pauses_total", &[]),
        1.0
    );
    assert_eq!(
        value(&parsed, "scanwatch_retry_after_pause_seconds_total", &[]),
        1.5
    );
}

#[test]
fn token_failures_count_up_until_a_refresh_succeeds() {
    let metrics = Metrics::new();
    metrics.token_refresh(false);
    metrics.token_refresh(false);
    let parsed = scrape(&metrics);
    assert_eq!(
        value(&parsed, "scanwatch_token_consecutive_failures", &[]),
        2.0
    );
    let refreshes = "scanwatch_token_refreshes_total";
    assert_eq!(value(&parsed, refreshes, &[("outcome", "failed")]), 2.0);
    assert_eq!(value(&parsed, refreshes, &[("outcome", "ok")]), 0.0);

    metrics.token_refresh(true);
    let parsed = scrape(&metrics);
    assert_eq!(
        value(&parsed, "scanwatch_token_consecutive_failures", &[]),
        0.0
    );
    assert_eq!(value(&parsed, refreshes, &[("outcome", "ok")]), 1.0);
}

#[test]
fn a_committed_poll_sets_the_customer_series_and_counts_changes_by_kind() {
    let metrics = Metrics::new();
    let a = customer(A, Some("Contoso"));
    metrics.track_customers(std::slice::from_ref(&a), &[], SystemTime::now());
    let outcome = Outcome {
        changes: vec![
            change(ChangeKind::Added, false, "p1"),
            change(ChangeKind::Removed, false, "p2"),
            change(ChangeKind::Removed, false, "p3"),
        ],
        ops: vec![SnapshotOp::Missing {
            profile_id: "p4".to_owned(),
            missing_polls: 1,
        }],
        ..Outcome::default()
    };
    metrics.list_committed(&a.id, &committed(7, outcome));

    let parsed = scrape(&metrics);
    let customer = [("customer_id", A), ("customer", "Contoso")];
    assert_eq!(
        value(
            &parsed,
            "scanwatch_customer_last_success_timestamp_seconds",
            &customer
        ),
        1_757_560_754.25
    );
    assert_eq!(
        value(&parsed, "scanwatch_customer_profiles_tracked", &customer),
        8.0,
        "seven listed and one waiting for its removal to be confirmed"
    );
    assert_eq!(
        value(
            &parsed,
            "scanwatch_customer_last_poll_removed_profiles",
            &customer
        ),
        2.0
    );
    let changes = "scanwatch_changes_recorded_total";
    let of = |kind, baseline| value(&parsed, changes, &[("kind", kind), ("baseline", baseline)]);
    assert_eq!(of("added", "false"), 1.0);
    assert_eq!(of("removed", "false"), 2.0);
    assert_eq!(of("changed", "false"), 0.0);
    assert_eq!(of("added", "true"), 0.0);
}

#[test]
fn an_empty_list_held_keeps_the_snapshot_size() {
    let metrics = Metrics::new();
    let a = customer(A, None);
    metrics.track_customers(std::slice::from_ref(&a), &[], SystemTime::now());
    let outcome = Outcome {
        warnings: vec![Warning::EmptyListHeld {
            streak: 1,
            confirmations: 2,
            snapshot_profiles: 12,
        }],
        ..Outcome::default()
    };
    metrics.list_committed(&a.id, &committed(0, outcome));
    let parsed = scrape(&metrics);
    assert_eq!(
        value(
            &parsed,
            "scanwatch_customer_profiles_tracked",
            &[("customer_id", A)]
        ),
        12.0
    );
}

#[test]
fn failed_polls_set_the_customer_failure_count_and_count_by_outcome() {
    let metrics = Metrics::new();
    let a = customer(A, None);
    metrics.track_customers(std::slice::from_ref(&a), &[], SystemTime::now());
    let failed = PollReport {
        poll_id: Some(3),
        outcome: PollOutcome::Failed {
            http_status: Some(503),
            error: "503".to_owned(),
        },
        duration: Duration::from_secs(2),
        consecutive_failures: 4,
    };
    metrics.poll_finished(&a.id, &failed);
    let not_recorded = PollReport {
        poll_id: None,
        outcome: PollOutcome::NotRecorded {
            error: "locked".to_owned(),
        },
        duration: Duration::from_millis(40),
        consecutive_failures: 0,
    };
    metrics.poll_finished(&a.id, &not_recorded);

    let parsed = scrape(&metrics);
    assert_eq!(
        value(
            &parsed,
            "scanwatch_customer_consecutive_failures",
            &[("customer_id", A)]
        ),
        4.0,
        "a poll that was not recorded leaves the count as the database has it"
    );
    let polls = "scanwatch_polls_total";
    assert_eq!(value(&parsed, polls, &[("outcome", "failed")]), 1.0);
    assert_eq!(value(&parsed, polls, &[("outcome", "not_recorded")]), 1.0);
    assert_eq!(value(&parsed, polls, &[("outcome", "ok")]), 0.0);
    let durations = samples(&parsed, "scanwatch_poll_duration_seconds");
    let failed_histogram = durations
        .iter()
        .find(|s| s.labels.get("outcome") == Some("failed"))
        .unwrap();
    let Value::Histogram(buckets) = &failed_histogram.value else {
        panic!("{failed_histogram:?}");
    };
    let count_at = |le: f64| buckets.iter().find(|b| b.less_than == le).unwrap().count;
    assert_eq!(count_at(1.0), 0.0);
    assert_eq!(count_at(2.5), 1.0);
}

#[test]
fn customers_are_seeded_from_the_database_or_from_when_they_were_scheduled() {
    let metrics = Metrics::new();
    let states = [
        CustomerState {
            customer_id: A.to_owned(),
            last_success_at: Some("2025-09-11T03:19:14.000000Z".to_owned()),
            first_polled_at: Some("2025-09-01T00:00:00.000000Z".to_owned()),
            consecutive_failures: 3,
            profiles: 9,
        },
        CustomerState {
            customer_id: B.to_owned(),
            last_success_at: None,
            first_polled_at: Some("2025-09-01T00:00:00.000000Z".to_owned()),
            consecutive_failures: 6,
            profiles: 0,
        },
    ];
    let c = "03f7382e-0000-1cda-0000-dd9a000074f2";
    let customers = [customer(A, None), customer(B, None), customer(c, None)];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    metrics.track_customers(&customers, &states, now);

    let parsed = scrape(&metrics);
    let last = "scanwatch_customer_last_success_timestamp_seconds";
    assert_eq!(value(&parsed, last, &[("customer_id", A)]), 1_757_560_754.0);
    assert_eq!(
        value(&parsed, last, &[("customer_id", B)]),
        1_756_684_800.0,
        "never successful: its first attempt"
    );
    assert_eq!(
        value(&parsed, last, &[("customer_id", c)]),
        1_800_000_000.0,
        "never tried: when it was scheduled"
    );
    let failures = "scanwatch_customer_consecutive_failures";
    assert_eq!(value(&parsed, failures, &[("customer_id", A)]), 3.0);
    assert_eq!(value(&parsed, failures, &[("customer_id", B)]), 6.0);
    assert_eq!(
        value(
            &parsed,
            "scanwatch_customer_profiles_tracked",
            &[("customer_id", A)]
        ),
        9.0
    );
    assert_eq!(value(&parsed, "scanwatch_customers", &[]), 3.0);
}

#[test]
fn a_customer_that_leaves_the_config_leaves_every_per_customer_series() {
    let metrics = Metrics::new();
    let (a, b) = (customer(A, Some("Contoso")), customer(B, Some("Fabrikam")));
    metrics.track_customers(&[a.clone(), b.clone()], &[], SystemTime::now());
    metrics.track_customers(std::slice::from_ref(&a), &[], SystemTime::now());

    let parsed = scrape(&metrics);
    let mentions_b: Vec<&Sample> = parsed
        .samples
        .iter()
        .filter(|s| s.labels.get("customer_id") == Some(B))
        .collect();
    assert!(mentions_b.is_empty(), "{mentions_b:?}");
    for def in names::ALL
        .iter()
        .filter(|d| d.labels.contains(&"customer_id"))
    {
        assert_eq!(samples(&parsed, def.name).len(), 1, "{} keeps A", def.name);
    }
    assert_eq!(value(&parsed, "scanwatch_customers", &[]), 1.0);

    // A poll of B that was in flight during the reload adds nothing back.
    metrics.list_committed(&b.id, &committed(3, Outcome::default()));
    let parsed = scrape(&metrics);
    assert!(parsed
        .samples
        .iter()
        .all(|s| s.labels.get("customer_id") != Some(B)));
}

#[test]
fn a_renamed_customer_is_exported_under_its_new_name_only() {
    let metrics = Metrics::new();
    metrics.track_customers(&[customer(A, Some("Contoso"))], &[], SystemTime::now());
    metrics.track_customers(&[customer(A, Some("Contoso Ltd"))], &[], SystemTime::now());

    let parsed = scrape(&metrics);
    let names: Vec<&str> = samples(&parsed, "scanwatch_customer_consecutive_failures")
        .iter()
        .map(|s| s.labels.get("customer").unwrap())
        .collect();
    assert_eq!(names, ["Contoso Ltd"]);
}

#[test]
fn the_heartbeat_is_the_shorter_of_the_watchdog_and_the_health_check() {
    let minute = Duration::from_secs(60);
    let second = Duration::from_secs(1);
    assert_eq!(heartbeat_period(None, false), None);
    assert_eq!(heartbeat_period(Some(minute), false), Some(minute));
    assert_eq!(heartbeat_period(None, true), Some(HEALTH_HEARTBEAT));
    assert_eq!(heartbeat_period(Some(minute), true), Some(HEALTH_HEARTBEAT));
    assert_eq!(heartbeat_period(Some(second), true), Some(second));
}
