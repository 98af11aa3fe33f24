//! Faults the inspection API can switch on to make the sim misbehave on purpose:
//! refuse new sessions, slow down acks, or swallow sends.

use serde::{Deserialize, Serialize};

/// The faults in force; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Every hello is answered `Refused{reason:"refused"}`.
    pub refuse_sessions: bool,
    /// Acks (and the receipts that follow them) wait this long.
    pub ack_delay_ms: u64,
    /// Sends are ignored: not recorded, not acked, not delivered.
    pub drop_sends: bool,
}

/// A partial update of [`Faults`]: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    /// New value of [`Faults::refuse_sessions`].
    pub refuse_sessions: Option<bool>,
    /// New value of [`Faults::ack_delay_ms`].
    pub ack_delay_ms: Option<u64>,
    /// New value of [`Faults::drop_sends`].
    pub drop_sends: Option<bool>,
}

impl Faults {
    /// Applies a partial update.
    pub fn apply(&mut self, update: FaultsUpdate) {
        if let Some(refuse) = update.refuse_sessions {
            self.refuse_sessions = refuse;
        }
        if let Some(delay) = update.ack_delay_ms {
            self.ack_delay_ms = delay;
        }
        if let Some(drop) = update.drop_sends {
            self.drop_sends = drop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_update_changes_only_the_fields_it_names() {
        let mut faults = Faults { refuse_sessions: true, ack_delay_ms: 5, drop_sends: false };
        faults.apply(serde_json::from_str(r#"{"drop_sends":true}"#).unwrap());
        assert_eq!(faults, Faults { refuse_sessions: true, ack_delay_ms: 5, drop_sends: true });
    }
}
