//! `scanwatch simulate`: serves the embedded fake API on loopback and prints
//! a config that points scanwatch at it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::CliError;
use crate::simulator::{self, Command, SimConfig, Simulator};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  scanwatch simulate --listen 127.0.0.1:8080 --customers 5 > /dev/null &\n  \
    scanwatch simulate --listen 127.0.0.1:8080 --customers 5 | head -n 30 > sim.toml"
)]
pub struct Args {
    /// Address to serve on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Customers to create.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub customers: usize,
    /// Scan profiles per customer.
    #[arg(long, default_value_t = 5, value_name = "M")]
    pub profiles: usize,
    /// Seed for generated IDs and names (same seed, same data).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Delay added to every scan profile response, e.g. 50ms.
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Up to this much more delay, drawn afresh for each response.
    #[arg(long, default_value = "0s", value_name = "DUR", value_parser = humantime::parse_duration)]
    pub latency_jitter: Duration,
    /// Fraction of all profiles changed per minute (added, renamed, switched
    /// or deleted at random), e.g. 0.01; 0 leaves the data alone.
    #[arg(long, default_value_t = 0.0, value_name = "P", value_parser = parse_rate)]
    pub mutation_rate: f64,
    /// The app's certificate (PEM or DER, RSA): the token endpoint then also
    /// accepts client assertions signed with its key, so a certificate setup
    /// can be tried here before Elements sees it.
    #[arg(long, value_name = "FILE")]
    pub client_certificate: Option<PathBuf>,
}

/// The certificate file, refused with its flag's name when the simulator
/// could not check assertions against it.
fn read_certificate(path: &Path) -> Result<Vec<u8>, CliError> {
    let bytes = std::fs::read(path).map_err(|e| {
        CliError::Usage(format!(
            "--client-certificate: cannot read {}: {e}",
            path.display()
        ))
    })?;
    if !simulator::can_trust(&bytes) {
        return Err(CliError::Usage(format!(
            "--client-certificate: {} is not a PEM or DER certificate with an RSA key; \
             pass the certificate (public part) uploaded to the app registration",
            path.display()
        )));
    }
    Ok(bytes)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a fraction of 0 or more, such as 0.01"
        )),
    }
}

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    super::default_logging();
    if !args.listen.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--listen: {} is not a loopback address; the simulator only serves this machine",
            args.listen
        )));
    }
    let client_certificate = match &args.client_certificate {
        Some(path) => Some(read_certificate(path)?),
        None => None,
    };
    let simulator = Simulator::start(
        args.listen,
        SimConfig {
            customers: args.customers,
            profiles: args.profiles,
            seed: args.seed,
            client_certificate,
            ..SimConfig::default()
        },
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    if !args.latency.is_zero() || !args.latency_jitter.is_zero() {
        simulator
            .apply(Command::SetLatency {
                customer: None,
                latency_ms: args.latency.as_millis() as u64,
                jitter_ms: Some(args.latency_jitter.as_millis() as u64),
            })
            .context("cannot set the latency")?;
    }
    let simulator = Arc::new(simulator);
    let mutating = (args.mutation_rate > 0.0)
        .then(|| tokio::spawn(mutate_steadily(Arc::clone(&simulator), args.mutation_rate)));

    println!("{}", config_for(&simulator, "scanwatch-sim.db"));
    if let Some(path) = &args.client_certificate {
        println!(
            "# The token endpoint also accepts client assertions signed for {path}:\n\
             #   in [auth], replace client_secret with\n\
             #   certificate_file = {path:?}\n\
             #   private_key_file = \"<the PEM private key of that certificate>\"\n\
             #   (or a .pfx bundle and its certificate_password), then run\n\
             #   `scanwatch check-config --probe` to try the setup.",
            path = path.display().to_string()
        );
    }
    println!(
        "# Control: curl -s {}/_sim/state ; curl -s {}/_sim/counters ;\n\
         #   curl -s -X POST -H 'content-type: application/json' \\\n\
         #   -d '{{\"op\":\"mutate\",\"count\":5}}' {}/_sim/commands",
        simulator.base_url(),
        simulator.base_url(),
        simulator.base_url()
    );
    tracing::info!(base_url = %simulator.base_url(), "simulator serving; Ctrl-C stops it");

    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    if let Some(task) = mutating {
        task.abort();
        let _ = task.await;
    }
    if let Ok(simulator) = Arc::try_unwrap(simulator) {
        simulator.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Changes `rate` of all profiles per minute, in one batch a second; the
/// fractional rest carries over, so low rates still mutate now and then.
async fn mutate_steadily(simulator: Arc<Simulator>, rate: f64) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut due = 0.0;
    loop {
        every.tick().await;
        let profiles = simulator.profile_count();
        due += rate * profiles as f64 / 60.0;
        let count = due.floor();
        due -= count;
        if count >= 1.0 {
            if let Err(error) = simulator.apply(Command::Mutate {
                count: count as usize,
            }) {
                tracing::warn!(%error, "simulated mutation failed");
            }
        }
    }
}

/// A complete config for scanwatch against `simulator`.
pub fn config_for(simulator: &Simulator, database: &str) -> String {
    let sim = simulator.config();
    let mut text = format!(
        "# scanwatch config for the embedded simulator at {base}\n\
         [api]\n\
         base_url = \"{base}\"\n\
         token_url = \"{token}\"\n\
         scope = \"{scope}\"\n\
         max_requests_per_second = 0\n\
         \n\
         [auth]\n\
         client_id = \"{client_id}\"\n\
         client_secret = \"{secret}\"\n\
         \n\
         [schedule]\n\
         interval = \"30s\"\n\
         jitter = \"2s\"\n\
         \n\
         [storage]\n\
         database = {database:?}\n",
        base = simulator.base_url(),
        token = simulator.token_url(),
        scope = sim.scope,
        client_id = sim.client_id,
        secret = sim.client_secret,
    );
    for (i, id) in simulator.customer_ids().iter().enumerate() {
        text.push_str(&format!(
            "\n[[customers]]\nid = \"{id}\"\nname = \"Simulated customer {}\"\n",
            i + 1
        ));
    }
    text
}
