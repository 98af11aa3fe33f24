//! The rules of [`SimState`], one test each, without sockets or clocks.

use super::*;
use crate::inbound::InboundRequest;
use crate::media::sha256_hex;
use crate::templates::TemplateRecord;
use serde_json::json;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Recipients that exist by the default rule.
const U1: &str = "15551110001";
const U2: &str = "15551110002";

const BAN_MS: i64 = 60_000;
/// Longer than the conflict window, so that no test session expires
/// unless a test says so.
const TIMINGS: Timings = Timings { session_timeout_ms: 24 * 3600 * 1000, ban_duration_ms: BAN_MS };

fn claim(account: &str, shard: u32, node: &str, epoch: i64) -> SessionClaim {
    SessionClaim { account: account.into(), shard, shards: 4, node: node.into(), epoch }
}

fn open(
    state: &mut SimState,
    claim: SessionClaim,
    now_ms: i64,
) -> (Result<String, String>, UnboundedReceiver<ServerFrame>) {
    let (outbox, frames) = unbounded_channel();
    (state.open_session(claim, outbox, now_ms), frames)
}

fn drain(frames: &mut UnboundedReceiver<ServerFrame>) -> Vec<ServerFrame> {
    std::iter::from_fn(|| frames.try_recv().ok()).collect()
}

fn kicked(reason: &str) -> ServerFrame {
    ServerFrame::Kicked { reason: reason.into() }
}

fn text(body: &str) -> Value {
    json!({"type": "text", "text": {"body": body}})
}

fn send(state: &mut SimState, session: &str, id: &str, to: &str, now_ms: i64) -> SendOutcome {
    state.receive_send(session, id, to, &text("hi"), now_ms)
}

fn send_message(state: &mut SimState, session: &str, id: &str, message: Value) -> SendOutcome {
    state.receive_send(session, id, U1, &message, 1)
}

