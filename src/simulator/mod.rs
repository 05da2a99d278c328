//! The embedded fake AvePoint Elements API: a real HTTP server on loopback.
//!
//! `scanwatch demo`, `scanwatch simulate` and the integration tests run the
//! watcher against it, so the client code is exercised over real HTTP with
//! no network and no credentials. It is never used by the production path.
//!
//! It owns:
//! - the token endpoint (`POST /connect/token`, client credentials with a
//!   secret in the form body or in HTTP Basic, or a client assertion signed
//!   with the key of [`SimConfig::client_certificate`]), see `auth`;
//! - the two scan profile endpoints (the documented `GET` list and the paged
//!   `POST .../batch`), see `http`;
//! - the seeded, in-memory customers and profiles and their mutations, see
//!   `state` and `control`;
//! - the control endpoint `POST /_sim/commands` (the same [`Command`]s that
//!   [`Simulator::apply`] takes) and `GET /_sim/state`.
//!
//! It does not own anything the watcher decides: it serves data and counts
//! requests, and the tests judge what the watcher made of it.

mod auth;
mod control;
mod faults;
mod http;
mod state;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::can_trust;
pub use control::{Command, ControlError};
pub use faults::{Fault, FaultError, FaultTarget};
pub use state::{Counters, Shape};

use state::{SharedState, SimState};

/// What the simulator serves when it starts, and the credentials it accepts.
///
/// The defaults match the example config printed by `scanwatch simulate`, so
/// a user can point the watcher at it without editing anything.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Customers created at start.
    pub customers: usize,
    /// Scan profiles created for each customer at start.
    pub profiles: usize,
    /// Seeds every generated ID and name, so runs are reproducible.
    pub seed: u64,
    /// The only client ID the token endpoint accepts.
    pub client_id: String,
    /// The only client secret the token endpoint accepts.
    pub client_secret: String,
    /// The app's certificate (DER or PEM): the token endpoint accepts client
    /// assertions signed by its key, and refuses every assertion when `None`.
    pub client_certificate: Option<Vec<u8>>,
    /// The scope a token request must ask for (among others, if it likes).
    pub scope: String,
    /// How long an issued token stays valid; zero issues tokens that are
    /// already expired, which lets tests reach the expiry path without waiting.
    pub token_lifetime: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            customers: 3,
            profiles: 5,
            seed: 1,
            client_id: "scanwatch-sim".to_owned(),
            client_secret: "sim-secret".to_owned(),
            client_certificate: None,
            scope: "elements.scanprofiles.read.all".to_owned(),
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

/// A running simulator. The server task stops on [`Simulator::shutdown`] or
/// when this handle is dropped, so a test that panics leaves nothing behind.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    config: Arc<SimConfig>,
    state: SharedState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `listen` (use `127.0.0.1:0` for an ephemeral port), seeds the
    /// data from `config` and serves until shutdown or drop.
    pub async fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(listen).await?;
        let addr = reachable(listener.local_addr()?);
        let config = Arc::new(config);
        let state = SharedState::new(SimState::new(Arc::clone(&config)));

        let (stop, stopped) = oneshot::channel::<()>();
        let router = http::router(state.clone(), format!("http://{addr}"));
        let task = tokio::spawn(async move {
            // A dropped sender also ends the wait, which is what stops the
            // server when the handle is dropped without `shutdown`.
            let signal = async move {
                let _ = stopped.await;
            };
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "simulator server stopped with an error");
            }
        });
        tracing::debug!(%addr, "simulator listening");

        Ok(Simulator {
            addr,
            config,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address the server listens on (loopback when bound to a wildcard).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, the API base URL to configure in the watcher.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token URL to configure in the watcher.
    pub fn token_url(&self) -> String {
        format!("{}/connect/token", self.base_url())
    }

    /// The configuration the simulator was started with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Every customer ID (lower-case GUIDs), in creation order.
    pub fn customer_ids(&self) -> Vec<String> {
        self.state.lock().customer_ids()
    }

    /// The profiles the list endpoint serves for `customer_id` right now, in
    /// order, whatever the envelope; empty for an unknown customer.
    pub fn profiles(&self, customer_id: &str) -> Vec<serde_json::Value> {
        self.state.lock().profiles_json(customer_id)
    }

    /// Applies a control command, exactly as `POST /_sim/commands` does.
    pub fn apply(&self, command: Command) -> Result<serde_json::Value, ControlError> {
        command.apply(&mut self.state.lock())
    }

    /// Profiles served across all customers right now.
    pub fn profile_count(&self) -> usize {
        self.state.lock().profile_count()
    }

    /// How many token and API requests the server has seen.
    pub fn counters(&self) -> Counters {
        self.state.lock().counters.clone()
    }

    /// How many requests an injected fault has answered so far.
    pub fn faults_fired(&self) -> u64 {
        self.state.lock().faults.fired
    }

    /// Stops accepting connections, lets requests in flight finish and waits
    /// for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Nobody will wait for a graceful end, so the listener goes now;
        // open connections still get the stop signal and close after their
        // current request.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Maps a wildcard bind address to loopback, so URLs built from it work.
fn reachable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}
