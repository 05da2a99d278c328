//! `scanwatch run` as a child process against the embedded simulator, with
//! its JSON log, its `/metrics` listener and its database at hand, for the
//! metrics and logging tests.
//!
//! Every wait is for an explicit sign (a log line, a row, a scraped value)
//! with a deadline, never a sleep that hopes a race went one way.
#![allow(dead_code)]

#[path = "../hermetic/mod.rs"]
pub mod hermetic;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use scanwatch::simulator::{SimConfig, Simulator};
use scanwatch::store::Store;
use serde_json::Value;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running `scanwatch run`, killed on drop if a test fails.
pub struct Daemon {
    child: Child,
    pub stderr: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> Daemon {
        let config = dir.join("scanwatch.toml");
        write_private(&config, config_text);
        Daemon::start_with(dir, config, env)
    }

    /// Starts on a config file already written, logging to `dir/stderr.log`.
    pub fn start_with(dir: &Path, config: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let stderr = dir.join("stderr.log");
        let mut command = hermetic::scanwatch();
        command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        Daemon {
            child: command.spawn().expect("scanwatch starts"),
            stderr,
            config,
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} delivered");
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// SIGTERM, then a clean exit within the deadline.
    pub async fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.exit_within(DEADLINE).await.expect("exits in time");
        assert!(status.success(), "{status:?}\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Every JSON log line so far.
    pub fn events(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    }

    /// The JSON log lines whose message is `message`.
    pub fn log_lines(&self, message: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }

    /// Waits for a log line with this message and returns it.
    pub async fn wait_for_log(&mut self, message: &str) -> Value {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.log_lines(message).pop() {
                return line;
            }
            assert!(self.running(), "exited before {message:?}:\n{}", self.log());
            assert!(
                Instant::now() < until,
                "no {message:?} in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The base URL of the metrics listener, from its log line.
    pub async fn metrics_url(&mut self) -> String {
        let line = self.wait_for_log("metrics listening").await;
        format!("http://{}", line["address"].as_str().unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub async fn simulator(customers: usize) -> Simulator {
    let config = SimConfig {
        customers,
        ..SimConfig::default()
    };
    Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

/// What to put in a config besides the simulator's own settings.
#[derive(Debug, Clone, Default)]
pub struct Extra<'a> {
    pub schedule: &'a str,
    pub api: &'a str,
    pub storage: &'a str,
    pub detection: &'a str,
    /// The `[log]` level directive; "info" when empty.
    pub level: &'a str,
    /// Serve metrics on an ephemeral loopback port.
    pub metrics: bool,
}

/// A config for `sim` that polls `customers`, with JSON logs.
pub fn config(sim: &Simulator, db: &Path, customers: &[String], extra: &Extra<'_>) -> String {
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
    let storage = format!("database = {:?}\n", db.to_str().unwrap());
    assert!(head.contains(&storage), "config_for changed: {head}");
    let mut text = head
        .replace(
            default_schedule,
            &format!("[schedule]\n{}\n", extra.schedule),
        )
        .replace("[api]\n", &format!("[api]\n{}\n", extra.api))
        .replace(&storage, &format!("{storage}{}\n", extra.storage));
    if !extra.detection.is_empty() {
        text.push_str(&format!("\n[detection]\n{}\n", extra.detection));
    }
    if extra.metrics {
        text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    }
    let level = if extra.level.is_empty() {
        "info"
    } else {
        extra.level
    };
    text.push_str(&format!(
        "\n[log]\nformat = \"json\"\nlevel = \"{level}\"\n"
    ));
    for (i, id) in customers.iter().enumerate() {
        text.push_str(&format!(
            "\n[[customers]]\nid = \"{id}\"\nname = \"Customer {}\"\n",
            i + 1
        ));
    }
    text
}

/// A number from the database, 0 while it does not exist yet.
pub async fn count(db: &Path, sql: &str, customer: &str) -> i64 {
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

/// Polls rows of a customer with this outcome.
pub async fn polls(db: &Path, customer: &str, outcome: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM polls WHERE customer_id = ? AND outcome = '{outcome}'");
    count(db, &sql, customer).await
}

/// Waits until `check` holds, at most [`DEADLINE`].
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url`: the status and the body.
pub async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}
