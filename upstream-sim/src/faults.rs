//! Faults the inspection API can switch on to make the sim misbehave on purpose:
//! refuse new sessions, slow down acks, swallow sends, or write raw lines that
//! are no frame at all.

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
    /// Lines still to be written verbatim, each once, to the next session that
    /// writes a frame, just before that frame: garbage a client must survive.
    /// Absent from the JSON while none is pending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw_lines: Vec<String>,
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
    /// Appended to [`Faults::raw_lines`].
    pub raw_lines: Option<Vec<String>>,
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
        if let Some(lines) = update.raw_lines {
            self.raw_lines.extend(lines);
        }
    }

    /// The pending raw lines, which are then no longer pending.
    pub fn take_raw_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.raw_lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_update_changes_only_the_fields_it_names() {
        let mut faults = Faults { refuse_sessions: true, ack_delay_ms: 5, drop_sends: false, raw_lines: Vec::new() };
        faults.apply(serde_json::from_str(r#"{"drop_sends":true}"#).unwrap());
        let expected = Faults { refuse_sessions: true, ack_delay_ms: 5, drop_sends: true, raw_lines: Vec::new() };
        assert_eq!(faults, expected);
    }

    #[test]
    fn raw_lines_queue_up_and_are_taken_once() {
        let mut faults = Faults::default();
        faults.apply(serde_json::from_str(r#"{"raw_lines":["not json"]}"#).unwrap());
        faults.apply(serde_json::from_str(r#"{"raw_lines":["{"]}"#).unwrap());
        assert_eq!(serde_json::to_value(&faults).unwrap()["raw_lines"], serde_json::json!(["not json", "{"]));
        assert_eq!(faults.take_raw_lines(), vec!["not json".to_string(), "{".to_string()]);
        assert!(faults.take_raw_lines().is_empty());
        // Nothing pending: the JSON keeps its old shape.
        assert!(serde_json::to_value(&faults).unwrap().get("raw_lines").is_none());
    }
}
