//! `scanwatch run` as a process, against the embedded simulator: signals,
//! reloads, the systemd notify protocol, journald fields and the API limits
//! across the whole daemon.
//!
//! Every wait here is for an explicit sign (a notify datagram, a row in the
//! database, a counter in the simulator) with a bounded deadline, never a
//! sleep that hopes a race went one way.

use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common_daemon;

use common_daemon::{simulator, write_private, Daemon};
use scanwatch::simulator::{Command as SimCommand, Simulator};
use scanwatch::store::Store;
use tokio::net::UnixDatagram;

const DEADLINE: Duration = Duration::from_secs(20);

/// A config for `sim` that polls only `customers`, with these `[schedule]`
/// lines, extra `[api]` lines, and JSON logs.
fn config(sim: &Simulator, db: &Path, customers: &[String], schedule: &str, api: &str) -> String {
    let text = scanwatch::cli::simulate::config_for(sim, db.to_str().unwrap());
    let head = text
        .split("\n[[customers]]")
        .next()
        .expect("config_for has a head");
    let default_schedule = "[schedule]\ninterval = \"30s\"\njitter = \"2s\"\n";
    assert!(
        head.contains(default_schedule),
        "config_for changed: {head}"
    );
    assert!(head.contains("[api]\n"), "config_for changed: {head}");
    let mut text = head
        .replace(default_schedule, &format!("[schedule]\n{schedule}\n"))
        .replace("[api]\n", &format!("[api]\n{api}\n"));
    text.push_str("\n[log]\nformat = \"json\"\nlevel = \"info\"\n");
    for id in customers {
        text.push_str(&format!("\n[[customers]]\nid = \"{id}\"\n"));
    }
    text
}

/// Polls rows for a customer, 0 while the database does not exist yet.
async fn polls_of(db: &Path, customer: &str) -> i64 {
    count(
        db,
        "SELECT COUNT(*) FROM polls WHERE customer_id = ?",
        customer,
    )
    .await
}

async fn count(db: &Path, sql: &str, customer: &str) -> i64 {
    let Ok(store) = Store::open_read_only(db).await else {
        return 0;
    };
    let counted = sqlx::query_scalar::<_, i64>(sql)
        .bind(customer)
        .fetch_one(store.pool())
        .await
        .unwrap_or(0);
    store.close().await;
    counted
}

