//! The default routing rule: `shard = fnv1a64(recipient) % shards`.
//!
//! FNV-1a (64-bit) over the recipient's UTF-8 bytes is fixed forever: the
//! shard of a recipient must not move between versions, or messages to one
//! recipient could be sent by two shards out of order. The constants are
//! those of `core/src/routing.rs`; never change one without the other, and
//! never change either.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET_BASIS;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The shard of a recipient under the default rule; a shard count of 0 is
/// taken as 1, as the native rule does.
pub fn default_shard(recipient: &str, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    // The remainder is below a u32 shard count, so the cast loses nothing.
    (fnv1a64(recipient.as_bytes()) % shards) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_published_fnv1a64() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn zero_shards_route_to_shard_zero() {
        assert_eq!(default_shard("15550001", 0), 0);
        assert_eq!(default_shard("15550001", 1), 0);
    }
}
