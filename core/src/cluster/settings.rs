//! The application settings that drive the cluster's timing, and the rules
//! that keep a settings change from ever allowing two upstream sessions.

use super::messaging_settings::{self, MediaPatch, MediaSettings, WebhookPatch, WebhookSettings};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Cluster-wide settings, stored as one JSON document (seconds, fractional allowed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Seconds between heartbeats from every master to every coreapp.
    pub heartbeat_interval: f64,
    /// Seconds without an answered heartbeat after which a primary coreapp is unhealthy.
    /// It is also the shard lease TTL.
    pub unhealthy_interval: f64,
    /// Seconds between a coreapp's database liveness writes; twice this without one is unhealthy.
    pub db_update_interval: f64,
    /// Seconds the upstream keeps a silent session open (its keepalive timeout).
    /// A fact about the network, set at deployment (`SHARDGATE_UPSTREAM_SESSION_TIMEOUT`
    /// on masters and coreapps): the API may raise it, never lower it.
    pub upstream_session_timeout: f64,
    /// Where callbacks go and which statuses are called back.
    pub webhooks: WebhookSettings,
    /// The older switch for `sent` callbacks (`webhooks.message.sent` is preferred).
    pub sent_status: bool,
    /// Whether callbacks are kept in the database and retried until the
    /// receiver takes them (`false`: one attempt each).
    pub callback_persist: bool,
    /// First retry delay of a callback; each retry waits this much longer.
    pub callback_backoff_delay_ms: u64,
    /// Longest wait between two attempts of a callback.
    pub max_callback_backoff_delay_ms: u64,
    /// Whether an inbound message is removed from the database once its
    /// callback was delivered.
    pub pass_through: bool,
    /// Which inbound media is stored on arrival.
    pub media: MediaSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            heartbeat_interval: 5.0,
            unhealthy_interval: 30.0,
            db_update_interval: 60.0,
            upstream_session_timeout: 10.0,
            webhooks: WebhookSettings::default(),
            sent_status: false,
            callback_persist: true,
            callback_backoff_delay_ms: 3_000,
            max_callback_backoff_delay_ms: 900_000,
            pass_through: false,
            media: MediaSettings::default(),
        }
    }
}

impl Settings {
    /// Whether callbacks are on (a receiver is set).
    pub fn callbacks_on(&self) -> bool {
        !self.webhooks.url.is_empty()
    }

    /// Whether `status` (`sent`, `delivered`, `read`, `failed`) changes of
    /// outbound messages are called back.
    pub fn calls_back_status(&self, status: &str) -> bool {
        match status {
            "sent" => self.webhooks.message.sent || self.sent_status,
            "delivered" => self.webhooks.message.delivered,
            "read" => self.webhooks.message.read,
            _ => true,
        }
    }
}

/// A partial update, as sent to `PATCH /v1/settings/application`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// New `heartbeat_interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<f64>,
    /// New `unhealthy_interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_interval: Option<f64>,
    /// New `db_update_interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_update_interval: Option<f64>,
    /// New `upstream_session_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_session_timeout: Option<f64>,
    /// New `webhooks` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhookPatch>,
    /// New `sent_status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_status: Option<bool>,
    /// New `callback_persist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_persist: Option<bool>,
    /// New `callback_backoff_delay_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_backoff_delay_ms: Option<u64>,
    /// New `max_callback_backoff_delay_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_callback_backoff_delay_ms: Option<u64>,
    /// New `pass_through`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_through: Option<bool>,
    /// New `media` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaPatch>,
}

/// A setting that was refused, with the reason an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    /// The offending setting.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: String,
}

