//! The interval-based health verdict (the seed's rules): unhealthy when no
//! master heard the coreapp for `unhealthy_interval`, or it wrote no
//! database liveness for twice `db_update_interval`.
//!
//! Reasons are those of `IntervalHealth` in `core/src/policy.rs`, formatted
//! the same way.

/// What the interval rules look at, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Since the coreapp's last database liveness write.
    pub since_db_liveness_ms: u64,
    /// `unhealthy_interval` in force.
    pub unhealthy_interval_ms: u64,
    /// `db_update_interval` in force.
    pub db_update_interval_ms: u64,
}

/// The verdict: `None` when healthy, else the reason to replace it.
/// `since_last_answer` holds, per master, the milliseconds since the coreapp
/// last answered it, if ever.
pub fn interval_verdict(since_last_answer: impl IntoIterator<Item = Option<u64>>, o: Intervals) -> Option<String> {
    let freshest = since_last_answer.into_iter().flatten().min();
    match freshest {
        Some(since) if since <= o.unhealthy_interval_ms => {}
        Some(since) => return Some(format!("answered no master for {:.1} s", since as f64 / 1000.0)),
        None => return Some("never answered a master".into()),
    }
    // Same arithmetic as the native rule, overflow behaviour included.
    if o.since_db_liveness_ms > 2 * o.db_update_interval_ms {
        return Some(format!("wrote no database liveness for {:.0} s", o.since_db_liveness_ms as f64 / 1000.0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Intervals =
        Intervals { since_db_liveness_ms: 1_000, unhealthy_interval_ms: 30_000, db_update_interval_ms: 60_000 };

    #[test]
    fn interval_rules_follow_the_seed() {
        assert_eq!(interval_verdict([Some(5_000), Some(400)], BASE), None);
        assert_eq!(interval_verdict([Some(31_000), None], BASE).as_deref(), Some("answered no master for 31.0 s"));
        assert_eq!(interval_verdict([None], BASE).as_deref(), Some("never answered a master"));
        assert_eq!(interval_verdict([], BASE).as_deref(), Some("never answered a master"));
        let stale = Intervals { since_db_liveness_ms: 120_001, ..BASE };
        assert_eq!(interval_verdict([Some(0)], stale).as_deref(), Some("wrote no database liveness for 120 s"));
    }
}
