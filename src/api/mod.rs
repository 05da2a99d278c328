//! The AvePoint Graph API client: tokens, limits, retries, paging and body
//! validation, for one call, the customer's scan-profile list.
//!
//! Every rule about how scanwatch talks to the API lives here, so `poll`,
//! `run` and `check-config --probe` all get them: the bearer token is only
//! ever sent to the API's own origin (redirects are refused and next links to
//! another origin fail the poll), bodies are capped, and a response that is
//! not a complete list of valid profiles is an error, never an empty list.

mod auth;
mod certificate;
mod limits;
mod shapes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use url::Url;

pub use auth::{TokenError, TokenSource};
pub use certificate::{CertificateError, ClientCertificate};
pub use limits::Limits;
pub use shapes::{parse_page, Page, ShapeError};

use crate::config::{ApiSettings, AuthSettings, Endpoint, REDACTED};
use crate::customer::CustomerId;
use crate::profile::{Profile, ProfileError};

/// Bodies larger than this are refused: no scan-profile list comes near it,
/// and an unbounded read would let a broken server exhaust memory.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Items asked for per page of the batch endpoint (the API's maximum).
const BATCH_PAGE_SIZE: u32 = 100;

/// Why a list could not be fetched. The message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{message}")]
    Status { status: u16, message: String },
    #[error("{0}")]
    Transport(String),
    #[error(
        "the API asked to wait {} (Retry-After on a {status}), longer than api.max_retry_after ({}); \
         the poll is given up",
        humantime::format_duration(*wait), humantime::format_duration(*max)
    )]
    RetryAfterTooLong {
        status: u16,
        wait: Duration,
        max: Duration,
    },
    #[error("the response body is larger than {limit} bytes; refused")]
    TooLarge { status: u16, limit: usize },
    #[error("the API answered {status} with a body scanwatch cannot read: {source}")]
    Shape { status: u16, source: ShapeError },
    #[error("the API answered {status} with an invalid profile: {source}")]
    Profile { status: u16, source: ProfileError },
    #[error("{message}")]
    Paging { status: u16, message: String },
}

impl FetchError {
    /// The HTTP status behind the failure, when there was a response.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            FetchError::Token(_) | FetchError::Transport(_) => None,
            FetchError::Status { status, .. }
            | FetchError::RetryAfterTooLong { status, .. }
            | FetchError::TooLarge { status, .. }
            | FetchError::Shape { status, .. }
            | FetchError::Profile { status, .. }
            | FetchError::Paging { status, .. } => Some(*status),
        }
    }
}

/// A complete, validated list.
#[derive(Debug)]
pub struct FetchedList {
    pub profiles: Vec<Profile>,
    pub http_status: u16,
    pub pages: u32,
    /// False when only the first page was asked for ([`ApiClient::probe`])
    /// and the list goes on past it.
    pub complete: bool,
    /// SHA-256 of the response bodies, in page order: equal bytes are an
    /// equal list, so the store can recognise an unchanged list by this
    /// alone, without serialising every profile again.
    pub digest: [u8; 32],
}

/// A response read whole.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

