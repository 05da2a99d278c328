//! Scheduler timing under tokio's paused clock, with an injected poll that
//! only sleeps and records when it ran.

use std::sync::{Arc, Mutex};

use super::*;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

fn customer(n: u8) -> Customer {
    Customer {
        id: CustomerId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap(),
        name: None,
    }
}

fn timing(interval: Duration, jitter: Duration, shutdown_grace: Duration) -> Timing {
    Timing {
        interval,
        jitter,
        shutdown_grace,
    }
}

/// One poll as the injected function saw it, in time since the test began.
#[derive(Debug, Clone)]
struct Polled {
    id: CustomerId,
    start: Duration,
    end: Option<Duration>,
}

#[derive(Clone)]
struct Recorder {
    t0: Instant,
    polls: Arc<Mutex<Vec<Polled>>>,
    in_flight: Arc<Mutex<HashMap<CustomerId, usize>>>,
    overlaps: Arc<Mutex<usize>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            t0: Instant::now(),
            polls: Arc::default(),
            in_flight: Arc::default(),
            overlaps: Arc::default(),
        }
    }

    /// A poll function whose n-th poll of a customer lasts `length(id, n)`.
    fn poll(
        &self,
        length: impl Fn(&CustomerId, usize) -> Duration + Send + 'static,
    ) -> impl FnMut(Customer) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        let recorder = self.clone();
        move |customer: Customer| {
            let recorder = recorder.clone();
            let nth = recorder.of(&customer.id).len();
            let length = length(&customer.id, nth);
            Box::pin(async move {
                let index = {
                    let mut polls = recorder.polls.lock().unwrap();
                    polls.push(Polled {
                        id: customer.id.clone(),
                        start: recorder.t0.elapsed(),
                        end: None,
                    });
                    polls.len() - 1
                };
                {
                    let mut in_flight = recorder.in_flight.lock().unwrap();
                    let count = in_flight.entry(customer.id.clone()).or_default();
                    *count += 1;
                    if *count > 1 {
                        *recorder.overlaps.lock().unwrap() += 1;
                    }
                }
                let _leave = Leave(recorder.clone(), customer.id.clone());
                tokio::time::sleep(length).await;
                recorder.polls.lock().unwrap()[index].end = Some(recorder.t0.elapsed());
            })
        }
    }

    fn of(&self, id: &CustomerId) -> Vec<Polled> {
        let polls = self.polls.lock().unwrap();
        polls.iter().filter(|p| &p.id == id).cloned().collect()
    }

    fn starts(&self, id: &CustomerId) -> Vec<Duration> {
        self.of(id).iter().map(|p| p.start).collect()
    }
}

/// Counts a poll out of flight however it ends, including by being dropped.
struct Leave(Recorder, CustomerId);

impl Drop for Leave {
    fn drop(&mut self) {
        if let Some(count) = self.0.in_flight.lock().unwrap().get_mut(&self.1) {
            *count -= 1;
        }
    }
}

fn roster(customers: &[Customer], since: &[(usize, Duration)]) -> watch::Receiver<Roster> {
    let since_last_poll = since
        .iter()
        .map(|(i, d)| (customers[*i].id.clone(), *d))
        .collect();
    let (sender, receiver) = watch::channel(Roster {
        customers: customers.to_vec(),
        since_last_poll,
    });
    // A dropped sender keeps the last roster, which is what these tests want.
    drop(sender);
    receiver
}

fn ignore<T>(_: Event<T>) {}

#[tokio::test(start_paused = true)]
async fn every_poll_falls_within_its_slot_and_the_jitter_for_a_thousand_intervals() {
    let recorder = Recorder::new();
    let one = customer(1);
    let timing = timing(MINUTE, 10 * SECOND, SECOND);

    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| SECOND), ignore);
    let run_for = MINUTE * 1000 + 30 * SECOND;
    scheduler
        .run(
            roster(std::slice::from_ref(&one), &[]),
            tokio::time::sleep(run_for),
        )
        .await;

    let starts = recorder.starts(&one.id);
    assert_eq!(starts.len(), 1001, "one poll per interval, plus the first");
    let mut offsets = HashSet::new();
    for (n, start) in starts.iter().enumerate() {
        let slot = MINUTE * n as u32;
        assert!(
            *start >= slot && *start <= slot + 10 * SECOND,
            "poll {n} started at {start:?}, outside {slot:?} + 10s"
        );
        offsets.insert(*start - slot);
    }
    assert!(offsets.len() > 100, "each poll draws a fresh offset");
}

