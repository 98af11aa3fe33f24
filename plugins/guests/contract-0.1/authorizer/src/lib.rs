//! Test plugin: the default authorizer as built for contract
//! `shardgate:policy@0.1.0` (`wit/0.1.0`). The host must keep loading such
//! components; its tests compare this one with `OnPremAuthorizer`.

wit_bindgen::generate!({ world: "authorizer", path: "../../../../wit/0.1.0" });

use default_rules::authorization::{on_prem, Caller};
use exports::shardgate::policy::authorization::{Denial, Guest, Principal, Request, Role, Verdict};

/// The component's exports.
struct OnPremAuthorizer;

impl Guest for OnPremAuthorizer {
    fn authorize(principal: Principal, request: Request) -> Verdict {
        let caller = match principal {
            Principal::User(user) => Caller::User { admin: user.role == Role::Admin },
            Principal::ApiKey => Caller::ApiKey,
            Principal::Anonymous => Caller::Anonymous,
        };
        match on_prem(caller, &request.path) {
            Ok(()) => Verdict::Allow,
            Err(denial) => Verdict::Deny(Denial { status: denial.status, reason: denial.reason.into() }),
        }
    }
}

export!(OnPremAuthorizer);
