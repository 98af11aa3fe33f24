//! An example authorizer: the on-prem roles of the default authorizer, for
//! clients whose IP address is on [`ALLOWED`] only. Any other client gets
//! 403, whoever it claims to be, before the roles are looked at.
//!
//! # Editing the list
//! Edit [`ALLOWED`] and rebuild with `plugins/build`. An entry ending in `.`
//! or `:` is a prefix (`"10."` is 10.0.0.0/8, `"192.168.1."` is
//! 192.168.1.0/24, `"fd00:"` a part of fc00::/7); any other entry is one
//! address, written as the host writes it (`::1`, lower-case IPv6, no
//! leading zeros). An IPv4 client reached over an IPv6 socket
//! (`::ffff:10.1.2.3`) is matched by its IPv4 address.

wit_bindgen::generate!({ world: "authorizer", path: "../../../wit" });

use default_rules::authorization::{on_prem, Caller};
use exports::shardgate::policy::authorization::{Denial, Guest, Principal, Request, Role, Verdict};

/// The client addresses, or address prefixes, that may call the API.
const ALLOWED: &[&str] = &[
    "127.0.0.1", // loopback
    "::1",       // loopback, IPv6
    "10.",       // 10.0.0.0/8
];

/// The component's exports.
struct AllowListAuthorizer;

impl Guest for AllowListAuthorizer {
    fn authorize(principal: Principal, request: Request) -> Verdict {
        if !allowed(&request.client_addr) {
            let reason = format!("client address {} is not on this gateway's allow-list", request.client_addr);
            return Verdict::Deny(Denial { status: 403, reason });
        }
        let caller = match principal {
            Principal::User(user) => Caller::User { admin: user.role == Role::Admin },
            Principal::ApiKey => Caller::ApiKey,
            Principal::Anonymous => Caller::Anonymous,
        };
        match on_prem(caller, &request.path) {
            Ok(()) => Verdict::Allow,
            Err(denial) => Verdict::Deny(Denial { status: denial.status, reason: denial.reason.into() }),
        }
    }
}

/// Whether `addr` is on [`ALLOWED`].
fn allowed(addr: &str) -> bool {
    let addr = addr.strip_prefix("::ffff:").filter(|v4| v4.contains('.')).unwrap_or(addr);
    ALLOWED.iter().any(|&entry| {
        if entry.ends_with('.') || entry.ends_with(':') {
            addr.starts_with(entry)
        } else {
            addr == entry
        }
    })
}

export!(AllowListAuthorizer);