pub struct ApiClient {
    http: reqwest::Client,
    settings: ApiSettings,
    origin: String,
    tokens: TokenSource,
    limits: Arc<Limits>,
    body_limit: usize,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.settings.base_url.as_str())
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(api: &ApiSettings, auth: &AuthSettings) -> Result<ApiClient, TokenError> {
        let http = reqwest::Client::builder()
            .timeout(api.timeout)
            .connect_timeout(api.timeout)
            // A redirect could carry the bearer token to another host; the
            // API has no reason to redirect, so any redirect is an error.
            .redirect(reqwest::redirect::Policy::none())
            // No more idle keep-alive connections than polls can use at once:
            // the pool otherwise keeps whatever a burst of returns left open.
            .pool_max_idle_per_host(api.max_concurrency)
            .user_agent(concat!("scanwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TokenError::Setup(error_chain(&e)))?;
        let limits = Arc::new(Limits::new(
            api.max_concurrency,
            api.max_requests_per_second,
        ));
        let tokens = TokenSource::new(
            auth,
            &api.token_url,
            &api.scope,
            api.retries,
            http.clone(),
            Arc::clone(&limits),
        )?;
        Ok(ApiClient {
            http,
            origin: origin_of(&api.base_url),
            settings: api.clone(),
            tokens,
            limits,
            body_limit: BODY_LIMIT,
        })
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    /// `api.max_concurrency`: how many polls may be in flight at once.
    pub fn max_concurrency(&self) -> usize {
        self.settings.max_concurrency
    }

    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// The URL of a customer's list; the ID is a validated GUID, so it cannot
    /// change the path.
    pub fn list_url(&self, customer: &CustomerId) -> Url {
        let mut url = self.settings.base_url.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend([
                "partner",
                "external",
                "v3",
                "general",
                "customers",
                customer.as_str(),
                "scan-profiles",
            ]);
        url
    }

    /// Fetches a customer's complete list, following every page.
    ///
    /// Holds one of the `max_concurrency` places for the whole fetch.
    pub async fn fetch_profiles(&self, customer: &CustomerId) -> Result<FetchedList, FetchError> {
        let _permit = self.limits.poll_permit().await;
        let extent = Extent::Whole {
            max_pages: self.settings.max_pages,
        };
        self.fetch_pages(customer, extent).await
    }

    /// Fetches only the first page: enough for `check-config --probe` to
    /// prove that the token, the permission and the endpoint work.
    pub async fn probe(&self, customer: &CustomerId) -> Result<FetchedList, FetchError> {
        let _permit = self.limits.poll_permit().await;
        self.fetch_pages(customer, Extent::FirstPage).await
    }

    async fn fetch_pages(
        &self,
        customer: &CustomerId,
        extent: Extent,
    ) -> Result<FetchedList, FetchError> {
        let mut digest = Sha256::new();
        let read = match self.settings.endpoint {
            Endpoint::List => self.fetch_linked(customer, extent, &mut digest).await?,
            Endpoint::Batch => self.fetch_indexed(customer, extent, &mut digest).await?,
        };
        let Pages {
            status,
            count: pages,
            items,
            complete,
        } = read;
        let profiles = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Profile::parse(i, item))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| FetchError::Profile { status, source })?;
        Ok(FetchedList {
            profiles,
            http_status: status,
            pages,
            complete,
            digest: digest.finalize().into(),
        })
    }

    /// `GET .../scan-profiles`, following `@odata.nextLink` / `nextLink`.
    async fn fetch_linked(
        &self,
        customer: &CustomerId,
        extent: Extent,
        digest: &mut Sha256,
    ) -> Result<Pages, FetchError> {
        let mut url = self.list_url(customer);
        let mut visited = HashSet::new();
        let mut items = Vec::new();
        let mut distinct = DistinctProfiles::default();
        let mut pages = 0;
        loop {
            pages += 1;
            visited.insert(url.to_string());
            let answer = self.send(Method::GET, &url).await?;
            let status = answer.status.as_u16();
            hash_page(digest, &answer.body);
            let page =
                parse_page(&answer.body).map_err(|source| FetchError::Shape { status, source })?;
            let next = match page {
                Page::Array(page_items) => {
                    items.extend(page_items);
                    None
                }
                Page::OData {
                    items: page_items,
                    next_link,
                } => {
                    items.extend(page_items);
                    next_link
                }
                Page::DataMetadata {
                    items: page_items,
                    total_count,
                    next_link,
                } => {
                    let new = distinct.add(&page_items);
                    items.extend(page_items);
                    if distinct.count as u64 >= total_count {
                        None
                    } else if next_link.is_none() || new == 0 {
                        return Err(short_list(status, distinct.count, total_count));
                    } else {
                        next_link
                    }
                }
            };
            let Some(link) = next else {
                return Ok(Pages::complete(status, pages, items));
            };
            if pages >= extent.max_pages() {
                if extent == Extent::FirstPage {
                    return Ok(Pages::partial(status, pages, items));
                }
                return Err(FetchError::Paging {
                    status,
                    message: format!(
                        "the list still had a next link after {pages} pages (api.max_pages); \
                         refusing to read further"
                    ),
                });
            }
            url = self.next_url(&url, &link, status)?;
            if visited.contains(url.as_str()) {
                return Err(FetchError::Paging {
                    status,
                    message: format!(
                        "the next link {url} points at a page already read (a paging loop)"
                    ),
                });
            }
        }
    }

    /// `POST .../scan-profiles/batch?pageIndex=N&pageSize=100` until the items
    /// received reach `metadata.totalCount`.
    async fn fetch_indexed(
        &self,
        customer: &CustomerId,
        extent: Extent,
        digest: &mut Sha256,
    ) -> Result<Pages, FetchError> {
        let mut base = self.list_url(customer);
        base.path_segments_mut()
            .expect("an http(s) URL has a path")
            .push("batch");
        let mut items = Vec::new();
        let mut distinct = DistinctProfiles::default();
        let mut page_index = 1;
        loop {
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("pageIndex", &page_index.to_string())
                .append_pair("pageSize", &BATCH_PAGE_SIZE.to_string());
            let answer = self.send(Method::POST, &url).await?;
            let status = answer.status.as_u16();
            hash_page(digest, &answer.body);
            let page =
                parse_page(&answer.body).map_err(|source| FetchError::Shape { status, source })?;
            let (page_items, total_count) = match page {
                Page::DataMetadata {
                    items, total_count, ..
                } => (items, total_count),
                // A bare array is a complete list whatever the endpoint.
                Page::Array(items) => return Ok(Pages::complete(status, page_index, items)),
                Page::OData { .. } => {
                    return Err(FetchError::Shape {
                        status,
                        source: ShapeError::Unknown(
                            "an OData envelope from the batch endpoint".to_owned(),
                        ),
                    })
                }
            };
            let new = distinct.add(&page_items);
            items.extend(page_items);
            if distinct.count as u64 >= total_count {
                return Ok(Pages::complete(status, page_index, items));
            }
            // An empty page, or one of profiles already received, before the
            // total: asking for more would only get the same again.
            if new == 0 {
                return Err(short_list(status, distinct.count, total_count));
            }
            if page_index >= extent.max_pages() {
                if extent == Extent::FirstPage {
                    return Ok(Pages::partial(status, page_index, items));
                }
                return Err(FetchError::Paging {
                    status,
                    message: format!(
                        "{} of {total_count} profiles after {page_index} pages (api.max_pages); \
                         refusing to read further",
                        distinct.count
                    ),
                });
            }
            page_index += 1;
        }
    }

    /// Resolves a next link and refuses one that leaves the API's origin:
    /// the request would carry the bearer token to that host.
    fn next_url(&self, current: &Url, link: &str, status: u16) -> Result<Url, FetchError> {
        let next = current.join(link).map_err(|e| FetchError::Paging {
            status,
            message: format!("the next link {link:?} is not a URL ({e})"),
        })?;
        if origin_of(&next) != self.origin {
            return Err(FetchError::Paging {
                status,
                message: format!(
                    "the next link points at {}, outside the API's origin {}; \
                     not followed, so the token is not sent there",
                    origin_of(&next),
                    self.origin
                ),
            });
        }
        Ok(next)
    }

    /// Sends one API request with the bearer token, retrying what is worth
    /// retrying, and returns a successful response read whole.
    async fn send(&self, method: Method, url: &Url) -> Result<Answer, FetchError> {
        debug_assert_eq!(origin_of(url), self.origin);
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            self.limits.request_turn(&self.origin).await;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, format!("Bearer {}", token.secret()));
            if method == Method::POST {
                request = request.header(CONTENT_TYPE, "application/json").body("{}");
            }
            let sent = request.send().await;
            crate::metrics::api_response(sent.as_ref().ok().map(|r| r.status().as_u16()));
            let failure = match sent {
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !refreshed {
                        // The token may have been revoked early: one fresh
                        // token, one more try, not counted as a retry.
                        tracing::debug!(url = %url, "401 from the API, refreshing the token");
                        self.tokens.invalidate(&token).await;
                        refreshed = true;
                        continue;
                    }
                    if status.is_success() {
                        match read_body(response, self.body_limit).await {
                            Ok(body) => return Ok(Answer { status, body }),
                            Err(BodyError::TooLarge) => {
                                return Err(FetchError::TooLarge {
                                    status: status.as_u16(),
                                    limit: self.body_limit,
                                })
                            }
                            Err(BodyError::Read(detail)) => Failure::Transient {
                                status: Some(status),
                                retry_after: None,
                                message: format!(
                                    "the response from {url} broke off while it was read: {detail}"
                                ),
                            },
                        }
                    } else {
                        self.classify(url, status, response, token.secret()).await
                    }
                }
                Err(e) => Failure::Transient {
                    status: None,
                    retry_after: None,
                    message: format!("request to {url} failed: {}", error_chain(&e)),
                },
            };

            let (status, retry_after, message) = match failure {
                Failure::Final(error) => return Err(error),
                Failure::Transient {
                    status,
                    retry_after,
                    message,
                } => (status, retry_after, message),
            };
            let status_code = status.map(|s| s.as_u16());
            if let Some(wait) = retry_after {
                if wait > self.settings.max_retry_after {
                    return Err(FetchError::RetryAfterTooLong {
                        status: status_code.unwrap_or(0),
                        wait,
                        max: self.settings.max_retry_after,
                    });
                }
                // The server asked this client to hold off, so every request
                // to it waits, even when this one has no retry left: the
                // other customers' polls are what would hit it next.
                self.limits.pause(&self.origin, wait);
                crate::metrics::retry_after_pause(wait);
            }
            if attempt >= self.settings.retries {
                let message = format!("{message} (gave up after {} attempts)", attempt + 1);
                return Err(match status_code {
                    Some(status) => FetchError::Status { status, message },
                    None => FetchError::Transport(message),
                });
            }
            // A zero Retry-After (or a date already past) asks for no pause,
            // and the retry still backs off like any other.
            let paused = retry_after.filter(|wait| !wait.is_zero());
            let wait = paused.unwrap_or_else(|| limits::backoff(attempt));
            crate::metrics::api_retry();
            tracing::warn!(
                url = %url,
                http_status = status_code,
                attempt = attempt + 1,
                wait_ms = wait.as_millis() as u64,
                retry_after = retry_after.is_some(),
                error = %message,
                "request failed, retrying"
            );
            // A pause is waited out by the next request's turn at the limits.
            if paused.is_none() {
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
        }
    }

    /// Decides what an unsuccessful status means and says what to check.
    async fn classify(
        &self,
        url: &Url,
        status: StatusCode,
        response: reqwest::Response,
        token: &str,
    ) -> Failure {
        let code = status.as_u16();
        let request_id = request_id(response.headers());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| limits::parse_retry_after(v, SystemTime::now()));
        let excerpt = read_body(response, 4096)
            .await
            .map(|body| excerpt(&body, token))
            .unwrap_or_default();
        let message = match code {
            401 => format!(
                "401 from the API even with a fresh token{request_id}: the token was refused; \
                 check that api.environment matches the tenant of the app registration"
            ),
            403 => format!(
                "403 from the API{request_id}: the app registration lacks the permission {} \
                 or this customer is outside its customer scope",
                self.settings.scope
            ),
            404 => format!(
                "404 from the API for {url}{request_id}: the customer or the endpoint was not found; \
                 check the customer ID and the api.endpoint setting (\"{}\"), as AvePoint has \
                 moved this endpoint before",
                match self.settings.endpoint {
                    Endpoint::List => "list",
                    Endpoint::Batch => "batch",
                }
            ),
            400 => format!("400 Bad Request from the API for {url}{request_id}{excerpt}"),
            _ => format!("{status} from the API for {url}{request_id}{excerpt}"),
        };
        if matches!(code, 429 | 500 | 502 | 503 | 504) {
            Failure::Transient {
                status: Some(status),
                retry_after,
                message,
            }
        } else {
            Failure::Final(FetchError::Status {
                status: code,
                message,
            })
        }
    }
}