/// The errors of an accepted send (empty when it goes through).
fn errors(outcome: SendOutcome) -> Vec<i64> {
    match outcome {
        SendOutcome::Accepted { errors, .. } => errors.iter().map(|e| e.code).collect(),
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn inject(
    state: &mut SimState,
    account: &str,
    shard: Option<u32>,
    from: &str,
    body: &str,
    now_ms: i64,
) -> InjectedInbound {
    let request = json!({"account": account, "shard": shard, "from": from, "body": body});
    let inbound = serde_json::from_value::<InboundRequest>(request).unwrap().build().unwrap();
    state.inject_inbound(inbound, now_ms)
}

fn chunk(media_id: &str, data: &[u8], last: bool) -> Chunk {
    Chunk {
        media_id: media_id.into(),
        mime_type: "image/png".into(),
        sha256: sha256_hex(data),
        offset: 0,
        data: Ok(data.to_vec()),
        last,
    }
}

#[test]
fn second_hello_for_a_shard_kicks_the_first_and_records_both_sides() {
    let mut state = SimState::new(TIMINGS);
    let (first, mut first_frames) = open(&mut state, claim("a", 0, "n1", 1), 10);
    let (second, mut second_frames) = open(&mut state, claim("a", 0, "n2", 2), 20);
    let (first, second) = (first.unwrap(), second.unwrap());

    assert_eq!(drain(&mut first_frames), vec![ServerFrame::Welcome { session: first.clone() }, kicked("conflict")]);
    assert_eq!(drain(&mut second_frames), vec![ServerFrame::Welcome { session: second.clone() }]);
    assert_eq!(
        state.conflicts(),
        vec![ConflictRecord {
            account: "a".into(),
            shard: 0,
            old_session: first.clone(),
            old_node: "n1".into(),
            old_epoch: 1,
            new_session: Some(second),
            new_node: "n2".into(),
            new_epoch: 2,
            at_ms: 20,
        }]
    );
    let sessions = state.sessions();
    assert_eq!(sessions[0].close_reason.as_deref(), Some("conflict"));
    assert!(sessions[1].open);
}

#[test]
fn hello_after_the_holder_missed_a_session_timeout_of_pongs_is_no_conflict() {
    let timings = Timings { session_timeout_ms: 1000, ..TIMINGS };
    let mut state = SimState::new(timings);
    let (_, mut old_frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let (_, _) = open(&mut state, claim("a", 1, "n1", 1), 0);
    state.pong("s-1", 500);

    let (early, _early_frames) = open(&mut state, claim("a", 1, "n2", 2), 999);
    let (late, _late_frames) = open(&mut state, claim("a", 0, "n2", 2), 1500);

    assert!(early.is_ok() && late.is_ok());
    assert_eq!(state.conflicts().len(), 1, "only the hello within the timeout conflicts");
    assert_eq!(state.conflicts()[0].shard, 1);
    assert_eq!(drain(&mut old_frames).last(), Some(&kicked("keepalive timeout")));
    assert_eq!(state.sessions()[0].close_reason.as_deref(), Some("keepalive timeout"));
}

#[test]
fn late_close_of_a_kicked_session_leaves_the_new_session_open() {
    let mut state = SimState::new(TIMINGS);
    let (first, _f) = open(&mut state, claim("a", 0, "n1", 1), 10);
    let (second, _s) = open(&mut state, claim("a", 0, "n2", 2), 20);

    assert!(!state.close_session(&first.unwrap(), "eof", 30));

    let sessions = state.sessions();
    assert_eq!(sessions[0].close_reason.as_deref(), Some("conflict"), "first close wins");
    assert!(sessions[1].open);
    assert_eq!(state.stats(30).sessions_open, 1);
    let after = send(&mut state, &second.unwrap(), "m1", U1, 40);
    assert!(matches!(after, SendOutcome::Accepted { .. }), "{after:?}");
}

#[test]
fn different_shards_and_accounts_never_conflict() {
    let mut state = SimState::new(TIMINGS);
    for (account, shard) in [("a", 0), ("a", 1), ("b", 0)] {
        assert!(open(&mut state, claim(account, shard, "n1", 1), 10).0.is_ok());
    }
    let stats = state.stats(10);
    assert_eq!((stats.conflicts, stats.sessions_open), (0, 3));
}

#[test]
fn third_conflict_in_ten_minutes_bans_refuses_and_kicks_the_account() {
    let mut state = SimState::new(TIMINGS);
    let (_other_shard, mut other_frames) = open(&mut state, claim("a", 1, "n1", 1), 0);
    let mut receivers = Vec::new();
    for t in 0..3 {
        let (id, frames) = open(&mut state, claim("a", 0, "n1", t), t * 1000);
        id.unwrap();
        receivers.push(frames);
    }
    let (third, _) = open(&mut state, claim("a", 0, "n2", 9), 5000);

    assert_eq!(third, Err("banned".into()));
    assert_eq!(state.conflicts().len(), 3);
    assert_eq!(state.conflicts()[2].new_session, None);
    assert_eq!(drain(&mut other_frames).last(), Some(&kicked("banned")));
    assert_eq!(drain(&mut receivers[2]).last(), Some(&kicked("conflict")));
    assert_eq!(state.stats(5000).sessions_open, 0);
    assert_eq!(open(&mut state, claim("a", 3, "n1", 1), 6000).0, Err("banned".into()));
    assert!(open(&mut state, claim("b", 0, "n1", 1), 6000).0.is_ok(), "other accounts unaffected");
    let bans = state.bans(6000);
    assert_eq!((bans.len(), bans[0].active, bans[0].until_ms), (1, true, 5000 + BAN_MS));
}

#[test]
fn conflicts_spread_over_more_than_ten_minutes_do_not_ban() {
    let mut state = SimState::new(TIMINGS);
    let _receivers: Vec<_> =
        (0..4).map(|i| open(&mut state, claim("a", 0, "n1", i), i * CONFLICT_WINDOW_MS / 2).1).collect();
    let stats = state.stats(2 * CONFLICT_WINDOW_MS);
    assert_eq!((stats.conflicts, stats.bans), (3, 0));
}

#[test]
fn ban_ends_after_ban_duration_or_on_reset() {
    let mut state = SimState::new(TIMINGS);
    let _receivers: Vec<_> = (0..4).map(|i| open(&mut state, claim("a", 0, "n1", i), i).1).collect();
    assert_eq!(open(&mut state, claim("a", 0, "n1", 9), BAN_MS).0, Err("banned".into()));
    assert!(open(&mut state, claim("a", 0, "n1", 9), 3 + BAN_MS).0.is_ok());

    let mut state = SimState::new(TIMINGS);
    let _receivers: Vec<_> = (0..4).map(|i| open(&mut state, claim("a", 0, "n1", i), i).1).collect();
    assert_eq!(state.lift_bans(10), 1);
    assert!(open(&mut state, claim("a", 0, "n1", 9), 11).0.is_ok());
    assert_eq!(state.bans(11)[0].lifted_at_ms, Some(10));
}

#[test]
fn resend_reuses_server_id_counts_a_resend_and_is_not_delivered_again() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();

    let first = send(&mut state, &session, "m1", U1, 1);
    let again = send(&mut state, &session, "m1", U1, 2);

    let SendOutcome::Accepted { server_id, resend: false, .. } = first else { panic!("{first:?}") };
    assert_eq!(again, SendOutcome::Accepted { server_id, resend: true, ack_delay_ms: 0, errors: vec![] });
    let stats = state.stats(2);
    assert_eq!(
        (stats.messages_received, stats.unique_messages, stats.resends, stats.duplicate_deliveries),
        (2, 1, 1, 0)
    );
    assert_eq!(state.deliveries()[U1], vec!["m1"]);
    let flags: Vec<_> = state.messages().iter().map(|m| (m.resend, m.delivered)).collect();
    assert_eq!(flags, vec![(false, true), (true, false)]);
}

#[test]
fn same_id_from_two_accounts_is_two_messages() {
    let mut state = SimState::new(TIMINGS);
    let (a, _fa) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let (b, _fb) = open(&mut state, claim("b", 0, "n1", 1), 0);
    send(&mut state, &a.unwrap(), "m1", U1, 1);
    send(&mut state, &b.unwrap(), "m1", U1, 1);
    assert_eq!(state.stats(1).resends, 0);
    assert_eq!(state.stats(1).duplicate_deliveries, 0);
}

#[test]
fn deliveries_keep_the_order_of_first_receipt_per_recipient() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    for (id, to) in [("m1", U1), ("m2", U2), ("m3", U1), ("m1", U1), ("m4", U1)] {
        send(&mut state, &session, id, to, 1);
    }
    assert_eq!(state.deliveries()[U1], vec!["m1", "m3", "m4"]);
    assert_eq!(state.deliveries()[U2], vec!["m2"]);
}

#[test]
fn send_on_a_closed_session_is_ignored() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    state.close_session(&session, "bye", 1);
    assert_eq!(send(&mut state, &session, "m1", U1, 2), SendOutcome::SessionClosed);
    assert_eq!(state.stats(2).messages_received, 0);
}

