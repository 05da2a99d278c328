//! The API client over real HTTP on loopback (wiremock): body shapes, paging,
//! retries, token handling, and every way a response can be refused, with
//! what each leaves in the database.

mod common;

use std::time::{Duration, Instant};

use common::*;
use scanwatch::poller::PollOutcome;
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";
const C: &str = "cccccccc-0000-0000-0000-000000000003";

fn failed_error(outcome: &PollOutcome) -> &str {
    match outcome {
        PollOutcome::Failed { error, .. } => error,
        other => panic!("expected a failed poll, got {other:?}"),
    }
}

fn counts(outcome: &PollOutcome) -> (usize, usize, usize, usize) {
    match outcome {
        PollOutcome::Ok {
            profiles,
            added,
            changed,
            removed,
            ..
        } => (*profiles, *added, *changed, *removed),
        other => panic!("expected a successful poll, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bare_array_is_read_as_the_whole_list() {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0), profile(B, "Two", 1)]))
        .await;
    let report = h.poll().await;
    assert_eq!(counts(&report.outcome), (2, 2, 0, 0));
    let requests = h.server.received_requests().await.unwrap();
    let list = requests.iter().find(|r| r.url.path() == LIST_PATH).unwrap();
    assert_eq!(
        list.headers.get("authorization").unwrap(),
        &format!("Bearer {TOKEN}")
    );
}

#[tokio::test]
async fn odata_pages_are_followed_to_the_end() {
    let h = Harness::new().await;
    let next = format!("{}{LIST_PATH}?$skip=2", h.server.uri());
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .and(query_param("$skip", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.context": "x", "value": [profile(C, "Three", 0)]
        })))
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "@odata.context": "x",
            "value": [profile(A, "One", 0), profile(B, "Two", 1)],
            "@odata.nextLink": next
        })))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    assert_eq!(counts(&report.outcome), (3, 3, 0, 0));
    assert_eq!(h.list_requests().await, 2);
}

#[tokio::test]
async fn a_data_metadata_envelope_is_complete_at_its_total_count() {
    let h = Harness::new().await;
    h.serve_list(json!({
        "data": [profile(A, "One", 0)],
        "metadata": {"pageIndex": 1, "pageSize": 50, "totalCount": 1}
    }))
    .await;
    assert_eq!(counts(&h.poll().await.outcome), (1, 1, 0, 0));
}

#[tokio::test]
async fn the_batch_endpoint_is_paged_by_index_until_the_total_is_reached() {
    let h = Harness::with_api_settings("endpoint = \"batch\"").await;
    let batch = format!("{LIST_PATH}/batch");
    for (index, items) in [
        ("1", json!([profile(A, "One", 0), profile(B, "Two", 1)])),
        ("2", json!([profile(C, "Three", 0)])),
    ] {
        Mock::given(method("POST"))
            .and(path(batch.as_str()))
            .and(query_param("pageIndex", index))
            .and(query_param("pageSize", "100"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": items,
                "metadata": {"pageIndex": index.parse::<u32>().unwrap(), "pageSize": 2, "totalCount": 3}
            })))
            .expect(1)
            .mount(&h.server)
            .await;
    }
    assert_eq!(counts(&h.poll().await.outcome), (3, 3, 0, 0));
}

#[tokio::test]
async fn a_batch_page_that_comes_back_empty_before_the_total_fails_the_poll() {
    let h = Harness::with_api_settings("endpoint = \"batch\"").await;
    let batch = format!("{LIST_PATH}/batch");
    Mock::given(method("POST"))
        .and(path(batch.as_str()))
        .and(query_param("pageIndex", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [profile(A, "One", 0)], "metadata": {"totalCount": 3}
        })))
        .mount(&h.server)
        .await;
    Mock::given(method("POST"))
        .and(path(batch.as_str()))
        .and(query_param("pageIndex", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [], "metadata": {"totalCount": 3}
        })))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    assert!(failed_error(&report.outcome).contains("1 of the 3"));
    assert_eq!(h.history().await, (vec![], vec![]));
}

