//! The fault matrix: every way the API can misbehave, injected into the
//! embedded simulator over real HTTP on loopback, with the exact rows each
//! leaves in `polls`, `profiles` and `profile_changes`.
//!
//! Each test tells the same story. A baseline poll records the seeded list;
//! then the API really changes (a rename) and misbehaves. A failing case
//! must leave the snapshot and the change log byte for byte as they were and
//! record the failure; the next clean poll must record the rename exactly
//! once. A benign case must record exactly the real changes. Every test ends
//! by checking the history invariants (replay gives the snapshot, kinds in a
//! valid order, changes only in successful polls).

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::sim::*;
use scanwatch::simulator::{Command, Fault, FaultTarget, Shape};
use serde_json::{json, Value};

const RENAMED: &str = "Renamed while the API misbehaved";

type Dump = (Vec<String>, Vec<String>);

async fn dump(h: &SimHarness) -> Dump {
    common::dump(h.poller.store()).await
}

/// The seeded list's first poll: five baseline additions.
async fn baseline(h: &SimHarness) -> Dump {
    assert_eq!(ok_counts(&h.poll().await), (5, 5, 0, 0));
    dump(h).await
}

/// A change the API really makes: profile `index` is renamed. Returns its ID.
fn rename(h: &SimHarness, index: usize) -> String {
    let id = profile_id(h, index);
    h.apply(Command::RenameProfile {
        customer: h.customer_id().to_owned(),
        profile_id: id.clone(),
        profile_name: RENAMED.to_owned(),
    });
    id
}

fn profile_id(h: &SimHarness, index: usize) -> String {
    h.served()[index]["profileId"].as_str().unwrap().to_owned()
}

fn status(code: u16) -> Fault {
    Fault::Status {
        status: code,
        retry_after: None,
        body: None,
    }
}

fn status_retry_after(code: u16, retry_after: String) -> Fault {
    Fault::Status {
        status: code,
        retry_after: Some(retry_after),
        body: None,
    }
}

fn raw(body: Value) -> Fault {
    Fault::Raw {
        body: body.to_string(),
        status: None,
        content_type: None,
    }
}

fn api_requests(h: &SimHarness) -> u64 {
    h.sim.counters().api_requests
}

fn token_requests(h: &SimHarness) -> u64 {
    h.sim.counters().token_requests
}

/// `(consecutive_failures, last_error, empty_streak)` of the one customer.
async fn customer_state(h: &SimHarness) -> (i64, Option<String>, i64) {
    sqlx::query_as("SELECT consecutive_failures, last_error, empty_streak FROM customers")
        .fetch_one(h.pool())
        .await
        .unwrap()
}

/// The poll that just ran failed with `http_status` and an error naming
/// `error_part`, and left nothing but its `polls` row and the customer's
/// failure state: the snapshot and the change log are exactly `before`.
async fn assert_failed_without_trace(
    h: &SimHarness,
    report: &scanwatch::poller::PollReport,
    before: &Dump,
    http_status: Option<u16>,
    error_part: &str,
) {
    let (status, error) = failure(report);
    assert_eq!(status, http_status, "{error}");
    assert!(
        error.contains(error_part),
        "expected {error_part:?} in: {error}"
    );
    assert_eq!(&dump(h).await, before, "a failed poll touched the history");

    let polls = poll_rows(h.pool()).await;
    let last = polls.last().unwrap();
    assert_eq!(
        last.summary(),
        ("failed", http_status.map(i64::from), None, 0, 0, 0)
    );
    assert_eq!(last.error.as_deref(), Some(error.as_str()));
    let (failures, last_error, _) = customer_state(h).await;
    assert_eq!(failures, 1);
    assert_eq!(last_error.as_deref(), Some(error.as_str()));
    assert!(h.sim.faults_fired() > 0, "the fault never fired");
}

/// The next clean poll records exactly the rename of `renamed`, once, and
/// leaves the snapshot equal to what the API serves.
async fn assert_recovers_with_the_rename(h: &SimHarness, before: &Dump, renamed: &str) {
    h.apply(Command::ClearFaults);
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    assert_only_the_rename_since(h, before, renamed).await;
}

