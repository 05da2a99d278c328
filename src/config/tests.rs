use super::*;
use secrecy::ExposeSecret;

const ID: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";

fn load(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::from_toml_ignoring_environment(Path::new("/etc/scanwatch/scanwatch.toml"), text)
}

fn minimal() -> String {
    format!(
        r#"
        [auth]
        client_id = "app"
        client_secret = "s3cret"

        [[customers]]
        id = "{ID}"
        name = "Contoso"
        "#
    )
}

fn error_of(text: &str) -> String {
    match load(text).and_then(|f| f.settings()) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_fill_every_unset_key() {
    let settings = load(&minimal()).unwrap().settings().unwrap();
    assert_eq!(settings.api.environment, Environment::Commercial);
    assert_eq!(
        settings.api.base_url.as_str(),
        "https://graph.avepointonlineservices.com/"
    );
    assert_eq!(settings.api.endpoint, Endpoint::List);
    assert_eq!(settings.api.timeout, Duration::from_secs(30));
    assert_eq!(settings.api.retries, 3);
    assert_eq!(settings.api.max_retry_after, Duration::from_secs(300));
    assert_eq!(settings.api.max_requests_per_second, Some(10));
    assert_eq!(settings.schedule.interval, Duration::from_secs(900));
    assert_eq!(settings.detection.empty_list_confirmations, 2);
    assert_eq!(settings.detection.removal_confirmations, 1);
    assert_eq!(settings.storage.busy_timeout, Duration::from_secs(5));
    assert_eq!(settings.metrics_listen, None);
    assert_eq!(settings.customers[0].id.as_str(), ID);
    assert_eq!(settings.customers[0].name.as_deref(), Some("Contoso"));
}

#[test]
fn a_relative_database_is_resolved_against_the_config_folder() {
    let storage = load(&minimal()).unwrap().storage().unwrap();
    assert_eq!(storage.database, Path::new("/etc/scanwatch/scanwatch.db"));
}

#[test]
fn an_unknown_key_is_named() {
    let err = error_of(&format!("{}\n[api]\ntimeot = \"5s\"\n", minimal()));
    assert!(
        err.starts_with("api.timeot") || err.contains("timeot"),
        "{err}"
    );
}

#[test]
fn an_unknown_section_is_refused() {
    let err = error_of(&format!("{}\n[apii]\nx = 1\n", minimal()));
    assert!(err.contains("apii"), "{err}");
}

#[test]
fn a_bad_duration_names_its_key() {
    let err = error_of(&format!(
        "{}\n[schedule]\ninterval = \"often\"\n",
        minimal()
    ));
    assert!(err.starts_with("schedule.interval:"), "{err}");
}

#[test]
fn a_wrong_type_names_its_key() {
    let err = error_of(&format!("{}\n[api]\nretries = \"many\"\n", minimal()));
    assert!(err.starts_with("api.retries"), "{err}");
}

#[test]
fn an_invalid_customer_id_names_its_position() {
    let text = r#"
        [auth]
        client_id = "app"
        client_secret = "x"
        [[customers]]
        id = "not-a-guid"
    "#;
    let err = error_of(text);
    assert!(err.starts_with("customers[0].id:"), "{err}");
}

#[test]
fn a_customer_listed_twice_is_refused() {
    let text = format!(
        "{}\n[[customers]]\nid = \"{}\"\n",
        minimal(),
        ID.to_uppercase()
    );
    let err = error_of(&text);
    assert!(err.starts_with("customers[1].id:"), "{err}");
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let err = error_of(&format!(
        "{}\n[api]\nbase_url = \"http://graph.example.com\"\n",
        minimal()
    ));
    assert!(err.starts_with("api.base_url:"), "{err}");
}

#[test]
fn plain_http_is_allowed_on_loopback() {
    for host in ["127.0.0.1:8080", "localhost:1", "[::1]:9"] {
        let text = format!(
            "{}\n[api]\nbase_url = \"http://{host}\"\ntoken_url = \"http://{host}/connect/token\"\n",
            minimal()
        );
        assert!(load(&text).unwrap().api().is_ok(), "{host}");
    }
}

#[test]
fn each_environment_selects_both_urls() {
    for (name, api, token) in [
        (
            "commercial",
            "graph.avepointonlineservices.com",
            "identity.avepointonlineservices.com",
        ),
        (
            "gov",
            "graph-gov.avepointonlineservices.com",
            "identity-gov.avepointonlineservices.com",
        ),
        (
            "aos2",
            "graph-aos2.avepointonlineservices.com",
            "identity-aos2.avepointonlineservices.com",
        ),
        (
            "fedramp",
            "graphusgovapi.online15.net",
            "identity.online15.net",
        ),
    ] {
        let text = format!("{}\n[api]\nenvironment = \"{name}\"\n", minimal());
        let api_settings = load(&text).unwrap().api().unwrap();
        assert_eq!(api_settings.base_url.host_str(), Some(api));
        assert_eq!(api_settings.token_url.host_str(), Some(token));
        assert_eq!(api_settings.token_url.path(), "/connect/token");
    }
}

#[test]
fn an_explicit_url_overrides_the_environment() {
    let text = format!(
        "{}\n[api]\nenvironment = \"gov\"\ntoken_url = \"https://id.example.com/t\"\n",
        minimal()
    );
    let api = load(&text).unwrap().api().unwrap();
    assert_eq!(
        api.base_url.host_str(),
        Some("graph-gov.avepointonlineservices.com")
    );
    assert_eq!(api.token_url.as_str(), "https://id.example.com/t");
}

#[test]
fn an_unknown_environment_is_refused() {
    let err = error_of(&format!("{}\n[api]\nenvironment = \"moon\"\n", minimal()));
    assert!(err.starts_with("api.environment:"), "{err}");
}

#[test]
fn a_secret_and_a_certificate_together_are_refused() {
    let text = format!(
        "{}\n",
        minimal().replace(
            "client_secret = \"s3cret\"",
            "client_secret = \"s\"\ncertificate_file = \"a.pem\"\nprivate_key_file = \"a.key\""
        )
    );
    let err = error_of(&text);
    assert!(
        err.contains("auth.client_secret") && err.contains("auth.certificate_file"),
        "{err}"
    );
}

#[test]
fn a_pem_certificate_needs_its_key() {
    let text = minimal().replace("client_secret = \"s3cret\"", "certificate_file = \"a.pem\"");
    let err = error_of(&text);
    assert!(err.starts_with("auth.private_key_file:"), "{err}");
}

#[test]
fn a_pfx_bundle_needs_no_key_file() {
    let text = minimal().replace(
        "client_secret = \"s3cret\"",
        "certificate_file = \"app.pfx\"\ncertificate_password = \"pw\"",
    );
    let auth = load(&text).unwrap().auth().unwrap();
    let Credential::Certificate(cert) = auth.credential else {
        panic!("expected a certificate");
    };
    assert!(cert.is_pkcs12());
    assert_eq!(cert.certificate_file, Path::new("/etc/scanwatch/app.pfx"));
    assert_eq!(cert.password.unwrap().value.expose_secret(), "pw");
}

#[test]
fn the_inline_secret_is_read_and_its_source_named() {
    let auth = load(&minimal()).unwrap().auth().unwrap();
    let Credential::ClientSecret(secret) = auth.credential else {
        panic!("expected a secret");
    };
    assert_eq!(secret.value.expose_secret(), "s3cret");
    assert_eq!(
        secret.source,
        SecretSource::Inline {
            key: "auth.client_secret".into()
        }
    );
}

#[test]
fn a_missing_client_id_is_named() {
    let err = error_of(&minimal().replace("client_id = \"app\"", ""));
    assert!(err.starts_with("auth.client_id:"), "{err}");
}

#[test]
fn jitter_must_be_shorter_than_the_interval() {
    let err = error_of(&format!(
        "{}\n[schedule]\ninterval = \"1m\"\njitter = \"2m\"\n",
        minimal()
    ));
    assert!(err.starts_with("schedule.jitter:"), "{err}");
}

#[test]
fn zero_confirmations_are_refused() {
    let err = error_of(&format!(
        "{}\n[detection]\nremoval_confirmations = 0\n",
        minimal()
    ));
    assert!(err.starts_with("detection.removal_confirmations:"), "{err}");
}

#[test]
fn a_bad_log_format_is_named() {
    let err = error_of(&format!("{}\n[log]\nformat = \"xml\"\n", minimal()));
    assert!(err.starts_with("log.format:"), "{err}");
}

#[test]
fn a_bad_metrics_address_is_named() {
    let err = error_of(&format!(
        "{}\n[metrics]\nlisten = \"everywhere\"\n",
        minimal()
    ));
    assert!(err.starts_with("metrics.listen:"), "{err}");
}

#[test]
fn zero_requests_per_second_means_no_cap() {
    let text = format!("{}\n[api]\nmax_requests_per_second = 0\n", minimal());
    assert_eq!(
        load(&text).unwrap().api().unwrap().max_requests_per_second,
        None
    );
}

#[test]
fn storage_and_customers_resolve_without_any_auth() {
    let text = format!("[[customers]]\nid = \"{ID}\"\n");
    let file = load(&text).unwrap();
    assert!(file.storage().is_ok());
    assert_eq!(file.customers().unwrap().len(), 1);
    assert!(file.auth().is_err());
}

#[test]
fn debug_output_of_settings_never_shows_the_secret() {
    let settings = load(&minimal()).unwrap().settings().unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
}

#[test]
fn debug_output_of_the_parsed_file_never_shows_an_inline_secret() {
    let text = minimal() + "\n";
    let text = text.replace("[auth]", "[auth]\ncertificate_password = \"pfx-pa55\"");
    let file = load(&text).unwrap();
    let printed = format!("{file:?}");
    assert!(!printed.contains("s3cret"), "{printed}");
    assert!(!printed.contains("pfx-pa55"), "{printed}");
    assert!(printed.contains("client_id: Some(\"app\")"), "{printed}");
}

#[test]
fn a_syntax_error_is_one_line_with_its_place_but_not_the_line_itself() {
    let text = minimal().replace("\"s3cret\"", "\"s3cret\\q\"");
    let err = error_of(&text);
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("line 4"), "{err}");
    assert!(
        err.starts_with("config file /etc/scanwatch/scanwatch.toml"),
        "{err}"
    );
}

