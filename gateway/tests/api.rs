//! The REST API end to end: the router on a real TCP listener, over a real
//! SQLite store, driven with an HTTP client.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardgate_core::cluster::Settings;
use shardgate_core::config::{DbConfig, DbEngine};
use shardgate_core::control_auth::ClusterSecretArgs;
use shardgate_core::media_dir::MediaDirArgs;
use shardgate_core::policy::UserRole;
use shardgate_core::routing::default_shard;
use shardgate_core::store::messages::MessageStatus;
use shardgate_core::store::users::UserRecord;
use shardgate_gateway::auth;
use std::time::Duration;

mod support;

use support::*;

async fn closed_port_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

// ---------------------------------------------------------------- login

#[tokio::test]
async fn first_login_without_new_password_is_refused_with_password_change_required() {
    let webapp = Webapp::start().await;
    let (status, code, details) = onprem_error(webapp.login("admin", "secret", None).await).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, 1024));
    assert!(details.contains("new_password"), "{details}");
    // An empty JSON object is no better than no body.
    let (_, code, _) = onprem_error(webapp.login("admin", "secret", Some(json!({}))).await).await;
    assert_eq!(code, 1024);
}

#[tokio::test]
async fn weak_new_password_is_refused_naming_the_broken_rule_and_nothing_changes() {
    let webapp = Webapp::start().await;
    let cases = [
        ("Sh0rt!a", "8 to 64 characters"),
        (&*format!("L0ng!{}", "a".repeat(60)), "8 to 64 characters"),
        ("NoDigits!here", "digit"),
        ("n0upper!case", "upper-case"),
        ("N0LOWER!CASE", "lower-case"),
        ("N0special1here", "special character"),
    ];
    for (weak, rule) in cases {
        let response = webapp.login("admin", "secret", Some(json!({"new_password": weak}))).await;
        let (status, code, details) = onprem_error(response).await;
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, 1009), "{weak}: {details}");
        assert!(details.contains(rule), "{weak}: {details}");
    }
    // The default password still stands, and still must be changed.
    let (_, code, _) = onprem_error(webapp.login("admin", "secret", None).await).await;
    assert_eq!(code, 1024);
}

