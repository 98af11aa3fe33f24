//! `interactive` messages: a body with reply buttons (`button`: up to 3) or
//! a menu of rows in sections (`list`: up to 10 rows), with an optional
//! header and footer. Users answer by tapping; ids come back in the webhook,
//! so they must be unique within the message.

use super::checks;
use super::media::{MediaObject, MediaRef, MediaRules};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};

/// Longest body text, in characters.
const MAX_BODY: usize = 1024;
/// Longest header or footer text, in characters.
const MAX_HEADER: usize = 60;
/// Most reply buttons.
const MAX_BUTTONS: usize = 3;
/// Longest reply button title, in characters.
const MAX_BUTTON_TITLE: usize = 20;
/// Longest reply button id, in characters.
const MAX_BUTTON_ID: usize = 256;
/// Longest list button label, in characters.
const MAX_LIST_BUTTON: usize = 20;
/// Most sections, and most rows over all sections, of a list.
const MAX_SECTIONS: usize = 10;
/// Most rows over all sections of a list.
const MAX_ROWS: usize = 10;
/// Longest section or row title, in characters.
const MAX_ROW_TITLE: usize = 24;
/// Longest row id, in characters.
const MAX_ROW_ID: usize = 200;
/// Longest row description, in characters.
const MAX_ROW_DESCRIPTION: usize = 72;

/// `interactive` of an interactive message.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Interactive {
    /// `button` or `list`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Shown above the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<Header>,
    /// The message text; required.
    pub body: Option<Label>,
    /// Shown under the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer: Option<Label>,
    /// The buttons or the list; required.
    pub action: Option<Action>,
}

/// The header: a text, or a medium.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// `text`, `image`, `video` or `document`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The text of a `text` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The medium of an `image` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<MediaObject>,
    /// The medium of a `video` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<MediaObject>,
    /// The medium of a `document` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<MediaObject>,
}

/// A body or footer: `{"text": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// The text.
    pub text: Option<String>,
}

/// The buttons of a `button` message, or the menu of a `list` one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The label of the button that opens a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub button: Option<String>,
    /// Reply buttons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buttons: Option<Vec<ReplyButton>>,
    /// Sections of a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<Section>>,
}

/// One reply button.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyButton {
    /// `reply`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Its id and title.
    pub reply: Option<Reply>,
}

/// What a reply button shows and answers with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Answered in the webhook when tapped.
    pub id: Option<String>,
    /// Shown on the button.
    pub title: Option<String>,
}

/// A section of a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Required when the list has more than one section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// At least one row.
    pub rows: Option<Vec<Row>>,
}

/// A row of a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Answered in the webhook when picked.
    pub id: Option<String>,
    /// Shown in the list.
    pub title: Option<String>,
    /// Shown under the title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Interactive {
    /// Checks the message; media ids in the header go to `refs`.
    pub fn checked(mut self, refs: &mut Vec<MediaRef>) -> Result<Interactive, ApiError> {
        let kind = checks::required(self.kind.as_deref(), "interactive.type", "button or list")?;
        checks::one_of(kind, "interactive.type", &["button", "list"])?;
        let is_list = kind == "list";
        let body = self.body.as_ref().and_then(|b| b.text.as_deref());
        checks::text(
            checks::required(body, "interactive.body.text", "the message text")?,
            "interactive.body.text",
            MAX_BODY,
        )?;
        if let Some(footer) = &self.footer {
            let text = checks::required(footer.text.as_deref(), "interactive.footer.text", "the footer's text")?;
            checks::text(text, "interactive.footer.text", MAX_HEADER)?;
        }
        if let Some(header) = self.header.take() {
            self.header = Some(header.checked(is_list, refs)?);
        }
        let action = checks::required(self.action.as_ref(), "interactive.action", "the buttons or the list")?;
        if is_list {
            action.check_list()?;
        } else {
            action.check_buttons()?;
        }
        Ok(self)
    }
}

