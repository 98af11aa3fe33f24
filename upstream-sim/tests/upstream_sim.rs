//! `upstream-sim` over real sockets: each test starts a sim in-process on
//! ephemeral ports, speaks the line protocol to it like a coreapp would, and
//! reads the verdict back from the inspection API.
//!
//! Waits are bounded (`WAIT`) and wait for a frame or a counter, never for a
//! fixed time.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shardgate_core::upstream::protocol::{ClientFrame, ContactCheck, ReceiptStatus, ServerFrame};
use shardgate_upstream_sim::{
    self as sim, BanRecord, ConflictRecord, InboundRecord, MarkReadRecord, MediaRecord, MessageRecord, SessionRecord,
    SimConfig, SimHandle, SimStats,
};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LinesCodec};

/// Upper bound for anything the sim should do promptly.
const WAIT: Duration = Duration::from_secs(5);

/// A coreapp's end of one upstream connection.
struct Client {
    lines: Framed<TcpStream, LinesCodec>,
}

impl Client {
    /// Connects and sends a hello; returns the sim's first answer.
    async fn hello(sim: &SimHandle, account: &str, shard: u32, node: &str, epoch: i64) -> (Client, ServerFrame) {
        let stream = TcpStream::connect(sim.session_addr).await.expect("connect to the sim");
        let mut client = Client { lines: Framed::new(stream, LinesCodec::new()) };
        let hello = ClientFrame::Hello { account: account.into(), shard, shards: 4, node: node.into(), epoch };
        client.send(hello).await;
        let answer = client.next().await;
        (client, answer)
    }

    /// Opens a session that must be welcomed; returns it and its id.
    async fn open(sim: &SimHandle, account: &str, shard: u32, node: &str, epoch: i64) -> (Client, String) {
        match Client::hello(sim, account, shard, node, epoch).await {
            (client, ServerFrame::Welcome { session }) => (client, session),
            (_, other) => panic!("expected a welcome for {account}/{shard}, got {other:?}"),
        }
    }

    async fn send(&mut self, frame: ClientFrame) {
        self.lines.send(serde_json::to_string(&frame).unwrap()).await.expect("write to the sim");
    }

    async fn send_message(&mut self, id: &str, to: &str) {
        let message = json!({"type": "text", "text": {"body": format!("body of {id}")}});
        self.send(ClientFrame::Send { id: id.into(), to: to.into(), message }).await;
    }

    /// Uploads `bytes` as media `media_id` in chunks of `chunk` bytes.
    async fn upload(&mut self, media_id: &str, bytes: &[u8], chunk: usize) {
        let sha256 = sha256_hex(bytes);
        let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let frame = ClientFrame::MediaChunk {
                media_id: media_id.into(),
                mime_type: "image/png".into(),
                sha256: sha256.clone(),
                offset: (i * chunk) as u64,
                data: BASE64.encode(piece),
                last: i + 1 == pieces.len(),
            };
            self.send(frame).await;
        }
    }

    /// The next frame, pings included; `None` once the sim hung up.
    async fn next_raw(&mut self) -> Option<ServerFrame> {
        let line = tokio::time::timeout(WAIT, self.lines.next()).await.expect("a frame or EOF in time");
        match line {
            Some(Ok(line)) => Some(serde_json::from_str(&line).expect("a server frame")),
            Some(Err(_)) | None => None,
        }
    }

    /// The next frame that is not a ping, answering pings like a live coreapp.
    async fn next(&mut self) -> ServerFrame {
        let next = async {
            loop {
                match self.next_raw().await.expect("the sim hung up") {
                    ServerFrame::Ping { n } => self.send(ClientFrame::Pong { n }).await,
                    frame => return frame,
                }
            }
        };
        // Pings alone must not keep a test waiting forever.
        tokio::time::timeout(WAIT, next).await.expect("a frame other than ping in time")
    }

    /// Reads until the sim hangs up; returns what came before, pings excluded.
    async fn read_until_hang_up(&mut self) -> Vec<ServerFrame> {
        let read = async {
            let mut frames = Vec::new();
            while let Some(frame) = self.next_raw().await {
                if !matches!(frame, ServerFrame::Ping { .. }) {
                    frames.push(frame);
                }
            }
            frames
        };
        tokio::time::timeout(WAIT, read).await.expect("the sim hangs up in time")
    }

    /// Asserts that the sim hangs up with no frame other than pings.
    async fn expect_hang_up(&mut self) {
        let frames = self.read_until_hang_up().await;
        assert!(frames.is_empty(), "expected a hang-up, got {frames:?}");
    }
}

