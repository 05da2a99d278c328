//! The times `--since` and `--until` accept: an instant (RFC 3339, or a bare
//! date meaning midnight UTC) or an age counted back from now (`7d`, `12h`).

use chrono::{DateTime, NaiveDate, Utc};

use crate::timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither a time (RFC 3339 such as 2025-09-01T00:00:00Z, or a date such as \
     2025-09-01) nor an age (such as 7d, 12h or 1h30m)"
)]
pub struct InvalidTime(pub String);

/// Reads a time bound and returns it in the fixed stored form, so it can be
/// compared with `detected_at` as text. A time without an offset is UTC.
pub fn parse_time_bound(text: &str, now: DateTime<Utc>) -> Result<String, InvalidTime> {
    let trimmed = text.trim();
    if let Some(instant) = timestamp::parse_api_time(trimmed) {
        return Ok(timestamp::format(instant));
    }
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Ok(timestamp::format(midnight.and_utc()));
    }
    let age = humantime::parse_duration(trimmed).map_err(|_| InvalidTime(text.to_owned()))?;
    let age = chrono::Duration::from_std(age).map_err(|_| InvalidTime(text.to_owned()))?;
    let instant = now
        .checked_sub_signed(age)
        .ok_or_else(|| InvalidTime(text.to_owned()))?;
    Ok(timestamp::format(instant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        timestamp::parse_api_time("2025-09-11T03:19:14Z").unwrap()
    }

    #[test]
    fn an_rfc3339_time_is_normalised_to_utc() {
        assert_eq!(
            parse_time_bound("2025-09-01T12:00:00+02:00", now()).unwrap(),
            "2025-09-01T10:00:00.000000Z"
        );
        assert_eq!(
            parse_time_bound("2025-09-01T10:00:00.5Z", now()).unwrap(),
            "2025-09-01T10:00:00.500000Z"
        );
    }

    #[test]
    fn a_bare_date_means_midnight_utc() {
        assert_eq!(
            parse_time_bound("2025-09-01", now()).unwrap(),
            "2025-09-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn an_age_counts_back_from_now() {
        assert_eq!(
            parse_time_bound("7d", now()).unwrap(),
            "2025-09-04T03:19:14.000000Z"
        );
        assert_eq!(
            parse_time_bound("1h 30m", now()).unwrap(),
            "2025-09-11T01:49:14.000000Z"
        );
    }

    #[test]
    fn text_that_is_neither_is_refused_with_both_forms_named() {
        let error = parse_time_bound("last tuesday", now()).unwrap_err();
        assert_eq!(error, InvalidTime("last tuesday".to_owned()));
        let message = error.to_string();
        assert!(
            message.contains("RFC 3339") && message.contains("7d"),
            "{message}"
        );
    }
}
