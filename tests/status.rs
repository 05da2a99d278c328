//! `scanwatch status` end to end: one row per customer configured or in the
//! database, and the exit code monitoring scripts rely on.

mod common_history;

use common_history::*;
use scanwatch::history::status::{CustomerStatus, LastPoll};
use scanwatch::simulator::Command as SimCommand;

fn statuses(s: &Seeded) -> (Option<i32>, Vec<CustomerStatus>) {
    let output = s.run(&["status", "--format", "json"]);
    let rows = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    (output.status.code(), rows)
}

fn find<'a>(rows: &'a [CustomerStatus], id: &str) -> &'a CustomerStatus {
    rows.iter().find(|r| r.customer_id == id).unwrap()
}

/// A config without Northwind, whose polls always fail.
fn write_config_without_northwind(s: &Seeded) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    let without = text.replace(
        &format!("[[customers]]\nid = \"{NORTHWIND}\"\nname = \"Northwind\"\n"),
        "",
    );
    assert_ne!(text, without);
    std::fs::write(&s.config, without).unwrap();
}

#[tokio::test]
async fn every_configured_or_recorded_customer_has_one_row_marked_which() {
    let s = Seeded::new().await;
    let (_, rows) = statuses(&s);
    let ids: Vec<&str> = rows.iter().map(|r| r.customer_id.as_str()).collect();
    assert_eq!(
        ids,
        [&s.contoso, &s.fabrikam, NORTHWIND, TAILSPIN, &s.litware]
    );

    let contoso = find(&rows, &s.contoso);
    assert!(contoso.configured);
    assert_eq!(contoso.name.as_deref(), Some("Contoso"));
    assert_eq!(contoso.last_poll, LastPoll::Ok);
    // Three seeded, one removed, one added.
    assert_eq!(contoso.profiles, 3);
    let last_change = s
        .scalar(&format!(
            "SELECT max(detected_at) FROM profile_changes WHERE customer_id = '{}'",
            s.contoso
        ))
        .await;
    assert_eq!(
        contoso.last_change_at.as_deref(),
        Some(last_change.as_str())
    );

    let litware = find(&rows, &s.litware);
    assert!(!litware.configured);
    assert_eq!(litware.name.as_deref(), Some("Litware"));
    assert_eq!(litware.profiles, 3);

    let tailspin = find(&rows, TAILSPIN);
    assert!(tailspin.configured);
    assert_eq!(tailspin.last_poll, LastPoll::Never);
    assert_eq!(tailspin.last_polled_at, None);
    assert_eq!(tailspin.profiles, 0);
}

#[tokio::test]
async fn a_failing_configured_customer_makes_the_exit_code_1_and_keeps_its_whole_error() {
    let s = Seeded::new().await;
    let (code, rows) = statuses(&s);
    assert_eq!(code, Some(1));
    let northwind = find(&rows, NORTHWIND);
    assert_eq!(northwind.last_poll, LastPoll::Failed);
    assert_eq!(northwind.consecutive_failures, 2);
    assert_eq!(northwind.last_success_at, None);
    let stored = s
        .scalar(&format!(
            "SELECT last_error FROM customers WHERE customer_id = '{NORTHWIND}'"
        ))
        .await;
    assert_eq!(northwind.last_error.as_deref(), Some(stored.as_str()));

    let table = s.run(&["status"]);
    assert_eq!(table.status.code(), Some(1));
    assert!(stderr(&table).contains("Northwind"), "{}", stderr(&table));
    let line = stdout(&table)
        .lines()
        .find(|l| l.starts_with("Northwind"))
        .unwrap()
        .to_owned();
    assert!(line.contains("  failed  "), "{line}");
    if stored.chars().count() > 60 {
        assert!(line.ends_with("..."), "{line}");
        assert!(!line.contains(&stored));
    }
}

#[tokio::test]
async fn never_polled_and_unconfigured_failures_leave_the_exit_code_0() {
    let s = Seeded::new().await;
    write_config_without_northwind(&s);
    let (code, rows) = statuses(&s);
    assert_eq!(code, Some(0));
    // Northwind is still listed from the database, failing but not configured.
    let northwind = find(&rows, NORTHWIND);
    assert!(!northwind.configured);
    assert_eq!(northwind.last_poll, LastPoll::Failed);
    assert_eq!(find(&rows, TAILSPIN).last_poll, LastPoll::Never);
}

#[tokio::test]
async fn a_customer_whose_poll_fails_then_recovers_moves_the_exit_code_1_then_0() {
    let s = Seeded::new().await;
    write_config_without_northwind(&s);
    assert_eq!(statuses(&s).0, Some(0));

    // A profile name of the wrong type fails the poll.
    let profile_id = s.sim.profiles(&s.fabrikam)[1]["profileId"]
        .as_str()
        .unwrap()
        .to_owned();
    let set_name = |value: serde_json::Value| SimCommand::SetProfileField {
        customer: s.fabrikam.clone(),
        profile_id: profile_id.clone(),
        field: "profileName".to_owned(),
        value,
    };
    s.sim.apply(set_name(serde_json::json!(42))).unwrap();
    assert!(!s.poll(&s.fabrikam).await.succeeded());
    let (code, rows) = statuses(&s);
    assert_eq!(code, Some(1));
    let fabrikam = find(&rows, &s.fabrikam);
    assert_eq!(fabrikam.last_poll, LastPoll::Failed);
    assert!(fabrikam
        .last_error
        .as_deref()
        .unwrap()
        .contains("profileName"));
    assert!(fabrikam.last_success_at.is_some());

    s.sim.apply(set_name(serde_json::json!("Fixed"))).unwrap();
    assert!(s.poll(&s.fabrikam).await.succeeded());
    let (code, rows) = statuses(&s);
    assert_eq!(code, Some(0));
    let fabrikam = find(&rows, &s.fabrikam);
    assert_eq!(fabrikam.last_poll, LastPoll::Ok);
    assert_eq!(fabrikam.consecutive_failures, 0);
    assert_eq!(fabrikam.last_error, None);
}

#[tokio::test]
async fn the_table_has_one_fixed_width_row_per_customer() {
    let s = Seeded::new().await;
    let output = s.run(&["status", "--format", "table"]);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    let header = lines[0];
    assert!(header.starts_with("NAME "), "{header}");
    let column = header.find("CUSTOMER ID").unwrap();
    let outcome = header.find("OUTCOME").unwrap();
    for (line, name, id, result) in [
        (lines[1], "Contoso", s.contoso.as_str(), "ok"),
        (lines[4], "Tailspin", TAILSPIN, "never"),
        (lines[5], "Litware", s.litware.as_str(), "ok"),
    ] {
        assert!(line.starts_with(name), "{line}");
        assert_eq!(&line[column..column + 36], id, "{line}");
        assert!(line[outcome..].starts_with(result), "{line}");
    }
    assert!(lines[4].contains("never"), "{}", lines[4]);
    assert!(lines[5].contains("  no  "), "{}", lines[5]);
}
