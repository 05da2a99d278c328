//! Certificate authentication end to end over loopback: PEM and PKCS#12
//! inputs, the checks made at start, every claim of the client assertion,
//! the simulator's verification of it, and that no secret, assertion or
//! token reaches a log line or an error message.

mod certs;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use certs::{Pkcs12Cipher, TestCertificate, Validity};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use scanwatch::api::{ApiClient, TokenError};
use scanwatch::config::{ConfigFile, Settings};
use scanwatch::poller::{PollOutcome, Poller};
use scanwatch::simulator::{SimConfig, Simulator};
use scanwatch::store::Store;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT_ID: &str = "scanwatch-sim";
const SUBJECT: &str = "scanwatch test app";
const PASSWORD: &str = "pfx-password-never-logged-5e1d";
const CUSTOMER: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn simulator_trusting(certificate: &TestCertificate, token_lifetime_secs: u64) -> Simulator {
    Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            customers: 1,
            profiles: 4,
            client_certificate: Some(certificate.der.clone()),
            token_lifetime: std::time::Duration::from_secs(token_lifetime_secs),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap()
}

/// The simulator's own config with its `client_secret` line replaced by `auth`.
fn config_for(sim: &Simulator, dir: &Path, auth: &str) -> String {
    let db = dir.join("scanwatch.db");
    let text = scanwatch::cli::simulate::config_for(sim, db.to_str().unwrap());
    let secret_line = format!("client_secret = \"{}\"\n", sim.config().client_secret);
    assert!(text.contains(&secret_line), "{text}");
    text.replace(&secret_line, &format!("{auth}\n"))
}

fn settings(dir: &Path, text: &str) -> Settings {
    ConfigFile::from_toml_ignoring_environment(&dir.join("scanwatch.toml"), text)
        .unwrap()
        .settings()
        .unwrap()
}

/// `[auth]` lines for a PEM certificate and key written into `dir`.
fn pem_auth(dir: &Path, certificate: &TestCertificate, key_pem: &str) -> String {
    let cert = certs::write(dir, "app.pem", &certificate.pem);
    let key = certs::write(dir, "app.key", key_pem);
    format!(
        "certificate_file = {:?}\nprivate_key_file = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    )
}

/// `[auth]` lines for a PKCS#12 bundle and its password file written into `dir`.
fn pfx_auth(dir: &Path, bundle: &[u8]) -> String {
    let pfx = certs::write(dir, "app.pfx", bundle);
    let password = certs::write(dir, "pfx-password", format!("{PASSWORD}\n"));
    format!(
        "certificate_file = {:?}\ncertificate_password_file = {:?}",
        pfx.display().to_string(),
        password.display().to_string()
    )
}

fn client_error(dir: &Path, text: &str) -> String {
    let settings = settings(dir, text);
    match ApiClient::new(&settings.api, &settings.auth) {
        Ok(_) => panic!("the client was built"),
        Err(error) => error.to_string(),
    }
}

/// Everything a test's tracing subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every event at every level on this thread (a current-thread
/// runtime runs the simulator and the client on it too) until the guard drops.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn a_poll_with_a_pem_certificate_records_the_simulators_profiles() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &certificate.key_pkcs8_pem);
    let settings = settings(dir.path(), &config_for(&sim, dir.path(), &auth));

    let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
    let store = Store::open(&settings.storage).await.unwrap();
    let poller = Poller::new(api, store, settings.detection.clone(), 5);
    let report = poller.poll(&settings.customers[0]).await;

    assert_eq!(
        report.outcome,
        PollOutcome::Ok {
            http_status: 200,
            profiles: 4,
            added: 4,
            changed: 0,
            removed: 0
        }
    );
    assert_eq!(sim.counters().token_requests, 1);
    poller.store().close().await;
}

#[tokio::test]
async fn a_pkcs1_key_authenticates_like_a_pkcs8_key() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &certificate.key_pkcs1_pem);
    let settings = settings(dir.path(), &config_for(&sim, dir.path(), &auth));

    let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
    let listed = api.probe(&settings.customers[0].id).await.unwrap();

    assert_eq!(listed.http_status, 200);
    assert_eq!(listed.profiles.len(), 4);
}