/// Every duration the cluster runs on, derived from [`Settings`] in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Heartbeat period of every master.
    pub heartbeat: Duration,
    /// Unanswered-heartbeat time after which a primary coreapp is unhealthy.
    pub unhealthy: Duration,
    /// TTL of a shard lease, on the database clock.
    pub shard_lease_ttl: Duration,
    /// How often a primary coreapp renews its shard leases.
    pub renew_every: Duration,
    /// How long after *sending* a successful renewal a coreapp may still use its
    /// upstream session: the lease TTL less the upstream session timeout (a
    /// paused holder's session lingers that long upstream) less a fence margin.
    pub session_usable: Duration,
    /// Extra wait a master adds after a lease expiry, and anyone adds after the
    /// upstream must have timed a session out, before a new session may open.
    pub promotion_margin: Duration,
    /// How long the upstream keeps a silent session open.
    pub upstream_session_timeout: Duration,
    /// `TCP_USER_TIMEOUT` of upstream sockets: the kernel aborts a connection
    /// whose sent data stays unacknowledged this long, even while the process
    /// is paused, so no frame of ours can reach the upstream later than this
    /// after we wrote it. Half the margin, so the margin covers it.
    pub upstream_write_abort: Duration,
    /// TTL of the master lease.
    pub master_lease_ttl: Duration,
    /// How often the primary master renews its lease and runs its cycle.
    pub master_renew_every: Duration,
    /// Period of a coreapp's database liveness writes.
    pub db_update: Duration,
    /// Time without a liveness write after which a coreapp is unhealthy.
    pub db_unhealthy_after: Duration,
    /// How often every node re-reads the settings version.
    pub settings_poll: Duration,
}

const MIN_HEARTBEAT: f64 = 0.05;
const MAX_INTERVAL: f64 = 86_400.0;