/// Since `before`, the change log gained exactly one row: `renamed` changed
/// to [`RENAMED`], not a baseline, with its name and time as changed fields.
async fn assert_only_the_rename_since(h: &SimHarness, before: &Dump, renamed: &str) {
    let changes = change_rows(h.pool()).await;
    let new: Vec<_> = changes[before.1.len()..]
        .iter()
        .map(ChangeRow::summary)
        .collect();
    assert_eq!(
        new,
        vec![(
            "changed",
            renamed,
            false,
            Some(RENAMED),
            Some(r#"["modifiedTime","profileName"]"#)
        )]
    );
    assert_snapshot_is_what_is_served(h).await;
    assert_history_consistent(h.pool()).await;
}

async fn assert_snapshot_is_what_is_served(h: &SimHarness) {
    assert_eq!(
        snapshot_contents(h.pool()).await,
        served_contents(h.customer_id(), &h.served())
    );
}

/// The full story of a fault that must fail the poll.
async fn fails_then_recovers(
    h: &SimHarness,
    arm: impl FnOnce(&SimHarness),
    http_status: Option<u16>,
    error_part: &str,
) {
    let before = baseline(h).await;
    let renamed = rename(h, 0);
    arm(h);
    let report = h.poll().await;
    assert_failed_without_trace(h, &report, &before, http_status, error_part).await;
    assert_recovers_with_the_rename(h, &before, &renamed).await;
    let polls: Vec<_> = poll_rows(h.pool()).await;
    let outcomes: Vec<&str> = polls.iter().map(|p| p.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "failed", "ok"]);
}

/// A transient status that clears before the retries run out: the poll
/// succeeds and records exactly the rename. Returns how long it took.
///
/// The fault is made just before it is armed, so that a `Retry-After` date
/// counts from then and not from before the harness and baseline were set up.
async fn retried_once(h: &SimHarness, fault: impl FnOnce() -> Fault) -> Duration {
    let before = baseline(h).await;
    let renamed = rename(h, 0);
    h.inject(FaultTarget::List, fault(), 1);
    let requests = api_requests(h);
    let started = Instant::now();
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    let took = started.elapsed();
    assert_eq!(api_requests(h) - requests, 2, "one failure, one retry");
    assert_eq!(h.sim.faults_fired(), 1);
    assert_only_the_rename_since(h, &before, &renamed).await;
    let outcomes: Vec<String> = poll_rows(h.pool())
        .await
        .into_iter()
        .map(|p| p.outcome)
        .collect();
    assert_eq!(outcomes, ["ok", "ok"]);
    took
}

/// A transient status on every attempt: the poll fails after exactly
/// `retries + 1` requests, without a trace, and the next one recovers.
async fn outlasts_the_retries(code: u16) {
    let h = SimHarness::start(SimSetup::default()).await;
    let requests = std::cell::Cell::new(0);
    fails_then_recovers(
        &h,
        |h| {
            h.inject(FaultTarget::List, status(code), 3);
            requests.set(api_requests(h));
        },
        Some(code),
        "gave up after 3 attempts",
    )
    .await;
    // Three failing attempts plus the recovery poll's one request.
    assert_eq!(api_requests(&h) - requests.get(), 4);
}

/// A `Retry-After` date two seconds ahead: HTTP dates are whole seconds, so
/// the wait it asks for is between one and two seconds from now.
fn http_date_in_2s() -> String {
    httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2))
}

fn one_second() -> String {
    "1".to_owned()
}

async fn waits_for_retry_after(code: u16, retry_after: fn() -> String) {
    let h = SimHarness::start(SimSetup::default()).await;
    let took = retried_once(&h, || status_retry_after(code, retry_after())).await;
    // Backoff alone would retry within 250 ms.
    assert!(took >= Duration::from_millis(900), "retried after {took:?}");
}

async fn retried_without_retry_after(code: u16) {
    let h = SimHarness::start(SimSetup::default()).await;
    let took = retried_once(&h, || status(code)).await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

// 500, 502, 503: once, with and without Retry-After, and on every attempt.

#[tokio::test]
async fn a_500_once_is_retried_and_only_the_real_change_is_recorded() {
    retried_without_retry_after(500).await;
}

#[tokio::test]
async fn a_500_with_retry_after_in_seconds_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(500, one_second).await;
}

