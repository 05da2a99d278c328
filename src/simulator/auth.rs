//! The simulated identity server: `POST /connect/token`, OAuth 2.0 client
//! credentials as AvePoint's identity server answers them.
//!
//! It owns client authentication (secret in the form body or HTTP Basic, or
//! an RS256 client assertion checked against [`SimConfig::client_certificate`])
//! and the scope check; the tokens themselves live in the state, which the
//! API endpoints consult.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use url::form_urlencoded;

use super::http::App;
use super::state::SimState;
use super::SimConfig;

/// Why a token request was refused; each maps to an RFC 6749 error code.
#[derive(Debug, PartialEq, Eq)]
enum TokenError {
    InvalidRequest(&'static str),
    UnsupportedGrantType,
    InvalidClient,
    InvalidScope,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let (status, code, description) = match self {
            TokenError::InvalidRequest(why) => (StatusCode::BAD_REQUEST, "invalid_request", why),
            TokenError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ),
            TokenError::InvalidClient => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong credentials",
            ),
            TokenError::InvalidScope => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "the requested scope is missing or not granted to this client",
            ),
        };
        let body = Json(json!({"error": code, "error_description": description}));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            let challenge = "Basic realm=\"scanwatch-sim\""
                .parse()
                .expect("static header");
            response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The form fields of a token request (first occurrence of each wins).
type TokenForm = HashMap<String, String>;

/// `POST /connect/token`.
pub(crate) async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = app.state.lock();
    state.counters.token_requests += 1;

    match check_request(&state.config, &headers, &body) {
        Ok(()) => issue(&mut state),
        Err(error) => error.into_response(),
    }
}

/// Checks in the order the real server does: request form, grant type,
/// client, scope.
fn check_request(config: &SimConfig, headers: &HeaderMap, body: &[u8]) -> Result<(), TokenError> {
    let form = parse_form(headers, body)?;
    match form.get("grant_type").map(String::as_str) {
        None => return Err(TokenError::InvalidRequest("grant_type is missing")),
        Some("client_credentials") => {}
        Some(_) => return Err(TokenError::UnsupportedGrantType),
    }
    authenticate_client(config, headers, &form)?;
    check_scope(config, &form)
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenForm, TokenError> {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let is_form = content_type.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !is_form {
        return Err(TokenError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = TokenForm::new();
    for (key, value) in form_urlencoded::parse(body) {
        form.entry(key.into_owned()).or_insert(value.into_owned());
    }
    Ok(form)
}

/// HTTP Basic wins when present; otherwise the form's `client_id` and
/// `client_secret`; otherwise a client assertion.
fn authenticate_client(
    config: &SimConfig,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<(), TokenError> {
    if let Some((id, secret)) = basic_credentials(headers)? {
        return check_secret(config, &id, &secret);
    }
    let id = form
        .get("client_id")
        .map(String::as_str)
        .unwrap_or_default();
    match form.get("client_secret") {
        Some(secret) => check_secret(config, id, secret),
        None => authenticate_by_assertion(config, headers, form),
    }
}

fn check_secret(config: &SimConfig, id: &str, secret: &str) -> Result<(), TokenError> {
    if id == config.client_id && secret == config.client_secret {
        Ok(())
    } else {
        Err(TokenError::InvalidClient)
    }
}

/// The `client_assertion_type` of a signed JWT (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims a client assertion must carry; `aud` as one string, as
/// AvePoint's clients send it.
#[derive(Debug, serde::Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    jti: String,
}

/// Certificate authentication: `client_assertion_type` =
/// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and an RS256
/// `client_assertion` signed with the key of the configured certificate.
///
/// Checked: the signature, `alg`, the `x5t` thumbprint of the certificate,
/// `iss` = `sub` = the client ID (and the form's `client_id` when sent),
/// `aud` = this token URL, `exp` and `nbf` (a minute of leeway, as identity
/// servers allow) and a non-empty `jti`. Reuse of a `jti` is not tracked.
fn authenticate_by_assertion(
    config: &SimConfig,
    headers: &HeaderMap,
    form: &TokenForm,
) -> Result<(), TokenError> {
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(TokenError::InvalidClient);
    }
    let assertion = form
        .get("client_assertion")
        .ok_or(TokenError::InvalidClient)?;
    let trusted = config
        .client_certificate
        .as_deref()
        .and_then(TrustedCertificate::parse)
        .ok_or(TokenError::InvalidClient)?;

    let header = jsonwebtoken::decode_header(assertion).map_err(|_| TokenError::InvalidClient)?;
    if header.alg != Algorithm::RS256 || header.x5t.as_deref() != Some(trusted.x5t.as_str()) {
        return Err(TokenError::InvalidClient);
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub", "aud"]);
    validation.validate_nbf = true;
    validation.set_issuer(&[&config.client_id]);
    validation.set_audience(&[token_url(headers)]);
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &trusted.key, &validation)
        .map_err(|_| TokenError::InvalidClient)?
        .claims;

    let form_id = form.get("client_id").unwrap_or(&claims.iss);
    if claims.sub != claims.iss || *form_id != claims.iss || claims.jti.is_empty() {
        return Err(TokenError::InvalidClient);
    }
    Ok(())
}

/// The URL the client posted to, which is what its `aud` must name.
fn token_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    format!("http://{host}/connect/token")
}

/// Whether the token endpoint can check assertions against `certificate`
/// (DER or PEM, with an RSA key), so that `simulate` can refuse a file it
/// would only ever answer `invalid_client` for.
pub fn can_trust(certificate: &[u8]) -> bool {
    TrustedCertificate::parse(certificate).is_some()
}

/// What the token endpoint needs of the app's certificate.
struct TrustedCertificate {
    x5t: String,
    key: DecodingKey,
}

impl TrustedCertificate {
    /// Reads a DER or PEM certificate with an RSA key; `None` otherwise.
    fn parse(bytes: &[u8]) -> Option<TrustedCertificate> {
        let der = if bytes.starts_with(b"-----BEGIN") {
            x509_parser::pem::parse_x509_pem(bytes).ok()?.1.contents
        } else {
            bytes.to_vec()
        };
        let (_, certificate) = x509_parser::parse_x509_certificate(&der).ok()?;
        let x509_parser::public_key::PublicKey::RSA(rsa) =
            certificate.public_key().parsed().ok()?
        else {
            return None;
        };
        // The verifier wants bare big-endian numbers, without the DER
        // INTEGER's leading zero.
        let unsigned = |bytes: &'_ [u8]| {
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            bytes[start..].to_vec()
        };
        Some(TrustedCertificate {
            key: DecodingKey::from_rsa_raw_components(
                &unsigned(rsa.modulus),
                &unsigned(rsa.exponent),
            ),
            x5t: URL_SAFE_NO_PAD.encode(Sha1::digest(&der)),
        })
    }
}

