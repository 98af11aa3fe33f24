//! Media objects: the content of `image`, `document`, `audio`, `video` and
//! `sticker` messages, and of media template parameters and interactive
//! headers. A medium is named by exactly one of `id` (from `POST /v1/media`)
//! or `link` (http or https, fetched when the message is sent).

use super::checks;
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use shardgate_core::media_dir::MediaId;

/// Longest caption, in characters.
const MAX_CAPTION: usize = 1024;
/// Longest document file name, in characters.
const MAX_FILENAME: usize = 240;

/// A medium, by id or link, with what the recipient sees of it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaObject {
    /// An uploaded medium's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where to fetch the medium.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Text shown with an image, video or document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// A document's file name as the recipient sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The media provider (`/v1/settings/application/media/providers`) whose
    /// credentials fetch the link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
}

/// A media provider by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// The provider's configured name.
    pub name: String,
}

/// Which of a media object's optional fields a use of it allows.
#[derive(Debug, Clone, Copy)]
pub struct MediaRules {
    /// `caption`: images, videos and documents.
    pub caption: bool,
    /// `filename`: documents.
    pub filename: bool,
}

impl MediaRules {
    /// The rules of a media message of `kind`.
    pub fn of_message(kind: &str) -> MediaRules {
        MediaRules { caption: matches!(kind, "image" | "video" | "document"), filename: kind == "document" }
    }

    /// The rules of a medium inside a template parameter or an interactive
    /// header, where only a document's file name is shown.
    pub fn embedded(kind: &str) -> MediaRules {
        MediaRules { caption: false, filename: kind == "document" }
    }
}

/// An uploaded medium a message refers to: it must exist when the message is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// The field that names it, for the error when it does not exist.
    pub field: String,
    /// Its id.
    pub id: MediaId,
}

impl MediaObject {
    /// Checks the object at `path` under `rules`; returns it with its id in
    /// canonical form, and records an id in `refs`.
    pub fn checked(mut self, path: &str, rules: MediaRules, refs: &mut Vec<MediaRef>) -> Result<MediaObject, ApiError> {
        match (&self.id, &self.link) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(format!("{path} takes either id or link, not both")));
            }
            (None, None) => {
                return Err(ApiError::missing(format!(
                    "{path}.id or {path}.link is required: an uploaded medium's id (POST /v1/media) or an http(s) link"
                )));
            }
            (Some(id), None) => {
                let field = format!("{path}.id");
                let id: MediaId = id.trim().parse().map_err(|e| ApiError::invalid(format!("{field}: {e}")))?;
                self.id = Some(id.to_string());
                refs.push(MediaRef { field, id });
            }
            (None, Some(link)) => checks::link(link, &format!("{path}.link"))?,
        }
        if !rules.caption {
            checks::absent(
                &self.caption,
                &format!("{path}.caption"),
                "only images, videos and documents have a caption",
            )?;
        }
        checks::optional_text(self.caption.as_deref(), &format!("{path}.caption"), MAX_CAPTION)?;
        if !rules.filename {
            checks::absent(&self.filename, &format!("{path}.filename"), "only documents have a file name")?;
        }
        checks::optional_text(self.filename.as_deref(), &format!("{path}.filename"), MAX_FILENAME)?;
        if let Some(provider) = &self.provider {
            checks::text(&provider.name, &format!("{path}.provider.name"), 191)?;
            if self.link.is_none() {
                return Err(ApiError::invalid(format!("{path}.provider only applies to a link")));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn object(json: serde_json::Value) -> MediaObject {
        serde_json::from_value(json).unwrap()
    }

    fn check(json: serde_json::Value, kind: &str) -> Result<(MediaObject, Vec<MediaRef>), ApiError> {
        let mut refs = Vec::new();
        object(json).checked(kind, MediaRules::of_message(kind), &mut refs).map(|o| (o, refs))
    }

    #[test]
    fn ids_are_canonical_and_recorded() {
        let (checked, refs) =
            check(serde_json::json!({"id": "4B5BF27B-8672-4D55-BC21-D096DC200D0F", "caption": "hi"}), "image").unwrap();
        assert_eq!(checked.id.as_deref(), Some("4b5bf27b-8672-4d55-bc21-d096dc200d0f"));
        assert_eq!(refs[0].field, "image.id");
    }

    #[test]
    fn id_or_link_exactly_one() {
        let both =
            check(serde_json::json!({"id": "4b5bf27b-8672-4d55-bc21-d096dc200d0f", "link": "https://a/b"}), "image");
        assert_eq!(both.unwrap_err().kind, ErrorKind::InvalidParameter);
        assert_eq!(check(serde_json::json!({}), "image").unwrap_err().kind, ErrorKind::MissingParameter);
        let traversal = check(serde_json::json!({"id": "../../etc/passwd"}), "image").unwrap_err();
        assert_eq!(traversal.kind, ErrorKind::InvalidParameter);
        assert!(traversal.details.starts_with("image.id"), "{}", traversal.details);
    }

    #[test]
    fn caption_and_filename_only_where_they_are_shown() {
        let link = "https://example.com/f";
        assert!(check(serde_json::json!({"link": link, "caption": "c", "filename": "f.pdf"}), "document").is_ok());
        let audio = check(serde_json::json!({"link": link, "caption": "c"}), "audio").unwrap_err();
        assert_eq!((audio.kind, audio.details.starts_with("audio.caption")), (ErrorKind::UnknownParameter, true));
        let image = check(serde_json::json!({"link": link, "filename": "f.png"}), "image").unwrap_err();
        assert_eq!(image.kind, ErrorKind::UnknownParameter);
    }
}
