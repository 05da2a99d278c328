//! One poll of one customer: fetch the list, then diff and commit it in the
//! store, or record why it failed.
//!
//! This is where a poll's outcome becomes log lines: one line per poll with
//! its counts, and one per recorded change, because the changes are the
//! product. Baseline additions (a customer's first list) are logged at debug:
//! on a first start with thousands of customers they are not news.

use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{ApiClient, FetchError};
use crate::customer::Customer;
use crate::diff::{self, Change, ChangeKind, Rules, Warning};
use crate::store::{AcceptedList, FailedPoll, Store, StoreError};
use crate::timestamp;

/// What a poll came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// The list was committed.
    Ok {
        /// The status of the (last) page of the list.
        http_status: u16,
        profiles: usize,
        added: usize,
        changed: usize,
        removed: usize,
    },
    /// The API or the list failed; recorded in `polls` when the database allowed.
    Failed {
        http_status: Option<u16>,
        error: String,
    },
    /// The database refused the write; nothing was recorded and the next poll
    /// will try again.
    NotRecorded { error: String },
}

#[derive(Debug, Clone)]
pub struct PollReport {
    pub poll_id: Option<i64>,
    pub outcome: PollOutcome,
    pub duration: Duration,
    /// Consecutive failures after this poll (0 after a success).
    pub consecutive_failures: u32,
}

impl PollReport {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, PollOutcome::Ok { .. })
    }
}

/// Polls customers through one API client into one store.
#[derive(Debug)]
pub struct Poller {
    api: ApiClient,
    store: Store,
    rules: Rules,
    alert_after_failures: u32,
}

