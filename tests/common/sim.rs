//! The reliability tests' shared ground: a poller pointed at the embedded
//! simulator over loopback, the rows of `polls`, `profiles` and
//! `profile_changes` as plain values, and the history invariants that need
//! no oracle (replaying the change log gives the snapshot, kinds come in a
//! valid order, every change belongs to a successful poll that could have
//! produced it).

use std::collections::BTreeMap;
use std::time::Duration;

use scanwatch::api::ApiClient;
use scanwatch::config::Settings;
use scanwatch::customer::Customer;
use scanwatch::poller::{PollOutcome, PollReport, Poller};
use scanwatch::simulator::{Command, Fault, FaultTarget, SimConfig, Simulator};
use scanwatch::store::Store;
use serde_json::Value;
use sqlx::SqlitePool;

/// What a [`SimHarness`] starts with.
#[derive(Debug, Clone)]
pub struct SimSetup {
    /// Profiles the one simulated customer starts with.
    pub profiles: usize,
    pub timeout: &'static str,
    pub retries: u32,
    /// More lines for `[api]`.
    pub api: &'static str,
    /// More lines for `[storage]`.
    pub storage: &'static str,
    /// Lines for `[detection]`.
    pub detection: &'static str,
    /// Lines for `[schedule]`, for `scanwatch run`.
    pub schedule: &'static str,
}

impl Default for SimSetup {
    fn default() -> Self {
        SimSetup {
            profiles: 5,
            timeout: "2s",
            retries: 2,
            api: "",
            storage: "",
            detection: "",
            schedule: "",
        }
    }
}

/// Config text for the simulator `sim`, with the database in `dir`.
pub fn sim_config_text(sim: &Simulator, dir: &std::path::Path, setup: &SimSetup) -> String {
    let config = sim.config();
    let mut text = format!(
        r#"
[api]
base_url = "{base}"
token_url = "{token}"
scope = "{scope}"
timeout = "{timeout}"
retries = {retries}
max_requests_per_second = 0
{api}

[auth]
client_id = "{client_id}"
client_secret = "{secret}"

[storage]
database = "{db}"
{storage}

[detection]
{detection}

[schedule]
{schedule}
"#,
        base = sim.base_url(),
        token = sim.token_url(),
        scope = config.scope,
        timeout = setup.timeout,
        retries = setup.retries,
        api = setup.api,
        client_id = config.client_id,
        secret = config.client_secret,
        db = dir.join("scanwatch.db").display(),
        storage = setup.storage,
        detection = setup.detection,
        schedule = setup.schedule,
    );
    for (i, id) in sim.customer_ids().iter().enumerate() {
        text.push_str(&format!(
            "\n[[customers]]\nid = \"{id}\"\nname = \"Customer {}\"\n",
            i + 1
        ));
    }
    text
}

/// One simulated customer, a store in a temp folder, and a poller between.
pub struct SimHarness {
    pub dir: tempfile::TempDir,
    pub sim: Simulator,
    pub settings: Settings,
    pub poller: Poller,
    pub customer: Customer,
}

impl SimHarness {
    pub async fn start(setup: SimSetup) -> SimHarness {
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                customers: 1,
                profiles: setup.profiles,
                seed: 7,
                ..SimConfig::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = sim_config_text(&sim, dir.path(), &setup);
        let settings = super::settings(&text, dir.path());
        let store = Store::open(&settings.storage).await.unwrap();
        let poller = poller_for(&settings, &settings.api.base_url, store);
        SimHarness {
            dir,
            sim,
            customer: settings.customers[0].clone(),
            settings,
            poller,
        }
    }

    pub fn customer_id(&self) -> &str {
        self.customer.id.as_str()
    }

    pub async fn poll(&self) -> PollReport {
        self.poller.poll(&self.customer).await
    }

    pub fn pool(&self) -> &SqlitePool {
        self.poller.store().pool()
    }

    /// Applies a simulator command and returns its answer.
    pub fn apply(&self, command: Command) -> Value {
        self.sim.apply(command).unwrap()
    }

    /// Arms `fault` for the next `count` requests to `target` (this
    /// customer's list, or the token endpoint).
    pub fn inject(&self, target: FaultTarget, fault: Fault, count: u32) {
        self.inject_after(target, fault, count, 0);
    }

    /// As [`Self::inject`], after letting `after` matching requests through.
    pub fn inject_after(&self, target: FaultTarget, fault: Fault, count: u32, after: u32) {
        let customer = (target == FaultTarget::List).then(|| self.customer_id().to_owned());
        self.apply(Command::InjectFault {
            customer,
            target,
            fault,
            count: Some(count),
            probability: None,
            seed: None,
            after: Some(after),
        });
    }

