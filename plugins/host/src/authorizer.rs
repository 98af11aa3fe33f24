//! Glue of world `authorizer`: lowers a [`Principal`] and an [`AuthRequest`],
//! calls `authorize`, checks a denial's status is 401, 403 or 429, and falls
//! back to [`OnPremAuthorizer`].

use std::sync::Arc;

use shardgate_core::policy::{AuthRequest, AuthVerdict, AuthorizationPolicy, OnPremAuthorizer, Principal, UserRole};
use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::plugin::World;
use crate::slot::PluginSlot;
use crate::state::PluginState;
use crate::PluginKind;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "authorizer",
        with: { "shardgate:policy/host": crate::imports::host },
        // Arguments borrow the caller's strings: no copy before the one
        // into the guest's memory.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::shardgate::policy::authorization as wit;

/// The statuses a denial may carry.
const DENIAL_STATUSES: [u16; 3] = [401, 403, 429];

/// World `authorizer`.
pub(crate) struct AuthorizerWorld;

impl World for AuthorizerWorld {
    const KIND: PluginKind = PluginKind::Authorizer;
    type Pre = bindings::AuthorizerPre<PluginState>;
    type Exports = bindings::Authorizer;

    fn prepare(pre: InstancePre<PluginState>) -> wasmtime::Result<Self::Pre> {
        bindings::AuthorizerPre::new(pre)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<PluginState>) -> wasmtime::Result<Self::Exports> {
        pre.instantiate(store)
    }
}

/// The running authorizer plugin, as an [`AuthorizationPolicy`]; survives swaps.
pub(crate) struct PluginAuthorizer(pub Arc<PluginSlot<AuthorizerWorld>>);

impl AuthorizationPolicy for PluginAuthorizer {
    fn authorize(&self, principal: &Principal, request: &AuthRequest) -> AuthVerdict {
        self.0.invoke(
            |authorizer, store| {
                let principal = match principal {
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
                let headers: Vec<(&str, &str)> =
                    request.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
                let lowered = wit::Request {
                    method: &request.method,
                    path: &request.path,
                    headers: &headers,
                    client_addr: &request.client_addr,
                };
                Ok(match authorizer.shardgate_policy_authorization().call_authorize(store, principal, lowered)? {
                    wit::Verdict::Allow => Ok(AuthVerdict::Allow),
                    wit::Verdict::Deny(wit::Denial { status, reason }) if DENIAL_STATUSES.contains(&status) => {
                        Ok(AuthVerdict::Deny { status, reason })
                    }
                    wit::Verdict::Deny(wit::Denial { status, .. }) => {
                        Err(format!("denied with status {status}, not one of 401, 403 or 429"))
                    }
                })
            },
            || OnPremAuthorizer.authorize(principal, request),
        )
    }
}
