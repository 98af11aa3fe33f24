//! Test plugin: the default health policy as built for contract
//! `shardgate:policy@0.1.0` (`wit/0.1.0`). The host must keep loading such
//! components; its tests compare this one with `IntervalHealth`.

wit_bindgen::generate!({ world: "health-policy", path: "../../../../wit/0.1.0" });

use default_rules::health::{interval_verdict, Intervals};
use exports::shardgate::policy::health::{Guest, Observations, Verdict};

/// The component's exports.
struct IntervalHealth;

impl Guest for IntervalHealth {
    fn judge(observations: Observations) -> Verdict {
        let intervals = Intervals {
            since_db_liveness_ms: observations.since_db_liveness_ms,
            unhealthy_interval_ms: observations.unhealthy_interval_ms,
            db_update_interval_ms: observations.db_update_interval_ms,
        };
        let since_last_answer = observations.heartbeats.iter().map(|view| view.since_last_answer_ms);
        match interval_verdict(since_last_answer, intervals) {
            None => Verdict::Healthy,
            Some(reason) => Verdict::Unhealthy(reason),
        }
    }
}

export!(IntervalHealth);