#[tokio::test(start_paused = true)]
async fn a_customer_polled_five_minutes_ago_is_next_polled_ten_minutes_later() {
    let recorder = Recorder::new();
    let one = customer(1);
    let timing = timing(15 * MINUTE, 30 * SECOND, SECOND);

    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| SECOND), ignore);
    let roster = roster(std::slice::from_ref(&one), &[(0, 5 * MINUTE)]);
    scheduler.run(roster, tokio::time::sleep(45 * MINUTE)).await;

    let starts = recorder.starts(&one.id);
    assert_eq!(starts.len(), 3);
    for (n, start) in starts.iter().enumerate() {
        let slot = 10 * MINUTE + 15 * MINUTE * n as u32;
        assert!(
            *start >= slot && *start <= slot + 30 * SECOND,
            "poll {n} at {start:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn overdue_and_never_polled_customers_are_spread_evenly_over_a_minute() {
    let recorder = Recorder::new();
    let customers: Vec<Customer> = (1..=7).map(customer).collect();
    let timing = timing(15 * MINUTE, Duration::ZERO, SECOND);

    // 0..3 never polled, 3..6 overdue by different amounts, 6 polled recently.
    let since = [
        (3, 20 * MINUTE),
        (4, 3 * 60 * MINUTE),
        (5, 15 * MINUTE),
        (6, MINUTE),
    ];
    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| SECOND), ignore);
    let roster = roster(&customers, &since);
    scheduler.run(roster, tokio::time::sleep(20 * MINUTE)).await;

    let first = |i: usize| recorder.starts(&customers[i].id)[0];
    // Never polled first (by ID), then the longest overdue first.
    let expected_order = [0, 1, 2, 4, 3, 5];
    for (k, i) in expected_order.iter().enumerate() {
        assert_eq!(first(*i), 10 * SECOND * k as u32, "customer {i} is {k}th");
    }
    assert_eq!(first(6), 14 * MINUTE, "the recent one resumes its own slot");
}

