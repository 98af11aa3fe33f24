//! The default routing rule: `shard = fnv1a64(recipient) % shards`.
//!
//! FNV-1a (64-bit) over the recipient's UTF-8 bytes is fixed forever: the
//! shard of a recipient must not move between versions, or messages to one
//! recipient could be sent by two shards out of order.

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard of a recipient under the default rule.
pub fn default_shard(recipient: &str, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    u32::try_from(fnv1a64(recipient.as_bytes()) % shards).expect("below a u32 shard count")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_published_fnv1a64() {
        // Reference values of the FNV-1a 64-bit test suite.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn every_shard_is_used_and_in_range() {
        let mut seen = [false; 8];
        for n in 0..200 {
            let shard = default_shard(&format!("1555000{n:04}"), 8);
            seen[shard as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(default_shard("15550001", 1), 0);
    }
}
