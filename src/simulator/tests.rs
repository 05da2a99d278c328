//! Black-box tests of the simulator over real HTTP on loopback.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::{Command, ControlError, Counters, Shape, SimConfig, Simulator};

async fn start(config: SimConfig) -> Simulator {
    let listen = "127.0.0.1:0".parse().expect("loopback address");
    Simulator::start(listen, config)
        .await
        .expect("simulator starts")
}

async fn start_default() -> Simulator {
    start(SimConfig::default()).await
}

fn good_form(sim: &Simulator) -> Vec<(&'static str, String)> {
    let config = sim.config();
    vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", config.client_id.clone()),
        ("client_secret", config.client_secret.clone()),
        ("scope", config.scope.clone()),
    ]
}

/// The good form with `key` replaced by `value`, or removed when `None`.
fn form_with(
    sim: &Simulator,
    key: &'static str,
    value: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut form = good_form(sim);
    form.retain(|(k, _)| *k != key);
    if let Some(value) = value {
        form.push((key, value.to_owned()));
    }
    form
}

async fn post_token(sim: &Simulator, form: &[(&str, String)]) -> (StatusCode, Value) {
    let response = Client::new()
        .post(sim.token_url())
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = response.status();
    (status, response.json().await.expect("token body is JSON"))
}

async fn token(sim: &Simulator) -> String {
    let (status, body) = post_token(sim, &good_form(sim)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn list_url(sim: &Simulator, customer: &str) -> String {
    format!(
        "{}/partner/external/v3/general/customers/{customer}/scan-profiles",
        sim.base_url()
    )
}

async fn get_list(url: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("list request");
    let status = response.status();
    (status, response.json().await.expect("list body is JSON"))
}

async fn post_batch(
    sim: &Simulator,
    token: &str,
    customer: &str,
    query: &str,
) -> (StatusCode, Value) {
    let url = format!("{}/batch?{query}", list_url(sim, customer));
    let response = Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .expect("batch request");
    let status = response.status();
    (status, response.json().await.expect("batch body is JSON"))
}

async fn command(sim: &Simulator, command: Value) -> (StatusCode, Value) {
    let response = Client::new()
        .post(format!("{}/_sim/commands", sim.base_url()))
        .json(&command)
        .send()
        .await
        .expect("control request");
    let status = response.status();
    (status, response.json().await.expect("control body is JSON"))
}

fn ids(profiles: &[Value]) -> Vec<String> {
    profiles
        .iter()
        .map(|p| p["profileId"].as_str().expect("profileId").to_owned())
        .collect()
}

fn first_profile_id(sim: &Simulator, customer: &str) -> String {
    ids(&sim.profiles(customer))[0].clone()
}

fn assert_api_time(value: &Value) {
    let text = value.as_str().expect("modifiedTime is a string");
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ");
    assert!(parsed.is_ok(), "{text} is not like 2025-09-11T03:19:14Z");
}

// Tokens

#[tokio::test]
async fn a_token_is_issued_for_the_configured_credentials() {
    let sim = start_default().await;

    let (status, body) = post_token(&sim, &good_form(&sim)).await;

    assert_eq!(status, StatusCode::OK);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 32));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "elements.scanprofiles.read.all");
}