#[test]
fn drop_fault_records_nothing_and_refuse_fault_refuses_hellos() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    state.update_faults(FaultsUpdate { drop_sends: Some(true), ..Default::default() });
    assert_eq!(send(&mut state, &session.unwrap(), "m1", U1, 1), SendOutcome::Dropped);
    assert_eq!((state.stats(1).messages_received, state.stats(1).sends_dropped), (0, 1));

    state.update_faults(FaultsUpdate { refuse_sessions: Some(true), ..Default::default() });
    assert_eq!(open(&mut state, claim("a", 1, "n1", 1), 2).0, Err("refused".into()));
}

#[test]
fn frames_for_a_shard_without_session_are_flushed_after_the_next_welcome() {
    let mut state = SimState::new(TIMINGS);
    state.emit_receipt("a", 0, "m1", ReceiptStatus::Delivered, vec![], 5);
    let injected = inject(&mut state, "a", Some(0), U1, "hello", 6);
    assert!(injected.queued);
    assert_eq!(state.stats(6).frames_queued, 2);

    let (session, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 7);

    let expected = vec![
        ServerFrame::Welcome { session: session.unwrap() },
        ServerFrame::Receipt { id: "m1".into(), status: ReceiptStatus::Delivered, timestamp: 5, errors: vec![] },
        ServerFrame::Inbound {
            id: injected.id,
            from: U1.into(),
            timestamp: 6,
            message: text("hello"),
            profile_name: None,
            media: None,
        },
    ];
    assert_eq!(drain(&mut frames), expected);
    assert_eq!(state.stats(7).frames_queued, 0);
}

