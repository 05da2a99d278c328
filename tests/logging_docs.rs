//! docs/logging.md cannot rot. Its event tables are checked two ways:
//!
//! - against the source: every `tracing` event under `src/` has a row with
//!   the same message, a level it lists and exactly its fields, and every
//!   row belongs to an event in the source;
//! - against a run: the daemon, `history` and `simulate` run against the
//!   embedded simulator with JSON logs while failures, retries, changes,
//!   reloads and a shutdown happen; every event they emit matches a row in
//!   message, level, fields and span, and every row marked covered is seen.

mod common_daemon;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common_daemon::*;
use scanwatch::simulator::{Command as SimCommand, Fault, FaultTarget, Simulator};
use serde_json::{json, Value};
use sqlx::Connection;

const DOC: &str = include_str!("../docs/logging.md");
const HEADER: &str = "| message | level | fields | span | covered | when |";
/// Keys of a JSON log line that are not the event's fields.
const NOT_FIELDS: [&str; 5] = ["timestamp", "level", "message", "target", "span"];

/// One row of the event tables.
#[derive(Debug)]
struct Row {
    message: String,
    levels: Vec<String>,
    /// Field name, and whether it is always present.
    fields: BTreeMap<String, bool>,
    span: String,
    covered: bool,
}

impl Row {
    fn names(&self) -> BTreeSet<String> {
        self.fields.keys().cloned().collect()
    }

    /// Whether a logged message is this row's, `{...}` standing for any text.
    fn matches(&self, message: &str) -> bool {
        let parts: Vec<&str> = placeholder_split(&self.message);
        if parts.len() == 1 {
            return message == parts[0];
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if !message.starts_with(first) || !message.ends_with(last) {
            return false;
        }
        let mut rest = &message[first.len()..message.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The literal pieces around `{...}` placeholders.
fn placeholder_split(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        parts.push(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    parts.push(rest);
    parts
}

/// A message with every placeholder written `{}`, for comparing a row with
/// the format string in the source.
fn canonical(text: &str) -> String {
    placeholder_split(text).join("{}")
}

fn unquote(cell: &str) -> String {
    let cell = cell.trim();
    let inner = match cell.strip_prefix("``") {
        Some(rest) => rest.strip_suffix("``").unwrap_or(rest).trim(),
        None => cell.trim_matches('`'),
    };
    inner.to_owned()
}

fn documented() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in DOC.lines() {
        if line == HEADER {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 6, "a row of six cells: {line}");
        let fields = cells[2]
            .split(',')
            .map(unquote)
            .filter(|f| !f.is_empty() && f != "—")
            .map(|f| match f.strip_suffix('?') {
                Some(name) => (name.to_owned(), false),
                None => (f, true),
            })
            .collect();
        let covered = unquote(cells[4]);
        assert!(
            covered == "yes" || covered.starts_with("no: "),
            "covered is yes or no with a reason: {line}"
        );
        rows.push(Row {
            message: unquote(cells[0]),
            levels: cells[1].split(',').map(|l| l.trim().to_owned()).collect(),
            fields,
            span: unquote(cells[3]),
            covered: covered == "yes",
        });
    }
    rows
}

/// A `tracing` event as written in the source.
#[derive(Debug)]
struct SourceEvent {
    at: String,
    /// `None` for `event!($level, ...)`, whose level is chosen at run time.
    level: Option<String>,
    message: String,
    fields: BTreeSet<String>,
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                rust_files(&path, files);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            files.push(path);
        }
    }
}

/// Every source file under `src/`, without its unit tests.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests {") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            let name = path.strip_prefix(root).unwrap().display().to_string();
            (name, text)
        })
        .collect()
}

/// The value of the Rust string literal that starts at `text[0]`, and its
/// length in the source.
fn string_literal(text: &str) -> (String, usize) {
    let mut value = String::new();
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, i + 1),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('\n') => {
                    while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                        chars.next();
                    }
                }
                Some(other) => value.push(other),
                None => break,
            },
            c => value.push(c),
        }
    }
    panic!(
        "unterminated string literal: {}",
        &text[..text.len().min(80)]
    );
}