async fn start(config: SimConfig) -> SimHandle {
    sim::start(config).await.expect("sim starts")
}

async fn get<T: DeserializeOwned>(sim: &SimHandle, path: &str) -> T {
    let response = reqwest::get(format!("{}{path}", sim.http_url())).await.expect("GET");
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().await.expect("JSON body")
}

async fn post(sim: &SimHandle, path: &str, body: Value) -> Value {
    let response =
        reqwest::Client::new().post(format!("{}{path}", sim.http_url())).json(&body).send().await.expect("POST");
    assert!(response.status().is_success(), "POST {path}: {}", response.status());
    response.json().await.expect("JSON body")
}

async fn stats(sim: &SimHandle) -> SimStats {
    get(sim, "/sim/stats").await
}

/// Polls the stats until `done` holds, for at most `WAIT`.
async fn wait_for_stats(sim: &SimHandle, what: &str, done: impl Fn(&SimStats) -> bool) -> SimStats {
    let started = Instant::now();
    loop {
        let stats = stats(sim).await;
        if done(&stats) {
            return stats;
        }
        assert!(started.elapsed() < WAIT, "timed out waiting for {what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sessions(sim: &SimHandle) -> Vec<SessionRecord> {
    let body: Value = get(sim, "/sim/sessions").await;
    serde_json::from_value(body["sessions"].clone()).unwrap()
}

fn session<'a>(all: &'a [SessionRecord], id: &str) -> &'a SessionRecord {
    all.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no session {id} in {all:?}"))
}

fn kicked(reason: &str) -> ServerFrame {
    ServerFrame::Kicked { reason: reason.into() }
}