#[test]
fn the_example_config_is_valid_and_sets_every_default() {
    let text = include_str!("../../config/scanwatch.example.toml");
    let file = ConfigFile::from_toml_ignoring_environment(
        Path::new("/etc/scanwatch/scanwatch.toml"),
        text,
    )
    .unwrap();
    assert_eq!(file.customers().unwrap().len(), 2);
    assert!(file.api().is_ok());
    assert!(file.schedule().is_ok());
    assert!(file.detection().is_ok());
    assert!(file.log().is_ok());
    let storage = file.storage().unwrap();
    assert_eq!(storage.poll_retention, Duration::from_secs(30 * 86400));
}

#[test]
fn plain_http_token_url_is_refused_off_loopback() {
    let err = error_of(&format!(
        "{}\n[api]\ntoken_url = \"http://identity.example.com/connect/token\"\n",
        minimal()
    ));
    assert!(err.starts_with("api.token_url:"), "{err}");
    assert!(err.contains("https"), "{err}");
}

#[test]
fn neither_a_secret_nor_a_certificate_is_an_error_naming_both_keys() {
    let err = error_of(&minimal().replace("client_secret = \"s3cret\"", ""));
    assert!(
        err.contains("auth.client_secret") && err.contains("auth.certificate_file"),
        "{err}"
    );
    assert!(err.contains("neither"), "{err}");
}

