//! When each customer is polled, and nothing else: no HTTP, no SQL.
//!
//! Every customer has an anchor instant; its n-th poll is due at
//! `anchor + n * interval` plus a fresh random offset within `jitter`.
//! Offsets are drawn per poll and never added to the anchor, so a schedule
//! does not drift however long the daemon runs.
//!
//! Anchors come from the database's memory of the last poll (a [`Roster`]):
//! a customer polled five minutes ago with a fifteen-minute interval is
//! anchored ten minutes from now. Customers that are overdue or were never
//! polled are anchored evenly across `min(interval, 60 s)` from now, so a
//! restart with thousands of customers does not fire them all at once.
//!
//! A customer is never polled twice at once. A poll that runs past its next
//! slot makes the next poll start as soon as it ends, on the latest slot that
//! has begun (the others are skipped and logged), so the schedule catches up
//! without a burst.
//!
//! The scheduler runs the poll it is given as a function, so tests drive it
//! under tokio's paused clock, and stops when the shutdown future it is
//! given resolves: no new poll starts, polls in flight get the shutdown
//! grace, and any still running then is dropped whole. Dropping a poll's
//! future before it commits is what makes it leave nothing behind; that is
//! the poll's promise, not the scheduler's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::{Id as TaskId, JoinError, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::ScheduleSettings;
use crate::customer::{Customer, CustomerId};

/// The widest window over which overdue customers are spread.
pub const SPREAD_WINDOW: Duration = Duration::from_secs(60);

/// A slot index above this moves the anchor forward instead, so that
/// `interval * n` never overflows on a daemon that runs for years.
const REANCHOR_AFTER: u32 = 1 << 20;

/// The timing settings the scheduler obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub jitter: Duration,
    pub shutdown_grace: Duration,
}

impl From<&ScheduleSettings> for Timing {
    fn from(settings: &ScheduleSettings) -> Timing {
        Timing {
            interval: settings.interval,
            jitter: settings.jitter,
            shutdown_grace: settings.shutdown_grace,
        }
    }
}

impl Timing {
    /// The window over which overdue customers are spread.
    pub fn spread_window(&self) -> Duration {
        self.interval.min(SPREAD_WINDOW)
    }
}

/// The customers to poll and, for those polled before, how long ago that was.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    pub customers: Vec<Customer>,
    /// Time since each customer's last poll, as the database remembers it.
    /// A customer absent here has never been polled.
    pub since_last_poll: HashMap<CustomerId, Duration>,
}

/// What the scheduler tells its observer.
#[derive(Debug)]
pub enum Event<T> {
    /// A roster was applied (at start and after each reload).
    Scheduled {
        customers: usize,
        added: usize,
        removed: usize,
        /// How long until the next poll is due, if any is.
        next_due: Option<Duration>,
    },
    /// A poll finished with this output.
    Finished {
        customer: Customer,
        output: T,
        duration: Duration,
    },
    /// No poll is in flight any more: the end of a batch of polls.
    Idle { polls: usize },
    /// The loop is alive; sent every heartbeat period, if one is set.
    Heartbeat,
    /// Shutdown began; `in_flight` polls get the grace period.
    Stopping { in_flight: usize },
}

/// How the scheduler stopped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Polls that finished within the shutdown grace.
    pub finished_in_grace: usize,
    /// Customers whose poll was still running when the grace ran out, and
    /// was dropped.
    pub abandoned: Vec<CustomerId>,
}

/// One customer's place in the schedule.
#[derive(Debug)]
struct Slot {
    customer: Customer,
    anchor: Instant,
    /// The index of the next (or running) poll.
    n: u32,
    due: Instant,
    running: bool,
    /// Removed from the config while its poll ran: dropped when it ends.
    retired: bool,
}

/// Polls each customer of a [`Roster`] on its schedule until shutdown.
pub struct Scheduler<P, O> {
    timing: Timing,
    poll: P,
    observe: O,
    heartbeat: Option<Duration>,
    slots: HashMap<CustomerId, Slot>,
    /// Customers waiting for their next poll, by due instant.
    queue: BTreeSet<(Instant, CustomerId)>,
    tasks: HashMap<TaskId, (CustomerId, Instant)>,
    polls_since_idle: usize,
}

