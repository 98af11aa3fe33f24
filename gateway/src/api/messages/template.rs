//! `template` messages: an approved template by namespace and name, in a
//! language, with the values of its placeholders as components:
//! - `header`: at most one parameter, a text or a medium;
//! - `body`: texts, currencies and dates;
//! - `button`: one parameter per button, by `index`: the payload of a
//!   `quick_reply` button or the URL suffix of a `url` one.
//!
//! The language, names and date parts it shares with the legacy `hsm` are
//! in [`super::template_parts`].

use super::checks;
use super::media::{MediaObject, MediaRef, MediaRules};
use super::template_parts::{check_currency_code, check_name, DateParts, Language, MAX_NAME};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Longest text parameter, in characters.
const MAX_PARAMETER: usize = 1024;
/// Longest header text parameter, in characters.
const MAX_HEADER_TEXT: usize = 60;
/// Most buttons a template has (button indexes are 0 to this minus 1).
const MAX_BUTTONS: u32 = 10;

/// `template` of a template message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The business's template namespace.
    pub namespace: Option<String>,
    /// The template's name.
    pub name: Option<String>,
    /// The language to render it in.
    pub language: Option<Language>,
    /// Values of its placeholders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<Component>>,
}

/// The parameters of one part of a template.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// `header`, `body` or `button` (any case; stored in lower case).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A button's kind: `quick_reply` or `url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// A button's position, from 0; a number or a string of digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<ButtonIndex>,
    /// The values, in placeholder order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<Parameter>>,
}

/// A button index, taken as a number or a string of digits and stored as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ButtonIndex(u32);

impl<'de> Deserialize<'de> for ButtonIndex {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ButtonIndex, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Index {
            Number(u32),
            Text(String),
        }
        match Index::deserialize(deserializer)? {
            Index::Number(n) => Ok(ButtonIndex(n)),
            Index::Text(t) => t
                .trim()
                .parse()
                .map(ButtonIndex)
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a button index"))),
        }
    }
}

/// One placeholder value; the field named by `type` carries it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// `text`, `currency`, `date_time`, `image`, `document`, `video` or `payload`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A text value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An amount of money.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    /// A date and time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_time: Option<DateTime>,
    /// A header image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<MediaObject>,
    /// A header document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<MediaObject>,
    /// A header video.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<MediaObject>,
    /// A quick-reply button's payload, returned when it is tapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// An amount, localized by the recipient's app; `fallback_value` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    /// Shown when the amount cannot be localized.
    pub fallback_value: Option<String>,
    /// ISO 4217 code, e.g. `USD`.
    pub code: Option<String>,
    /// The amount times 1000.
    pub amount_1000: Option<i64>,
}

/// A date, localized by the recipient's app; `fallback_value` otherwise.
/// Either its parts or a unix `timestamp`, not both.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DateTime {
    /// Shown when the date cannot be localized.
    pub fallback_value: Option<String>,
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
    /// `GREGORIAN` or `SOLAR_HIJRI`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// Unix seconds, instead of the parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
}

impl Template {
    /// Checks the template; media ids of header parameters go to `refs`.
    pub fn checked(mut self, refs: &mut Vec<MediaRef>) -> Result<Template, ApiError> {
        let namespace =
            checks::required(self.namespace.as_deref(), "template.namespace", "the business's template namespace")?;
        checks::text(namespace, "template.namespace", MAX_NAME)?;
        check_name(checks::required(self.name.as_deref(), "template.name", "the template's name")?, "template.name")?;
        let language = checks::required(self.language.take(), "template.language", "{\"policy\", \"code\"}")?;
        self.language = Some(language.checked("template.language")?);
        if let Some(components) = self.components.take() {
            self.components = Some(check_components(components, refs)?);
        }
        Ok(self)
    }
}

