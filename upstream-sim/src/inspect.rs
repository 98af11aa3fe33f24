//! The inspection API: JSON over HTTP under `/sim/`, from which tests read the
//! verdict and through which they inject inbound messages and faults.
//! Every handler is one locked call into the state; the shapes are documented
//! with examples in `docs/upstream-sim.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::contacts::{DirectoryUpdate, DirectoryView};
use crate::faults::{Faults, FaultsUpdate};
use crate::inbound::{InboundRecord, InboundRequest, MarkReadRecord};
use crate::media::{MediaRecord, MediaRefusal};
use crate::state::{BanRecord, ConflictRecord, InjectedInbound, MessageRecord, SessionRecord, SimStats};
use crate::templates::TemplateRecord;
use crate::{now_ms, Shared};

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
        .route("/sim/inbound", get(inbound).post(inject_inbound))
        .route("/sim/mark_reads", get(mark_reads))
        .route("/sim/templates", get(templates).post(register_templates).delete(remove_template))
        .route("/sim/media", get(media))
        .route("/sim/contacts", get(contacts).post(update_contacts))
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

/// `POST /sim/inbound`: a message from a simulated user to an account; 422
/// with the reason when the request is no message.
async fn inject_inbound(
    State(sim): Sim,
    Json(req): Json<InboundRequest>,
) -> Result<Json<InjectedInbound>, (StatusCode, String)> {
    let inbound = req.build().map_err(|why| (StatusCode::UNPROCESSABLE_ENTITY, why))?;
    let account = inbound.account.clone();
    let injected = sim.state().inject_inbound(inbound, now_ms());
    tracing::info!(%account, shard = injected.shard, id = %injected.id, queued = injected.queued, "inbound injected");
    Ok(Json(injected))
}

/// `GET /sim/inbound`: every injected message, with its read marks.
#[derive(Serialize)]
struct InboundResponse {
    inbound: Vec<InboundRecord>,
}

async fn inbound(State(sim): Sim) -> Json<InboundResponse> {
    Json(InboundResponse { inbound: sim.state().inbox().messages() })
}

/// `GET /sim/mark_reads`: every `MarkRead` frame, resends included.
#[derive(Serialize)]
struct MarkReadsResponse {
    mark_reads: Vec<MarkReadRecord>,
}

async fn mark_reads(State(sim): Sim) -> Json<MarkReadsResponse> {
    Json(MarkReadsResponse { mark_reads: sim.state().inbox().marks() })
}

/// `GET /sim/templates` and the answer of the POST and DELETE.
#[derive(Serialize)]
struct TemplatesResponse {
    templates: Vec<TemplateRecord>,
}

async fn templates(State(sim): Sim) -> Json<TemplatesResponse> {
    Json(TemplatesResponse { templates: sim.state().templates().list() })
}

/// `POST /sim/templates`: one template, or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(TemplateRecord),
    Many(Vec<TemplateRecord>),
}

async fn register_templates(State(sim): Sim, Json(body): Json<OneOrMany>) -> Json<TemplatesResponse> {
    let records = match body {
        OneOrMany::One(record) => vec![record],
        OneOrMany::Many(records) => records,
    };
    let mut state = sim.state();
    for record in records {
        tracing::info!(?record, "template registered");
        state.templates().register(record);
    }
    Json(TemplatesResponse { templates: state.templates().list() })
}

/// `DELETE /sim/templates`: `{namespace, name, language}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateKey {
    namespace: String,
    name: String,
    language: String,
}

async fn remove_template(State(sim): Sim, Json(key): Json<TemplateKey>) -> Json<TemplatesResponse> {
    let mut state = sim.state();
    state.templates().remove(&key.namespace, &key.name, &key.language);
    Json(TemplatesResponse { templates: state.templates().list() })
}

/// `GET /sim/media`: what was uploaded, by whom, and what was refused.
#[derive(Serialize)]
struct MediaResponse {
    media: Vec<MediaRecord>,
    refused: Vec<MediaRefusal>,
}

async fn media(State(sim): Sim) -> Json<MediaResponse> {
    let state = sim.state();
    Json(MediaResponse { media: state.media().records(), refused: state.media().refusals() })
}

/// `GET /sim/contacts`: the rule and the numbers added or removed.
async fn contacts(State(sim): Sim) -> Json<DirectoryView> {
    Json(sim.state().contacts().view())
}

/// `POST /sim/contacts`: `{add, remove, unknown_prefixes}`; answers the directory.
async fn update_contacts(State(sim): Sim, Json(update): Json<DirectoryUpdate>) -> Json<DirectoryView> {
    let mut state = sim.state();
    tracing::info!(?update, "contacts updated");
    state.contacts().apply(update);
    Json(state.contacts().view())
}

/// `POST /sim/reset`: lifts every ban in force.
#[derive(Serialize)]
struct ResetResponse {
    bans_lifted: usize,
}

async fn reset(State(sim): Sim) -> Json<ResetResponse> {
    Json(ResetResponse { bans_lifted: sim.state().lift_bans(now_ms()) })
}
