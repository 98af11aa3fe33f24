//! An example router: recipients whose number starts with one of the
//! country codes in [`PINNED`] go to that code's dedicated shard; all other
//! recipients are hashed (`fnv1a64`, as the default router does) over the
//! shards that no code is pinned to.
//!
//! Pins apply to phone numbers only: a message whose `recipient-type`
//! metadata says it goes to anything but an `individual` (a group, say) is
//! hashed like an unpinned number. The plugin reads that metadata through
//! the host's `message.metadata` import, and only when a prefix matches, so
//! the other messages cost no import call.
//!
//! # Editing the table
//! Edit [`PINNED`] and rebuild with `plugins/build`. Each entry is a prefix
//! of the recipient's digits (a country code, without `+` or `00`) and a
//! shard. The longest matching prefix wins, so `"1"` and `"1242"` may both
//! be listed. A pin only applies while its shard exists: with 2 shards, a
//! code pinned to shard 2 is hashed like any other number.
//!
//! Changing the table, like changing the shard count, moves recipients to
//! other shards: do it when their queues are drained, or their order is lost.

wit_bindgen::generate!({ world: "router", path: "../../../wit" });

use std::sync::atomic::{AtomicU32, Ordering};

use default_rules::routing::fnv1a64;
use exports::shardgate::policy::routing::{Guest, MessageKind, RouteAnswer};
use shardgate::policy::host::{log, Level};
use shardgate::policy::message::metadata;

/// Country-code prefixes and their dedicated shards.
const PINNED: &[(&str, u32)] = &[
    ("44", 1), // United Kingdom
    ("49", 2), // Germany
];

// One bit per entry of `PINNED` in `LOGGED`.
const _: () = assert!(PINNED.len() <= 32, "PINNED has at most 32 entries");

/// The entries of [`PINNED`] this instance has already logged, one bit each:
/// each pin is logged the first time it is used, not on every message.
static LOGGED: AtomicU32 = AtomicU32::new(0);

/// The component's exports.
struct CountryRouter;

impl Guest for CountryRouter {
    fn route(recipient: String, _kind: MessageKind, shards: u32) -> RouteAnswer {
        let shards = shards.max(1);
        if let Some(entry) = pinned_entry(&recipient, shards).filter(|_| to_individual()) {
            let (prefix, shard) = PINNED[entry];
            let bit = 1 << entry;
            if LOGGED.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                log(Level::Debug, &format!("recipients starting with {prefix} are pinned to shard {shard}"));
            }
            return RouteAnswer::Shard(shard);
        }
        RouteAnswer::Shard(hashed_shard(&recipient, shards))
    }
}

/// The index in [`PINNED`] of the longest prefix of `recipient` whose shard
/// exists among `shards`.
fn pinned_entry(recipient: &str, shards: u32) -> Option<usize> {
    PINNED
        .iter()
        .enumerate()
        .filter(|(_, &(prefix, shard))| shard < shards && recipient.starts_with(prefix))
        .max_by_key(|(_, &(prefix, _))| prefix.len())
        .map(|(entry, _)| entry)
}

/// Whether the message goes to a phone number: its `recipient-type` is
/// `individual`, or it has none (a contact check).
fn to_individual() -> bool {
    metadata("recipient-type").is_none_or(|kind| kind == "individual")
}

/// Whether some entry of [`PINNED`] dedicates `shard`.
fn is_pinned(shard: u32) -> bool {
    PINNED.iter().any(|&(_, pinned)| pinned == shard)
}

/// `fnv1a64(recipient)` over the shards below `shards` that are not pinned,
/// or over all of them when every one is pinned.
fn hashed_shard(recipient: &str, shards: u32) -> u32 {
    let hash = fnv1a64(recipient.as_bytes());
    let free = (0..shards).filter(|&s| !is_pinned(s)).count() as u64;
    if free == 0 {
        return (hash % u64::from(shards)) as u32;
    }
    let nth = (hash % free) as usize;
    (0..shards).filter(|&s| !is_pinned(s)).nth(nth).unwrap_or(0)
}

export!(CountryRouter);
