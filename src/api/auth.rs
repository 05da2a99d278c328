//! Access tokens by the OAuth 2.0 client-credentials grant, through the
//! `oauth2` crate.
//!
//! The client authenticates with its secret in the form body, or with its
//! certificate: then each request carries a freshly signed client assertion
//! (`private_key_jwt`, built by `certificate`) and no secret. The
//! certificate is loaded and checked when the source is built, so a wrong
//! password, a key that does not match or an expired certificate stops
//! scanwatch at start; one that expires within 30 days draws a warning at
//! start and then at most once a day.
//!
//! A token is cached until a minute before it expires, and the cache is
//! behind an async mutex held during the refresh, so however many polls need
//! a token at once the identity service sees one request. The token itself
//! is an [`AccessToken`], whose `Debug` prints a redaction marker.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AccessToken, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, HttpClientError,
    RequestTokenError, Scope, StandardErrorResponse, TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::certificate::{CertificateError, ClientCertificate};
use super::limits::{backoff, Limits};
use super::{error_chain, origin_of};
use crate::config::{AuthSettings, Credential};

type OAuthClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Tokens are assumed to live an hour when the server does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is replaced this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// The `client_assertion_type` of a signed JWT (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How often a certificate close to expiry is warned about.
const EXPIRY_WARNING_EVERY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the token endpoint {url} refused the client credentials (invalid_client{description}); \
         check auth.client_id and the client secret or certificate in Elements > API app registration"
    )]
    InvalidClient { url: String, description: String },
    #[error(
        "the token endpoint {url} refused the scope {scope:?} (invalid_scope{description}); \
         check api.scope and that the app registration has that permission"
    )]
    InvalidScope {
        url: String,
        scope: String,
        description: String,
    },
    #[error("the token endpoint {url} refused the request ({code}{description})")]
    Refused {
        url: String,
        code: String,
        description: String,
    },
    #[error("cannot reach the token endpoint {url}: {detail}; check api.token_url / api.environment and the network")]
    Unreachable { url: String, detail: String },
    #[error("the token endpoint {url} did not answer with a token ({detail})")]
    BadResponse { url: String, detail: String },
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("cannot build the token request: {0}")]
    Setup(String),
}