fn refused(reason: &str) -> ServerFrame {
    ServerFrame::Refused { reason: reason.into() }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The next ack's id.
async fn acked(client: &mut Client) -> String {
    match client.next().await {
        ServerFrame::Ack { id, .. } => id,
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn receipt_status(frame: &ServerFrame, id: &str) -> ReceiptStatus {
    match frame {
        ServerFrame::Receipt { id: got, status, .. } if got == id => *status,
        other => panic!("expected a receipt for {id}, got {other:?}"),
    }
}

/// Drives an account into a ban: three conflicts on shard 0.
async fn ban(sim: &SimHandle, account: &str) {
    let mut kept = Vec::new();
    for epoch in 0..3 {
        kept.push(Client::open(sim, account, 0, "node-a", epoch).await.0);
    }
    let (_, answer) = Client::hello(sim, account, 0, "node-b", 3).await;
    assert_eq!(answer, refused("banned"));
}

#[tokio::test]
async fn second_session_on_a_shard_kicks_the_first_records_a_conflict_and_keeps_the_second() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut old, old_id) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let (mut new, new_id) = Client::open(&sim, "15550001", 0, "node-b", 2).await;

    assert_eq!(old.next().await, kicked("conflict"));
    old.expect_hang_up().await;

    let body: Value = get(&sim, "/sim/conflicts").await;
    let conflicts: Vec<ConflictRecord> = serde_json::from_value(body["conflicts"].clone()).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let conflict = &conflicts[0];
    assert_eq!(
        (&conflict.account, conflict.shard, &conflict.old_session, &conflict.old_node, conflict.old_epoch),
        (&"15550001".to_string(), 0, &old_id, &"node-a".to_string(), 1)
    );
    assert_eq!(
        (conflict.new_session.as_ref(), conflict.new_node.as_str(), conflict.new_epoch),
        (Some(&new_id), "node-b", 2)
    );
    // The old connection has hung up; its close must not have freed the
    // shard the new session holds.
    let all = sessions(&sim).await;
    assert_eq!(session(&all, &old_id).close_reason.as_deref(), Some("conflict"));
    assert!(session(&all, &new_id).open);
    let stats = stats(&sim).await;
    assert_eq!((stats.conflicts, stats.sessions_open, stats.sessions_opened), (1, 1, 2));
    new.send_message("m1", "15559999").await;
    assert!(matches!(new.next().await, ServerFrame::Ack { id, .. } if id == "m1"));
}

#[tokio::test]
async fn sessions_on_different_shards_or_accounts_do_not_conflict() {
    let sim = start(SimConfig::ephemeral()).await;
    let _a0 = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let _a1 = Client::open(&sim, "15550001", 1, "node-b", 1).await;
    let _b0 = Client::open(&sim, "15550002", 0, "node-b", 1).await;

    let stats = stats(&sim).await;
    assert_eq!((stats.conflicts, stats.sessions_open), (0, 3));
    assert!(sessions(&sim).await.iter().all(|s| s.open));
}

#[tokio::test]
async fn three_conflicts_ban_the_account_refuse_its_hellos_and_kick_its_sessions() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut other_shard, _) = Client::open(&sim, "15550001", 1, "node-a", 1).await;
    let (mut first, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let (mut second, _) = Client::open(&sim, "15550001", 0, "node-b", 2).await;
    let (mut third, _) = Client::open(&sim, "15550001", 0, "node-a", 3).await;
    assert_eq!(first.next().await, kicked("conflict"));
    assert_eq!(second.next().await, kicked("conflict"));

    let (_, answer) = Client::hello(&sim, "15550001", 0, "node-b", 4).await;

    assert_eq!(answer, refused("banned"), "the third conflict bans");
    assert_eq!(third.next().await, kicked("conflict"));
    assert_eq!(other_shard.next().await, kicked("banned"));
    let (_, answer) = Client::hello(&sim, "15550001", 2, "node-a", 5).await;
    assert_eq!(answer, refused("banned"), "every shard of a banned account is refused");
    let _unrelated = Client::open(&sim, "15550002", 0, "node-a", 1).await;
    let stats = stats(&sim).await;
    assert_eq!((stats.conflicts, stats.bans, stats.bans_active, stats.sessions_open), (3, 1, 1, 1));
    let body: Value = get(&sim, "/sim/bans").await;
    let bans: Vec<BanRecord> = serde_json::from_value(body["bans"].clone()).unwrap();
    assert_eq!((bans[0].account.as_str(), bans[0].active), ("15550001", true));
    assert_eq!(bans[0].until_ms - bans[0].started_at_ms, 3_600_000);
}

#[tokio::test]
async fn reset_lifts_a_ban_so_the_account_is_welcomed_again() {
    let sim = start(SimConfig::ephemeral()).await;
    ban(&sim, "15550001").await;

    assert_eq!(post(&sim, "/sim/reset", json!({})).await, json!({"bans_lifted": 1}));

    let _welcomed = Client::open(&sim, "15550001", 0, "node-a", 9).await;
    let body: Value = get(&sim, "/sim/bans").await;
    assert_eq!(body["bans"][0]["active"], json!(false));
    assert!(body["bans"][0]["lifted_at_ms"].is_i64());
}

