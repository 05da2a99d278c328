//! `scanwatch check-config [--probe]` through the built binary: the printed
//! config and each secret's source, the secret precedence including the
//! systemd credential directory (environment variables are set on the child
//! process only), config errors, and each way a probe can fail.

mod certs;
mod hermetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certs::{Pkcs12Cipher, Validity};
use scanwatch::simulator::{SimConfig, Simulator};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "client-secret-never-printed-4b0f";
const PASSWORD: &str = "pfx-password-never-printed-a19e";
const CUSTOMER: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";

fn scanwatch(config: &Path, args: &[&str]) -> Command {
    let mut command = hermetic::scanwatch();
    command
        .arg("--config")
        .arg(config)
        .arg("check-config")
        .args(args);
    command
}

/// Runs the binary off the runtime's threads, so the simulator keeps serving.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    certs::write(dir, "scanwatch.toml", text)
}

/// A config for `base` (the simulator or a mock) with `auth` as its `[auth]` body.
fn config(base: &str, auth: &str, customer: &str) -> String {
    format!(
        "[api]\nbase_url = \"{base}\"\ntoken_url = \"{base}/connect/token\"\n\
         retries = 0\ntimeout = \"5s\"\nmax_requests_per_second = 0\n\n\
         [auth]\n{auth}\n\n[[customers]]\nid = \"{customer}\"\nname = \"Contoso\"\n"
    )
}

async fn simulator(client_certificate: Option<Vec<u8>>) -> Simulator {
    Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            customers: 1,
            profiles: 3,
            client_certificate,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap()
}

fn sim_auth(sim: &Simulator) -> String {
    format!(
        "client_id = \"{}\"\nclient_secret = \"{}\"",
        sim.config().client_id,
        sim.config().client_secret
    )
}

#[tokio::test]
async fn the_printed_config_redacts_the_secret_and_names_the_file_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let secret = certs::write(dir.path(), "client_secret", format!("{SECRET}\n"));
    let auth = format!(
        "client_id = \"app\"\nclient_secret_file = {:?}",
        secret.display().to_string()
    );
    let path = write_config(
        dir.path(),
        &config("https://graph.example.com", &auth, CUSTOMER),
    );

    let output = run(scanwatch(&path, &[])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains(&format!(
            "client_secret = \"[redacted]\"  # from file {}",
            secret.display()
        )),
        "{printed}"
    );
    assert!(
        printed.contains("base_url = \"https://graph.example.com/\""),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("id = \"{CUSTOMER}\"")),
        "{printed}"
    );
    assert!(!printed.contains(SECRET) && !stderr(&output).contains(SECRET));
}

#[tokio::test]
async fn a_secret_from_the_environment_is_shown_as_coming_from_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config("https://graph.example.com", "client_id = \"app\"", CUSTOMER),
    );
    let mut command = scanwatch(&path, &[]);
    command.env("SCANWATCH__AUTH__CLIENT_SECRET", SECRET);

    let output = run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("# from environment variable SCANWATCH__AUTH__CLIENT_SECRET"),
        "{printed}"
    );
    assert!(!printed.contains(SECRET));
}

