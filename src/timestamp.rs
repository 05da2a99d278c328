//! The one time format scanwatch writes, and the lenient parser for the times
//! the API sends.
//!
//! Every time stored in the database is UTC with six fractional digits and a
//! `Z` (`2025-09-11T03:19:14.000000Z`). The width is fixed so that text order
//! is time order, which keeps `sqlite3` queries such as
//! `WHERE detected_at >= '2025-09-01'` correct without date functions.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Formats an instant in the fixed stored form.
pub fn format(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The current time in the fixed stored form.
pub fn now() -> String {
    format(Utc::now())
}

/// Parses a time as the API writes it.
///
/// The documented form is RFC 3339 (`2025-09-11T03:19:14Z`), but .NET services
/// also emit times without an offset or with seven fractional digits; those
/// are read as UTC, which is what the API documents for this field.
pub fn parse_api_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Normalises an API time to the fixed stored form, or `None` when the text is
/// not a time at all.
pub fn normalize_api_time(text: &str) -> Option<String> {
    parse_api_time(text).map(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_six_fraction_digits_and_z() {
        let instant = parse_api_time("2025-09-11T03:19:14Z").unwrap();
        assert_eq!(format(instant), "2025-09-11T03:19:14.000000Z");
    }

    #[test]
    fn equal_instants_in_different_forms_normalise_alike() {
        let forms = [
            "2025-09-11T03:19:14Z",
            "2025-09-11T03:19:14.000Z",
            "2025-09-11T03:19:14.0000000",
            "2025-09-11T05:19:14+02:00",
        ];
        for form in forms {
            assert_eq!(
                normalize_api_time(form).as_deref(),
                Some("2025-09-11T03:19:14.000000Z"),
                "{form}"
            );
        }
    }

    #[test]
    fn text_that_is_not_a_time_is_refused() {
        assert_eq!(normalize_api_time("yesterday"), None);
        assert_eq!(normalize_api_time(""), None);
    }

    #[test]
    fn fixed_form_sorts_as_time() {
        let earlier = format(parse_api_time("2025-09-11T03:19:14.5Z").unwrap());
        let later = format(parse_api_time("2025-09-11T03:19:15Z").unwrap());
        assert!(earlier < later);
    }
}