#[tokio::test]
async fn a_500_with_retry_after_as_an_http_date_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(500, http_date_in_2s).await;
}

#[tokio::test]
async fn a_500_on_every_attempt_fails_the_poll_and_leaves_the_history_untouched() {
    outlasts_the_retries(500).await;
}

#[tokio::test]
async fn a_502_once_is_retried_and_only_the_real_change_is_recorded() {
    retried_without_retry_after(502).await;
}

#[tokio::test]
async fn a_502_with_retry_after_in_seconds_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(502, one_second).await;
}

#[tokio::test]
async fn a_502_with_retry_after_as_an_http_date_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(502, http_date_in_2s).await;
}

#[tokio::test]
async fn a_502_on_every_attempt_fails_the_poll_and_leaves_the_history_untouched() {
    outlasts_the_retries(502).await;
}

#[tokio::test]
async fn a_503_once_without_retry_after_is_retried_and_only_the_real_change_is_recorded() {
    retried_without_retry_after(503).await;
}

#[tokio::test]
async fn a_503_with_retry_after_in_seconds_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(503, one_second).await;
}

#[tokio::test]
async fn a_503_with_retry_after_as_an_http_date_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(503, http_date_in_2s).await;
}

#[tokio::test]
async fn a_503_on_every_attempt_fails_the_poll_and_leaves_the_history_untouched() {
    outlasts_the_retries(503).await;
}

// 429

#[tokio::test]
async fn a_429_with_retry_after_is_waited_for_then_the_change_recorded_once() {
    waits_for_retry_after(429, one_second).await;
}

#[tokio::test]
async fn a_429_asking_to_wait_longer_than_allowed_fails_at_once_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    let requests = std::cell::Cell::new(0);
    fails_then_recovers(
        &h,
        |h| {
            h.inject(
                FaultTarget::List,
                status_retry_after(429, "3600".to_owned()),
                1,
            );
            requests.set(api_requests(h));
        },
        Some(429),
        "longer than api.max_retry_after",
    )
    .await;
    assert_eq!(api_requests(&h) - requests.get(), 2, "no retry was made");
}

// Tokens

#[tokio::test]
async fn a_token_the_server_revoked_gets_a_401_that_one_fresh_token_cures() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    h.apply(Command::RevokeTokens);
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    assert_eq!(token_requests(&h), 2);
    assert_eq!(api_requests(&h), 3, "baseline, the 401, the retry");
    assert_only_the_rename_since(&h, &before, &renamed).await;
}

#[tokio::test]
async fn a_401_even_with_a_fresh_token_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| h.inject(FaultTarget::List, status(401), 2),
        Some(401),
        "even with a fresh token",
    )
    .await;
}

/// Token faults need a client without a cached token.
async fn token_fault_fails_then_recovers(setup: SimSetup, fault: Fault, count: u32, part: &str) {
    let mut h = SimHarness::start(setup).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    h.fresh_client();
    h.inject(FaultTarget::Token, fault, count);
    let report = h.poll().await;
    assert_failed_without_trace(&h, &report, &before, None, part).await;
    // Counted as they arrive: a delayed request reaches its handler late.
    assert_eq!(h.sim.faults_fired(), u64::from(count));
    assert_recovers_with_the_rename(&h, &before, &renamed).await;
}

#[tokio::test]
async fn the_token_endpoint_unreachable_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    let mut settings = h.settings.clone();
    settings.api.token_url = format!("http://127.0.0.1:{}/connect/token", closed_port())
        .parse()
        .unwrap();
    let client = scanwatch::api::ApiClient::new(&settings.api, &settings.auth).unwrap();
    let down = scanwatch::poller::Poller::new(
        client,
        h.poller.store().clone(),
        settings.detection.clone(),
        5,
    );
    let report = down.poll(&h.customer).await;
    let (status, error) = failure(&report);
    assert_eq!(status, None);
    assert!(error.contains("cannot reach the token endpoint"), "{error}");
    assert_eq!(dump(&h).await, before);
    let polls = poll_rows(h.pool()).await;
    assert_eq!(polls[1].summary(), ("failed", None, None, 0, 0, 0));
    assert_recovers_with_the_rename(&h, &before, &renamed).await;
}