#[test]
fn unsent_receipts_of_a_closed_session_wait_for_the_next_one_but_acks_do_not() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    state.close_session(&session, "eof", 1);
    let receipt = ServerFrame::Receipt { id: "m1".into(), status: ReceiptStatus::Read, timestamp: 1, errors: vec![] };
    let ack = ServerFrame::Ack { id: "m1".into(), server_id: "srv".into() };

    state.requeue_unsent(&session, vec![ack, receipt.clone()]);

    let (_, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 2);
    assert_eq!(drain(&mut frames)[1..], [receipt]);
}

#[test]
fn inbound_without_shard_lands_on_the_senders_shard_of_the_latest_shard_count() {
    let mut state = SimState::new(TIMINGS);
    assert_eq!(inject(&mut state, "a", None, "u1", "x", 0).shard, 0, "no session yet: shard 0");
    let _receivers: Vec<_> = (0..4).map(|shard| open(&mut state, claim("a", shard, "n1", 1), 0).1).collect();
    let expected = shard_of_sender("u1", 4);
    for _ in 0..3 {
        let injected = inject(&mut state, "a", None, "u1", "x", 1);
        assert_eq!((injected.shard, injected.queued), (expected, false));
    }
    let spread: HashSet<u32> = (0..64).map(|i| shard_of_sender(&format!("u{i}"), 4)).collect();
    assert_eq!(spread.len(), 4, "senders spread over all shards");
}

#[test]
fn hello_with_shard_out_of_range_is_refused() {
    let mut state = SimState::new(TIMINGS);
    let bad = SessionClaim { shard: 4, ..claim("a", 0, "n1", 1) };
    assert!(open(&mut state, bad, 0).0.unwrap_err().starts_with("bad hello"));
    assert_eq!(state.stats(0).sessions_refused, 1);
}

#[test]
fn message_to_an_unknown_number_is_acked_failed_and_never_delivered_and_its_resend_keeps_the_verdict() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();

    assert_eq!(errors(send(&mut state, &session, "m1", "0155512345", 1)), vec![1013]);
    let resent = send(&mut state, &session, "m1", "0155512345", 2);

    let SendOutcome::Accepted { resend: true, errors, .. } = resent else { panic!("{resent:?}") };
    assert_eq!(errors[0].title, "User is not valid");
    let stats = state.stats(2);
    assert_eq!((stats.messages_received, stats.unique_messages, stats.messages_failed, stats.resends), (2, 1, 1, 1));
    assert!(state.deliveries().is_empty());
    let records = state.messages();
    assert!(records.iter().all(|m| !m.delivered && m.errors.len() == 1), "{records:?}");
}