    /// The list the simulator serves this customer right now.
    pub fn served(&self) -> Vec<Value> {
        self.sim.profiles(self.customer_id())
    }

    /// Replaces the API client with a new one, whose token cache is empty,
    /// so the next poll asks the token endpoint again.
    pub fn fresh_client(&mut self) {
        self.poller = poller_for(
            &self.settings,
            &self.settings.api.base_url,
            self.poller.store().clone(),
        );
    }

    /// A poller on the same store whose API calls go to `base_url` while its
    /// tokens still come from the simulator.
    pub fn poller_with_api_at(&self, base_url: &str) -> Poller {
        poller_for(
            &self.settings,
            &base_url.parse().unwrap(),
            self.poller.store().clone(),
        )
    }
}

fn poller_for(settings: &Settings, base_url: &url::Url, store: Store) -> Poller {
    let mut api = settings.api.clone();
    api.base_url = base_url.clone();
    let client = ApiClient::new(&api, &settings.auth).unwrap();
    Poller::new(client, store, settings.detection.clone(), 5)
}

/// `(profiles, added, changed, removed)` of a successful poll.
pub fn ok_counts(report: &PollReport) -> (usize, usize, usize, usize) {
    match &report.outcome {
        PollOutcome::Ok {
            profiles,
            added,
            changed,
            removed,
            ..
        } => (*profiles, *added, *changed, *removed),
        other => panic!("expected a successful poll, got {other:?}"),
    }
}

/// `(http_status, error)` of a failed poll.
pub fn failure(report: &PollReport) -> (Option<u16>, String) {
    match &report.outcome {
        PollOutcome::Failed { http_status, error } => (*http_status, error.clone()),
        other => panic!("expected a failed poll, got {other:?}"),
    }
}

/// A `polls` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRow {
    pub poll_id: i64,
    pub customer_id: String,
    pub finished_at: String,
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub profiles: Option<i64>,
    pub added: i64,
    pub changed: i64,
    pub removed: i64,
}

impl PollRow {
    /// `(outcome, http_status, profiles, added, changed, removed)`: what a
    /// test usually pins exactly; the error text is checked apart.
    pub fn summary(&self) -> (&str, Option<i64>, Option<i64>, i64, i64, i64) {
        (
            self.outcome.as_str(),
            self.http_status,
            self.profiles,
            self.added,
            self.changed,
            self.removed,
        )
    }
}

pub async fn poll_rows(pool: &SqlitePool) -> Vec<PollRow> {
    type Row = (
        i64,
        String,
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<i64>,
        i64,
        i64,
        i64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT poll_id, customer_id, finished_at, outcome, http_status, error, profiles, \
         added, changed, removed FROM polls ORDER BY poll_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| PollRow {
            poll_id: r.0,
            customer_id: r.1,
            finished_at: r.2,
            outcome: r.3,
            http_status: r.4,
            error: r.5,
            profiles: r.6,
            added: r.7,
            changed: r.8,
            removed: r.9,
        })
        .collect()
}

/// A `profile_changes` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub change_id: i64,
    pub poll_id: i64,
    pub customer_id: String,
    pub profile_id: String,
    pub kind: String,
    pub baseline: bool,
    pub detected_at: String,
    pub profile_name: Option<String>,
    pub scan_mode: Option<i64>,
    pub modified_time: Option<String>,
    pub old_profile_name: Option<String>,
    pub old_scan_mode: Option<i64>,
    pub old_modified_time: Option<String>,
    pub changed_fields: Option<String>,
}

impl ChangeRow {
    /// `(kind, profile_id, baseline, profile_name, changed_fields)`.
    pub fn summary(&self) -> (&str, &str, bool, Option<&str>, Option<&str>) {
        (
            self.kind.as_str(),
            self.profile_id.as_str(),
            self.baseline,
            self.profile_name.as_deref(),
            self.changed_fields.as_deref(),
        )
    }
}

