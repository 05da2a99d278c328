//! Fault injection: the ways the simulated API misbehaves on request, so the
//! tests can prove that scanwatch neither loses nor invents a change whatever
//! the server does.
//!
//! A fault is armed by [`Command::InjectFault`](super::Command::InjectFault)
//! for the token endpoint or the scan profile endpoints, for one customer or
//! all, and fires for the next N matching requests, or with a seeded
//! probability, optionally after letting some matching requests through (a
//! page in the middle of a paged list). The first armed fault that matches a
//! request decides its answer; a fault that has fired its count is dropped.
//!
//! This file owns what a fault does to a response. It sits in front of the
//! routes as a middleware, so the handlers in `http` and `auth` know nothing
//! of it; the control endpoints are never faulted.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::http::App;

/// Where a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultTarget {
    /// `POST /connect/token`.
    Token,
    /// The scan profile endpoints: the `GET` list and the paged `POST .../batch`.
    List,
}

/// What a faulted request gets instead of (or on top of) its normal answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// This status, with a `Retry-After` header holding `retry_after`
    /// verbatim (seconds or an HTTP date) and `body` when given.
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// The normal answer, `delay_ms` late.
    Delay { delay_ms: u64 },
    /// The normal answer cut after `keep_bytes` (half of it by default), sent
    /// as a complete response: valid HTTP, broken JSON.
    Truncate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_bytes: Option<usize>,
    },
    /// The normal answer's headers and its first `keep_bytes` (half by
    /// default), then the connection is closed before the announced length.
    ResetMidBody {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_bytes: Option<usize>,
    },
    /// An HTML page, as a proxy's maintenance page, with status 200 unless given.
    Html {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// `body` verbatim, with status 200 and `application/json` unless given.
    Raw {
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
    },
    /// A 200 body of `bytes` bytes (a JSON array padded with spaces), streamed
    /// without a `Content-Length`, so only counting tells it is too large.
    Oversized { bytes: usize },
}

/// One armed fault and what is left of its budget.
#[derive(Debug)]
struct Armed {
    id: u64,
    customer: Option<String>,
    target: FaultTarget,
    fault: Fault,
    /// Matching requests still to let through before firing.
    after: u32,
    /// Fires left; `None` is unlimited.
    remaining: Option<u32>,
    /// Chance of firing per matching request; `None` is always.
    probability: Option<f64>,
    rng: ChaCha8Rng,
}

impl Armed {
    fn matches(&self, target: FaultTarget, customer: Option<&str>) -> bool {
        self.target == target
            && match (&self.customer, customer) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            }
    }

    /// Whether this matching request is faulted; spends the budget if so.
    fn fire(&mut self) -> bool {
        if self.after > 0 {
            self.after -= 1;
            return false;
        }
        if let Some(p) = self.probability {
            if !self.rng.random_bool(p) {
                return false;
            }
        }
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1;
        }
        true
    }

    fn spent(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// Why a fault cannot be armed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("probability must be between 0 and 1")]
    Probability,
    #[error("count must be at least 1 when given")]
    ZeroCount,
    #[error("token requests belong to no customer; leave customer out for target token")]
    CustomerOnToken,
    #[error("status {0} is not an HTTP status code")]
    Status(u16),
}

/// The armed faults of one simulator, in arming order.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    armed: Vec<Armed>,
    next_id: u64,
    /// Requests answered by a fault, for `GET /_sim/state` and tests.
    pub fired: u64,
}

/// What [`Faults::arm`] takes: the fields of `InjectFault`.
#[derive(Debug)]
pub(crate) struct Arming {
    pub customer: Option<String>,
    pub target: FaultTarget,
    pub fault: Fault,
    pub count: Option<u32>,
    pub probability: Option<f64>,
    pub seed: Option<u64>,
    pub after: Option<u32>,
}

impl Faults {
    /// Arms a fault; returns its ID.
    pub fn arm(&mut self, arming: Arming) -> Result<u64, FaultError> {
        if arming
            .probability
            .is_some_and(|p| !(0.0..=1.0).contains(&p))
        {
            return Err(FaultError::Probability);
        }
        if arming.count == Some(0) {
            return Err(FaultError::ZeroCount);
        }
        if arming.target == FaultTarget::Token && arming.customer.is_some() {
            return Err(FaultError::CustomerOnToken);
        }
        let status = match &arming.fault {
            Fault::Status { status, .. } => Some(*status),
            Fault::Html { status } | Fault::Raw { status, .. } => *status,
            _ => None,
        };
        if let Some(status) = status.filter(|s| StatusCode::from_u16(*s).is_err()) {
            return Err(FaultError::Status(status));
        }
        self.next_id += 1;
        self.armed.push(Armed {
            id: self.next_id,
            customer: arming.customer,
            target: arming.target,
            fault: arming.fault,
            after: arming.after.unwrap_or(0),
            remaining: arming.count,
            probability: arming.probability,
            rng: ChaCha8Rng::seed_from_u64(arming.seed.unwrap_or(0)),
        });
        Ok(self.next_id)
    }

