//! The plugin host: runs the routing, authorization and health-policy
//! WebAssembly components of `wit/policy.wit` behind the policy traits of
//! `shardgate_core::policy`, so that the gateway and the master call a
//! plugin exactly as they would the native rule.
//!
//! The parts, from the outside in:
//! - [`host`]: [`PluginHost`], the API: load, reset, list, the policy handles, the settings.
//! - `slot`: the running plugin of one kind; atomic swaps (load, reset, unload), and
//!   containment: a failed call is answered by the native rule, logged and counted.
//! - `plugin`: one loaded plugin: its pre-linked component, its pool of warm instances
//!   (never one instantiation per call), one call under the deadline.
//! - `router`, `authorizer`, `health`: each WIT world's glue: bindings of both contract
//!   versions, lowering the arguments, checking the answer, the native fallback.
//! - `contract`: the versions of `shardgate:policy` the host loads (0.2.0 and 0.1.0), and
//!   which one a component exports.
//! - `deadline`: the per-call deadline (epoch ticks) and the CPU check when a call
//!   reaches it, so that a plugin is not blamed for a host that starved it of CPU.
//! - `engine`: wasmtime set up once per host: the engine (pooling allocator, epoch
//!   interruption, no component-model concurrency), the epoch ticker thread, the linker.
//! - `imports`: what a plugin sees of the host (`log`, `monotonic-now`, `setting`; a router
//!   also `metadata`) and the memory cap; no filesystem, no network.
//! - `state`: the data of one instance's store: the plugin's label, the settings snapshot,
//!   the routed message's metadata, the memory cap, the deadline check; what the imports,
//!   the engine and the glue share.
//! - [`error`]: every plugin error mapped in one place, each marked with its [`Blame`].
//! - [`stats`]: counters and the snapshots for `/metrics` and `/v1/support`.
//! - [`config`]: [`HostConfig`]: deadline, memory cap, failure budget, pool sizes.
//! - `kind`: [`PluginKind`], one per world: `router`, `authorizer`, `health-policy`.
//!
//! Calls are synchronous: a call blocks its thread for as long as the plugin
//! runs. A plugin that keeps the CPU busy is interrupted at the deadline plus
//! three epoch ticks (10 ms + 3 ms by default); a call the OS keeps off the
//! CPU may take up to twice the deadline plus three ticks. Creating an
//! instance (only when the pool is empty) adds some 20 µs.

mod authorizer;
pub mod config;
mod contract;
mod deadline;
mod engine;
pub mod error;
mod health;
pub mod host;
mod imports;
mod kind;
mod plugin;
mod router;
mod slot;
mod state;
pub mod stats;

pub use config::HostConfig;
pub use error::{Blame, PluginError};
pub use host::PluginHost;
pub use kind::PluginKind;
pub use stats::{PluginInfo, RetiredPlugin};