#[tokio::test]
async fn the_token_endpoint_answering_503_on_every_attempt_fails_the_poll_without_a_trace() {
    token_fault_fails_then_recovers(
        SimSetup::default(),
        status(503),
        3,
        "did not answer with a token",
    )
    .await;
}

#[tokio::test]
async fn a_token_endpoint_slower_than_the_timeout_fails_the_poll_without_a_trace() {
    let setup = SimSetup {
        timeout: "300ms",
        ..SimSetup::default()
    };
    token_fault_fails_then_recovers(
        setup,
        Fault::Delay { delay_ms: 1500 },
        3,
        "cannot reach the token endpoint",
    )
    .await;
}

#[tokio::test]
async fn a_token_endpoint_answering_invalid_client_fails_at_once_naming_the_credentials() {
    let body = json!({"error": "invalid_client", "error_description": "unknown client"});
    token_fault_fails_then_recovers(
        SimSetup::default(),
        Fault::Status {
            status: 401,
            retry_after: None,
            body: Some(body.to_string()),
        },
        1,
        "refused the client credentials",
    )
    .await;
}

#[tokio::test]
async fn a_token_endpoint_answering_html_fails_the_poll_without_a_trace() {
    token_fault_fails_then_recovers(
        SimSetup::default(),
        Fault::Html { status: None },
        3,
        "did not answer with a token",
    )
    .await;
}

#[tokio::test]
async fn a_token_endpoint_answering_non_json_labelled_json_fails_the_poll_without_a_trace() {
    let fault = Fault::Raw {
        body: "access_token=abc&expires_in=3600".to_owned(),
        status: None,
        content_type: None,
    };
    token_fault_fails_then_recovers(SimSetup::default(), fault, 3, "not a token response").await;
}

// Refusals that are not retried

#[tokio::test]
async fn a_403_fails_at_once_naming_the_permission_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| h.inject(FaultTarget::List, status(403), 1),
        Some(403),
        "elements.scanprofiles.read.all",
    )
    .await;
    assert_eq!(api_requests(&h), 3, "the 403 was not retried");
}

#[tokio::test]
async fn a_404_on_the_list_fails_at_once_naming_the_endpoint_setting_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| h.inject(FaultTarget::List, status(404), 1),
        Some(404),
        "api.endpoint",
    )
    .await;
    assert_eq!(api_requests(&h), 3, "the 404 was not retried");
}

// The connection

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_refused_connection_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    let refused = h.poller_with_api_at(&format!("http://127.0.0.1:{}", closed_port()));
    let report = refused.poll(&h.customer).await;
    let (status, error) = failure(&report);
    assert_eq!(status, None);
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert_eq!(dump(&h).await, before);
    assert_eq!(
        poll_rows(h.pool()).await[1].summary(),
        ("failed", None, None, 0, 0, 0)
    );
    assert_recovers_with_the_rename(&h, &before, &renamed).await;
}

#[tokio::test]
async fn a_connection_reset_mid_body_once_is_retried_and_the_change_recorded_once() {
    let h = SimHarness::start(SimSetup::default()).await;
    retried_once(&h, || Fault::ResetMidBody { keep_bytes: None }).await;
}

#[tokio::test]
async fn a_connection_reset_mid_body_on_every_attempt_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            h.inject(
                FaultTarget::List,
                Fault::ResetMidBody { keep_bytes: None },
                3,
            )
        },
        Some(200),
        "broke off while it was read",
    )
    .await;
}

#[tokio::test]
async fn a_response_slower_than_the_timeout_fails_the_poll_without_a_trace() {
    let setup = SimSetup {
        timeout: "300ms",
        ..SimSetup::default()
    };
    let h = SimHarness::start(setup).await;
    fails_then_recovers(
        &h,
        |h| h.inject(FaultTarget::List, Fault::Delay { delay_ms: 1500 }, 3),
        None,
        "gave up after 3 attempts",
    )
    .await;
}