#[tokio::test]
async fn a_pfx_bundle_authenticates_whichever_cipher_exported_it() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    for cipher in [
        Pkcs12Cipher::Modern,
        Pkcs12Cipher::TripleDes,
        Pkcs12Cipher::Rc2,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bundle = certs::pkcs12(&certificate, 0, PASSWORD, cipher);
        let auth = pfx_auth(dir.path(), &bundle);
        let settings = settings(dir.path(), &config_for(&sim, dir.path(), &auth));

        let api = ApiClient::new(&settings.api, &settings.auth)
            .unwrap_or_else(|e| panic!("{cipher:?}: {e}"));
        let listed = api.probe(&settings.customers[0].id).await;

        assert!(listed.is_ok(), "{cipher:?}: {listed:?}");
        let loaded = api.tokens().certificate().unwrap();
        assert_eq!(loaded.subject(), format!("CN={SUBJECT}"));
    }
}

#[tokio::test]
async fn a_wrong_pfx_password_is_named_as_the_problem_without_the_password() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = certs::pkcs12(
        &certificate,
        0,
        "another-password-3b7c",
        Pkcs12Cipher::Modern,
    );
    let auth = pfx_auth(dir.path(), &bundle);

    let error = client_error(dir.path(), &config_for(&sim, dir.path(), &auth));

    assert!(error.contains("password is wrong"), "{error}");
    assert!(error.contains("app.pfx"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
    assert!(!error.contains("another-password"), "{error}");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_is_reported_with_its_subject_and_expiry() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let other = certs::certificate(1, "other", Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &other.key_pkcs8_pem);

    let error = client_error(dir.path(), &config_for(&sim, dir.path(), &auth));

    assert!(error.contains("does not belong"), "{error}");
    assert!(error.contains(&format!("CN={SUBJECT}")), "{error}");
    assert!(
        error.contains("app.key") && error.contains("app.pem"),
        "{error}"
    );
    let expiry = (chrono::Utc::now() + chrono::TimeDelta::days(365)).format("%Y-%m-%d");
    assert!(error.contains(&expiry.to_string()), "{error}");
    assert_eq!(sim.counters().token_requests, 0);
}

#[tokio::test]
async fn a_pfx_whose_key_is_not_its_certificates_is_refused() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = certs::pkcs12(&certificate, 1, PASSWORD, Pkcs12Cipher::Modern);
    let auth = pfx_auth(dir.path(), &bundle);

    let error = client_error(dir.path(), &config_for(&sim, dir.path(), &auth));

    assert!(error.contains("does not belong"), "{error}");
    assert!(error.contains(&format!("CN={SUBJECT}")), "{error}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused_at_start_with_its_subject_and_expiry() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Expired);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &certificate.key_pkcs8_pem);

    let error = client_error(dir.path(), &config_for(&sim, dir.path(), &auth));

    assert!(error.contains("expired on"), "{error}");
    assert!(error.contains(&format!("CN={SUBJECT}")), "{error}");
    let expiry = (chrono::Utc::now() - chrono::TimeDelta::days(365)).format("%Y-%m-%d");
    assert!(error.contains(&expiry.to_string()), "{error}");
    assert_eq!(sim.counters().token_requests, 0);
}

#[tokio::test]
async fn an_encrypted_pem_key_is_refused_with_the_way_out() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBAA==\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let auth = pem_auth(dir.path(), &certificate, encrypted);

    let error = client_error(dir.path(), &config_for(&sim, dir.path(), &auth));

    assert!(error.contains("encrypted private key"), "{error}");
    assert!(error.contains(".pfx"), "{error}");
}

