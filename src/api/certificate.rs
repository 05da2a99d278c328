//! The app registration's certificate, for certificate authentication
//! (`private_key_jwt`): loading it, the checks made at start, and the signed
//! client assertion each token request carries.
//!
//! Two inputs are read: a PEM certificate with its PEM private key (PKCS#8 or
//! PKCS#1 RSA), or a PKCS#12 bundle (`.pfx`/`.p12`, as AvePoint's
//! instructions hand it out) opened with its password. Either way the key
//! must be RSA, because AvePoint's identity server takes RS256 assertions,
//! and must belong to the certificate, which is proven by signing a test
//! message and verifying it with the certificate's public key. An expired
//! certificate is refused when it is loaded and again before each signature.
//!
//! This module knows nothing of HTTP: `auth` sends what it builds.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use pkcs8::der::Decode;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;

use crate::config::CertificateSettings;

/// How long a client assertion is valid after it is signed.
pub const ASSERTION_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// A certificate closer than this to its expiry draws a daily warning.
pub const EXPIRY_WARNING: TimeDelta = TimeDelta::days(30);

/// Why the certificate cannot be used. Each message names the file, and once
/// the certificate is read, its subject and expiry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {}: {detail}", path.display())]
    Read { path: PathBuf, detail: String },
    #[error("{} holds no X.509 certificate scanwatch can read: {detail}", path.display())]
    Certificate { path: PathBuf, detail: String },
    #[error(
        "the certificate {subject} in {} has no RSA key; AvePoint's client assertions \
         are signed RS256, so create the certificate with an RSA key",
        path.display()
    )]
    NotRsa { path: PathBuf, subject: String },
    #[error("{} holds no RSA private key scanwatch can read (PEM, PKCS#8 or PKCS#1): {detail}", path.display())]
    Key { path: PathBuf, detail: String },
    #[error(
        "{} holds an encrypted private key; point auth.certificate_file at the .pfx itself \
         (with auth.certificate_password_file), or export the key unencrypted and `chmod 600` it",
        path.display()
    )]
    EncryptedKey { path: PathBuf },
    #[error(
        "cannot open {}: the certificate password is wrong or the file is damaged; \
         check auth.certificate_password_file (or auth.certificate_password)",
        path.display()
    )]
    Password { path: PathBuf },
    #[error("{} is not a PKCS#12 (.pfx/.p12) bundle scanwatch can read: {detail}", path.display())]
    Bundle { path: PathBuf, detail: String },
    #[error("{} holds no RSA private key with a certificate; export the .pfx with its private key", path.display())]
    BundleWithoutKey { path: PathBuf },
    #[error(
        "the private key in {} does not belong to the certificate {subject} (expires {}) in {}; \
         use the key the certificate was made from",
        key_path.display(), stamp(not_after), path.display()
    )]
    KeyMismatch {
        path: PathBuf,
        key_path: PathBuf,
        subject: String,
        not_after: DateTime<Utc>,
    },
    #[error(
        "the certificate {subject} in {} expired on {}; create a new one, upload it in \
         Elements > API app registration and point auth.certificate_file at it",
        path.display(), stamp(not_after)
    )]
    Expired {
        path: PathBuf,
        subject: String,
        not_after: DateTime<Utc>,
    },
    #[error(
        "the certificate {subject} in {} is not valid before {} (it expires {}); \
         check the system clock",
        path.display(), stamp(not_before), stamp(not_after)
    )]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    },
    #[error("cannot sign the client assertion with the key of {subject}: {detail}")]
    Sign { subject: String, detail: String },
}

/// A certificate and its RSA key, checked to belong together.
#[derive(Clone)]
pub struct ClientCertificate {
    path: PathBuf,
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    thumbprint: String,
    key: EncodingKey,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("path", &self.path)
            .field("subject", &self.subject)
            .field("not_after", &stamp(&self.not_after))
            .field("x5t", &self.thumbprint)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The claims of a client assertion (RFC 7523).
#[derive(serde::Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

impl ClientCertificate {
    /// Reads the configured files and checks that the key belongs to the
    /// certificate and that the certificate is valid at `now`.
    pub fn load(
        settings: &CertificateSettings,
        now: DateTime<Utc>,
    ) -> Result<ClientCertificate, CertificateError> {
        let certificate = if settings.is_pkcs12() {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.value.expose_secret())
                .unwrap_or_default();
            from_pkcs12(&settings.certificate_file, password)?
        } else {
            let key_path = settings
                .private_key_file
                .as_deref()
                .unwrap_or(&settings.certificate_file);
            from_pem(&settings.certificate_file, key_path)?
        };
        certificate.check_validity(now)?;
        Ok(certificate)
    }

