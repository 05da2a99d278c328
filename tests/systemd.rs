//! The files in `deploy/`, checked with systemd's own tools: the unit's
//! exposure score, `systemd-analyze verify`, the sysusers.d file, and the
//! example config.
//!
//! Where a tool is missing the test says so and passes, except when
//! `SCANWATCH_REQUIRE_SYSTEMD_ANALYZE` is set (CI sets it after installing
//! the `systemd` package), where a missing tool fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest exposure score the shipped unit may have.
const MAX_EXPOSURE: f64 = 1.5;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// Runs a systemd tool, or returns `None` (after saying why) when it is
/// missing and that is allowed here.
fn tool(program: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(output) => Some(output),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let required = std::env::var_os("SCANWATCH_REQUIRE_SYSTEMD_ANALYZE")
                .is_some_and(|v| !v.is_empty() && v != "0");
            assert!(
                !required,
                "{program} is missing but SCANWATCH_REQUIRE_SYSTEMD_ANALYZE is set; \
                 install the systemd package"
            );
            println!("skipped: {program} is not installed (apt-get install systemd)");
            None
        }
        Err(error) => panic!("cannot run {program}: {error}"),
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Reads "Overall exposure level for scanwatch.service: 1.1 OK".
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))?;
    let after = line.rsplit_once(": ")?.1;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_unit_scores_at_most_1_5_in_systemd_analyze_security() {
    let unit = deploy("scanwatch.service");
    let Some(output) = tool(
        "systemd-analyze",
        &["security", "--offline=true", unit.to_str().unwrap()],
    ) else {
        return;
    };
    let report = text(&output);
    let score = exposure(&report).unwrap_or_else(|| panic!("no score in:\n{report}"));
    println!("exposure level of deploy/scanwatch.service: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn the_unit_passes_systemd_analyze_verify_with_the_built_binary() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(deploy("scanwatch.service")).unwrap();
    let shipped = "ExecStart=/usr/local/bin/scanwatch ";
    assert!(unit.contains(shipped), "the unit runs {shipped}");
    let built = format!("ExecStart={} ", env!("CARGO_BIN_EXE_scanwatch"));
    let copy = dir.path().join("scanwatch.service");
    std::fs::write(&copy, unit.replace(shipped, &built)).unwrap();

    let Some(output) = tool("systemd-analyze", &["verify", copy.to_str().unwrap()]) else {
        return;
    };
    assert!(output.status.success(), "verify failed:\n{}", text(&output));
    let complaints = text(&output);
    assert!(
        !complaints.contains("scanwatch.service:"),
        "verify complained about the unit:\n{complaints}"
    );
}

#[test]
fn the_unit_declares_what_the_design_promises() {
    let unit = std::fs::read_to_string(deploy("scanwatch.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for wanted in [
        "Type=notify",
        "User=scanwatch",
        "Group=scanwatch",
        "StateDirectory=scanwatch",
        "StateDirectoryMode=0750",
        "UMask=0027",
        "ConfigurationDirectory=scanwatch",
        "LoadCredential=client_secret:/etc/scanwatch/client_secret",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(lines.contains(&wanted), "the unit lacks {wanted}");
    }
    assert!(
        lines.iter().any(|l| l.starts_with("WatchdogSec=")),
        "the unit sets WatchdogSec"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("#LoadCredential=certificate")),
        "a commented variant shows certificate files"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("DynamicUser=yes")),
        "a static user, so that its group can read the database"
    );
}

#[test]
fn the_sysusers_file_creates_the_scanwatch_user_and_group() {
    let root = tempfile::tempdir().unwrap();
    let file = deploy("scanwatch.sysusers");
    let root_arg = format!("--root={}", root.path().display());
    let Some(output) = tool(
        "systemd-sysusers",
        &["--dry-run", &root_arg, file.to_str().unwrap()],
    ) else {
        return;
    };
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("Creating group 'scanwatch'"), "{report}");
    assert!(report.contains("Creating user 'scanwatch'"), "{report}");
}

/// deploy/scanwatch.toml as the service would read it, less the environment
/// this test runs in.
fn example_config() -> scanwatch::config::ConfigFile {
    let path = deploy("scanwatch.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    scanwatch::config::ConfigFile::from_toml_ignoring_environment(&path, &text).unwrap()
}

#[test]
fn the_example_config_is_valid_and_keeps_the_database_in_the_state_directory() {
    let path = deploy("scanwatch.toml");
    let file = example_config();

    // Everything but [auth], whose secret only systemd's credential provides.
    let storage = file.storage().unwrap();
    assert_eq!(
        storage.database,
        Path::new("/var/lib/scanwatch/scanwatch.db"),
        "absolute, so admins' commands find the service's database"
    );
    let schedule = file.schedule().unwrap();
    assert!(schedule.shutdown_grace < std::time::Duration::from_secs(30));
    file.api().unwrap();
    file.detection().unwrap();
    file.log().unwrap();
    assert!(!file.customers().unwrap().is_empty());
    assert!(file.warnings().is_empty(), "{:?}", file.warnings());

    let text = std::fs::read_to_string(&path).unwrap();
    let secret_keys = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| l.contains("client_secret") || l.contains("password"))
        .count();
    assert_eq!(secret_keys, 0, "the example names no secret");
}

#[test]
fn the_shutdown_grace_fits_in_the_units_stop_timeout() {
    let unit = std::fs::read_to_string(deploy("scanwatch.service")).unwrap();
    let timeout = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
        .expect("the unit sets TimeoutStopSec");
    let timeout = humantime::parse_duration(timeout).unwrap();
    let file = example_config();
    let grace = file.schedule().unwrap().shutdown_grace;
    assert!(
        grace * 2 <= timeout,
        "grace {grace:?} leaves too little of TimeoutStopSec {timeout:?}"
    );
}
