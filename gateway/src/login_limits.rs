//! Login attempts, limited per client address and per user name, so that
//! guessing passwords costs the guesser and never the node (issue 6).
//!
//! Every attempt that would reach the password check costs one from the
//! budget of its client address and, when the user exists, one from the
//! budget of that user name; an empty budget answers 429 before any hashing.
//! A budget is a burst of N attempts that refills at N a minute (governor's
//! GCRA). A success costs one too: a client logs in once a week per token.
//!
//! Memory stays bounded: user names are tracked only for users that exist,
//! addresses (IPv6 by /64, since one host holds a whole /64) up to
//! [`MAX_TRACKED_ADDRESSES`], and both tables drop the keys whose budget is
//! full again every minute. When the address table is full of recent keys
//! (a distributed flood), addresses are not limited until it drains; the
//! per-user budgets and the bounded hashing queue (`auth`) still hold.

use crate::error::{ApiError, ErrorKind};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most client addresses whose budgets are kept at once.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// How often budgets that are full again are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How often refused attempts are summed up in the log, at most.
const LOG_REFUSALS_EVERY: Duration = Duration::from_secs(10);

/// The budgets, as start-up settings of the webapp.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LoginLimits {
    /// Login attempts one client address may make: a burst of this many, refilled at this many a minute.
    #[arg(long = "login-attempts-per-address", env = "SHARDGATE_LOGIN_ATTEMPTS_PER_ADDRESS", default_value = "20")]
    pub per_address: NonZeroU32,
    /// Login attempts on one user name, from all addresses together: a burst of this many, refilled at this many a minute.
    #[arg(long = "login-attempts-per-user", env = "SHARDGATE_LOGIN_ATTEMPTS_PER_USER", default_value = "20")]
    pub per_user: NonZeroU32,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        let twenty = NonZeroU32::new(20).expect("20 is not zero");
        LoginLimits { per_address: twenty, per_user: twenty }
    }
}

/// The budgets of the addresses and user names seen lately.
pub struct LoginThrottle {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<String>,
    last_sweep: Mutex<Instant>,
    refusals: Mutex<RefusalLog>,
}

/// Refusals since the last summary line.
#[derive(Default)]
struct RefusalLog {
    since_last_line: u64,
    last_line: Option<Instant>,
}

impl LoginThrottle {
    /// Budgets as `limits` sets them.
    pub fn new(limits: &LoginLimits) -> LoginThrottle {
        LoginThrottle {
            by_address: DefaultKeyedRateLimiter::keyed(Quota::per_minute(limits.per_address)),
            by_user: DefaultKeyedRateLimiter::keyed(Quota::per_minute(limits.per_user)),
            last_sweep: Mutex::new(Instant::now()),
            refusals: Mutex::new(RefusalLog::default()),
        }
    }

    /// Takes one attempt from the budget of `client` (unknown when the server
    /// gave no peer address), or refuses with 429.
    pub fn admit_address(&self, client: Option<IpAddr>, username: &str) -> Result<(), ApiError> {
        self.sweep_if_due();
        let key = address_key(client);
        if self.by_address.len() >= MAX_TRACKED_ADDRESSES {
            self.by_address.retain_recent();
            if self.by_address.len() >= MAX_TRACKED_ADDRESSES {
                self.log_refusal(|n| {
                    format!(
                        "login attempts come from over {MAX_TRACKED_ADDRESSES} addresses at once: not limiting by \
                         address until they slow down ({n} such attempts)"
                    )
                });
                return Ok(());
            }
        }
        self.by_address.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.refuse(
                format!("too many login attempts from {key}; retry in {} s", wait.as_secs().max(1)),
                username,
                key,
            )
        })
    }

    /// Takes one attempt from the budget of the existing user `username`, or refuses with 429.
    pub fn admit_user(&self, username: &str, client: Option<IpAddr>) -> Result<(), ApiError> {
        self.by_user.check_key(&username.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.refuse(
                format!("too many login attempts for {username}; retry in {} s", wait.as_secs().max(1)),
                username,
                address_key(client),
            )
        })
    }

    fn refuse(&self, details: String, username: &str, client: IpAddr) -> ApiError {
        let refused = ApiError::new(ErrorKind::TooManyRequests, details);
        self.note_refusal(username, client, &refused);
        refused
    }

    /// Logs a login refused with 429 (over a budget, or the hashing queue
    /// full), summed up with the others of the last 10 s.
    pub fn note_refusal(&self, username: &str, client: IpAddr, refused: &ApiError) {
        self.log_refusal(|n| {
            format!(
                "refused {n} login attempts with 429; latest from {client} for user {username:?}: {}",
                refused.details
            )
        });
    }

    /// One warning line per [`LOG_REFUSALS_EVERY`] at most: a flood must not flood the log too.
    fn log_refusal(&self, line: impl FnOnce(u64) -> String) {
        let mut log = self.refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.since_last_line += 1;
        if log.last_line.is_none_or(|at| at.elapsed() >= LOG_REFUSALS_EVERY) {
            tracing::warn!("{}", line(log.since_last_line));
            log.since_last_line = 0;
            log.last_line = Some(Instant::now());
        }
    }

    fn sweep_if_due(&self) {
        let mut last = self.last_sweep.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() < SWEEP_EVERY {
            return;
        }
        *last = Instant::now();
        drop(last);
        self.by_address.retain_recent();
        self.by_user.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_user.shrink_to_fit();
    }
}

/// The key of a client address: IPv4 (IPv4-mapped IPv6 included) as is,
/// other IPv6 by its /64; the unspecified address when there is none.
pub fn address_key(client: Option<IpAddr>) -> IpAddr {
    match client.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        Some(v4) => v4,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(n: u32) -> LoginLimits {
        let n = NonZeroU32::new(n).unwrap();
        LoginLimits { per_address: n, per_user: n }
    }

    #[test]
    fn an_address_over_its_budget_is_refused_with_429_and_others_are_not() {
        let throttle = LoginThrottle::new(&limits(3));
        let attacker = Some("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            throttle.admit_address(attacker, "admin").unwrap();
        }
        let refused = throttle.admit_address(attacker, "admin").unwrap_err();
        assert_eq!(refused.kind, ErrorKind::TooManyRequests);
        assert!(refused.details.contains("192.0.2.1"), "{}", refused.details);
        throttle.admit_address(Some("192.0.2.2".parse().unwrap()), "admin").unwrap();
    }

    #[test]
    fn a_user_over_its_budget_is_refused_whatever_the_address() {
        let throttle = LoginThrottle::new(&limits(2));
        throttle.admit_user("admin", None).unwrap();
        throttle.admit_user("admin", None).unwrap();
        assert_eq!(throttle.admit_user("admin", None).unwrap_err().kind, ErrorKind::TooManyRequests);
        throttle.admit_user("ops", None).unwrap();
    }

    #[test]
    fn ipv6_clients_share_the_budget_of_their_64() {
        let a = address_key(Some("2001:db8:1:2:aaaa::1".parse().unwrap()));
        let b = address_key(Some("2001:db8:1:2:bbbb::2".parse().unwrap()));
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(address_key(Some("::ffff:192.0.2.7".parse().unwrap())), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(address_key(None), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }
}
