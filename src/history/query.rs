//! The SQL a [`Query`] becomes: a `SELECT` on the `change_history` view with
//! every value bound, never spliced into the text.

use sqlx::{QueryBuilder, Sqlite};

use super::format::COLUMNS;
use super::{Baseline, Query};

pub(super) fn build(query: &Query) -> QueryBuilder<'static, Sqlite> {
    // With a limit, the inner query takes the N newest and the outer one
    // turns them back to oldest first.
    let mut sql = QueryBuilder::new(match query.limit {
        None => "SELECT ",
        Some(_) => "SELECT * FROM (SELECT ",
    });
    sql.push(COLUMNS.join(", "));
    sql.push(" FROM change_history WHERE 1 = 1");

    if !query.customers.is_empty() {
        sql.push(" AND customer_id IN (");
        let mut list = sql.separated(", ");
        for id in &query.customers {
            list.push_bind(id.as_str().to_owned());
        }
        sql.push(")");
    }
    if let Some(profile) = &query.profile {
        sql.push(" AND profile_id = ")
            .push_bind(profile.trim().to_lowercase());
    }
    if !query.kinds.is_empty() {
        sql.push(" AND kind IN (");
        let mut list = sql.separated(", ");
        for kind in &query.kinds {
            list.push_bind(kind.as_str());
        }
        sql.push(")");
    }
    if let Some(since) = &query.since {
        sql.push(" AND detected_at >= ").push_bind(since.clone());
    }
    if let Some(until) = &query.until {
        sql.push(" AND detected_at < ").push_bind(until.clone());
    }
    match query.baseline {
        Baseline::Include => {}
        Baseline::Exclude => {
            sql.push(" AND baseline = 0");
        }
        Baseline::Only => {
            sql.push(" AND baseline = 1");
        }
    }

    match query.limit {
        None => {
            sql.push(" ORDER BY change_id");
        }
        Some(limit) => {
            sql.push(" ORDER BY change_id DESC LIMIT ")
                .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
            sql.push(") ORDER BY change_id");
        }
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::CustomerId;
    use crate::diff::ChangeKind;

    #[test]
    fn no_filter_reads_the_whole_view_in_change_order() {
        let sql = build(&Query::default()).into_sql();
        assert!(sql.starts_with("SELECT change_id, detected_at, customer_id"));
        assert!(sql.ends_with("FROM change_history WHERE 1 = 1 ORDER BY change_id"));
    }

    #[test]
    fn every_filter_is_a_bound_parameter() {
        let query = Query {
            customers: vec![CustomerId::parse("03f7382e-0000-1cda-0000-dd9a000074f0").unwrap()],
            profile: Some("X'; DROP TABLE customers; --".to_owned()),
            kinds: vec![ChangeKind::Added, ChangeKind::Removed],
            since: Some("2025-09-01T00:00:00.000000Z".to_owned()),
            until: Some("2025-09-02T00:00:00.000000Z".to_owned()),
            baseline: Baseline::Exclude,
            limit: Some(5),
        };
        let sql = build(&query).into_sql();
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(!sql.contains("2025"), "{sql}");
        assert_eq!(sql.matches('?').count(), 7, "{sql}");
        assert!(sql.contains("baseline = 0"));
        assert!(sql.starts_with("SELECT * FROM (SELECT "));
        assert!(sql.ends_with("ORDER BY change_id DESC LIMIT ?) ORDER BY change_id"));
    }
}
