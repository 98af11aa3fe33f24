//! The few places where SQLite, PostgreSQL and MySQL disagree, as text
//! substitutions on otherwise portable SQL.
//!
//! Queries are written with `?` placeholders and these tokens:
//! - `{now}`: the database clock in unix milliseconds, as BIGINT. Leases are
//!   judged on this clock only, never on a node's wall clock.
//! - `{greatest}`: the two-argument maximum function.
//! - `{insert_ignore}`: an INSERT that skips rows whose key exists.
//! - `{autoinc}`: an auto-incrementing BIGINT primary key column type.

use crate::config::DbEngine;

/// SQL rewriting for one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect(pub DbEngine);

impl Dialect {
    /// Rewrites tokens and, for PostgreSQL, `?` into `$1, $2, ...`.
    pub fn sql(self, portable: &str) -> String {
        let (now, greatest, insert_ignore, autoinc) = match self.0 {
            DbEngine::Sqlite => (
                "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
                "MAX",
                "INSERT OR IGNORE",
                "INTEGER PRIMARY KEY AUTOINCREMENT",
            ),
            DbEngine::Postgres => (
                "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
                "GREATEST",
                "INSERT",
                "BIGSERIAL PRIMARY KEY",
            ),
            DbEngine::MySql => (
                "CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)",
                "GREATEST",
                "INSERT IGNORE",
                "BIGINT AUTO_INCREMENT PRIMARY KEY",
            ),
        };
        let mut sql = portable
            .replace("{now}", now)
            .replace("{greatest}", greatest)
            .replace("{insert_ignore}", insert_ignore)
            .replace("{autoinc}", autoinc);
        if self.0 == DbEngine::Postgres {
            if sql.starts_with("INSERT") && portable.starts_with("{insert_ignore}") {
                sql.push_str(" ON CONFLICT DO NOTHING");
            }
            sql = number_placeholders(&sql);
        }
        sql
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