/// The arguments of a macro call, from just after its `(`, split at
/// top-level commas.
fn macro_arguments(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut i = 0;
    while let Some(c) = text[i..].chars().next() {
        match c {
            '"' => {
                let (_, length) = string_literal(&text[i..]);
                current.push_str(&text[i..i + length]);
                i += length;
                continue;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => {
                args.push(current.trim().to_owned());
                return args.into_iter().filter(|a| !a.is_empty()).collect();
            }
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                args.push(std::mem::take(&mut current).trim().to_owned());
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += c.len_utf8();
    }
    panic!("unbalanced macro call");
}

fn source_events() -> Vec<SourceEvent> {
    let mut events = Vec::new();
    for (file, text) in sources() {
        for (start, _) in text.match_indices("tracing::") {
            let rest = &text[start + "tracing::".len()..];
            let Some(bang) = rest.find("!(") else {
                continue;
            };
            let name = &rest[..bang];
            if !["trace", "debug", "info", "warn", "error", "event"].contains(&name) {
                continue;
            }
            let line = text[..start].lines().count();
            let mut args = macro_arguments(&rest[bang + 2..]).into_iter();
            let level = match name {
                "event" => {
                    let level = args.next().unwrap();
                    level
                        .strip_prefix("tracing::Level::")
                        .map(str::to_lowercase)
                }
                other => Some(other.to_owned()),
            };
            let mut fields = BTreeSet::new();
            let mut message = None;
            for arg in args {
                if arg.starts_with('"') {
                    message = Some(string_literal(&arg).0);
                    break;
                }
                let arg = arg.trim_start_matches(['%', '?']);
                let name = arg.split('=').next().unwrap().trim();
                fields.insert(name.to_owned());
            }
            events.push(SourceEvent {
                at: format!("{file}:{line}"),
                level,
                message: message.unwrap_or_else(|| panic!("{file}:{line} has no message")),
                fields,
            });
        }
    }
    events
}

/// Every string literal in the source, as canonical messages.
fn source_literals() -> BTreeSet<String> {
    let mut literals = BTreeSet::new();
    for (_, text) in sources() {
        let mut i = 0;
        while let Some(at) = text[i..].find('"') {
            let start = i + at;
            // A quote inside a char literal ('"') starts no string.
            if text[..start].ends_with('\'') {
                i = start + 1;
                continue;
            }
            let (value, length) = string_literal(&text[start..]);
            literals.insert(canonical(&value));
            i = start + length;
        }
    }
    literals
}

#[test]
fn every_event_in_the_source_is_documented_with_its_level_and_fields() {
    let rows = documented();
    let events = source_events();
    assert!(events.len() >= 30, "found {} events", events.len());
    let mut matched = vec![false; rows.len()];

    let (dynamic, fixed): (Vec<&SourceEvent>, Vec<&SourceEvent>) =
        events.iter().partition(|e| canonical(&e.message) == "{}");
    for event in fixed {
        let found: Vec<usize> = (0..rows.len())
            .filter(|&i| canonical(&rows[i].message) == canonical(&event.message))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: {:?} is documented once",
            event.at,
            event.message
        );
        let row = &rows[found[0]];
        matched[found[0]] = true;
        if let Some(level) = &event.level {
            assert!(row.levels.contains(level), "{}: level {level}", event.at);
        }
        assert_eq!(row.names(), event.fields, "{}: fields", event.at);
    }

    // An event whose whole message is a variable (a config warning) is
    // documented by rows with its fields whose text is a literal in the source.
    let literals = source_literals();
    for event in dynamic {
        let found: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].names() == event.fields)
            .filter(|&i| literals.contains(&canonical(&rows[i].message)))
            .filter(|&i| {
                !events
                    .iter()
                    .any(|e| canonical(&e.message) == canonical(&rows[i].message))
            })
            .collect();
        assert!(
            !found.is_empty(),
            "{}: the messages it logs are documented",
            event.at
        );
        for i in found {
            matched[i] = true;
        }
    }

    let ghosts: Vec<&str> = rows
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(r, _)| r.message.as_str())
        .collect();
    assert!(
        ghosts.is_empty(),
        "documented but not in the source: {ghosts:?}"
    );
}

/// Events of scanwatch itself from one log.
fn scanwatch_events(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| {
            e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("scanwatch"))
        })
        .collect()
}

fn inject(sim: &Simulator, customer: Option<&str>, target: FaultTarget, fault: Fault, count: u32) {
    sim.apply(SimCommand::InjectFault {
        customer: customer.map(str::to_owned),
        target,
        fault,
        count: Some(count),
        probability: None,
        seed: None,
        after: None,
    })
    .unwrap();
}

fn set_latency(sim: &Simulator, customer: Option<&str>, latency_ms: u64) {
    // Built from JSON, as the control endpoint takes it, so that fields
    // added to the command later keep their defaults here.
    let command = json!({"op": "set_latency", "customer": customer, "latency_ms": latency_ms});
    sim.apply(serde_json::from_value(command).unwrap()).unwrap();
}

