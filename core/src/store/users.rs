//! API users and their bearer tokens. Only hashes are stored: the password
//! hash comes from the gateway, tokens are stored as their SHA-256. Tokens
//! are looked up here on every request, so a revocation holds on every
//! webapp at once.

use super::dialect::RowText;
use super::{Store, StoreResult};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A stored API user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Login name.
    pub username: String,
    /// PHC-format password hash.
    pub password_hash: String,
    /// `admin` or `user`.
    pub role: String,
    /// The default password is still set; the next login must change it.
    pub must_change: bool,
}

impl UserRecord {
    /// A row of `username, password_hash, role, must_change`, in that order.
    fn from_row(r: &AnyRow) -> StoreResult<UserRecord> {
        Ok(UserRecord {
            username: r.text(0)?,
            password_hash: r.text(1)?,
            role: r.text(2)?,
            must_change: r.try_get::<i64, _>(3)? != 0,
        })
    }
}

impl Store {
    /// Looks a user up by name.
    pub async fn user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let sql = self.sql("SELECT username, password_hash, role, must_change FROM users WHERE username = ?");
        let row = sqlx::query(&sql).bind(username).fetch_optional(self.pool()).await?;
        row.as_ref().map(UserRecord::from_row).transpose()
    }

    /// Creates the user unless one of that name exists; whether it was created.
    /// Two webapps creating the same name at once both ask the database, so
    /// exactly one of them gets `true`.
    pub async fn ensure_user(&self, user: &UserRecord) -> StoreResult<bool> {
        let sql =
            self.sql("{insert_ignore} INTO users (username, password_hash, role, must_change) VALUES (?, ?, ?, ?)");
        let inserted = sqlx::query(&sql)
            .bind(&user.username)
            .bind(&user.password_hash)
            .bind(&user.role)
            .bind(i64::from(user.must_change))
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    /// Sets a new password hash, ending the must-change state, and revokes
    /// every token of the user in the same transaction (whoever held the old
    /// password may hold a token too). Returns how many tokens were revoked,
    /// or `None` when there is no such user (and nothing changed).
    pub async fn set_password(&self, username: &str, password_hash: &str) -> StoreResult<Option<u64>> {
        let mut tx = self.pool().begin().await?;
        let update = self.sql("UPDATE users SET password_hash = ?, must_change = 0 WHERE username = ?");
        let updated = sqlx::query(&update).bind(password_hash).bind(username).execute(&mut *tx).await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        let revoke = self.sql("DELETE FROM tokens WHERE username = ?");
        let revoked = sqlx::query(&revoke).bind(username).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(Some(revoked))
    }

    /// Deletes a user and every token of theirs in one transaction, so no
    /// token outlives its user on any webapp that asks the database. Returns
    /// how many tokens were revoked, or `None` when there is no such user.
    pub async fn delete_user(&self, username: &str) -> StoreResult<Option<u64>> {
        let mut tx = self.pool().begin().await?;
        let delete = self.sql("DELETE FROM users WHERE username = ?");
        if sqlx::query(&delete).bind(username).execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(None);
        }
        let revoke = self.sql("DELETE FROM tokens WHERE username = ?");
        let revoked = sqlx::query(&revoke).bind(username).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(Some(revoked))
    }

    /// Revokes one token; whether it existed.
    pub async fn revoke_token(&self, token_hash: &str) -> StoreResult<bool> {
        let sql = self.sql("DELETE FROM tokens WHERE token_hash = ?");
        Ok(sqlx::query(&sql).bind(token_hash).execute(self.pool()).await?.rows_affected() > 0)
    }

    /// Stores a token hash valid until `expires_at` (unix ms) for the user,
    /// if it still exists with the password hash `password_hash`; whether it
    /// was stored. A login checks the password first and issues the token an
    /// argon2 hash later: a deletion or a password change in between revoked
    /// the user's tokens, and must not be outlived by one issued on the old
    /// password (nor, after a deletion, come back to life for a new user of
    /// the same name).
    pub async fn insert_token(
        &self,
        token_hash: &str,
        username: &str,
        password_hash: &str,
        expires_at: i64,
    ) -> StoreResult<bool> {
        let sql = self.sql(
            "INSERT INTO tokens (token_hash, username, expires_at) \
             SELECT ?, username, ? FROM users WHERE username = ? AND password_hash = ?",
        );
        let inserted = sqlx::query(&sql)
            .bind(token_hash)
            .bind(expires_at)
            .bind(username)
            .bind(password_hash)
            .execute(self.pool())
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// The user behind an unexpired token.
    pub async fn token_user(&self, token_hash: &str) -> StoreResult<Option<UserRecord>> {
        let sql = self.sql(
            "SELECT u.username, u.password_hash, u.role, u.must_change FROM tokens t \
             JOIN users u ON u.username = t.username WHERE t.token_hash = ? AND t.expires_at > {now}",
        );
        let row = sqlx::query(&sql).bind(token_hash).fetch_optional(self.pool()).await?;
        row.as_ref().map(UserRecord::from_row).transpose()
    }
}
