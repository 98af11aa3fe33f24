//! The versions of the plugin contract the host loads: `shardgate:policy`
//! 0.2.0 (`wit/policy.wit`) and 0.1.0 (`wit/0.1.0/policy.wit`).
//!
//! A component exports its world's interface at one version. Each world's
//! glue (`router.rs`, `authorizer.rs`, `health.rs`) has the bindings of both
//! and asks [`Contract::exported_by`] which to use, once, at load time; a
//! call then goes through that version's bindings with no check of its own.

use std::fmt;

use wasmtime::component::InstancePre;

use crate::state::PluginState;

/// A released version of the `shardgate:policy` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contract {
    /// 0.1.0: `route` takes the metadata as an argument.
    V0_1,
    /// 0.2.0: `route` takes the recipient and a kind variant; the metadata
    /// is read through the `message` import.
    V0_2,
}

impl Contract {
    /// Every version the host loads, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The version, as WIT writes it.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// Which version of `shardgate:policy/<interface>` the component of
    /// `pre` exports, the newest if it exports several.
    pub fn exported_by(pre: &InstancePre<PluginState>, interface: &str) -> wasmtime::Result<Contract> {
        let component = pre.component();
        Contract::ALL
            .into_iter()
            .find(|contract| component.get_export_index(None, contract.interface(interface).as_str()).is_some())
            .ok_or_else(|| {
                let names: Vec<String> = Contract::ALL.iter().map(|c| c.interface(interface)).collect();
                wasmtime::format_err!("it exports none of {}", names.join(", "))
            })
    }

    /// Whether the component of `pre` imports `shardgate:policy/<interface>`
    /// at this version.
    pub fn imported_by(self, pre: &InstancePre<PluginState>, interface: &str) -> bool {
        let component = pre.component();
        component.component_type().get_import(component.engine(), &self.interface(interface)).is_some()
    }

    /// The full name of one of its interfaces: `shardgate:policy/<interface>@<version>`.
    fn interface(self, interface: &str) -> String {
        format!("shardgate:policy/{interface}@{}", self.version())
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shardgate:policy@{}", self.version())
    }
}
