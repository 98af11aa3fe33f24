//! One file per endpoint, each in the same shape: request type, handler,
//! response type; `messages` is a directory, one file per message type, and
//! `users` one file per user endpoint.

pub mod contacts;
pub mod health;
pub mod login;
pub mod logout;
pub mod media;
pub mod messages;
pub mod metrics;
pub mod plugins;
pub mod settings;
pub mod support;
pub mod users;
