//! App certificates made at test time, so no private key is ever committed:
//! RSA keys from the `rsa` crate, certificates signed with them by `rcgen`,
//! and PKCS#12 bundles written by `p12-keystore`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{Datelike, TimeDelta, Utc};
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;

/// Two RSA keys, made once per test binary: generating one takes seconds in
/// a debug build.
pub fn key(index: usize) -> &'static RsaPrivateKey {
    static KEYS: [OnceLock<RsaPrivateKey>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[index]
        .get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("an RSA key"))
}

/// A certificate, its key in the forms scanwatch reads, and its identity.
pub struct TestCertificate {
    pub subject_cn: String,
    pub der: Vec<u8>,
    pub pem: String,
    pub key_pkcs8_pem: String,
    pub key_pkcs1_pem: String,
    pub key_pkcs8_der: Vec<u8>,
}

/// How long a certificate is valid, relative to now.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From a year ago to a year ahead.
    Current,
    /// Ends in about ten days.
    ExpiringSoon,
    /// Ended a year ago.
    Expired,
}

/// Year, month and day of now + `delta`.
fn day(delta: TimeDelta) -> (i32, u8, u8) {
    let day = Utc::now() + delta;
    (day.year(), day.month() as u8, day.day() as u8)
}

/// A self-signed certificate for `key(key_index)`.
pub fn certificate(key_index: usize, subject_cn: &str, validity: Validity) -> TestCertificate {
    let key = key(key_index);
    let key_pkcs8_der = key.to_pkcs8_der().unwrap().as_bytes().to_vec();
    let key_pair = rcgen::KeyPair::try_from(key_pkcs8_der.as_slice()).expect("rcgen takes the key");

    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject_cn);
    let (from, to) = match validity {
        Validity::Current => (TimeDelta::days(-365), TimeDelta::days(365)),
        Validity::ExpiringSoon => (TimeDelta::days(-365), TimeDelta::days(10)),
        Validity::Expired => (TimeDelta::days(-730), TimeDelta::days(-365)),
    };
    let (y, m, d) = day(from);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = day(to);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    let certificate = params.self_signed(&key_pair).expect("a certificate");

    TestCertificate {
        subject_cn: subject_cn.to_owned(),
        der: certificate.der().to_vec(),
        pem: certificate.pem(),
        key_pkcs8_pem: key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        key_pkcs1_pem: key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
        key_pkcs8_der,
    }
}

/// How a PKCS#12 bundle is encrypted.
#[derive(Debug, Clone, Copy)]
pub enum Pkcs12Cipher {
    /// AES-256 with an HMAC-SHA256 MAC, as current OpenSSL writes.
    Modern,
    /// 3DES with an HMAC-SHA1 MAC, as Windows' certificate export writes.
    TripleDes,
    /// 40-bit RC2 with an HMAC-SHA1 MAC, as older Windows and OpenSSL wrote.
    Rc2,
}

/// `certificate` and the key of `key_index` as a password-protected bundle.
pub fn pkcs12(
    certificate: &TestCertificate,
    key_index: usize,
    password: &str,
    cipher: Pkcs12Cipher,
) -> Vec<u8> {
    let key_der = key(key_index).to_pkcs8_der().unwrap().as_bytes().to_vec();
    let chain = PrivateKeyChain::new(
        b"scanwatch-test".to_vec(),
        PrivateKey::from_der(&key_der).unwrap(),
        [Certificate::from_der(&certificate.der).unwrap()],
    );
    let mut store = KeyStore::new();
    store.add_entry("scanwatch", KeyStoreEntry::PrivateKeyChain(chain));
    let (encryption, mac) = match cipher {
        Pkcs12Cipher::Modern => (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        ),
        Pkcs12Cipher::TripleDes => (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        ),
        Pkcs12Cipher::Rc2 => (
            EncryptionAlgorithm::PbeWithShaAnd40BitRc4Cbc,
            MacAlgorithm::HmacSha1,
        ),
    };
    store
        .writer(password)
        .encryption_algorithm(encryption)
        .mac_algorithm(mac)
        .write()
        .expect("a PKCS#12 bundle")
}

/// Writes `bytes` to `dir/name` readable by the owner only, as a key should be.
pub fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