#[tokio::test]
async fn resend_is_acked_with_the_same_server_id_counted_and_delivered_once() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut first, first_id) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    first.send_message("m1", "15559999").await;
    first.send_message("m2", "15559999").await;
    first.send_message("m1", "15559999").await;
    let mut acks = Vec::new();
    while acks.len() < 3 {
        if let ServerFrame::Ack { id, server_id } = first.next().await {
            acks.push((id, server_id));
        }
    }
    first.send(ClientFrame::Bye).await;
    first.read_until_hang_up().await;
    // A resend after failover arrives on another session, from another node.
    let (mut second, second_id) = Client::open(&sim, "15550001", 0, "node-b", 2).await;
    second.send_message("m1", "15559999").await;
    let resent_ack = loop {
        if let ServerFrame::Ack { id, server_id } = second.next().await {
            break (id, server_id);
        }
    };

    assert_eq!(acks[0].0, "m1");
    assert_eq!(acks[2], acks[0], "a resend is acked with the first server id");
    assert_eq!(resent_ack, acks[0], "also from another session");
    assert_ne!(acks[1].1, acks[0].1, "distinct ids get distinct server ids");
    let stats = stats(&sim).await;
    assert_eq!(
        (stats.messages_received, stats.unique_messages, stats.resends, stats.duplicate_deliveries),
        (4, 2, 2, 0)
    );
    let body: Value = get(&sim, "/sim/deliveries").await;
    assert_eq!(body, json!({"deliveries": {"15559999": ["m1", "m2"]}}));
    let body: Value = get(&sim, "/sim/messages").await;
    let messages: Vec<MessageRecord> = serde_json::from_value(body["messages"].clone()).unwrap();
    let seen: Vec<_> = messages
        .iter()
        .map(|m| (m.id.as_str(), m.session.as_str(), m.node.as_str(), m.epoch, m.resend, m.delivered))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("m1", first_id.as_str(), "node-a", 1, false, true),
            ("m2", first_id.as_str(), "node-a", 1, false, true),
            ("m1", first_id.as_str(), "node-a", 1, true, false),
            ("m1", second_id.as_str(), "node-b", 2, true, false),
        ]
    );
}

#[tokio::test]
async fn session_that_stops_ponging_is_kicked_after_session_timeout() {
    let sim = start(SimConfig { session_timeout: 0.3, ..SimConfig::ephemeral() }).await;
    let (mut silent, id) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let welcomed = Instant::now();

    let mut pings = 0;
    let listen = async {
        loop {
            match silent.next_raw().await.expect("kicked before hang-up") {
                ServerFrame::Ping { .. } => pings += 1,
                other => return other,
            }
        }
    };
    let ending = tokio::time::timeout(WAIT, listen).await.expect("kicked in time");

    assert_eq!(ending, kicked("keepalive timeout"));
    assert!(welcomed.elapsed() >= Duration::from_millis(250), "kicked early: {:?}", welcomed.elapsed());
    assert!(pings >= 2, "pinged every timeout/3, got {pings} pings");
    silent.expect_hang_up().await;
    let all = sessions(&sim).await;
    assert_eq!(session(&all, &id).close_reason.as_deref(), Some("keepalive timeout"));
    assert_eq!(stats(&sim).await.sessions_open, 0);
}

#[tokio::test]
async fn session_that_keeps_ponging_outlives_session_timeout() {
    let sim = start(SimConfig { session_timeout: 0.6, ..SimConfig::ephemeral() }).await;
    let (mut live, id) = Client::open(&sim, "15550001", 0, "node-a", 1).await;

    // `next` pongs every ping; no other frame may come in three timeouts.
    let outcome = tokio::time::timeout(Duration::from_millis(1800), live.next()).await;

    assert!(outcome.is_err(), "a ponging session got {outcome:?}");
    assert!(session(&sessions(&sim).await, &id).open);
}

#[tokio::test]
async fn eof_closes_the_session_at_once_and_frees_its_shard() {
    let sim = start(SimConfig::ephemeral()).await;
    let (client, id) = Client::open(&sim, "15550001", 0, "node-a", 1).await;

    drop(client);

    wait_for_stats(&sim, "the session to close", |s| s.sessions_open == 0).await;
    assert_eq!(session(&sessions(&sim).await, &id).close_reason.as_deref(), Some("eof"));
    let _next = Client::open(&sim, "15550001", 0, "node-b", 2).await;
    assert_eq!(stats(&sim).await.conflicts, 0);
}