#[tokio::test]
async fn a_batch_server_that_ignores_the_page_index_fails_the_poll_instead_of_removing_profiles() {
    let h = Harness::with_api_settings("endpoint = \"batch\"").await;
    let batch = format!("{LIST_PATH}/batch");
    Mock::given(method("POST"))
        .and(path(batch.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [profile(A, "One", 0), profile(B, "Two", 1), profile(C, "Three", 0)],
            "metadata": {"pageIndex": 1, "pageSize": 100, "totalCount": 3}
        })))
        .up_to_n_times(1)
        .mount(&h.server)
        .await;
    assert_eq!(counts(&h.poll().await.outcome), (3, 3, 0, 0));
    let before = h.history().await;

    // Every page index gets the same first page: four items by the time
    // page two is read, but only two of the three profiles announced.
    Mock::given(method("POST"))
        .and(path(batch.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [profile(A, "One", 0), profile(B, "Two", 1)],
            "metadata": {"pageIndex": 1, "pageSize": 2, "totalCount": 3}
        })))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    let error = failed_error(&report.outcome);
    assert!(error.contains("2 of the 3"), "{error}");
    assert_eq!(
        h.history().await,
        before,
        "C must not be recorded as removed"
    );
}

#[tokio::test]
async fn a_next_link_to_another_origin_fails_and_is_never_requested() {
    let h = Harness::new().await;
    let elsewhere = MockServer::start().await;
    h.serve_list(json!({
        "value": [profile(A, "One", 0)],
        "@odata.nextLink": format!("{}/steal", elsewhere.uri())
    }))
    .await;
    let report = h.poll().await;
    assert!(failed_error(&report.outcome).contains("outside the API's origin"));
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
    assert_eq!(h.history().await, (vec![], vec![]));
}

#[tokio::test]
async fn a_next_link_loop_fails_the_poll() {
    let h = Harness::new().await;
    let same = format!("{}{LIST_PATH}", h.server.uri());
    h.serve_list(json!({"value": [profile(A, "One", 0)], "@odata.nextLink": same}))
        .await;
    let report = h.poll().await;
    assert!(failed_error(&report.outcome).contains("paging loop"));
    assert_eq!(h.list_requests().await, 1);
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_poll_recovers() {
    let h = Harness::new().await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([profile(A, "One", 0)])))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    assert_eq!(counts(&report.outcome), (1, 1, 0, 0));
    assert_eq!(h.list_requests().await, 2);
}

#[tokio::test]
async fn retry_after_on_a_429_is_honoured() {
    let h = Harness::new().await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([profile(A, "One", 0)])))
        .mount(&h.server)
        .await;
    let started = Instant::now();
    let report = h.poll().await;
    assert!(report.succeeded(), "{report:?}");
    let requests = h.server.received_requests().await.unwrap();
    let list_times: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == LIST_PATH)
        .collect();
    assert_eq!(list_times.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the retry came after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_with_no_retry_left_still_holds_back_the_next_request() {
    let h = Harness::with_api_settings("retries = 0").await;
    h.serve_list(json!([profile(A, "One", 0)])).await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.server)
        .await;

    let first = h.poll().await;
    assert!(failed_error(&first.outcome).contains("429"), "{first:?}");
    assert_eq!(h.list_requests().await, 1, "no retry with retries = 0");

    // The next poll is another request to the same host: it must wait out
    // the pause the 429 asked for.
    let started = Instant::now();
    let second = h.poll().await;
    assert!(second.succeeded(), "{second:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the next request went out after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_longer_than_allowed_fails_the_poll_at_once() {
    let h = Harness::with_api_settings("max_retry_after = \"10s\"").await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    let error = failed_error(&report.outcome);
    assert!(error.contains("max_retry_after"), "{error}");
    assert_eq!(h.list_requests().await, 1);
}

/// Answers token requests with `response` ahead of the harness's own token
/// endpoint: the first `times` of them, or all with `None`.
async fn answer_token_requests(h: &Harness, response: ResponseTemplate, times: Option<u64>) {
    let mock = Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(response)
        .with_priority(1);
    match times {
        Some(times) => mock.up_to_n_times(times),
        None => mock,
    }
    .mount(&h.server)
    .await;
}

/// A harness serving one profile, whose token endpoint issues tokens of
/// `lifetime` seconds.
async fn harness_with_token_lifetime(lifetime: u64) -> Harness {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0)])).await;
    let token = json!({"access_token": TOKEN, "token_type": "Bearer", "expires_in": lifetime});
    answer_token_requests(&h, ResponseTemplate::new(200).set_body_json(token), None).await;
    h
}

#[tokio::test]
async fn an_hour_long_token_serves_every_poll_and_one_that_lapses_at_once_none() {
    let h = harness_with_token_lifetime(3600).await;
    for _ in 0..3 {
        assert!(h.poll().await.succeeded());
    }
    assert_eq!(h.token_requests().await, 1);

    // A token that is already expired when it arrives is never reused.
    let h = harness_with_token_lifetime(0).await;
    for _ in 0..3 {
        assert!(h.poll().await.succeeded());
    }
    assert_eq!(h.token_requests().await, 3);
}