#[test]
fn each_message_type_is_judged_by_its_shape() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    let location = json!({"type":"location","location":{"latitude":1.5,"longitude":2.5}});
    let card = json!({"type":"contacts","contacts":[{"name":{"formatted_name":"Ann"}}]});
    let broken = json!({"type":"location","location":{"latitude":1.5}});

    assert!(errors(send_message(&mut state, &session, "m1", location)).is_empty());
    assert!(errors(send_message(&mut state, &session, "m2", card)).is_empty());
    assert_eq!(errors(send_message(&mut state, &session, "m3", broken)), vec![1008]);
    assert_eq!(state.deliveries()[U1], vec!["m1", "m2"]);
}

#[test]
fn a_template_message_needs_a_registered_template_with_its_parameter_count() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    let template = |params: usize| {
        let parameters: Vec<Value> = (0..params).map(|i| json!({"type":"text","text":i.to_string()})).collect();
        json!({"type":"template","template":{"namespace":"ns","name":"ready","language":{"code":"en"},
            "components":[{"type":"body","parameters":parameters}]}})
    };
    let hsm = json!({"type":"hsm","hsm":{"namespace":"ns","element_name":"ready","language":{"code":"en"},
        "localizable_params":[{"default":"a"},{"default":"b"}]}});

    assert_eq!(errors(send_message(&mut state, &session, "m1", template(2))), vec![2001]);
    let record = TemplateRecord { namespace: "ns".into(), name: "ready".into(), language: "en".into(), params: 2 };
    state.templates().register(record);

    assert_eq!(errors(send_message(&mut state, &session, "m2", template(1))), vec![2000]);
    assert!(errors(send_message(&mut state, &session, "m3", template(2))).is_empty());
    assert!(errors(send_message(&mut state, &session, "m4", hsm)).is_empty(), "an hsm uses the same registry");
}

#[test]
fn a_media_message_needs_the_medium_uploaded_by_its_account_and_never_a_link() {
    let mut state = SimState::new(TIMINGS);
    let (session, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let (other, _other_frames) = open(&mut state, claim("b", 0, "n1", 1), 0);
    let (session, other) = (session.unwrap(), other.unwrap());
    let image = |id: &str| json!({"type":"image","image":{"id":id,"caption":"look"}});

    assert_eq!(errors(send_message(&mut state, &session, "m1", image("pic"))), vec![1006]);
    let stored = state.receive_media_chunk(&other, chunk("pic", b"png bytes", true), 2);
    assert!(matches!(stored, Some(ServerFrame::MediaStored { .. })), "{stored:?}");
    assert_eq!(errors(send_message(&mut state, &session, "m2", image("pic"))), vec![1006], "b's upload is b's");

    let stored = state.receive_media_chunk(&session, chunk("pic", b"png bytes", true), 3);
    assert_eq!(stored, Some(ServerFrame::MediaStored { media_id: "pic".into(), sha256: sha256_hex(b"png bytes") }));
    assert!(errors(send_message(&mut state, &session, "m3", image("pic"))).is_empty());
    let link = json!({"type":"image","image":{"link":"https://example.com/a.png"}});
    assert_eq!(errors(send_message(&mut state, &session, "m4", link)), vec![1009]);
    assert_eq!(state.messages()[2].body, "look");
    assert!(drain(&mut frames).iter().all(|f| matches!(f, ServerFrame::Welcome { .. })), "answers go by the caller");
    assert_eq!(state.stats(3).media_stored, 2);
}

#[test]
fn a_closed_session_takes_no_chunks_and_loses_its_partial_upload() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    assert_eq!(state.receive_media_chunk(&session, chunk("pic", b"part", false), 1), None);
    state.close_session(&session, "eof", 2);

    assert_eq!(state.receive_media_chunk(&session, chunk("pic", b"rest", true), 3), None);
    let (next, _next_frames) = open(&mut state, claim("a", 0, "n1", 2), 4);
    let resumed = Chunk { offset: 4, ..chunk("pic", b"rest", true) };
    let answer = state.receive_media_chunk(&next.unwrap(), resumed, 5);
    assert!(matches!(answer, Some(ServerFrame::MediaRefused { .. })), "uploads do not span sessions: {answer:?}");
}