impl<P, Fut, T, O> Scheduler<P, O>
where
    P: FnMut(Customer) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
    O: FnMut(Event<T>),
{
    /// A scheduler that runs `poll` for each due customer and reports to
    /// `observe`.
    pub fn new(timing: Timing, poll: P, observe: O) -> Self {
        Scheduler {
            timing,
            poll,
            observe,
            heartbeat: None,
            slots: HashMap::new(),
            queue: BTreeSet::new(),
            tasks: HashMap::new(),
            polls_since_idle: 0,
        }
    }

    /// Sends [`Event::Heartbeat`] every `period` from the scheduling loop,
    /// for a watchdog that should notice when the loop is stuck.
    pub fn heartbeat(mut self, period: Duration) -> Self {
        self.heartbeat = Some(period).filter(|p| !p.is_zero());
        self
    }

    /// Polls on schedule until `shutdown` resolves, applying each new roster
    /// sent on `roster` (the current one is applied at once).
    pub async fn run(
        mut self,
        mut roster: watch::Receiver<Roster>,
        shutdown: impl Future<Output = ()>,
    ) -> Stopped {
        let mut running: JoinSet<T> = JoinSet::new();
        let mut heartbeat = self.heartbeat.map(|period| {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        let mut roster_open = true;
        tokio::pin!(shutdown);

        let first = roster.borrow_and_update().clone();
        self.apply(first);

        loop {
            let next_due = self.queue.first().map(|(due, _)| *due);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                // Before the work below, so that a busy loop still feeds the
                // watchdog.
                _ = tick(&mut heartbeat), if heartbeat.is_some() => {
                    (self.observe)(Event::Heartbeat);
                }
                changed = roster.changed(), if roster_open => match changed {
                    Ok(()) => {
                        let next = roster.borrow_and_update().clone();
                        self.apply(next);
                    }
                    // The sender is gone: keep the last roster.
                    Err(_) => roster_open = false,
                },
                Some(joined) = running.join_next_with_id(), if !running.is_empty() => {
                    self.finished(joined);
                    if running.is_empty() {
                        let polls = std::mem::take(&mut self.polls_since_idle);
                        (self.observe)(Event::Idle { polls });
                    }
                }
                () = sleep_until_some(next_due), if next_due.is_some() => {
                    self.start_due(&mut running);
                }
            }
        }

        self.stop(running, heartbeat).await
    }

    /// Sets the schedule from a roster: new customers are anchored, removed
    /// ones leave (after their poll in flight, if any), and the others keep
    /// their place.
    fn apply(&mut self, roster: Roster) {
        let now = Instant::now();
        let wanted: HashSet<&CustomerId> = roster.customers.iter().map(|c| &c.id).collect();

        let gone: Vec<CustomerId> = self
            .slots
            .keys()
            .filter(|id| !wanted.contains(id))
            .cloned()
            .collect();
        let mut removed = 0;
        for id in gone {
            let slot = self.slots.get_mut(&id).expect("listed from the map");
            if slot.retired {
                continue;
            }
            removed += 1;
            tracing::info!(customer_id = %id, "customer left the schedule; its history stays");
            if slot.running {
                slot.retired = true;
            } else {
                self.queue.remove(&(slot.due, id.clone()));
                self.slots.remove(&id);
            }
        }

        let mut added = 0;
        let mut overdue = Vec::new();
        for customer in roster.customers {
            if let Some(slot) = self.slots.get_mut(&customer.id) {
                if slot.retired {
                    // Re-added while its last poll still runs: it simply
                    // stays, and is rescheduled when that poll ends.
                    slot.retired = false;
                }
                slot.customer = customer;
                continue;
            }
            added += 1;
            match roster.since_last_poll.get(&customer.id) {
                Some(since) if *since < self.timing.interval => {
                    let anchor = now + (self.timing.interval - *since);
                    self.insert(customer, anchor);
                }
                since => overdue.push((since.copied(), customer)),
            }
        }

        // Never polled first, then the longest overdue, each group by ID so
        // that the order is the same on every start.
        overdue.sort_by(|(a, x), (b, y)| match (a, b) {
            (None, None) => x.id.cmp(&y.id),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => b.cmp(a).then_with(|| x.id.cmp(&y.id)),
        });
        let window = self.timing.spread_window();
        let count = overdue.len() as u32;
        for (k, (_, customer)) in overdue.into_iter().enumerate() {
            let anchor = now + window * k as u32 / count;
            self.insert(customer, anchor);
        }

        let customers = self.slots.values().filter(|s| !s.retired).count();
        let next_due = self
            .queue
            .first()
            .map(|(due, _)| due.saturating_duration_since(now));
        tracing::info!(
            customers,
            added,
            removed,
            next_poll_in_ms = next_due.map(|d| d.as_millis() as u64),
            "schedule set"
        );
        (self.observe)(Event::Scheduled {
            customers,
            added,
            removed,
            next_due,
        });
    }

    fn insert(&mut self, customer: Customer, anchor: Instant) {
        if self.slots.contains_key(&customer.id) {
            return;
        }
        let due = anchor + self.offset();
        self.queue.insert((due, customer.id.clone()));
        self.slots.insert(
            customer.id.clone(),
            Slot {
                customer,
                anchor,
                n: 0,
                due,
                running: false,
                retired: false,
            },
        );
    }

    /// Starts every poll that is due.
    fn start_due(&mut self, running: &mut JoinSet<T>) {
        let now = Instant::now();
        while let Some((due, id)) = self.queue.first().cloned() {
            if due > now {
                break;
            }
            self.queue.remove(&(due, id.clone()));
            let slot = self
                .slots
                .get_mut(&id)
                .expect("queued customers have a slot");
            slot.running = true;
            let poll = (self.poll)(slot.customer.clone());
            let handle = running.spawn(poll);
            self.tasks.insert(handle.id(), (id, now));
        }
    }

    /// Takes a finished poll back into the schedule.
    fn finished(&mut self, joined: Result<(TaskId, T), JoinError>) {
        let (task, output) = match joined {
            Ok((task, output)) => (task, Some(output)),
            Err(error) => (error.id(), None),
        };
        let Some((id, started)) = self.tasks.remove(&task) else {
            return;
        };
        self.polls_since_idle += 1;
        let now = Instant::now();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.running = false;
        let customer = slot.customer.clone();
        if slot.retired {
            self.slots.remove(&id);
        } else {
            self.reschedule(&id, now);
        }

        match output {
            Some(output) => (self.observe)(Event::Finished {
                customer,
                output,
                duration: now - started,
            }),
            None => tracing::error!(
                customer_id = %id,
                "poll task panicked; the customer stays on its schedule"
            ),
        }
    }

    /// Queues a customer's next poll after the one that just ended at `now`.
    fn reschedule(&mut self, id: &CustomerId, now: Instant) {
        let interval = self.timing.interval;
        let offset = self.offset();
        let slot = self.slots.get_mut(id).expect("caller checked");

        if slot.n >= REANCHOR_AFTER {
            slot.anchor += interval * slot.n;
            slot.n = 0;
        }
        let next = slot.n + 1;
        let mut due = slot.anchor + interval * next + offset;
        if due <= now {
            // The poll ran past its next slot: the latest slot that has begun
            // starts now, and the ones before it are skipped.
            let behind = (now - slot.anchor).as_nanos() / interval.as_nanos();
            let latest = u32::try_from(behind).unwrap_or(u32::MAX).max(next);
            tracing::warn!(
                customer_id = %id,
                skipped_polls = latest - next,
                interval_ms = interval.as_millis() as u64,
                "poll ran past its next slot; the next one starts now"
            );
            slot.n = latest;
            due = now;
        } else {
            slot.n = next;
        }
        slot.due = due;
        self.queue.insert((due, id.clone()));
    }

    /// A fresh random offset within the jitter.
    fn offset(&self) -> Duration {
        let jitter = self.timing.jitter.as_nanos().min(u64::MAX as u128) as u64;
        if jitter == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::rng().random_range(0..=jitter))
    }

    /// Gives the polls in flight the grace period, then drops the rest.
    async fn stop(
        mut self,
        mut running: JoinSet<T>,
        mut heartbeat: Option<tokio::time::Interval>,
    ) -> Stopped {
        let in_flight = running.len();
        tracing::info!(
            in_flight,
            grace_ms = self.timing.shutdown_grace.as_millis() as u64,
            "shutting down; no new poll starts"
        );
        (self.observe)(Event::Stopping { in_flight });

        let deadline = Instant::now() + self.timing.shutdown_grace;
        let mut stopped = Stopped::default();
        loop {
            tokio::select! {
                joined = running.join_next_with_id() => match joined {
                    Some(joined) => {
                        stopped.finished_in_grace += 1;
                        self.finished(joined);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
                _ = tick(&mut heartbeat), if heartbeat.is_some() => {
                    (self.observe)(Event::Heartbeat);
                }
            }
        }

        // Aborting drops each poll's future, which rolls back whatever it had
        // not committed; `shutdown` waits until every one is gone.
        stopped.abandoned = self.tasks.drain().map(|(_, (id, _))| id).collect();
        stopped.abandoned.sort();
        running.shutdown().await;
        if !stopped.abandoned.is_empty() {
            tracing::warn!(
                abandoned = stopped.abandoned.len(),
                customer_ids = %stopped
                    .abandoned
                    .iter()
                    .map(CustomerId::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                "polls still running after the shutdown grace were abandoned; none of them was recorded"
            );
        }
        stopped
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
