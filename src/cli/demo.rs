//! `scanwatch demo`: the whole watcher against the embedded simulator, with
//! a scripted story of additions, renames, scan-mode switches and deletions,
//! so a new user sees what scanwatch records without an AvePoint account.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::CliError;
use crate::api::ApiClient;
use crate::config::{ConfigFile, LogFormat, LogSettings};
use crate::history::{self, Format, Query};
use crate::poller::{PollOutcome, PollReport, Poller};
use crate::simulator::{Command, SimConfig, Simulator};
use crate::store::Store;

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  scanwatch demo --db /tmp/demo.db")]
pub struct Args {
    /// Database to (re)create for the demo.
    #[arg(long, default_value = "scanwatch-demo.db", value_name = "PATH")]
    pub db: PathBuf,
}

const CYCLES: usize = 4;

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    crate::logging::init(&LogSettings {
        format: LogFormat::Pretty,
        level: "warn".to_owned(),
    });
    let db = std::path::absolute(&args.db)
        .with_context(|| format!("cannot resolve {}", args.db.display()))?;
    remove_database(&db)?;

    let simulator = Simulator::start(
        "127.0.0.1:0".parse().expect("a valid address"),
        SimConfig {
            customers: 3,
            profiles: 4,
            seed: 7,
            ..SimConfig::default()
        },
    )
    .await
    .context("cannot start the simulator on loopback")?;
    let text = super::simulate::config_for(&simulator, &db.to_string_lossy());
    let folder = db.parent().unwrap_or(Path::new("."));
    let settings =
        ConfigFile::from_toml_ignoring_environment(&folder.join("scanwatch-demo.toml"), &text)?
            .settings()?;
    let api = ApiClient::new(&settings.api, &settings.auth).map_err(|e| anyhow::anyhow!(e))?;
    let store = Store::open(&settings.storage)
        .await
        .context("cannot open the demo database")?;
    let poller = Arc::new(Poller::new(api, store, settings.detection.clone(), 5));

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "scanwatch demo: {} simulated customers at {}, database {}\n",
        settings.customers.len(),
        simulator.base_url(),
        db.display()
    )
    .context("cannot write to stdout")?;
    drop(out);

    for cycle in 1..=CYCLES {
        if cycle > 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let story = act(&simulator, cycle)?;
        let reports = poll_cycle(&poller, &settings.customers).await;
        print_cycle(cycle, &story, &reports)?;
    }

    let mut out = std::io::stdout();
    writeln!(out, "\nRecorded history (oldest first):\n").context("cannot write to stdout")?;
    history::print(poller.store(), &Query::default(), Format::Table, &mut out)
        .await
        .context("cannot print the history")?;
    writeln!(
        out,
        "\nQuery it yourself:\n  sqlite3 {} \"SELECT detected_at, customer_name, kind, profile_name, \
         changed_fields FROM change_history ORDER BY change_id\"\n  \
         scanwatch demo writes a fresh database each run; `scanwatch simulate` serves the same API \
         for `scanwatch poll` and `scanwatch run`.",
        db.display()
    )
    .context("cannot write to stdout")?;
    poller.store().close().await;
    simulator.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Changes the simulator before a cycle, and says what it did.
fn act(simulator: &Simulator, cycle: usize) -> anyhow::Result<Vec<String>> {
    let customers = simulator.customer_ids();
    let profile = |customer: usize, index: usize| -> String {
        simulator.profiles(&customers[customer])[index]["profileId"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let commands = match cycle {
        2 => vec![
            (
                "customer 1 gets a new Advanced profile",
                Command::AddProfile {
                    customer: customers[0].clone(),
                    profile_name: Some("Teams Channels Weekly".to_owned()),
                    scan_mode: Some(1),
                },
            ),
            (
                "customer 2 renames a profile",
                Command::RenameProfile {
                    customer: customers[1].clone(),
                    profile_id: profile(1, 0),
                    profile_name: "Executive Mailboxes".to_owned(),
                },
            ),
        ],
        3 => vec![
            (
                "customer 1 switches a profile to Advanced mode",
                Command::SetScanMode {
                    customer: customers[0].clone(),
                    profile_id: profile(0, 1),
                    scan_mode: 1,
                },
            ),
            (
                "customer 3 deletes a profile",
                Command::DeleteProfile {
                    customer: customers[2].clone(),
                    profile_id: profile(2, 2),
                },
            ),
        ],
        4 => vec![
            (
                "customer 2 deletes a profile",
                Command::DeleteProfile {
                    customer: customers[1].clone(),
                    profile_id: profile(1, 3),
                },
            ),
            (
                "customer 3 renames a profile and switches it to Express mode",
                Command::SetScanMode {
                    customer: customers[2].clone(),
                    profile_id: profile(2, 0),
                    scan_mode: 0,
                },
            ),
            (
                "",
                Command::RenameProfile {
                    customer: customers[2].clone(),
                    profile_id: profile(2, 0),
                    profile_name: "OneDrive Quick Scan".to_owned(),
                },
            ),
        ],
        _ => Vec::new(),
    };
    let mut story = Vec::new();
    for (what, command) in commands {
        simulator
            .apply(command)
            .map_err(|e| anyhow::anyhow!("the demo script failed: {e}"))?;
        if !what.is_empty() {
            story.push(what.to_owned());
        }
    }
    Ok(story)
}

async fn poll_cycle(
    poller: &Arc<Poller>,
    customers: &[crate::customer::Customer],
) -> Vec<PollReport> {
    let mut reports = Vec::with_capacity(customers.len());
    for customer in customers {
        reports.push(poller.poll(customer).await);
    }
    reports
}

fn print_cycle(cycle: usize, story: &[String], reports: &[PollReport]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let (mut added, mut changed, mut removed, mut failed) = (0, 0, 0, 0);
    for report in reports {
        match &report.outcome {
            PollOutcome::Ok {
                added: a,
                changed: c,
                removed: r,
                ..
            } => {
                added += a;
                changed += c;
                removed += r;
            }
            _ => failed += 1,
        }
    }
    let story = if story.is_empty() {
        "first look at every customer".to_owned()
    } else {
        story.join("; ")
    };
    writeln!(
        out,
        "cycle {cycle}: {story}\n         -> {} polls: {added} added, {changed} changed, \
         {removed} removed, {failed} failed",
        reports.len()
    )?;
    Ok(())
}

/// Removes the demo database and its WAL companions, so each run tells the
/// same story.
fn remove_database(db: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot remove {}", Path::new(&path).display()))
            }
        }
    }
    Ok(())
}