enum Failure {
    Transient {
        status: Option<StatusCode>,
        retry_after: Option<Duration>,
        message: String,
    },
    Final(FetchError),
}

enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads a body up to `limit` bytes, refusing a larger one without reading it all.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Read(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Adds one page to a list's digest, length first, so that no two different
/// sequences of pages can feed the hash the same bytes.
fn hash_page(digest: &mut Sha256, body: &[u8]) {
    digest.update((body.len() as u64).to_le_bytes());
    digest.update(body);
}

/// How much of a list a fetch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extent {
    /// All of it, refusing a list longer than `max_pages` pages.
    Whole { max_pages: u32 },
    /// The first page, whatever follows it.
    FirstPage,
}

impl Extent {
    fn max_pages(self) -> u32 {
        match self {
            Extent::Whole { max_pages } => max_pages,
            Extent::FirstPage => 1,
        }
    }
}

/// The pages of a list as read, before their items are validated.
struct Pages {
    status: u16,
    count: u32,
    items: Vec<serde_json::Value>,
    complete: bool,
}

impl Pages {
    fn complete(status: u16, count: u32, items: Vec<serde_json::Value>) -> Pages {
        Pages {
            status,
            count,
            items,
            complete: true,
        }
    }

    fn partial(status: u16, count: u32, items: Vec<serde_json::Value>) -> Pages {
        Pages {
            complete: false,
            ..Pages::complete(status, count, items)
        }
    }
}