#[tokio::test(start_paused = true)]
async fn with_an_interval_under_a_minute_the_spread_window_is_the_interval() {
    let recorder = Recorder::new();
    let customers: Vec<Customer> = (1..=4).map(customer).collect();
    let timing = timing(20 * SECOND, Duration::ZERO, SECOND);

    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| SECOND), ignore);
    let roster = roster(&customers, &[]);
    scheduler.run(roster, tokio::time::sleep(19 * SECOND)).await;

    let firsts: Vec<Duration> = customers
        .iter()
        .map(|c| recorder.starts(&c.id)[0])
        .collect();
    assert_eq!(
        firsts,
        [0, 5, 10, 15].map(|s| s * SECOND).to_vec(),
        "four customers, 5 s apart within 20 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_poll_that_overruns_delays_the_next_until_it_ends_and_never_overlaps() {
    let recorder = Recorder::new();
    let one = customer(1);
    let timing = timing(10 * SECOND, Duration::ZERO, SECOND);

    // The first poll takes 25 s (past two slots), the others 1 s.
    let length = |_: &CustomerId, n: usize| if n == 0 { 25 * SECOND } else { SECOND };
    let scheduler = Scheduler::new(timing, recorder.poll(length), ignore);
    scheduler
        .run(
            roster(std::slice::from_ref(&one), &[]),
            tokio::time::sleep(55 * SECOND),
        )
        .await;

    let polls = recorder.of(&one.id);
    let starts: Vec<Duration> = polls.iter().map(|p| p.start).collect();
    assert_eq!(
        starts,
        [0, 25, 30, 40, 50].map(|s| s * SECOND).to_vec(),
        "the late poll starts as the slow one ends; the slot at 10 s is skipped; \
         later ones keep their slots"
    );
    for pair in polls.windows(2) {
        assert!(pair[1].start >= pair[0].end.unwrap(), "{pair:?} overlap");
    }
    assert_eq!(*recorder.overlaps.lock().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_a_poll_in_flight_finish_within_the_grace() {
    let recorder = Recorder::new();
    let one = customer(1);
    let timing = timing(MINUTE, Duration::ZERO, 10 * SECOND);

    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| 5 * SECOND), ignore);
    let stopped = scheduler
        .run(
            roster(std::slice::from_ref(&one), &[]),
            tokio::time::sleep(2 * SECOND),
        )
        .await;

    assert_eq!(
        recorder.t0.elapsed(),
        5 * SECOND,
        "returns as the poll ends"
    );
    assert_eq!(recorder.of(&one.id)[0].end, Some(5 * SECOND));
    assert_eq!(
        stopped,
        Stopped {
            finished_in_grace: 1,
            abandoned: vec![]
        }
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_a_poll_still_running_when_the_grace_ends() {
    let recorder = Recorder::new();
    let (fast, slow) = (customer(1), customer(2));
    let timing = timing(MINUTE, Duration::ZERO, 10 * SECOND);

    let slow_id = slow.id.clone();
    let length = move |id: &CustomerId, _: usize| {
        if *id == slow_id {
            10 * MINUTE
        } else {
            SECOND
        }
    };
    let scheduler = Scheduler::new(timing, recorder.poll(length), ignore);
    let roster = roster(&[fast.clone(), slow.clone()], &[]);
    let stopped = scheduler.run(roster, tokio::time::sleep(40 * SECOND)).await;

    assert_eq!(
        recorder.t0.elapsed(),
        50 * SECOND,
        "shutdown at 40 s + 10 s grace"
    );
    assert_eq!(stopped.abandoned, vec![slow.id.clone()]);
    assert_eq!(
        recorder.of(&slow.id)[0].end,
        None,
        "the slow poll never finished"
    );
    assert_eq!(
        recorder.in_flight.lock().unwrap().get(&slow.id),
        Some(&0),
        "its future was dropped before run returned"
    );
    assert_eq!(
        recorder.of(&fast.id).len(),
        1,
        "no poll starts after shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_starts_added_customers_and_stops_removed_ones() {
    let recorder = Recorder::new();
    let (one, two) = (customer(1), customer(2));
    let timing = timing(10 * SECOND, Duration::ZERO, SECOND);
    let (sender, receiver) = watch::channel(Roster {
        customers: vec![one.clone()],
        since_last_poll: HashMap::new(),
    });

    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| SECOND), ignore);
    let run = tokio::spawn(scheduler.run(receiver, tokio::time::sleep(60 * SECOND)));
    tokio::time::sleep(25 * SECOND).await;
    sender.send_replace(Roster {
        customers: vec![two.clone()],
        // Polled 4 s ago by someone else: due in 6 s.
        since_last_poll: HashMap::from([(two.id.clone(), 4 * SECOND)]),
    });
    run.await.unwrap();

    assert_eq!(recorder.starts(&one.id), [0, 10, 20].map(|s| s * SECOND));
    assert_eq!(
        recorder.starts(&two.id),
        [31, 41, 51].map(|s| s * SECOND),
        "the added customer resumes from its last poll"
    );
}

#[tokio::test(start_paused = true)]
async fn a_customer_removed_and_readded_during_its_poll_is_never_polled_twice_at_once() {
    let recorder = Recorder::new();
    let one = customer(1);
    let timing = timing(10 * SECOND, Duration::ZERO, SECOND);
    let with_one = Roster {
        customers: vec![one.clone()],
        since_last_poll: HashMap::new(),
    };
    let (sender, receiver) = watch::channel(with_one.clone());

    let scheduler = Scheduler::new(timing, recorder.poll(|_, _| 8 * SECOND), ignore);
    let run = tokio::spawn(scheduler.run(receiver, tokio::time::sleep(35 * SECOND)));
    tokio::time::sleep(2 * SECOND).await;
    sender.send_replace(Roster::default());
    tokio::time::sleep(SECOND).await;
    sender.send_replace(with_one);
    run.await.unwrap();

    assert_eq!(
        recorder.starts(&one.id),
        [0, 10, 20, 30].map(|s| s * SECOND),
        "it keeps its slots"
    );
    assert_eq!(*recorder.overlaps.lock().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_coming_while_a_poll_is_slow_and_batches_are_reported() {
    let recorder = Recorder::new();
    let customers = [customer(1), customer(2)];
    let timing = timing(2 * MINUTE, Duration::ZERO, SECOND);
    let events = Arc::new(Mutex::new(Vec::new()));

    let seen = Arc::clone(&events);
    let observe = move |event: Event<()>| {
        let name = match event {
            Event::Scheduled { .. } => "scheduled".to_owned(),
            Event::Finished { .. } => "finished".to_owned(),
            Event::Idle { polls } => format!("idle {polls}"),
            Event::Heartbeat => "heartbeat".to_owned(),
            Event::Stopping { in_flight } => format!("stopping {in_flight}"),
        };
        seen.lock().unwrap().push((Instant::now(), name));
    };
    // Polls at 0 s and 30 s, each 40 s long: one batch that ends at 70 s.
    let scheduler =
        Scheduler::new(timing, recorder.poll(|_, _| 40 * SECOND), observe).heartbeat(2 * SECOND);
    scheduler
        .run(roster(&customers, &[]), tokio::time::sleep(80 * SECOND))
        .await;

    let events = events.lock().unwrap();
    let beats = events.iter().filter(|(_, e)| e == "heartbeat").count();
    assert!(beats >= 40, "a beat every 2 s for 80 s, got {beats}");
    let others: Vec<&str> = events
        .iter()
        .map(|(_, e)| e.as_str())
        .filter(|e| *e != "heartbeat")
        .collect();
    assert_eq!(
        others,
        ["scheduled", "finished", "finished", "idle 2", "stopping 0"],
        "two overlapping polls make one batch"
    );
}