impl Header {
    fn checked(mut self, is_list: bool, refs: &mut Vec<MediaRef>) -> Result<Header, ApiError> {
        let kind = checks::required(self.kind.clone(), "interactive.header.type", "text, image, video or document")?;
        let allowed: &[&str] = if is_list { &["text"] } else { &["text", "image", "video", "document"] };
        checks::one_of(&kind, "interactive.header.type", allowed)?;
        let path = |field: &str| format!("interactive.header.{field}");
        for (field, present) in [
            ("text", self.text.is_some()),
            ("image", self.image.is_some()),
            ("video", self.video.is_some()),
            ("document", self.document.is_some()),
        ] {
            if field != kind {
                checks::absent(&present.then_some(()), &path(field), &format!("the header is of type {kind}"))?;
            }
        }
        let medium = match kind.as_str() {
            "image" => &mut self.image,
            "video" => &mut self.video,
            "document" => &mut self.document,
            _ => {
                let text = checks::required(self.text.as_deref(), &path("text"), "the header's text")?;
                checks::text(text, &path("text"), MAX_HEADER)?;
                return Ok(self);
            }
        };
        let object = checks::required(medium.take(), &path(&kind), "the header's medium")?;
        *medium = Some(object.checked(&path(&kind), MediaRules::embedded(&kind), refs)?);
        Ok(self)
    }
}

impl Action {
    fn check_buttons(&self) -> Result<(), ApiError> {
        checks::absent(&self.button, "interactive.action.button", "a button message has buttons, not a list button")?;
        checks::absent(&self.sections, "interactive.action.sections", "sections belong to list messages")?;
        let buttons = checks::required(self.buttons.as_deref(), "interactive.action.buttons", "1 to 3 reply buttons")?;
        checks::count(buttons, "interactive.action.buttons", 1, MAX_BUTTONS)?;
        let mut replies = Vec::new();
        for (i, button) in buttons.iter().enumerate() {
            let path = format!("interactive.action.buttons[{i}]");
            let kind = checks::required(button.kind.as_deref(), &format!("{path}.type"), "reply")?;
            checks::one_of(kind, &format!("{path}.type"), &["reply"])?;
            let reply = checks::required(button.reply.as_ref(), &format!("{path}.reply"), "the button's id and title")?;
            let id = checks::required(reply.id.as_deref(), &format!("{path}.reply.id"), "answered when tapped")?;
            checks::text(id, &format!("{path}.reply.id"), MAX_BUTTON_ID)?;
            let title =
                checks::required(reply.title.as_deref(), &format!("{path}.reply.title"), "shown on the button")?;
            checks::text(title, &format!("{path}.reply.title"), MAX_BUTTON_TITLE)?;
            replies.push((id, title));
        }
        checks::distinct(replies.iter().map(|(id, _)| *id), "interactive.action.buttons[].reply.id")?;
        checks::distinct(replies.iter().map(|(_, title)| *title), "interactive.action.buttons[].reply.title")
    }