pub async fn change_rows(pool: &SqlitePool) -> Vec<ChangeRow> {
    let rows = sqlx::query(
        "SELECT change_id, poll_id, customer_id, profile_id, kind, baseline, detected_at, \
         profile_name, scan_mode, modified_time, old_profile_name, old_scan_mode, \
         old_modified_time, changed_fields FROM profile_changes ORDER BY change_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    use sqlx::Row;
    rows.iter()
        .map(|r| ChangeRow {
            change_id: r.get(0),
            poll_id: r.get(1),
            customer_id: r.get(2),
            profile_id: r.get(3),
            kind: r.get(4),
            baseline: r.get::<i64, _>(5) == 1,
            detected_at: r.get(6),
            profile_name: r.get(7),
            scan_mode: r.get(8),
            modified_time: r.get(9),
            old_profile_name: r.get(10),
            old_scan_mode: r.get(11),
            old_modified_time: r.get(12),
            changed_fields: r.get(13),
        })
        .collect()
}

/// What the snapshot holds of a profile, and what replaying the change log
/// must give back: `(customer_id, profile_id) -> (name, scan_mode, modified_time)`.
pub type Contents = BTreeMap<(String, String), (Option<String>, Option<i64>, Option<String>)>;

pub async fn snapshot_contents(pool: &SqlitePool) -> Contents {
    type Row = (String, String, Option<String>, Option<i64>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT customer_id, profile_id, profile_name, scan_mode, modified_time FROM profiles",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(c, p, name, mode, time)| ((c, p), (name, mode, time)))
        .collect()
}

/// The contents the snapshot must hold for `customer` after a clean poll of
/// the list `served`: IDs lower-cased, times in the stored form.
pub fn served_contents(customer: &str, served: &[Value]) -> Contents {
    served
        .iter()
        .map(|p| {
            let id = p["profileId"].as_str().unwrap().to_ascii_lowercase();
            let name = p["profileName"].as_str().map(str::to_owned);
            let mode = p["scanMode"].as_i64();
            let time = p["modifiedTime"]
                .as_str()
                .map(|t| scanwatch::timestamp::normalize_api_time(t).unwrap());
            ((customer.to_owned(), id), (name, mode, time))
        })
        .collect()
}

/// Checks every invariant of the history that needs no oracle and returns
/// the violations, empty when there are none:
///
/// - replaying `profile_changes` from empty gives the `profiles` table's IDs,
///   names, scan modes and modification instants exactly;
/// - per profile, kinds come in a valid order: no change or removal of an
///   absent profile, no add of a present one;
/// - every change belongs to a poll of the same customer with outcome `ok`,
///   was detected when that poll committed, and each poll's counts match its
///   rows and stay within what its list and the snapshot before it allow;
/// - added and removed rows carry no `changed_fields` or `old_*`; changed
///   rows carry a sorted, non-empty `changed_fields`;
/// - baseline rows are additions, all from a customer's first poll with changes.
pub async fn history_violations(pool: &SqlitePool) -> Vec<String> {
    let polls: BTreeMap<i64, PollRow> = poll_rows(pool)
        .await
        .into_iter()
        .map(|p| (p.poll_id, p))
        .collect();
    let changes = change_rows(pool).await;
    let snapshot = snapshot_contents(pool).await;
    violations(&polls, &changes, &snapshot)
}

fn violations(
    polls: &BTreeMap<i64, PollRow>,
    changes: &[ChangeRow],
    snapshot: &Contents,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut replay = Contents::new();
    // Per poll: (added, changed, removed) rows, and the customer's
    // replayed snapshot size before the poll's first change.
    let mut per_poll: BTreeMap<i64, ([i64; 3], usize)> = BTreeMap::new();
    let mut first_changed_poll: BTreeMap<&str, i64> = BTreeMap::new();

    for change in changes {
        let key = (change.customer_id.clone(), change.profile_id.clone());
        let size_before = replay
            .keys()
            .filter(|(c, _)| *c == change.customer_id)
            .count();
        let entry = per_poll
            .entry(change.poll_id)
            .or_insert(([0; 3], size_before));
        let id = change.change_id;
        let present = replay.contains_key(&key);
        let contents = (
            change.profile_name.clone(),
            change.scan_mode,
            change.modified_time.clone(),
        );
        match change.kind.as_str() {
            "added" => {
                entry.0[0] += 1;
                if present {
                    found.push(format!("change {id}: added {key:?}, already present"));
                }
                replay.insert(key, contents);
            }
            "changed" => {
                entry.0[1] += 1;
                match replay.get(&key) {
                    None => found.push(format!("change {id}: changed {key:?}, absent")),
                    Some(old) => {
                        let recorded_old = (
                            change.old_profile_name.clone(),
                            change.old_scan_mode,
                            change.old_modified_time.clone(),
                        );
                        if *old != recorded_old {
                            found.push(format!(
                                "change {id}: old values {recorded_old:?}, replay had {old:?}"
                            ));
                        }
                    }
                }
                replay.insert(key, contents);
            }
            "removed" => {
                entry.0[2] += 1;
                match replay.remove(&key) {
                    None => found.push(format!("change {id}: removed {key:?}, absent")),
                    Some(last) if last != contents => found.push(format!(
                        "change {id}: removed with {contents:?}, last known {last:?}"
                    )),
                    Some(_) => {}
                }
            }
            other => found.push(format!("change {id}: unknown kind {other}")),
        }

        let is_changed = change.kind == "changed";
        let has_old = change.old_profile_name.is_some()
            || change.old_scan_mode.is_some()
            || change.old_modified_time.is_some();
        match (&change.changed_fields, is_changed) {
            (Some(fields), true) => {
                let parsed: Vec<String> = serde_json::from_str(fields).unwrap_or_default();
                let mut sorted = parsed.clone();
                sorted.sort();
                if parsed.is_empty() || parsed != sorted {
                    found.push(format!("change {id}: changed_fields {fields}"));
                }
            }
            (None, false) if !has_old => {}
            _ => found.push(format!(
                "change {id}: {} with changed_fields {:?} and old values present: {has_old}",
                change.kind, change.changed_fields
            )),
        }

        let first = *first_changed_poll
            .entry(change.customer_id.as_str())
            .or_insert(change.poll_id);
        if change.baseline && (change.kind != "added" || change.poll_id != first) {
            found.push(format!(
                "change {id}: baseline {} outside the first poll with changes",
                change.kind
            ));
        }

        match polls.get(&change.poll_id) {
            None => found.push(format!("change {id}: poll {} missing", change.poll_id)),
            Some(poll) => {
                if poll.outcome != "ok" {
                    found.push(format!(
                        "change {id}: poll {} is {}",
                        poll.poll_id, poll.outcome
                    ));
                }
                if poll.customer_id != change.customer_id {
                    found.push(format!("change {id}: poll of another customer"));
                }
                if poll.finished_at != change.detected_at {
                    found.push(format!(
                        "change {id}: detected_at {} but poll finished {}",
                        change.detected_at, poll.finished_at
                    ));
                }
            }
        }
    }

    for (poll_id, poll) in polls {
        let (counts, size_before) = per_poll.get(poll_id).copied().unwrap_or(([0; 3], 0));
        if [poll.added, poll.changed, poll.removed] != counts {
            found.push(format!(
                "poll {poll_id}: counts {:?} but rows {counts:?}",
                [poll.added, poll.changed, poll.removed]
            ));
        }
        let listed = poll.profiles.unwrap_or(0);
        if counts[0] + counts[1] > listed {
            found.push(format!(
                "poll {poll_id}: {} added or changed from a list of {listed}",
                counts[0] + counts[1]
            ));
        }
        if counts[2] as usize > size_before {
            found.push(format!(
                "poll {poll_id}: {} removed from a snapshot of {size_before}",
                counts[2]
            ));
        }
    }

    let keys: std::collections::BTreeSet<_> = replay.keys().chain(snapshot.keys()).collect();
    for key in keys {
        let (replayed, stored) = (replay.get(key), snapshot.get(key));
        if replayed != stored {
            found.push(format!(
                "{key:?}: replaying the change log gives {replayed:?}, profiles holds {stored:?}"
            ));
        }
    }
    found
}

/// Panics with every violation when the history breaks an invariant.
pub async fn assert_history_consistent(pool: &SqlitePool) {
    let found = history_violations(pool).await;
    assert!(
        found.is_empty(),
        "history invariants broken:\n{}",
        found.join("\n")
    );
}

/// Waits, up to `deadline`, for `check` to hold; for conditions that another
/// process makes true (a row written, a file created).
pub async fn wait_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `text` as a config only its owner may read, so no warning about
/// an inline secret gets in the way.
pub fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("scanwatch.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `scanwatch <args> --config <config>`, with the environment a test needs
/// cleared and its logs limited to warnings and errors, written to `log`.
pub fn scanwatch(
    config: &std::path::Path,
    args: &[&str],
    log: &std::path::Path,
) -> std::process::Command {
    let mut command = super::hermetic::scanwatch();
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("SCANWATCH__LOG__FORMAT", "json")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    command
}

/// A read-only view of a database another process writes.
pub async fn open_reader(db: &std::path::Path) -> SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

/// The simulator's data for every customer, as the snapshot must hold it.
pub fn simulator_contents(sim: &Simulator) -> Contents {
    sim.customer_ids()
        .iter()
        .flat_map(|c| served_contents(c, &sim.profiles(c)))
        .collect()
}
