//! Shared test fixtures: a wiremock "API" on loopback with a token endpoint,
//! a config pointing at it, and helpers to read back what the store holds.
#![allow(dead_code)]

#[path = "../hermetic/mod.rs"]
pub mod hermetic;
pub mod sim;

use std::path::{Path, PathBuf};

use scanwatch::api::ApiClient;
use scanwatch::config::{ConfigFile, Settings};
use scanwatch::customer::Customer;
use scanwatch::poller::{PollReport, Poller};
use scanwatch::store::Store;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const CUSTOMER: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";
pub const CLIENT_SECRET: &str = "client-secret-never-logged-7f3a";
pub const TOKEN: &str = "bearer-token-never-logged-91c2";
pub const LIST_PATH: &str =
    "/partner/external/v3/general/customers/03f7382e-0000-1cda-0000-dd9a000074f0/scan-profiles";

pub fn profile(id: &str, name: &str, mode: i64) -> Value {
    json!({"profileName": name, "profileId": id, "scanMode": mode,
           "modifiedTime": "2025-09-11T03:19:14Z"})
}

/// Config text for a server at `base`, with a database in `dir`.
pub fn config_text(base: &str, dir: &Path, extra_api: &str) -> String {
    // Two retries unless the test sets its own (a key may appear once).
    let retries = if extra_api.contains("retries") {
        ""
    } else {
        "retries = 2"
    };
    format!(
        r#"
[api]
base_url = "{base}"
token_url = "{base}/connect/token"
timeout = "2s"
{retries}
max_requests_per_second = 0
{extra_api}

[auth]
client_id = "test-app"
client_secret = "{CLIENT_SECRET}"

[storage]
database = "{db}"

[[customers]]
id = "{CUSTOMER}"
name = "Contoso"
"#,
        db = dir.join("scanwatch.db").display()
    )
}

pub fn settings(text: &str, dir: &Path) -> Settings {
    ConfigFile::from_toml_ignoring_environment(&dir.join("scanwatch.toml"), text)
        .unwrap()
        .settings()
        .unwrap()
}

/// Answers every token request with [`TOKEN`].
pub async fn mount_token(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(server)
        .await;
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: MockServer,
    pub poller: Poller,
    pub customer: Customer,
}

impl Harness {
    /// A wiremock API with a token endpoint, and a poller pointed at it.
    pub async fn new() -> Harness {
        Self::with_api_settings("").await
    }

    pub async fn with_api_settings(extra_api: &str) -> Harness {
        let server = MockServer::start().await;
        mount_token(&server).await;
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(
            &config_text(&server.uri(), dir.path(), extra_api),
            dir.path(),
        );
        let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
        let store = Store::open(&settings.storage).await.unwrap();
        let poller = Poller::new(api, store, settings.detection.clone(), 5);
        Harness {
            dir,
            server,
            poller,
            customer: settings.customers[0].clone(),
        }
    }

    pub async fn poll(&self) -> PollReport {
        self.poller.poll(&self.customer).await
    }

    /// Serves `body` for the list, replacing earlier list mocks.
    pub async fn serve_list(&self, body: Value) {
        self.server.reset().await;
        mount_token(&self.server).await;
        Mock::given(method("GET"))
            .and(path(LIST_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.server)
            .await;
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("scanwatch.db")
    }

    /// Every row of the snapshot and of the change log, as text.
    pub async fn history(&self) -> (Vec<String>, Vec<String>) {
        dump(self.poller.store()).await
    }

    /// Requests the server received for the list (any page).
    pub async fn list_requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().starts_with(LIST_PATH))
            .count()
    }

    pub async fn token_requests(&self) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/connect/token")
            .count()
    }

    pub async fn polls(&self) -> Vec<(String, Option<i64>, Option<String>)> {
        sqlx::query_as("SELECT outcome, http_status, error FROM polls ORDER BY poll_id")
            .fetch_all(self.poller.store().pool())
            .await
            .unwrap()
    }
}

/// Snapshot and change-log rows, every column, as text.
pub async fn dump(store: &Store) -> (Vec<String>, Vec<String>) {
    let profiles: Vec<String> = sqlx::query_scalar(
        "SELECT json_array(customer_id, profile_id, profile_name, scan_mode, modified_time, \
         raw_json, first_seen_at, last_seen_at, missing_polls) FROM profiles \
         ORDER BY customer_id, profile_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let changes: Vec<String> = sqlx::query_scalar(
        "SELECT json_array(change_id, poll_id, customer_id, profile_id, kind, baseline, \
         detected_at, profile_name, scan_mode, modified_time, old_profile_name, old_scan_mode, \
         old_modified_time, changed_fields, raw_json) FROM profile_changes ORDER BY change_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    (profiles, changes)
}