/// Waits until `customer` has at least `n` polls rows.
async fn until_polled(db: &Path, customer: &str, n: i64) {
    let until = Instant::now() + DEADLINE;
    while polls_of(db, customer).await < n {
        assert!(
            Instant::now() < until,
            "{customer} not polled {n} times in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The notify socket a test hands to the daemon, as systemd would.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = StdDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            socket: UnixDatagram::from_std(socket).unwrap(),
            path,
            seen: Vec::new(),
        }
    }

    fn env(&self) -> (&'static str, &str) {
        ("NOTIFY_SOCKET", self.path.to_str().unwrap())
    }

    /// Waits for a datagram holding the line `line` and returns it whole.
    async fn expect(&mut self, line: &str) -> String {
        let mut buf = vec![0; 4096];
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let received = tokio::time::timeout_at(until, self.socket.recv(&mut buf)).await;
            let Ok(received) = received else {
                panic!("no {line:?} in time; got {:?}", self.seen);
            };
            let message = String::from_utf8_lossy(&buf[..received.unwrap()]).into_owned();
            self.seen.push(message.clone());
            if message.lines().any(|l| l == line) {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn sigterm_during_a_slow_poll_exits_zero_within_the_grace_and_records_nothing_of_it() {
    stop_during_a_slow_poll(libc::SIGTERM).await;
}

#[tokio::test]
async fn sigint_during_a_slow_poll_exits_zero_within_the_grace_and_records_nothing_of_it() {
    stop_during_a_slow_poll(libc::SIGINT).await;
}

/// `signal` while one customer's poll waits for a 30 s response: the daemon
/// waits out the 1 s grace, exits 0, and the slow poll leaves no row.
async fn stop_during_a_slow_poll(signal: i32) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(2).await;
    let ids = sim.customer_ids();
    let (fast, slow) = (&ids[0], &ids[1]);
    sim.apply(SimCommand::SetLatency {
        customer: Some(slow.clone()),
        latency_ms: 30_000,
        jitter_ms: None,
    })
    .unwrap();
    let text = config(
        &sim,
        &db,
        &ids,
        "interval = \"2s\"\njitter = \"0s\"\nshutdown_grace = \"1s\"",
        "",
    );
    let mut daemon = Daemon::start(dir.path(), &text, &[]);

    // Both customers are due within the first 2 s and each makes one request
    // first, so two requests mean the slow one is in flight.
    until_polled(&db, fast, 1).await;
    let until = Instant::now() + DEADLINE;
    while sim.counters().api_requests < 2 {
        assert!(Instant::now() < until, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    daemon.signal(signal);
    let status = daemon.exit_within(Duration::from_secs(6)).await;

    let status = status.expect("exits within the grace and a margin");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "it waited for the grace period first"
    );
    assert_eq!(
        polls_of(&db, slow).await,
        0,
        "no polls row for the slow poll"
    );
    let changes = "SELECT COUNT(*) FROM profile_changes WHERE customer_id = ?";
    assert_eq!(count(&db, changes, slow).await, 0, "no changes either");
    assert!(
        count(&db, changes, fast).await > 0,
        "the fast poll committed"
    );
    let abandoned = daemon.log_lines(
        "polls still running after the shutdown grace were abandoned; none of them was recorded",
    );
    assert_eq!(abandoned.len(), 1, "{}", daemon.log());
    assert_eq!(abandoned[0]["customer_ids"], slow.as_str());
}

#[tokio::test]
async fn sighup_applies_added_and_removed_customers_and_keeps_the_old_config_when_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(2).await;
    let ids = sim.customer_ids();
    let (first, second) = (&ids[0], &ids[1]);
    let schedule = "interval = \"1s\"\njitter = \"0s\"";
    let only_first = config(&sim, &db, &ids[..1], schedule, "");
    let mut notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(dir.path(), &only_first, &[notify.env()]);
    notify.expect("READY=1").await;
    until_polled(&db, first, 1).await;

    // An invalid config is refused and the daemon goes on as before.
    let invalid = config(&sim, &db, &ids, "interval = \"soon\"\njitter = \"0s\"", "");
    write_private(&daemon.config, &invalid);
    daemon.signal(libc::SIGHUP);
    notify.expect("RELOADING=1").await;
    let ready = notify.expect("READY=1").await;
    assert!(ready.contains("STATUS=reload failed"), "{ready}");
    let failed = daemon.log_lines("configuration reload failed; the previous configuration stays");
    assert_eq!(failed.len(), 1, "{}", daemon.log());
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("schedule.interval"),
        "the error names the key: {}",
        failed[0]
    );
    let before = polls_of(&db, first).await;
    until_polled(&db, first, before + 2).await;
    assert!(daemon.running());
    assert_eq!(
        polls_of(&db, second).await,
        0,
        "the refused config's customer"
    );

    // Adding a customer starts polling it.
    write_private(&daemon.config, &config(&sim, &db, &ids, schedule, ""));
    daemon.signal(libc::SIGHUP);
    notify.expect("RELOADING=1").await;
    notify.expect("READY=1").await;
    until_polled(&db, second, 1).await;

    // Removing one stops it; its history stays.
    write_private(&daemon.config, &config(&sim, &db, &ids[1..], schedule, ""));
    daemon.signal(libc::SIGHUP);
    notify.expect("RELOADING=1").await;
    notify.expect("READY=1").await;
    let first_polls = polls_of(&db, first).await;
    let second_polls = polls_of(&db, second).await;
    until_polled(&db, second, second_polls + 3).await;
    let after = polls_of(&db, first).await;
    assert!(
        after <= first_polls + 1,
        "only a poll already in flight may finish: {first_polls} then {after}"
    );
    assert!(after > 0, "the removed customer's history stays");

    daemon.signal(libc::SIGTERM);
    let status = daemon.exit_within(Duration::from_secs(10)).await.unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_notify_socket_gets_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(1).await;
    let ids = sim.customer_ids();
    let text = config(&sim, &db, &ids, "interval = \"1h\"\njitter = \"0s\"", "");
    let mut notify = NotifySocket::bind(dir.path());
    let mut daemon = Daemon::start(
        dir.path(),
        &text,
        &[notify.env(), ("WATCHDOG_USEC", "1000000")],
    );

    let ready = notify.expect("READY=1").await;
    assert!(
        ready.contains("STATUS=1 customers scheduled"),
        "READY=1 comes with a status: {ready}"
    );
    let status = notify
        .expect("STATUS=1 customers; last batch: 1 ok, 0 failed")
        .await;
    assert!(!status.contains("READY=1"));
    notify.expect("WATCHDOG=1").await;
    let pinged = Instant::now();
    notify.expect("WATCHDOG=1").await;
    assert!(
        pinged.elapsed() < Duration::from_secs(1),
        "pings come within the watchdog timeout"
    );

    daemon.signal(libc::SIGTERM);
    notify.expect("STOPPING=1").await;
    let status = daemon.exit_within(Duration::from_secs(10)).await.unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_failing_customer_logs_one_error_per_streak_and_one_info_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(1).await;
    let ids = sim.customer_ids();
    let customer = &ids[0];
    // Responses slower than the client's timeout make every poll fail.
    sim.apply(SimCommand::SetLatency {
        customer: None,
        latency_ms: 2_000,
        jitter_ms: None,
    })
    .unwrap();
    let text = config(
        &sim,
        &db,
        &ids,
        "interval = \"1s\"\njitter = \"0s\"\nalert_after_failures = 2",
        "timeout = \"200ms\"\nretries = 0",
    );
    let mut daemon = Daemon::start(dir.path(), &text, &[]);

    let failed = "SELECT COUNT(*) FROM polls WHERE customer_id = ? AND outcome = 'failed'";
    let until = Instant::now() + DEADLINE;
    while count(&db, failed, customer).await < 4 {
        assert!(Instant::now() < until, "four failures in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.apply(SimCommand::SetLatency {
        customer: None,
        latency_ms: 0,
        jitter_ms: None,
    })
    .unwrap();
    let ok = "SELECT COUNT(*) FROM polls WHERE customer_id = ? AND outcome = 'ok'";
    while count(&db, ok, customer).await < 2 {
        assert!(Instant::now() < until, "recovered in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.exit_within(DEADLINE).await.unwrap().success());

    let alerts = daemon.log_lines("customer failing repeatedly");
    assert_eq!(
        alerts.len(),
        1,
        "one error for the streak: {}",
        daemon.log()
    );
    assert_eq!(alerts[0]["level"], "ERROR");
    assert_eq!(alerts[0]["failures"], 2);
    let recovered = daemon.log_lines("customer recovered after repeated failures");
    assert_eq!(recovered.len(), 1, "{}", daemon.log());
    assert_eq!(recovered[0]["level"], "INFO");
}

#[tokio::test]
async fn a_database_file_renamed_over_while_running_is_reported_once() {
    const REPORT: &str = "database file deleted or replaced since it was opened; restart scanwatch";
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(1).await;
    let ids = sim.customer_ids();
    let text = config(&sim, &db, &ids, "interval = \"1s\"\njitter = \"0s\"", "");
    let mut daemon = Daemon::start(dir.path(), &text, &[]);
    until_polled(&db, &ids[0], 2).await;
    assert!(daemon.log_lines(REPORT).is_empty(), "{}", daemon.log());

    // A backup put in place with `mv` while the service runs.
    let backup = dir.path().join("backup.db");
    std::fs::copy(&db, &backup).unwrap();
    std::fs::rename(&backup, &db).unwrap();

    let report = daemon.wait_for_log(REPORT).await;
    assert_eq!(report["level"], "ERROR");
    assert_eq!(report["database"], db.display().to_string());
    // The daemon goes on polling, and says it once, not after every batch.
    let polls = daemon.log_lines("poll finished").len();
    let until = Instant::now() + DEADLINE;
    while daemon.log_lines("poll finished").len() < polls + 2 {
        assert!(Instant::now() < until, "two more polls in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop().await;
    assert_eq!(daemon.log_lines(REPORT).len(), 1, "{}", daemon.log());
}

#[tokio::test]
async fn max_concurrency_holds_across_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(3).await;
    let ids = sim.customer_ids();
    sim.apply(SimCommand::SetLatency {
        customer: None,
        latency_ms: 1_000,
        jitter_ms: None,
    })
    .unwrap();
    // Due at 0, 0.33 and 0.67 s; one at a time they end a second apart.
    let text = config(
        &sim,
        &db,
        &ids,
        "interval = \"1s\"\njitter = \"0s\"",
        "max_concurrency = 1",
    );
    let mut daemon = Daemon::start(dir.path(), &text, &[]);
    for id in &ids {
        until_polled(&db, id, 1).await;
    }
    daemon.signal(libc::SIGTERM);
    assert!(daemon.exit_within(DEADLINE).await.unwrap().success());

    let store = Store::open_read_only(&db).await.unwrap();
    let finished: Vec<String> =
        sqlx::query_scalar("SELECT finished_at FROM polls ORDER BY finished_at LIMIT 3")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        finished.iter().map(|t| t.parse().unwrap()).collect();
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(900),
            "polls overlapped: {finished:?}"
        );
    }
}

#[tokio::test]
async fn max_requests_per_second_holds_across_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(6).await;
    let ids = sim.customer_ids();
    // Six customers every second want six requests a second; two are allowed.
    let text = config(
        &sim,
        &db,
        &ids,
        "interval = \"1s\"\njitter = \"0s\"",
        "max_requests_per_second = 2",
    );
    let text = text.replace("max_requests_per_second = 0\n", "");
    let mut notify = NotifySocket::bind(dir.path());
    let started = Instant::now();
    let mut daemon = Daemon::start(dir.path(), &text, &[notify.env()]);
    notify.expect("READY=1").await;
    for id in &ids {
        until_polled(&db, id, 1).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counters = sim.counters();
    let elapsed = started.elapsed().as_secs_f64();
    daemon.signal(libc::SIGTERM);
    assert!(daemon.exit_within(DEADLINE).await.unwrap().success());

    let requests = (counters.api_requests + counters.token_requests) as f64;
    assert!(
        requests <= 2.0 * elapsed + 2.0,
        "{requests} requests in {elapsed:.1} s at 2 per second (burst 2)"
    );
    assert!(requests >= 7.0, "a token and every customer: {requests}");
}

/// Journal fields need the journal's socket, whose path is fixed; this test
/// stands in for journald only where none runs and it may create that path.
#[tokio::test]
async fn journald_lines_carry_customer_id_and_poll_id_as_fields() {
    let Some(journal) = FakeJournal::bind() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(1).await;
    let ids = sim.customer_ids();
    let text = config(&sim, &db, &ids, "interval = \"1h\"\njitter = \"0s\"", "")
        .replace("format = \"json\"", "format = \"auto\"");
    let mut daemon = Daemon::start(dir.path(), &text, &[("JOURNAL_STREAM", "8:12345")]);
    until_polled(&db, &ids[0], 1).await;
    daemon.signal(libc::SIGTERM);
    assert!(daemon.exit_within(DEADLINE).await.unwrap().success());

    let entries = journal.entries();
    let finished = entries
        .iter()
        .find(|e| e.get("MESSAGE").map(String::as_str) == Some("poll finished"))
        .unwrap_or_else(|| panic!("no poll line in {entries:?}"));
    assert_eq!(finished.get("CUSTOMER_ID"), Some(&ids[0]), "{finished:?}");
    assert_eq!(finished.get("POLL_ID").map(String::as_str), Some("1"));
    assert_eq!(finished.get("OUTCOME").map(String::as_str), Some("ok"));
    assert_eq!(
        finished.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("scanwatch")
    );
    assert!(
        daemon.log().is_empty(),
        "nothing went to stderr: {}",
        daemon.log()
    );
}

/// A datagram socket bound at journald's path, removed on drop.
struct FakeJournal {
    socket: StdDatagram,
    created_dirs: Vec<PathBuf>,
}

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

impl FakeJournal {
    fn bind() -> Option<FakeJournal> {
        let path = Path::new(JOURNAL_SOCKET);
        if path.exists() {
            if StdDatagram::unbound().unwrap().connect(path).is_ok() {
                println!("skipped: a journald runs here; journalctl shows its fields");
                return None;
            }
            // Left behind by an interrupted run of this test.
            let _ = std::fs::remove_file(path);
        }
        let mut created_dirs = Vec::new();
        for dir in ["/run/systemd", "/run/systemd/journal"] {
            if !Path::new(dir).exists() {
                if let Err(error) = std::fs::create_dir(dir) {
                    println!("skipped: cannot create {dir} to stand in for journald: {error}");
                    return None;
                }
                created_dirs.push(PathBuf::from(dir));
            }
        }
        match StdDatagram::bind(path) {
            Ok(socket) => {
                socket.set_nonblocking(true).unwrap();
                Some(FakeJournal {
                    socket,
                    created_dirs,
                })
            }
            Err(error) => {
                println!("skipped: cannot bind {JOURNAL_SOCKET}: {error}");
                None
            }
        }
    }

    /// Every entry received so far, parsed from journald's native protocol.
    fn entries(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut entries = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            entries.push(parse_journal_entry(&buf[..n]));
        }
        entries
    }
}

impl Drop for FakeJournal {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(JOURNAL_SOCKET);
        for dir in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// `NAME=value\n`, or `NAME\n` + little-endian u64 length + value + `\n`.
fn parse_journal_entry(mut bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while !bytes.is_empty() {
        let end = bytes
            .iter()
            .position(|b| *b == b'\n' || *b == b'=')
            .unwrap();
        let name = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let value;
        if bytes[end] == b'=' {
            let rest = &bytes[end + 1..];
            let stop = rest.iter().position(|b| *b == b'\n').unwrap();
            value = &rest[..stop];
            bytes = &rest[stop + 1..];
        } else {
            let rest = &bytes[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            value = &rest[8..8 + len];
            bytes = &rest[8 + len + 1..];
        }
        fields
            .entry(name)
            .or_insert_with(|| String::from_utf8_lossy(value).into_owned());
    }
    fields
}

/// The daemon's polls share one API client, so a `Retry-After` answered to
/// one customer's poll holds back the next customer's request as well.
#[tokio::test]
async fn a_retry_after_for_one_customer_holds_back_the_next_customers_poll() {
    use std::sync::{Arc, Mutex};
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    const FIRST: &str = "00000000-0000-4000-8000-00000000000a";
    const SECOND: &str = "00000000-0000-4000-8000-00000000000b";

    /// Records when each list request arrived; the first one for FIRST
    /// gets a 429 asking for a 3 s pause.
    struct Timed(Arc<Mutex<Vec<(String, Instant)>>>);
    impl Respond for Timed {
        fn respond(&self, request: &Request) -> ResponseTemplate {
            let mut arrivals = self.0.lock().unwrap();
            let path = request.url.path().to_owned();
            let first_of_first = path.contains(FIRST) && !arrivals.iter().any(|(p, _)| *p == path);
            arrivals.push((path, Instant::now()));
            if first_of_first {
                ResponseTemplate::new(429).insert_header("Retry-After", "3")
            } else {
                ResponseTemplate::new(200).set_body_json(serde_json::json!([]))
            }
        }
    }

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "token", "token_type": "Bearer", "expires_in": 3600
        })))
        .mount(&server)
        .await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path_regex("/scan-profiles$"))
        .respond_with(Timed(Arc::clone(&arrivals)))
        .mount(&server)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[api]\nbase_url = \"{base}\"\ntoken_url = \"{base}/connect/token\"\n\
         max_requests_per_second = 0\n\
         [auth]\nclient_id = \"app\"\nclient_secret = \"secret\"\n\
         [schedule]\ninterval = \"4s\"\njitter = \"0s\"\n\
         [storage]\ndatabase = \"{db}\"\n\
         [[customers]]\nid = \"{FIRST}\"\n[[customers]]\nid = \"{SECOND}\"\n",
        base = server.uri(),
        db = dir.path().join("scanwatch.db").display(),
    );
    let settings = scanwatch::config::ConfigFile::from_toml_ignoring_environment(
        &dir.path().join("s.toml"),
        &text,
    )
    .unwrap()
    .settings()
    .unwrap();
    let api = scanwatch::api::ApiClient::new(&settings.api, &settings.auth).unwrap();
    let store = Store::open(&settings.storage).await.unwrap();
    let poller = Arc::new(scanwatch::poller::Poller::new(
        api,
        store,
        settings.detection.clone(),
        5,
    ));

    // Stop once both customers have had one poll: FIRST's (after its retry)
    // and SECOND's, due 2 s after FIRST's.
    let done = Arc::new(tokio::sync::Notify::new());
    let finished = Arc::clone(&done);
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&outcomes);
    let observe = move |event| {
        if let scanwatch::scheduler::Event::Finished { output, .. } = event {
            let output: scanwatch::poller::PollReport = output;
            let mut seen = seen.lock().unwrap();
            seen.push(output.succeeded());
            if seen.len() == 2 {
                finished.notify_one();
            }
        }
    };
    let poll = move |customer: scanwatch::customer::Customer| {
        let poller = Arc::clone(&poller);
        async move { poller.poll(&customer).await }
    };
    let timing = scanwatch::scheduler::Timing::from(&settings.schedule);
    let (_roster, receiver) = tokio::sync::watch::channel(scanwatch::scheduler::Roster {
        customers: settings.customers.clone(),
        since_last_poll: Default::default(),
    });
    let scheduler = scanwatch::scheduler::Scheduler::new(timing, poll, observe);
    let stop = async move { done.notified().await };
    tokio::time::timeout(DEADLINE, scheduler.run(receiver, stop))
        .await
        .expect("both polls finish");

    assert_eq!(
        *outcomes.lock().unwrap(),
        [true, true],
        "both polls succeed in the end"
    );
    let arrivals = arrivals.lock().unwrap();
    let at = |id: &str| {
        arrivals
            .iter()
            .find(|(p, _)| p.contains(id))
            .map(|(_, at)| *at)
            .unwrap()
    };
    let held = at(SECOND) - at(FIRST);
    assert!(
        held >= Duration::from_millis(2_900),
        "SECOND was due 2 s after FIRST but waited out FIRST's 3 s pause: {held:?}"
    );
}