// Bodies

#[tokio::test]
async fn a_body_truncated_mid_json_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| h.inject(FaultTarget::List, Fault::Truncate { keep_bytes: None }, 1),
        Some(200),
        "not JSON",
    )
    .await;
}

#[tokio::test]
async fn html_with_status_200_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| h.inject(FaultTarget::List, Fault::Html { status: None }, 1),
        Some(200),
        "not JSON",
    )
    .await;
}

#[tokio::test]
async fn json_of_an_unknown_shape_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let body = json!({"profiles": h.served(), "count": 5});
            h.inject(FaultTarget::List, raw(body), 1);
        },
        Some(200),
        "unknown shape",
    )
    .await;
}

#[tokio::test]
async fn a_body_of_20_mib_is_refused_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let bytes = 20 * 1024 * 1024;
            h.inject(FaultTarget::List, Fault::Oversized { bytes }, 1);
        },
        Some(200),
        "larger than 16777216 bytes",
    )
    .await;
}

/// The served list with `edit` applied to item `index`.
fn served_with(h: &SimHarness, index: usize, edit: impl FnOnce(&mut Value)) -> Vec<Value> {
    let mut list = h.served();
    edit(&mut list[index]);
    list
}

#[tokio::test]
async fn a_profile_without_profile_id_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let list = served_with(h, 2, |p| {
                p.as_object_mut().unwrap().remove("profileId");
            });
            h.inject(FaultTarget::List, raw(json!(list)), 1);
        },
        Some(200),
        "item 2 of the list has no profileId",
    )
    .await;
}

#[tokio::test]
async fn a_scan_mode_given_as_a_string_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let list = served_with(h, 1, |p| p["scanMode"] = json!("1"));
            h.inject(FaultTarget::List, raw(json!(list)), 1);
        },
        Some(200),
        "field scanMode should be an integer",
    )
    .await;
}

#[tokio::test]
async fn a_null_name_is_recorded_as_a_change_of_the_name_and_nothing_else() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let id = profile_id(&h, 3);
    let old_name = h.served()[3]["profileName"].as_str().unwrap().to_owned();
    h.apply(Command::SetProfileField {
        customer: h.customer_id().to_owned(),
        profile_id: id.clone(),
        field: "profileName".to_owned(),
        value: Value::Null,
    });
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    let changes = change_rows(h.pool()).await;
    let new = &changes[before.1.len()..];
    assert_eq!(
        new.iter().map(ChangeRow::summary).collect::<Vec<_>>(),
        vec![(
            "changed",
            id.as_str(),
            false,
            None,
            Some(r#"["modifiedTime","profileName"]"#)
        )]
    );
    assert_eq!(new[0].old_profile_name.as_deref(), Some(old_name.as_str()));
    assert_snapshot_is_what_is_served(&h).await;
    assert_history_consistent(h.pool()).await;
}

// Duplicates

#[tokio::test]
async fn identical_duplicates_are_merged_and_only_the_real_change_is_recorded() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    let mut list = h.served();
    // The same profile again, differing only in formatting.
    let mut copy = list[4].clone();
    copy["profileId"] = json!(copy["profileId"].as_str().unwrap().to_uppercase());
    list.push(copy);
    list.push(list[0].clone());
    h.inject(FaultTarget::List, raw(json!(list)), 1);
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    assert_eq!(h.sim.faults_fired(), 1);
    assert_only_the_rename_since(&h, &before, &renamed).await;
}

#[tokio::test]
async fn differing_duplicates_fail_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let mut list = h.served();
            let mut other = list[2].clone();
            other["profileName"] = json!("Another name for the same ID");
            list.push(other);
            h.inject(FaultTarget::List, raw(json!(list)), 1);
        },
        Some(200),
        "appears more than once in the list with different content",
    )
    .await;
}

// Empty lists

#[tokio::test]
async fn an_empty_list_once_is_held_and_changes_nothing() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    h.inject(FaultTarget::List, raw(json!([])), 1);
    assert_eq!(ok_counts(&h.poll().await), (0, 0, 0, 0));
    assert_eq!(
        dump(&h).await,
        before,
        "an unconfirmed empty list changed the history"
    );
    assert_eq!(customer_state(&h).await, (0, None, 1));

    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    assert_eq!(customer_state(&h).await, (0, None, 0));
    assert_only_the_rename_since(&h, &before, &renamed).await;
}

