//! `GET /metrics`: this webapp's metrics in the Prometheus text format
//! (messages accepted, and the plugin host's counters as of the scrape).
//! The default authorizer lets the API key and logged-in users through.

use crate::auth::Caller;
use crate::metrics::GatewayMetrics;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

/// Renders the registry; there is no request body and nothing can fail.
pub async fn metrics(State(state): State<AppState>, _caller: Caller) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, GatewayMetrics::content_type())], state.metrics.render(&state.plugins))
}