#[test]
fn a_key_file_without_a_certificate_is_refused() {
    let text = minimal().replace(
        "client_secret = \"s3cret\"",
        "client_secret = \"s3cret\"\nprivate_key_file = \"app.key\"",
    );
    let err = error_of(&text);
    assert!(err.starts_with("auth.private_key_file:"), "{err}");
    assert!(err.contains("auth.certificate_file"), "{err}");
}

#[test]
fn a_password_for_a_pem_key_is_refused() {
    let text = minimal().replace(
        "client_secret = \"s3cret\"",
        "certificate_file = \"app.pem\"\nprivate_key_file = \"app.key\"\ncertificate_password = \"pw\"",
    );
    let err = error_of(&text);
    assert!(err.starts_with("auth.certificate_password:"), "{err}");
    assert!(!err.contains("pw\""), "{err}");
}

#[test]
fn a_pem_pair_resolves_both_paths_against_the_config_folder() {
    let text = minimal().replace(
        "client_secret = \"s3cret\"",
        "certificate_file = \"app.pem\"\nprivate_key_file = \"/keys/app.key\"",
    );
    let auth = load(&text).unwrap().auth().unwrap();
    let Credential::Certificate(cert) = auth.credential else {
        panic!("expected a certificate");
    };
    assert!(!cert.is_pkcs12());
    assert_eq!(cert.certificate_file, Path::new("/etc/scanwatch/app.pem"));
    assert_eq!(
        cert.private_key_file.as_deref(),
        Some(Path::new("/keys/app.key"))
    );
    assert!(cert.password.is_none());
}

