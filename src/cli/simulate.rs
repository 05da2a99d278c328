//! `scanwatch simulate`: serves the embedded fake API on loopback and prints
//! a config that points scanwatch at it.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use super::CliError;
use crate::simulator::{SimConfig, Simulator};

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
}

pub async fn run(args: Args) -> Result<ExitCode, CliError> {
    super::default_logging();
    if !args.listen.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--listen: {} is not a loopback address; the simulator only serves this machine",
            args.listen
        )));
    }
    let simulator = Simulator::start(
        args.listen,
        SimConfig {
            customers: args.customers,
            profiles: args.profiles,
            seed: args.seed,
            ..SimConfig::default()
        },
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;

    println!("{}", config_for(&simulator, "scanwatch-sim.db"));
    println!(
        "# Control: curl -s {}/_sim/state ; curl -s -X POST -H 'content-type: application/json' \\\n\
         #   -d '{{\"op\":\"mutate\",\"count\":5}}' {}/_sim/commands",
        simulator.base_url(),
        simulator.base_url()
    );
    tracing::info!(base_url = %simulator.base_url(), "simulator serving; Ctrl-C stops it");

    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    simulator.shutdown().await;
    Ok(ExitCode::SUCCESS)
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
