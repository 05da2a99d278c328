//! Where a secret comes from, and a value that never prints itself.
//!
//! Precedence (the design's): the inline key or its environment override,
//! then the `_file` key, then the systemd credential. The value is a
//! [`SecretString`], and [`Secret`]'s `Debug`, `Display` and `Serialize` all
//! print [`REDACTED`], so neither a log line nor an error chain nor a
//! serialized config nor `check-config` can show it.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::ConfigError;

/// What is printed in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// A secret value and where it was found.
#[derive(Clone)]
pub struct Secret {
    pub value: SecretString,
    pub source: SecretSource,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED}, from {})", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the config file itself.
    Inline { key: String },
    /// The `SCANWATCH__SECTION__KEY` environment variable.
    Environment { variable: String },
    /// A file named by a `_file` key.
    File { path: PathBuf },
    /// A systemd credential (`LoadCredential=`), under `$CREDENTIALS_DIRECTORY`.
    SystemdCredential { path: PathBuf },
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline { key } => write!(f, "inline key {key}"),
            SecretSource::Environment { variable } => write!(f, "environment variable {variable}"),
            SecretSource::File { path } => write!(f, "file {}", path.display()),
            SecretSource::SystemdCredential { path } => {
                write!(f, "systemd credential {}", path.display())
            }
        }
    }
}

/// The environment variable that overrides `section.key`.
pub fn env_variable(section: &str, key: &str) -> String {
    format!(
        "SCANWATCH__{}__{}",
        section.to_ascii_uppercase(),
        key.to_ascii_uppercase()
    )
}

/// Looks a secret up by the inline key, then the `_file` key.
///
/// `inline` is the merged value of the key (file or environment); whether the
/// environment supplied it is read back from the environment, only to say
/// where the secret came from, and only when `environment` says the overrides
/// were applied.
pub fn lookup(
    environment: bool,
    section: &str,
    key: &str,
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    let full_key = format!("{section}.{key}");
    if let Some(value) = inline.filter(|v| !v.is_empty()) {
        let variable = env_variable(section, key);
        let source = if environment && std::env::var_os(&variable).is_some() {
            SecretSource::Environment { variable }
        } else {
            SecretSource::Inline { key: full_key }
        };
        return Ok(Some(Secret {
            value: SecretString::from(value.to_owned()),
            source,
        }));
    }
    if let Some(path) = file {
        let value = read_secret_file(path).map_err(|message| ConfigError::Invalid {
            key: format!("{full_key}_file"),
            message,
        })?;
        return Ok(Some(Secret {
            value,
            source: SecretSource::File {
                path: path.to_owned(),
            },
        }));
    }
    Ok(None)
}

/// The systemd credential `name`, when the service manager passed one.
pub fn systemd_credential(name: &str) -> Result<Option<Secret>, ConfigError> {
    let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") else {
        return Ok(None);
    };
    let path = Path::new(&dir).join(name);
    if !path.exists() {
        return Ok(None);
    }
    let value = read_secret_file(&path).map_err(|message| ConfigError::Invalid {
        key: format!("$CREDENTIALS_DIRECTORY/{name}"),
        message,
    })?;
    Ok(Some(Secret {
        value,
        source: SecretSource::SystemdCredential { path },
    }))
}

/// Reads a secret file, dropping the trailing newline editors and `echo` add.
fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_secret_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let secret = lookup(false, "auth", "client_secret", None, Some(&path))
            .unwrap()
            .unwrap();
        assert_eq!(secret.value.expose_secret(), "s3cret");
        assert_eq!(secret.source, SecretSource::File { path });
    }

    #[test]
    fn the_inline_value_wins_over_the_file() {
        let secret = lookup(
            false,
            "auth",
            "certificate_password",
            Some("inline"),
            Some(Path::new("/nonexistent")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(secret.value.expose_secret(), "inline");
        assert_eq!(
            secret.source,
            SecretSource::Inline {
                key: "auth.certificate_password".to_owned()
            }
        );
    }

    #[test]
    fn a_missing_secret_file_names_its_key() {
        let err = lookup(
            false,
            "auth",
            "client_secret",
            None,
            Some(Path::new("/nonexistent/s")),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("auth.client_secret_file:"),
            "{err}"
        );
    }

    #[test]
    fn display_and_serialization_print_the_redaction_marker() {
        let secret = Secret {
            value: SecretString::from("hunter2".to_owned()),
            source: SecretSource::File {
                path: PathBuf::from("/etc/scanwatch/client_secret"),
            },
        };
        assert_eq!(secret.to_string(), REDACTED);
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            format!("\"{REDACTED}\"")
        );
    }

    #[test]
    fn debug_output_never_shows_the_value() {
        let secret = Secret {
            value: SecretString::from("hunter2".to_owned()),
            source: SecretSource::Inline {
                key: "auth.client_secret".into(),
            },
        };
        let printed = format!("{secret:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redacted"));
    }
}
