//! `contacts` messages: one or more contact cards. Every card needs a name
//! with a `formatted_name`; everything else on it is optional text.

use super::checks;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Most cards in one message.
const MAX_CARDS: usize = 20;
/// Longest text of any card field, in characters.
const MAX_FIELD: usize = 1000;

/// One contact card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactCard {
    /// Postal addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<Address>>,
    /// `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
    /// E-mail addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<Email>>,
    /// The contact's name; `formatted_name` is required.
    pub name: Option<Name>,
    /// Where the contact works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<Org>,
    /// Phone numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phones: Option<Vec<Phone>>,
    /// Web addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<Url>>,
}

/// A postal address of a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Street and number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    /// Country name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Two-letter country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// `HOME`, `WORK`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// An e-mail address of a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// The address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `HOME`, `WORK`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The name on a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Name {
    /// The name as shown; required.
    pub formatted_name: Option<String>,
    /// First name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Middle name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Name suffix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Name prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// The organization on a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    /// Company name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Department.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Job title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A phone number of a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Phone {
    /// The number as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// `CELL`, `MAIN`, `IPHONE`, `HOME`, `WORK`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The number's WhatsApp id, which adds a message button to the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

/// A web address of a card.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Url {
    /// The address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `HOME`, `WORK`, ...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Checks the cards of a contacts message.
pub fn checked(cards: Vec<ContactCard>) -> Result<Vec<ContactCard>, ApiError> {
    checks::count(&cards, "contacts", 1, MAX_CARDS)?;
    for (i, card) in cards.iter().enumerate() {
        card.check(&format!("contacts[{i}]"))?;
    }
    Ok(cards)
}

impl ContactCard {
    fn check(&self, path: &str) -> Result<(), ApiError> {
        let name = checks::required(self.name.as_ref(), &format!("{path}.name"), "every card needs a name")?;
        let formatted = checks::required(
            name.formatted_name.as_deref(),
            &format!("{path}.name.formatted_name"),
            "the name as the recipient sees it",
        )?;
        checks::text(formatted, &format!("{path}.name.formatted_name"), MAX_FIELD)?;
        if let Some(birthday) = &self.birthday {
            check_birthday(birthday, &format!("{path}.birthday"))?;
        }
        let texts = self.texts(path);
        for (field, value) in &texts {
            checks::text(value, field, MAX_FIELD)?;
        }
        Ok(())
    }

    /// Every optional text of the card, with its path.
    fn texts(&self, path: &str) -> Vec<(String, &str)> {
        fn push<'a>(texts: &mut Vec<(String, &'a str)>, field: String, value: &'a Option<String>) {
            if let Some(value) = value.as_deref() {
                texts.push((field, value));
            }
        }
        let mut texts = Vec::new();
        for (i, a) in self.addresses.iter().flatten().enumerate() {
            let at = format!("{path}.addresses[{i}]");
            for (name, value) in [
                ("street", &a.street),
                ("city", &a.city),
                ("state", &a.state),
                ("zip", &a.zip),
                ("country", &a.country),
                ("country_code", &a.country_code),
                ("type", &a.kind),
            ] {
                push(&mut texts, format!("{at}.{name}"), value);
            }
        }
        for (i, e) in self.emails.iter().flatten().enumerate() {
            push(&mut texts, format!("{path}.emails[{i}].email"), &e.email);
            push(&mut texts, format!("{path}.emails[{i}].type"), &e.kind);
        }
        if let Some(n) = &self.name {
            for (name, value) in [
                ("first_name", &n.first_name),
                ("last_name", &n.last_name),
                ("middle_name", &n.middle_name),
                ("suffix", &n.suffix),
                ("prefix", &n.prefix),
            ] {
                push(&mut texts, format!("{path}.name.{name}"), value);
            }
        }
        if let Some(o) = &self.org {
            for (name, value) in [("company", &o.company), ("department", &o.department), ("title", &o.title)] {
                push(&mut texts, format!("{path}.org.{name}"), value);
            }
        }
        for (i, p) in self.phones.iter().flatten().enumerate() {
            push(&mut texts, format!("{path}.phones[{i}].phone"), &p.phone);
            push(&mut texts, format!("{path}.phones[{i}].type"), &p.kind);
            push(&mut texts, format!("{path}.phones[{i}].wa_id"), &p.wa_id);
        }
        for (i, u) in self.urls.iter().flatten().enumerate() {
            push(&mut texts, format!("{path}.urls[{i}].url"), &u.url);
            push(&mut texts, format!("{path}.urls[{i}].type"), &u.kind);
        }
        texts
    }
}

/// `YYYY-MM-DD`, a real date.
fn check_birthday(value: &str, path: &str) -> Result<(), ApiError> {
    let refused = || ApiError::invalid(format!("{path} must be a date written YYYY-MM-DD, not {value:?}"));
    let parts: Vec<&str> = value.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return Err(refused());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(refused());
    }
    let number = |s: &str| s.parse::<u16>().map_err(|_| refused());
    let month = time::Month::try_from(u8::try_from(number(month)?).map_err(|_| refused())?).map_err(|_| refused())?;
    let day = u8::try_from(number(day)?).map_err(|_| refused())?;
    time::Date::from_calendar_date(i32::from(number(year)?), month, day).map(|_| ()).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn cards(json: serde_json::Value) -> Result<Vec<ContactCard>, ApiError> {
        checked(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn a_card_needs_a_formatted_name_and_a_real_birthday() {
        assert!(cards(serde_json::json!([{"name": {"formatted_name": "Ann"}, "birthday": "1990-02-28"}])).is_ok());
        let nameless = cards(serde_json::json!([{"phones": [{"phone": "+1 555"}]}])).unwrap_err();
        assert_eq!(
            (nameless.kind, nameless.details.starts_with("contacts[0].name")),
            (ErrorKind::MissingParameter, true)
        );
        let bad_day = cards(serde_json::json!([{"name": {"formatted_name": "A"}, "birthday": "1990-02-30"}]));
        assert_eq!(bad_day.unwrap_err().kind, ErrorKind::InvalidParameter);
        assert_eq!(cards(serde_json::json!([])).unwrap_err().kind, ErrorKind::InvalidParameter);
    }

    #[test]
    fn empty_fields_are_named() {
        let err = cards(serde_json::json!([{"name": {"formatted_name": "A"}, "emails": [{"email": ""}]}])).unwrap_err();
        assert!(err.details.starts_with("contacts[0].emails[0].email"), "{}", err.details);
    }
}