/// `Authorization: Basic base64(id:secret)`. RFC 6749 has both parts
/// form-encoded before base64, but many clients skip that, so a part is
/// form-decoded only when it contains `%` or `+`.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, TokenError> {
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = decode_base64(encoded.trim()).ok_or(TokenError::InvalidClient)?;
    let text = String::from_utf8(decoded).map_err(|_| TokenError::InvalidClient)?;
    let (id, secret) = text.split_once(':').ok_or(TokenError::InvalidClient)?;
    Ok(Some((form_decode(id), form_decode(secret))))
}

fn form_decode(part: &str) -> String {
    if !part.contains(['%', '+']) {
        return part.to_owned();
    }
    form_urlencoded::parse(part.as_bytes())
        .next()
        .map(|(key, _)| key.into_owned())
        .unwrap_or_default()
}

fn check_scope(config: &SimConfig, form: &TokenForm) -> Result<(), TokenError> {
    let scopes = form.get("scope").map(String::as_str).unwrap_or_default();
    if scopes.split_whitespace().any(|s| s == config.scope) {
        Ok(())
    } else {
        Err(TokenError::InvalidScope)
    }
}

fn issue(state: &mut SimState) -> Response {
    let token = state.issue_token();
    let body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.config.token_lifetime.as_secs(),
        "scope": state.config.scope,
    });
    let mut response = Json(body).into_response();
    let no_store = "no-store".parse().expect("static header");
    response.headers_mut().insert(CACHE_CONTROL, no_store);
    response
}

/// Standard base64 with optional padding; `None` on any other character.
/// Written out because the crate has no base64 dependency and this is the
/// simulator's only use of it.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.trim_end_matches('=').bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decoding_matches_known_encodings_with_and_without_padding() {
        assert_eq!(
            decode_base64("c2NhbndhdGNoLXNpbTpzaW0tc2VjcmV0").unwrap(),
            b"scanwatch-sim:sim-secret"
        );
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI").unwrap(), b"ab");
        assert_eq!(decode_base64("YW*"), None);
    }
}
