//! `/v1/media` end to end over SQLite and a media directory: uploads round
//! trip with their type and digest, hostile ids name nothing, and an upload
//! over 64 MiB is refused in the on-prem format without leaving a file.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use shardgate_core::digest::sha256_hex;
use support::raw_http::{body_of, raw_upload, Framing};
use support::*;

const MEDIA_LIMIT: u64 = 64 << 20;

async fn upload(webapp: &Webapp, token: &str, content_type: &str, bytes: &[u8]) -> reqwest::Response {
    webapp
        .request(Method::POST, "/v1/media")
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

fn files_in(webapp: &Webapp) -> Vec<String> {
    std::fs::read_dir(webapp.media_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn uploaded_media_download_with_type_and_digest_and_delete() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let response = upload(&webapp, &token, "audio/ogg; codecs=opus", &bytes).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let id = body["media"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(body["meta"]["api_status"], "stable");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let record = webapp.store.media(&id).await.unwrap().expect("recorded");
    assert_eq!((record.sha256.as_str(), record.size), (sha256_hex(&bytes).as_str(), bytes.len() as i64));
    assert_eq!(files_in(&webapp), vec![id.clone()]);

    let download = webapp.request(Method::GET, &format!("/v1/media/{id}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "audio/ogg; codecs=opus");
    assert_eq!(download.headers()["content-length"], bytes.len().to_string().as_str());
    assert_eq!(download.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let deleted = webapp.request(Method::DELETE, &format!("/v1/media/{id}")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"meta": {"api_status": "stable", "version": shardgate_core::VERSION}})
    );
    assert!(files_in(&webapp).is_empty());
    assert!(webapp.store.media(&id).await.unwrap().is_none());
    for method in [Method::GET, Method::DELETE] {
        let gone = webapp.request(method.clone(), &format!("/v1/media/{id}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(onprem_error(gone).await.1, 1006, "{method} after delete");
    }
}

#[tokio::test]
async fn an_uploaded_medium_can_be_sent_by_id_through_any_message() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let body: Value = upload(&webapp, &token, "image/jpeg", b"\xff\xd8\xff").await.json().await.unwrap();
    let id = body["media"][0]["id"].as_str().unwrap();
    let message = json!({"to": "15551234567", "type": "image", "image": {"id": id, "caption": "ours"}});
    assert_eq!(webapp.post_message(&token, &message).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn hostile_or_unknown_ids_name_no_medium() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    // A file outside the media directory that a traversal would reach.
    std::fs::write(webapp.dir.join("secret"), b"secret").unwrap();
    let paths = [
        "/v1/media/../secret",
        "/v1/media/..%2Fsecret",
        "/v1/media/%2E%2E%2Fsecret",
        "/v1/media/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/media/%2e%2e",
        "/v1/media/secret",
        "/v1/media/4b5bf27b-8672-4d55-bc21-d096dc200d0f",
        "/v1/media/4b5bf27b86724d55bc21d096dc200d0f",
        "/v1/media/.partial-4b5bf27b-8672-4d55-bc21-d096dc200d0f",
    ];
    for path in paths {
        for method in [Method::GET, Method::DELETE] {
            let response = webapp.request(method.clone(), path).bearer_auth(&token).send().await.unwrap();
            let (status, code, _) = onprem_error(response).await;
            assert_eq!((status, code), (StatusCode::NOT_FOUND, 1006), "{method} {path}");
        }
    }
    assert!(webapp.dir.join("secret").exists(), "nothing outside the media directory was touched");
}

#[tokio::test]
async fn uploads_need_a_media_type_and_a_body() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let bare =
        webapp.request(Method::POST, "/v1/media").bearer_auth(&token).body(b"abc".to_vec()).send().await.unwrap();
    assert_eq!(onprem_error(bare).await.1, 1008);
    for bad in ["jpeg", "multipart/form-data; boundary=x"] {
        let (status, code, details) = onprem_error(upload(&webapp, &token, bad, b"abc").await).await;
        assert_eq!((status, code), (StatusCode::BAD_REQUEST, 1009), "{bad}: {details}");
    }
    assert!(files_in(&webapp).is_empty());
}

#[tokio::test]
async fn uploads_over_64_mib_are_refused_and_leave_no_file() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let addr = webapp.base.trim_start_matches("http://").to_string();
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "video/mp4")];
    // Declared too long: refused before a byte of the body is read.
    let (status, answer) = raw_upload(&addr, "/v1/media", &headers, Framing::Length(MEDIA_LIMIT + 1), b"", 0).await;
    assert_eq!(status, 413);
    let error: Value = serde_json::from_slice(body_of(&answer)).unwrap();
    assert_eq!(error["errors"][0]["code"], 1025, "{error}");
    // Chunked, no length: cut off as it passes the limit.
    let chunk = vec![7u8; 1 << 20];
    let (status, answer) = raw_upload(&addr, "/v1/media", &headers, Framing::Chunked, &chunk, 65).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    let error: Value = serde_json::from_slice(body_of(&answer)).unwrap();
    assert_eq!(error["errors"][0]["code"], 1025, "{error}");
    assert!(error["errors"][0]["details"].as_str().unwrap().contains("64 MiB"), "{error}");
    assert!(files_in(&webapp).is_empty(), "{:?}", files_in(&webapp));
}

#[tokio::test]
async fn users_may_upload_download_and_delete_and_anonymous_callers_may_not() {
    use shardgate_core::policy::UserRole;
    let webapp = Webapp::start().await;
    shardgate_gateway::auth::create_user(&webapp.store, "ana", NEW_PASSWORD, UserRole::User).await.unwrap();
    let token = token_of(webapp.login("ana", NEW_PASSWORD, None).await).await;
    let body: Value = upload(&webapp, &token, "image/png", b"png").await.json().await.unwrap();
    let path = format!("/v1/media/{}", body["media"][0]["id"].as_str().unwrap());
    for (method, path) in [
        (Method::POST, "/v1/media"),
        (Method::GET, path.as_str()),
        (Method::DELETE, path.as_str()),
        (Method::POST, "/v1/contacts"),
        (Method::PUT, "/v1/messages/some-id"),
    ] {
        let anonymous = webapp.request(method.clone(), path).send().await.unwrap();
        assert_eq!(onprem_error(anonymous).await.1, 1005, "{method} {path}");
    }
    let download = webapp.request(Method::GET, &path).bearer_auth(&token).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let deleted = webapp.request(Method::DELETE, &path).bearer_auth(&token).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
}