#[tokio::test]
async fn an_empty_list_twice_removes_everything_and_the_list_coming_back_adds_it_again() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    h.inject(FaultTarget::List, raw(json!([])), 2);
    assert_eq!(ok_counts(&h.poll().await), (0, 0, 0, 0));
    assert_eq!(ok_counts(&h.poll().await), (0, 0, 0, 5));
    assert!(snapshot_contents(h.pool()).await.is_empty());
    assert_eq!(ok_counts(&h.poll().await), (5, 5, 0, 0));

    let changes = change_rows(h.pool()).await;
    let kinds: Vec<(&str, bool)> = changes[before.1.len()..]
        .iter()
        .map(|c| (c.kind.as_str(), c.baseline))
        .collect();
    let mut expected = vec![("removed", false); 5];
    expected.extend([("added", false); 5]);
    assert_eq!(kinds, expected);
    let back = changes
        .iter()
        .rev()
        .find(|c| c.profile_id == renamed)
        .unwrap();
    assert_eq!(back.profile_name.as_deref(), Some(RENAMED));
    assert_snapshot_is_what_is_served(&h).await;
    assert_history_consistent(h.pool()).await;
}

// Paging

#[tokio::test]
async fn a_page_missing_in_the_middle_of_a_paged_list_fails_the_poll_without_removing_anything() {
    let h = SimHarness::start(SimSetup::default()).await;
    h.apply(Command::SetShape {
        customer: None,
        shape: Shape::OData,
        page_size: Some(2),
    });
    let requests = std::cell::Cell::new(0);
    fails_then_recovers(
        &h,
        |h| {
            h.inject_after(FaultTarget::List, status(404), 1, 1);
            requests.set(api_requests(h));
        },
        Some(404),
        "404",
    )
    .await;
    // The failing poll read page 1 and asked for page 2; the recovery read 3 pages.
    assert_eq!(api_requests(&h) - requests.get(), 2 + 3);
}

#[tokio::test]
async fn a_total_count_larger_than_the_items_served_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let body = json!({
                "data": h.served(),
                "metadata": {"pageIndex": 1, "pageSize": 100, "totalCount": 7}
            });
            h.inject(FaultTarget::List, raw(body), 1);
        },
        Some(200),
        "ended after 5 of the 7 profiles",
    )
    .await;
}

#[tokio::test]
async fn a_next_link_loop_fails_the_poll_without_a_trace() {
    let h = SimHarness::start(SimSetup::default()).await;
    fails_then_recovers(
        &h,
        |h| {
            let url = format!(
                "{}/partner/external/v3/general/customers/{}/scan-profiles",
                h.sim.base_url(),
                h.customer_id()
            );
            let list = h.served();
            let body = json!({"value": list[..2], "@odata.nextLink": url});
            h.inject(FaultTarget::List, raw(body), 1);
        },
        Some(200),
        "paging loop",
    )
    .await;
}

#[tokio::test]
async fn a_next_link_to_another_origin_fails_the_poll_and_is_never_followed() {
    let h = SimHarness::start(SimSetup::default()).await;
    let elsewhere = wiremock::MockServer::start().await;
    fails_then_recovers(
        &h,
        |h| {
            let list = h.served();
            let link = format!("{}/steal?$skip=2", elsewhere.uri());
            let body = json!({"value": list[..2], "@odata.nextLink": link});
            h.inject(FaultTarget::List, raw(body), 1);
        },
        Some(200),
        "outside the API's origin",
    )
    .await;
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

// Formatting that is not a change

#[tokio::test]
async fn the_same_modified_time_in_another_format_is_not_a_change() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let id = profile_id(&h, 1);
    let text = h.served()[1]["modifiedTime"].as_str().unwrap().to_owned();
    // .NET's form of the same instant: seven fraction digits and no offset,
    // which the API documents as UTC.
    let other = format!("{}.0000000", text.strip_suffix('Z').unwrap());
    assert_ne!(other, text);
    h.apply(Command::SetProfileField {
        customer: h.customer_id().to_owned(),
        profile_id: id.clone(),
        field: "modifiedTime".to_owned(),
        value: json!(other),
    });
    let renamed = rename(&h, 0);
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    assert_only_the_rename_since(&h, &before, &renamed).await;
    let raw_json: String = sqlx::query_scalar("SELECT raw_json FROM profiles WHERE profile_id = ?")
        .bind(&id)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert!(
        raw_json.contains(&other),
        "snapshot not refreshed: {raw_json}"
    );
}