/// The different profiles among a list's items as its pages arrive, which
/// is what a list's `totalCount` counts. Counting items instead would take a
/// page served twice (a server that ignores `pageIndex`, or rows that shifted
/// between pages) for the missing rest of the list, and record the profiles
/// never received as removed. An item without a readable `profileId` counts
/// as its own profile; it fails the poll later, when the list is validated.
#[derive(Default)]
struct DistinctProfiles {
    seen: HashSet<String>,
    count: usize,
}

impl DistinctProfiles {
    /// Counts the profiles of `page` that earlier pages did not have, and
    /// returns how many there were.
    fn add(&mut self, page: &[serde_json::Value]) -> usize {
        let before = self.count;
        for item in page {
            let new = match item.get("profileId").and_then(|id| id.as_str()) {
                Some(id) => self.seen.insert(id.to_ascii_lowercase()),
                None => true,
            };
            self.count += usize::from(new);
        }
        self.count - before
    }
}

fn short_list(status: u16, received: usize, total: u64) -> FetchError {
    FetchError::Paging {
        status,
        message: format!(
            "the list ended after {received} of the {total} profiles its totalCount announced \
             (a page that repeats profiles already received ends it too); \
             an incomplete list is not used"
        ),
    }
}

fn request_id(headers: &HeaderMap) -> String {
    ["request-id", "x-request-id", "x-correlation-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(|id| format!(" (request-id {id})"))
        .unwrap_or_default()
}

/// A short, single-line piece of an error body, for the message.
/// The start of an error body on one line, for the poll's error. A server
/// or proxy that echoes the request back would echo the bearer token too,
/// so the token is cut out before the text is kept anywhere.
fn excerpt(body: &[u8], token: &str) -> String {
    let text = String::from_utf8_lossy(body);
    let text = if token.is_empty() {
        text
    } else {
        text.replace(token, REDACTED).into()
    };
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return String::new();
    }
    let short: String = line.chars().take(200).collect();
    format!(": {short}")
}

/// `scheme://host:port` of a URL, the unit a token and a pause belong to.
pub(crate) fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// An error and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