#[test]
fn mark_read_is_acked_like_a_send_recorded_against_the_inbound_message_and_gets_no_receipt() {
    let mut state = SimState::new(TIMINGS);
    let (session, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    let inbound = inject(&mut state, "a", Some(0), U1, "hello", 1);
    drain(&mut frames);

    let first = state.receive_mark_read(&session, "r1", &inbound.id, 2);
    let again = state.receive_mark_read(&session, "r1", &inbound.id, 3);

    let SendOutcome::Accepted { server_id, resend: false, .. } = first else { panic!("{first:?}") };
    assert_eq!(again, SendOutcome::Accepted { server_id, resend: true, ack_delay_ms: 0, errors: vec![] });
    assert!(drain(&mut frames).is_empty(), "no receipt for a read mark");
    let read = &state.inbox().messages()[0];
    assert_eq!((read.read_at_ms, read.read_marks), (Some(2), 2));
    assert_eq!(state.stats(3).mark_reads, 2);
    assert_eq!(state.stats(3).unique_messages, 0, "read marks are no messages");
    state.close_session(&session, "bye", 4);
    assert_eq!(state.receive_mark_read(&session, "r2", &inbound.id, 5), SendOutcome::SessionClosed);
}

#[test]
fn contact_checks_answer_on_open_sessions_only() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    let session = session.unwrap();
    let checked = state.check_contacts(&session, &["+1 555 111 0001".into(), "12".into()]).unwrap();
    let statuses: Vec<_> = checked.iter().map(|c| (c.status.as_str(), c.wa_id.as_deref())).collect();
    assert_eq!(statuses, vec![("valid", Some(U1)), ("invalid", None)]);
    state.close_session(&session, "bye", 1);
    assert_eq!(state.check_contacts(&session, &[U1.into()]), None);
    assert_eq!(state.stats(1).contact_checks, 1);
}

#[test]
fn the_message_record_shows_the_payload_and_the_latest_receipt() {
    let mut state = SimState::new(TIMINGS);
    let (session, _frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    send(&mut state, &session.unwrap(), "m1", U1, 1);
    assert_eq!(state.messages()[0].status, "accepted");

    state.emit_receipt("a", 0, "m1", ReceiptStatus::Delivered, vec![], 2);

    let record = &state.messages()[0];
    assert_eq!((record.status.as_str(), &record.message), ("delivered", &text("hi")));
}

#[test]
fn injected_media_travel_with_the_inbound_frame_and_are_described_in_the_answer() {
    let mut state = SimState::new(TIMINGS);
    let (_session, mut frames) = open(&mut state, claim("a", 0, "n1", 1), 0);
    drain(&mut frames);
    let request = json!({"account":"a","shard":0,"from":U1,"profile_name":"Ann",
        "message":{"type":"document","document":{"filename":"a.pdf"}},"media":{"size":10}});
    let inbound = serde_json::from_value::<InboundRequest>(request).unwrap().build().unwrap();

    let injected = state.inject_inbound(inbound, 1);

    let media = injected.media.clone().unwrap();
    assert_eq!((media.size, media.mime_type.as_str()), (10, "application/pdf"));
    let frames = drain(&mut frames);
    let [ServerFrame::Inbound { message, profile_name, media: Some(bytes), .. }] = &frames[..] else {
        panic!("{frames:?}")
    };
    assert_eq!(
        (message["document"]["sha256"].as_str(), profile_name.as_deref()),
        (Some(media.sha256.as_str()), Some("Ann"))
    );
    assert_eq!(bytes.sha256, media.sha256);
    assert_eq!(state.inbox().messages()[0].media_size, Some(10));
}
