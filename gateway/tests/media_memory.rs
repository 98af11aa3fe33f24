//! A 64 MiB upload and its download do not grow the webapp's memory with
//! their size: bodies stream between the socket and the media directory.
//! Alone in its test binary, so that no other test's allocations count.

mod support;

use sha2::{Digest, Sha256};
use std::time::Duration;
use support::raw_http::{body_of, raw_upload, Framing};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Restarts the peak RSS (`VmHWM`) count from the current RSS.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("the peak RSS can be reset (Linux 4.0+)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_upload_and_download_grow_rss_by_less_than_16_mib() {
    let webapp = Webapp::start().await;
    let token = webapp.admin_token().await;
    let addr = webapp.base.trim_start_matches("http://").to_string();
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Content-Type", "video/mp4")];
    // Warm up the paths (pools, buffers, first allocations) with a small upload.
    let (status, _) = raw_upload(&addr, "/v1/media", &headers, Framing::Length(MIB), &vec![1u8; MIB as usize], 1).await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let chunk: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 253) as u8).collect();
    let chunks = (64 * MIB) as usize / chunk.len();
    let mut expected = Sha256::new();
    for _ in 0..chunks {
        expected.update(&chunk);
    }
    let before = status_bytes("VmRSS:");
    reset_peak();
    let (status, answer) = raw_upload(&addr, "/v1/media", &headers, Framing::Length(64 * MIB), &chunk, chunks).await;
    let upload_peak = status_bytes("VmHWM:");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    let body: serde_json::Value = serde_json::from_slice(body_of(&answer)).unwrap();
    let id = body["media"][0]["id"].as_str().unwrap().to_string();
    let record = webapp.store.media(&id).await.unwrap().unwrap();
    assert_eq!(record.sha256, hex(expected.finalize().as_slice()));
    assert_eq!(record.size as u64, 64 * MIB);
    let grown = upload_peak.saturating_sub(before);
    eprintln!("a 64 MiB upload grew the peak RSS by {} KiB", grown / 1024);
    assert!(grown < 16 * MIB, "a 64 MiB upload grew RSS by {} MiB", grown / MIB);

    // The download streams from disk the same way; the test reads and drops it.
    let before = status_bytes("VmRSS:");
    reset_peak();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request =
        format!("GET /v1/media/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let download_peak = status_bytes("VmHWM:");
    assert!(received > 64 * MIB, "the whole medium came back: {received} bytes");
    let grown = download_peak.saturating_sub(before);
    eprintln!("a 64 MiB download grew the peak RSS by {} KiB", grown / 1024);
    assert!(grown < 16 * MIB, "a 64 MiB download grew RSS by {} MiB", grown / MIB);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
