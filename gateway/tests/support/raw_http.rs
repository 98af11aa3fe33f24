//! HTTP/1.1 by hand over a TCP stream, for what an HTTP client hides: huge
//! bodies streamed from a generator (reqwest would hold them in memory), a
//! `Content-Length` promised but not sent, a chunked body cut off by the
//! server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How the body of a [`raw_upload`] is framed.
pub enum Framing {
    /// `Content-Length` of this many bytes, whatever is actually sent.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Sends `POST path` with `headers`, then `chunks` chunks of `chunk` bytes,
/// while reading the answer; returns the status and the response's bytes.
/// Writing stops at the first error: a server that refuses the body early
/// closes the connection, and its answer is what the test wants.
pub async fn raw_upload(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    framing: Framing,
    chunk: &[u8],
    chunks: usize,
) -> (u16, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        answer
    });
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match framing {
        Framing::Length(n) => head.push_str(&format!("Content-Length: {n}\r\n\r\n")),
        Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    let chunked = matches!(framing, Framing::Chunked);
    // A refusal closes the connection mid-body, so a write error is expected
    // then; the answer read meanwhile tells what happened.
    let _sent: std::io::Result<()> = async {
        writer.write_all(head.as_bytes()).await?;
        for _ in 0..chunks {
            if chunked {
                writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            }
            writer.write_all(chunk).await?;
            if chunked {
                writer.write_all(b"\r\n").await?;
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        writer.flush().await
    }
    .await;
    // The writer stays open until the answer is in: a half-closed
    // connection may be dropped by the server before it answers.
    let answer = reading.await.unwrap();
    drop(writer);
    let text = String::from_utf8_lossy(&answer[..answer.len().min(64)]).to_string();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (status, answer)
}

/// The body of a raw answer (after the blank line).
pub fn body_of(answer: &[u8]) -> &[u8] {
    let at = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head") + 4;
    &answer[at..]
}
