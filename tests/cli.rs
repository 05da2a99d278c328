//! The built binary end to end: exit codes, config errors, `poll` against the
//! simulator and a wiremock API, and what ends up in the database and logs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use scanwatch::simulator::{self, SimConfig, Simulator};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn scanwatch(config: &Path, args: &[&str]) -> Command {
    let mut command = common::hermetic::scanwatch();
    command.arg("--config").arg(config).args(args);
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn start_simulator(customers: usize, profiles: usize) -> Simulator {
    Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            customers,
            profiles,
            ..SimConfig::default()
        },
    )
    .await
    .unwrap()
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("scanwatch.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

async fn query_pairs(db: &Path, sql: &str) -> Vec<(String, i64)> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_records_the_baseline_then_exactly_the_changes_made() {
    let sim = start_simulator(2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let config = write_config(
        dir.path(),
        &scanwatch::cli::simulate::config_for(&sim, db.to_str().unwrap()),
    );

    let first = scanwatch(&config, &["poll"]).output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));

    let customer = sim.customer_ids()[0].clone();
    let victim = sim.profiles(&customer)[0]["profileId"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.apply(simulator::Command::RenameProfile {
        customer: customer.clone(),
        profile_id: victim.clone(),
        profile_name: "Renamed by the test".into(),
    })
    .unwrap();
    let second = scanwatch(&config, &["poll"]).output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));

    let kinds = query_pairs(
        &db,
        "SELECT kind || ':' || baseline, count(*) FROM profile_changes GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(
        kinds,
        vec![("added:1".to_owned(), 6), ("changed:0".to_owned(), 1)]
    );
    let changed = query_pairs(
        &db,
        "SELECT profile_id || ' ' || profile_name, poll_id FROM profile_changes WHERE kind = 'changed'",
    )
    .await;
    assert_eq!(changed[0].0, format!("{victim} Renamed by the test"));
    let polls = query_pairs(&db, "SELECT outcome, count(*) FROM polls GROUP BY 1").await;
    assert_eq!(polls, vec![("ok".to_owned(), 4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_poll_processes_at_once_record_each_change_exactly_once() {
    let sim = start_simulator(4, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let config = write_config(
        dir.path(),
        &scanwatch::cli::simulate::config_for(&sim, db.to_str().unwrap()),
    );
    // Create the schema first so both processes race on the polls, not on
    // the migration.
    let setup = scanwatch(&config, &["poll"]).output().unwrap();
    assert_eq!(setup.status.code(), Some(0), "{}", stderr(&setup));
    sim.apply(simulator::Command::Mutate { count: 12 }).unwrap();
    // Slow answers, so that both processes hold the same fetched lists
    // before either commits; the overlap is checked below, not assumed.
    sim.apply(simulator::Command::SetLatency {
        customer: None,
        latency_ms: 500,
        jitter_ms: None,
    })
    .unwrap();
    let first_round: i64 = query_pairs(&db, "SELECT 'max', max(poll_id) FROM polls").await[0].1;

    let a = scanwatch(&config, &["poll"]).spawn().unwrap();
    let b = scanwatch(&config, &["poll"]).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    assert_eq!(b.status.code(), Some(0), "{}", stderr(&b));
    // Each customer was polled by both, and its two polls ran at the same
    // time: the later one started before the earlier one committed.
    let overlapping = query_pairs(
        &db,
        &format!(
            "SELECT customer_id, count(*) FROM polls AS p WHERE poll_id > {first_round} \
             AND outcome = 'ok' AND EXISTS (SELECT 1 FROM polls AS q \
             WHERE q.customer_id = p.customer_id AND q.poll_id > {first_round} \
             AND q.poll_id <> p.poll_id AND q.started_at < p.finished_at \
             AND p.started_at < q.finished_at) GROUP BY customer_id"
        ),
    )
    .await;
    assert_eq!(overlapping.len(), 4, "{overlapping:?}");
    assert!(
        overlapping.iter().all(|(_, polls)| *polls == 2),
        "{overlapping:?}"
    );

    let doubled = query_pairs(
        &db,
        "SELECT profile_id || ' ' || kind, count(*) FROM profile_changes \
         WHERE baseline = 0 GROUP BY profile_id, kind, coalesce(profile_name, ''), \
         coalesce(scan_mode, -1) HAVING count(*) > 1",
    )
    .await;
    assert!(doubled.is_empty(), "changes recorded twice: {doubled:?}");
    // And every change the simulator made is there: the snapshot equals it.
    let mut expected: Vec<(String, i64)> = sim
        .customer_ids()
        .iter()
        .flat_map(|c| sim.profiles(c))
        .map(|p| {
            (
                p["profileId"].as_str().unwrap().to_owned(),
                p["scanMode"].as_i64().unwrap(),
            )
        })
        .collect();
    expected.sort();
    let stored = query_pairs(&db, "SELECT profile_id, scan_mode FROM profiles ORDER BY 1").await;
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_secret_nor_the_token_ever_reaches_the_logs() {
    let server = MockServer::start().await;
    mount_token(&server).await;
    // First a 401 (token refresh path), then a 403 (failure path).
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(LIST_PATH))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": "forbidden"})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &config_text(&server.uri(), dir.path(), ""));

    for format in ["json", "pretty"] {
        let output = scanwatch(&config, &["poll"])
            .env("RUST_LOG", "trace")
            .env("SCANWATCH__LOG__FORMAT", format)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let logs = stderr(&output);
        assert!(logs.contains("403"), "{logs}");
        assert!(!logs.contains(CLIENT_SECRET), "the secret leaked:\n{logs}");
        assert!(!logs.contains(TOKEN), "the token leaked:\n{logs}");
    }
    let errors: Vec<(String, i64)> = query_pairs(
        &dir.path().join("scanwatch.db"),
        "SELECT coalesce(error, '') || ' ' || customer_id, 1 FROM polls",
    )
    .await;
    for (error, _) in errors {
        assert!(!error.contains(CLIENT_SECRET) && !error.contains(TOKEN));
    }
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = scanwatch(&dir.path().join("absent.toml"), &["poll"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(
        text.contains("absent.toml") && text.contains("not found"),
        "{text}"
    );
    assert_eq!(text.trim().lines().count(), 1, "{text}");
}

#[test]
fn a_bad_value_is_one_line_naming_its_key_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        "https://graph.example.com",
        dir.path(),
        "timeout = \"soonish\"",
    )
    .replace("timeout = \"2s\"\n", "");
    let config = write_config(dir.path(), &text);
    let output = scanwatch(&config, &["poll"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(text.contains("api.timeout:"), "{text}");
}

#[test]
fn an_environment_override_is_validated_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &config_text("https://graph.example.com", dir.path(), ""),
    );
    let output = scanwatch(&config, &["poll"])
        .env("SCANWATCH__DETECTION__REMOVAL_CONFIRMATIONS", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("detection.removal_confirmations:"));
}

#[test]
fn an_unknown_key_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[schedule]\nintervall = \"5m\"\n",
        config_text("https://graph.example.com", dir.path(), "")
    );
    let config = write_config(dir.path(), &text);
    let output = scanwatch(&config, &["poll"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("intervall"), "{}", stderr(&output));
}

#[test]
fn a_customer_flag_outside_the_config_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &config_text("https://graph.example.com", dir.path(), ""),
    );
    for (value, expected) in [
        ("11111111-2222-3333-4444-555555555555", "not in the config"),
        ("../etc/passwd", "not a customer ID"),
    ] {
        let output = scanwatch(&config, &["poll", "--customer", value])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_database_lands_in_the_state_directory_under_systemd() {
    let sim = start_simulator(1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &scanwatch::cli::simulate::config_for(&sim, "relative.db"),
    );
    let output = scanwatch(&config, &["poll"])
        .env("STATE_DIRECTORY", state.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(state.path().join("relative.db").is_file());
    assert!(!dir.path().join("relative.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_database_is_next_to_the_config_without_systemd() {
    let sim = start_simulator(1, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &scanwatch::cli::simulate::config_for(&sim, "relative.db"),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let output = scanwatch(&config, &["poll"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(dir.path().join("relative.db").is_file());
    assert!(!elsewhere.path().join("relative.db").exists());
}

#[test]
fn a_damaged_database_stops_poll_with_restore_advice() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &config_text("https://graph.example.com", dir.path(), ""),
    );
    std::fs::write(dir.path().join("scanwatch.db"), vec![0x42; 4096]).unwrap();
    let output = scanwatch(&config, &["poll"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("damaged") && text.contains(".backup"),
        "{text}"
    );
}

#[test]
fn a_world_readable_config_with_an_inline_secret_draws_one_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text("https://graph.example.com", dir.path(), "timeout = \"x\"")
        .replace("timeout = \"2s\"\n", "");
    let config = write_config(dir.path(), &text);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = scanwatch(&config, &["poll"]).output().unwrap();
    let text = stderr(&output);
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("chmod 600")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(!text.contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_records_its_scripted_story_and_tells_it_the_same_way_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    // Overrides meant for the real service must not reach the demo: simulated
    // customers in the real, append-only history could never be taken out.
    let production = dir.path().join("production.db");
    let mut stories = Vec::new();
    for _ in 0..2 {
        let output = common::hermetic::scanwatch()
            .args(["demo", "--db"])
            .arg(&db)
            .env("SCANWATCH__STORAGE__DATABASE", &production)
            .env(
                "SCANWATCH__AUTH__CERTIFICATE_FILE",
                dir.path().join("app.pem"),
            )
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("sqlite3"), "{stdout}");
        // The script: 3 customers x 4 profiles seen first, then one new
        // profile, three edits (a rename, a mode switch, both at once) and two
        // deletions.
        let kinds = query_pairs(
            &db,
            "SELECT kind || ':' || baseline, count(*) FROM profile_changes GROUP BY 1 ORDER BY 1",
        )
        .await;
        assert_eq!(
            kinds,
            vec![
                ("added:0".to_owned(), 1),
                ("added:1".to_owned(), 12),
                ("changed:0".to_owned(), 3),
                ("removed:0".to_owned(), 2),
            ]
        );
        stories.push(
            query_pairs(
                &db,
                "SELECT profile_id || ' ' || kind || ' ' || coalesce(changed_fields, ''), change_id \
                 FROM profile_changes ORDER BY change_id",
            )
            .await,
        );
    }
    assert_eq!(stories[0], stories[1]);
    assert!(
        !production.exists(),
        "demo wrote to the overridden database"
    );
}