#[tokio::test]
async fn the_systemd_credential_is_used_only_when_no_secret_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = tempfile::tempdir().unwrap();
    certs::write(credentials.path(), "client_secret", format!("{SECRET}\n"));
    let bare = write_config(
        dir.path(),
        &config("https://graph.example.com", "client_id = \"app\"", CUSTOMER),
    );
    let mut command = scanwatch(&bare, &[]);
    command.env("CREDENTIALS_DIRECTORY", credentials.path());

    let output = run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let expected = credentials.path().join("client_secret");
    assert!(
        stdout(&output).contains(&format!("# from systemd credential {}", expected.display())),
        "{}",
        stdout(&output)
    );

    let file = certs::write(dir.path(), "secret-file", "another-secret\n");
    let auth = format!(
        "client_id = \"app\"\nclient_secret_file = {:?}",
        file.display().to_string()
    );
    let with_file = write_config(
        dir.path(),
        &config("https://graph.example.com", &auth, CUSTOMER),
    );
    let mut command = scanwatch(&with_file, &[]);
    command.env("CREDENTIALS_DIRECTORY", credentials.path());

    let output = run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!("# from file {}", file.display())),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn a_pfx_with_its_password_from_the_credentials_directory_passes_the_probe() {
    let certificate = certs::certificate(0, "scanwatch probe", Validity::Current);
    let sim = simulator(Some(certificate.der.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = tempfile::tempdir().unwrap();
    certs::write(
        credentials.path(),
        "certificate_password",
        format!("{PASSWORD}\n"),
    );
    let pfx = certs::write(
        dir.path(),
        "app.pfx",
        certs::pkcs12(&certificate, 0, PASSWORD, Pkcs12Cipher::TripleDes),
    );
    let auth = format!(
        "client_id = \"{}\"\ncertificate_file = {:?}",
        sim.config().client_id,
        pfx.display().to_string()
    );
    let path = write_config(
        dir.path(),
        &config(&sim.base_url(), &auth, &sim.customer_ids()[0]),
    );
    let mut command = scanwatch(&path, &["--probe"]);
    command.env("CREDENTIALS_DIRECTORY", credentials.path());

    let output = run(command).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        printed.contains("certificate_password = \"[redacted]\"  # from systemd credential"),
        "{printed}"
    );
    assert!(
        printed.contains("# certificate CN=scanwatch probe, expires "),
        "{printed}"
    );
    assert!(printed.contains("3 profile(s)"), "{printed}");
    assert!(printed.contains("probe: ok"), "{printed}");
    assert_eq!(sim.counters().token_requests, 1);
}

#[tokio::test]
async fn a_probe_with_a_pem_certificate_fetches_a_token_and_a_page() {
    let certificate = certs::certificate(0, "scanwatch probe", Validity::Current);
    let sim = simulator(Some(certificate.pem.clone().into_bytes())).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = certs::write(dir.path(), "app.pem", &certificate.pem);
    let key = certs::write(dir.path(), "app.key", &certificate.key_pkcs1_pem);
    let auth = format!(
        "client_id = \"{}\"\ncertificate_file = {:?}\nprivate_key_file = {:?}",
        sim.config().client_id,
        cert.display().to_string(),
        key.display().to_string()
    );
    let path = write_config(
        dir.path(),
        &config(&sim.base_url(), &auth, &sim.customer_ids()[0]),
    );

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("probe: ok"), "{}", stdout(&output));
    assert_eq!(sim.counters().api_requests, 1);
}

/// A `scanwatch simulate` child, killed if a test fails before it stops it.
struct Serving(Option<std::process::Child>);

