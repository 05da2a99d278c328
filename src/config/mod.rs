//! Loading and validating `scanwatch.toml`.
//!
//! The file is read with the `config` crate and merged with
//! `SCANWATCH__SECTION__KEY` environment overrides into [`raw::RawConfig`];
//! each section is then resolved into typed settings by its own function, so
//! a command resolves only the sections it reads (`history` never needs a
//! secret) and every error names the key at fault. Past this module nothing
//! re-checks a value.

mod raw;
pub mod secret;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::customer::{Customer, CustomerId};
use crate::diff::Rules;
use raw::{RawConfig, RawCustomer};
pub use secret::{Secret, SecretSource, REDACTED};

/// The default config path, relative to the working directory.
pub const DEFAULT_PATH: &str = "scanwatch.toml";

/// A configuration that cannot be used. Always a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// AvePoint's hosted environments and their endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Commercial,
    Gov,
    Aos2,
    Fedramp,
}

impl Environment {
    pub const NAMES: &'static str = "commercial, gov, aos2 or fedramp";

    fn parse(text: &str) -> Option<Environment> {
        match text {
            "commercial" => Some(Environment::Commercial),
            "gov" => Some(Environment::Gov),
            "aos2" => Some(Environment::Aos2),
            "fedramp" => Some(Environment::Fedramp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Environment::Commercial => "commercial",
            Environment::Gov => "gov",
            Environment::Aos2 => "aos2",
            Environment::Fedramp => "fedramp",
        }
    }

    pub fn base_url(self) -> &'static str {
        match self {
            Environment::Commercial => "https://graph.avepointonlineservices.com",
            Environment::Gov => "https://graph-gov.avepointonlineservices.com",
            Environment::Aos2 => "https://graph-aos2.avepointonlineservices.com",
            Environment::Fedramp => "https://graphusgovapi.online15.net",
        }
    }

    pub fn token_url(self) -> &'static str {
        match self {
            Environment::Commercial => "https://identity.avepointonlineservices.com/connect/token",
            Environment::Gov => "https://identity-gov.avepointonlineservices.com/connect/token",
            Environment::Aos2 => "https://identity-aos2.avepointonlineservices.com/connect/token",
            Environment::Fedramp => "https://identity.online15.net/connect/token",
        }
    }
}

/// Which API call lists a customer's profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET .../scan-profiles`, the documented call.
    List,
    /// `POST .../scan-profiles/batch?pageIndex=N&pageSize=100`, paged.
    Batch,
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub environment: Environment,
    pub base_url: Url,
    pub token_url: Url,
    pub scope: String,
    pub endpoint: Endpoint,
    pub timeout: Duration,
    pub retries: u32,
    pub max_retry_after: Duration,
    pub max_pages: u32,
    pub max_concurrency: usize,
    /// `None` means no cap.
    pub max_requests_per_second: Option<u32>,
}

#[derive(Debug, Clone)]
pub enum Credential {
    ClientSecret(Secret),
    Certificate(CertificateSettings),
}

#[derive(Debug, Clone)]
pub struct CertificateSettings {
    /// PEM certificate, or a PKCS#12 bundle (`.pfx`/`.p12`) holding certificate and key.
    pub certificate_file: PathBuf,
    /// PEM private key; `None` for a PKCS#12 bundle.
    pub private_key_file: Option<PathBuf>,
    /// The PKCS#12 bundle's password.
    pub password: Option<Secret>,
}

impl CertificateSettings {
    pub fn is_pkcs12(&self) -> bool {
        is_pkcs12_path(&self.certificate_file)
    }
}

fn is_pkcs12_path(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("pfx" | "p12")
    )
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub client_id: String,
    pub credential: Credential,
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    pub interval: Duration,
    pub jitter: Duration,
    pub shutdown_grace: Duration,
    pub alert_after_failures: u32,
}