#[tokio::test]
async fn receipts_follow_the_ack_and_wait_for_the_next_session_when_none_is_open() {
    // Long enough that `bye` is surely processed before `delivered` is due.
    let sim = start(SimConfig { receipt_delay_ms: 300, ..SimConfig::ephemeral() }).await;
    let (mut sender, _) = Client::open(&sim, "15550001", 2, "node-a", 1).await;
    sender.send_message("m1", "15559999").await;
    sender.send(ClientFrame::Bye).await;

    assert!(matches!(sender.next().await, ServerFrame::Ack { id, .. } if id == "m1"));
    assert_eq!(receipt_status(&sender.next().await, "m1"), ReceiptStatus::Sent);
    sender.expect_hang_up().await;
    wait_for_stats(&sim, "delivered and read to be queued", |s| s.frames_queued == 2).await;

    let (mut next, _) = Client::open(&sim, "15550001", 2, "node-b", 2).await;

    assert_eq!(receipt_status(&next.next().await, "m1"), ReceiptStatus::Delivered);
    assert_eq!(receipt_status(&next.next().await, "m1"), ReceiptStatus::Read);
    assert_eq!(stats(&sim).await.frames_queued, 0);
}

#[tokio::test]
async fn injected_inbound_reaches_the_open_session_of_its_shard_or_waits_for_one() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut shard1, _) = Client::open(&sim, "15550001", 1, "node-a", 1).await;

    let live = post(&sim, "/sim/inbound", json!({"account":"15550001","shard":1,"from":"15557777","body":"hi"})).await;
    let queued =
        post(&sim, "/sim/inbound", json!({"account":"15550001","shard":0,"from":"15558888","body":"yo"})).await;

    assert_eq!((&live["shard"], &live["queued"]), (&json!(1), &json!(false)));
    match shard1.next().await {
        ServerFrame::Inbound { id, from, message, profile_name, media, .. } => {
            assert_eq!((json!(id), from.as_str()), (live["id"].clone(), "15557777"));
            assert_eq!(message, json!({"type": "text", "text": {"body": "hi"}}), "the original form is a text");
            assert_eq!((profile_name, media), (None, None));
        }
        other => panic!("expected the inbound message, got {other:?}"),
    }
    assert_eq!(queued["queued"], json!(true));
    let (mut shard0, _) = Client::open(&sim, "15550001", 0, "node-b", 1).await;
    match shard0.next().await {
        ServerFrame::Inbound { id, from, .. } => {
            assert_eq!((json!(id), from.as_str()), (queued["id"].clone(), "15558888"))
        }
        other => panic!("expected the queued inbound message, got {other:?}"),
    }
    assert_eq!(stats(&sim).await.inbound_injected, 2);
}

#[tokio::test]
async fn refuse_fault_refuses_new_sessions_until_switched_off() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut existing, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;

    let faults = post(&sim, "/sim/faults", json!({"refuse_sessions": true})).await;

    assert_eq!(faults, json!({"refuse_sessions": true, "ack_delay_ms": 0, "drop_sends": false}));
    let (mut refused_client, answer) = Client::hello(&sim, "15550001", 1, "node-a", 1).await;
    assert_eq!(answer, refused("refused"));
    refused_client.expect_hang_up().await;
    existing.send_message("m1", "15559999").await;
    assert!(matches!(existing.next().await, ServerFrame::Ack { .. }), "open sessions keep working");
    post(&sim, "/sim/faults", json!({"refuse_sessions": false})).await;
    let _welcomed = Client::open(&sim, "15550001", 1, "node-a", 1).await;
    assert_eq!(stats(&sim).await.sessions_refused, 1);
}

#[tokio::test]
async fn drop_fault_swallows_sends_without_ack_or_record_until_switched_off() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut client, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    post(&sim, "/sim/faults", json!({"drop_sends": true})).await;

    client.send_message("m1", "15559999").await;
    wait_for_stats(&sim, "the send to be dropped", |s| s.sends_dropped == 1).await;
    post(&sim, "/sim/faults", json!({"drop_sends": false})).await;
    client.send_message("m2", "15559999").await;

    // Frames arrive in order, so the first ack being m2's proves m1 got none.
    assert!(matches!(client.next().await, ServerFrame::Ack { id, .. } if id == "m2"));
    let stats = stats(&sim).await;
    assert_eq!((stats.messages_received, stats.unique_messages), (1, 1));
    let body: Value = get(&sim, "/sim/deliveries").await;
    assert_eq!(body["deliveries"]["15559999"], json!(["m2"]));
}

