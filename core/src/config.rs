//! Settings that every node reads at start, under the official on-prem
//! environment names (so that an existing `db.env` works) with matching flags.

use std::path::PathBuf;
use std::time::Duration;

/// Which SQL database the cluster shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbEngine {
    /// Embedded, one machine: the default, so that a newcomer needs nothing installed.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl DbEngine {
    /// The official `WA_DB_ENGINE` spelling.
    pub fn as_env(self) -> &'static str {
        match self {
            DbEngine::Sqlite => "SQLITE",
            DbEngine::Postgres => "PGSQL",
            DbEngine::MySql => "MYSQL",
        }
    }
}

impl std::str::FromStr for DbEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "SQLITE" => Ok(DbEngine::Sqlite),
            "PGSQL" | "POSTGRES" | "POSTGRESQL" => Ok(DbEngine::Postgres),
            "MYSQL" | "MARIADB" => Ok(DbEngine::MySql),
            _ => Err(format!("WA_DB_ENGINE must be SQLITE, PGSQL or MYSQL, not {s:?}")),
        }
    }
}

/// Where the shared database is (`WA_DB_*`).
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// Database engine: SQLITE (embedded default), PGSQL or MYSQL.
    #[arg(long = "db-engine", env = "WA_DB_ENGINE", default_value = "SQLITE")]
    pub engine: DbEngine,
    /// Database server host (PGSQL, MYSQL).
    #[arg(long = "db-hostname", env = "WA_DB_HOSTNAME", default_value = "127.0.0.1")]
    pub hostname: String,
    /// Database server port; defaults to 5432 (PGSQL) or 3306 (MYSQL).
    #[arg(long = "db-port", env = "WA_DB_PORT")]
    pub port: Option<u16>,
    /// Database user; defaults to `postgres` (PGSQL) or `root` (MYSQL).
    #[arg(long = "db-username", env = "WA_DB_USERNAME")]
    pub username: Option<String>,
    /// Database password.
    #[arg(long = "db-password", env = "WA_DB_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Prefix of the database name: the cluster uses `<prefix>shardgate`, created if missing.
    #[arg(long = "db-name-prefix", env = "WA_DB_NAME_PREFIX", default_value = "")]
    pub name_prefix: String,
    /// Milliseconds an idle pooled connection is kept.
    #[arg(long = "db-connection-idle-timeout", env = "WA_DB_CONNECTION_IDLE_TIMEOUT", default_value = "180000")]
    pub idle_timeout_ms: u64,
    /// Directory of the embedded SQLite database (SQLITE only).
    #[arg(long = "data-dir", env = "SHARDGATE_DATA_DIR", default_value = "shardgate-data")]
    pub data_dir: PathBuf,
}

impl DbConfig {
    /// The database name the cluster uses.
    pub fn database_name(&self) -> String {
        format!("{}shardgate", self.name_prefix)
    }

    /// Idle timeout of pooled connections.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// Path of the SQLite file (meaningful for SQLITE only).
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(format!("{}.db", self.database_name()))
    }

    /// Server URL with `database` as the database, with the credentials filled in.
    pub fn server_url(&self, database: &str) -> String {
        let (scheme, port, user) = match self.engine {
            DbEngine::Postgres => ("postgres", 5432, "postgres"),
            DbEngine::MySql => ("mysql", 3306, "root"),
            DbEngine::Sqlite => return format!("sqlite://{}", self.sqlite_path().display()),
        };
        let user = self.username.as_deref().unwrap_or(user);
        let auth = match &self.password {
            Some(p) if !p.is_empty() => format!("{}:{}", url_escape(user), url_escape(p)),
            _ => url_escape(user),
        };
        format!("{scheme}://{auth}@{}:{}/{database}", self.hostname, self.port.unwrap_or(port))
    }
}

/// Percent-escapes the characters that would break a URL's user-info part.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Environment variables of the official compose files that Shardgate reads
/// under another name or does not need; each is acknowledged with one info line.
pub const IGNORED_OFFICIAL_ENV: &[&str] = &[
    "WA_API_VERSION",
    "WEBAPP_HOSTNAME",
    "WEBAPP_EXTERNAL_PORTS",
    "EXTERNAL_WEBAPP_PORT",
    "EXTERNAL_COREAPP_PORT0",
    "EXTERNAL_COREAPP_PORT1",
    "EXTERNAL_COREAPP_PORT2",
    "EXTERNAL_COREAPP_PORT3",
    "EXTERNAL_MASTER_PORT0",
    "EXTERNAL_MASTER_PORT1",
    "EXTERNAL_MASTER_PORT2",
    "EXTERNAL_MASTER_PORT3",
    "WA_APP_MULTICONNECT",
    "WA_MASTER_NODE",
];

/// Logs one info line per official variable that is set but not used here.
pub fn log_ignored_official_env() {
    for name in IGNORED_OFFICIAL_ENV {
        if std::env::var_os(name).is_some() {
            tracing::info!("{name} is set; Shardgate does not need it and ignores it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_accepts_official_names_and_names_the_setting_on_error() {
        assert_eq!("PGSQL".parse::<DbEngine>().unwrap(), DbEngine::Postgres);
        assert_eq!("mysql".parse::<DbEngine>().unwrap(), DbEngine::MySql);
        assert_eq!("SQLITE".parse::<DbEngine>().unwrap(), DbEngine::Sqlite);
        let err = "ORACLE".parse::<DbEngine>().unwrap_err();
        assert!(err.contains("WA_DB_ENGINE"), "{err}");
    }

    #[test]
    fn server_url_escapes_credentials() {
        let cfg = DbConfig {
            engine: DbEngine::Postgres,
            hostname: "db".into(),
            port: None,
            username: Some("wa".into()),
            password: Some("p@ss/word".into()),
            name_prefix: "x_".into(),
            idle_timeout_ms: 1000,
            data_dir: "d".into(),
        };
        assert_eq!(cfg.server_url("x_shardgate"), "postgres://wa:p%40ss%2Fword@db:5432/x_shardgate");
    }
}
