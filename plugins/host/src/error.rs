//! Every error a plugin can cause, mapped in one place, each with its blame.
//!
//! [`PluginError`] is what `load` answers; [`CallFailure`] is what one call
//! into a plugin turned into (it never leaves the crate: the caller gets the
//! built-in rule's answer, the operator gets the log line and the counters).
//! The blame decides what a failure counts against: a guest failure counts
//! towards unloading the plugin, a host failure (no free instance slot, the
//! host out of memory) does not.

use std::fmt;
use std::time::Duration;

use crate::deadline::Overrun;
use crate::PluginKind;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The plugin: it trapped, looped, grew too much memory, answered
    /// nonsense, or is not a component of the right world.
    Guest,
    /// The host: it had no instance slot or memory to run the plugin.
    Host,
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blame::Guest => "guest",
            Blame::Host => "host",
        })
    }
}

/// Why a plugin was not loaded; the running plugin of that kind is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not a valid WebAssembly component (garbage, truncated,
    /// a core module, or a feature this host does not enable).
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// A valid component, but not of the world of this kind.
    #[error("the component is not a {kind} plugin (world `{kind}` of shardgate:policy@0.2.0 or 0.1.0): {reason}")]
    WrongWorld {
        /// The kind it was loaded as.
        kind: PluginKind,
        /// What does not match.
        reason: String,
    },
    /// It could not be instantiated: its start code trapped, overran the
    /// deadline, or needs more memory than the cap.
    #[error("the component cannot be instantiated: {0}")]
    Instantiation(String),
    /// The name or version given with the upload is unusable.
    #[error("invalid plugin name or version: {0}")]
    BadLabel(String),
    /// The host could not take it, through no fault of the plugin.
    #[error("the plugin host could not load the component: {0}")]
    Host(String),
}

impl PluginError {
    /// Who is at fault (a guest error is a 4xx for the uploader, a host error a 5xx).
    pub fn blame(&self) -> Blame {
        match self {
            PluginError::Host(_) => Blame::Host,
            _ => Blame::Guest,
        }
    }

    /// Maps a failed trial instantiation.
    pub(crate) fn instantiation(error: wasmtime::Error, deadline: Duration) -> PluginError {
        let failure = CallFailure::from_wasmtime(error, deadline, None);
        match failure.blame() {
            Blame::Guest => PluginError::Instantiation(failure.detail),
            Blame::Host => PluginError::Host(failure.detail),
        }
    }
}

/// What went wrong in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// Interrupted at the deadline.
    Deadline,
    /// Tried to grow memory past the cap.
    MemoryCap,
    /// Trapped (panic, unreachable, out-of-bounds access, stack overflow,
    /// a call of a WASI import the host does not provide, ...).
    Trap,
    /// Returned, but an answer the contract forbids.
    Nonsense,
    /// Interrupted at the deadline, but the host had kept it off the CPU.
    Starved,
    /// The host could not provide an instance.
    HostUnavailable,
}

/// One failed call, mapped from wherever it came from.
#[derive(Debug, Clone)]
pub(crate) struct CallFailure {
    pub kind: FailureKind,
    pub detail: String,
}

/// The memory cap, raised by the store's limiter so that a call that ran
/// into it can be told apart from other traps.
#[derive(Debug)]
pub(crate) struct MemoryCapExceeded {
    pub desired: usize,
    pub cap: usize,
}

impl fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tried to grow its memory to {} bytes, over the cap of {} bytes", self.desired, self.cap)
    }
}

impl std::error::Error for MemoryCapExceeded {}

impl CallFailure {
    /// An answer outside the contract.
    pub fn nonsense(detail: String) -> CallFailure {
        CallFailure { kind: FailureKind::Nonsense, detail }
    }

    /// Classifies an error from wasmtime (a trap, an interrupt, the limiter,
    /// or the allocator), given what the deadline check found (`deadline.rs`).
    /// Anything not known to be the host's is the guest's.
    pub fn from_wasmtime(error: wasmtime::Error, deadline: Duration, overrun: Option<Overrun>) -> CallFailure {
        let causes = || error.chain();
        let (kind, detail) = if let Some(cap) = causes().find_map(|c| c.downcast_ref::<MemoryCapExceeded>()) {
            (FailureKind::MemoryCap, cap.to_string())
        } else if let Some(trap) = causes().find_map(|c| c.downcast_ref::<wasmtime::Trap>()) {
            match trap {
                wasmtime::Trap::Interrupt => match overrun {
                    Some(Overrun::Interrupted { starved: true, share }) => (
                        FailureKind::Starved,
                        format!(
                            "interrupted at its {deadline:?} deadline, but the host starved it of CPU (it ran {:.0}% \
                             of the time checked)",
                            share * 100.0
                        ),
                    ),
                    _ => (FailureKind::Deadline, format!("ran past its {deadline:?} deadline")),
                },
                trap => (FailureKind::Trap, format!("trapped: {trap}")),
            }
        } else if causes().any(|c| c.is::<wasmtime::PoolConcurrencyLimitError>() || c.is::<wasmtime::OutOfMemory>()) {
            (FailureKind::HostUnavailable, format!("no instance available: {error:#}"))
        } else {
            (FailureKind::Trap, format!("failed: {error:#}"))
        };
        CallFailure { kind, detail }
    }

    /// Who is at fault.
    pub fn blame(&self) -> Blame {
        match self.kind {
            FailureKind::HostUnavailable | FailureKind::Starved => Blame::Host,
            _ => Blame::Guest,
        }
    }

    /// Whether the instance must be thrown away: after a trap its state is
    /// unknown (and wasmtime refuses to enter it again); after a nonsense
    /// answer it is intact.
    pub fn poisons_instance(&self) -> bool {
        self.kind != FailureKind::Nonsense
    }
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A wasmtime error at the embedder's edge (setup), where `anyhow` is used.
pub(crate) fn to_anyhow(error: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::from_boxed(error.into_boxed_dyn_error())
}
