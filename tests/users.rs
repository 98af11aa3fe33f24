//! The on-prem user endpoints against a cluster of real processes (issue 12,
//! item 1): `POST /v1/users`, `GET`/`PUT`/`DELETE /v1/users/{username}` and
//! `POST /v1/users/logout`; the role rules (an admin manages users, a user
//! reaches only itself, the built-in admin stays); bad input answered with
//! on-prem errors, never a 5xx; and a password change or a deletion ending
//! the user's tokens at once on the webapp that made it and within the token
//! cache's second on another webapp.

mod harness;

use harness::{api_call, start, wait_for, Cluster, ClusterSpec, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use shardgate_core::config::DbEngine;
use shardgate_gateway::token_cache::TOKEN_CACHE_TTL;
use std::time::Duration;
use tokio::time::Instant;

const ANA_PASSWORD: &str = "An4-first!pass";
const ANA_SECOND: &str = "An4-second!pass";
const ANA_THIRD: &str = "An4-third!pass";
const BOB_PASSWORD: &str = "B0b-only!pass";

/// How long past the cache's second a revoked token may still be seen
/// working on another webapp: one request's time on a loaded two-core machine.
const REQUEST_SLACK: Duration = Duration::from_millis(1000);

/// A login with Basic credentials: the status and, on success, the token.
async fn login(cluster: &Cluster, api: &str, user: &str, password: &str) -> (u16, Option<String>) {
    let response = cluster
        .http
        .post(format!("{api}/v1/users/login"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("login reachable");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["users"][0]["token"].as_str().map(str::to_string))
}

/// A login that must succeed; the token.
async fn token(cluster: &Cluster, api: &str, user: &str, password: &str) -> String {
    match login(cluster, api, user, password).await {
        (200, Some(token)) => token,
        other => panic!("login of {user} at {api}: {other:?}"),
    }
}

/// A request with `token` to `api`.
async fn call(
    cluster: &Cluster,
    api: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api_call(&cluster.http, api, token, method, path, body).await
}

/// The on-prem error code of an answer, asserting it is one.
fn code(status: u16, body: &Value) -> i64 {
    let code = body["errors"][0]["code"].as_i64();
    assert!(code.is_some() && body["errors"][0]["title"].is_string(), "{status}: not an on-prem error: {body}");
    code.unwrap()
}

/// Asserts an answer is the on-prem error `(status, code)`.
fn assert_error(answer: (u16, Value), status: u16, expected: i64, what: &str) {
    let (got, body) = answer;
    assert_eq!((got, code(got, &body)), (status, expected), "{what}: {body}");
}

/// Whether `token` still authenticates at `api` (its user reading itself).
/// A 404 counts as accepted: a webapp that still trusts a deleted user's
/// token from its cache lets the read through, and finds no user.
async fn token_works(cluster: &Cluster, api: &str, token: &str, user: &str) -> bool {
    let (status, body) = call(cluster, api, token, Method::GET, &format!("/v1/users/{user}"), None).await;
    match status {
        200 | 404 => true,
        401 => false,
        other => panic!("GET /v1/users/{user} answered {other}: {body}"),
    }
}

/// Waits until `token` stops working at the other webapp `api`, and asserts
/// it took no longer than the token cache's second (plus one request's time)
/// from `revoked_at`.
async fn stops_within_cache_ttl(cluster: &Cluster, api: &str, token: &str, user: &str, revoked_at: Instant) {
    let bound = TOKEN_CACHE_TTL + REQUEST_SLACK;
    let took = wait_for(&format!("{user}'s revoked token to stop at {api}"), bound, || async {
        (!token_works(cluster, api, token, user).await).then(|| revoked_at.elapsed())
    })
    .await;
    eprintln!("{user}'s revoked token refused at the other webapp {took:?} after the revocation");
}

async fn user_endpoints(engine: DbEngine) {
    // Users need webapps and the schema only: one master, one coreapp.
    let Some(cluster) = start(ClusterSpec { masters: 1, coreapps: 1, ..ClusterSpec::fast(engine) }).await else {
        return;
    };
    let (_webapp_2, other) = cluster.start_webapp("webapp-2").await;
    let api = cluster.api.clone();
    let admin = cluster.token.clone();

    // --- Create, and the bad inputs of create.
    let created = call(
        &cluster,
        &api,
        &admin,
        Method::POST,
        "/v1/users",
        Some(json!({"username": "ana", "password": ANA_PASSWORD})),
    )
    .await;
    assert_eq!(created, (201, json!({"users": [{"username": "ana"}]})));
    let again = json!({"username": "ana", "password": ANA_PASSWORD});
    assert_error(call(&cluster, &api, &admin, Method::POST, "/v1/users", Some(again)).await, 409, 1000, "a taken name");
    let bad_bodies = [
        (json!({"username": "bob", "password": "password"}), 1009, "a weak password"),
        (json!({"username": "Bob", "password": BOB_PASSWORD}), 1009, "an upper-case name"),
        (json!({"username": "logout", "password": BOB_PASSWORD}), 1009, "another endpoint's path"),
        (json!({"username": "b\u{0}b", "password": BOB_PASSWORD}), 1009, "a NUL in the name"),
        (json!({"username": "bob"}), 1008, "no password"),
        (json!({"username": 7, "password": BOB_PASSWORD}), 1009, "a number for a name"),
        (json!({"username": "bob", "password": BOB_PASSWORD, "role": "ADMIN"}), 1010, "a role"),
        (json!(["bob"]), 1009, "not an object"),
    ];
    for (body, expected, what) in bad_bodies {
        assert_error(call(&cluster, &api, &admin, Method::POST, "/v1/users", Some(body)).await, 400, expected, what);
    }
    let not_json = cluster
        .http
        .post(format!("{api}/v1/users"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"username\":")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    assert_eq!(code(400, &not_json.json().await.unwrap()), 1025, "malformed JSON");
    let huge = json!({"username": "bob", "password": "x".repeat(100 * 1024)});
    assert_error(call(&cluster, &api, &admin, Method::POST, "/v1/users", Some(huge)).await, 413, 1025, "a huge body");
    assert_eq!(cluster.store.user("bob").await.unwrap(), None, "no refused create stored anything");

    // --- Read: an admin reads anyone, a user only itself.
    let (status, body) = call(&cluster, &api, &admin, Method::GET, "/v1/users/admin", None).await;
    assert_eq!((status, body), (200, json!({"users": [{"ROLES": "ROLE_ADMIN", "username": "admin"}]})));
    let ana = token(&cluster, &api, "ana", ANA_PASSWORD).await;
    let (status, body) = call(&cluster, &api, &ana, Method::GET, "/v1/users/ana", None).await;
    assert_eq!((status, body), (200, json!({"users": [{"ROLES": "ROLE_USER", "username": "ana"}]})));
    assert_eq!(call(&cluster, &api, &admin, Method::GET, "/v1/users/ana", None).await.0, 200);
    assert_error(
        call(&cluster, &api, &admin, Method::GET, "/v1/users/nobody", None).await,
        404,
        1006,
        "an unknown user",
    );
    assert_error(call(&cluster, &api, &admin, Method::GET, "/v1/users/ADMIN", None).await, 404, 1006, "another case");
    assert_error(call(&cluster, &api, &admin, Method::GET, "/v1/users/a%00b", None).await, 404, 1006, "a NUL");

    // --- What a user may not do: anything to another user, or create users.
    let bob_body = json!({"username": "bob", "password": BOB_PASSWORD});
    assert_error(
        call(&cluster, &api, &ana, Method::POST, "/v1/users", Some(bob_body.clone())).await,
        403,
        1005,
        "a user creating",
    );
    assert_error(
        call(&cluster, &api, &ana, Method::GET, "/v1/users/admin", None).await,
        403,
        1005,
        "a user reading admin",
    );
    assert_error(
        call(&cluster, &api, &ana, Method::GET, "/v1/users/nobody", None).await,
        403,
        1005,
        "whether it exists or not",
    );
    let takeover = json!({"password": ANA_PASSWORD});
    assert_error(
        call(&cluster, &api, &ana, Method::PUT, "/v1/users/admin", Some(takeover)).await,
        403,
        1005,
        "a user changing admin",
    );
    assert_error(
        call(&cluster, &api, &ana, Method::DELETE, "/v1/users/admin", None).await,
        403,
        1005,
        "a user deleting admin",
    );
    assert_error(
        call(&cluster, &api, &ana, Method::DELETE, "/v1/users/ana", None).await,
        403,
        1005,
        "a user deleting itself",
    );
    assert_error(
        call(&cluster, &api, &admin, Method::DELETE, "/v1/users/admin", None).await,
        403,
        1005,
        "deleting the admin",
    );
    assert_eq!(token(&cluster, &api, "admin", ADMIN_PASSWORD).await.len(), 43, "the admin is intact");
    assert_eq!(cluster.store.user("bob").await.unwrap(), None, "the user created nobody");

    // --- Update: bad inputs change nothing.
    let bad_updates = [
        (json!({"password": "short1!"}), 400, 1009, "a weak password"),
        (json!({}), 400, 1008, "no password"),
        (json!({"password": ANA_SECOND, "role": "ROLE_ADMIN"}), 400, 1010, "a role"),
        (json!({"password": 12345678}), 400, 1009, "a number"),
    ];
    for (body, status, expected, what) in bad_updates {
        assert_error(
            call(&cluster, &api, &admin, Method::PUT, "/v1/users/ana", Some(body)).await,
            status,
            expected,
            what,
        );
    }
    let unknown = json!({"password": ANA_SECOND});
    assert_error(
        call(&cluster, &api, &admin, Method::PUT, "/v1/users/nobody", Some(unknown)).await,
        404,
        1006,
        "an unknown user",
    );
    assert!(token_works(&cluster, &api, &ana, "ana").await, "a refused update revokes nothing");

    // --- An admin's password change ends every token of the user: here at
    // once, on the other webapp within the cache's second.
    let ana_other = token(&cluster, &other, "ana", ANA_PASSWORD).await;
    assert!(token_works(&cluster, &other, &ana_other, "ana").await, "cached at the other webapp");
    assert!(token_works(&cluster, &api, &ana, "ana").await, "and cached here");
    let (status, body) =
        call(&cluster, &api, &admin, Method::PUT, "/v1/users/ana", Some(json!({"password": ANA_SECOND}))).await;
    let changed_at = Instant::now();
    assert_eq!((status, body), (200, json!({"users": [{"username": "ana"}]})));
    assert!(!token_works(&cluster, &api, &ana, "ana").await, "revoked at once on the webapp that changed it");
    stops_within_cache_ttl(&cluster, &other, &ana_other, "ana", changed_at).await;
    assert_eq!(login(&cluster, &api, "ana", ANA_PASSWORD).await.0, 401, "the old password");

    // --- A user changes its own password; its own token goes too.
    let ana = token(&cluster, &api, "ana", ANA_SECOND).await;
    let weak = json!({"password": "alllowercase"});
    assert_error(
        call(&cluster, &api, &ana, Method::PUT, "/v1/users/ana", Some(weak)).await,
        400,
        1009,
        "a weak password",
    );
    let (status, _) =
        call(&cluster, &api, &ana, Method::PUT, "/v1/users/ana", Some(json!({"password": ANA_THIRD}))).await;
    assert_eq!(status, 200);
    assert!(!token_works(&cluster, &api, &ana, "ana").await, "the token it changed it with");
    assert_eq!(login(&cluster, &api, "ana", ANA_SECOND).await.0, 401);

    // --- Logout ends the one token it carries.
    let ana = token(&cluster, &api, "ana", ANA_THIRD).await;
    let ana_kept = token(&cluster, &api, "ana", ANA_THIRD).await;
    let (status, body) = call(&cluster, &api, &ana, Method::POST, "/v1/users/logout", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["meta"].is_object(), "{body}");
    assert!(!token_works(&cluster, &api, &ana, "ana").await, "the logged-out token");
    assert!(token_works(&cluster, &api, &ana_kept, "ana").await, "the user's other token");

    // --- Delete: the user and its tokens, here at once, there within the second.
    let ana_other = token(&cluster, &other, "ana", ANA_THIRD).await;
    assert!(token_works(&cluster, &other, &ana_other, "ana").await, "cached at the other webapp");
    assert!(token_works(&cluster, &api, &ana_kept, "ana").await, "and cached here");
    let (status, body) = call(&cluster, &api, &admin, Method::DELETE, "/v1/users/ana", None).await;
    let deleted_at = Instant::now();
    assert_eq!((status, body), (200, json!({"users": [{"username": "ana"}]})));
    assert!(!token_works(&cluster, &api, &ana_kept, "ana").await, "revoked at once on the webapp that deleted it");
    stops_within_cache_ttl(&cluster, &other, &ana_other, "ana", deleted_at).await;
    assert_error(call(&cluster, &api, &admin, Method::GET, "/v1/users/ana", None).await, 404, 1006, "a deleted user");
    assert_error(call(&cluster, &api, &admin, Method::DELETE, "/v1/users/ana", None).await, 404, 1006, "deleted twice");
    assert_eq!(login(&cluster, &api, "ana", ANA_THIRD).await.0, 401, "a deleted user's login");

    // The name is free again, and the new ana is a new user.
    let recreated = json!({"username": "ana", "password": BOB_PASSWORD});
    assert_eq!(call(&cluster, &other, &admin, Method::POST, "/v1/users", Some(recreated)).await.0, 201);
    assert!(!token_works(&cluster, &other, &ana_other, "ana").await, "an old token does not come back with the name");
    assert_eq!(login(&cluster, &other, "ana", BOB_PASSWORD).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_user_endpoints_keep_roles_and_revoke_tokens_on_every_webapp() {
    user_endpoints(DbEngine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_user_endpoints_keep_roles_and_revoke_tokens_on_every_webapp() {
    user_endpoints(DbEngine::MySql).await;
}
