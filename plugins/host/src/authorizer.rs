//! Glue of world `authorizer`: lowers a [`Principal`] and an [`AuthRequest`]
//! for the contract version the plugin was built for (the world is the same
//! in 0.1.0 and 0.2.0), calls `authorize`, checks a denial's status is 401,
//! 403 or 429, and falls back to [`OnPremAuthorizer`].

use std::sync::Arc;

use shardgate_core::policy::{AuthRequest, AuthVerdict, AuthorizationPolicy, OnPremAuthorizer, Principal, UserRole};
use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::contract::Contract;
use crate::plugin::World;
use crate::slot::PluginSlot;
use crate::state::PluginState;
use crate::PluginKind;

/// Bindings of contract 0.2.0.
mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "authorizer",
        with: { "shardgate:policy/host": crate::imports::v0_2::host },
        // Arguments borrow the caller's strings: no copy before the one
        // into the guest's memory.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// Bindings of contract 0.1.0; the world has not changed since.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../wit/0.1.0",
        world: "authorizer",
        with: { "shardgate:policy/host": crate::imports::v0_1::host },
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// The statuses a denial may carry.
const DENIAL_STATUSES: [u16; 3] = [401, 403, 429];

/// World `authorizer`.
pub(crate) struct AuthorizerWorld;

/// An authorizer plugin, pre-linked with the bindings of its contract version.
pub(crate) enum AuthorizerPre {
    V0_1(v0_1::AuthorizerPre<PluginState>),
    V0_2(v0_2::AuthorizerPre<PluginState>),
}

/// An authorizer instance's exports.
pub(crate) enum AuthorizerExports {
    V0_1(v0_1::Authorizer),
    V0_2(v0_2::Authorizer),
}

impl World for AuthorizerWorld {
    const KIND: PluginKind = PluginKind::Authorizer;
    type Pre = AuthorizerPre;
    type Exports = AuthorizerExports;

    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        Ok(match Contract::exported_by(&pre, "authorization")? {
            Contract::V0_1 => AuthorizerPre::V0_1(v0_1::AuthorizerPre::new(pre)?),
            Contract::V0_2 => AuthorizerPre::V0_2(v0_2::AuthorizerPre::new(pre)?),
        })
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports> {
        Ok(match pre {
            AuthorizerPre::V0_1(pre) => AuthorizerExports::V0_1(pre.instantiate(store)?),
            AuthorizerPre::V0_2(pre) => AuthorizerExports::V0_2(pre.instantiate(store)?),
        })
    }
}

/// `authorize` through the bindings of one contract version (`$version`):
/// the interface is the same in both, only the paths of its types differ.
macro_rules! authorize {
    ($version:ident, $authorizer:expr, $store:expr, $principal:expr, $request:expr) => {{
        use $version::exports::shardgate::policy::authorization as wit;

        let principal = match $principal {
            Principal::User { name, role } => wit::Principal::User(wit::UserPrincipal {
                name,
                role: match role {
                    UserRole::Admin => wit::Role::Admin,
                    UserRole::User => wit::Role::User,
                },
            }),
            Principal::ApiKey => wit::Principal::ApiKey,
            Principal::Anonymous => wit::Principal::Anonymous,
        };
        let request: &AuthRequest = $request;
        let headers: Vec<(&str, &str)> =
            request.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
        let lowered = wit::Request {
            method: &request.method,
            path: &request.path,
            headers: &headers,
            client_addr: &request.client_addr,
        };
        match $authorizer.shardgate_policy_authorization().call_authorize($store, principal, lowered)? {
            wit::Verdict::Allow => AuthVerdict::Allow,
            wit::Verdict::Deny(wit::Denial { status, reason }) => AuthVerdict::Deny { status, reason },
        }
    }};
}

/// The running authorizer plugin, as an [`AuthorizationPolicy`]; survives swaps.
pub(crate) struct PluginAuthorizer(pub Arc<PluginSlot<AuthorizerWorld>>);

impl AuthorizationPolicy for PluginAuthorizer {
    fn authorize(&self, principal: &Principal, request: &AuthRequest) -> AuthVerdict {
        self.0.invoke(
            |authorizer, store| {
                let verdict = match authorizer {
                    AuthorizerExports::V0_2(authorizer) => authorize!(v0_2, authorizer, store, principal, request),
                    AuthorizerExports::V0_1(authorizer) => authorize!(v0_1, authorizer, store, principal, request),
                };
                Ok(match verdict {
                    AuthVerdict::Deny { status, .. } if !DENIAL_STATUSES.contains(&status) => {
                        Err(format!("denied with status {status}, not one of 401, 403 or 429"))
                    }
                    verdict => Ok(verdict),
                })
            },
            || OnPremAuthorizer.authorize(principal, request),
        )
    }
}