#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Absolute path of the database file.
    pub database: PathBuf,
    pub busy_timeout: Duration,
    pub poll_retention: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Journald,
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `scanwatch=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Auto,
            level: "info".to_owned(),
        }
    }
}

/// Everything `run` and `poll` need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub auth: AuthSettings,
    pub schedule: ScheduleSettings,
    pub storage: StorageSettings,
    pub detection: Rules,
    pub metrics_listen: Option<SocketAddr>,
    pub log: LogSettings,
    pub customers: Vec<Customer>,
}

/// A parsed config file whose sections are resolved on demand.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    raw: RawConfig,
    /// Secret keys written in the file itself (not only in the environment).
    inline_secrets: Vec<&'static str>,
    /// Whether the process environment counts: the `SCANWATCH__SECTION__KEY`
    /// overrides, and systemd's `STATE_DIRECTORY` and `CREDENTIALS_DIRECTORY`.
    environment: bool,
}

/// A config file read in one pass: the customers into their type, every
/// other section kept as TOML for the config crate.
#[derive(serde::Deserialize)]
struct SplitFile {
    #[serde(default)]
    customers: Vec<RawCustomer>,
    #[serde(flatten)]
    rest: toml::Table,
}

/// The TOML reader's error as one line, without the excerpt of the file it
/// draws under the message: that excerpt is the offending line itself, which
/// may be `client_secret = "..."`, and it would span several lines of the log.
fn syntax_message(error: &str) -> String {
    let is_excerpt = |line: &str| {
        line.split_once('|')
            .is_some_and(|(gutter, _)| gutter.trim().chars().all(|c| c.is_ascii_digit()))
    };
    error
        .lines()
        .filter(|line| !is_excerpt(line))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The keys whose value is a secret when written inline.
const SECRET_KEYS: [&str; 2] = ["auth.client_secret", "auth.certificate_password"];

impl ConfigFile {
    /// Reads `path` and the `SCANWATCH__SECTION__KEY` environment overrides,
    /// refusing unknown keys.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let file_error = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        if !path.is_file() {
            return Err(file_error(
                "not found; pass --config PATH or set SCANWATCH_CONFIG".to_owned(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        Self::parse(path, &text, true)
    }

    /// Parses config text as the whole config, ignoring the environment: no
    /// overrides, no systemd state directory or credentials.
    ///
    /// For text whose author is not the operator: the demo's own config,
    /// where an override meant for the real service, such as
    /// `SCANWATCH__STORAGE__DATABASE`, must not send simulated data into the
    /// real history; and tests, which must not depend on the shell they run
    /// in.
    pub fn from_toml_ignoring_environment(
        path: &Path,
        text: &str,
    ) -> Result<ConfigFile, ConfigError> {
        Self::parse(path, text, false)
    }

    fn parse(path: &Path, text: &str, environment: bool) -> Result<ConfigFile, ConfigError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let file_error = |message: String| ConfigError::File {
            path: path.clone(),
            message,
        };
        let syntax_error = |e: config::ConfigError| file_error(syntax_message(&e.to_string()));

        // `[[customers]]` come from the file only, so they are read here,
        // straight into their type. A fleet lists thousands, and the config
        // crate's tree of values costs about 5 KiB a customer: 53 MiB of a
        // `poll`'s peak memory for 10,000 of them.
        let document = toml::de::Deserializer::parse(text)
            .map_err(|e| file_error(syntax_message(&e.to_string())))?;
        let split: SplitFile = serde_path_to_error::deserialize(document).map_err(|e| {
            let key = e.path().to_string();
            let message = syntax_message(&e.into_inner().to_string());
            if key == "." {
                file_error(message)
            } else {
                invalid(&key, message)
            }
        })?;
        let customers = split.customers;
        let text = &toml::to_string(&split.rest).expect("a parsed TOML table can be written back");

        let file_only = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(syntax_error)?;
        let inline_secrets = SECRET_KEYS
            .into_iter()
            .filter(|key| file_only.get_string(key).is_ok_and(|v| !v.is_empty()))
            .collect();
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        if environment {
            builder = builder.add_source(
                config::Environment::with_prefix("SCANWATCH")
                    .prefix_separator("__")
                    .separator("__"),
            );
        }
        let merged = builder.build().map_err(syntax_error)?;
        let value: config::Value = merged
            .try_deserialize()
            .map_err(|e| file_error(e.to_string()))?;
        let mut raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            if key == "." {
                file_error(message)
            } else {
                invalid(&key, message)
            }
        })?;
        raw.customers = customers;
        Ok(ConfigFile {
            path,
            raw,
            inline_secrets,
            environment,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Problems that do not stop scanwatch but deserve a warning once logging runs.
    ///
    /// A secret written in the file counts even when an environment variable
    /// overrides it: the file still holds it.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(key) = self.inline_secrets.first() {
            if readable_by_others(&self.path) {
                warnings.push(format!(
                    "config file {} holds a secret ({key}) and is readable by group or others; \
                     run `chmod 600 {}` or move the secret to {key}_file",
                    self.path.display(),
                    self.path.display()
                ));
            }
        }
        warnings
    }

    fn folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// A relative path in the config means relative to the config's folder.
    fn resolve_path(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.folder().join(path)
        }
    }

    /// systemd's `$STATE_DIRECTORY` (the first one, when several are listed).
    fn state_directory(&self) -> Option<PathBuf> {
        if !self.environment {
            return None;
        }
        let value = std::env::var_os("STATE_DIRECTORY")?;
        let first = value.to_str()?.split(':').next()?.to_owned();
        (!first.is_empty()).then(|| PathBuf::from(first))
    }

    /// The systemd credential `name`, when the environment counts and the
    /// service manager passed one.
    fn systemd_credential(&self, name: &str) -> Result<Option<secret::Secret>, ConfigError> {
        if !self.environment {
            return Ok(None);
        }
        secret::systemd_credential(name)
    }

    pub fn storage(&self) -> Result<StorageSettings, ConfigError> {
        let raw = &self.raw.storage;
        let database = raw.database.as_deref().unwrap_or("scanwatch.db");
        if database.trim().is_empty() {
            return Err(invalid("storage.database", "must name a file"));
        }
        let database = if Path::new(database).is_absolute() {
            PathBuf::from(database)
        } else if let Some(state) = self.state_directory() {
            state.join(database)
        } else {
            self.folder().join(database)
        };
        Ok(StorageSettings {
            database,
            busy_timeout: duration("storage.busy_timeout", &raw.busy_timeout, "5s")?,
            poll_retention: duration("storage.poll_retention", &raw.poll_retention, "30d")?,
        })
    }

    pub fn customers(&self) -> Result<Vec<Customer>, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut customers = Vec::with_capacity(self.raw.customers.len());
        for (i, raw) in self.raw.customers.iter().enumerate() {
            let key = format!("customers[{i}].id");
            let id = CustomerId::parse(&raw.id).map_err(|e| invalid(&key, e.to_string()))?;
            if !seen.insert(id.clone()) {
                return Err(invalid(&key, format!("customer {id} is listed twice")));
            }
            let name = raw.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
            customers.push(Customer {
                id,
                name: name.map(str::to_owned),
            });
        }
        Ok(customers)
    }

    pub fn log(&self) -> Result<LogSettings, ConfigError> {
        let raw = &self.raw.log;
        let format = match raw.format.as_deref().unwrap_or("auto") {
            "auto" => LogFormat::Auto,
            "journald" => LogFormat::Journald,
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not one of auto, journald, json, pretty"),
                ))
            }
        };
        let level = raw.level.clone().unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            return Err(invalid(
                "log.level",
                format!("{level:?} is not a level such as info or debug: {e}"),
            ));
        }
        Ok(LogSettings { format, level })
    }

    pub fn api(&self) -> Result<ApiSettings, ConfigError> {
        let raw = &self.raw.api;
        let environment = match raw.environment.as_deref() {
            None => Environment::Commercial,
            Some(text) => Environment::parse(text).ok_or_else(|| {
                invalid(
                    "api.environment",
                    format!("{text:?} is not one of {}", Environment::NAMES),
                )
            })?,
        };
        let base_url = api_url(
            "api.base_url",
            raw.base_url.as_deref(),
            environment.base_url(),
        )?;
        let token_url = api_url(
            "api.token_url",
            raw.token_url.as_deref(),
            environment.token_url(),
        )?;
        let endpoint = match raw.endpoint.as_deref().unwrap_or("list") {
            "list" => Endpoint::List,
            "batch" => Endpoint::Batch,
            other => {
                return Err(invalid(
                    "api.endpoint",
                    format!("{other:?} is not one of list, batch"),
                ))
            }
        };
        let scope = raw
            .scope
            .clone()
            .unwrap_or_else(|| "elements.scanprofiles.read.all".to_owned());
        if scope.trim().is_empty() {
            return Err(invalid("api.scope", "must not be empty"));
        }
        let timeout = duration("api.timeout", &raw.timeout, "30s")?;
        if timeout.is_zero() {
            return Err(invalid("api.timeout", "must be longer than zero"));
        }
        Ok(ApiSettings {
            environment,
            base_url,
            token_url,
            scope,
            endpoint,
            timeout,
            retries: raw.retries.unwrap_or(3),
            max_retry_after: duration("api.max_retry_after", &raw.max_retry_after, "5m")?,
            max_pages: at_least_one("api.max_pages", raw.max_pages.unwrap_or(1000))?,
            max_concurrency: at_least_one("api.max_concurrency", raw.max_concurrency.unwrap_or(4))?
                as usize,
            max_requests_per_second: match raw.max_requests_per_second.unwrap_or(10) {
                0 => None,
                n => Some(n),
            },
        })
    }

    pub fn auth(&self) -> Result<AuthSettings, ConfigError> {
        let raw = &self.raw.auth;
        let client_id = raw
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                invalid(
                    "auth.client_id",
                    "missing; copy the Application (client) ID from Elements > API app registration",
                )
            })?
            .to_owned();

        let secret_file = raw
            .client_secret_file
            .as_deref()
            .map(|p| self.resolve_path(p));
        let secret = secret::lookup(
            self.environment,
            "auth",
            "client_secret",
            raw.client_secret.as_deref(),
            secret_file.as_deref(),
        )?;
        let certificate = raw
            .certificate_file
            .as_deref()
            .map(|p| self.resolve_path(p));
        if certificate.is_none() {
            self.refuse_certificate_parts()?;
        }

        let credential = match (secret, certificate) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "auth.client_secret / auth.certificate_file",
                    "both are configured; keep exactly one of them",
                ))
            }
            (Some(secret), None) => Credential::ClientSecret(secret),
            (None, Some(certificate_file)) => {
                Credential::Certificate(self.certificate(certificate_file)?)
            }
            (None, None) => match self.systemd_credential("client_secret")? {
                Some(secret) => Credential::ClientSecret(secret),
                None => {
                    return Err(invalid(
                        "auth.client_secret / auth.certificate_file",
                        "neither is configured; set auth.client_secret_file (or \
                         SCANWATCH__AUTH__CLIENT_SECRET) or auth.certificate_file",
                    ))
                }
            },
        };
        Ok(AuthSettings {
            client_id,
            credential,
        })
    }

    /// Key and password settings without `auth.certificate_file` would be
    /// silently unused: a half-made switch to certificates is an error.
    fn refuse_certificate_parts(&self) -> Result<(), ConfigError> {
        let raw = &self.raw.auth;
        let parts = [
            ("auth.private_key_file", raw.private_key_file.is_some()),
            (
                "auth.certificate_password",
                raw.certificate_password.is_some(),
            ),
            (
                "auth.certificate_password_file",
                raw.certificate_password_file.is_some(),
            ),
        ];
        match parts.into_iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(invalid(
                key,
                "set without auth.certificate_file; set that too, or remove this key",
            )),
            None => Ok(()),
        }
    }

    fn certificate(&self, certificate_file: PathBuf) -> Result<CertificateSettings, ConfigError> {
        let raw = &self.raw.auth;
        let private_key_file = raw
            .private_key_file
            .as_deref()
            .map(|p| self.resolve_path(p));
        let password_file = raw
            .certificate_password_file
            .as_deref()
            .map(|p| self.resolve_path(p));
        let mut password = secret::lookup(
            self.environment,
            "auth",
            "certificate_password",
            raw.certificate_password.as_deref(),
            password_file.as_deref(),
        )?;
        if is_pkcs12_path(&certificate_file) {
            if private_key_file.is_some() {
                return Err(invalid(
                    "auth.private_key_file",
                    "a .pfx/.p12 bundle carries its own key; remove this key",
                ));
            }
            if password.is_none() {
                password = self.systemd_credential("certificate_password")?;
            }
        } else if private_key_file.is_none() {
            return Err(invalid(
                "auth.private_key_file",
                "missing; a PEM certificate needs its PEM private key \
                 (or point auth.certificate_file at a .pfx bundle)",
            ));
        } else if let Some(password) = &password {
            let key = match &password.source {
                SecretSource::File { .. } => "auth.certificate_password_file",
                _ => "auth.certificate_password",
            };
            return Err(invalid(
                key,
                "only a .pfx/.p12 bundle has a password; scanwatch reads PEM keys unencrypted \
                 (or point auth.certificate_file at the .pfx and drop auth.private_key_file)",
            ));
        }
        Ok(CertificateSettings {
            certificate_file,
            private_key_file,
            password,
        })
    }

    pub fn schedule(&self) -> Result<ScheduleSettings, ConfigError> {
        let raw = &self.raw.schedule;
        let interval = duration("schedule.interval", &raw.interval, "15m")?;
        if interval < Duration::from_secs(1) {
            return Err(invalid("schedule.interval", "must be at least 1s"));
        }
        let jitter = duration("schedule.jitter", &raw.jitter, "1m")?;
        if jitter >= interval {
            return Err(invalid(
                "schedule.jitter",
                format!(
                    "must be shorter than schedule.interval ({})",
                    humantime::format_duration(interval)
                ),
            ));
        }
        Ok(ScheduleSettings {
            interval,
            jitter,
            shutdown_grace: duration("schedule.shutdown_grace", &raw.shutdown_grace, "10s")?,
            alert_after_failures: at_least_one(
                "schedule.alert_after_failures",
                raw.alert_after_failures.unwrap_or(5),
            )?,
        })
    }

    pub fn detection(&self) -> Result<Rules, ConfigError> {
        let raw = &self.raw.detection;
        let ignore_fields: BTreeSet<String> = raw
            .ignore_fields
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if ignore_fields.contains(crate::profile::field::ID) {
            return Err(invalid(
                "detection.ignore_fields",
                "profileId identifies a profile and cannot be ignored",
            ));
        }
        Ok(Rules {
            ignore_fields,
            removal_confirmations: at_least_one(
                "detection.removal_confirmations",
                raw.removal_confirmations.unwrap_or(1),
            )?,
            empty_list_confirmations: at_least_one(
                "detection.empty_list_confirmations",
                raw.empty_list_confirmations.unwrap_or(2),
            )?,
        })
    }

    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.raw.metrics.listen.as_deref() {
            None | Some("") => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("{text:?} is not an address such as 127.0.0.1:9464"),
                )
            }),
        }
    }

    /// Resolves every section: what `run`, `poll` and `check-config` need.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        Ok(Settings {
            api: self.api()?,
            auth: self.auth()?,
            schedule: self.schedule()?,
            storage: self.storage()?,
            detection: self.detection()?,
            metrics_listen: self.metrics_listen()?,
            log: self.log()?,
            customers: self.customers()?,
        })
    }
}

fn duration(key: &str, value: &Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.as_deref().unwrap_or(default);
    humantime::parse_duration(text).map_err(|e| {
        invalid(
            key,
            format!("{text:?} is not a duration such as \"30s\", \"15m\" or \"1h 30m\" ({e})"),
        )
    })
}

fn at_least_one(key: &str, value: u32) -> Result<u32, ConfigError> {
    if value == 0 {
        Err(invalid(key, "must be at least 1"))
    } else {
        Ok(value)
    }
}

/// Parses an API or token URL and refuses plain HTTP except on loopback,
/// where the simulator and tests live: the token and bearer header must never
/// cross a network in clear text.
fn api_url(key: &str, value: Option<&str>, default: &str) -> Result<Url, ConfigError> {
    let text = value.unwrap_or(default);
    let url = Url::parse(text).map_err(|e| invalid(key, format!("{text:?} is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(invalid(
                key,
                format!("{text:?} uses plain http; only https is allowed off loopback"),
            ))
        }
        other => return Err(invalid(key, format!("scheme {other:?} is not https"))),
    }
    if url.host_str().is_none() {
        return Err(invalid(key, format!("{text:?} has no host")));
    }
    Ok(url)
}

/// Whether a URL points at this machine's loopback interface.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o044 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests;
