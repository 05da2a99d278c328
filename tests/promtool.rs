//! The Prometheus and Grafana files in `deploy/`: the alert rules pass
//! `promtool check rules` and their own unit tests, the dashboard's queries
//! parse, and both query only metrics scanwatch exports.
//!
//! `promtool` comes with the Debian package `prometheus`. Without it the
//! promtool tests print why they skip; with `SCANWATCH_REQUIRE_PROMTOOL=1`
//! (as in CI) a missing `promtool` fails them instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use scanwatch::metrics::names::{self, Kind};
use serde_json::Value;

const RULES: &str = include_str!("../deploy/prometheus-rules.yml");
const DASHBOARD: &str = include_str!("../deploy/grafana-dashboard.json");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// `promtool`, or `None` after saying why the test skips.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let required = std::env::var("SCANWATCH_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "promtool is required (SCANWATCH_REQUIRE_PROMTOOL=1) but not on PATH; \
             install the Debian package prometheus"
        );
        println!("skipped: promtool not found on PATH (Debian package prometheus)");
    }
    found
}

/// Runs promtool in `deploy/` and returns its output, asserting success.
fn run(promtool: &Path, args: &[&str]) -> String {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(deploy())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_pass_promtool_check_rules() {
    let Some(promtool) = promtool() else { return };
    let output = run(&promtool, &["check", "rules", "prometheus-rules.yml"]);
    assert!(output.contains("SUCCESS: 5 rules found"), "{output}");
}

#[test]
fn the_alert_rules_fire_and_resolve_as_their_unit_tests_expect() {
    let Some(promtool) = promtool() else { return };
    let output = run(&promtool, &["test", "rules", "prometheus-rules.test.yml"]);
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn the_rules_alert_on_what_operators_asked_for_and_each_is_unit_tested() {
    let tests = std::fs::read_to_string(deploy().join("prometheus-rules.test.yml")).unwrap();
    for alert in [
        "ScanwatchDown",
        "ScanwatchAbsent",
        "ScanwatchCustomerNotPolled",
        "ScanwatchTokenRefreshFailing",
        "ScanwatchRemovalBurst",
    ] {
        assert!(
            RULES.contains(&format!("- alert: {alert}\n")),
            "{alert} is a rule"
        );
        let firing = tests
            .split("alertname: ")
            .skip(1)
            .filter(|test| test.starts_with(&format!("{alert}\n")))
            .any(|test| test.contains("exp_labels:"));
        assert!(firing, "{alert} has a test where it fires");
    }
}

/// Grafana variables replaced by values that make the queries plain PromQL.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$job", "scanwatch")
        .replace("$instance", ".*")
        .replace("$customer", ".*")
}

/// Every query of every panel.
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_dashboard_query_parses_as_promql() {
    let Some(promtool) = promtool() else { return };
    // promtool checks the PromQL of recording rules; each query becomes one.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_queries().iter().enumerate() {
        let expr = serde_json::to_string(&without_grafana_variables(expr)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, rules).unwrap();
    let output = run(&promtool, &["check", "rules", path.to_str().unwrap()]);
    let count = dashboard_queries().len();
    assert!(
        output.contains(&format!("SUCCESS: {count} rules found")),
        "{output}"
    );
}

/// The series names a metric is scraped under.
fn exported_series() -> BTreeSet<String> {
    let mut series = BTreeSet::new();
    for def in names::ALL {
        series.insert(def.name.to_owned());
        if def.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                series.insert(format!("{}{suffix}", def.name));
            }
        }
    }
    series
}

/// The `scanwatch_...` names a text mentions.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("scanwatch_") {
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[test]
fn the_rules_and_the_dashboard_query_only_metrics_scanwatch_exports() {
    let exported = exported_series();
    let queries = dashboard_queries().join("\n");
    for (file, text) in [("rules", RULES), ("dashboard", queries.as_str())] {
        let unknown: Vec<String> = mentioned(text)
            .into_iter()
            .filter(|name| !exported.contains(name))
            .collect();
        assert!(
            unknown.is_empty(),
            "the {file} query unknown metrics: {unknown:?}"
        );
    }
}

#[test]
fn the_dashboard_shows_every_metric_and_filters_by_job_and_instance() {
    let queries = dashboard_queries();
    let all = queries.join("\n");
    for def in names::ALL {
        assert!(all.contains(def.name), "no panel shows {}", def.name);
    }
    for expr in queries.iter().filter(|e| e.contains("scanwatch_")) {
        assert!(
            expr.contains("job=\"$job\", instance=~\"$instance\""),
            "not filtered by job and instance: {expr}"
        );
    }

    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    let ids: Vec<u64> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids are unique");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance", "customer"]);
}

#[test]
fn the_deploy_readme_lists_every_metric_with_its_type_and_labels() {
    let readme = std::fs::read_to_string(deploy().join("README.md")).unwrap();
    let mut listed = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `scanwatch_")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let name = cells[0].trim().trim_matches('`');
        let def = names::ALL
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} is listed but not exported"));
        let kind = match def.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert_eq!(cells[1].trim(), kind, "type of {name}");
        let labels: Vec<String> = cells[2]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(labels, def.labels, "labels of {name}");
        listed.insert(name.to_owned());
    }
    let exported: BTreeSet<String> = names::ALL.iter().map(|d| d.name.to_owned()).collect();
    assert_eq!(listed, exported);
}