#[tokio::test]
async fn ack_delay_fault_holds_acks_back() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut client, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    post(&sim, "/sim/faults", json!({"ack_delay_ms": 400})).await;

    let sent = Instant::now();
    client.send_message("m1", "15559999").await;

    assert!(matches!(client.next().await, ServerFrame::Ack { id, .. } if id == "m1"));
    assert!(sent.elapsed() >= Duration::from_millis(400), "acked after {:?}", sent.elapsed());
    assert_eq!(receipt_status(&client.next().await, "m1"), ReceiptStatus::Sent);
}

#[tokio::test]
async fn bad_hello_and_unknown_fault_fields_are_rejected() {
    let sim = start(SimConfig::ephemeral()).await;

    let (_, answer) = Client::hello(&sim, "15550001", 7, "node-a", 1).await;

    assert!(matches!(&answer, ServerFrame::Refused { reason } if reason.starts_with("bad hello")), "{answer:?}");
    let response = reqwest::Client::new()
        .post(format!("{}/sim/faults", sim.http_url()))
        .json(&json!({"refuse_session": true}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "a misspelt fault must not pass silently");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_sim_and_hangs_up_sessions() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut client, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let http_url = sim.http_url();

    drop(sim);

    client.expect_hang_up().await;
    let stopped = tokio::time::timeout(WAIT, async {
        while reqwest::get(format!("{http_url}/sim/stats")).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stopped.is_ok(), "the inspection API still answers");
}

#[tokio::test]
async fn message_failing_the_networks_checks_is_acked_then_failed_once_and_never_delivered() {
    let sim = start(SimConfig { receipt_delay_ms: 20, ..SimConfig::ephemeral() }).await;
    let (mut client, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    post(&sim, "/sim/contacts", json!({"remove": ["15550000404"]})).await;
    let template = json!({"type": "template", "template": {"namespace": "ns", "name": "ready",
        "language": {"code": "en"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "x"}]}]}});

    client.send_message("unknown", "+1 555 000 0404").await;
    client.send(ClientFrame::Send { id: "tpl".into(), to: "15559999".into(), message: template.clone() }).await;

    for (id, code) in [("unknown", 1013), ("tpl", 2001)] {
        assert_eq!(acked(&mut client).await, id, "a failed message is still acked");
        match client.next().await {
            ServerFrame::Receipt { id: got, status: ReceiptStatus::Failed, errors, .. } if got == id => {
                assert_eq!(errors.iter().map(|e| e.code).collect::<Vec<_>>(), vec![code], "{id}: {errors:?}")
            }
            other => panic!("expected a failed receipt for {id}, got {other:?}"),
        }
    }
    // A resend of a failed id: acked, nothing else. Then a template that exists
    // now: its whole receipt chain proves nothing else came for the failed ones.
    client.send_message("unknown", "+1 555 000 0404").await;
    let registered =
        post(&sim, "/sim/templates", json!({"namespace": "ns", "name": "ready", "language": "en", "params": 1})).await;
    assert_eq!(registered["templates"].as_array().map(Vec::len), Some(1));
    client.send(ClientFrame::Send { id: "tpl2".into(), to: "15559999".into(), message: template }).await;
    assert_eq!(acked(&mut client).await, "unknown");
    assert_eq!(acked(&mut client).await, "tpl2");
    for status in [ReceiptStatus::Sent, ReceiptStatus::Delivered, ReceiptStatus::Read] {
        assert_eq!(receipt_status(&client.next().await, "tpl2"), status);
    }

    let stats = stats(&sim).await;
    assert_eq!(
        (
            stats.messages_received,
            stats.unique_messages,
            stats.messages_failed,
            stats.resends,
            stats.duplicate_deliveries
        ),
        (4, 3, 2, 1, 0)
    );
    let body: Value = get(&sim, "/sim/deliveries").await;
    assert_eq!(body, json!({"deliveries": {"15559999": ["tpl2"]}}));
    let body: Value = get(&sim, "/sim/messages").await;
    let messages: Vec<MessageRecord> = serde_json::from_value(body["messages"].clone()).unwrap();
    let seen: Vec<_> =
        messages.iter().map(|m| (m.id.as_str(), m.status.as_str(), m.errors.len(), m.delivered)).collect();
    assert_eq!(
        seen,
        vec![
            ("unknown", "failed", 1, false),
            ("tpl", "failed", 1, false),
            ("unknown", "failed", 1, false),
            ("tpl2", "read", 0, true)
        ]
    );
    assert_eq!(messages[1].message["template"]["name"], json!("ready"), "the payload as received");
}

