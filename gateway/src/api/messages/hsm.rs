//! `hsm` messages: the legacy form of template messages, by namespace and
//! `element_name`, with positional `localizable_params`. Each parameter has
//! a `default` text and may carry a `currency` or a `date_time` (by its
//! `component` parts or a `unix_epoch`) for the recipient's app to localize.

use super::checks;
use super::template_parts::{check_currency_code, check_name, DateParts, Language};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Longest namespace or default text, in characters.
const MAX_TEXT: usize = 1024;
/// Most localizable parameters.
const MAX_PARAMS: usize = 100;

/// `hsm` of an hsm message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hsm {
    /// The business's template namespace.
    pub namespace: Option<String>,
    /// The template's name.
    pub element_name: Option<String>,
    /// The language to render it in.
    pub language: Option<Language>,
    /// Values of its placeholders, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub localizable_params: Option<Vec<LocalizableParam>>,
}

/// One placeholder value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalizableParam {
    /// The text shown when nothing is localized.
    pub default: Option<String>,
    /// An amount to localize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<HsmCurrency>,
    /// A date to localize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_time: Option<HsmDateTime>,
}

/// An amount: ISO 4217 code and the amount times 1000.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HsmCurrency {
    /// E.g. `USD`.
    pub currency_code: Option<String>,
    /// The amount times 1000.
    pub amount_1000: Option<i64>,
}

/// A date: its parts or a unix timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HsmDateTime {
    /// The date's parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<DateParts>,
    /// `{"timestamp": unix seconds}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_epoch: Option<UnixEpoch>,
}

/// A point in time as unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnixEpoch {
    /// Unix seconds.
    pub timestamp: Option<i64>,
}

impl Hsm {
    /// Checks the message; the language policy defaults to `deterministic`.
    pub fn checked(mut self) -> Result<Hsm, ApiError> {
        let namespace =
            checks::required(self.namespace.as_deref(), "hsm.namespace", "the business's template namespace")?;
        checks::text(namespace, "hsm.namespace", MAX_TEXT)?;
        let name = checks::required(self.element_name.as_deref(), "hsm.element_name", "the template's name")?;
        check_name(name, "hsm.element_name")?;
        let language = checks::required(self.language.take(), "hsm.language", "{\"policy\", \"code\"}")?;
        self.language = Some(language.checked("hsm.language")?);
        if let Some(params) = &self.localizable_params {
            checks::count(params, "hsm.localizable_params", 0, MAX_PARAMS)?;
            for (i, param) in params.iter().enumerate() {
                param.check(&format!("hsm.localizable_params[{i}]"))?;
            }
        }
        Ok(self)
    }
}

impl LocalizableParam {
    fn check(&self, path: &str) -> Result<(), ApiError> {
        let default =
            checks::required(self.default.as_deref(), &format!("{path}.default"), "the text shown by default")?;
        checks::text(default, &format!("{path}.default"), MAX_TEXT)?;
        if self.currency.is_some() && self.date_time.is_some() {
            return Err(ApiError::invalid(format!("{path} carries a currency or a date_time, not both")));
        }
        if let Some(currency) = &self.currency {
            let at = format!("{path}.currency");
            let code = checks::required(currency.currency_code.as_deref(), &format!("{at}.currency_code"), "e.g. USD")?;
            check_currency_code(code, &format!("{at}.currency_code"))?;
            checks::required(currency.amount_1000, &format!("{at}.amount_1000"), "the amount times 1000")?;
        }
        if let Some(date) = &self.date_time {
            let at = format!("{path}.date_time");
            match (&date.component, &date.unix_epoch) {
                (Some(parts), None) => parts.check(&format!("{at}.component"))?,
                (None, Some(epoch)) => {
                    checks::required(epoch.timestamp, &format!("{at}.unix_epoch.timestamp"), "unix seconds")?;
                }
                _ => return Err(ApiError::invalid(format!("{at} takes exactly one of component or unix_epoch"))),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn check(json: serde_json::Value) -> Result<Hsm, ApiError> {
        serde_json::from_value::<Hsm>(json).unwrap().checked()
    }

    #[test]
    fn legacy_params_of_each_kind_are_accepted() {
        let hsm = json!({
            "namespace": "ns", "element_name": "hello_world", "language": {"policy": "deterministic", "code": "en"},
            "localizable_params": [
                {"default": "Ann"},
                {"default": "$100.99", "currency": {"currency_code": "USD", "amount_1000": 100990}},
                {"default": "Feb 25", "date_time": {"component": {"day_of_month": 25, "month": 2}}},
                {"default": "then", "date_time": {"unix_epoch": {"timestamp": 1485470276}}}
            ]
        });
        assert_eq!(serde_json::to_value(check(hsm.clone()).unwrap()).unwrap(), hsm);
    }

    #[test]
    fn legacy_params_are_refused_naming_the_field() {
        let base = |params: serde_json::Value| json!({"namespace": "ns", "element_name": "e", "language": {"code": "en"}, "localizable_params": params});
        let missing = check(base(json!([{"currency": {"currency_code": "USD", "amount_1000": 1}}]))).unwrap_err();
        assert_eq!(missing.kind, ErrorKind::MissingParameter);
        assert!(missing.details.starts_with("hsm.localizable_params[0].default"), "{}", missing.details);
        let both = check(base(json!([{"default": "d", "date_time": {}}]))).unwrap_err();
        assert_eq!(both.kind, ErrorKind::InvalidParameter);
        let no_name = check(json!({"namespace": "ns", "language": {"code": "en"}})).unwrap_err();
        assert!(no_name.details.starts_with("hsm.element_name"));
    }
}
