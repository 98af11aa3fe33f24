//! What `template` and the legacy `hsm` share: the language to render in,
//! template names, currency codes and the parts of a date.

use super::checks;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Longest namespace or template name, in characters.
pub const MAX_NAME: usize = 512;

/// The language of a template: `{"policy": "deterministic", "code": "en_US"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// `deterministic` (the default) or the deprecated `fallback`.
    pub policy: Option<String>,
    /// `en`, `en_US`, `pt_BR`, ...
    pub code: Option<String>,
}

/// The parts of a date, each optional (the `component` of a legacy `hsm` date).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DateParts {
    /// 1 (Monday) to 7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<u8>,
    /// 1 to 31.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day_of_month: Option<u8>,
    /// The year.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
    /// 1 to 12.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month: Option<u8>,
    /// 0 to 23.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour: Option<u8>,
    /// 0 to 59.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minute: Option<u8>,
}

impl DateParts {
    /// Whether any part is given.
    pub fn any(&self) -> bool {
        *self != DateParts::default()
    }

    /// Checks each given part's range.
    pub fn check(&self, path: &str) -> Result<(), ApiError> {
        let parts = [
            ("day_of_week", self.day_of_week, 1..=7),
            ("day_of_month", self.day_of_month, 1..=31),
            ("month", self.month, 1..=12),
            ("hour", self.hour, 0..=23),
            ("minute", self.minute, 0..=59),
        ];
        for (name, value, range) in parts {
            if let Some(value) = value {
                checks::within(value, &format!("{path}.{name}"), range)?;
            }
        }
        if let Some(year) = self.year {
            checks::within(year, &format!("{path}.year"), 1..=9999)?;
        }
        Ok(())
    }
}

impl Language {
    /// Checks the language at `path`; the policy defaults to `deterministic`.
    pub fn checked(mut self, path: &str) -> Result<Language, ApiError> {
        let policy = self.policy.get_or_insert_with(|| "deterministic".to_string());
        checks::one_of(policy, &format!("{path}.policy"), &["deterministic", "fallback"])?;
        let code = checks::required(self.code.as_deref(), &format!("{path}.code"), "a language code such as en_US")?;
        if !is_language_code(code) {
            return Err(ApiError::invalid(format!(
                "{path}.code must be a language code such as en, en_US or pt_BR, not {code:?}"
            )));
        }
        Ok(self)
    }
}

/// `ll`, `lll`, `ll_CC` or `ll_Xxxx` style codes.
fn is_language_code(code: &str) -> bool {
    let (language, region) = match code.split_once('_') {
        Some((language, region)) => (language, Some(region)),
        None => (code, None),
    };
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && region.is_none_or(|r| (2..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A template or element name: letters, digits and `_`, as template names are.
pub fn check_name(value: &str, path: &str) -> Result<(), ApiError> {
    checks::text(value, path, MAX_NAME)?;
    if value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{path} may hold only letters, digits and '_', not {value:?}")))
    }
}

/// Three upper-case letters.
pub fn check_currency_code(code: &str, path: &str) -> Result<(), ApiError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("{path} must be an ISO 4217 code such as USD, not {code:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn language_codes_and_policies() {
        for code in ["en", "en_US", "pt_BR", "fil", "zh_Hant"] {
            assert!(Language { policy: None, code: Some(code.into()) }.checked("l").is_ok(), "{code}");
        }
        for code in ["english", "EN", "en-US", "e", "en_"] {
            assert!(Language { policy: None, code: Some(code.into()) }.checked("l").is_err(), "{code}");
        }
        let defaulted = Language { policy: None, code: Some("en".into()) }.checked("l").unwrap();
        assert_eq!(defaulted.policy.as_deref(), Some("deterministic"));
        let random = Language { policy: Some("random".into()), code: Some("en".into()) }.checked("l").unwrap_err();
        assert_eq!((random.kind, random.details.starts_with("l.policy")), (ErrorKind::InvalidParameter, true));
    }

    #[test]
    fn date_parts_are_range_checked() {
        assert!(DateParts { month: Some(12), hour: Some(0), ..Default::default() }.check("d").is_ok());
        let err = DateParts { day_of_week: Some(8), ..Default::default() }.check("d").unwrap_err();
        assert!(err.details.starts_with("d.day_of_week"), "{}", err.details);
        assert!(!DateParts::default().any());
    }
}
