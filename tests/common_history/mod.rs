//! A history recorded through the real poll path, for the `history`,
//! `status` and documented-query tests: the embedded simulator on loopback,
//! real polls into a fresh database, and known changes between them.
//!
//! What the seed records, in order:
//! 1. baseline `added` rows for Contoso, Fabrikam and Litware (3 each), and a
//!    failed poll for Northwind, which the simulator does not know (403);
//! 2. for Contoso: profile A renamed, profile B's scan mode switched,
//!    profile C removed, profile D added; for Fabrikam: one rename; Northwind
//!    fails again;
//! 3. for Contoso: profile A renamed again and switched to the other mode.
//!
//! The config `history` and `status` read lists Contoso, Fabrikam, Northwind
//! and Tailspin (never polled), and leaves Litware out, so Litware is known
//! only from the database.
#![allow(dead_code)]

#[path = "../hermetic/mod.rs"]
pub mod hermetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scanwatch::api::ApiClient;
use scanwatch::config::ConfigFile;
use scanwatch::customer::Customer;
use scanwatch::poller::{PollReport, Poller};
use scanwatch::simulator::{self, SimConfig, Simulator};
use scanwatch::store::Store;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

pub const NORTHWIND: &str = "0000aaaa-0000-4000-8000-00000000000e";
pub const TAILSPIN: &str = "0000bbbb-0000-4000-8000-00000000000f";

/// Rows the seed records: 9 baseline, 5 in the second round, 1 in the third.
pub const SEEDED_ROWS: usize = 15;

pub struct Seeded {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// The config `history` and `status` read: storage and names, no secret.
    pub config: PathBuf,
    pub sim: Simulator,
    pub poller: Poller,
    /// The customers as the poll config lists them.
    pub customers: Vec<Customer>,
    pub contoso: String,
    pub fabrikam: String,
    pub litware: String,
    /// Contoso's profile renamed twice and switched once: added, changed, changed.
    pub renamed: String,
    /// Contoso's profile whose scan mode was switched in the second round.
    pub switched: String,
    /// Contoso's profile removed in the second round.
    pub removed: String,
    /// Contoso's profile added in the second round.
    pub added: String,
    /// `detected_at` of the second round's Contoso changes.
    pub second_round_at: String,
}

