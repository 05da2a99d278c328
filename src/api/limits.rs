//! How hard scanwatch may press the API: polls in flight, requests per
//! second, and pauses a server asked for with `Retry-After`.
//!
//! One [`Limits`] is shared by every request of a process (token requests
//! included), so `poll` and `run` behave alike and a `Retry-After` received by
//! one poll holds back every other request to that host.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
pub struct Limits {
    polls: Arc<Semaphore>,
    rate: Option<DefaultDirectRateLimiter>,
    /// Per origin (`scheme://host:port`), the instant before which no request may start.
    paused_until: Mutex<HashMap<String, Instant>>,
}

impl Limits {
    pub fn new(max_concurrency: usize, max_requests_per_second: Option<u32>) -> Limits {
        let rate = max_requests_per_second
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_second(n)));
        Limits {
            polls: Arc::new(Semaphore::new(max_concurrency.max(1))),
            rate,
            paused_until: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a place among the polls in flight; the place is held until
    /// the permit is dropped.
    pub async fn poll_permit(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.polls)
            .acquire_owned()
            .await
            .expect("the poll semaphore is never closed")
    }

    /// Waits until a request to `origin` may start: after any pause that
    /// origin asked for, and within the request rate.
    pub async fn request_turn(&self, origin: &str) {
        loop {
            let until = self.pause_deadline(origin);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
    }

    /// Holds back every request to `origin` for `wait`.
    pub fn pause(&self, origin: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("pause map lock poisoned");
        let entry = paused.entry(origin.to_owned()).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    fn pause_deadline(&self, origin: &str) -> Option<Instant> {
        let paused = self.paused_until.lock().expect("pause map lock poisoned");
        paused.get(origin).copied()
    }
}

/// Exponential backoff with full jitter: a random wait between zero and
/// `base * 2^attempt`, capped, so that many clients failing together do not
/// retry together.
pub fn backoff(attempt: u32) -> Duration {
    const BASE: Duration = Duration::from_millis(250);
    const CAP: Duration = Duration::from_secs(30);
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    let millis = rand::rng().random_range(0..=ceiling.as_millis() as u64);
    Duration::from_millis(millis)
}

/// Reads a `Retry-After` header: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn retry_after_in_seconds_is_read() {
        assert_eq!(
            parse_retry_after("120", SystemTime::now()),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn retry_after_as_an_http_date_is_read() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_that_is_neither_is_ignored() {
        assert_eq!(parse_retry_after("soon", SystemTime::now()), None);
    }

    #[test]
    fn backoff_stays_within_its_growing_ceiling() {
        for attempt in 0..20 {
            let ceiling = Duration::from_millis(250)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(30));
            for _ in 0..50 {
                assert!(backoff(attempt) <= ceiling);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_requests_to_that_origin_only() {
        let limits = Limits::new(1, None);
        limits.pause("https://a", Duration::from_secs(5));
        let start = Instant::now();
        limits.request_turn("https://b").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limits.request_turn("https://a").await;
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_pause_never_shortens_a_longer_one() {
        let limits = Limits::new(1, None);
        limits.pause("https://a", Duration::from_secs(10));
        limits.pause("https://a", Duration::from_secs(1));
        let start = Instant::now();
        limits.request_turn("https://a").await;
        assert!(start.elapsed() >= Duration::from_secs(10));
    }

    #[tokio::test]
    async fn poll_permits_are_bounded() {
        let limits = Limits::new(2, None);
        let first = limits.poll_permit().await;
        let _second = limits.poll_permit().await;
        assert!(Arc::clone(&limits.polls).try_acquire_owned().is_err());
        drop(first);
        assert!(Arc::clone(&limits.polls).try_acquire_owned().is_ok());
    }
}