fn check_components(components: Vec<Component>, refs: &mut Vec<MediaRef>) -> Result<Vec<Component>, ApiError> {
    let mut seen_header = false;
    let mut seen_body = false;
    let mut button_indexes = Vec::new();
    let mut checked = Vec::with_capacity(components.len());
    for (i, mut component) in components.into_iter().enumerate() {
        let path = format!("template.components[{i}]");
        let kind = checks::required(component.kind.as_deref(), &format!("{path}.type"), "header, body or button")?;
        let kind = kind.to_ascii_lowercase();
        checks::one_of(&kind, &format!("{path}.type"), &["header", "body", "button"])?;
        let parameters =
            checks::required(component.parameters.take(), &format!("{path}.parameters"), "the placeholders' values")?;
        let parameters = match kind.as_str() {
            "header" => {
                if std::mem::replace(&mut seen_header, true) {
                    return Err(ApiError::invalid(format!("{path}: a template has one header component")));
                }
                check_button_fields_absent(&component, &path)?;
                checks::count(&parameters, &format!("{path}.parameters"), 1, 1)?;
                check_parameters(parameters, &path, &["text", "image", "document", "video"], refs)?
            }
            "body" => {
                if std::mem::replace(&mut seen_body, true) {
                    return Err(ApiError::invalid(format!("{path}: a template has one body component")));
                }
                check_button_fields_absent(&component, &path)?;
                checks::count(&parameters, &format!("{path}.parameters"), 1, 100)?;
                check_parameters(parameters, &path, &["text", "currency", "date_time"], refs)?
            }
            _ => {
                let sub_type =
                    checks::required(component.sub_type.as_deref(), &format!("{path}.sub_type"), "quick_reply or url")?
                        .to_ascii_lowercase();
                checks::one_of(&sub_type, &format!("{path}.sub_type"), &["quick_reply", "url"])?;
                let index =
                    checks::required(component.index, &format!("{path}.index"), "the button's position, from 0")?;
                checks::within(index.0, &format!("{path}.index"), 0..=MAX_BUTTONS - 1)?;
                if button_indexes.contains(&index.0) {
                    return Err(ApiError::invalid(format!("{path}.index {} is given twice", index.0)));
                }
                button_indexes.push(index.0);
                checks::count(&parameters, &format!("{path}.parameters"), 1, 1)?;
                let allowed: &[&str] = if sub_type == "url" { &["text"] } else { &["payload"] };
                component.sub_type = Some(sub_type);
                check_parameters(parameters, &path, allowed, refs)?
            }
        };
        component.kind = Some(kind);
        component.parameters = Some(parameters);
        checked.push(component);
    }
    Ok(checked)
}

fn check_button_fields_absent(component: &Component, path: &str) -> Result<(), ApiError> {
    checks::absent(&component.sub_type, &format!("{path}.sub_type"), "only button components have a sub_type")?;
    checks::absent(&component.index, &format!("{path}.index"), "only button components have an index")
}

fn check_parameters(
    parameters: Vec<Parameter>,
    component: &str,
    allowed: &[&str],
    refs: &mut Vec<MediaRef>,
) -> Result<Vec<Parameter>, ApiError> {
    let is_header = allowed.contains(&"image");
    parameters
        .into_iter()
        .enumerate()
        .map(|(i, parameter)| parameter.checked(&format!("{component}.parameters[{i}]"), allowed, is_header, refs))
        .collect()
}

