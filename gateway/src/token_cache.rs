//! Bearer tokens seen in the last second, so that a request does not cost a
//! database round trip to learn who sent it. An entry lives
//! [`TOKEN_CACHE_TTL`]: a token revoked on another webapp (a logout, a
//! password change, a deleted user) stops working here within that time; on
//! this webapp at once, since its revocations evict the entry. Unknown tokens
//! are not cached, so a token is never refused from memory. Bounded in entries.
//!
//! "At once" needs care: a request may have read a token's user from the
//! database just before a revocation here committed, and cache it just after
//! the revocation cleared the cache. So a lookup takes a [`Lookup`] ticket
//! before it asks the database, and its answer is cached only if no
//! [`TokenCache::clear`] ran since.

use moka::sync::Cache;
use shardgate_core::store::users::UserRecord;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a token's user is trusted without asking the database.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(1);
/// Tokens cached at most.
const CAPACITY: u64 = 10_000;

/// The users of recently seen tokens, by token hash; cheap to clone.
#[derive(Clone)]
pub struct TokenCache {
    users: Cache<String, UserRecord>,
    /// How many times the cache was cleared. The lock is held while a clear
    /// bumps it and empties the cache, and while an insert checks it and
    /// inserts, so that no insert can land between the two halves of a clear.
    clears: Arc<Mutex<u64>>,
}

/// Taken before a token's user is read from the database; see [`TokenCache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    clears: u64,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            users: Cache::builder().max_capacity(CAPACITY).time_to_live(TOKEN_CACHE_TTL).build(),
            clears: Arc::default(),
        }
    }
}

impl TokenCache {
    /// The cached user of `token_hash`.
    pub fn get(&self, token_hash: &str) -> Option<UserRecord> {
        self.users.get(token_hash)
    }

    /// A ticket to take before reading a token's user from the database.
    pub fn lookup(&self) -> Lookup {
        Lookup { clears: *self.lock_clears() }
    }

    /// Remembers the user of a token the database confirmed after `lookup`
    /// was taken, unless the cache was cleared since (the answer may predate
    /// a revocation made here).
    pub fn insert(&self, lookup: Lookup, token_hash: String, user: UserRecord) {
        let clears = self.lock_clears();
        if *clears == lookup.clears {
            self.users.insert(token_hash, user);
        }
    }

    /// Forgets one token (revoked here).
    pub fn evict(&self, token_hash: &str) {
        self.users.invalidate(token_hash);
    }

    /// Forgets every token (a password changed or a user was deleted here:
    /// that user's tokens are gone), and every lookup still under way.
    pub fn clear(&self) {
        let mut clears = self.lock_clears();
        *clears += 1;
        self.users.invalidate_all();
    }

    /// The clear counter. A panic while it is held cannot leave it wrong (it
    /// is one integer), so a poisoned lock is used as it is.
    fn lock_clears(&self) -> std::sync::MutexGuard<'_, u64> {
        self.clears.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserRecord {
        UserRecord { username: "ana".into(), password_hash: "h".into(), role: "user".into(), must_change: false }
    }

    #[test]
    fn an_answer_read_before_a_clear_is_not_cached_after_it() {
        let cache = TokenCache::default();
        let before = cache.lookup();
        cache.clear();
        cache.insert(before, "t".into(), user());
        assert_eq!(cache.get("t"), None, "the answer may predate the revocation");
        cache.insert(cache.lookup(), "t".into(), user());
        assert_eq!(cache.get("t"), Some(user()), "a lookup after the clear is cached");
        cache.clear();
        assert_eq!(cache.get("t"), None, "a clear forgets it");
    }
}