    /// The certificate's subject, e.g. `CN=scanwatch`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// The `x5t` header value: base64url of the SHA-1 of the certificate's DER,
    /// the thumbprint Elements shows for an uploaded certificate.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Refuses a certificate outside its validity period.
    pub fn check_validity(&self, now: DateTime<Utc>) -> Result<(), CertificateError> {
        if now > self.not_after {
            return Err(CertificateError::Expired {
                path: self.path.clone(),
                subject: self.subject.clone(),
                not_after: self.not_after,
            });
        }
        if now < self.not_before {
            return Err(CertificateError::NotYetValid {
                path: self.path.clone(),
                subject: self.subject.clone(),
                not_before: self.not_before,
                not_after: self.not_after,
            });
        }
        Ok(())
    }

    /// The time left before expiry, when it is less than [`EXPIRY_WARNING`].
    pub fn expires_soon(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        let left = self.not_after - now;
        (left < EXPIRY_WARNING).then_some(left)
    }

    /// A fresh RS256 client assertion for `client_id`, addressed to the token
    /// URL `audience`, valid from `now` for [`ASSERTION_LIFETIME`].
    pub fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: DateTime<Utc>,
    ) -> Result<SecretString, CertificateError> {
        self.check_validity(now)?;
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(self.thumbprint.clone());
        let issued = now.timestamp();
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string(),
            iat: issued,
            nbf: issued,
            exp: (now + ASSERTION_LIFETIME).timestamp(),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| CertificateError::Sign {
                subject: self.subject.clone(),
                detail: e.to_string(),
            })
    }
}