impl Parameter {
    fn checked(
        mut self,
        path: &str,
        allowed: &[&str],
        is_header: bool,
        refs: &mut Vec<MediaRef>,
    ) -> Result<Parameter, ApiError> {
        let kind =
            checks::required(self.kind.as_deref(), &format!("{path}.type"), &allowed.join(", "))?.to_ascii_lowercase();
        checks::one_of(&kind, &format!("{path}.type"), allowed)?;
        let present = [
            ("text", self.text.is_some()),
            ("currency", self.currency.is_some()),
            ("date_time", self.date_time.is_some()),
            ("image", self.image.is_some()),
            ("document", self.document.is_some()),
            ("video", self.video.is_some()),
            ("payload", self.payload.is_some()),
        ];
        for (field, is_present) in present {
            if field != kind {
                let why = format!("a {kind} parameter carries its value in {kind}");
                checks::absent(&is_present.then_some(()), &format!("{path}.{field}"), &why)?;
            }
        }
        let field = format!("{path}.{kind}");
        match kind.as_str() {
            "text" => {
                let text = checks::required(self.text.as_deref(), &field, "the placeholder's text")?;
                checks::text(text, &field, if is_header { MAX_HEADER_TEXT } else { MAX_PARAMETER })?;
            }
            "payload" => {
                let payload = checks::required(self.payload.as_deref(), &field, "returned when the button is tapped")?;
                checks::text(payload, &field, MAX_PARAMETER)?;
            }
            "currency" => checks::required(self.currency.as_ref(), &field, "{fallback_value, code, amount_1000}")?
                .check(&field)?,
            "date_time" => checks::required(self.date_time.as_ref(), &field, "{fallback_value, ...}")?.check(&field)?,
            medium => {
                let slot = match medium {
                    "image" => &mut self.image,
                    "document" => &mut self.document,
                    _ => &mut self.video,
                };
                let object = checks::required(slot.take(), &field, "the header's medium, by id or link")?;
                *slot = Some(object.checked(&field, MediaRules::embedded(medium), refs)?);
            }
        }
        self.kind = Some(kind);
        Ok(self)
    }
}

impl Currency {
    fn check(&self, path: &str) -> Result<(), ApiError> {
        let fallback = checks::required(
            self.fallback_value.as_deref(),
            &format!("{path}.fallback_value"),
            "shown when the amount cannot be localized",
        )?;
        checks::text(fallback, &format!("{path}.fallback_value"), MAX_PARAMETER)?;
        check_currency_code(
            checks::required(self.code.as_deref(), &format!("{path}.code"), "an ISO 4217 code such as USD")?,
            &format!("{path}.code"),
        )?;
        checks::required(self.amount_1000, &format!("{path}.amount_1000"), "the amount times 1000")?;
        Ok(())
    }
}

