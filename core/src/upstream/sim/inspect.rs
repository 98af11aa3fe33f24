//! The inspection API: JSON over HTTP under `/sim/`, from which tests read the
//! verdict and through which they inject inbound messages and faults.
//! Every handler is one locked call into the state; the shapes are documented
//! with examples in `docs/upstream-sim.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::faults::{Faults, FaultsUpdate};
use super::state::{BanRecord, ConflictRecord, InjectedInbound, MessageRecord, SessionRecord, SimStats};
use super::{now_ms, Shared};

/// The routes, bound to one sim.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/messages", get(messages))
        .route("/sim/sessions", get(sessions))
        .route("/sim/conflicts", get(conflicts))
        .route("/sim/bans", get(bans))
        .route("/sim/deliveries", get(deliveries))
        .route("/sim/faults", get(faults).post(update_faults))
        .route("/sim/inbound", post(inject_inbound))
        .route("/sim/reset", post(reset))
        .with_state(shared)
}

type Sim = State<Arc<Shared>>;

/// `GET /sim/stats`.
async fn stats(State(sim): Sim) -> Json<SimStats> {
    Json(sim.state().stats(now_ms()))
}

/// `GET /sim/messages`: every received send, resends included.
#[derive(Serialize)]
struct MessagesResponse {
    messages: Vec<MessageRecord>,
}

async fn messages(State(sim): Sim) -> Json<MessagesResponse> {
    Json(MessagesResponse { messages: sim.state().messages() })
}

/// `GET /sim/sessions`: every session ever opened.
#[derive(Serialize)]
struct SessionsResponse {
    sessions: Vec<SessionRecord>,
}

async fn sessions(State(sim): Sim) -> Json<SessionsResponse> {
    Json(SessionsResponse { sessions: sim.state().sessions() })
}

/// `GET /sim/conflicts`.
#[derive(Serialize)]
struct ConflictsResponse {
    conflicts: Vec<ConflictRecord>,
}

async fn conflicts(State(sim): Sim) -> Json<ConflictsResponse> {
    Json(ConflictsResponse { conflicts: sim.state().conflicts() })
}

/// `GET /sim/bans`: every ban ever issued, with whether it is in force.
#[derive(Serialize)]
struct BansResponse {
    bans: Vec<BanRecord>,
}

async fn bans(State(sim): Sim) -> Json<BansResponse> {
    Json(BansResponse { bans: sim.state().bans(now_ms()) })
}

/// `GET /sim/deliveries`: recipient → delivered ids in delivery order.
#[derive(Serialize)]
struct DeliveriesResponse {
    deliveries: BTreeMap<String, Vec<String>>,
}

async fn deliveries(State(sim): Sim) -> Json<DeliveriesResponse> {
    Json(DeliveriesResponse { deliveries: sim.state().deliveries() })
}

/// `GET /sim/faults`.
async fn faults(State(sim): Sim) -> Json<Faults> {
    Json(sim.state().faults())
}

/// `POST /sim/faults`: a partial update; answers the faults now in force.
async fn update_faults(State(sim): Sim, Json(update): Json<FaultsUpdate>) -> Json<Faults> {
    Json(sim.state().update_faults(update))
}

/// `POST /sim/inbound`: a message from a simulated user to an account.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundRequest {
    account: String,
    /// Absent: the network picks the shard from `from`.
    shard: Option<u32>,
    from: String,
    body: String,
}

async fn inject_inbound(State(sim): Sim, Json(req): Json<InboundRequest>) -> Json<InjectedInbound> {
    let injected = sim.state().inject_inbound(&req.account, req.shard, &req.from, &req.body, now_ms());
    tracing::info!(account = %req.account, shard = injected.shard, id = %injected.id, queued = injected.queued, "inbound injected");
    Json(injected)
}

/// `POST /sim/reset`: lifts every ban in force.
#[derive(Serialize)]
struct ResetResponse {
    bans_lifted: usize,
}

async fn reset(State(sim): Sim) -> Json<ResetResponse> {
    Json(ResetResponse { bans_lifted: sim.state().lift_bans(now_ms()) })
}
