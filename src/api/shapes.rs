//! The body shapes a scan-profile list arrives in.
//!
//! The documented call answers with a bare JSON array; older endpoints of the
//! same API family wrap the items in an OData envelope with a next link, and
//! the batch endpoint in a `data` + `metadata` envelope with a total count.
//! All three are accepted; anything else fails the poll rather than being
//! read as an empty list.

use serde_json::{Map, Value};

/// One page of a list, before its items are validated.
#[derive(Debug, PartialEq)]
pub enum Page {
    /// A bare array: the whole list.
    Array(Vec<Value>),
    /// `{"value": [...], "@odata.nextLink": "..."}` (or `nextLink`).
    OData {
        items: Vec<Value>,
        next_link: Option<String>,
    },
    /// `{"data": [...], "metadata": {"totalCount": N, ...}}`.
    DataMetadata {
        items: Vec<Value>,
        total_count: u64,
        next_link: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("the body is not JSON ({0})")]
    NotJson(String),
    #[error(
        "the body is JSON of an unknown shape ({0}); expected an array of profiles, \
             an object with \"value\", or an object with \"data\" and \"metadata\""
    )]
    Unknown(String),
    #[error("\"{field}\" should be {expected}")]
    BadEnvelope {
        field: &'static str,
        expected: &'static str,
    },
}

/// Reads one page.
pub fn parse_page(body: &[u8]) -> Result<Page, ShapeError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ShapeError::NotJson(e.to_string()))?;
    match value {
        Value::Array(items) => Ok(Page::Array(items)),
        Value::Object(object) => parse_envelope(object),
        other => Err(ShapeError::Unknown(format!("a bare {}", kind(&other)))),
    }
}

fn parse_envelope(mut object: Map<String, Value>) -> Result<Page, ShapeError> {
    let next_link = next_link(&object)?;
    if let Some(value) = object.remove("value") {
        let Value::Array(items) = value else {
            return Err(ShapeError::BadEnvelope {
                field: "value",
                expected: "an array",
            });
        };
        return Ok(Page::OData { items, next_link });
    }
    if let Some(data) = object.remove("data") {
        let Value::Array(items) = data else {
            return Err(ShapeError::BadEnvelope {
                field: "data",
                expected: "an array",
            });
        };
        let total_count = object
            .get("metadata")
            .and_then(|m| m.get("totalCount"))
            .and_then(Value::as_u64)
            .ok_or(ShapeError::BadEnvelope {
                field: "metadata.totalCount",
                expected: "a whole number",
            })?;
        return Ok(Page::DataMetadata {
            items,
            total_count,
            next_link,
        });
    }
    let mut keys: Vec<&str> = object.keys().map(String::as_str).take(8).collect();
    keys.sort_unstable();
    Err(ShapeError::Unknown(format!("an object with keys {keys:?}")))
}

fn next_link(object: &Map<String, Value>) -> Result<Option<String>, ShapeError> {
    for field in ["@odata.nextLink", "nextLink"] {
        match object.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(link)) if link.is_empty() => {}
            Some(Value::String(link)) => return Ok(Some(link.clone())),
            Some(_) => {
                return Err(ShapeError::BadEnvelope {
                    field: "nextLink",
                    expected: "a URL string",
                })
            }
        }
    }
    Ok(None)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bare_array_is_the_whole_list() {
        let page = parse_page(br#"[{"profileId": "a"}]"#).unwrap();
        assert_eq!(page, Page::Array(vec![json!({"profileId": "a"})]));
    }

    #[test]
    fn an_odata_envelope_carries_its_next_link() {
        let page = parse_page(
            br#"{"@odata.context": "x", "value": [], "@odata.nextLink": "https://h/p?$skip=2"}"#,
        )
        .unwrap();
        assert_eq!(
            page,
            Page::OData {
                items: vec![],
                next_link: Some("https://h/p?$skip=2".into())
            }
        );
    }

    #[test]
    fn a_plain_next_link_is_read_too() {
        let page = parse_page(br#"{"value": [1], "nextLink": "/next"}"#).unwrap();
        assert!(matches!(page, Page::OData { next_link: Some(ref l), .. } if l == "/next"));
    }

    #[test]
    fn a_data_metadata_envelope_carries_its_total() {
        let page = parse_page(
            br#"{"data": [{"profileId": "a"}], "metadata": {"pageIndex": 1, "pageSize": 50, "totalCount": 3}}"#,
        )
        .unwrap();
        assert!(
            matches!(page, Page::DataMetadata { total_count: 3, ref items, .. } if items.len() == 1)
        );
    }

    #[test]
    fn a_data_envelope_without_total_is_refused() {
        let err = parse_page(br#"{"data": [], "metadata": {}}"#).unwrap_err();
        assert!(matches!(
            err,
            ShapeError::BadEnvelope {
                field: "metadata.totalCount",
                ..
            }
        ));
    }

    #[test]
    fn html_is_not_json() {
        let err = parse_page(b"<html><body>Service Unavailable</body></html>").unwrap_err();
        assert!(matches!(err, ShapeError::NotJson(_)));
    }

    #[test]
    fn truncated_json_is_not_json() {
        let err = parse_page(br#"[{"profileId": "a"}, {"profileId"#).unwrap_err();
        assert!(matches!(err, ShapeError::NotJson(_)));
    }

    #[test]
    fn an_object_of_unknown_shape_is_refused_not_read_as_empty() {
        let err = parse_page(br#"{"items": [], "count": 0}"#).unwrap_err();
        assert!(
            matches!(err, ShapeError::Unknown(ref s) if s.contains("items")),
            "{err}"
        );
    }

    #[test]
    fn a_value_that_is_not_an_array_is_refused() {
        let err = parse_page(br#"{"value": {"profileId": "a"}}"#).unwrap_err();
        assert!(matches!(
            err,
            ShapeError::BadEnvelope { field: "value", .. }
        ));
    }
}
