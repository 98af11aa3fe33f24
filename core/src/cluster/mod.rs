//! The cluster model shared by every role: settings and the timing derived
//! from them, the messaging settings (callbacks, media), and the live view
//! of settings each node keeps.

pub mod live_settings;
pub mod messaging_settings;
pub mod settings;

pub use settings::{Settings, SettingsError, SettingsPatch, Timing};
