//! `POST /v1/contacts`: whether phone numbers are WhatsApp users, and their
//! `wa_id`s. Results are cached for 7 days in the database, shared by every
//! webapp; an input without a fresh result (or every input, with
//! `force_check`) is queued on the shard the router picks for its digits,
//! whose primary coreapp asks the upstream, and that shard's owner is woken.
//!
//! With `"blocking": "wait"` the answer waits (at most [`WAIT_LIMIT`]) for
//! the results to reach the cache; with `no_wait`, the default, inputs
//! without a result are answered `processing` at once. An input that is not
//! a phone number is `invalid` without a check.

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::Meta;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use shardgate_core::policy::RouteRequest;
use shardgate_core::store::contacts::{ContactRow, ContactStatus, CONTACT_RESULT_TTL_MS};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Most inputs in one request.
pub const MAX_CONTACTS: usize = 1000;
/// Longest a `wait` request waits for results before answering `processing`.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);
/// How often a waiting request looks for results.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// Most digits of a phone number.
const MAX_DIGITS: usize = 20;
/// Longest input that is checked (the size of the cache's key).
const MAX_INPUT: usize = 64;
/// The router's `kind` for a contact check.
const CHECK_KIND: &str = "contact_check";

/// The body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckContactsRequest {
    /// `wait` or `no_wait` (the default).
    pub blocking: Option<String>,
    /// Phone numbers in any usual notation, 1 to 1000.
    pub contacts: Option<Vec<String>>,
    /// Check again even when a fresh result is cached.
    pub force_check: Option<bool>,
}

/// Answers from the cache, queues checks for the rest, and waits if asked.
pub async fn check(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CheckContactsRequest>,
) -> Result<Json<CheckContactsResponse>, ApiError> {
    let started = Instant::now();
    let wait = match request.blocking.as_deref().unwrap_or("no_wait") {
        "wait" => true,
        "no_wait" => false,
        other => return Err(ApiError::invalid(format!("blocking must be wait or no_wait, not {other:?}"))),
    };
    let inputs =
        request.contacts.ok_or_else(|| ApiError::missing("contacts is required: the phone numbers to check"))?;
    if inputs.is_empty() || inputs.len() > MAX_CONTACTS {
        return Err(ApiError::invalid(format!(
            "contacts must list 1 to {MAX_CONTACTS} phone numbers, not {}; split longer lists",
            inputs.len()
        )));
    }
    let force = request.force_check.unwrap_or(false);
    let checkable: Vec<String> =
        inputs.iter().filter(|i| phone_digits(i).is_some()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let mut results: HashMap<String, ContactRow> = HashMap::new();
    if !force {
        results.extend(cached(&state, &checkable, CONTACT_RESULT_TTL_MS).await?);
    }
    let mut pending: Vec<String> = checkable.into_iter().filter(|i| !results.contains_key(i)).collect();
    if !pending.is_empty() {
        queue_checks(&state, &pending).await?;
        if wait {
            // A forced check waits for a result newer than the request; the
            // local clock bounds its age from above, so none is missed.
            let max_age = |since: Instant| if force { elapsed_ms(since) + 1 } else { CONTACT_RESULT_TTL_MS };
            let deadline = started + WAIT_LIMIT;
            while !pending.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(POLL_EVERY).await;
                results.extend(cached(&state, &pending, max_age(started)).await?);
                pending.retain(|i| !results.contains_key(i));
            }
        }
    }
    let contacts = inputs.into_iter().map(|input| ContactView::of(input, &results)).collect();
    Ok(Json(CheckContactsResponse { contacts, meta: Meta::current() }))
}

/// The cached results of `inputs` no older than `max_age_ms`, by input.
async fn cached(state: &AppState, inputs: &[String], max_age_ms: i64) -> Result<Vec<(String, ContactRow)>, ApiError> {
    let rows = state.store.cached_contacts(inputs, max_age_ms).await?;
    Ok(rows.into_iter().map(|row| (row.input.clone(), row)).collect())
}

/// Queues a check of each input on its shard and wakes those shards' owners.
async fn queue_checks(state: &AppState, inputs: &[String]) -> Result<(), ApiError> {
    let routes: Vec<RouteRequest> = inputs
        .iter()
        .map(|input| RouteRequest {
            recipient: phone_digits(input).unwrap_or_default(),
            kind: CHECK_KIND.to_string(),
            metadata: Vec::new(),
        })
        .collect();
    let shards = state.shards.shards_of(&routes).await?;
    let checks: Vec<(String, u32)> = inputs.iter().cloned().zip(shards.iter().copied()).collect();
    state.store.request_contact_checks(&checks).await?;
    for shard in shards.into_iter().collect::<BTreeSet<_>>() {
        state.shards.wake_owner(shard);
    }
    Ok(())
}

/// The digits of a phone number written in any usual notation (`+1 (631)
/// 555-1002`, `1.631.555.1002`); `None` when `input` is not one.
pub fn phone_digits(input: &str) -> Option<String> {
    let trimmed = input.trim();
    let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if input.len() > MAX_INPUT || !rest.chars().all(|c| c.is_ascii_digit() || " -().".contains(c)) {
        return None;
    }
    let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
    (1..=MAX_DIGITS).contains(&digits.len()).then_some(digits)
}

fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX / 4)
}

/// The answer: `{"contacts":[{"input","status","wa_id"}],"meta":{...}}`.
#[derive(Debug, Serialize)]
pub struct CheckContactsResponse {
    /// One entry per input, in request order.
    pub contacts: Vec<ContactView>,
    /// API status and version.
    pub meta: Meta,
}

/// What is known of one input.
#[derive(Debug, Serialize)]
pub struct ContactView {
    /// The input as sent.
    pub input: String,
    /// `valid`, `invalid`, or `processing` while the check runs.
    pub status: &'static str,
    /// The WhatsApp id of a valid input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
}

impl ContactView {
    fn of(input: String, results: &HashMap<String, ContactRow>) -> ContactView {
        match results.get(&input) {
            Some(row) if row.status == ContactStatus::Valid => {
                ContactView { status: row.status.as_str(), wa_id: row.wa_id.clone(), input }
            }
            Some(row) => ContactView { status: row.status.as_str(), wa_id: None, input },
            None if phone_digits(&input).is_none() => {
                ContactView { status: ContactStatus::Invalid.as_str(), wa_id: None, input }
            }
            None => ContactView { status: "processing", wa_id: None, input },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_phone_notations_reduce_to_digits() {
        assert_eq!(phone_digits("+1 (516) 283-7151").as_deref(), Some("15162837151"));
        assert_eq!(phone_digits("1-631-555-1002").as_deref(), Some("16315551002"));
        assert_eq!(phone_digits("+54 9 11 5612-1008").as_deref(), Some("5491156121008"));
        for not_a_number in ["", "+", "call me", "555-CALL", "1234567890123456789012", "+1+2"] {
            assert_eq!(phone_digits(not_a_number), None, "{not_a_number:?}");
        }
    }
}