    fn check_list(&self) -> Result<(), ApiError> {
        checks::absent(&self.buttons, "interactive.action.buttons", "reply buttons belong to button messages")?;
        let button =
            checks::required(self.button.as_deref(), "interactive.action.button", "the label that opens the list")?;
        checks::text(button, "interactive.action.button", MAX_LIST_BUTTON)?;
        let sections =
            checks::required(self.sections.as_deref(), "interactive.action.sections", "the list's sections")?;
        checks::count(sections, "interactive.action.sections", 1, MAX_SECTIONS)?;
        let mut ids = Vec::new();
        for (i, section) in sections.iter().enumerate() {
            let path = format!("interactive.action.sections[{i}]");
            match &section.title {
                Some(title) => checks::text(title, &format!("{path}.title"), MAX_ROW_TITLE)?,
                None if sections.len() > 1 => {
                    return Err(ApiError::missing(format!(
                        "{path}.title is required: a list of several sections shows each section's title"
                    )))
                }
                None => {}
            }
            let rows = checks::required(section.rows.as_deref(), &format!("{path}.rows"), "the section's rows")?;
            checks::count(rows, &format!("{path}.rows"), 1, MAX_ROWS)?;
            for (j, row) in rows.iter().enumerate() {
                let at = format!("{path}.rows[{j}]");
                let id = checks::required(row.id.as_deref(), &format!("{at}.id"), "answered when picked")?;
                checks::text(id, &format!("{at}.id"), MAX_ROW_ID)?;
                let title = checks::required(row.title.as_deref(), &format!("{at}.title"), "shown in the list")?;
                checks::text(title, &format!("{at}.title"), MAX_ROW_TITLE)?;
                checks::optional_text(row.description.as_deref(), &format!("{at}.description"), MAX_ROW_DESCRIPTION)?;
                ids.push(id);
            }
        }
        if ids.len() > MAX_ROWS {
            return Err(ApiError::invalid(format!(
                "interactive.action.sections hold {} rows in all; the limit is {MAX_ROWS}",
                ids.len()
            )));
        }
        checks::distinct(ids, "interactive.action.sections[].rows[].id")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    fn check(json: serde_json::Value) -> Result<Interactive, ApiError> {
        serde_json::from_value::<Interactive>(json).unwrap().checked(&mut Vec::new())
    }

    fn buttons(n: usize) -> serde_json::Value {
        let buttons: Vec<_> = (0..n)
            .map(|i| json!({"type": "reply", "reply": {"id": format!("b{i}"), "title": format!("B{i}")}}))
            .collect();
        json!({"type": "button", "body": {"text": "pick"}, "action": {"buttons": buttons}})
    }

    #[test]
    fn button_messages_take_one_to_three_distinct_buttons() {
        assert!(check(buttons(3)).is_ok());
        assert_eq!(check(buttons(4)).unwrap_err().kind, ErrorKind::InvalidParameter);
        assert_eq!(check(buttons(0)).unwrap_err().kind, ErrorKind::InvalidParameter);
        let mut twice = buttons(2);
        twice["action"]["buttons"][1]["reply"]["id"] = json!("b0");
        assert!(check(twice).unwrap_err().details.contains("\"b0\""));
        let mut long = buttons(1);
        long["action"]["buttons"][0]["reply"]["title"] = json!("x".repeat(21));
        assert!(check(long).unwrap_err().details.starts_with("interactive.action.buttons[0].reply.title"));
    }

    #[test]
    fn lists_need_titled_sections_and_at_most_ten_rows() {
        let rows = |n: usize| -> Vec<serde_json::Value> {
            (0..n).map(|i| json!({"id": format!("r{i}"), "title": format!("Row {i}")})).collect()
        };
        let list = |sections: serde_json::Value| {
            json!({"type": "list", "header": {"type": "text", "text": "Menu"}, "body": {"text": "b"},
                   "action": {"button": "Open", "sections": sections}})
        };
        assert!(check(list(json!([{"rows": rows(10)}]))).is_ok());
        assert_eq!(check(list(json!([{"rows": rows(11)}]))).unwrap_err().kind, ErrorKind::InvalidParameter);
        let untitled = check(list(json!([{"rows": rows(1)}, {"title": "B", "rows": rows(1)}]))).unwrap_err();
        assert_eq!(untitled.kind, ErrorKind::MissingParameter);
        let spread = json!([{"title": "A", "rows": rows(6)}, {"title": "B", "rows": rows(6)}]);
        assert!(check(list(spread)).unwrap_err().details.contains("12 rows"));
    }

    #[test]
    fn headers_match_their_type() {
        let mut image = buttons(1);
        image["header"] = json!({"type": "image", "image": {"link": "https://example.com/a.png"}});
        assert!(check(image.clone()).is_ok());
        image["header"]["text"] = json!("also");
        assert_eq!(check(image).unwrap_err().kind, ErrorKind::UnknownParameter);
        let mut list_image = buttons(1);
        list_image["type"] = json!("list");
        list_image["header"] = json!({"type": "image", "image": {"link": "https://example.com/a.png"}});
        assert_eq!(check(list_image).unwrap_err().kind, ErrorKind::InvalidParameter);
    }
}
