//! Which phone numbers are on the network.
//!
//! The rule, so that tests need no setup: a number exists when, once
//! normalized (a leading `+`, spaces, dashes, dots and parentheses dropped), it
//! is 8 to 15 digits and starts with none of the "unknown" prefixes (by
//! default only `0`: no country code starts with 0). The inspection API adds
//! numbers (they then exist whatever their shape, as long as they are digits)
//! and removes them (they then never exist), and replaces the prefixes.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use shardgate_core::upstream::protocol::{ContactCheck, UpstreamError};

/// Shortest number the rule lets exist.
pub const MIN_DIGITS: usize = 8;
/// Longest number the rule lets exist (the E.164 maximum).
pub const MAX_DIGITS: usize = 15;

/// The network's directory of numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// Numbers that exist whatever the rule says.
    added: BTreeSet<String>,
    /// Numbers that never exist.
    removed: BTreeSet<String>,
    /// Numbers starting with one of these do not exist (unless added).
    unknown_prefixes: Vec<String>,
    /// `CheckContacts` frames answered.
    checks: u64,
}

impl Default for Directory {
    fn default() -> Self {
        Directory { added: BTreeSet::new(), removed: BTreeSet::new(), unknown_prefixes: vec!["0".into()], checks: 0 }
    }
}

/// `POST /sim/contacts`: numbers to add or remove, and new unknown prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryUpdate {
    /// Numbers that exist from now on (normalized; inputs that are no number are ignored).
    #[serde(default)]
    pub add: Vec<String>,
    /// Numbers that no longer exist; applied after `add`.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Replaces the unknown prefixes when present.
    pub unknown_prefixes: Option<Vec<String>>,
}

/// The directory as `GET /sim/contacts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct DirectoryView {
    /// The rule in one sentence.
    pub rule: String,
    /// Numbers added through the API.
    pub added: Vec<String>,
    /// Numbers removed through the API.
    pub removed: Vec<String>,
    /// Prefixes of numbers that do not exist.
    pub unknown_prefixes: Vec<String>,
    /// `CheckContacts` frames answered so far.
    pub checks: u64,
}

impl Directory {
    /// Whether `input` names a number on the network.
    pub fn exists(&self, input: &str) -> bool {
        self.wa_id(input).is_some()
    }

    /// The WhatsApp id (digits only) of `input` when it is on the network.
    pub fn wa_id(&self, input: &str) -> Option<String> {
        let number = normalize(input)?;
        if self.removed.contains(&number) {
            return None;
        }
        let by_rule = (MIN_DIGITS..=MAX_DIGITS).contains(&number.len())
            && !self.unknown_prefixes.iter().any(|p| number.starts_with(p.as_str()));
        (by_rule || self.added.contains(&number)).then_some(number)
    }

    /// The failure of a message to `to` when `to` is not on the network.
    pub fn require(&self, to: &str) -> Result<(), UpstreamError> {
        if self.exists(to) {
            return Ok(());
        }
        Err(UpstreamError {
            code: 1013,
            title: "User is not valid".into(),
            details: Some(format!("{to:?} is not a WhatsApp user")),
        })
    }

    /// Answers one `CheckContacts`: each input `valid` with its id, or `invalid`.
    pub fn check(&mut self, inputs: &[String]) -> Vec<ContactCheck> {
        self.checks += 1;
        inputs
            .iter()
            .map(|input| {
                let wa_id = self.wa_id(input);
                let status = if wa_id.is_some() { "valid" } else { "invalid" };
                ContactCheck { input: input.clone(), status: status.into(), wa_id }
            })
            .collect()
    }

    /// Applies an update: adds, then removes, then replaces the prefixes.
    pub fn apply(&mut self, update: DirectoryUpdate) {
        for number in update.add.iter().filter_map(|n| normalize(n)) {
            self.removed.remove(&number);
            self.added.insert(number);
        }
        for number in update.remove.iter().filter_map(|n| normalize(n)) {
            self.added.remove(&number);
            self.removed.insert(number);
        }
        if let Some(prefixes) = update.unknown_prefixes {
            self.unknown_prefixes = prefixes.iter().filter_map(|p| normalize(p)).collect();
        }
    }

    /// The directory for the inspection API.
    pub fn view(&self) -> DirectoryView {
        DirectoryView {
            rule: format!(
                "a number exists when it is {MIN_DIGITS} to {MAX_DIGITS} digits (after dropping '+', spaces, \
                 dashes, dots and parentheses), starts with no unknown prefix and was not removed; added \
                 numbers always exist"
            ),
            added: self.added.iter().cloned().collect(),
            removed: self.removed.iter().cloned().collect(),
            unknown_prefixes: self.unknown_prefixes.clone(),
            checks: self.checks,
        }
    }

    /// `CheckContacts` frames answered so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }
}

/// The digits of a phone number as people write it: a leading `+`, spaces,
/// dashes, dots and parentheses are dropped; anything else makes it no number.
pub fn normalize(input: &str) -> Option<String> {
    let trimmed = input.trim();
    let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (!digits.is_empty()).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(add: &[&str], remove: &[&str], prefixes: Option<&[&str]>) -> DirectoryUpdate {
        DirectoryUpdate {
            add: add.iter().map(|s| s.to_string()).collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
            unknown_prefixes: prefixes.map(|p| p.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn numbers_of_8_to_15_digits_exist_by_default_whatever_their_punctuation() {
        let directory = Directory::default();
        for number in
            ["15559999", "15551234567", "447700000123", "+1 (555) 123-4567", "1.555.123.4567", "123456789012345"]
        {
            assert!(directory.exists(number), "{number}");
        }
        assert_eq!(directory.wa_id("+1 (555) 123-4567").as_deref(), Some("15551234567"));
    }

    #[test]
    fn short_long_lettered_and_zero_prefixed_numbers_do_not_exist() {
        let directory = Directory::default();
        for number in ["1555999", "1234567890123456", "u1", "1555abc1234", "", "+", "0155512345"] {
            assert!(!directory.exists(number), "{number}");
        }
        assert_eq!(directory.require("1555").unwrap_err().code, 1013);
    }

    #[test]
    fn added_numbers_exist_removed_ones_do_not_and_the_last_word_wins() {
        let mut directory = Directory::default();
        directory.apply(update(&["1555", "15550000"], &["15551111111"], None));
        assert!(directory.exists("1555"), "added overrides the length rule");
        assert!(!directory.exists("+1 555 111 1111"), "removed overrides the rule");
        directory.apply(update(&["15551111111"], &["1555"], None));
        assert!(directory.exists("15551111111") && !directory.exists("1555"));
        directory.apply(update(&["15552222"], &["15552222"], None));
        assert!(!directory.exists("15552222"), "remove applies after add");
    }

    #[test]
    fn unknown_prefixes_are_replaced_by_an_update() {
        let mut directory = Directory::default();
        directory.apply(update(&[], &[], Some(&["999"])));
        assert!(!directory.exists("99912345678"));
        assert!(directory.exists("0155512345"), "the default 0 prefix was replaced");
    }

    #[test]
    fn check_answers_valid_with_the_digits_or_invalid_for_each_input() {
        let mut directory = Directory::default();
        let checked = directory.check(&["+1 555-123-4567".into(), "12".into()]);
        assert_eq!(
            checked,
            vec![
                ContactCheck {
                    input: "+1 555-123-4567".into(),
                    status: "valid".into(),
                    wa_id: Some("15551234567".into())
                },
                ContactCheck { input: "12".into(), status: "invalid".into(), wa_id: None },
            ]
        );
        assert_eq!(directory.checks(), 1);
    }
}
