//! Shared by the test suites: the built components and a host to load them in.
#![allow(dead_code)] // each suite uses its own part

use std::path::PathBuf;
use std::sync::Once;

use shardgate_core::policy::{Principal, UserRole};

use shardgate_plugins::{HostConfig, PluginHost};

/// One caller of each kind the authorizer tells apart.
pub fn principals() -> [Principal; 4] {
    [
        Principal::Anonymous,
        Principal::ApiKey,
        Principal::User { name: "ana".into(), role: UserRole::User },
        Principal::User { name: "root".into(), role: UserRole::Admin },
    ]
}

/// Bytes of `plugins/components/<name>.wasm` (the defaults and examples).
pub fn component(name: &str) -> Vec<u8> {
    read("components", name)
}

/// Bytes of `plugins/test-components/<name>.wasm` (the hostile plugins).
pub fn test_component(name: &str) -> Vec<u8> {
    read("test-components", name)
}

fn read(folder: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(folder).join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; build the guest plugins first (plugins/build)", path.display()))
}

/// A host with the default configuration, its log shown by `--nocapture`.
pub fn host() -> PluginHost {
    host_with(HostConfig::default())
}

/// A host with `config`.
pub fn host_with(config: HostConfig) -> PluginHost {
    static LOG: Once = Once::new();
    LOG.call_once(|| {
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("shardgate_plugins=debug").try_init();
    });
    PluginHost::new(config).expect("the plugin host starts with its embedded defaults")
}