#[tokio::test]
async fn a_certificate_close_to_expiry_is_warned_about_once_however_many_tokens_are_fetched() {
    let certificate = certs::certificate(0, SUBJECT, Validity::ExpiringSoon);
    // Tokens that expire at once: every token() call asks the simulator again.
    let sim = simulator_trusting(&certificate, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &certificate.key_pkcs8_pem);
    let settings = settings(dir.path(), &config_for(&sim, dir.path(), &auth));
    let (logs, _guard) = capture_logs();

    let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
    for _ in 0..3 {
        api.tokens().token().await.unwrap();
    }

    assert_eq!(sim.counters().token_requests, 3);
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("client certificate expires soon"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    assert!(
        warnings[0].contains(&format!("CN={SUBJECT}")),
        "{}",
        warnings[0]
    );
}

/// A token endpoint on loopback that records requests and issues `token`.
async fn recording_token_endpoint(token: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    server
}

fn wiremock_config(server: &MockServer, dir: &Path, auth: &str) -> String {
    format!(
        "[api]\nbase_url = \"{base}\"\ntoken_url = \"{base}/connect/token\"\n\
         max_requests_per_second = 0\n\n[auth]\nclient_id = \"{CLIENT_ID}\"\n{auth}\n\n\
         [storage]\ndatabase = \"{db}\"\n\n[[customers]]\nid = \"{CUSTOMER}\"\n",
        base = server.uri(),
        db = dir.join("scanwatch.db").display()
    )
}

fn form_of(request: &wiremock::Request) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

#[derive(Debug, serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

#[tokio::test]
async fn every_claim_of_the_client_assertion_is_what_the_token_endpoint_expects() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let server = recording_token_endpoint("token-1").await;
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &certificate.key_pkcs8_pem);
    let settings = settings(dir.path(), &wiremock_config(&server, dir.path(), &auth));

    let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
    let first = api.tokens().token().await.unwrap();
    api.tokens().invalidate(&first).await;
    api.tokens().token().await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let token_url = format!("{}/connect/token", server.uri());
    let public_key = certs::key(0).to_public_key().to_pkcs1_der().unwrap();
    let decoding_key = DecodingKey::from_rsa_der(public_key.as_bytes());
    let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(&certificate.der));
    let mut jtis = Vec::new();
    for request in &requests {
        let form = form_of(request);
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], CLIENT_ID);
        assert_eq!(form["scope"], "elements.scanprofiles.read.all");
        assert_eq!(form["client_assertion_type"], JWT_BEARER);
        assert!(!form.contains_key("client_secret"), "{form:?}");
        assert!(!request.headers.contains_key("authorization"));

        let assertion = &form["client_assertion"];
        let header = jsonwebtoken::decode_header(assertion).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.x5t.as_deref(), Some(x5t.as_str()));
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&token_url]);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(assertion, &decoding_key, &validation)
            .unwrap()
            .claims;
        assert_eq!(claims.iss, CLIENT_ID);
        assert_eq!(claims.sub, CLIENT_ID);
        assert_eq!(claims.aud, token_url);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.exp - claims.iat, 300);
        assert!((chrono::Utc::now().timestamp() - claims.iat).abs() <= 5);
        jtis.push(claims.jti);
    }
    assert_ne!(jtis[0], jtis[1]);
    assert!(!jtis[0].is_empty());
}