impl Seeded {
    pub async fn new() -> Seeded {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("scanwatch.db");
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                customers: 3,
                profiles: 3,
                seed: 11,
                ..SimConfig::default()
            },
        )
        .await
        .unwrap();
        let ids = sim.customer_ids();
        let (contoso, fabrikam, litware) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

        let poll_text = scanwatch::cli::simulate::config_for(&sim, db.to_str().unwrap())
            .replace("Simulated customer 1", "Contoso")
            .replace("Simulated customer 2", "Fabrikam")
            .replace("Simulated customer 3", "Litware")
            + &format!("\n[[customers]]\nid = \"{NORTHWIND}\"\nname = \"Northwind\"\n");
        let settings =
            ConfigFile::from_toml_ignoring_environment(&dir.path().join("poll.toml"), &poll_text)
                .unwrap()
                .settings()
                .unwrap();
        let api = ApiClient::new(&settings.api, &settings.auth).unwrap();
        let store = Store::open(&settings.storage).await.unwrap();
        let poller = Poller::new(api, store, settings.detection.clone(), 5);

        let config = dir.path().join("scanwatch.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\ndatabase = {db:?}\n\n\
                 [[customers]]\nid = \"{contoso}\"\nname = \"Contoso\"\n\n\
                 [[customers]]\nid = \"{fabrikam}\"\nname = \"Fabrikam\"\n\n\
                 [[customers]]\nid = \"{NORTHWIND}\"\nname = \"Northwind\"\n\n\
                 [[customers]]\nid = \"{TAILSPIN}\"\nname = \"Tailspin\"\n",
                db = db.to_str().unwrap()
            ),
        )
        .unwrap();

        let profile_ids: Vec<String> = sim
            .profiles(&contoso)
            .iter()
            .map(|p| p["profileId"].as_str().unwrap().to_owned())
            .collect();
        let mut seeded = Seeded {
            dir,
            db,
            config,
            sim,
            poller,
            customers: settings.customers.clone(),
            renamed: profile_ids[0].clone(),
            switched: profile_ids[1].clone(),
            removed: profile_ids[2].clone(),
            added: String::new(),
            second_round_at: String::new(),
            contoso,
            fabrikam,
            litware,
        };
        seeded.record().await;
        seeded
    }

    async fn record(&mut self) {
        for id in [&self.contoso, &self.fabrikam, &self.litware] {
            assert!(self.poll(id).await.succeeded());
        }
        assert!(!self.poll(NORTHWIND).await.succeeded());

        let contoso = self.contoso.clone();
        self.apply(simulator::Command::RenameProfile {
            customer: contoso.clone(),
            profile_id: self.renamed.clone(),
            profile_name: "Finance Mailboxes (EU)".to_owned(),
        });
        let mode = self.sim.profiles(&contoso)[1]["scanMode"].as_i64().unwrap();
        self.apply(simulator::Command::SetScanMode {
            customer: contoso.clone(),
            profile_id: self.switched.clone(),
            scan_mode: 1 - mode,
        });
        self.apply(simulator::Command::DeleteProfile {
            customer: contoso.clone(),
            profile_id: self.removed.clone(),
        });
        let added = self.apply(simulator::Command::AddProfile {
            customer: contoso.clone(),
            profile_name: Some("Legal Teams".to_owned()),
            scan_mode: Some(1),
        });
        self.added = added["profileId"].as_str().unwrap().to_owned();
        let fabrikam_first = self.sim.profiles(&self.fabrikam)[0]["profileId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.apply(simulator::Command::RenameProfile {
            customer: self.fabrikam.clone(),
            profile_id: fabrikam_first,
            profile_name: "Fabrikam Sites".to_owned(),
        });
        assert!(self.poll(&contoso).await.succeeded());
        assert!(self.poll(&self.fabrikam.clone()).await.succeeded());
        assert!(!self.poll(NORTHWIND).await.succeeded());
        self.second_round_at = self
            .scalar(&format!(
                "SELECT min(detected_at) FROM profile_changes WHERE baseline = 0 \
                 AND customer_id = '{contoso}'"
            ))
            .await;

        let mode = self.sim.profiles(&contoso)[0]["scanMode"].as_i64().unwrap();
        self.apply(simulator::Command::RenameProfile {
            customer: contoso.clone(),
            profile_id: self.renamed.clone(),
            profile_name: "Finance Mailboxes (EU, all)".to_owned(),
        });
        self.apply(simulator::Command::SetScanMode {
            customer: contoso.clone(),
            profile_id: self.renamed.clone(),
            scan_mode: 1 - mode,
        });
        assert!(self.poll(&contoso).await.succeeded());

        let rows: i64 = self
            .scalar("SELECT count(*) FROM profile_changes")
            .await
            .parse()
            .unwrap();
        assert_eq!(
            rows as usize, SEEDED_ROWS,
            "the seed recorded what it meant to"
        );
    }

    fn apply(&self, command: simulator::Command) -> serde_json::Value {
        self.sim.apply(command).unwrap()
    }

    /// Polls one customer of the poll config through the real poll path.
    pub async fn poll(&self, customer_id: &str) -> PollReport {
        let customer = self
            .customers
            .iter()
            .find(|c| c.id.as_str() == customer_id)
            .unwrap();
        self.poller.poll(customer).await
    }

    /// A separate read-write connection, as another process would have.
    pub async fn connect(&self) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(&self.db)
            .foreign_keys(true)
            .connect()
            .await
            .unwrap()
    }

    /// One value of a query, as text.
    pub async fn scalar(&self, sql: &str) -> String {
        let mut connection = self.connect().await;
        let value: String = sqlx::query_scalar(&format!("SELECT CAST(({sql}) AS TEXT)"))
            .fetch_one(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        value
    }

    /// Every row of `change_history` as JSON objects, the way the command
    /// should print them: straight from SQL, for comparison.
    pub async fn expected_rows(&self, filter: &str) -> Vec<serde_json::Value> {
        let mut connection = self.connect().await;
        let texts: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT json_object('change_id', change_id, 'detected_at', detected_at, \
             'customer_id', customer_id, 'customer_name', customer_name, \
             'profile_id', profile_id, 'kind', kind, 'baseline', baseline, \
             'profile_name', profile_name, 'scan_mode', scan_mode, \
             'scan_mode_name', scan_mode_name, 'modified_time', modified_time, \
             'old_profile_name', old_profile_name, 'old_scan_mode', old_scan_mode, \
             'old_modified_time', old_modified_time, \
             'changed_fields', json(changed_fields), 'poll_id', poll_id) \
             FROM change_history {filter} ORDER BY change_id"
        ))
        .fetch_all(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        texts
            .iter()
            .map(|t| serde_json::from_str(t).unwrap())
            .collect()
    }

    /// `scanwatch ARGS --config <the history config>`, run to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        scanwatch(&self.config, args).output().unwrap()
    }
}

/// The binary with `--config`, in an environment cleared of anything that
/// would change where it looks or what it logs.
pub fn scanwatch(config: &Path, args: &[&str]) -> Command {
    let mut command = hermetic::scanwatch();
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SCANWATCH__LOG__LEVEL", "warn");
    command
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// The lines of an NDJSON output, parsed.
pub fn ndjson(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The `change_id`s of parsed rows, in order.
pub fn change_ids(rows: &[serde_json::Value]) -> Vec<i64> {
    rows.iter()
        .map(|r| r["change_id"].as_i64().unwrap())
        .collect()
}
