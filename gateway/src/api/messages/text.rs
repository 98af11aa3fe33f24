//! `text` messages: a body of 1 to 4096 characters. Whether the recipient's
//! app previews a link in it is the top-level `preview_url`.

use super::checks;
use crate::error::{ApiError, ErrorKind};
use serde::{Deserialize, Serialize};

/// Longest text body, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// `text` of a text message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// 1 to 4096 characters.
    pub body: Option<String>,
}

impl Text {
    /// Checks the body; an over-long one is the on-prem 1001.
    pub fn checked(self) -> Result<Text, ApiError> {
        let body = checks::required(self.body.as_deref(), "text.body", "the message text")?;
        let chars = body.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(ApiError::new(
                ErrorKind::MessageTooLong,
                format!("text.body is {chars} characters long; the limit is {MAX_TEXT_CHARS}"),
            ));
        }
        checks::text(body, "text.body", MAX_TEXT_CHARS)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_length_counts_characters_not_bytes() {
        assert!(Text { body: Some("é".repeat(MAX_TEXT_CHARS)) }.checked().is_ok());
        let long = Text { body: Some("a".repeat(MAX_TEXT_CHARS + 1)) }.checked().unwrap_err();
        assert_eq!(long.kind, ErrorKind::MessageTooLong);
        assert_eq!(Text { body: None }.checked().unwrap_err().kind, ErrorKind::MissingParameter);
        assert_eq!(Text { body: Some(String::new()) }.checked().unwrap_err().kind, ErrorKind::InvalidParameter);
    }
}