/// Posts a client assertion to the simulator's token endpoint; the status.
async fn post_assertion(sim: &Simulator, assertion_type: &str, assertion: &str) -> u16 {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("scope", "elements.scanprofiles.read.all"),
        ("client_assertion_type", assertion_type),
        ("client_assertion", assertion),
    ];
    reqwest::Client::new()
        .post(sim.token_url())
        .form(&form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn sign(key_index: usize, header: &Header, claims: &Value) -> String {
    let der = certs::key(key_index).to_pkcs1_der().unwrap();
    jsonwebtoken::encode(header, claims, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
}

#[tokio::test]
async fn the_simulator_accepts_only_assertions_that_pass_every_check() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = simulator_trusting(&certificate, 3600).await;
    let now = chrono::Utc::now().timestamp();
    let good_claims = json!({
        "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": sim.token_url(),
        "jti": "8d2c", "iat": now, "nbf": now, "exp": now + 300,
    });
    let mut good_header = Header::new(Algorithm::RS256);
    good_header.x5t = Some(URL_SAFE_NO_PAD.encode(Sha1::digest(&certificate.der)));
    let with = |field: &str, value: Value| {
        let mut claims = good_claims.clone();
        claims[field] = value;
        claims
    };
    let without = |field: &str| {
        let mut claims = good_claims.clone();
        claims.as_object_mut().unwrap().remove(field);
        claims
    };
    let mut other_x5t = good_header.clone();
    other_x5t.x5t = Some(URL_SAFE_NO_PAD.encode(Sha1::digest(b"another certificate")));
    let mut no_x5t = good_header.clone();
    no_x5t.x5t = None;

    assert_eq!(
        post_assertion(&sim, JWT_BEARER, &sign(0, &good_header, &good_claims)).await,
        200,
        "a correct assertion"
    );
    let refused = [
        ("signed by another key", sign(1, &good_header, &good_claims)),
        ("another x5t", sign(0, &other_x5t, &good_claims)),
        ("no x5t", sign(0, &no_x5t, &good_claims)),
        (
            "another issuer",
            sign(0, &good_header, &with("iss", json!("intruder"))),
        ),
        (
            "another subject",
            sign(0, &good_header, &with("sub", json!("intruder"))),
        ),
        (
            "another audience",
            sign(
                0,
                &good_header,
                &with("aud", json!("https://elsewhere/connect/token")),
            ),
        ),
        (
            "expired",
            sign(0, &good_header, &with("exp", json!(now - 600))),
        ),
        (
            "not yet valid",
            sign(0, &good_header, &with("nbf", json!(now + 600))),
        ),
        ("no exp", sign(0, &good_header, &without("exp"))),
        ("no jti", sign(0, &good_header, &without("jti"))),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    for (case, assertion) in &refused {
        assert_eq!(
            post_assertion(&sim, JWT_BEARER, assertion).await,
            401,
            "{case}"
        );
    }
    let good = sign(0, &good_header, &good_claims);
    assert_eq!(
        post_assertion(&sim, "urn:example:other-type", &good).await,
        401,
        "another assertion type"
    );
}

#[tokio::test]
async fn a_simulator_without_a_certificate_refuses_every_assertion() {
    let certificate = certs::certificate(0, SUBJECT, Validity::Current);
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let auth = pem_auth(dir.path(), &certificate, &certificate.key_pkcs8_pem);
    let settings = settings(dir.path(), &config_for(&sim, dir.path(), &auth));

    let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
    let error = api.tokens().token().await.unwrap_err();

    assert!(matches!(error, TokenError::InvalidClient { .. }), "{error}");
}

#[tokio::test]
async fn no_secret_assertion_or_token_reaches_a_log_line_or_an_error() {
    const SECRET: &str = "client-secret-never-logged-0c4e";
    const TOKEN: &str = "access-token-never-logged-77aa";
    let certificate = certs::certificate(0, SUBJECT, Validity::ExpiringSoon);
    let server = recording_token_endpoint(TOKEN).await;
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_client", "error_description": "unknown client"
        })))
        .mount(&refusing)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let pfx_dir = tempfile::tempdir().unwrap();
    let bundle = certs::pkcs12(&certificate, 0, PASSWORD, Pkcs12Cipher::TripleDes);
    let pfx = pfx_auth(pfx_dir.path(), &bundle);
    let (logs, _guard) = capture_logs();
    let mut errors = Vec::new();

    // A secret, then a .pfx with its password: a token and a list each.
    for auth in [format!("client_secret = \"{SECRET}\""), pfx.clone()] {
        let settings = settings(dir.path(), &wiremock_config(&server, dir.path(), &auth));
        errors.push(format!("{settings:?}"));
        let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
        errors.push(format!("{api:?}"));
        let customer = &settings.customers[0].id;
        api.probe(customer).await.unwrap();
    }
    // Both again against a token endpoint that refuses them.
    for auth in [format!("client_secret = \"{SECRET}\""), pfx] {
        let settings = settings(dir.path(), &wiremock_config(&refusing, dir.path(), &auth));
        let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
        let error = api.probe(&settings.customers[0].id).await.unwrap_err();
        errors.push(error.to_string());
        errors.push(format!("{error:?}"));
    }
    // A wrong password and a damaged bundle.
    let wrong = certs::write(
        dir.path(),
        "wrong.pfx",
        certs::pkcs12(&certificate, 0, SECRET, Pkcs12Cipher::Modern),
    );
    let text = wiremock_config(
        &server,
        dir.path(),
        &format!(
            "certificate_file = {:?}\ncertificate_password = \"{PASSWORD}\"",
            wrong.display().to_string()
        ),
    );
    errors.push(client_error(dir.path(), &text));

    let mut secrets: Vec<String> = vec![SECRET.into(), TOKEN.into(), PASSWORD.into()];
    for request in server.received_requests().await.unwrap() {
        if let Some(assertion) = form_of(&request).get("client_assertion") {
            secrets.push(assertion.clone());
            // The signature alone is enough to replay nothing, but is never printed either.
            secrets.push(assertion.rsplit('.').next().unwrap().to_owned());
        }
    }
    assert!(secrets.len() > 3, "no assertion was sent");
    // Any line of the key's base64 body, as a printed PEM would show it.
    secrets.extend(
        certificate
            .key_pkcs8_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .take(3)
            .map(str::to_owned),
    );

    let logged = logs.text();
    assert!(
        logged.contains("expires soon"),
        "the capture is live:\n{logged}"
    );
    for secret in &secrets {
        assert!(
            !logged.contains(secret.as_str()),
            "a log line shows {secret}:\n{logged}"
        );
        for error in &errors {
            assert!(
                !error.contains(secret.as_str()),
                "an error shows {secret}: {error}"
            );
        }
    }
}

#[test]
fn certificate_files_are_read_relative_to_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[auth]\nclient_id = \"{CLIENT_ID}\"\ncertificate_file = \"keys/app.pfx\"\n\
         certificate_password = \"x\"\n[[customers]]\nid = \"{CUSTOMER}\"\n"
    );
    let settings = settings(dir.path(), &text);
    let scanwatch::config::Credential::Certificate(certificate) = &settings.auth.credential else {
        panic!("not a certificate credential");
    };
    let expected: PathBuf = std::path::absolute(dir.path())
        .unwrap()
        .join("keys/app.pfx");
    assert_eq!(certificate.certificate_file, expected);
}
