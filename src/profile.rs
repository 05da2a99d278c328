//! A scan profile as scanwatch understands it: validated, with its identity
//! normalised, and with the object the API sent kept whole.
//!
//! Validation happens once, here, for both what the API returns and what the
//! store reads back from `raw_json`, so past this point a profile always has
//! an ID and fields of the documented types.

use serde_json::{Map, Value};

/// The API's field names this module knows about.
pub mod field {
    pub const ID: &str = "profileId";
    pub const NAME: &str = "profileName";
    pub const SCAN_MODE: &str = "scanMode";
    pub const MODIFIED_TIME: &str = "modifiedTime";
}

/// One scan profile, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `profileId`, lower-cased so that a change of case is not a new profile.
    pub id: String,
    pub name: Option<String>,
    pub scan_mode: Option<i64>,
    /// `modifiedTime` in the fixed stored form; the API's own text stays in `raw`.
    pub modified_time: Option<String>,
    /// The object exactly as received, unknown fields included.
    pub raw: Map<String, Value>,
}

/// Why an item of a list is not a usable profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("item {index} of the list is not a JSON object")]
    NotAnObject { index: usize },
    #[error("item {index} of the list has no profileId")]
    MissingId { index: usize },
    #[error("item {index} of the list has an empty profileId")]
    EmptyId { index: usize },
    #[error("profile {id}: field {field} should be {expected}, found {found}")]
    WrongType {
        id: String,
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("profile {id}: modifiedTime {text:?} is not an ISO 8601 time")]
    BadTime { id: String, text: String },
}

impl Profile {
    /// Validates the `index`-th item of a list.
    ///
    /// `null` is accepted for every field but the ID and means the same as an
    /// absent field; a value of another type fails, because a profile whose
    /// shape we do not understand must not be recorded as a change.
    pub fn parse(index: usize, item: Value) -> Result<Profile, ProfileError> {
        let Value::Object(raw) = item else {
            return Err(ProfileError::NotAnObject { index });
        };
        let id = match raw.get(field::ID) {
            None | Some(Value::Null) => return Err(ProfileError::MissingId { index }),
            Some(Value::String(id)) if id.trim().is_empty() => {
                return Err(ProfileError::EmptyId { index })
            }
            Some(Value::String(id)) => id.to_ascii_lowercase(),
            Some(other) => {
                return Err(ProfileError::WrongType {
                    id: format!("#{index}"),
                    field: field::ID,
                    expected: "a string",
                    found: type_name(other),
                })
            }
        };
        let name = optional_string(&raw, &id, field::NAME)?;
        let scan_mode = match raw.get(field::SCAN_MODE) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(other) => {
                return Err(ProfileError::WrongType {
                    id,
                    field: field::SCAN_MODE,
                    expected: "an integer",
                    found: type_name(other),
                })
            }
        };
        let modified_time = match optional_string(&raw, &id, field::MODIFIED_TIME)? {
            None => None,
            Some(text) => match crate::timestamp::normalize_api_time(&text) {
                Some(fixed) => Some(fixed),
                None => return Err(ProfileError::BadTime { id, text }),
            },
        };
        Ok(Profile {
            id,
            name,
            scan_mode,
            modified_time,
            raw,
        })
    }

    /// The value of a top-level field in the form used to compare two
    /// versions of a profile: formatting the API may vary without meaning a
    /// change (ID case, time precision) is taken out, and `null` is absent.
    pub fn comparable(&self, key: &str) -> Option<Value> {
        match key {
            field::ID => Some(Value::String(self.id.clone())),
            field::MODIFIED_TIME => self.modified_time.clone().map(Value::String),
            _ => match self.raw.get(key) {
                None | Some(Value::Null) => None,
                Some(value) => Some(value.clone()),
            },
        }
    }

    /// `raw` as compact JSON text, the form kept in `raw_json`.
    pub fn raw_json(&self) -> String {
        serde_json::to_string(&self.raw).expect("a JSON map serialises")
    }
}

fn optional_string(
    raw: &Map<String, Value>,
    id: &str,
    field: &'static str,
) -> Result<Option<String>, ProfileError> {
    match raw.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(ProfileError::WrongType {
            id: id.to_owned(),
            field,
            expected: "a string",
            found: type_name(other),
        }),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_documented_profile_parses_with_its_id_lower_cased() {
        let profile = Profile::parse(
            0,
            json!({"profileName": "Default", "profileId": "47DBA9A1-1004-4C2D-B2CE-8F5E66F5842D",
                   "scanMode": 0, "modifiedTime": "2025-09-11T03:19:14Z"}),
        )
        .unwrap();
        assert_eq!(profile.id, "47dba9a1-1004-4c2d-b2ce-8f5e66f5842d");
        assert_eq!(profile.name.as_deref(), Some("Default"));
        assert_eq!(profile.scan_mode, Some(0));
        assert_eq!(
            profile.modified_time.as_deref(),
            Some("2025-09-11T03:19:14.000000Z")
        );
        assert_eq!(
            profile.raw["profileId"],
            "47DBA9A1-1004-4C2D-B2CE-8F5E66F5842D"
        );
    }

    #[test]
    fn a_profile_without_id_is_refused() {
        assert_eq!(
            Profile::parse(3, json!({"profileName": "x"})),
            Err(ProfileError::MissingId { index: 3 })
        );
        assert_eq!(
            Profile::parse(0, json!({"profileId": null})),
            Err(ProfileError::MissingId { index: 0 })
        );
    }

    #[test]
    fn a_scan_mode_given_as_text_is_refused() {
        let err = Profile::parse(0, json!({"profileId": "a", "scanMode": "1"})).unwrap_err();
        assert!(matches!(
            err,
            ProfileError::WrongType {
                field: "scanMode",
                ..
            }
        ));
    }

    #[test]
    fn a_fractional_scan_mode_is_refused() {
        let err = Profile::parse(0, json!({"profileId": "a", "scanMode": 1.5})).unwrap_err();
        assert!(matches!(
            err,
            ProfileError::WrongType {
                field: "scanMode",
                ..
            }
        ));
    }

    #[test]
    fn a_numeric_name_is_refused() {
        let err = Profile::parse(0, json!({"profileId": "a", "profileName": 7})).unwrap_err();
        assert!(matches!(
            err,
            ProfileError::WrongType {
                field: "profileName",
                ..
            }
        ));
    }

    #[test]
    fn a_null_name_is_accepted_as_absent() {
        let profile = Profile::parse(0, json!({"profileId": "a", "profileName": null})).unwrap();
        assert_eq!(profile.name, None);
        assert_eq!(profile.comparable("profileName"), None);
    }

    #[test]
    fn an_unreadable_modified_time_is_refused() {
        let err = Profile::parse(0, json!({"profileId": "a", "modifiedTime": "soon"})).unwrap_err();
        assert!(matches!(err, ProfileError::BadTime { .. }));
    }

    #[test]
    fn an_item_that_is_not_an_object_is_refused() {
        assert_eq!(
            Profile::parse(1, json!([1, 2])),
            Err(ProfileError::NotAnObject { index: 1 })
        );
    }

    #[test]
    fn unknown_fields_are_kept() {
        let profile =
            Profile::parse(0, json!({"profileId": "a", "description": {"x": [1]}})).unwrap();
        assert_eq!(profile.comparable("description"), Some(json!({"x": [1]})));
    }
}
