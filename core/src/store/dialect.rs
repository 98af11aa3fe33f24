//! The few places where SQLite, PostgreSQL and MySQL disagree, as text
//! substitutions on otherwise portable SQL.
//!
//! Queries are written with `?` placeholders and these tokens:
//! - `{now}`: the database clock in unix milliseconds, as BIGINT. Leases are
//!   judged on this clock only, never on a node's wall clock.
//! - `{greatest}`: the two-argument maximum function.
//! - `{insert_ignore}`: an INSERT that skips rows whose key exists.
//! - `{autoinc}`: an auto-incrementing BIGINT primary key column type.
//! - `{blob}`: a binary column type large enough for a plugin component.
//!
//! Reading differs too: string columns are read with [`RowText::text`], never
//! `try_get::<String, _>`, because MySQL reports TEXT columns as BLOB.

use super::{StoreError, StoreResult};
use crate::config::DbEngine;
use sqlx::any::AnyRow;
use sqlx::Row;

/// SQL rewriting for one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect(pub DbEngine);

impl Dialect {
    /// Rewrites tokens and, for PostgreSQL, `?` into `$1, $2, ...`.
    pub fn sql(self, portable: &str) -> String {
        let (now, greatest, insert_ignore, autoinc, blob) = match self.0 {
            // julianday() is a double; ROUND undoes its binary fraction, which
            // plain truncation turned into a clock 1 ms behind now and then.
            DbEngine::Sqlite => (
                "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)",
                "MAX",
                "INSERT OR IGNORE",
                "INTEGER PRIMARY KEY AUTOINCREMENT",
                "BLOB",
            ),
            DbEngine::Postgres => (
                "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
                "GREATEST",
                "INSERT",
                "BIGSERIAL PRIMARY KEY",
                "BYTEA",
            ),
            // Exact only because every session runs with time_zone '+00:00'
            // (see `Store::connect`): UNIX_TIMESTAMP(NOW()) in a zone with
            // daylight saving maps the repeated autumn hour to one instant.
            DbEngine::MySql => (
                "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
                "GREATEST",
                "INSERT IGNORE",
                "BIGINT AUTO_INCREMENT PRIMARY KEY",
                "LONGBLOB",
            ),
        };
        let mut sql = portable
            .replace("{now}", now)
            .replace("{greatest}", greatest)
            .replace("{insert_ignore}", insert_ignore)
            .replace("{autoinc}", autoinc)
            .replace("{blob}", blob);
        if self.0 == DbEngine::Postgres {
            if sql.starts_with("INSERT") && portable.starts_with("{insert_ignore}") {
                sql.push_str(" ON CONFLICT DO NOTHING");
            }
            sql = number_placeholders(&sql);
        }
        sql
    }
}

/// Reads string columns the same way on every engine.
pub(crate) trait RowText {
    /// The string in column `index`.
    fn text(&self, index: usize) -> StoreResult<String>;
}

impl RowText for AnyRow {
    fn text(&self, index: usize) -> StoreResult<String> {
        // MySQL sends TEXT (and MEDIUMTEXT, ...) with the BLOB column type, so
        // sqlx's Any driver hands the value over as bytes and refuses to
        // decode it as a String; take the bytes as UTF-8 instead.
        match self.try_get::<String, _>(index) {
            Ok(text) => Ok(text),
            Err(sqlx::Error::ColumnDecode { .. }) => {
                let bytes: Vec<u8> = self.try_get(index)?;
                String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("column {index} is not UTF-8: {e}")))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Turns positional `?` into PostgreSQL's `$n`.
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_numbers_placeholders_and_skips_conflicts() {
        let sql = Dialect(DbEngine::Postgres).sql("{insert_ignore} INTO t(a, b) VALUES (?, ?)");
        assert_eq!(sql, "INSERT INTO t(a, b) VALUES ($1, $2) ON CONFLICT DO NOTHING");
    }

    #[test]
    fn mysql_and_sqlite_keep_question_marks() {
        assert_eq!(
            Dialect(DbEngine::MySql).sql("{insert_ignore} INTO t VALUES (?)"),
            "INSERT IGNORE INTO t VALUES (?)"
        );
        assert!(Dialect(DbEngine::Sqlite).sql("SELECT {greatest}(?, 1)").starts_with("SELECT MAX(?"));
    }
}