impl Serving {
    /// Stops the simulator as Ctrl-C would and checks it exits cleanly.
    fn interrupt(mut self) {
        let mut child = self.0.take().unwrap();
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(sent, 0);
        assert!(child.wait().unwrap().success());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `scanwatch simulate --client-certificate FILE` as a child, and the config
/// it printed (everything before its control comment).
fn simulate_trusting(certificate: &Path) -> (Serving, String) {
    use std::io::BufRead;
    let mut child = hermetic::scanwatch()
        .args(["simulate", "--listen", "127.0.0.1:0", "--customers", "1"])
        .arg("--client-certificate")
        .arg(certificate)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("# Control:") {
            break;
        }
        printed.push_str(&line);
        printed.push('\n');
    }
    (Serving(Some(child)), printed)
}

#[tokio::test]
async fn simulate_trusts_the_certificate_it_is_given_and_no_other() {
    let trusted = certs::certificate(0, "trusted app", Validity::Current);
    let other = certs::certificate(1, "other app", Validity::Current);
    let dir = tempfile::tempdir().unwrap();
    let cert = certs::write(dir.path(), "app.pem", &trusted.pem);
    let (serving, printed) = simulate_trusting(&cert);
    assert!(
        printed.contains(&format!(
            "certificate_file = {:?}",
            cert.display().to_string()
        )),
        "{printed}"
    );

    let secret_line = printed
        .lines()
        .find(|line| line.starts_with("client_secret = "))
        .expect("the printed config has a client secret");
    for (name, certificate, expected) in [("trusted", &trusted, 0), ("other", &other, 1)] {
        let cert = certs::write(dir.path(), &format!("{name}.pem"), &certificate.pem);
        let key = certs::write(
            dir.path(),
            &format!("{name}.key"),
            &certificate.key_pkcs8_pem,
        );
        let auth = format!(
            "certificate_file = {:?}\nprivate_key_file = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        );
        let path = write_config(dir.path(), &printed.replace(secret_line, &auth));
        let output = run(scanwatch(&path, &["--probe"])).await;
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{name}: {}",
            stderr(&output)
        );
        if expected == 0 {
            assert!(stdout(&output).contains("probe: ok"), "{}", stdout(&output));
        } else {
            assert!(
                stderr(&output).contains("invalid_client"),
                "{}",
                stderr(&output)
            );
        }
    }
    serving.interrupt();
}

#[tokio::test]
async fn simulate_refuses_a_client_certificate_it_cannot_check() {
    let dir = tempfile::tempdir().unwrap();
    let key_only = certs::certificate(0, "app", Validity::Current).key_pkcs8_pem;
    let path = certs::write(dir.path(), "app.key", key_only);
    let output = hermetic::scanwatch()
        .args(["simulate", "--client-certificate"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr(&output);
    assert!(stderr.contains("--client-certificate:"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("not a PEM or DER certificate"), "{stderr}");
}

#[tokio::test]
async fn a_probe_with_a_client_secret_fetches_a_token_and_a_page() {
    let sim = simulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &config(&sim.base_url(), &sim_auth(&sim), &sim.customer_ids()[0]),
    );

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("probe: token issued by"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("probe: ok"), "{}", stdout(&output));
}

#[tokio::test]
async fn a_probe_names_an_unreachable_token_endpoint() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let auth = format!("client_id = \"app\"\nclient_secret = \"{SECRET}\"");
    let path = write_config(
        dir.path(),
        &config(&format!("http://127.0.0.1:{port}"), &auth, CUSTOMER),
    );

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(
        error.contains("probe failed at the token request"),
        "{error}"
    );
    assert!(error.contains("cannot reach the token endpoint"), "{error}");
}

#[tokio::test]
async fn a_probe_names_a_refused_client() {
    let sim = simulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    let auth = sim_auth(&sim).replace(&sim.config().client_secret, "wrong-secret");
    let path = write_config(
        dir.path(),
        &config(&sim.base_url(), &auth, &sim.customer_ids()[0]),
    );

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("invalid_client"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("wrong-secret"));
}

#[tokio::test]
async fn a_probe_names_a_refused_scope() {
    let sim = simulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&sim.base_url(), &sim_auth(&sim), &sim.customer_ids()[0]).replace(
        "retries = 0",
        "retries = 0\nscope = \"elements.customers.read.all\"",
    );
    let path = write_config(dir.path(), &text);

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(error.contains("invalid_scope"), "{error}");
    assert!(error.contains("elements.customers.read.all"), "{error}");
}

#[tokio::test]
async fn a_probe_answered_403_names_the_permission_and_the_customer_scope() {
    let sim = simulator(None).await;
    let dir = tempfile::tempdir().unwrap();
    // A customer the simulator does not have: outside the app's scope.
    let path = write_config(
        dir.path(),
        &config(&sim.base_url(), &sim_auth(&sim), CUSTOMER),
    );

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(error.contains("403"), "{error}");
    assert!(error.contains("elements.scanprofiles.read.all"), "{error}");
    assert!(error.contains("customer scope"), "{error}");
}

#[tokio::test]
async fn a_probe_needs_a_configured_customer() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        "https://graph.example.com",
        "client_id = \"app\"\nclient_secret = \"x\"",
        CUSTOMER,
    );
    let text = text[..text.find("[[customers]]").unwrap()].to_owned();
    let path = write_config(dir.path(), &text);

    let output = run(scanwatch(&path, &["--probe"])).await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("customers:"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_expired_certificate_is_a_configuration_error_naming_subject_and_expiry() {
    let certificate = certs::certificate(0, "scanwatch expired", Validity::Expired);
    let dir = tempfile::tempdir().unwrap();
    let pfx = certs::write(
        dir.path(),
        "app.pfx",
        certs::pkcs12(&certificate, 0, PASSWORD, Pkcs12Cipher::Modern),
    );
    let auth = format!(
        "client_id = \"app\"\ncertificate_file = {:?}\ncertificate_password = \"{PASSWORD}\"",
        pfx.display().to_string()
    );
    let path = write_config(
        dir.path(),
        &config("https://graph.example.com", &auth, CUSTOMER),
    );

    let output = run(scanwatch(&path, &[])).await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(error.contains("CN=scanwatch expired"), "{error}");
    assert!(error.contains("expired on"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
}

#[tokio::test]
async fn both_or_neither_credential_is_a_configuration_error_naming_both_keys() {
    let dir = tempfile::tempdir().unwrap();
    for auth in [
        "client_id = \"app\"".to_owned(),
        "client_id = \"app\"\nclient_secret = \"x\"\ncertificate_file = \"a.pfx\"".to_owned(),
    ] {
        let path = write_config(
            dir.path(),
            &config("https://graph.example.com", &auth, CUSTOMER),
        );

        let output = run(scanwatch(&path, &[])).await;

        assert_eq!(output.status.code(), Some(2), "{auth}: {}", stderr(&output));
        let error = stderr(&output);
        assert!(
            error.contains("auth.client_secret") && error.contains("auth.certificate_file"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn each_environment_prints_its_own_urls_and_plain_http_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = "client_id = \"app\"\nclient_secret = \"x\"";
    for (environment, graph, identity) in [
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
        let text = format!(
            "[api]\nenvironment = \"{environment}\"\n\n[auth]\n{auth}\n\n[[customers]]\nid = \"{CUSTOMER}\"\n"
        );
        let path = write_config(dir.path(), &text);

        let output = run(scanwatch(&path, &[])).await;

        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let printed = stdout(&output);
        assert!(
            printed.contains(&format!("base_url = \"https://{graph}/\"")),
            "{printed}"
        );
        assert!(
            printed.contains(&format!("token_url = \"https://{identity}/connect/token\"")),
            "{printed}"
        );
    }

    let path = write_config(
        dir.path(),
        &config("http://graph.example.com", auth, CUSTOMER),
    );
    let output = run(scanwatch(&path, &[])).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("api.base_url"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_readable_config_with_an_inline_secret_draws_one_warning_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let auth = format!("client_id = \"app\"\nclient_secret = \"{SECRET}\"");
    let path = write_config(
        dir.path(),
        &config("https://graph.example.com", &auth, CUSTOMER),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let output = run(scanwatch(&path, &[])).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let logged = stderr(&output);
    assert_eq!(logged.matches("chmod 600").count(), 1, "{logged}");
    assert!(logged.contains(&path.display().to_string()), "{logged}");
    assert!(!logged.contains(SECRET), "{logged}");
}

#[tokio::test]
async fn nothing_a_probe_prints_or_logs_holds_a_secret_an_assertion_or_a_token() {
    const TOKEN: &str = "access-token-never-printed-6d21";
    let certificate = certs::certificate(0, "scanwatch probe", Validity::ExpiringSoon);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let pfx = certs::write(
        dir.path(),
        "app.pfx",
        certs::pkcs12(&certificate, 0, PASSWORD, Pkcs12Cipher::Rc2),
    );
    let with_certificate = format!(
        "client_id = \"app\"\ncertificate_file = {:?}\ncertificate_password = \"{PASSWORD}\"",
        pfx.display().to_string()
    );
    let with_secret = format!("client_id = \"app\"\nclient_secret = \"{SECRET}\"");
    let mut printed = String::new();

    for auth in [with_secret, with_certificate] {
        let path = write_config(dir.path(), &config(&server.uri(), &auth, CUSTOMER));
        let mut command = scanwatch(&path, &["--probe"]);
        command.env("RUST_LOG", "trace");

        let output = run(command).await;

        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        printed.push_str(&stdout(&output));
        printed.push_str(&stderr(&output));
    }

    let mut secrets = vec![SECRET.to_owned(), PASSWORD.to_owned(), TOKEN.to_owned()];
    for request in server.received_requests().await.unwrap() {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        for (key, value) in form {
            if key == "client_assertion" {
                secrets.push(value.rsplit('.').next().unwrap().to_owned());
                secrets.push(value);
            }
        }
    }
    assert_eq!(secrets.len(), 5, "one assertion was sent");
    assert!(printed.contains("expires soon"), "{printed}");
    for secret in &secrets {
        assert!(
            !printed.contains(secret.as_str()),
            "{secret} was printed:\n{printed}"
        );
    }
}