    /// Disarms every fault; returns how many were armed.
    pub fn clear(&mut self) -> usize {
        let count = self.armed.len();
        self.armed.clear();
        count
    }

    /// How many faults are still armed.
    pub fn armed(&self) -> usize {
        self.armed.len()
    }

    /// The fault this request gets, if any, spending its budget.
    fn take(&mut self, target: FaultTarget, customer: Option<&str>) -> Option<Fault> {
        let index = self
            .armed
            .iter_mut()
            .position(|a| a.matches(target, customer) && a.fire())?;
        let fault = self.armed[index].fault.clone();
        tracing::debug!(id = self.armed[index].id, ?fault, "simulator fault fired");
        if self.armed[index].spent() {
            self.armed.remove(index);
        }
        self.fired += 1;
        Some(fault)
    }
}

/// The middleware in front of every route: decides whether this request is
/// faulted, and shapes its answer if so.
pub(crate) async fn intercept(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some((target, customer)) = classify(request.uri().path()) else {
        return next.run(request).await;
    };
    let fault = app.state.lock().faults.take(target, customer.as_deref());
    let Some(fault) = fault else {
        return next.run(request).await;
    };
    let response = match fault {
        Fault::Delay { delay_ms } => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            return next.run(request).await;
        }
        Fault::Truncate { keep_bytes } => {
            let body = normal_body(next.run(request).await).await;
            let keep = keep_bytes.unwrap_or(body.len() / 2).min(body.len());
            return raw(200, "application/json", body.slice(..keep));
        }
        Fault::ResetMidBody { keep_bytes } => {
            let body = normal_body(next.run(request).await).await;
            return reset_mid_body(body, keep_bytes);
        }
        Fault::Status {
            status,
            retry_after,
            body,
        } => status_response(status, retry_after, body.unwrap_or_default()),
        Fault::Html { status } => raw(
            status.unwrap_or(200),
            "text/html; charset=utf-8",
            Bytes::from_static(
                b"<!DOCTYPE html><html><head><title>Maintenance</title></head>\
                  <body><h1>We'll be back soon</h1></body></html>",
            ),
        ),
        Fault::Raw {
            body,
            status,
            content_type,
        } => raw(
            status.unwrap_or(200),
            content_type.as_deref().unwrap_or("application/json"),
            body.into(),
        ),
        Fault::Oversized { bytes } => oversized(bytes),
    };
    // The handler never ran, so the request is counted here.
    count_request(&app, target);
    response
}

/// `Some((target, customer))` for the faultable routes.
fn classify(path: &str) -> Option<(FaultTarget, Option<String>)> {
    if path == "/connect/token" {
        return Some((FaultTarget::Token, None));
    }
    let rest = path.strip_prefix("/partner/external/v3/general/customers/")?;
    let mut segments = rest.split('/');
    let customer = segments.next()?;
    (segments.next() == Some("scan-profiles"))
        .then(|| (FaultTarget::List, Some(customer.to_owned())))
}

fn count_request(app: &App, target: FaultTarget) {
    let mut state = app.state.lock();
    match target {
        FaultTarget::Token => state.counters.token_requests += 1,
        FaultTarget::List => state.counters.api_requests += 1,
    }
}

/// A bare status, with `Retry-After` copied verbatim when given.
fn status_response(status: u16, retry_after: Option<String>, body: String) -> Response {
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = raw(status, content_type, body.into());
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

fn raw(status: u16, content_type: &str, body: Bytes) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

async fn normal_body(response: Response) -> Bytes {
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default()
}

/// Announces the whole length, sends part of it, then fails the body, which
/// makes the server close the connection mid-response.
fn reset_mid_body(body: Bytes, keep_bytes: Option<usize>) -> Response {
    let length = body.len();
    let keep = keep_bytes
        .unwrap_or(length / 2)
        .min(length.saturating_sub(1));
    let head = body.slice(..keep);
    let chunks = futures_util::stream::unfold(0u8, move |step| {
        let head = head.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(head), 1)),
                1 => {
                    // Lets the first part reach the client before the reset.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let reset = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated reset mid-body",
                    );
                    Some((Err(reset), 2))
                }
                _ => None,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length.max(1)));
    response
}