/// Writes a config that group and others may read: with its inline secret,
/// scanwatch warns about it.
fn write_readable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

async fn until_logged(daemon: &mut Daemon, message: &str, times: usize) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while daemon.log_lines(message).len() < times {
        assert!(
            daemon.running(),
            "exited before {message:?}:\n{}",
            daemon.log()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{message:?} not logged {times} times:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the daemon through everything the covered rows name, then
/// `history` and `simulate`, and returns every event they logged.
async fn events_of_a_busy_run() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(3).await;
    let ids = sim.customer_ids();
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let schedule =
        "interval = \"1s\"\njitter = \"0s\"\nshutdown_grace = \"1s\"\nalert_after_failures = 2";
    let extra = Extra {
        schedule,
        api: "timeout = \"5s\"\nretries = 1",
        storage: "busy_timeout = \"100ms\"",
        level: "info,scanwatch=debug",
        metrics: true,
        ..Extra::default()
    };
    let config_path = dir.path().join("scanwatch.toml");
    write_readable(&config_path, &config(&sim, &db, &ids, &extra));
    let mut daemon = Daemon::start_with(
        dir.path(),
        config_path.clone(),
        &[("NOTIFY_SOCKET", "/nonexistent/notify.sock")],
    );
    for id in &ids {
        until("a first poll of each customer", || async {
            polls(&db, id, "ok").await >= 1
        })
        .await;
    }

    // Changes at A, one of them moving modifiedTime backwards.
    let served = sim.profiles(a);
    let profile_id = |i: usize| served[i]["profileId"].as_str().unwrap().to_owned();
    sim.apply(SimCommand::AddProfile {
        customer: a.to_owned(),
        profile_name: Some("Nightly".to_owned()),
        scan_mode: None,
    })
    .unwrap();
    sim.apply(SimCommand::RenameProfile {
        customer: a.to_owned(),
        profile_id: profile_id(0),
        profile_name: "Renamed".to_owned(),
    })
    .unwrap();
    sim.apply(SimCommand::DeleteProfile {
        customer: a.to_owned(),
        profile_id: profile_id(1),
    })
    .unwrap();
    sim.apply(SimCommand::SetProfileField {
        customer: a.to_owned(),
        profile_id: profile_id(2),
        field: "modifiedTime".to_owned(),
        value: json!("2001-01-01T00:00:00Z"),
    })
    .unwrap();
    let changes = "SELECT COUNT(*) FROM profile_changes WHERE customer_id = ? AND baseline = 0";
    until("A's four changes", || async {
        count(&db, changes, a).await == 4
    })
    .await;

    // A's list with a profile twice, then an empty one.
    let mut doubled = sim.profiles(a);
    doubled.push(doubled[0].clone());
    let body = Value::Array(doubled).to_string();
    let raw = |body: String| Fault::Raw {
        body,
        status: None,
        content_type: None,
    };
    inject(&sim, Some(a), FaultTarget::List, raw(body), 1);
    until_logged(&mut daemon, "duplicate profile merged", 1).await;
    inject(&sim, Some(a), FaultTarget::List, raw("[]".to_owned()), 1);
    until_logged(&mut daemon, "empty list held until confirmed", 1).await;

    // B fails twice in a row (each time after a retry), then recovers.
    let status = |status| Fault::Status {
        status,
        retry_after: None,
        body: None,
    };
    inject(&sim, Some(b), FaultTarget::List, status(500), 4);
    until_logged(&mut daemon, "customer recovered after repeated failures", 1).await;

    // Revoked tokens: a 401, a refresh that fails after a retry, then one
    // that works.
    let issued = daemon.log_lines("token issued").len();
    inject(&sim, None, FaultTarget::Token, status(503), 2);
    sim.apply(SimCommand::RevokeTokens).unwrap();
    until_logged(&mut daemon, "token request failed, retrying", 1).await;
    until_logged(&mut daemon, "token issued", issued + 1).await;

    // C's responses take longer than the interval.
    set_latency(&sim, Some(c), 1_500);
    until_logged(
        &mut daemon,
        "poll ran past its next slot; the next one starts now",
        1,
    )
    .await;
    set_latency(&sim, Some(c), 0);

    // Another writer holds the database.
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    until_logged(
        &mut daemon,
        "poll not recorded; the database refused the write",
        1,
    )
    .await;
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();

    // A reload that drops C and changes a restart-only setting, then one
    // that does not validate.
    let restart_only = Extra {
        schedule: "interval = \"1s\"\njitter = \"0s\"\nshutdown_grace = \"1s\"\n\
                   alert_after_failures = 3",
        ..extra.clone()
    };
    write_readable(&config_path, &config(&sim, &db, &ids[..2], &restart_only));
    daemon.signal(libc::SIGHUP);
    until_logged(
        &mut daemon,
        "customer left the schedule; its history stays",
        1,
    )
    .await;
    let invalid = Extra {
        schedule: "interval = \"soon\"",
        ..extra.clone()
    };
    write_readable(&config_path, &config(&sim, &db, &ids, &invalid));
    daemon.signal(libc::SIGHUP);
    until_logged(
        &mut daemon,
        "configuration reload failed; the previous configuration stays",
        1,
    )
    .await;

    // Stop while A's and B's requests are held: both polls are abandoned.
    let arrived = sim.counters().api_requests;
    set_latency(&sim, None, 30_000);
    until("A's and B's requests held", || async {
        sim.counters().api_requests >= arrived + 2
    })
    .await;
    daemon.stop().await;
    let mut events = scanwatch_events(&daemon.log());

    // A restart with a short retention prunes the polls no change needs.
    set_latency(&sim, None, 0);
    let pruning = Extra {
        storage: "busy_timeout = \"100ms\"\npoll_retention = \"1ms\"",
        ..extra.clone()
    };
    let second = dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let config_path = second.join("scanwatch.toml");
    write_private(&config_path, &config(&sim, &db, &ids[..1], &pruning));
    let mut daemon = Daemon::start_with(&second, config_path.clone(), &[]);
    until_logged(&mut daemon, "old polls pruned", 1).await;
    daemon.stop().await;
    events.extend(scanwatch_events(&daemon.log()));

    // `history`, with the first (readable) config.
    let first_config = dir.path().join("scanwatch.toml");
    let output = common_daemon::hermetic::scanwatch()
        .args(["history", "--format", "ndjson", "--config"])
        .arg(&first_config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    events.extend(scanwatch_events(&String::from_utf8_lossy(&output.stderr)));

    events.extend(simulate_events(dir.path()).await);
    events
}

/// `scanwatch simulate` until it says it serves, then Ctrl-C.
async fn simulate_events(dir: &Path) -> Vec<Value> {
    let stderr = dir.join("simulate.log");
    let mut child = common_daemon::hermetic::scanwatch()
        .args(["simulate", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "scanwatch=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&stderr).unwrap_or_default();
    until("simulate serves", || async {
        read().contains("simulator serving")
    })
    .await;
    // SAFETY: kill(2) with our own child's pid and a valid signal number.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    scanwatch_events(&read())
}

#[tokio::test]
async fn the_events_of_a_busy_run_match_the_documented_messages_levels_fields_and_spans() {
    let rows = documented();
    let events = events_of_a_busy_run().await;
    let mut seen = vec![0usize; rows.len()];

    for event in &events {
        let message = event["message"].as_str().unwrap();
        let found: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].matches(message))
            .collect();
        assert_eq!(found.len(), 1, "{message:?} is documented once: {event}");
        let row = &rows[found[0]];
        seen[found[0]] += 1;

        let level = event["level"].as_str().unwrap().to_lowercase();
        assert!(row.levels.contains(&level), "level of {event}");
        let fields: BTreeSet<String> = event
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !NOT_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        let required: BTreeSet<String> = row
            .fields
            .iter()
            .filter(|(_, always)| **always)
            .map(|(name, _)| name.clone())
            .collect();
        assert!(
            required.is_subset(&fields) && fields.is_subset(&row.names()),
            "fields of {event}: documented {:?}",
            row.fields
        );
        match row.span.as_str() {
            "poll" => {
                let span = &event["span"];
                assert_eq!(span["name"], "poll", "in a poll: {event}");
                assert!(span["customer_id"].is_string(), "{event}");
                assert!(span["customer"].is_string(), "{event}");
            }
            "—" => assert!(event.get("span").is_none(), "outside any span: {event}"),
            "any" => {}
            other => panic!("unknown span {other:?}"),
        }
    }

    let missing: Vec<&str> = rows
        .iter()
        .zip(&seen)
        .filter(|(row, n)| row.covered && **n == 0)
        .map(|(row, _)| row.message.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "documented as covered but not seen: {missing:?}"
    );
    let covered = seen.iter().filter(|n| **n > 0).count();
    println!(
        "{covered} of {} documented events seen in the run ({} lines)",
        rows.len(),
        events.len()
    );
    assert!(covered >= 30, "{covered} events seen");
}