#[tokio::test]
async fn uploaded_media_can_be_sent_and_each_sessions_upload_is_counted() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut client, session) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let image = json!({"type": "image", "image": {"id": "pic-1", "caption": "look"}});

    client.upload("pic-1", &bytes, 4096).await;
    let stored = client.next().await;
    client.send(ClientFrame::Send { id: "m1".into(), to: "15559999".into(), message: image }).await;

    assert_eq!(stored, ServerFrame::MediaStored { media_id: "pic-1".into(), sha256: sha256_hex(&bytes) });
    assert_eq!(acked(&mut client).await, "m1");
    assert_eq!(receipt_status(&client.next().await, "m1"), ReceiptStatus::Sent);
    let body: Value = get(&sim, "/sim/media").await;
    let media: Vec<MediaRecord> = serde_json::from_value(body["media"].clone()).unwrap();
    assert_eq!((media[0].media_id.as_str(), media[0].stored, media[0].size), ("pic-1", true, Some(10_000)));
    let sent = &media[0].sessions;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        (sent[0].session.as_str(), sent[0].chunks, sent[0].bytes, sent[0].uploads),
        (session.as_str(), 3, 10_000, 1)
    );

    // Out of order: the chunk at 4096 comes first.
    let chunk = ClientFrame::MediaChunk {
        media_id: "pic-2".into(),
        mime_type: "image/png".into(),
        sha256: sha256_hex(&bytes),
        offset: 4096,
        data: BASE64.encode(&bytes[4096..]),
        last: true,
    };
    client.send(chunk).await;
    assert!(matches!(client.next().await, ServerFrame::MediaRefused { media_id, .. } if media_id == "pic-2"));
    let stats = stats(&sim).await;
    assert_eq!((stats.media_stored, stats.media_refused), (1, 1));
}

#[tokio::test]
async fn contact_checks_answer_valid_with_the_wa_id_or_invalid() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut client, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    post(&sim, "/sim/contacts", json!({"add": ["1555"], "remove": ["15551234567"]})).await;
    let inputs = ["+1 (555) 765-4321", "+1 555 123 4567", "1555", "12", "not a number"];

    client.send(ClientFrame::CheckContacts { id: "c1".into(), inputs: inputs.map(String::from).to_vec() }).await;

    let ServerFrame::ContactsChecked { id, contacts } = client.next().await else { panic!("expected contacts") };
    assert_eq!(id, "c1");
    let valid = |input: &str, wa_id: &str| ContactCheck {
        input: input.into(),
        status: "valid".into(),
        wa_id: Some(wa_id.into()),
    };
    let invalid = |input: &str| ContactCheck { input: input.into(), status: "invalid".into(), wa_id: None };
    assert_eq!(
        contacts,
        vec![
            valid(inputs[0], "15557654321"),
            invalid(inputs[1]),
            valid(inputs[2], "1555"),
            invalid(inputs[3]),
            invalid(inputs[4])
        ]
    );
    let directory: Value = get(&sim, "/sim/contacts").await;
    assert_eq!(
        (&directory["added"], &directory["removed"], &directory["checks"]),
        (&json!(["1555"]), &json!(["15551234567"]), &json!(1))
    );
}

