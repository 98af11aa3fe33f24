//! The default authorizer: the on-prem roles, the rules of
//! `OnPremAuthorizer` in `core/src/policy.rs`, with the same status codes
//! and reasons.

wit_bindgen::generate!({ world: "authorizer", path: "../../../wit" });

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
