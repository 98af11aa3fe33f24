//! The router and the layers every request passes, assembled in one place.
//! The only module that knows every handler; nothing imports it but `lib.rs`.

use crate::api;
use crate::auth;
use crate::error;
use crate::extract::JSON_BODY_LIMIT;
use crate::request_head;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::trace::TraceLayer;

/// The REST API. axum routes first (an unknown path gets the on-prem 404),
/// then a request passes, outermost first:
/// 1. tracing;
/// 2. the request-head limits (URI 414, headers 431, in the on-prem format);
/// 3. the on-prem error format for anything axum answers by itself (405);
/// 4. the body-size limit (enforced as the body is read; 64 KiB, but 16 MiB
///    for a plugin upload; a media upload is never read into memory: its
///    handler streams it to disk and cuts it off at 64 MiB);
/// 5. authentication: the credentials become a caller, bad ones a 401;
/// 6. authorization: the authorizer plugin's verdict on that caller and request
///    (both on every route but login; a wrong method is refused after them);
/// 7. the endpoint's handler; `POST /v1/messages` (and `/v1/contacts` for its
///    checks) asks the router plugin for the shard, stores the message in its
///    outbox and wakes the shard's owner.
///    Login spends the budgets of `login_limits` before it hashes anything.
pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/v1/messages", post(api::messages::send))
        .route("/v1/messages/{id}", put(api::messages::mark_read))
        .route("/v1/media", post(api::media::upload))
        .route("/v1/media/{id}", get(api::media::download).delete(api::media::remove))
        .route("/v1/contacts", post(api::contacts::check))
        .route("/v1/users", post(api::users::create::create))
        .route(
            "/v1/users/{username}",
            get(api::users::read::read).put(api::users::update::update).delete(api::users::delete::delete),
        )
        .route("/v1/users/logout", post(api::logout::logout))
        .route("/v1/health", get(api::health::health))
        .route("/v1/support", get(api::support::support))
        .route("/metrics", get(api::metrics::metrics))
        .route(
            "/v1/settings/application",
            get(api::settings::get).patch(api::settings::patch).delete(api::settings::reset),
        )
        .route("/v1/plugins", get(api::plugins::list))
        .route(
            "/v1/plugins/{kind}",
            put(api::plugins::upload)
                .layer(DefaultBodyLimit::max(api::plugins::COMPONENT_LIMIT))
                .delete(api::plugins::remove),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authorize))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .route("/v1/users/login", post(api::login::login))
        .merge(authenticated)
        .fallback(error::no_such_endpoint)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(error::onprem_format_for_stray_errors))
        .layer(middleware::from_fn(request_head::refuse_oversized_heads))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