#[tokio::test]
async fn a_profile_id_with_its_case_flipped_is_the_same_profile() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let id = profile_id(&h, 2);
    let time = h.served()[2]["modifiedTime"].clone();
    let customer = h.customer_id().to_owned();
    h.apply(Command::SetProfileField {
        customer: customer.clone(),
        profile_id: id.clone(),
        field: "profileId".to_owned(),
        value: json!(id.to_uppercase()),
    });
    // Setting a field moves modifiedTime; put it back so only the case differs.
    h.apply(Command::SetProfileField {
        customer,
        profile_id: id.clone(),
        field: "modifiedTime".to_owned(),
        value: time,
    });
    let renamed = rename(&h, 0);
    assert_eq!(ok_counts(&h.poll().await), (5, 0, 1, 0));
    assert_only_the_rename_since(&h, &before, &renamed).await;
    let raw_json: String = sqlx::query_scalar("SELECT raw_json FROM profiles WHERE profile_id = ?")
        .bind(&id)
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert!(raw_json.contains(&id.to_uppercase()), "{raw_json}");
}

// Disappearing profiles

#[tokio::test]
async fn a_profile_that_disappears_and_reappears_is_removed_then_added_again() {
    let h = SimHarness::start(SimSetup::default()).await;
    let before = baseline(&h).await;
    let gone = profile_id(&h, 4);
    let renamed = rename(&h, 0);
    let mut list = h.served();
    let last = list.pop().unwrap();
    h.inject(FaultTarget::List, raw(json!(list)), 1);
    assert_eq!(ok_counts(&h.poll().await), (4, 0, 1, 1));
    assert_eq!(ok_counts(&h.poll().await), (5, 1, 0, 0));

    let changes = change_rows(h.pool()).await;
    let new: Vec<_> = changes[before.1.len()..]
        .iter()
        .map(ChangeRow::summary)
        .collect();
    let name = last["profileName"].as_str();
    let fields = Some(r#"["modifiedTime","profileName"]"#);
    assert_eq!(
        new,
        vec![
            ("changed", renamed.as_str(), false, Some(RENAMED), fields),
            ("removed", gone.as_str(), false, name, None),
            ("added", gone.as_str(), false, name, None),
        ]
    );
    assert_snapshot_is_what_is_served(&h).await;
    assert_history_consistent(h.pool()).await;
}

#[tokio::test]
async fn a_profile_missing_once_is_not_removed_when_removal_needs_two_confirmations() {
    let setup = SimSetup {
        detection: "removal_confirmations = 2",
        ..SimSetup::default()
    };
    let h = SimHarness::start(setup).await;
    let before = baseline(&h).await;
    let renamed = rename(&h, 0);
    let mut list = h.served();
    list.pop();
    h.inject(FaultTarget::List, raw(json!(list)), 1);
    assert_eq!(ok_counts(&h.poll().await), (4, 0, 1, 0));
    let missing: Vec<i64> = sqlx::query_scalar("SELECT missing_polls FROM profiles")
        .fetch_all(h.pool())
        .await
        .unwrap();
    assert_eq!(missing.iter().sum::<i64>(), 1);

    assert_eq!(ok_counts(&h.poll().await), (5, 0, 0, 0));
    assert_only_the_rename_since(&h, &before, &renamed).await;
    let missing: i64 = sqlx::query_scalar("SELECT sum(missing_polls) FROM profiles")
        .fetch_one(h.pool())
        .await
        .unwrap();
    assert_eq!(missing, 0);
}