#[test]
fn a_pfx_password_is_read_from_its_file_without_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pfx-password"), "pfx pw\n").unwrap();
    let text = minimal().replace(
        "client_secret = \"s3cret\"",
        "certificate_file = \"app.P12\"\ncertificate_password_file = \"pfx-password\"",
    );
    let auth =
        ConfigFile::from_toml_ignoring_environment(&dir.path().join("scanwatch.toml"), &text)
            .unwrap()
            .auth()
            .unwrap();
    let Credential::Certificate(cert) = auth.credential else {
        panic!("expected a certificate");
    };
    assert!(cert.is_pkcs12());
    let password = cert.password.unwrap();
    assert_eq!(password.value.expose_secret(), "pfx pw");
    assert!(matches!(password.source, SecretSource::File { .. }));
}

#[test]
fn debug_output_of_certificate_settings_never_shows_the_password() {
    let text = minimal().replace(
        "client_secret = \"s3cret\"",
        "certificate_file = \"app.pfx\"\ncertificate_password = \"pfx-pw-31d\"",
    );
    let settings = load(&text).unwrap().settings().unwrap();
    let printed = format!("{settings:?}");
    assert!(!printed.contains("pfx-pw-31d"), "{printed}");
    assert!(printed.contains(REDACTED), "{printed}");
}

#[cfg(unix)]
mod permissions {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The warnings for `text` saved with `mode`, and the file's path.
    fn warnings_for(text: &str, mode: u32) -> (PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scanwatch.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let warnings = ConfigFile::load(&path).unwrap().warnings();
        (path, warnings)
    }

    #[test]
    fn a_readable_config_with_an_inline_secret_draws_one_warning_with_the_fix() {
        let (path, warnings) = warnings_for(&minimal(), 0o644);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(&path.display().to_string()),
            "{}",
            warnings[0]
        );
        assert!(warnings[0].contains("chmod 600"), "{}", warnings[0]);
        assert!(!warnings[0].contains("s3cret"), "{}", warnings[0]);
    }

    #[test]
    fn an_inline_pfx_password_counts_as_a_secret_too() {
        let text = minimal().replace(
            "client_secret = \"s3cret\"",
            "certificate_file = \"app.pfx\"\ncertificate_password = \"pw\"",
        );
        let (_, warnings) = warnings_for(&text, 0o640);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("auth.certificate_password"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_private_config_or_one_without_secrets_draws_no_warning() {
        assert!(warnings_for(&minimal(), 0o600).1.is_empty());
        let no_secret = minimal().replace(
            "client_secret = \"s3cret\"",
            "client_secret_file = \"/etc/scanwatch/client_secret\"",
        );
        assert!(warnings_for(&no_secret, 0o644).1.is_empty());
    }
}
