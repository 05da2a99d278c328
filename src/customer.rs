//! Customer identity: the validated Elements customer ID and its label.

use std::fmt;

/// An Elements customer ID: a GUID, kept in lower-case hyphenated form.
///
/// It is the only caller-supplied text that goes into an API URL, so it can
/// only be built through [`CustomerId::parse`], which refuses anything that is
/// not a GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a customer ID (a GUID such as 03f7382e-0000-1cda-0000-dd9a000074f0)")]
pub struct InvalidCustomerId(pub String);

impl CustomerId {
    pub fn parse(text: &str) -> Result<CustomerId, InvalidCustomerId> {
        let trimmed = text.trim();
        // Only the hyphenated form: the braced and URN forms uuid also reads
        // are not what the API or a user would write.
        if trimmed.len() != 36 {
            return Err(InvalidCustomerId(text.to_owned()));
        }
        uuid::Uuid::try_parse(trimmed)
            .map(|id| CustomerId(id.hyphenated().to_string()))
            .map_err(|_| InvalidCustomerId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configured customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: CustomerId,
    /// Optional label shown in logs and history.
    pub name: Option<String>,
}

impl Customer {
    /// The name when there is one, else the ID: what a log line should show.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(self.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guid_is_accepted_and_lower_cased() {
        let id = CustomerId::parse("03F7382E-0000-1CDA-0000-DD9A000074F0").unwrap();
        assert_eq!(id.as_str(), "03f7382e-0000-1cda-0000-dd9a000074f0");
    }

    #[test]
    fn anything_that_could_change_a_url_is_refused() {
        for bad in [
            "",
            "../../admin",
            "03f7382e-0000-1cda-0000-dd9a000074f0/../x",
            "03f7382e00001cda0000dd9a000074f0",
            "{03f7382e-0000-1cda-0000-dd9a000074f0}",
            "03f7382e-0000-1cda-0000-dd9a000074fz",
        ] {
            assert!(CustomerId::parse(bad).is_err(), "{bad}");
        }
    }
}