impl TokenError {
    fn is_transient(&self) -> bool {
        match self {
            TokenError::Unreachable { .. } | TokenError::BadResponse { .. } => true,
            // The OAuth error codes for an overloaded or failing server, which
            // token endpoints send with a 429 or 5xx (RFC 6749, RFC 8628).
            TokenError::Refused { code, .. } => {
                matches!(
                    code.as_str(),
                    "temporarily_unavailable" | "server_error" | "slow_down"
                )
            }
            _ => false,
        }
    }
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

/// Fetches and caches bearer tokens for one app registration.
pub struct TokenSource {
    oauth: OAuthClient,
    client_id: String,
    /// Set for certificate authentication.
    certificate: Option<ClientCertificate>,
    /// When the certificate's coming expiry was last warned about.
    expiry_warned: std::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
    token_url: Url,
    origin: String,
    scope: String,
    retries: u32,
    limits: Arc<Limits>,
    cache: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url.as_str())
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(
        auth: &AuthSettings,
        token_url: &Url,
        scope: &str,
        retries: u32,
        http: reqwest::Client,
        limits: Arc<Limits>,
    ) -> Result<TokenSource, TokenError> {
        let mut oauth = BasicClient::new(ClientId::new(auth.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(token_url.clone()))
            .set_auth_type(AuthType::RequestBody);
        let certificate = match &auth.credential {
            Credential::ClientSecret(secret) => {
                oauth = oauth
                    .set_client_secret(ClientSecret::new(secret.value.expose_secret().to_owned()));
                None
            }
            Credential::Certificate(settings) => {
                Some(ClientCertificate::load(settings, Utc::now())?)
            }
        };
        let source = TokenSource {
            oauth,
            client_id: auth.client_id.clone(),
            certificate,
            expiry_warned: std::sync::Mutex::new(None),
            http,
            origin: origin_of(token_url),
            token_url: token_url.clone(),
            scope: scope.to_owned(),
            retries,
            limits,
            cache: Mutex::new(None),
        };
        source.warn_if_expiring();
        Ok(source)
    }

    /// The client certificate, when the app authenticates with one.
    pub fn certificate(&self) -> Option<&ClientCertificate> {
        self.certificate.as_ref()
    }

    /// Warns when the certificate expires within 30 days, at most once a day.
    fn warn_if_expiring(&self) {
        let Some(certificate) = &self.certificate else {
            return;
        };
        let Some(left) = certificate.expires_soon(Utc::now()) else {
            return;
        };
        let mut warned = self
            .expiry_warned
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if warned.is_some_and(|at| at.elapsed() < EXPIRY_WARNING_EVERY) {
            return;
        }
        *warned = Some(Instant::now());
        tracing::warn!(
            certificate = %certificate.path().display(),
            subject = certificate.subject(),
            not_after = %certificate.not_after().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            days_left = left.num_days(),
            "the client certificate expires soon; upload a new one in Elements > API app \
             registration and point auth.certificate_file at it"
        );
    }

    /// A valid token, from the cache or freshly requested.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            if Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let requested = self.request_with_retries().await;
        crate::metrics::token_refresh(requested.is_ok());
        let (token, lifetime) = requested?;
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + reuse_for(lifetime),
        });
        Ok(token)
    }

    /// Drops `stale` from the cache after the API refused it, unless another
    /// poll already replaced it.
    pub async fn invalidate(&self, stale: &AccessToken) {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.token.secret() == stale.secret())
        {
            *cache = None;
        }
    }

    async fn request_with_retries(&self) -> Result<(AccessToken, Duration), TokenError> {
        let mut attempt = 0;
        loop {
            self.limits.request_turn(&self.origin).await;
            match self.request().await {
                Ok(token) => {
                    tracing::debug!(token_url = %self.token_url, "token issued");
                    return Ok(token);
                }
                Err(error) if error.is_transient() && attempt < self.retries => {
                    let wait = backoff(attempt);
                    crate::metrics::token_retry();
                    tracing::warn!(
                        token_url = %self.token_url,
                        attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        error = %error,
                        "token request failed, retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn request(&self) -> Result<(AccessToken, Duration), TokenError> {
        let mut request = self
            .oauth
            .exchange_client_credentials()
            .add_scope(Scope::new(self.scope.clone()));
        // Signed per request: an assertion lives five minutes and its jti
        // must not repeat, so none is reused across retries.
        let assertion = match &self.certificate {
            Some(certificate) => {
                self.warn_if_expiring();
                Some(certificate.assertion(&self.client_id, self.token_url.as_str(), Utc::now())?)
            }
            None => None,
        };
        if let Some(assertion) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", JWT_BEARER)
                .add_extra_param("client_assertion", assertion.expose_secret());
        }
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|e| self.describe(e))?;
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        Ok((response.access_token().clone(), lifetime))
    }

    fn describe(
        &self,
        error: RequestTokenError<
            HttpClientError<reqwest::Error>,
            StandardErrorResponse<BasicErrorResponseType>,
        >,
    ) -> TokenError {
        let url = self.token_url.to_string();
        match error {
            RequestTokenError::ServerResponse(response) => {
                let description = response
                    .error_description()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                match response.error() {
                    BasicErrorResponseType::InvalidClient => {
                        TokenError::InvalidClient { url, description }
                    }
                    BasicErrorResponseType::InvalidScope => TokenError::InvalidScope {
                        url,
                        scope: self.scope.clone(),
                        description,
                    },
                    other => TokenError::Refused {
                        url,
                        code: other.as_ref().to_owned(),
                        description,
                    },
                }
            }
            RequestTokenError::Request(e) => TokenError::Unreachable {
                url,
                detail: error_chain(&e),
            },
            // The body is not quoted: whatever the server sent back is not
            // ours to print, and might hold a token.
            RequestTokenError::Parse(e, _) => TokenError::BadResponse {
                url,
                detail: format!("the body is not a token response: {}", e.inner()),
            },
            RequestTokenError::Other(detail) => TokenError::BadResponse { url, detail },
        }
    }
}

/// How long a token of `lifetime` is reused: until a minute before it
/// expires, or for half its life when it lives two minutes or less (a token
/// sent in its last seconds could lapse on the way).
fn reuse_for(lifetime: Duration) -> Duration {
    if lifetime > EXPIRY_MARGIN * 2 {
        lifetime - EXPIRY_MARGIN
    } else {
        lifetime / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_reused_until_a_minute_before_it_expires() {
        assert_eq!(
            reuse_for(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(reuse_for(Duration::from_secs(121)), Duration::from_secs(61));
    }

    #[test]
    fn a_short_lived_token_is_reused_for_half_its_life() {
        assert_eq!(reuse_for(Duration::from_secs(120)), Duration::from_secs(60));
        assert_eq!(reuse_for(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(reuse_for(Duration::ZERO), Duration::ZERO);
    }
}