#[tokio::test]
async fn a_token_endpoint_that_says_it_is_temporarily_unavailable_is_asked_again() {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0)])).await;
    let busy = json!({"error": "temporarily_unavailable", "error_description": "try again"});
    answer_token_requests(&h, ResponseTemplate::new(503).set_body_json(busy), Some(1)).await;
    let report = h.poll().await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(h.token_requests().await, 2);
}

#[tokio::test]
async fn a_token_endpoint_refusing_the_client_is_not_asked_again() {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0)])).await;
    let refused = json!({"error": "unauthorized_client"});
    answer_token_requests(&h, ResponseTemplate::new(400).set_body_json(refused), None).await;
    let report = h.poll().await;
    assert!(failed_error(&report.outcome).contains("unauthorized_client"));
    assert_eq!(h.token_requests().await, 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let h = Harness::new().await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&h.server)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([profile(A, "One", 0)])))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(h.token_requests().await, 2);
    assert_eq!(h.list_requests().await, 2);
}

#[tokio::test]
async fn concurrent_polls_share_one_token_request() {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0)])).await;
    let (a, b, c) = tokio::join!(h.poll(), h.poll(), h.poll());
    assert!(a.succeeded() && b.succeeded() && c.succeeded());
    assert_eq!(h.token_requests().await, 1);
}

async fn assert_not_retried(status: u16, expected: &str) {
    let h = Harness::new().await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(status).set_body_string("nope"))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    let error = failed_error(&report.outcome);
    assert!(error.contains(expected), "{status}: {error}");
    assert_eq!(h.list_requests().await, 1, "{status} was retried");
    assert_eq!(
        h.polls().await,
        vec![(
            "failed".to_owned(),
            Some(status as i64),
            Some(error.to_owned())
        )]
    );
}

#[tokio::test]
async fn a_403_is_not_retried_and_names_the_permission() {
    assert_not_retried(403, "elements.scanprofiles.read.all").await;
}

#[tokio::test]
async fn a_404_is_not_retried_and_names_the_endpoint_setting() {
    assert_not_retried(404, "api.endpoint").await;
}

#[tokio::test]
async fn a_400_is_not_retried_and_is_named() {
    assert_not_retried(400, "400 Bad Request").await;
}

/// Polls a good list, then serves `bad` and checks that the second poll
/// failed with `expected` and left the snapshot and history byte for byte.
async fn assert_refused_without_trace(bad: ResponseTemplate, expected: &str) {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0), profile(B, "Two", 1)]))
        .await;
    assert!(h.poll().await.succeeded());
    let before = h.history().await;

    h.server.reset().await;
    mount_token(&h.server).await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(bad)
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    let error = failed_error(&report.outcome).to_owned();
    assert!(error.contains(expected), "{error}");
    assert_eq!(h.history().await, before);
    let polls = h.polls().await;
    assert_eq!(polls.len(), 2);
    assert_eq!(polls[1].0, "failed");
    assert_eq!(polls[1].2.as_deref(), Some(error.as_str()));
}

#[tokio::test]
async fn malformed_json_fails_the_poll_and_changes_nothing() {
    assert_refused_without_trace(
        ResponseTemplate::new(200).set_body_raw(r#"[{"profileId": "a"#, "application/json"),
        "not JSON",
    )
    .await;
}

#[tokio::test]
async fn an_html_page_with_status_200_fails_the_poll_and_changes_nothing() {
    assert_refused_without_trace(
        ResponseTemplate::new(200)
            .set_body_raw("<html><body>Maintenance</body></html>", "text/html"),
        "not JSON",
    )
    .await;
}

#[tokio::test]
async fn a_scan_mode_of_the_wrong_type_fails_the_poll_and_changes_nothing() {
    assert_refused_without_trace(
        ResponseTemplate::new(200).set_body_json(json!([
            {"profileId": A, "profileName": "One", "scanMode": "Express"}
        ])),
        "scanMode",
    )
    .await;
}

#[tokio::test]
async fn a_profile_without_an_id_fails_the_poll_and_changes_nothing() {
    assert_refused_without_trace(
        ResponseTemplate::new(200).set_body_json(json!([{"profileName": "One"}])),
        "no profileId",
    )
    .await;
}

#[tokio::test]
async fn json_of_an_unknown_shape_fails_the_poll_and_changes_nothing() {
    assert_refused_without_trace(
        ResponseTemplate::new(200).set_body_json(json!({"items": []})),
        "unknown shape",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_cap_fails_the_poll_and_changes_nothing() {
    let huge = format!("[{}]", " ".repeat(scanwatch::api::BODY_LIMIT + 1));
    assert_refused_without_trace(
        ResponseTemplate::new(200).set_body_raw(huge, "application/json"),
        "larger than",
    )
    .await;
}

#[tokio::test]
async fn conflicting_duplicates_fail_the_poll_and_change_nothing() {
    assert_refused_without_trace(
        ResponseTemplate::new(200)
            .set_body_json(json!([profile(C, "One", 0), profile(C, "Other", 0)])),
        "more than once",
    )
    .await;
}

#[tokio::test]
async fn the_same_data_polled_twice_records_nothing_new() {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0), profile(B, "Two", 1)]))
        .await;
    assert_eq!(counts(&h.poll().await.outcome), (2, 2, 0, 0));
    let (_, changes) = h.history().await;
    assert_eq!(counts(&h.poll().await.outcome), (2, 0, 0, 0));
    assert_eq!(h.history().await.1, changes);
}