impl Poller {
    pub fn new(api: ApiClient, store: Store, rules: Rules, alert_after_failures: u32) -> Poller {
        Poller {
            api,
            store,
            rules,
            alert_after_failures,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// Polls one customer and logs the outcome. Never panics on bad input:
    /// every failure becomes a [`PollOutcome`].
    pub async fn poll(&self, customer: &Customer) -> PollReport {
        let span = tracing::info_span!(
            "poll",
            customer_id = %customer.id,
            customer = customer.label(),
            poll_id = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let started_at = timestamp::now();
            let report = match self.fetch(customer).await {
                Ok(fetched) => {
                    log_warnings(&fetched.warnings);
                    self.commit(customer, started_at, fetched, started).await
                }
                Err((http_status, error)) => {
                    self.fail(customer, started_at, http_status, error, started)
                        .await
                }
            };
            log_report(&report);
            crate::metrics::poll_finished(&customer.id, &report);
            report
        }
        .instrument(span)
        .await
    }

    async fn fetch(&self, customer: &Customer) -> Result<Fetched, (Option<u16>, String)> {
        let list = self
            .api
            .fetch_profiles(&customer.id)
            .await
            .map_err(|e: FetchError| (e.http_status(), e.to_string()))?;
        let (profiles, warnings) =
            diff::dedupe(list.profiles).map_err(|e| (Some(list.http_status), e.to_string()))?;
        Ok(Fetched {
            http_status: list.http_status,
            profiles,
            warnings,
            digest: list.digest,
        })
    }

    async fn commit(
        &self,
        customer: &Customer,
        started_at: String,
        fetched: Fetched,
        started: Instant,
    ) -> PollReport {
        let http_status = fetched.http_status;
        let list = AcceptedList {
            customer,
            started_at,
            http_status: Some(http_status),
            profiles: fetched.profiles,
            rules: &self.rules,
        };
        let committed = self.store.commit_list_hashed(list, fetched.digest).await;
        let committed = match committed {
            Ok(committed) => committed,
            Err(error) => return not_recorded(error, started),
        };
        tracing::Span::current().record("poll_id", committed.poll_id);
        crate::metrics::list_committed(&customer.id, &committed);
        for change in &committed.outcome.changes {
            log_change(committed.poll_id, change);
        }
        log_warnings(&committed.outcome.warnings);
        if committed.previous_failures >= self.alert_after_failures {
            tracing::info!(
                failures = committed.previous_failures,
                "customer recovered after repeated failures"
            );
        }
        let outcome = &committed.outcome;
        PollReport {
            poll_id: Some(committed.poll_id),
            outcome: PollOutcome::Ok {
                http_status,
                profiles: committed.profiles,
                added: outcome.count(ChangeKind::Added),
                changed: outcome.count(ChangeKind::Changed),
                removed: outcome.count(ChangeKind::Removed),
            },
            duration: started.elapsed(),
            consecutive_failures: 0,
        }
    }

    async fn fail(
        &self,
        customer: &Customer,
        started_at: String,
        http_status: Option<u16>,
        error: String,
        started: Instant,
    ) -> PollReport {
        let recorded = self
            .store
            .record_failure(FailedPoll {
                customer,
                started_at,
                http_status,
                error: &error,
            })
            .await;
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(store_error) => return not_recorded(store_error, started),
        };
        if recorded.consecutive_failures == self.alert_after_failures {
            tracing::error!(
                failures = recorded.consecutive_failures,
                error = %error,
                "customer failing repeatedly"
            );
        }
        PollReport {
            poll_id: Some(recorded.poll_id),
            outcome: PollOutcome::Failed { http_status, error },
            duration: started.elapsed(),
            consecutive_failures: recorded.consecutive_failures,
        }
    }
}

/// A list fetched and deduplicated, not yet committed.
struct Fetched {
    http_status: u16,
    profiles: Vec<crate::profile::Profile>,
    warnings: Vec<Warning>,
    /// The API client's digest of the response bodies.
    digest: [u8; 32],
}

fn not_recorded(error: StoreError, started: Instant) -> PollReport {
    PollReport {
        poll_id: None,
        outcome: PollOutcome::NotRecorded {
            error: error.to_string(),
        },
        duration: started.elapsed(),
        consecutive_failures: 0,
    }
}

fn log_report(report: &PollReport) {
    let duration_ms = report.duration.as_millis() as u64;
    match &report.outcome {
        PollOutcome::Ok {
            http_status,
            profiles,
            added,
            changed,
            removed,
        } => tracing::info!(
            poll_id = report.poll_id,
            outcome = "ok",
            http_status,
            profiles,
            added,
            changed,
            removed,
            duration_ms,
            "poll finished"
        ),
        PollOutcome::Failed { http_status, error } => tracing::warn!(
            poll_id = report.poll_id,
            outcome = "failed",
            http_status,
            error = %error,
            consecutive_failures = report.consecutive_failures,
            duration_ms,
            "poll failed"
        ),
        PollOutcome::NotRecorded { error } => tracing::error!(
            outcome = "not_recorded",
            error = %error,
            duration_ms,
            "poll not recorded; the database refused the write"
        ),
    }
}

fn log_change(poll_id: i64, change: &Change) {
    let changed_fields = change.changed_fields.as_ref().map(|f| f.join(","));
    macro_rules! change_event {
        ($level:expr) => {
            tracing::event!(
                $level,
                poll_id,
                kind = change.kind.as_str(),
                baseline = change.baseline,
                profile_id = %change.profile.id,
                profile_name = change.profile.name.as_deref(),
                changed_fields = changed_fields.as_deref(),
                "profile {}",
                change.kind.as_str()
            )
        };
    }
    if change.baseline {
        change_event!(tracing::Level::DEBUG);
    } else {
        change_event!(tracing::Level::INFO);
    }
}

fn log_warnings(warnings: &[Warning]) {
    for warning in warnings {
        match warning {
            Warning::DuplicateMerged { profile_id, copies } => tracing::warn!(
                profile_id = %profile_id,
                copies,
                "duplicate profile merged"
            ),
            Warning::ModifiedTimeBackwards {
                profile_id,
                old,
                new,
            } => tracing::warn!(
                profile_id = %profile_id,
                old_modified_time = %old,
                modified_time = %new,
                "modifiedTime went backwards"
            ),
            Warning::EmptyListHeld {
                streak,
                confirmations,
                snapshot_profiles,
            } => tracing::warn!(
                empty_streak = streak,
                empty_list_confirmations = confirmations,
                snapshot_profiles,
                "empty list held until confirmed"
            ),
        }
    }
}
