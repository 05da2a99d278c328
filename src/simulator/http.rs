//! The simulator's routes: the scan profile endpoints as AvePoint serves
//! them, plus the `/_sim/` control endpoints that tests and demos use.
//!
//! This file owns the HTTP side only: authorization of API calls, the
//! response envelopes and paging, status codes and headers. What the data is
//! and how commands change it live in `state` and `control`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use url::form_urlencoded;

use super::auth;
use super::control::{Command, ControlError};
use super::faults;
use super::state::{request_id, Customer, Shape, SharedState, SimState};

const PROFILES_PATH: &str = "/partner/external/v3/general/customers/{customer_id}/scan-profiles";
/// OData pages hold this many profiles unless `SetShape` says otherwise:
/// small, so even the default seed exercises paging.
const ODATA_PAGE_SIZE: usize = 2;
const BATCH_DEFAULT_PAGE_SIZE: usize = 50;
const BATCH_MAX_PAGE_SIZE: usize = 100;

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub state: SharedState,
    /// Used for absolute links when a request carries no `Host` header.
    base_url: Arc<str>,
}

pub(crate) fn router(state: SharedState, base_url: String) -> Router {
    let app = App {
        state,
        base_url: base_url.into(),
    };
    Router::new()
        .route("/connect/token", post(auth::token))
        .route(PROFILES_PATH, get(list_profiles))
        .route(&format!("{PROFILES_PATH}/batch"), post(batch_profiles))
        .route("/_sim/commands", post(control_command))
        .route("/_sim/state", get(sim_state))
        .route("/_sim/counters", get(sim_counters))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            faults::intercept,
        ))
        .with_state(app)
}

/// Why an API call was refused.
#[derive(Debug)]
enum ApiError {
    InvalidToken,
    CustomerOutOfScope(String),
    BadParameter(&'static str),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::InvalidToken => {
                let body = Json(json!({"error": "invalid_token"}));
                let challenge = HeaderValue::from_static("Bearer error=\"invalid_token\"");
                (
                    StatusCode::UNAUTHORIZED,
                    [(WWW_AUTHENTICATE, challenge)],
                    body,
                )
                    .into_response()
            }
            ApiError::CustomerOutOfScope(customer) => {
                let message = format!("customer {customer} is outside this app's customer scope");
                let body = json!({"error": "forbidden", "message": message});
                (StatusCode::FORBIDDEN, Json(body)).into_response()
            }
            ApiError::BadParameter(name) => {
                let body = json!({"error": "bad_request", "message": format!("invalid {name}")});
                (StatusCode::BAD_REQUEST, Json(body)).into_response()
            }
        }
    }
}