fn secs(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

impl Settings {
    /// Applies a patch, returning the validated result.
    pub fn patched(&self, patch: &SettingsPatch) -> Result<Settings, SettingsError> {
        let next = self.merged(patch);
        next.timing()?;
        Ok(next)
    }

    /// Derives the timing, refusing settings that could break a cluster rule
    /// or make no sense (the messaging settings are checked here too, so that
    /// every settings document in force passed one function).
    pub fn timing(&self) -> Result<Timing, SettingsError> {
        self.webhooks.check()?;
        self.media.check()?;
        messaging_settings::check_backoff(self.callback_backoff_delay_ms, self.max_callback_backoff_delay_ms)?;
        let checks: [(&'static str, f64, f64); 4] = [
            ("heartbeat_interval", self.heartbeat_interval, MIN_HEARTBEAT),
            ("unhealthy_interval", self.unhealthy_interval, MIN_HEARTBEAT * 2.0),
            ("db_update_interval", self.db_update_interval, MIN_HEARTBEAT),
            ("upstream_session_timeout", self.upstream_session_timeout, 0.01),
        ];
        for (field, value, min) in checks {
            if !value.is_finite() || !(min..=MAX_INTERVAL).contains(&value) {
                return Err(SettingsError {
                    field,
                    reason: format!("must be a number of seconds between {min} and {MAX_INTERVAL}, got {value}"),
                });
            }
        }
        let heartbeat = secs(self.heartbeat_interval);
        let unhealthy = secs(self.unhealthy_interval);
        if unhealthy < heartbeat * 2 {
            return Err(SettingsError {
                field: "unhealthy_interval",
                reason: format!(
                    "must be at least twice heartbeat_interval ({} s), so that one late heartbeat \
                     does not fail a healthy primary over",
                    self.heartbeat_interval
                ),
            });
        }
        let shard_lease_ttl = unhealthy;
        let renew_every = heartbeat.min(shard_lease_ttl / 4);
        let fence_margin = (shard_lease_ttl / 10).max(Duration::from_millis(50));
        let session_timeout = secs(self.upstream_session_timeout);
        // The session must stay usable across at least two renewals, or a
        // healthy primary would fence itself between them.
        let needed = session_timeout + fence_margin + renew_every * 2;
        if shard_lease_ttl < needed {
            return Err(SettingsError {
                field: "unhealthy_interval",
                reason: format!(
                    "{} s is too short for an upstream session_timeout of {} s: unhealthy_interval is \
                     also the shard lease TTL, and a paused primary's upstream session can stay open \
                     for session_timeout after it last renewed, so a new primary could open a second \
                     session (a conflict, and bans); it must be at least {:.3} s (session_timeout + \
                     fence margin {:.3} s + two renewals of {:.3} s)",
                    self.unhealthy_interval,
                    self.upstream_session_timeout,
                    needed.as_secs_f64(),
                    fence_margin.as_secs_f64(),
                    renew_every.as_secs_f64()
                ),
            });
        }
        // Coreapps serve on without a master, so the master lease can afford
        // a floor that rides out a busy database.
        let master_lease_ttl = unhealthy.max(Duration::from_secs(1));
        let db_update = secs(self.db_update_interval);
        Ok(Timing {
            heartbeat,
            unhealthy,
            shard_lease_ttl,
            renew_every,
            session_usable: shard_lease_ttl - session_timeout - fence_margin,
            promotion_margin: fence_margin,
            upstream_session_timeout: session_timeout,
            upstream_write_abort: fence_margin / 2,
            master_lease_ttl,
            master_renew_every: (master_lease_ttl / 4).min(heartbeat),
            db_update,
            db_unhealthy_after: db_update * 2,
            settings_poll: heartbeat.min(Duration::from_secs(1)),
        })
    }

    /// Checks that going from `self` (in force) to `next` is allowed: besides
    /// the rules [`Settings::timing`] checks, the upstream session timeout can
    /// only be raised, because it describes the network rather than tunes it.
    pub fn check_change(&self, next: &Settings) -> Result<Timing, SettingsError> {
        if next.upstream_session_timeout < self.upstream_session_timeout {
            return Err(SettingsError {
                field: "upstream_session_timeout",
                reason: format!(
                    "can only be raised through the API ({} s is in force, {} s was asked): it is how long the \
                     upstream keeps a silent session open, a fact about the network set at deployment with \
                     SHARDGATE_UPSTREAM_SESSION_TIMEOUT; a value below the truth would let a new primary open \
                     a second session while the old one lingers upstream (a conflict, and bans)",
                    self.upstream_session_timeout, next.upstream_session_timeout
                ),
            });
        }
        next.timing()
    }

    /// These settings with the upstream session timeout raised to at least
    /// `floor`, the value this node was deployed with.
    pub fn with_session_timeout_floor(mut self, floor: Option<f64>) -> Settings {
        if let Some(floor) = floor {
            self.upstream_session_timeout = self.upstream_session_timeout.max(floor);
        }
        self
    }

    /// Parses a stored document; fields it lacks take their defaults.
    pub fn from_stored(doc: &str) -> Result<Settings, serde_json::Error> {
        let patch: SettingsPatch = serde_json::from_str(doc)?;
        Ok(Settings::default().merged(&patch))
    }

    /// These settings with the fields `patch` sets replaced, unchecked.
    pub fn merged(&self, patch: &SettingsPatch) -> Settings {
        Settings {
            heartbeat_interval: patch.heartbeat_interval.unwrap_or(self.heartbeat_interval),
            unhealthy_interval: patch.unhealthy_interval.unwrap_or(self.unhealthy_interval),
            db_update_interval: patch.db_update_interval.unwrap_or(self.db_update_interval),
            upstream_session_timeout: patch.upstream_session_timeout.unwrap_or(self.upstream_session_timeout),
            webhooks: self.webhooks.merged(patch.webhooks.as_ref()),
            sent_status: patch.sent_status.unwrap_or(self.sent_status),
            callback_persist: patch.callback_persist.unwrap_or(self.callback_persist),
            callback_backoff_delay_ms: patch.callback_backoff_delay_ms.unwrap_or(self.callback_backoff_delay_ms),
            max_callback_backoff_delay_ms: patch
                .max_callback_backoff_delay_ms
                .unwrap_or(self.max_callback_backoff_delay_ms),
            pass_through: patch.pass_through.unwrap_or(self.pass_through),
            media: self.media.merged(patch.media.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Settings {
        Settings {
            heartbeat_interval: 0.2,
            unhealthy_interval: 1.0,
            db_update_interval: 1.0,
            upstream_session_timeout: 0.3,
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_and_fast_test_settings_are_valid() {
        let t = Settings::default().timing().unwrap();
        assert_eq!(t.shard_lease_ttl, Duration::from_secs(30));
        assert_eq!(t.renew_every, Duration::from_secs(5));
        let t = fast().timing().unwrap();
        assert_eq!(t.renew_every, Duration::from_millis(200));
        assert_eq!(t.session_usable, Duration::from_millis(600));
    }

    #[test]
    fn session_is_always_closed_upstream_before_the_lease_expires() {
        for s in [Settings::default(), fast()] {
            let t = s.timing().unwrap();
            let session_timeout = secs(s.upstream_session_timeout);
            // Worst case: paused at the last usable instant with a frame still
            // being retransmitted; the kernel gives up on it after the write
            // abort, the upstream closes the session session_timeout after
            // the frame arrived, and all of it precedes expiry.
            assert!(t.session_usable + t.upstream_write_abort + session_timeout < t.shard_lease_ttl);
            assert!(t.session_usable >= t.renew_every * 2);
        }
    }

    #[test]
    fn unhealthy_interval_too_short_for_the_session_timeout_is_refused_with_the_reason() {
        let err = fast().patched(&SettingsPatch { unhealthy_interval: Some(0.5), ..Default::default() }).unwrap_err();
        assert_eq!(err.field, "unhealthy_interval");
        assert!(err.reason.contains("session_timeout"), "{}", err.reason);
        assert!(err.reason.contains("second session"), "{}", err.reason);
    }

    #[test]
    fn the_upstream_session_timeout_can_be_raised_but_never_lowered() {
        let current = fast();
        let lower = Settings { upstream_session_timeout: 0.01, ..fast() };
        let err = current.check_change(&lower).unwrap_err();
        assert_eq!(err.field, "upstream_session_timeout");
        assert!(err.reason.contains("only be raised"), "{}", err.reason);
        let higher = Settings { upstream_session_timeout: 0.4, ..fast() };
        assert!(current.check_change(&higher).is_ok());
        assert_eq!(current.clone().with_session_timeout_floor(Some(0.5)).upstream_session_timeout, 0.5);
        assert_eq!(current.with_session_timeout_floor(Some(0.1)).upstream_session_timeout, 0.3);
    }

    #[test]
    fn frames_written_reach_the_upstream_within_the_margin() {
        for s in [Settings::default(), fast()] {
            let t = s.timing().unwrap();
            assert!(t.upstream_write_abort < t.promotion_margin);
            assert!(t.upstream_write_abort > Duration::ZERO);
        }
    }

    #[test]
    fn nonsense_values_are_refused() {
        for bad in [f64::NAN, -1.0, 0.0, 1e9] {
            let patch = SettingsPatch { heartbeat_interval: Some(bad), ..Default::default() };
            assert_eq!(fast().patched(&patch).unwrap_err().field, "heartbeat_interval");
        }
        let patch = SettingsPatch { heartbeat_interval: Some(0.6), ..Default::default() };
        assert!(fast().patched(&patch).unwrap_err().reason.contains("twice"));
    }

    #[test]
    fn stored_documents_missing_fields_take_defaults() {
        let s = Settings::from_stored(r#"{"heartbeat_interval":0.5}"#).unwrap();
        assert_eq!(s.heartbeat_interval, 0.5);
        assert_eq!(s.unhealthy_interval, 30.0);
    }
}
