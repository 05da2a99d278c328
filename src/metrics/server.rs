//! The listener of `[metrics] listen`: `/metrics` in the OpenMetrics text
//! format (which Prometheus scrapes natively), `/healthz` and `/readyz`.
//!
//! Health is judged from what the scheduler reports through [`Health::observe`]
//! and from a query to the database; the listener itself knows nothing of
//! polls. Every answer is a short text, one line for the health endpoints.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::global;
use crate::scheduler::Event;
use crate::store::{Store, StoreError};

/// The media type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long `/healthz` waits for the database before calling it unreachable.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Heartbeats that may be missed before the scheduler counts as stalled.
const MISSED_BEATS: u32 = 3;

/// What `/healthz` and `/readyz` answer from.
#[derive(Debug)]
pub struct Health {
    heartbeat: Option<Duration>,
    state: Mutex<SchedulerState>,
    store: OnceLock<Store>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SchedulerState {
    scheduled: bool,
    stopping: bool,
    last_beat: Option<Instant>,
}

impl Health {
    /// Health for a scheduler that sends a heartbeat every `heartbeat`; with
    /// `None` a stalled loop cannot be noticed.
    pub fn new(heartbeat: Option<Duration>) -> Arc<Health> {
        Arc::new(Health {
            heartbeat,
            state: Mutex::new(SchedulerState::default()),
            store: OnceLock::new(),
        })
    }

    /// The database to check, once it is open and migrated.
    pub fn set_store(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// Takes note of a scheduler event: any event shows the loop is alive.
    pub fn observe<T>(&self, event: &Event<T>) {
        let mut state = self.lock();
        state.last_beat = Some(Instant::now());
        match event {
            Event::Scheduled { .. } => state.scheduled = true,
            Event::Stopping { .. } => state.stopping = true,
            Event::Finished { .. } | Event::Idle { .. } | Event::Heartbeat => {}
        }
    }

    /// `/healthz`: the scheduler loop is alive, and the database answers and
    /// is still the file at its configured path.
    pub async fn live(&self) -> Result<(), String> {
        self.scheduler_alive(Instant::now())?;
        let Some(store) = self.store.get() else {
            return Err("starting: the database is not open yet".to_owned());
        };
        match tokio::time::timeout(DATABASE_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error @ StoreError::Replaced { .. })) => Err(error.to_string()),
            Ok(Err(error)) => Err(format!("database does not answer: {error}")),
            Err(_) => Err(format!(
                "database does not answer within {}s",
                DATABASE_TIMEOUT.as_secs()
            )),
        }
    }

    /// `/readyz`: the database is migrated and the first schedule is set.
    pub fn ready(&self) -> Result<(), String> {
        let state = *self.lock();
        if state.stopping {
            Err("shutting down".to_owned())
        } else if !state.scheduled || self.store.get().is_none() {
            Err("starting: the first schedule is not set yet".to_owned())
        } else {
            Ok(())
        }
    }

    fn scheduler_alive(&self, now: Instant) -> Result<(), String> {
        let state = *self.lock();
        if state.stopping {
            return Err("shutting down: the scheduler is stopping".to_owned());
        }
        let Some(last_beat) = state.last_beat.filter(|_| state.scheduled) else {
            return Err("starting: the scheduler has not started".to_owned());
        };
        let Some(period) = self.heartbeat else {
            return Ok(());
        };
        let silent = now.saturating_duration_since(last_beat);
        if silent > period * MISSED_BEATS {
            return Err(format!(
                "scheduler loop stalled: no heartbeat for {}s (expected every {}s)",
                silent.as_secs(),
                period.as_secs_f64()
            ));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SchedulerState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running listener; stops when dropped.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and serves the process-wide metrics and `health` on it.
    pub async fn start(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<Listener> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        global().serving.store(true, Ordering::Relaxed);
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(health);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::warn!(error = %error, "metrics listener stopped");
            }
        });
        Ok(Listener { addr, task })
    }

    /// The address served, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    let size = health.store.get().map(Store::size_on_disk);
    let text = global().encode(size);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn healthz(State(health): State<Arc<Health>>) -> Response {
    answer(health.live().await, "ok")
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    answer(health.ready(), "ready")
}

fn answer(result: Result<(), String>, ok: &str) -> Response {
    let (status, line) = match result {
        Ok(()) => (StatusCode::OK, ok.to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, headers, format!("{line}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled(health: &Health) {
        health.observe(&Event::<()>::Scheduled {
            customers: 1,
            added: 1,
            removed: 0,
            next_due: None,
        });
    }

    #[test]
    fn the_scheduler_counts_as_stalled_after_three_missed_heartbeats() {
        let health = Health::new(Some(Duration::from_secs(5)));
        scheduled(&health);
        let beat = health.lock().last_beat.unwrap();

        assert_eq!(
            health.scheduler_alive(beat + Duration::from_secs(15)),
            Ok(())
        );
        let stalled = health.scheduler_alive(beat + Duration::from_secs(16));
        assert_eq!(
            stalled,
            Err("scheduler loop stalled: no heartbeat for 16s (expected every 5s)".to_owned())
        );
    }

    #[test]
    fn a_heartbeat_keeps_the_scheduler_alive() {
        let health = Health::new(Some(Duration::from_secs(5)));
        scheduled(&health);
        let first = health.lock().last_beat.unwrap();
        health.observe(&Event::<()>::Heartbeat);
        let second = health.lock().last_beat.unwrap();
        assert!(second >= first);
        assert_eq!(
            health.scheduler_alive(second + Duration::from_secs(15)),
            Ok(())
        );
    }

    #[test]
    fn before_the_first_schedule_and_after_stopping_the_scheduler_is_not_alive() {
        let health = Health::new(Some(Duration::from_secs(5)));
        assert_eq!(
            health.scheduler_alive(Instant::now()),
            Err("starting: the scheduler has not started".to_owned())
        );
        assert!(health.ready().unwrap_err().starts_with("starting"));

        scheduled(&health);
        health.observe(&Event::<()>::Stopping { in_flight: 2 });
        assert_eq!(
            health.scheduler_alive(Instant::now()),
            Err("shutting down: the scheduler is stopping".to_owned())
        );
        assert_eq!(health.ready(), Err("shutting down".to_owned()));
    }

    #[tokio::test]
    async fn readiness_needs_the_database_as_well_as_a_schedule() {
        let health = Health::new(Some(Duration::from_secs(5)));
        scheduled(&health);
        assert!(health.ready().is_err(), "no database yet");
        assert_eq!(
            health.live().await,
            Err("starting: the database is not open yet".to_owned())
        );
    }
}