/// `GET .../customers/{customerId}/scan-profiles`, in the customer's shape.
async fn list_profiles(
    State(app): State<App>,
    Path(customer_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    arrive(&app, &customer_id).await;
    let origin = origin(&headers, &app.base_url);
    let state = app.state.lock();

    let result = authorized_customer(&state, &headers, &customer_id)
        .and_then(|customer| list_body(customer, query.as_deref(), &origin));
    api_response(result)
}

/// `POST .../customers/{customerId}/scan-profiles/batch?pageIndex=&pageSize=`.
async fn batch_profiles(
    State(app): State<App>,
    Path(customer_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    arrive(&app, &customer_id).await;
    let state = app.state.lock();

    let result = authorized_customer(&state, &headers, &customer_id).and_then(|customer| {
        check_batch_body(&body)?;
        let page = BatchPage::parse(query.as_deref(), customer)?;
        Ok(page.body(customer))
    });
    api_response(result)
}

/// Counts an API request as it arrives, then holds its response back as
/// `SetLatency` asked, without holding the lock, so other customers are
/// served meanwhile and a test can see that a slow request is in flight.
async fn arrive(app: &App, customer_id: &str) {
    let latency = {
        let mut state = app.state.lock();
        state.counters.api_requests += 1;
        state.latency(customer_id)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// A valid unexpired bearer token first (401), then a known customer (403,
/// as the real API answers for a customer outside the app's scope).
fn authorized_customer<'a>(
    state: &'a SimState,
    headers: &HeaderMap,
    customer_id: &str,
) -> Result<&'a Customer, ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| h.strip_prefix("Bearer ").map(str::trim));
    if !token.is_some_and(|t| state.token_is_valid(t)) {
        return Err(ApiError::InvalidToken);
    }
    state
        .customer(customer_id)
        .ok_or_else(|| ApiError::CustomerOutOfScope(customer_id.to_owned()))
}

/// Every API answer is JSON and carries a `request-id`, as the real one does.
fn api_response(result: Result<Value, ApiError>) -> Response {
    let mut response = match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    };
    if let Ok(id) = HeaderValue::from_str(&request_id()) {
        response.headers_mut().insert("request-id", id);
    }
    response
}

fn list_body(customer: &Customer, query: Option<&str>, origin: &str) -> Result<Value, ApiError> {
    let profiles = &customer.profiles;
    let body = match customer.behaviour.shape {
        Shape::Array => json!(profiles),
        Shape::DataMetadata => json!({
            "data": profiles,
            "metadata": {"pageIndex": 1, "pageSize": profiles.len(), "totalCount": profiles.len()},
        }),
        Shape::OData => {
            let skip = number_param(query, "$skip")?.unwrap_or(0);
            odata_page(customer, skip, origin)
        }
    };
    Ok(body)
}

/// One OData page from `skip`; every page but the last links to the next.
fn odata_page(customer: &Customer, skip: usize, origin: &str) -> Value {
    let size = customer.behaviour.page_size.unwrap_or(ODATA_PAGE_SIZE);
    let total = customer.profiles.len();
    let end = skip.saturating_add(size).min(total);
    let page = customer.profiles.get(skip..end).unwrap_or_default();

    let mut body = json!({
        "@odata.context": format!("{origin}/$metadata#scanProfiles"),
        "value": page,
    });
    if end < total {
        let path = PROFILES_PATH.replace("{customer_id}", &customer.id);
        body["@odata.nextLink"] = json!(format!("{origin}{path}?$skip={end}"));
    }
    body
}

/// The batch endpoint's paging parameters, already capped.
struct BatchPage {
    index: usize,
    size: usize,
}

impl BatchPage {
    fn parse(query: Option<&str>, customer: &Customer) -> Result<Self, ApiError> {
        let index = number_param(query, "pageIndex")?.unwrap_or(1);
        let size = number_param(query, "pageSize")?.unwrap_or(BATCH_DEFAULT_PAGE_SIZE);
        if index == 0 {
            return Err(ApiError::BadParameter("pageIndex"));
        }
        if size == 0 {
            return Err(ApiError::BadParameter("pageSize"));
        }
        let cap = customer.behaviour.page_size.unwrap_or(BATCH_MAX_PAGE_SIZE);
        let size = size.min(BATCH_MAX_PAGE_SIZE).min(cap);
        Ok(BatchPage { index, size })
    }

    fn body(&self, customer: &Customer) -> Value {
        let total = customer.profiles.len();
        let start = (self.index - 1).saturating_mul(self.size).min(total);
        let end = start.saturating_add(self.size).min(total);
        json!({
            "data": &customer.profiles[start..end],
            "metadata": {"pageIndex": self.index, "pageSize": self.size, "totalCount": total},
        })
    }
}

/// The body may be empty or a JSON object (`{}` or a filter the simulator
/// ignores); anything else is a bad request, as it would be upstream.
fn check_batch_body(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(_)) => Ok(()),
        _ => Err(ApiError::BadParameter("request body")),
    }
}

/// A non-negative integer query parameter; absent is `None`.
fn number_param(query: Option<&str>, name: &'static str) -> Result<Option<usize>, ApiError> {
    let query = query.unwrap_or_default();
    let Some((_, value)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name) else {
        return Ok(None);
    };
    value
        .parse()
        .map(Some)
        .map_err(|_| ApiError::BadParameter(name))
}

/// The origin the client used, so absolute links stay on it.
fn origin(headers: &HeaderMap, fallback: &str) -> String {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match host {
        Some(host) => format!("http://{host}"),
        None => fallback.to_owned(),
    }
}

/// `POST /_sim/commands`: one [`Command`] as JSON.
async fn control_command(State(app): State<App>, body: Bytes) -> Response {
    let command: Command = match serde_json::from_slice(&body) {
        Ok(command) => command,
        Err(error) => {
            let message = format!("invalid command: {error}");
            return error_body(StatusCode::BAD_REQUEST, &message);
        }
    };
    let applied = command.apply(&mut app.state.lock());
    match applied {
        Ok(result) => Json(result).into_response(),
        Err(error) => error_body(control_status(&error), &error.to_string()),
    }
}

fn control_status(error: &ControlError) -> StatusCode {
    match error {
        ControlError::UnknownCustomer { .. } | ControlError::UnknownProfile { .. } => {
            StatusCode::NOT_FOUND
        }
        ControlError::ZeroPageSize | ControlError::InvalidFault(_) => StatusCode::BAD_REQUEST,
    }
}

/// `GET /_sim/state`.
async fn sim_state(State(app): State<App>) -> Json<Value> {
    Json(app.state.lock().summary())
}

/// `GET /_sim/counters`: only the request counters, small whatever the
/// number of customers, for a benchmark to read between cycles.
async fn sim_counters(State(app): State<App>) -> Json<Value> {
    let state = app.state.lock();
    Json(json!({"counters": state.counters, "profiles": state.profile_count()}))
}

async fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, "not_found")
}

fn error_body(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}