#[tokio::test]
async fn a_real_change_is_recorded_once_with_its_fields() {
    let h = Harness::new().await;
    h.serve_list(json!([profile(A, "One", 0), profile(B, "Two", 1)]))
        .await;
    h.poll().await;
    h.serve_list(json!([
        {"profileName": "Uno", "profileId": A, "scanMode": 1, "modifiedTime": "2025-09-12T00:00:00Z"}
    ]))
    .await;
    assert_eq!(counts(&h.poll().await.outcome), (1, 0, 1, 1));
    type Row = (String, Option<String>, Option<String>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT kind, changed_fields, old_profile_name, old_scan_mode FROM profile_changes \
         WHERE baseline = 0 ORDER BY change_id",
    )
    .fetch_all(h.poller.store().pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "changed".into(),
                Some(r#"["modifiedTime","profileName","scanMode"]"#.into()),
                Some("One".into()),
                Some(0)
            ),
            ("removed".into(), None, None, None),
        ]
    );
}

#[tokio::test]
async fn an_unreachable_api_fails_the_poll_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let settings = settings(&config_text(&base, dir.path(), ""), dir.path());
    let api = scanwatch::api::ApiClient::new(&settings.api, &settings.auth).unwrap();
    let store = scanwatch::store::Store::open(&settings.storage)
        .await
        .unwrap();
    let poller = scanwatch::poller::Poller::new(api, store, settings.detection.clone(), 5);
    let report = poller.poll(&settings.customers[0]).await;
    let error = failed_error(&report.outcome);
    assert!(error.contains("cannot reach the token endpoint"), "{error}");
}

#[tokio::test]
async fn the_probe_reads_the_first_page_only_and_says_the_list_goes_on() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    let next = format!("{}{LIST_PATH}?$skip=2", server.uri());
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "value": [profile(A, "One", 0), profile(B, "Two", 1)],
            "@odata.nextLink": next
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&config_text(&server.uri(), dir.path(), ""), dir.path());
    let api = scanwatch::api::ApiClient::new(&settings.api, &settings.auth).unwrap();

    let first = api.probe(&settings.customers[0].id).await.unwrap();
    assert_eq!(first.profiles.len(), 2);
    assert!(!first.complete);
    let lists = server.received_requests().await.unwrap();
    assert_eq!(
        lists.iter().filter(|r| r.url.path() == LIST_PATH).count(),
        1
    );
}

#[tokio::test]
async fn the_probe_still_fails_on_a_first_page_shorter_than_its_total() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [profile(A, "One", 0)], "metadata": {"totalCount": 3}
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&config_text(&server.uri(), dir.path(), ""), dir.path());
    let api = scanwatch::api::ApiClient::new(&settings.api, &settings.auth).unwrap();

    let error = api.probe(&settings.customers[0].id).await.unwrap_err();
    assert!(error.to_string().contains("1 of the 3"), "{error}");
}

#[tokio::test]
async fn an_error_page_that_echoes_the_request_never_stores_the_token() {
    let h = Harness::new().await;
    h.server.reset().await;
    mount_token(&h.server).await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_string(format!(
            "bad request; you sent Authorization: Bearer {TOKEN}"
        )))
        .mount(&h.server)
        .await;
    let report = h.poll().await;
    let error = failed_error(&report.outcome);
    assert!(error.contains("Bearer [redacted]"), "{error}");
    let stored = h.polls().await;
    assert!(
        stored
            .iter()
            .all(|(_, _, e)| !e.as_deref().unwrap_or("").contains(TOKEN)),
        "{stored:?}"
    );
    assert_eq!(stored.len(), 1);
}