#[tokio::test]
async fn a_token_is_issued_for_http_basic_client_authentication() {
    let sim = start_default().await;
    let config = sim.config();
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "openid elements.scanprofiles.read.all"),
    ];

    let response = Client::new()
        .post(sim.token_url())
        .basic_auth(&config.client_id, Some(&config.client_secret))
        .form(&form)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_as_invalid_client() {
    let sim = start_default().await;

    let (status, body) = post_token(&sim, &form_with(&sim, "client_secret", Some("nope"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    let (status, body) = post_token(&sim, &form_with(&sim, "client_id", Some("other"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn a_wrong_basic_secret_is_refused_as_invalid_client() {
    let sim = start_default().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "elements.scanprofiles.read.all"),
    ];

    let response = Client::new()
        .post(sim.token_url())
        .basic_auth("scanwatch-sim", Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn a_missing_or_foreign_scope_is_refused_as_invalid_scope() {
    let sim = start_default().await;

    for scope in [None, Some("elements.customers.read.all")] {
        let (status, body) = post_token(&sim, &form_with(&sim, "scope", scope)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "scope {scope:?}");
        assert_eq!(body["error"], "invalid_scope", "scope {scope:?}");
    }
}

#[tokio::test]
async fn another_grant_type_is_refused_as_unsupported_grant_type() {
    let sim = start_default().await;

    let form = form_with(&sim, "grant_type", Some("password"));
    let (status, body) = post_token(&sim, &form).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn a_client_assertion_without_a_secret_is_refused_as_invalid_client() {
    let sim = start_default().await;
    let mut form = form_with(&sim, "client_secret", None);
    form.push((
        "client_assertion",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_owned(),
    ));

    let (status, body) = post_token(&sim, &form).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
}

// Authorization of API calls

#[tokio::test]
async fn an_api_call_without_a_valid_token_gets_401_invalid_token() {
    let sim = start_default().await;
    let url = list_url(&sim, &sim.customer_ids()[0]);

    for token in [None, Some("not-a-token")] {
        let (status, body) = get_list(&url, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert_eq!(body["error"], "invalid_token");
    }
}

#[tokio::test]
async fn a_revoked_token_gets_401_on_the_next_api_call() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let url = list_url(&sim, &sim.customer_ids()[0]);
    assert_eq!(get_list(&url, Some(&token)).await.0, StatusCode::OK);

    let (status, _) = command(&sim, json!({"op": "revoke_tokens"})).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = get_list(&url, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn an_expired_token_gets_401() {
    let config = SimConfig {
        token_lifetime: Duration::ZERO,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let token = token(&sim).await;

    let (status, _) = get_list(&list_url(&sim, &sim.customer_ids()[0]), Some(&token)).await;

    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_customer_gets_403_with_a_json_error() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let url = list_url(&sim, "00000000-0000-4000-8000-000000000000");

    let (status, body) = get_list(&url, Some(&token)).await;

    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "forbidden");
}

// The list endpoint's shapes

#[tokio::test]
async fn the_array_shape_serves_the_seeded_profiles_as_documented() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[0].clone();

    let response = Client::new()
        .get(list_url(&sim, &customer))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await.unwrap();
    let profiles = body.as_array().expect("a bare array");
    assert_eq!(profiles.len(), 5);
    assert_eq!(profiles, &sim.profiles(&customer));
    for profile in profiles {
        let keys: Vec<&String> = profile.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{profile}");
        let id = profile["profileId"].as_str().unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(id).unwrap().hyphenated().to_string(),
            id
        );
        assert!(matches!(profile["scanMode"].as_i64(), Some(0 | 1)));
        assert!(profile["profileName"]
            .as_str()
            .is_some_and(|n| !n.is_empty()));
        assert_api_time(&profile["modifiedTime"]);
    }
}

#[tokio::test]
async fn following_odata_next_links_returns_every_profile_exactly_once() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[1].clone();
    sim.apply(Command::SetShape {
        customer: Some(customer.clone()),
        shape: Shape::OData,
        page_size: None,
    })
    .unwrap();

    let mut url = Some(list_url(&sim, &customer));
    let (mut served, mut pages) = (Vec::new(), 0);
    while let Some(next) = url.take() {
        let (status, body) = get_list(&next, Some(&token)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["@odata.context"].is_string());
        served.extend(body["value"].as_array().unwrap().iter().cloned());
        url = body["@odata.nextLink"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }

    assert_eq!(pages, 3, "5 profiles in pages of 2");
    assert_eq!(served, sim.profiles(&customer));
    let other = sim.customer_ids()[0].clone();
    let (_, body) = get_list(&list_url(&sim, &other), Some(&token)).await;
    assert!(body.is_array(), "other customers keep the array shape");
}

#[tokio::test]
async fn the_odata_next_link_is_absolute_and_carries_skip() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[0].clone();
    let set_shape = json!({"op": "set_shape", "shape": "odata", "page_size": 3});
    assert_eq!(command(&sim, set_shape).await.0, StatusCode::OK);

    let (_, first) = get_list(&list_url(&sim, &customer), Some(&token)).await;
    let next = first["@odata.nextLink"].as_str().unwrap();
    assert_eq!(next, format!("{}?$skip=3", list_url(&sim, &customer)));
    let (_, last) = get_list(next, Some(&token)).await;

    assert_eq!(first["value"].as_array().unwrap().len(), 3);
    assert_eq!(last["value"].as_array().unwrap().len(), 2);
    assert!(last.get("@odata.nextLink").is_none());
}

#[tokio::test]
async fn the_data_metadata_shape_serves_everything_with_the_total_count() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[2].clone();
    let set_shape = json!({"op": "set_shape", "customer": customer, "shape": "data_metadata"});
    assert_eq!(command(&sim, set_shape).await.0, StatusCode::OK);

    let (status, body) = get_list(&list_url(&sim, &customer), Some(&token)).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap(), &sim.profiles(&customer));
    assert_eq!(body["metadata"]["totalCount"], 5);
    assert_eq!(body["metadata"]["pageIndex"], 1);
}

// The batch endpoint

#[tokio::test]
async fn batch_pages_split_the_list_in_order_and_report_the_total() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[0].clone();

    let mut served = Vec::new();
    for (index, expected) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let query = format!("pageIndex={index}&pageSize=2");
        let (status, body) = post_batch(&sim, &token, &customer, &query).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["metadata"],
            json!({"pageIndex": index, "pageSize": 2, "totalCount": 5})
        );
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), expected, "page {index}");
        served.extend(data.iter().cloned());
    }

    assert_eq!(served, sim.profiles(&customer));
}