impl DateTime {
    fn check(&self, path: &str) -> Result<(), ApiError> {
        let fallback = checks::required(
            self.fallback_value.as_deref(),
            &format!("{path}.fallback_value"),
            "shown when the date cannot be localized",
        )?;
        checks::text(fallback, &format!("{path}.fallback_value"), MAX_PARAMETER)?;
        let parts = DateParts {
            day_of_week: self.day_of_week,
            day_of_month: self.day_of_month,
            year: self.year,
            month: self.month,
            hour: self.hour,
            minute: self.minute,
        };
        if self.timestamp.is_some() && parts.any() {
            return Err(ApiError::invalid(format!("{path} takes either a timestamp or the date's parts, not both")));
        }
        parts.check(path)?;
        if let Some(calendar) = &self.calendar {
            checks::one_of(calendar, &format!("{path}.calendar"), &["GREGORIAN", "SOLAR_HIJRI"])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn check(json: serde_json::Value) -> Result<(Template, Vec<MediaRef>), ApiError> {
        let mut refs = Vec::new();
        serde_json::from_value::<Template>(json).unwrap().checked(&mut refs).map(|t| (t, refs))
    }

    fn template(components: serde_json::Value) -> serde_json::Value {
        json!({"namespace": "ns_1", "name": "order_update", "language": {"code": "en_US"}, "components": components})
    }

    #[test]
    fn every_parameter_type_is_accepted_and_stored_in_canonical_form() {
        let components = json!([
            {"type": "HEADER", "parameters": [{"type": "image", "image": {"id": "4B5BF27B-8672-4D55-BC21-D096DC200D0F"}}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ann"},
                {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990}},
                {"type": "date_time", "date_time": {"fallback_value": "Feb 25", "day_of_month": 25, "month": 2, "year": 1977}},
                {"type": "date_time", "date_time": {"fallback_value": "then", "timestamp": 1485470276}}
            ]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "yes"}]},
            {"type": "button", "sub_type": "url", "index": 1, "parameters": [{"type": "text", "text": "track/1"}]}
        ]);
        let (checked, refs) = check(template(components)).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].field, "template.components[0].parameters[0].image.id");
        let stored = serde_json::to_value(&checked).unwrap();
        assert_eq!(stored["language"], json!({"policy": "deterministic", "code": "en_US"}));
        assert_eq!(stored["components"][0]["type"], "header");
        assert_eq!(stored["components"][0]["parameters"][0]["image"]["id"], "4b5bf27b-8672-4d55-bc21-d096dc200d0f");
        assert_eq!(
            stored["components"][1]["parameters"][2]["date_time"],
            json!({"fallback_value": "Feb 25", "day_of_month": 25, "year": 1977, "month": 2})
        );
        assert_eq!(stored["components"][2]["index"], 0);
        assert!(stored["components"][1].get("sub_type").is_none());
        for video_or_document in ["video", "document"] {
            let header = json!([{"type": "header", "parameters": [{"type": video_or_document, video_or_document: {"link": "https://example.com/x"}}]}]);
            assert!(check(template(header)).is_ok(), "{video_or_document}");
        }
    }

    #[test]
    fn parameters_are_refused_naming_the_field() {
        let cases = [
            (
                json!([{"type": "body", "parameters": [{"type": "text"}]}]),
                ErrorKind::MissingParameter,
                "template.components[0].parameters[0].text",
            ),
            (
                json!([{"type": "body", "parameters": [{"type": "text", "text": "a", "payload": "b"}]}]),
                ErrorKind::UnknownParameter,
                "template.components[0].parameters[0].payload",
            ),
            (
                json!([{"type": "body", "parameters": [{"type": "image", "image": {"link": "https://a/b"}}]}]),
                ErrorKind::InvalidParameter,
                "template.components[0].parameters[0].type",
            ),
            (
                json!([{"type": "body", "parameters": [{"type": "currency", "currency": {"fallback_value": "1", "code": "usd", "amount_1000": 1}}]}]),
                ErrorKind::InvalidParameter,
                "template.components[0].parameters[0].currency.code",
            ),
            (
                json!([{"type": "body", "parameters": [{"type": "date_time", "date_time": {"fallback_value": "x", "month": 13}}]}]),
                ErrorKind::InvalidParameter,
                "template.components[0].parameters[0].date_time.month",
            ),
            (
                json!([{"type": "button", "sub_type": "quick_reply", "parameters": [{"type": "payload", "payload": "p"}]}]),
                ErrorKind::MissingParameter,
                "template.components[0].index",
            ),
            (
                json!([{"type": "button", "sub_type": "call", "index": 0, "parameters": []}]),
                ErrorKind::InvalidParameter,
                "template.components[0].sub_type",
            ),
            (
                json!([{"type": "body", "index": 0, "parameters": [{"type": "text", "text": "a"}]}]),
                ErrorKind::UnknownParameter,
                "template.components[0].index",
            ),
            (json!([{"type": "footer", "parameters": []}]), ErrorKind::InvalidParameter, "template.components[0].type"),
        ];
        for (components, kind, field) in cases {
            let err = check(template(components.clone())).unwrap_err();
            assert_eq!(err.kind, kind, "{components}: {}", err.details);
            assert!(err.details.starts_with(field), "{components}: {}", err.details);
        }
    }

    #[test]
    fn language_needs_a_code_and_a_known_policy() {
        let mut t = template(json!([]));
        t["language"] = json!({"policy": "random", "code": "en"});
        assert_eq!(check(t.clone()).unwrap_err().kind, ErrorKind::InvalidParameter);
        t["language"] = json!({"policy": "fallback"});
        assert_eq!(check(t.clone()).unwrap_err().kind, ErrorKind::MissingParameter);
        t["language"] = json!({"code": "english"});
        assert!(check(t).unwrap_err().details.starts_with("template.language.code"));
    }
}