#[tokio::test]
async fn good_new_password_returns_a_token_valid_for_seven_days() {
    let webapp = Webapp::start().await;
    let response = webapp.login("admin", "secret", Some(json!({"new_password": NEW_PASSWORD}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let user = &body["users"][0];
    let token = user["token"].as_str().unwrap();
    assert_eq!(token.len(), 43, "32 bytes base64url: {token}");
    let expires = user["expires_after"].as_str().unwrap();
    let expected_day = shardgate_gateway::views::utc_timestamp(
        webapp.store.now_ms().await.unwrap() + shardgate_gateway::api::login::TOKEN_LIFETIME_MS,
    );
    assert_eq!(expires.len(), "2024-01-01 00:00:00+00:00".len(), "{expires}");
    assert!(expires.ends_with("+00:00"), "{expires}");
    assert_eq!(expires[..10], expected_day[..10], "{expires} vs {expected_day}");
    // Only the token's hash is stored.
    let owner = webapp.store.token_user(&auth::token_hash(token)).await.unwrap().unwrap();
    assert_eq!(owner.username, "admin");
    assert!(webapp.store.token_user(token).await.unwrap().is_none());
}

#[tokio::test]
async fn after_the_password_change_the_new_password_logs_in_and_the_old_one_fails() {
    let webapp = Webapp::start().await;
    webapp.admin_token().await;
    let response = webapp.login("admin", NEW_PASSWORD, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!token_of(response).await.is_empty());
    let (status, code, _) = onprem_error(webapp.login("admin", "secret", None).await).await;
    assert_eq!((status, code), (StatusCode::UNAUTHORIZED, 1005));
}

#[tokio::test]
async fn bad_basic_credentials_are_refused_with_401() {
    let webapp = Webapp::start().await;
    let no_header = webapp.request(Method::POST, "/v1/users/login").send().await.unwrap();
    let not_basic = webapp.request(Method::POST, "/v1/users/login").bearer_auth("x").send().await.unwrap();
    let garbage = webapp
        .request(Method::POST, "/v1/users/login")
        .header("authorization", "Basic !!!not-base64")
        .send()
        .await
        .unwrap();
    let wrong_password = webapp.login("admin", "Wr0ng!password", None).await;
    let unknown_user = webapp.login("mallory", "secret", None).await;
    for response in [no_header, not_basic, garbage, wrong_password, unknown_user] {
        let (status, code, _) = onprem_error(response).await;
        assert_eq!((status, code), (StatusCode::UNAUTHORIZED, 1005));
    }
}

#[tokio::test]
async fn restarting_webapps_keep_the_changed_admin_password() {
    let webapp = Webapp::start().await;
    webapp.admin_token().await;
    auth::ensure_default_admin(&webapp.store).await.unwrap();
    auth::ensure_default_admin(&webapp.store).await.unwrap();
    assert_eq!(webapp.login("admin", NEW_PASSWORD, None).await.status(), StatusCode::OK);
    assert!(!webapp.store.user("admin").await.unwrap().unwrap().must_change);
}

// ---------------------------------------------------------------- auth layer

#[tokio::test]
async fn every_endpoint_but_login_requires_a_bearer_token() {
    let webapp = Webapp::start().await;
    let routes = [
        (Method::POST, "/v1/messages"),
        (Method::GET, "/v1/health"),
        (Method::GET, "/v1/support"),
        (Method::GET, "/v1/settings/application"),
        (Method::PATCH, "/v1/settings/application"),
        (Method::DELETE, "/v1/settings/application"),
        (Method::POST, "/v1/users"),
        (Method::GET, "/v1/users/admin"),
        (Method::PUT, "/v1/users/admin"),
        (Method::DELETE, "/v1/users/admin"),
    ];
    for (method, path) in routes {
        let anonymous = webapp.request(method.clone(), path).send().await.unwrap();
        let (status, code, _) = onprem_error(anonymous).await;
        assert_eq!((status, code), (StatusCode::UNAUTHORIZED, 1005), "{method} {path}");
        let forged = webapp.request(method.clone(), path).bearer_auth(auth::new_token()).send().await.unwrap();
        let (status, code, _) = onprem_error(forged).await;
        assert_eq!((status, code), (StatusCode::UNAUTHORIZED, 1005), "{method} {path}");
    }
    let token = webapp.admin_token().await;
    let response = webapp.request(Method::GET, "/v1/health").bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn apikey_is_accepted_on_health_and_refused_on_messages_and_settings() {
    let webapp = Webapp::start().await;
    let apikey = format!("Apikey {API_KEY}");
    let health = webapp.request(Method::GET, "/v1/health").header("authorization", &apikey).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let wrong_key =
        webapp.request(Method::GET, "/v1/health").header("authorization", "Apikey nope").send().await.unwrap();
    assert_eq!(onprem_error(wrong_key).await.0, StatusCode::UNAUTHORIZED);
    let message = webapp
        .request(Method::POST, "/v1/messages")
        .header("authorization", &apikey)
        .json(&text_message("15551234567", "hi"))
        .send()
        .await
        .unwrap();
    let (status, code, details) = onprem_error(message).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, 1005));
    // The authorizer's reason says where the API key is accepted.
    assert!(details.contains("Apikey") && details.contains("/v1/health"), "{details}");
    let settings = webapp
        .request(Method::PATCH, "/v1/settings/application")
        .header("authorization", &apikey)
        .json(&json!({"heartbeat_interval": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(onprem_error(settings).await.0, StatusCode::FORBIDDEN);
    assert_eq!(webapp.store.settings_version().await.unwrap(), 0);
    assert!(webapp.pending_ids().await.is_empty());
}

#[tokio::test]
async fn token_of_a_user_whose_password_must_change_only_allows_login() {
    let webapp = Webapp::start().await;
    let user = UserRecord {
        username: "bob".into(),
        password_hash: auth::hash_password("secret").await.unwrap(),
        role: "admin".into(),
        must_change: true,
    };
    webapp.store.ensure_user(&user).await.unwrap();
    let token = auth::new_token();
    let far = webapp.store.now_ms().await.unwrap() + 3_600_000;
    webapp.store.insert_token(&auth::token_hash(&token), "bob", &user.password_hash, far).await.unwrap();
    let response = webapp.request(Method::GET, "/v1/health").bearer_auth(&token).send().await.unwrap();
    let (status, code, _) = onprem_error(response).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, 1024));
}

// ---------------------------------------------------------------- messages

#[tokio::test]
async fn posted_message_is_in_its_shard_outbox_when_the_id_is_returned() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let response = webapp.post_message(&token, &text_message("+15551234567", "hello")).await;
    assert!(response.status().is_success(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    let id = body["messages"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(body["meta"], json!({"api_status": "stable", "version": shardgate_core::VERSION}));
    let shard = default_shard("15551234567", SHARDS);
    let pending = webapp.store.pending_messages(shard, 100).await.unwrap();
    let stored = pending.iter().find(|m| m.id == id).expect("the acknowledged message is stored");
    // The body is the message object the coreapp sends upstream (it was the
    // bare text before every message type was supported).
    assert_eq!(
        (stored.recipient.as_str(), stored.body.as_str()),
        ("15551234567", r#"{"type":"text","text":{"body":"hello"},"preview_url":false}"#)
    );
    // A second message gets another id.
    let again: Value = webapp.post_message(&token, &text_message("15551234567", "x")).await.json().await.unwrap();
    assert_ne!(again["messages"][0]["id"], body["messages"][0]["id"]);
}

#[tokio::test]
async fn invalid_messages_get_onprem_errors_store_nothing_and_the_node_keeps_serving() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let kept: Value = webapp.post_message(&token, &text_message("15550001", "kept")).await.json().await.unwrap();
    let kept_id = kept["messages"][0]["id"].as_str().unwrap().to_string();

    let long_body = "a".repeat(4097);
    let json_cases: Vec<(&str, Value, u64)> = vec![
        ("missing to", json!({"type": "text", "text": {"body": "hi"}}), 1008),
        ("non-digit to", text_message("555-CALL-ME", "hi"), 1009),
        ("empty body", text_message("15551234567", ""), 1009),
        ("missing text", json!({"to": "15551234567", "type": "text"}), 1008),
        ("4097-char body", text_message("15551234567", &long_body), 1001),
        ("unknown field", json!({"to": "15551234567", "text": {"body": "hi"}, "priority": "high"}), 1010),
        ("unknown text field", json!({"to": "15551234567", "text": {"body": "hi", "bold": true}}), 1010),
        ("ill-formed media id", json!({"to": "15551234567", "type": "image", "image": {"id": "1"}}), 1009),
        ("unknown type", json!({"to": "15551234567", "type": "hologram"}), 1009),
        ("to as a number", json!({"to": 15551234567u64, "text": {"body": "hi"}}), 1009),
    ];
    for (case, body, expected) in json_cases {
        let (status, code, details) = onprem_error(webapp.post_message(&token, &body).await).await;
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, expected), "{case}: {details}");
    }
    let raw_cases: Vec<(&str, &str, Vec<u8>, StatusCode)> = vec![
        ("malformed JSON", "application/json", b"{\"to\": \"1555\", ".to_vec(), StatusCode::BAD_REQUEST),
        (
            "wrong content type",
            "text/plain",
            br#"{"to":"1555","text":{"body":"hi"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        ("empty body", "application/json", Vec::new(), StatusCode::BAD_REQUEST),
        (
            "oversized body",
            "application/json",
            format!(r#"{{"to":"1555","text":{{"body":"{}"}}}}"#, "a".repeat(200 * 1024)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (case, content_type, body, expected_status) in raw_cases {
        let response = webapp
            .request(Method::POST, "/v1/messages")
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, code, details) = onprem_error(response).await;
        assert_eq!(status, expected_status, "{case}: {details}");
        assert!([1008, 1025].contains(&code), "{case}: {code} {details}");
    }
    assert_eq!(webapp.pending_ids().await, vec![kept_id.clone()], "only the valid message is stored");
    let after = webapp.post_message(&token, &text_message("15550002", "still serving")).await;
    assert!(after.status().is_success());
    assert!(webapp.pending_ids().await.contains(&kept_id));
}

#[tokio::test]
async fn database_failure_answers_a_database_error_and_the_node_recovers() {
    use sqlx::Connection;
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let kept: Value = webapp.post_message(&token, &text_message("15550001", "kept")).await.json().await.unwrap();
    let url = format!("sqlite://{}", webapp.dir.join("shardgate.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE messages RENAME TO messages_away").execute(&mut db).await.unwrap();
    let (status, code, details) =
        onprem_error(webapp.post_message(&token, &text_message("15550003", "lost?")).await).await;
    assert_eq!((status, code), (StatusCode::INTERNAL_SERVER_ERROR, 1023), "{details}");
    assert!(!details.contains("messages"), "database internals stay in the log: {details}");
    sqlx::query("ALTER TABLE messages_away RENAME TO messages").execute(&mut db).await.unwrap();
    let after = webapp.post_message(&token, &text_message("15550004", "back")).await;
    assert!(after.status().is_success(), "{}", after.status());
    let ids = webapp.pending_ids().await;
    assert_eq!(ids.len(), 2, "the refused message left nothing behind: {ids:?}");
    assert!(ids.contains(&kept["messages"][0]["id"].as_str().unwrap().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_are_each_answered_only_once_stored() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let sends = (0..200).map(|i| {
        let (webapp, token) = (&webapp, &token);
        async move {
            let response = webapp.post_message(token, &text_message(&format!("1555000{:03}", i % 20), "burst")).await;
            assert!(response.status().is_success(), "{}", response.status());
            let body: Value = response.json().await.unwrap();
            let id = body["messages"][0]["id"].as_str().unwrap().to_string();
            // Answered means committed: the row is there the moment the id is.
            assert_eq!(webapp.store.message_status(&id).await.unwrap(), Some(MessageStatus::Queued));
            id
        }
    });
    let ids: Vec<String> = futures::future::join_all(sends).await;
    let mut stored = webapp.pending_ids().await;
    stored.sort();
    let mut answered = ids.clone();
    answered.sort();
    assert_eq!(stored, answered, "every answered message is stored, once");
}

#[tokio::test]
async fn a_message_routed_over_a_changed_shard_count_is_refused_and_not_stored() {
    use sqlx::Connection;
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    // Routed once: the webapp now holds the shard count for a second.
    assert!(webapp.post_message(&token, &text_message("15550001", "before")).await.status().is_success());
    let url = format!("sqlite://{}", webapp.dir.join("shardgate.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE cluster SET shards = 4").execute(&mut db).await.unwrap();
    let (status, code, details) =
        onprem_error(webapp.post_message(&token, &text_message("15550002", "stale")).await).await;
    assert_eq!((status, code), (StatusCode::SERVICE_UNAVAILABLE, 1011), "{details}");
    assert!(details.contains("shard count changed"), "{details}");
    assert_eq!(webapp.pending_ids().await.len(), 1, "the refused message left nothing behind");
    // Within a second the webapp routes over the new count again.
    let started = std::time::Instant::now();
    loop {
        let response = webapp.post_message(&token, &text_message("15550003", "after")).await;
        if response.status().is_success() {
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(3), "still refused after 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stored_message_wakes_the_shard_owner() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let (addr, wakes) = fake_control_api(coreapp_status("core-a")).await;
    webapp.store.register_node(&node_record("core-a", "coreapp", &addr)).await.unwrap();
    let auth = webapp.store.try_acquire_master_lease("master-test", Duration::from_secs(30)).await.unwrap().unwrap();
    let recipient = (0..100).map(|n| format!("1555000{n:04}")).find(|r| default_shard(r, SHARDS) == 1).unwrap();
    let row = webapp.store.shard_map().await.unwrap().rows[1].clone();
    assert!(webapp.store.reassign_shard(1, row.version, "core-a", 0, &auth).await.unwrap());
    let response = webapp.post_message(&token, &text_message(&recipient, "wake up")).await;
    assert!(response.status().is_success());
    for _ in 0..50 {
        if !wakes.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(wakes.lock().unwrap().first(), Some(&1), "the owner of shard 1 was woken");
}

// ---------------------------------------------------------------- settings

#[tokio::test]
async fn settings_patch_round_trips_and_delete_restores_the_defaults() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let get = || webapp.request(Method::GET, "/v1/settings/application").bearer_auth(&token).send();
    let initial: Value = get().await.unwrap().json().await.unwrap();
    assert_eq!(initial["settings"]["application"], serde_json::to_value(Settings::default()).unwrap());

    let patched = webapp
        .request(Method::PATCH, "/v1/settings/application")
        .bearer_auth(&token)
        .json(&json!({"heartbeat_interval": 1.5, "unhealthy_interval": 25}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let read: Value = get().await.unwrap().json().await.unwrap();
    assert_eq!(read["settings"]["application"]["heartbeat_interval"], json!(1.5));
    assert_eq!(read["settings"]["application"]["unhealthy_interval"], json!(25.0));
    assert_eq!(read["settings"]["application"]["db_update_interval"], json!(60.0));
    // What every node's LiveSettings will load.
    let (version, doc) = webapp.store.settings_doc().await.unwrap().unwrap();
    assert_eq!(version, 1);
    let stored = Settings::from_stored(&doc).unwrap();
    assert_eq!((stored.heartbeat_interval, stored.unhealthy_interval), (1.5, 25.0));

    // A second patch keeps the first one's fields.
    webapp
        .request(Method::PATCH, "/v1/settings/application")
        .bearer_auth(&token)
        .json(&json!({"db_update_interval": 10}))
        .send()
        .await
        .unwrap();
    let stored = Settings::from_stored(&webapp.store.settings_doc().await.unwrap().unwrap().1).unwrap();
    assert_eq!((stored.heartbeat_interval, stored.db_update_interval), (1.5, 10.0));

    let reset = webapp.request(Method::DELETE, "/v1/settings/application").bearer_auth(&token).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    let read: Value = get().await.unwrap().json().await.unwrap();
    assert_eq!(read["settings"]["application"], serde_json::to_value(Settings::default()).unwrap());
    assert_eq!(webapp.store.settings_version().await.unwrap(), 3);
}

#[tokio::test]
async fn refused_unhealthy_interval_returns_the_reason_and_changes_nothing() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let patch =
        |body: Value| webapp.request(Method::PATCH, "/v1/settings/application").bearer_auth(&token).json(&body).send();
    // Twice the heartbeat, but shorter than the upstream session timeout allows.
    let (status, code, details) = onprem_error(patch(json!({"unhealthy_interval": 15})).await.unwrap()).await;
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, 1009));
    assert!(details.starts_with("unhealthy_interval"), "{details}");
    assert!(details.contains("session_timeout") && details.contains("second session"), "{details}");

    let (_, code, details) = onprem_error(patch(json!({"heartbeat_interval": 5, "gossip": 1})).await.unwrap()).await;
    assert_eq!(code, 1010, "{details}");
    assert!(details.contains("gossip"), "{details}");
    let (_, code, _) = onprem_error(patch(json!({"heartbeat_interval": "5s"})).await.unwrap()).await;
    assert_eq!(code, 1009);
    assert_eq!(webapp.store.settings_version().await.unwrap(), 0, "nothing was written");
}

#[tokio::test]
async fn the_api_can_raise_the_upstream_session_timeout_but_never_lower_it() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let settings = |method: Method, body: Value| {
        webapp.request(method, "/v1/settings/application").bearer_auth(&token).json(&body).send()
    };
    // Lowering below the default in force (10 s), even with intervals that would fit it.
    let lower = json!({"upstream_session_timeout": 0.01, "heartbeat_interval": 0.05, "unhealthy_interval": 0.2});
    let (status, code, details) = onprem_error(settings(Method::PATCH, lower).await.unwrap()).await;
    assert_eq!((status, code), (StatusCode::BAD_REQUEST, 1009));
    assert!(details.starts_with("upstream_session_timeout") && details.contains("only be raised"), "{details}");
    assert_eq!(webapp.store.settings_version().await.unwrap(), 0, "nothing was written");

    let raised = settings(Method::PATCH, json!({"upstream_session_timeout": 12, "unhealthy_interval": 40})).await;
    assert_eq!(raised.unwrap().status(), StatusCode::OK);
    let back = settings(Method::PATCH, json!({"upstream_session_timeout": 11})).await.unwrap();
    assert_eq!(onprem_error(back).await.1, 1009, "not even back to a value that was once in force");

    let reset: Value = settings(Method::DELETE, json!({})).await.unwrap().json().await.unwrap();
    let application = &reset["settings"]["application"];
    assert_eq!(application["upstream_session_timeout"], 12.0, "a reset keeps the network's value: {reset}");
    assert_eq!(application["unhealthy_interval"], 30.0, "and resets the rest");
}

#[tokio::test]
async fn unreadable_stored_settings_are_reported_and_delete_repairs_them() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    webapp.store.write_settings(0, "{not json").await.unwrap();
    let settings = |method: Method| {
        webapp
            .request(method, "/v1/settings/application")
            .bearer_auth(&token)
            .json(&json!({"heartbeat_interval": 1.0}))
            .send()
    };
    let (status, code, details) = onprem_error(settings(Method::GET).await.unwrap()).await;
    assert_eq!((status, code), (StatusCode::INTERNAL_SERVER_ERROR, 1014));
    assert!(details.contains("DELETE"), "{details}");
    let (_, code, _) = onprem_error(settings(Method::PATCH).await.unwrap()).await;
    assert_eq!(code, 1014, "a patch never builds on a document it cannot read");
    assert_eq!(settings(Method::DELETE).await.unwrap().status(), StatusCode::OK);
    assert_eq!(settings(Method::GET).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn user_role_cannot_read_or_change_settings() {
    let webapp = Webapp::start().await;
    auth::create_user(&webapp.store, "carol", NEW_PASSWORD, UserRole::User).await.unwrap();
    let token = token_of(webapp.login("carol", NEW_PASSWORD, None).await).await;
    let patch = webapp
        .request(Method::PATCH, "/v1/settings/application")
        .bearer_auth(&token)
        .json(&json!({"heartbeat_interval": 1.0}))
        .send()
        .await
        .unwrap();
    let (status, code, details) = onprem_error(patch).await;
    assert_eq!((status, code), (StatusCode::FORBIDDEN, 1005));
    assert!(details.contains("admin"), "{details}");
    let get = webapp.request(Method::GET, "/v1/settings/application").bearer_auth(&token).send().await.unwrap();
    assert_eq!(onprem_error(get).await.0, StatusCode::FORBIDDEN);
    assert_eq!(webapp.store.settings_version().await.unwrap(), 0);
    // The user role may still send messages.
    assert!(webapp.post_message(&token, &text_message("15551234567", "hi")).await.status().is_success());
}

// ---------------------------------------------------------------- cluster view

#[tokio::test]
async fn health_lists_a_node_whose_control_port_refuses_as_gone() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let (live_addr, _) = fake_control_api(coreapp_status("core-a")).await;
    let dead_addr = closed_port_addr().await;
    webapp.store.register_node(&node_record("core-a", "coreapp", &live_addr)).await.unwrap();
    webapp.store.register_node(&node_record("master-b", "master", &dead_addr)).await.unwrap();
    webapp.store.register_node(&node_record("webapp-x", "webapp", "127.0.0.1:1")).await.unwrap();

    let response = webapp.request(Method::GET, "/v1/health").bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["health"],
        json!({
            live_addr: {"gateway_status": "connected", "role": "coreapp"},
            dead_addr: {"gateway_status": "gone", "role": "master"},
        })
    );
    assert_eq!(body["meta"]["api_status"], "stable");
}

#[tokio::test]
async fn support_reports_each_node_as_it_answers_and_a_down_node_as_unreachable() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let (live_addr, _) = fake_control_api(coreapp_status("core-a")).await;
    let dead_addr = closed_port_addr().await;
    webapp.store.register_node(&node_record("core-a", "coreapp", &live_addr)).await.unwrap();
    webapp.store.register_node(&node_record("master-b", "master", &dead_addr)).await.unwrap();

    let body: Value =
        webapp.request(Method::GET, "/v1/support").bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let nodes = body["support"]["nodes"].as_array().unwrap();
    let node = |id: &str| nodes.iter().find(|n| n["node_id"] == id).unwrap_or_else(|| panic!("{id} in {body}"));
    let live = node("core-a");
    assert_eq!(live["reachable"], true);
    assert_eq!(live["address"], live_addr.as_str());
    assert_eq!(
        live["shards"],
        json!([{"shard": 1, "epoch": 3, "session_open": true, "session_down_ms": 0, "frames_skipped": 0}])
    );
    assert_eq!((live["version"].as_str(), live["pid"].as_i64()), (Some("9.9.9"), Some(4242)));
    assert_eq!(live["image_version"], "9.9.9-1", "the image tag the node reports: {live}");
    assert_eq!(live["settings_version"], 7);
    let dead = node("master-b");
    assert_eq!(dead["reachable"], false);
    assert_eq!(dead["role"], "master");
    assert!(dead["error"].as_str().unwrap().contains("refused"), "{dead}");
    assert_eq!(body["support"]["webapp"]["node_id"], "webapp-test");
    assert_eq!(body["support"]["webapp"]["pid"], std::process::id());
}

// ---------------------------------------------------------------- routes

#[tokio::test]
async fn unknown_route_and_wrong_method_get_onprem_errors() {
    let webapp = Webapp::start().await;
    let (status, code, details) =
        onprem_error(webapp.request(Method::GET, "/v1/nothing-here").send().await.unwrap()).await;
    assert_eq!((status, code), (StatusCode::NOT_FOUND, 1006));
    assert!(details.contains("/v1/nothing-here"), "{details}");
    let token = webapp.admin_token().await;
    let wrong = webapp.request(Method::PUT, "/v1/messages").bearer_auth(&token).send().await.unwrap();
    let allow = wrong.headers()["allow"].to_str().unwrap().to_string();
    let (status, code, details) = onprem_error(wrong).await;
    assert_eq!((status, code), (StatusCode::METHOD_NOT_ALLOWED, 1025));
    assert!(allow.contains("POST"), "{allow}");
    assert!(details.contains("PUT") && details.contains("Allow"), "{details}");
}

// ---------------------------------------------------------------- start-up

#[tokio::test]
async fn webapp_on_port_0_registers_its_actual_address_and_serves_there() {
    let prepared = Webapp::start().await;
    let config = shardgate_gateway::WebappConfig {
        db: DbConfig {
            engine: DbEngine::Sqlite,
            hostname: String::new(),
            port: None,
            username: None,
            password: None,
            name_prefix: String::new(),
            idle_timeout_ms: 60_000,
            data_dir: prepared.dir.clone(),
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        media: MediaDirArgs::default(),
        api_key: None,
        node_id: Some("webapp-started".into()),
        cluster: ClusterSecretArgs { cluster_secret: Some(test_secret().expose().to_string()) },
        connections: Default::default(),
        login: Default::default(),
    };
    let running = tokio::spawn(shardgate_gateway::run(config));
    let mut api_addr = None;
    for _ in 0..100 {
        let (_, nodes) = prepared.store.nodes().await.unwrap();
        if let Some(node) = nodes.iter().find(|n| n.node_id == "webapp-started") {
            api_addr = Some(node.control_addr.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api_addr = api_addr.expect("the webapp registered itself");
    assert!(!api_addr.ends_with(":0"), "{api_addr}");
    // Registration precedes serving by a moment: retry until it answers.
    let mut answer = None;
    for _ in 0..100 {
        let login = prepared
            .http
            .post(format!("http://{api_addr}/v1/users/login"))
            .basic_auth("admin", Some("secret"))
            .send()
            .await;
        if let Ok(response) = login {
            answer = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, code, _) = onprem_error(answer.expect("the webapp answers at its registered address")).await;
    assert_eq!(code, 1024, "the default admin exists and must change its password");
    running.abort();
}
