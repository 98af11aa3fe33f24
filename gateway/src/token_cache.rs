//! Bearer tokens seen in the last second, so that a request does not cost a
//! database round trip to learn who sent it. An entry lives
//! [`TOKEN_CACHE_TTL`]: a token revoked on another webapp (a logout, a
//! password change) stops working here within that time; on this webapp at
//! once, since its revocations evict the entry. Unknown tokens are not
//! cached, so a token is never refused from memory. Bounded in entries.

use moka::sync::Cache;
use shardgate_core::store::users::UserRecord;
use std::time::Duration;

/// How long a token's user is trusted without asking the database.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
/// Tokens cached at most.
const CAPACITY: u64 = 10_000;

/// The users of recently seen tokens, by token hash; cheap to clone.
#[derive(Clone)]
pub struct TokenCache {
    users: Cache<String, UserRecord>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache { users: Cache::builder().max_capacity(CAPACITY).time_to_live(TOKEN_CACHE_TTL).build() }
    }
}

impl TokenCache {
    /// The cached user of `token_hash`.
    pub fn get(&self, token_hash: &str) -> Option<UserRecord> {
        self.users.get(token_hash)
    }

    /// Remembers the user of a token the database just confirmed.
    pub fn insert(&self, token_hash: String, user: UserRecord) {
        self.users.insert(token_hash, user);
    }

    /// Forgets one token (revoked here).
    pub fn evict(&self, token_hash: &str) {
        self.users.invalidate(token_hash);
    }

    /// Forgets every token (a password changed here: its user's tokens are gone).
    pub fn clear(&self) {
        self.users.invalidate_all();
    }
}