#[tokio::test]
async fn injected_inbound_media_carries_its_bytes_and_their_hash() {
    let sim = start(SimConfig::ephemeral()).await;
    let (mut client, _) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let bytes = b"%PDF-1.4 a tiny document".to_vec();
    let request = json!({"account": "15550001", "shard": 0, "from": "15557777", "profile_name": "Ann",
        "message": {"type": "document", "document": {"filename": "a.pdf", "caption": "the contract"}},
        "media": {"data": BASE64.encode(&bytes)}});

    let injected = post(&sim, "/sim/inbound", request).await;

    assert_eq!(
        injected["media"],
        json!({"mime_type": "application/pdf", "sha256": sha256_hex(&bytes), "size": bytes.len()})
    );
    match client.next().await {
        ServerFrame::Inbound { message, profile_name, media: Some(media), .. } => {
            assert_eq!(profile_name.as_deref(), Some("Ann"));
            assert_eq!(BASE64.decode(&media.data).unwrap(), bytes);
            assert_eq!(
                (media.mime_type.as_str(), media.sha256.as_str()),
                ("application/pdf", sha256_hex(&bytes).as_str())
            );
            let expected = json!({"filename": "a.pdf", "caption": "the contract", "mime_type": "application/pdf", "sha256": media.sha256});
            assert_eq!(message, json!({"type": "document", "document": expected}));
        }
        other => panic!("expected the inbound document, got {other:?}"),
    }
    let voice = json!({"account": "15550001", "shard": 0, "from": "15557777", "message": {"type": "voice"}, "media": {"size": 5000}});
    post(&sim, "/sim/inbound", voice).await;
    let ServerFrame::Inbound { media: Some(media), .. } = client.next().await else { panic!("expected a voice note") };
    assert_eq!(BASE64.decode(&media.data).unwrap().len(), 5000);
    let reply = json!({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r1", "title": "One"}}});
    post(&sim, "/sim/inbound", json!({"account": "15550001", "shard": 0, "from": "15557777", "message": reply})).await;
    assert!(matches!(client.next().await, ServerFrame::Inbound { message, media: None, .. } if message == reply));

    let bad = reqwest::Client::new()
        .post(format!("{}/sim/inbound", sim.http_url()))
        .json(&json!({"account": "15550001", "from": "15557777"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422, "neither body nor message");
}

#[tokio::test]
async fn mark_read_is_acked_once_per_id_without_receipts_and_stamps_the_inbound_message() {
    let sim = start(SimConfig { receipt_delay_ms: 20, ..SimConfig::ephemeral() }).await;
    let (mut client, session) = Client::open(&sim, "15550001", 0, "node-a", 1).await;
    let injected =
        post(&sim, "/sim/inbound", json!({"account": "15550001", "shard": 0, "from": "15557777", "body": "hi"})).await;
    let inbound_id = injected["id"].as_str().unwrap().to_string();
    assert!(matches!(client.next().await, ServerFrame::Inbound { .. }));

    client.send(ClientFrame::MarkRead { id: "r1".into(), message_id: inbound_id.clone() }).await;
    client.send(ClientFrame::MarkRead { id: "r1".into(), message_id: inbound_id.clone() }).await;
    client.send_message("m1", "15559999").await;

    let mut acks = Vec::new();
    while acks.len() < 3 {
        match client.next().await {
            ServerFrame::Ack { id, server_id } => acks.push((id, server_id)),
            ServerFrame::Receipt { id, .. } => assert_eq!(id, "m1", "only the message gets receipts"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acks[0], acks[1], "a resent read mark is acked with the same server id");
    let body: Value = get(&sim, "/sim/inbound").await;
    let inbound: Vec<InboundRecord> = serde_json::from_value(body["inbound"].clone()).unwrap();
    assert_eq!((inbound[0].id.as_str(), inbound[0].read_marks), (inbound_id.as_str(), 2));
    assert!(inbound[0].read_at_ms.is_some());
    let body: Value = get(&sim, "/sim/mark_reads").await;
    let marks: Vec<MarkReadRecord> = serde_json::from_value(body["mark_reads"].clone()).unwrap();
    let seen: Vec<_> = marks.iter().map(|m| (m.id.as_str(), m.session.as_str(), m.resend, m.known)).collect();
    assert_eq!(seen, vec![("r1", session.as_str(), false, true), ("r1", session.as_str(), true, true)]);
    let stats = stats(&sim).await;
    assert_eq!((stats.mark_reads, stats.unique_messages), (2, 1));
}