#[tokio::test]
async fn batch_page_size_defaults_to_50_and_is_capped_at_100_and_at_the_shape_page_size() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let big = sim.apply(Command::AddCustomer { profiles: 120 }).unwrap();
    let big = big["customer_id"].as_str().unwrap().to_owned();

    let (_, default) = post_batch(&sim, &token, &big, "").await;
    assert_eq!(default["data"].as_array().unwrap().len(), 50);
    assert_eq!(default["metadata"]["pageSize"], 50);

    let (_, capped) = post_batch(&sim, &token, &big, "pageIndex=1&pageSize=500").await;
    assert_eq!(capped["data"].as_array().unwrap().len(), 100);
    assert_eq!(capped["metadata"]["totalCount"], 120);

    let set_shape = json!({"op": "set_shape", "customer": big, "shape": "array", "page_size": 7});
    assert_eq!(command(&sim, set_shape).await.0, StatusCode::OK);
    let (_, shaped) = post_batch(&sim, &token, &big, "pageSize=50").await;
    assert_eq!(shaped["data"].as_array().unwrap().len(), 7);
    assert_eq!(shaped["metadata"]["pageSize"], 7);
}

#[tokio::test]
async fn batch_refuses_bad_paging_and_missing_tokens() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[0].clone();

    for query in ["pageIndex=0", "pageSize=0", "pageIndex=x"] {
        let (status, _) = post_batch(&sim, &token, &customer, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    let (status, body) = post_batch(&sim, "revoked-or-never-issued", &customer, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

// Control commands

#[tokio::test]
async fn add_customer_creates_a_customer_the_api_serves() {
    let sim = start_default().await;
    let token = token(&sim).await;

    let (status, body) = command(&sim, json!({"op": "add_customer", "profiles": 4})).await;

    assert_eq!(status, StatusCode::OK);
    let customer = body["customer_id"].as_str().unwrap().to_owned();
    assert_eq!(sim.customer_ids().last(), Some(&customer));
    let (status, list) = get_list(&list_url(&sim, &customer), Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn add_profile_appends_the_returned_profile_to_the_list() {
    let sim = start_default().await;
    let token = token(&sim).await;
    let customer = sim.customer_ids()[0].clone();
    let add = json!({"op": "add_profile", "customer": customer,
        "profile_name": "Legal Teams 9", "scan_mode": 1});

    let (status, added) = command(&sim, add).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(added["profileName"], "Legal Teams 9");
    assert_eq!(added["scanMode"], 1);
    assert_api_time(&added["modifiedTime"]);
    let (_, list) = get_list(&list_url(&sim, &customer), Some(&token)).await;
    assert_eq!(list.as_array().unwrap().len(), 6);
    assert_eq!(list[5], added);
}

#[tokio::test]
async fn rename_profile_changes_the_name_and_the_modified_time() {
    let sim = start_default().await;
    let customer = sim.customer_ids()[0].clone();
    let before = sim.profiles(&customer)[0].clone();
    let rename = json!({"op": "rename_profile", "customer": customer,
        "profile_id": before["profileId"], "profile_name": "Renamed"});

    let (status, _) = command(&sim, rename).await;

    assert_eq!(status, StatusCode::OK);
    let after = sim.profiles(&customer)[0].clone();
    assert_eq!(after["profileName"], "Renamed");
    assert_eq!(after["profileId"], before["profileId"]);
    assert_ne!(after["modifiedTime"], before["modifiedTime"]);
    assert_api_time(&after["modifiedTime"]);
}

#[tokio::test]
async fn set_scan_mode_changes_the_mode_and_the_modified_time() {
    let sim = start_default().await;
    let customer = sim.customer_ids()[1].clone();
    let before = sim.profiles(&customer)[2].clone();
    let mode = 1 - before["scanMode"].as_i64().unwrap();
    let set = json!({"op": "set_scan_mode", "customer": customer,
        "profile_id": before["profileId"], "scan_mode": mode});

    let (status, _) = command(&sim, set).await;

    assert_eq!(status, StatusCode::OK);
    let after = sim.profiles(&customer)[2].clone();
    assert_eq!(after["scanMode"], mode);
    assert_ne!(after["modifiedTime"], before["modifiedTime"]);
}

#[tokio::test]
async fn delete_profile_removes_it_from_the_list() {
    let sim = start_default().await;
    let customer = sim.customer_ids()[0].clone();
    let victim = ids(&sim.profiles(&customer))[1].clone();
    let delete = json!({"op": "delete_profile", "customer": customer, "profile_id": victim});

    let (status, removed) = command(&sim, delete).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(removed["profileId"], victim.as_str());
    let left = ids(&sim.profiles(&customer));
    assert_eq!(left.len(), 4);
    assert!(!left.contains(&victim));
}

#[tokio::test]
async fn set_profile_field_adds_unknown_fields_and_sets_modified_time_verbatim() {
    let sim = start_default().await;
    let customer = sim.customer_ids()[0].clone();
    let profile_id = first_profile_id(&sim, &customer);
    let field = |field: &str, value: Value| {
        json!({"op": "set_profile_field", "customer": customer,
            "profile_id": profile_id, "field": field, "value": value})
    };

    let (status, _) = command(&sim, field("tenantDomain", json!("contoso.com"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = command(
        &sim,
        field("modifiedTime", json!("2025-09-11T03:19:14.000Z")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let profile = sim.profiles(&customer)[0].clone();
    assert_eq!(profile["tenantDomain"], "contoso.com");
    assert_eq!(profile["modifiedTime"], "2025-09-11T03:19:14.000Z");
}

#[tokio::test]
async fn bad_commands_get_400_and_unknown_targets_get_404() {
    let sim = start_default().await;
    let customer = sim.customer_ids()[0].clone();
    let cases = [
        (json!({"op": "explode"}), StatusCode::BAD_REQUEST),
        (json!({"op": "mutate"}), StatusCode::BAD_REQUEST),
        (
            json!({"op": "mutate", "count": 1, "cuont": 2}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"op": "set_shape", "shape": "odata", "page_size": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"op": "delete_profile", "customer": "nobody", "profile_id": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"op": "delete_profile", "customer": customer, "profile_id": "x"}),
            StatusCode::NOT_FOUND,
        ),
    ];

    for (body, expected) in cases {
        let (status, answer) = command(&sim, body.clone()).await;
        assert_eq!(status, expected, "{body}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    assert_eq!(sim.profiles(&customer).len(), 5, "nothing was applied");
}

#[tokio::test]
async fn apply_reports_unknown_customers_as_errors() {
    let sim = start_default().await;

    let result = sim.apply(Command::AddProfile {
        customer: "nobody".to_owned(),
        profile_name: None,
        scan_mode: None,
    });

    let expected = ControlError::UnknownCustomer {
        customer: "nobody".to_owned(),
    };
    assert_eq!(result, Err(expected));
}

// Determinism

/// What a seed must reproduce: customers, and per profile its ID, name and
/// mode (not its time), one JSON value per customer.
fn world(sim: &Simulator) -> Vec<Value> {
    let profile = |p: &Value| json!([p["profileId"], p["profileName"], p["scanMode"]]);
    sim.customer_ids()
        .into_iter()
        .map(|c| {
            let profiles: Vec<Value> = sim.profiles(&c).iter().map(profile).collect();
            json!({"customer": c, "profiles": profiles})
        })
        .collect()
}

#[tokio::test]
async fn the_same_seed_and_commands_give_the_same_ids_and_names() {
    let config = SimConfig {
        seed: 42,
        ..SimConfig::default()
    };
    let first = start(config.clone()).await;
    let second = start(config).await;
    let other = start(SimConfig::default()).await;
    assert_eq!(world(&first), world(&second));
    assert_ne!(first.customer_ids(), other.customer_ids());
    let before = world(&first);

    let done = first.apply(Command::Mutate { count: 40 }).unwrap();
    let (status, _) = command(&second, json!({"op": "mutate", "count": 40})).await;
    assert_eq!(status, StatusCode::OK);
    first.apply(Command::AddCustomer { profiles: 2 }).unwrap();
    second.apply(Command::AddCustomer { profiles: 2 }).unwrap();

    assert_eq!(done.as_array().unwrap().len(), 40);
    assert_ne!(world(&first)[..3], before[..]);
    assert_eq!(world(&first), world(&second));
}

#[tokio::test]
async fn mutate_uses_every_kind_of_change() {
    let sim = start_default().await;

    let done = sim.apply(Command::Mutate { count: 60 }).unwrap();

    let ops: Vec<&str> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["op"].as_str().unwrap())
        .collect();
    for op in [
        "add_profile",
        "rename_profile",
        "set_scan_mode",
        "delete_profile",
    ] {
        assert!(ops.contains(&op), "{op} never chosen in {ops:?}");
    }
}

// Counters and lifecycle

#[tokio::test]
async fn counters_count_every_token_and_api_request() {
    let sim = start_default().await;
    let customer = sim.customer_ids()[0].clone();
    let token = token(&sim).await;
    post_token(&sim, &form_with(&sim, "client_secret", Some("wrong"))).await;
    get_list(&list_url(&sim, &customer), Some(&token)).await;
    get_list(&list_url(&sim, &customer), None).await;
    post_batch(&sim, &token, &customer, "").await;

    let expected = Counters {
        token_requests: 2,
        api_requests: 3,
    };
    assert_eq!(sim.counters(), expected);
    let state: Value = reqwest::get(format!("{}/_sim/state", sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["counters"],
        json!({"token_requests": 2, "api_requests": 3})
    );
    assert_eq!(
        state["customers"][0],
        json!({"customer_id": customer, "profiles": 5})
    );
    assert_eq!(state["customers"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = start_default().await;
    let url = format!("{}/_sim/state", sim.base_url());
    assert!(reqwest::get(&url).await.is_ok());

    sim.shutdown().await;

    assert!(reqwest::get(&url).await.is_err());
}
