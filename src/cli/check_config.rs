//! `scanwatch check-config [--probe]`: validates the whole config, prints
//! the effective settings with every secret redacted and where it came from,
//! and with `--probe` proves the credentials against the API.
//!
//! Validation goes as far as `run` would before its first request: every
//! section is resolved and the API client is built, which loads and checks
//! the certificate. The database is not opened, so checking never creates or
//! migrates one. The probe fetches a token, then the first page of the first
//! configured customer, and names the step that failed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::CliError;
use crate::api::{ApiClient, ClientCertificate, FetchError};
use crate::config::{AuthSettings, Credential, Endpoint, LogFormat, Secret, Settings, REDACTED};
use crate::customer::Customer;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scanwatch check-config\n  scanwatch check-config --probe")]
pub struct Args {
    /// Also fetch a token and the first page of the first configured
    /// customer's scan profiles (exit 1 if that fails).
    #[arg(long)]
    pub probe: bool,
}

pub async fn run(config: &Path, args: Args) -> Result<ExitCode, CliError> {
    let file = super::load_config(config)?;
    let settings = file.settings()?;
    let api = ApiClient::new(&settings.api, &settings.auth)
        .map_err(|e| CliError::Usage(e.to_string()))?;

    print!(
        "{}",
        describe(file.path(), &settings, api.tokens().certificate())
    );
    if !args.probe {
        println!("# the configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }

    let customer = settings.customers.first().ok_or_else(|| {
        CliError::Usage(
            "customers: none configured; --probe needs a [[customers]] table to read".to_owned(),
        )
    })?;
    probe(&api, &settings, customer).await?;
    Ok(ExitCode::SUCCESS)
}

/// Fetches a token, then one page, saying which step failed.
async fn probe(api: &ApiClient, settings: &Settings, customer: &Customer) -> Result<(), CliError> {
    let token_url = &settings.api.token_url;
    if let Err(error) = api.tokens().token().await {
        return Err(CliError::Failure(anyhow::anyhow!(
            "probe failed at the token request: {error}"
        )));
    }
    println!("probe: token issued by {token_url}");

    match api.probe(&customer.id).await {
        Ok(list) => {
            println!(
                "probe: {} answered {} with {} profile(s) on the first page of customer {}{}",
                settings.api.base_url,
                list.http_status,
                list.profiles.len(),
                customer.label(),
                if list.complete {
                    ""
                } else {
                    " (more pages follow)"
                }
            );
            println!("probe: ok");
            Ok(())
        }
        Err(error) => {
            let step = match &error {
                FetchError::Token(_) => "the token request",
                _ => "the scan profile list",
            };
            Err(CliError::Failure(anyhow::anyhow!(
                "probe failed at {step} of customer {}: {error}",
                customer.label()
            )))
        }
    }
}

/// The effective configuration as TOML, secrets redacted, each secret's
/// source and the certificate's identity in comments.
fn describe(path: &Path, settings: &Settings, certificate: Option<&ClientCertificate>) -> String {
    let mut out = String::new();
    let api = &settings.api;
    let _ = writeln!(out, "# effective configuration of {}", path.display());
    let _ = writeln!(out, "[api]");
    line(&mut out, "environment", quote(api.environment.name()));
    line(&mut out, "base_url", quote(api.base_url.as_str()));
    line(&mut out, "token_url", quote(api.token_url.as_str()));
    line(&mut out, "scope", quote(&api.scope));
    let endpoint = match api.endpoint {
        Endpoint::List => "list",
        Endpoint::Batch => "batch",
    };
    line(&mut out, "endpoint", quote(endpoint));
    line(&mut out, "timeout", duration(api.timeout));
    line(&mut out, "retries", api.retries.to_string());
    line(&mut out, "max_retry_after", duration(api.max_retry_after));
    line(&mut out, "max_pages", api.max_pages.to_string());
    line(&mut out, "max_concurrency", api.max_concurrency.to_string());
    let rate = api.max_requests_per_second.unwrap_or(0);
    line(&mut out, "max_requests_per_second", rate.to_string());

    let _ = writeln!(out, "\n[auth]");
    describe_auth(&mut out, &settings.auth, certificate);

    let schedule = &settings.schedule;
    let _ = writeln!(out, "\n[schedule]");
    line(&mut out, "interval", duration(schedule.interval));
    line(&mut out, "jitter", duration(schedule.jitter));
    line(
        &mut out,
        "shutdown_grace",
        duration(schedule.shutdown_grace),
    );
    let alert = schedule.alert_after_failures.to_string();
    line(&mut out, "alert_after_failures", alert);

    let storage = &settings.storage;
    let _ = writeln!(out, "\n[storage]");
    line(
        &mut out,
        "database",
        quote(&storage.database.display().to_string()),
    );
    line(&mut out, "busy_timeout", duration(storage.busy_timeout));
    line(&mut out, "poll_retention", duration(storage.poll_retention));

    let detection = &settings.detection;
    let _ = writeln!(out, "\n[detection]");
    let empty = detection.empty_list_confirmations.to_string();
    line(&mut out, "empty_list_confirmations", empty);
    let removal = detection.removal_confirmations.to_string();
    line(&mut out, "removal_confirmations", removal);
    let ignored: Vec<String> = detection.ignore_fields.iter().map(|f| quote(f)).collect();
    line(
        &mut out,
        "ignore_fields",
        format!("[{}]", ignored.join(", ")),
    );

    let _ = writeln!(out, "\n[metrics]");
    match settings.metrics_listen {
        Some(addr) => line(&mut out, "listen", quote(&addr.to_string())),
        None => {
            let _ = writeln!(out, "# listen is not set: no metrics endpoint");
        }
    }

    let _ = writeln!(out, "\n[log]");
    let format = match settings.log.format {
        LogFormat::Auto => "auto",
        LogFormat::Journald => "journald",
        LogFormat::Json => "json",
        LogFormat::Pretty => "pretty",
    };
    line(&mut out, "format", quote(format));
    line(&mut out, "level", quote(&settings.log.level));

    for customer in &settings.customers {
        let _ = writeln!(out, "\n[[customers]]");
        line(&mut out, "id", quote(customer.id.as_str()));
        if let Some(name) = &customer.name {
            line(&mut out, "name", quote(name));
        }
    }
    if settings.customers.is_empty() {
        let _ = writeln!(
            out,
            "\n# no [[customers]] configured: nothing would be polled"
        );
    }
    out
}

fn describe_auth(out: &mut String, auth: &AuthSettings, certificate: Option<&ClientCertificate>) {
    line(out, "client_id", quote(&auth.client_id));
    match &auth.credential {
        Credential::ClientSecret(secret) => secret_line(out, "client_secret", secret),
        Credential::Certificate(settings) => {
            let file = settings.certificate_file.display().to_string();
            line(out, "certificate_file", quote(&file));
            if let Some(key) = &settings.private_key_file {
                line(out, "private_key_file", quote(&key.display().to_string()));
            }
            if let Some(password) = &settings.password {
                secret_line(out, "certificate_password", password);
            }
        }
    }
    if let Some(certificate) = certificate {
        let _ = writeln!(
            out,
            "# certificate {}, expires {}, x5t {}",
            certificate.subject(),
            certificate
                .not_after()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            certificate.thumbprint()
        );
    }
}

fn secret_line(out: &mut String, key: &str, secret: &Secret) {
    let _ = writeln!(out, "{key} = {}  # from {}", quote(REDACTED), secret.source);
}

fn line(out: &mut String, key: &str, value: String) {
    let _ = writeln!(out, "{key} = {value}");
}

fn duration(value: std::time::Duration) -> String {
    quote(&humantime::format_duration(value).to_string())
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_escapes_what_toml_requires() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny\u{1}"), r#""x\ny\u0001""#);
    }
}
