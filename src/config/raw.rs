//! The configuration as written: every key of the file, unvalidated.
//!
//! Unknown keys are refused here (`deny_unknown_fields`), so a typo in a key
//! name is an error rather than a silently ignored setting. Durations, URLs
//! and IDs stay text until [`super::resolve`] checks them and can name the key.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub api: RawApi,
    pub auth: RawAuth,
    pub schedule: RawSchedule,
    pub storage: RawStorage,
    pub detection: RawDetection,
    pub metrics: RawMetrics,
    pub log: RawLog,
    pub customers: Vec<RawCustomer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApi {
    pub environment: Option<String>,
    pub base_url: Option<String>,
    pub token_url: Option<String>,
    pub scope: Option<String>,
    pub endpoint: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub max_retry_after: Option<String>,
    pub max_pages: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub max_requests_per_second: Option<u32>,
}

/// `Debug` is written by hand: the inline secrets print as redacted.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub certificate_file: Option<String>,
    pub private_key_file: Option<String>,
    pub certificate_password: Option<String>,
    pub certificate_password_file: Option<String>,
}

impl std::fmt::Debug for RawAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| super::REDACTED);
        f.debug_struct("RawAuth")
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("client_secret_file", &self.client_secret_file)
            .field("certificate_file", &self.certificate_file)
            .field("private_key_file", &self.private_key_file)
            .field(
                "certificate_password",
                &redacted(&self.certificate_password),
            )
            .field("certificate_password_file", &self.certificate_password_file)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSchedule {
    pub interval: Option<String>,
    pub jitter: Option<String>,
    pub shutdown_grace: Option<String>,
    pub alert_after_failures: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    pub database: Option<String>,
    pub busy_timeout: Option<String>,
    pub poll_retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDetection {
    pub empty_list_confirmations: Option<u32>,
    pub removal_confirmations: Option<u32>,
    pub ignore_fields: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomer {
    pub id: String,
    pub name: Option<String>,
}
