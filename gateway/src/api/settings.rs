//! `GET`, `PATCH` and `DELETE /v1/settings/application` (admin only, as the
//! authorizer decides: the default one lets only admins through).
//!
//! The database keeps only the settings set explicitly (a [`SettingsPatch`]
//! document), so that a setting never touched follows this build's default.
//! Every change is validated as a whole against the cluster rules
//! ([`Settings::check_change`]: the upstream session timeout only goes up) and written with a compare-and-swap on the
//! document's version, re-read and re-validated on conflict. Nodes poll that
//! version (`LiveSettings`), so nothing is broadcast from here.

use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::Meta;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use shardgate_core::cluster::{Settings, SettingsPatch};
use shardgate_core::store::Store;

/// Attempts before a change that keeps losing the compare-and-swap gives up.
const MAX_WRITE_TRIES: usize = 5;

/// `GET`: the settings in force cluster-wide (stored values over defaults).
pub async fn get(State(state): State<AppState>) -> Result<Json<SettingsResponse>, ApiError> {
    let (version, stored) = read_stored(&state.store).await?;
    let settings = Settings::default().patched(&stored).map_err(|e| {
        stored_settings_unusable(format!("stored settings version {version} break a cluster rule ({e})"))
    })?;
    Ok(Json(SettingsResponse::of(settings)))
}

/// `PATCH`: changes the given settings; the body is a [`SettingsPatch`]
/// (seconds, fractional allowed; unknown fields refused).
pub async fn patch(
    State(state): State<AppState>,
    ApiJson(patch): ApiJson<SettingsPatch>,
) -> Result<Json<SettingsResponse>, ApiError> {
    let settings = write(&state.store, |stored| overlay(stored?, &patch)).await?;
    Ok(Json(SettingsResponse::of(settings)))
}

/// `DELETE`: back to this build's defaults, except the upstream session
/// timeout, which describes the network and can only be raised.
pub async fn reset(State(state): State<AppState>) -> Result<Json<SettingsResponse>, ApiError> {
    let settings = write(&state.store, |stored| {
        let kept = stored.ok().and_then(|s| s.upstream_session_timeout);
        Ok(SettingsPatch { upstream_session_timeout: kept, ..SettingsPatch::default() })
    })
    .await?;
    Ok(Json(SettingsResponse::of(settings)))
}

/// The stored document and its version; nothing stored reads as version 0, no field set.
async fn read_stored(store: &Store) -> Result<(i64, SettingsPatch), ApiError> {
    let (version, stored) = read_raw(store).await?;
    Ok((version, stored?))
}

/// Like [`read_stored`], but an unreadable document is an inner error, so
/// that a reset can still replace it.
async fn read_raw(store: &Store) -> Result<(i64, Result<SettingsPatch, ApiError>), ApiError> {
    Ok(match store.settings_doc().await? {
        None => (0, Ok(SettingsPatch::default())),
        Some((version, doc)) => {
            let stored = serde_json::from_str(&doc).map_err(|e| {
                stored_settings_unusable(format!("stored settings version {version} are unreadable ({e})"))
            });
            (version, stored)
        }
    })
}

/// Applies `change` to the stored document under compare-and-swap.
async fn write(
    store: &Store,
    change: impl Fn(Result<SettingsPatch, ApiError>) -> Result<SettingsPatch, ApiError>,
) -> Result<Settings, ApiError> {
    for _ in 0..MAX_WRITE_TRIES {
        let (version, stored) = read_raw(store).await?;
        // An unreadable document has nothing in force to compare with.
        let in_force = stored.as_ref().ok().map(|s| Settings::default().merged(s));
        let next = change(stored)?;
        let settings = Settings::default().merged(&next);
        match &in_force {
            Some(current) => current.check_change(&settings),
            None => settings.timing(),
        }
        .map_err(|e| ApiError::invalid(e.to_string()))?;
        let doc = serde_json::to_string(&next).map_err(ApiError::internal)?;
        if let Some(new_version) = store.write_settings(version, &doc).await? {
            tracing::info!(version = new_version, "settings changed: {doc}");
            return Ok(settings);
        }
    }
    Err(ApiError::new(
        ErrorKind::Conflict,
        format!("the settings were changed by others {MAX_WRITE_TRIES} times while this change was applied; retry"),
    ))
}

/// Stored settings that nodes cannot use (they keep their defaults meanwhile).
fn stored_settings_unusable(problem: String) -> ApiError {
    tracing::error!("{problem}");
    ApiError::new(
        ErrorKind::Internal,
        format!("{problem}; DELETE /v1/settings/application resets them to the defaults"),
    )
}

/// `base` with every field `top` sets replaced; nested objects (`webhooks`,
/// `webhooks.message`, `media`) are merged field by field, as the on-prem
/// client does with `PATCH {"webhooks":{"url":...}}`.
fn overlay(base: SettingsPatch, top: &SettingsPatch) -> Result<SettingsPatch, ApiError> {
    // Through JSON, so that a field added to SettingsPatch needs no change here.
    let mut merged = serde_json::to_value(base).map_err(ApiError::internal)?;
    let top = serde_json::to_value(top).map_err(ApiError::internal)?;
    merge_json(&mut merged, top);
    serde_json::from_value(merged).map_err(ApiError::internal)
}

fn merge_json(base: &mut serde_json::Value, top: serde_json::Value) {
    match (base.as_object_mut(), top) {
        (Some(base), serde_json::Value::Object(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge_json(existing, value),
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (_, top) => *base = top,
    }
}

/// The answer: `{"settings":{"application":{...}},"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct SettingsResponse {
    /// The settings.
    pub settings: ApplicationSettings,
    /// API status and version.
    pub meta: Meta,
}

/// The `application` section.
#[derive(Debug, Serialize)]
pub struct ApplicationSettings {
    /// Every setting, stored or default.
    pub application: Settings,
}

impl SettingsResponse {
    fn of(settings: Settings) -> SettingsResponse {
        SettingsResponse { settings: ApplicationSettings { application: settings }, meta: Meta::current() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_keeps_stored_fields_the_patch_does_not_set() {
        let stored = SettingsPatch { heartbeat_interval: Some(1.0), ..Default::default() };
        let patch = SettingsPatch { unhealthy_interval: Some(40.0), ..Default::default() };
        let merged = overlay(stored, &patch).unwrap();
        assert_eq!(merged.heartbeat_interval, Some(1.0));
        assert_eq!(merged.unhealthy_interval, Some(40.0));
        assert_eq!(merged.db_update_interval, None);
    }

    #[test]
    fn overlay_merges_nested_objects_field_by_field() {
        let stored: SettingsPatch =
            serde_json::from_str(r#"{"webhooks":{"url":"http://a/","message":{"read":false}}}"#).unwrap();
        let patch: SettingsPatch = serde_json::from_str(r#"{"webhooks":{"message":{"sent":false}}}"#).unwrap();
        let merged = Settings::default().merged(&overlay(stored, &patch).unwrap());
        assert_eq!(merged.webhooks.url, "http://a/");
        assert!(!merged.webhooks.message.read && !merged.webhooks.message.sent && merged.webhooks.message.delivered);
    }
}