#[tokio::test]
async fn a_restart_resumes_the_schedule_from_the_database_instead_of_polling_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scanwatch.db");
    let sim = simulator(1).await;
    let ids = sim.customer_ids();
    let text = config(&sim, &db, &ids, "interval = \"1h\"\njitter = \"0s\"", "");

    let mut notify = NotifySocket::bind(dir.path());
    let mut first = Daemon::start(dir.path(), &text, &[notify.env()]);
    let ready = notify.expect("READY=1").await;
    assert!(ready.contains("next poll in 0s"), "never polled: {ready}");
    until_polled(&db, &ids[0], 1).await;
    first.signal(libc::SIGTERM);
    assert!(first.exit_within(DEADLINE).await.unwrap().success());

    let mut second = Daemon::start(dir.path(), &text, &[notify.env()]);
    let ready = notify.expect("READY=1").await;
    let next: u64 = ready
        .split("next poll in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no next poll in {ready}"));
    assert!(
        (3500..=3600).contains(&next),
        "polled moments ago with a 1h interval, so due in about an hour: {next}s"
    );
    second.signal(libc::SIGTERM);
    assert!(second.exit_within(DEADLINE).await.unwrap().success());
    assert_eq!(polls_of(&db, &ids[0]).await, 1, "the restart did not poll");
}