/// An RFC 3339 time in UTC to the second, as messages print it.
fn stamp(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The fields of a parsed certificate that outlive its DER.
struct CertificateInfo {
    subject: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    public_key: DecodingKey,
}

fn inspect(path: &Path, der: &[u8]) -> Result<CertificateInfo, CertificateError> {
    let bad = |detail: String| CertificateError::Certificate {
        path: path.to_owned(),
        detail,
    };
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let subject = certificate.subject().to_string();
    let validity = certificate.validity();
    let time = |t: i64| {
        DateTime::from_timestamp(t, 0).ok_or_else(|| bad("a validity date is out of range".into()))
    };
    let not_before = time(validity.not_before.timestamp())?;
    let not_after = time(validity.not_after.timestamp())?;
    let Ok(PublicKey::RSA(key)) = certificate.public_key().parsed() else {
        return Err(CertificateError::NotRsa {
            path: path.to_owned(),
            subject,
        });
    };
    Ok(CertificateInfo {
        public_key: DecodingKey::from_rsa_raw_components(
            unsigned(key.modulus),
            unsigned(key.exponent),
        ),
        subject,
        not_before,
        not_after,
    })
}

/// A DER INTEGER's bytes without the leading zero that keeps it positive:
/// the verifier takes the bare big-endian number and refuses the padded one.
pub(crate) fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// An RSA private key as PKCS#1 DER, the form the signer takes.
struct RsaKey {
    /// The file it came from, for messages.
    path: PathBuf,
    pkcs1: Vec<u8>,
}

impl RsaKey {
    /// Takes the RSA key out of a PKCS#8 `PrivateKeyInfo`.
    fn from_pkcs8(path: &Path, der: &[u8]) -> Result<RsaKey, CertificateError> {
        /// rsaEncryption, the algorithm of a PKCS#8 RSA key.
        const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
            pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
        let bad = |detail: String| CertificateError::Key {
            path: path.to_owned(),
            detail,
        };
        let info = pkcs8::PrivateKeyInfoRef::from_der(der)
            .map_err(|e| bad(format!("not a PKCS#8 private key ({e})")))?;
        if info.algorithm.oid != RSA_ENCRYPTION {
            return Err(bad(format!(
                "a key of algorithm {}, not RSA; RS256 needs an RSA key",
                info.algorithm.oid
            )));
        }
        Ok(RsaKey {
            path: path.to_owned(),
            pkcs1: info.private_key.as_bytes().to_vec(),
        })
    }

    /// Whether this key signs what `info`'s public key verifies: proves at
    /// once that the key is usable and that it is the certificate's own.
    fn signs_for(&self, info: &CertificateInfo) -> Result<bool, CertificateError> {
        const MESSAGE: &[u8] = b"scanwatch: does this key belong to the certificate?";
        let key = EncodingKey::from_rsa_der(&self.pkcs1);
        let signature =
            jsonwebtoken::crypto::sign(MESSAGE, &key, Algorithm::RS256).map_err(|e| {
                CertificateError::Key {
                    path: self.path.clone(),
                    detail: format!(
                        "the key cannot sign ({e}); it must be RSA of 2048 bits or more"
                    ),
                }
            })?;
        Ok(
            jsonwebtoken::crypto::verify(&signature, MESSAGE, &info.public_key, Algorithm::RS256)
                .unwrap_or(false),
        )
    }
}

/// Pairs a certificate with its key, refusing a key that is not its own.
fn assemble(path: &Path, der: &[u8], key: &RsaKey) -> Result<ClientCertificate, CertificateError> {
    let info = inspect(path, der)?;
    if !key.signs_for(&info)? {
        return Err(CertificateError::KeyMismatch {
            path: path.to_owned(),
            key_path: key.path.clone(),
            subject: info.subject,
            not_after: info.not_after,
        });
    }
    Ok(ClientCertificate {
        path: path.to_owned(),
        thumbprint: URL_SAFE_NO_PAD.encode(Sha1::digest(der)),
        key: EncodingKey::from_rsa_der(&key.pkcs1),
        subject: info.subject,
        not_before: info.not_before,
        not_after: info.not_after,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|e| CertificateError::Read {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn pem_blocks(path: &Path, bytes: &[u8]) -> Result<Vec<Pem>, String> {
    let blocks: Result<Vec<Pem>, _> = Pem::iter_from_buffer(bytes).collect();
    blocks.map_err(|e| format!("{} is not valid PEM: {e}", path.display()))
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// A PEM certificate (its first `CERTIFICATE` block; a DER file is read
/// too) and a PEM private key, which may sit in the same file.
fn from_pem(path: &Path, key_path: &Path) -> Result<ClientCertificate, CertificateError> {
    let bytes = read(path)?;
    let der = if looks_like_pem(&bytes) {
        let blocks = pem_blocks(path, &bytes).map_err(|detail| CertificateError::Certificate {
            path: path.to_owned(),
            detail,
        })?;
        blocks
            .into_iter()
            .find(|b| b.label == "CERTIFICATE")
            .map(|b| b.contents)
            .ok_or_else(|| CertificateError::Certificate {
                path: path.to_owned(),
                detail: "no \"BEGIN CERTIFICATE\" block".to_owned(),
            })?
    } else {
        bytes
    };
    let key = read_pem_key(key_path)?;
    assemble(path, &der, &key)
}

fn read_pem_key(path: &Path) -> Result<RsaKey, CertificateError> {
    let bad = |detail: &str| CertificateError::Key {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let bytes = read(path)?;
    if !looks_like_pem(&bytes) {
        return Err(bad("no \"BEGIN PRIVATE KEY\" block"));
    }
    // Legacy OpenSSL encryption marks a PKCS#1 block with headers rather
    // than a label of its own.
    if bytes.windows(17).any(|w| w == b"Proc-Type: 4,ENCR") {
        return Err(CertificateError::EncryptedKey {
            path: path.to_owned(),
        });
    }
    let blocks = pem_blocks(path, &bytes).map_err(|detail| bad(&detail))?;
    for block in blocks {
        match block.label.as_str() {
            "PRIVATE KEY" => return RsaKey::from_pkcs8(path, &block.contents),
            "RSA PRIVATE KEY" => {
                return Ok(RsaKey {
                    path: path.to_owned(),
                    pkcs1: block.contents,
                })
            }
            "ENCRYPTED PRIVATE KEY" => {
                return Err(CertificateError::EncryptedKey {
                    path: path.to_owned(),
                })
            }
            "EC PRIVATE KEY" => return Err(bad("an EC key; RS256 needs an RSA key")),
            _ => {}
        }
    }
    Err(bad("no \"BEGIN PRIVATE KEY\" block"))
}

/// A PKCS#12 bundle: an RSA key in it together with the certificate that
/// carries its public key (not trusting `localKeyId` links, which some
/// exporters leave out).
fn from_pkcs12(path: &Path, password: &str) -> Result<ClientCertificate, CertificateError> {
    use p12_keystore::error::Error as P12Error;

    let bytes = read(path)?;
    let archive =
        p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, password).map_err(|e| match e {
            // A wrong password shows as a MAC mismatch, or, in a bundle without a
            // MAC, as garbage after decryption.
            P12Error::MacError(_) | P12Error::UnpadError | P12Error::InvalidPrivateKey => {
                CertificateError::Password {
                    path: path.to_owned(),
                }
            }
            other => CertificateError::Bundle {
                path: path.to_owned(),
                detail: other.to_string(),
            },
        })?;

    let keys: Vec<RsaKey> = archive
        .keys
        .iter()
        .filter_map(|bag| RsaKey::from_pkcs8(path, bag.key.as_der()).ok())
        .collect();
    let Some(first_key) = keys.first() else {
        return Err(CertificateError::BundleWithoutKey {
            path: path.to_owned(),
        });
    };
    let mut first_certificate = None;
    for bag in &archive.certs {
        let der = bag.cert.as_der();
        let Ok(info) = inspect(path, der) else {
            continue;
        };
        for key in &keys {
            if key.signs_for(&info)? {
                return assemble(path, der, key);
            }
        }
        first_certificate.get_or_insert(der);
    }
    match first_certificate {
        // Reported as a mismatch, naming the certificate that is there.
        Some(der) => assemble(path, der, first_key),
        None => Err(CertificateError::Bundle {
            path: path.to_owned(),
            detail: "it holds no RSA certificate".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_padding_of_a_der_integer_is_dropped() {
        assert_eq!(unsigned(&[0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(unsigned(&[1, 0]), &[1, 0]);
    }

    #[test]
    fn times_in_messages_are_rfc3339_to_the_second() {
        let time = DateTime::from_timestamp(1_767_225_600, 0).unwrap();
        assert_eq!(stamp(&time), "2026-01-01T00:00:00Z");
    }
}