/// `[` + spaces + `]`, `bytes` long in all, streamed in 64 KiB chunks.
fn oversized(bytes: usize) -> Response {
    const CHUNK: usize = 64 * 1024;
    let padding = Bytes::from(vec![b' '; CHUNK]);
    let total = bytes.max(2);
    let chunks = futures_util::stream::unfold(0usize, move |sent| {
        let padding = padding.clone();
        async move {
            if sent >= total {
                return None;
            }
            let size = CHUNK.min(total - sent);
            let mut chunk = padding.slice(..size).to_vec();
            if sent == 0 {
                chunk[0] = b'[';
            }
            if sent + size == total {
                chunk[size - 1] = b']';
            }
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), sent + size))
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arming(target: FaultTarget, customer: Option<&str>) -> Arming {
        Arming {
            customer: customer.map(str::to_owned),
            target,
            fault: Fault::Status {
                status: 500,
                retry_after: None,
                body: None,
            },
            count: None,
            probability: None,
            seed: None,
            after: None,
        }
    }

    #[test]
    fn a_counted_fault_fires_that_many_times_then_disarms() {
        let mut faults = Faults::default();
        faults
            .arm(Arming {
                count: Some(2),
                ..arming(FaultTarget::List, Some("AbC"))
            })
            .unwrap();
        let fired: Vec<bool> = (0..4)
            .map(|_| faults.take(FaultTarget::List, Some("abc")).is_some())
            .collect();
        assert_eq!(fired, [true, true, false, false]);
        assert_eq!(faults.armed(), 0);
        assert_eq!(faults.fired, 2);
    }

    #[test]
    fn a_fault_matches_only_its_target_and_customer() {
        let mut faults = Faults::default();
        faults.arm(arming(FaultTarget::List, Some("a"))).unwrap();
        assert!(faults.take(FaultTarget::List, Some("b")).is_none());
        assert!(faults.take(FaultTarget::Token, None).is_none());
        assert!(faults.take(FaultTarget::List, Some("A")).is_some());
    }

    #[test]
    fn after_lets_that_many_matching_requests_through_first() {
        let mut faults = Faults::default();
        faults
            .arm(Arming {
                after: Some(1),
                count: Some(1),
                ..arming(FaultTarget::List, None)
            })
            .unwrap();
        let fired: Vec<bool> = (0..3)
            .map(|_| faults.take(FaultTarget::List, Some("x")).is_some())
            .collect();
        assert_eq!(fired, [false, true, false]);
    }

    #[test]
    fn a_probability_fault_is_reproducible_from_its_seed() {
        let run = |seed| {
            let mut faults = Faults::default();
            faults
                .arm(Arming {
                    probability: Some(0.5),
                    seed: Some(seed),
                    ..arming(FaultTarget::Token, None)
                })
                .unwrap();
            (0..64)
                .map(|_| faults.take(FaultTarget::Token, None).is_some())
                .collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        assert_ne!(first, run(8));
        let fired = first.iter().filter(|f| **f).count();
        assert!((16..=48).contains(&fired), "{fired} of 64 fired");
    }

    #[test]
    fn nonsense_arming_is_refused() {
        let mut faults = Faults::default();
        let bad = [
            (
                Arming {
                    probability: Some(1.5),
                    ..arming(FaultTarget::List, None)
                },
                FaultError::Probability,
            ),
            (
                Arming {
                    count: Some(0),
                    ..arming(FaultTarget::List, None)
                },
                FaultError::ZeroCount,
            ),
            (
                arming(FaultTarget::Token, Some("a")),
                FaultError::CustomerOnToken,
            ),
            (
                Arming {
                    fault: Fault::Raw {
                        body: String::new(),
                        status: Some(1000),
                        content_type: None,
                    },
                    ..arming(FaultTarget::List, None)
                },
                FaultError::Status(1000),
            ),
        ];
        for (arming, error) in bad {
            assert_eq!(faults.arm(arming), Err(error));
        }
        assert_eq!(faults.armed(), 0);
    }

    #[test]
    fn the_list_and_token_routes_are_classified_and_control_routes_are_not() {
        assert_eq!(
            classify("/partner/external/v3/general/customers/C1/scan-profiles"),
            Some((FaultTarget::List, Some("C1".to_owned())))
        );
        assert_eq!(
            classify("/partner/external/v3/general/customers/C1/scan-profiles/batch"),
            Some((FaultTarget::List, Some("C1".to_owned())))
        );
        assert_eq!(classify("/connect/token"), Some((FaultTarget::Token, None)));
        assert_eq!(classify("/_sim/commands"), None);
        assert_eq!(classify("/_sim/state"), None);
    }
}
