//! The application settings of the messaging surface, with the on-prem
//! names: where and how callbacks are delivered, and which inbound media is
//! downloaded. None of them can affect the one-session rule, so the only
//! checks here are that the values make sense.

use serde::{Deserialize, Serialize};

use super::settings::SettingsError;

/// Media kinds the on-prem client can download automatically.
pub const MEDIA_KINDS: [&str; 6] = ["audio", "document", "image", "sticker", "video", "voice"];

/// Upper bound of `webhooks.max_concurrent_requests`: each is a connection
/// held open by the coreapp delivering callbacks.
pub const MAX_CONCURRENT_CALLBACKS: u32 = 64;

/// `webhooks`: where callbacks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// The receiver; empty turns callbacks off.
    pub url: String,
    /// Callbacks in flight at once, per coreapp.
    pub max_concurrent_requests: u32,
    /// Which status changes of outbound messages are called back.
    pub message: WebhookMessageSettings,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings { url: String::new(), max_concurrent_requests: 12, message: WebhookMessageSettings::default() }
    }
}

/// `webhooks.message`: which statuses are called back (`failed` always is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookMessageSettings {
    /// `sent` statuses (also on when the older `sent_status` is).
    pub sent: bool,
    /// `delivered` statuses.
    pub delivered: bool,
    /// `read` statuses.
    pub read: bool,
}

impl Default for WebhookMessageSettings {
    fn default() -> Self {
        WebhookMessageSettings { sent: true, delivered: true, read: true }
    }
}

/// `media`: what happens to inbound media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSettings {
    /// Inbound media kinds stored in the media directory on arrival.
    pub auto_download: Vec<String>,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings { auto_download: MEDIA_KINDS.iter().map(|k| (*k).to_string()).collect() }
    }
}

/// A partial `webhooks` object in a PATCH.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// New `webhooks.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// New `webhooks.max_concurrent_requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    /// New `webhooks.message` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<WebhookMessagePatch>,
}

/// A partial `webhooks.message` object in a PATCH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookMessagePatch {
    /// New `sent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<bool>,
    /// New `delivered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<bool>,
    /// New `read`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<bool>,
}

/// A partial `media` object in a PATCH.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaPatch {
    /// New `media.auto_download`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_download: Option<Vec<String>>,
}

impl WebhookSettings {
    /// These settings with the fields `patch` sets replaced.
    pub fn merged(&self, patch: Option<&WebhookPatch>) -> WebhookSettings {
        let Some(patch) = patch else { return self.clone() };
        let message = patch.message.unwrap_or_default();
        WebhookSettings {
            url: patch.url.clone().unwrap_or_else(|| self.url.clone()),
            max_concurrent_requests: patch.max_concurrent_requests.unwrap_or(self.max_concurrent_requests),
            message: WebhookMessageSettings {
                sent: message.sent.unwrap_or(self.message.sent),
                delivered: message.delivered.unwrap_or(self.message.delivered),
                read: message.read.unwrap_or(self.message.read),
            },
        }
    }

    /// Refuses a receiver that is not an absolute http(s) URL, and a
    /// concurrency outside 1..=[`MAX_CONCURRENT_CALLBACKS`].
    pub fn check(&self) -> Result<(), SettingsError> {
        if !self.url.is_empty() {
            let parsed = url::Url::parse(&self.url).map_err(|e| SettingsError {
                field: "webhooks.url",
                reason: format!("must be an absolute http or https URL, or empty to turn callbacks off ({e})"),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(SettingsError {
                    field: "webhooks.url",
                    reason: "must be an absolute http or https URL, or empty to turn callbacks off".to_string(),
                });
            }
        }
        if !(1..=MAX_CONCURRENT_CALLBACKS).contains(&self.max_concurrent_requests) {
            return Err(SettingsError {
                field: "webhooks.max_concurrent_requests",
                reason: format!(
                    "must be between 1 and {MAX_CONCURRENT_CALLBACKS}, got {}",
                    self.max_concurrent_requests
                ),
            });
        }
        Ok(())
    }
}

impl MediaSettings {
    /// These settings with the fields `patch` sets replaced.
    pub fn merged(&self, patch: Option<&MediaPatch>) -> MediaSettings {
        match patch.and_then(|p| p.auto_download.clone()) {
            Some(auto_download) => MediaSettings { auto_download },
            None => self.clone(),
        }
    }

    /// Refuses media kinds the on-prem client does not know.
    pub fn check(&self) -> Result<(), SettingsError> {
        match self.auto_download.iter().find(|k| !MEDIA_KINDS.contains(&k.as_str())) {
            Some(unknown) => Err(SettingsError {
                field: "media.auto_download",
                reason: format!("{unknown:?} is not a media kind; the kinds are {}", MEDIA_KINDS.join(", ")),
            }),
            None => Ok(()),
        }
    }

    /// Whether inbound media of `kind` is downloaded on arrival.
    pub fn downloads(&self, kind: &str) -> bool {
        self.auto_download.iter().any(|k| k == kind)
    }
}

/// Checks the callback backoff: a first delay, and a cap at least as long.
pub fn check_backoff(first_ms: u64, max_ms: u64) -> Result<(), SettingsError> {
    const DAY_MS: u64 = 86_400_000;
    if first_ms == 0 || first_ms > DAY_MS {
        return Err(SettingsError {
            field: "callback_backoff_delay_ms",
            reason: format!("must be between 1 and {DAY_MS} milliseconds, got {first_ms}"),
        });
    }
    if max_ms < first_ms || max_ms > DAY_MS {
        return Err(SettingsError {
            field: "max_callback_backoff_delay_ms",
            reason: format!(
                "must be between callback_backoff_delay_ms ({first_ms}) and {DAY_MS} milliseconds, got {max_ms}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_changes_only_the_fields_it_sets() {
        let base = WebhookSettings { url: "http://a/".into(), ..WebhookSettings::default() };
        let patch = WebhookPatch {
            message: Some(WebhookMessagePatch { read: Some(false), ..Default::default() }),
            ..Default::default()
        };
        let merged = base.merged(Some(&patch));
        assert_eq!(merged.url, "http://a/");
        assert_eq!(merged.message, WebhookMessageSettings { sent: true, delivered: true, read: false });
    }

    #[test]
    fn receivers_must_be_http_urls() {
        for bad in ["ftp://x/", "not a url", "http://"] {
            let s = WebhookSettings { url: bad.into(), ..WebhookSettings::default() };
            assert_eq!(s.check().unwrap_err().field, "webhooks.url", "{bad}");
        }
        for good in ["", "http://127.0.0.1:9/hook", "https://example.com/x"] {
            assert!(WebhookSettings { url: good.into(), ..WebhookSettings::default() }.check().is_ok(), "{good}");
        }
        let s = WebhookSettings { max_concurrent_requests: 0, ..WebhookSettings::default() };
        assert_eq!(s.check().unwrap_err().field, "webhooks.max_concurrent_requests");
    }

    #[test]
    fn unknown_media_kinds_and_backwards_backoff_are_refused() {
        let media = MediaSettings { auto_download: vec!["image".into(), "hologram".into()] };
        assert!(media.check().unwrap_err().reason.contains("hologram"));
        assert!(MediaSettings::default().downloads("voice"));
        assert_eq!(check_backoff(3000, 1000).unwrap_err().field, "max_callback_backoff_delay_ms");
        assert_eq!(check_backoff(0, 1000).unwrap_err().field, "callback_backoff_delay_ms");
        assert!(check_backoff(3000, 900_000).is_ok());
    }
}
