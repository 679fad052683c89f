//! The signaling server against raw WebSocket clients speaking docs/spec/signaling.md.
//!
//! Every test binds its own server on 127.0.0.1:0. After each malformed input the test checks,
//! with `assert_service`, that the same socket still gets correct answers and that a second,
//! well-behaved client still gets full service (announce, discovery, offer/answer relay).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::signaling::protocol::{self, Capability};
use remotemedia_webrtc::signaling::server::ServerEvent;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::raw::*;

/// `same` still works, and a fresh client gets full service alongside it.
async fn assert_service(url: &str, same: &mut Client) {
    if same.peer_id.is_none() {
        same.announce(&unique("same")).await;
    }
    let same_id = same.id().to_owned();
    let mut fresh = Client::connect(url).await;
    let fresh_id = unique("fresh");
    let r = fresh.announce(&fresh_id).await;
    let peers: Vec<&str> = r["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert!(peers.contains(&same_id.as_str()), "{peers:?}");
    let announced = same.recv_notification(protocol::ANNOUNCED).await;
    // Earlier announcements may be queued first; find the fresh one.
    let mut announced = announced;
    while announced["peer_id"] != fresh_id.as_str() {
        announced = same.recv_notification(protocol::ANNOUNCED).await;
    }
    negotiate(&mut fresh, same, &unique("svc")).await;
    negotiate(same, &mut fresh, &unique("svc")).await;
    fresh.ws.close(None).await.ok();
    // The pair ends with the fresh client's socket.
    let gone = same.recv_notification(protocol::DISCONNECTED).await;
    assert_eq!(gone["from"], fresh_id.as_str());
    assert_eq!(gone["reason"], "network_error");
}

async fn next_event(events: &mut broadcast::Receiver<ServerEvent>) -> ServerEvent {
    timeout(WAIT, events.recv())
        .await
        .expect("no server event within 2 s")
        .expect("event channel")
}

async fn wait_left(events: &mut broadcast::Receiver<ServerEvent>, peer_id: &str) {
    loop {
        if let ServerEvent::PeerLeft { peer_id: p } = next_event(events).await {
            if p == peer_id {
                return;
            }
        }
    }
}

fn assert_iso8601(s: &Value) {
    let s = s.as_str().expect("string time");
    let b = s.as_bytes();
    assert_eq!(b.len(), 24, "{s}");
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19], b[23]),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
        "{s}"
    );
    assert!(s.starts_with("20"), "{s}");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn announce_lists_present_peers_and_broadcasts() {
    let server = start().await;
    let mut events = server.subscribe();
    let url = server.url();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    assert_eq!(
        server.local_addr().port(),
        url.rsplit(':').next().unwrap().parse::<u16>().unwrap()
    );

    let mut a = Client::connect(&url).await;
    let ra = a.announce("alice").await;
    assert_eq!(ra["peers"], json!([]));
    assert_iso8601(&ra["server_time"]);
    assert!(ra["session_key"].as_str().unwrap().len() >= 16);
    assert_eq!(
        next_event(&mut events).await,
        ServerEvent::PeerAnnounced {
            peer_id: "alice".into(),
            capabilities: vec![Capability::Audio, Capability::Video, Capability::Data],
            user_data: None,
        }
    );

    let mut b = Client::connect(&url).await;
    let rb = b
        .call_ok(
            protocol::ANNOUNCE,
            json!({"peer_id": "bob", "capabilities": ["data", "audio", "data"], "user_data": {"name": "Bob"}}),
        )
        .await;
    assert_eq!(rb["status"], "registered");
    assert_eq!(rb["peer_id"], "bob");
    assert_ne!(rb["session_key"], ra["session_key"]);
    assert_eq!(
        rb["peers"],
        json!([{"peer_id": "alice", "capabilities": ["audio", "video", "data"], "user_data": null}])
    );
    let ann = a.recv_notification(protocol::ANNOUNCED).await;
    assert_eq!(ann["peer_id"], "bob");
    assert_eq!(ann["capabilities"], json!(["data", "audio"]));
    assert_eq!(ann["user_data"], json!({"name": "Bob"}));
    assert_iso8601(&ann["announced_at"]);
    assert_eq!(
        next_event(&mut events).await,
        ServerEvent::PeerAnnounced {
            peer_id: "bob".into(),
            capabilities: vec![Capability::Data, Capability::Audio],
            user_data: Some(json!({"name": "Bob"})),
        }
    );

    let mut c = Client::connect(&url).await;
    let rc = c.announce("carol").await;
    let listed: Vec<&str> = rc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["alice", "bob"]);
    assert_eq!(rc["peers"][1]["user_data"], json!({"name": "Bob"}));
    assert_eq!(
        a.recv_notification(protocol::ANNOUNCED).await["peer_id"],
        "carol"
    );
    assert_eq!(
        b.recv_notification(protocol::ANNOUNCED).await["peer_id"],
        "carol"
    );
    assert_eq!(server.peer_ids(), ["alice", "bob", "carol"]);
    // The announcer is not told about itself.
    c.assert_nothing_pending().await;

    // An unannounced socket is not a peer and gets no broadcasts.
    let mut lurker = Client::connect(&url).await;
    let mut d = Client::connect(&url).await;
    d.announce("dave").await;
    lurker.assert_nothing_pending().await;

    b.ws.close(None).await.unwrap();
    wait_left(&mut events, "bob").await;
    assert_eq!(server.peer_ids(), ["alice", "carol", "dave"]);
    // Bob had no pair, so nobody is told.
    a.recv_notification(protocol::ANNOUNCED).await; // dave
    a.assert_nothing_pending().await;
    server.close().await;
}

#[tokio::test]
async fn reannounce_same_socket_ok_other_socket_refused() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let first = a.announce("alice").await;
    let again = a.announce("alice").await;
    assert_eq!(again["session_key"], first["session_key"]);

    let mut intruder = Client::connect(&url).await;
    let code = intruder
        .call_err(
            protocol::ANNOUNCE,
            json!({"peer_id": "alice", "capabilities": ["data"]}),
        )
        .await;
    assert_eq!(code, protocol::PEER_NOT_FOUND);
    assert_eq!(server.peer_ids(), ["alice"]);
    // The same socket cannot switch identities either.
    let code = a
        .call_err(
            protocol::ANNOUNCE,
            json!({"peer_id": "mallory", "capabilities": ["data"]}),
        )
        .await;
    assert_eq!(code, protocol::INVALID_PARAMS);
    assert_service(&url, &mut intruder).await;
    assert_service(&url, &mut a).await;

    // Once alice's socket is gone, the id is free again.
    let mut events = server.subscribe();
    drop(a);
    wait_left(&mut events, "alice").await;
    let mut back = Client::connect(&url).await;
    back.announce("alice").await;
    server.close().await;
}

#[tokio::test]
async fn offer_answer_relay_with_request_ids() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;

    negotiate(&mut a, &mut b, "req-1").await;
    // The same offer cannot be answered twice.
    let code = b
        .call_err(protocol::ANSWER, answer_params("bob", "alice", "req-1"))
        .await;
    assert_eq!(code, protocol::ANSWER_INVALID);
    // Renegotiation in the other direction, then two offers in flight at once.
    negotiate(&mut b, &mut a, "req-2").await;
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "x"))
        .await;
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "y"))
        .await;
    assert_eq!(
        b.recv_notification(protocol::OFFER).await["request_id"],
        "x"
    );
    assert_eq!(
        b.recv_notification(protocol::OFFER).await["request_id"],
        "y"
    );
    b.call_ok(protocol::ANSWER, answer_params("bob", "alice", "y"))
        .await;
    b.call_ok(protocol::ANSWER, answer_params("bob", "alice", "x"))
        .await;
    assert_eq!(
        a.recv_notification(protocol::ANSWER).await["request_id"],
        "y"
    );
    assert_eq!(
        a.recv_notification(protocol::ANSWER).await["request_id"],
        "x"
    );

    // Missing can_trickle_ice_candidates defaults to true; the target sees the normalized form.
    let r = a
        .call_ok(
            protocol::OFFER,
            json!({"from": "alice", "to": "bob", "sdp": "v=0\r\n", "request_id": "z"}),
        )
        .await;
    assert_eq!(r["request_id"], "z");
    assert_eq!(
        b.recv_notification(protocol::OFFER).await,
        json!({"from": "alice", "to": "bob", "sdp": "v=0\r\n", "request_id": "z", "can_trickle_ice_candidates": true})
    );

    // Unknown target, self-offer, empty sdp.
    assert_eq!(
        a.call_err(protocol::OFFER, offer_params("alice", "nobody", "q"))
            .await,
        protocol::PEER_NOT_FOUND
    );
    assert_eq!(
        a.call_err(protocol::OFFER, offer_params("alice", "alice", "q"))
            .await,
        protocol::OFFER_INVALID
    );
    let mut empty = offer_params("alice", "bob", "q");
    empty["sdp"] = json!("  ");
    assert_eq!(
        a.call_err(protocol::OFFER, empty).await,
        protocol::OFFER_INVALID
    );
    assert_eq!(
        b.call_err(protocol::ANSWER, answer_params("bob", "nobody", "z"))
            .await,
        protocol::PEER_NOT_FOUND
    );
    b.assert_nothing_pending().await;
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn answer_with_wrong_request_id_is_refused() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    c.announce("carol").await;

    // No offer at all.
    assert_eq!(
        b.call_err(protocol::ANSWER, answer_params("bob", "alice", "r1"))
            .await,
        protocol::ANSWER_INVALID
    );
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "r1"))
        .await;
    b.recv_notification(protocol::OFFER).await;
    // Wrong request id.
    assert_eq!(
        b.call_err(protocol::ANSWER, answer_params("bob", "alice", "r2"))
            .await,
        protocol::ANSWER_INVALID
    );
    // Right id, but carol was not the one offered to.
    assert_eq!(
        c.call_err(protocol::ANSWER, answer_params("carol", "alice", "r1"))
            .await,
        protocol::ANSWER_INVALID
    );
    // The offerer cannot answer its own offer.
    assert_eq!(
        a.call_err(protocol::ANSWER, answer_params("alice", "bob", "r1"))
            .await,
        protocol::ANSWER_INVALID
    );
    a.assert_nothing_pending().await;
    // The right answer still goes through.
    b.call_ok(protocol::ANSWER, answer_params("bob", "alice", "r1"))
        .await;
    assert_eq!(
        a.recv_notification(protocol::ANSWER).await["request_id"],
        "r1"
    );
    assert_service(&url, &mut b).await;
    server.close().await;
}

#[tokio::test]
async fn pending_offers_expire() {
    let server = start_with(|c| c.offer_timeout = Duration::from_millis(300)).await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "late"))
        .await;
    b.recv_notification(protocol::OFFER).await;
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "soon"))
        .await;
    b.recv_notification(protocol::OFFER).await;
    b.call_ok(protocol::ANSWER, answer_params("bob", "alice", "soon"))
        .await;
    a.recv_notification(protocol::ANSWER).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        b.call_err(protocol::ANSWER, answer_params("bob", "alice", "late"))
            .await,
        protocol::ANSWER_INVALID
    );
    // Candidates of the expired offer are dropped; those of the answered one still flow.
    let late = json!({"from": "alice", "to": "bob", "candidate": "candidate:1 1 udp 1 10.0.0.1 1 typ host", "sdp_mid": "0", "sdp_m_line_index": 0, "request_id": "late"});
    let soon = json!({"from": "alice", "to": "bob", "candidate": "candidate:2 1 udp 1 10.0.0.2 2 typ host", "sdp_mid": "0", "sdp_m_line_index": 0, "request_id": "soon"});
    a.notify(protocol::ICE_CANDIDATE, late).await;
    a.notify(protocol::ICE_CANDIDATE, soon.clone()).await;
    assert_eq!(b.recv_notification(protocol::ICE_CANDIDATE).await, soon);
    server.close().await;
}

#[tokio::test]
async fn ice_candidates_are_relayed_at_once() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "r1"))
        .await;
    b.recv_notification(protocol::OFFER).await;

    // Trickled before the answer, both ways, with every optional field.
    let cand = json!({
        "from": "alice", "to": "bob",
        "candidate": "candidate:842163049 1 udp 1677729535 192.0.2.7 54400 typ srflx raddr 0.0.0.0 rport 0",
        "sdp_m_line_index": 0, "sdp_mid": "0", "user_fragment": "uf", "password": "pw", "request_id": "r1",
    });
    a.notify(protocol::ICE_CANDIDATE, cand.clone()).await;
    assert_eq!(b.recv_notification(protocol::ICE_CANDIDATE).await, cand);
    let back = json!({"from": "bob", "to": "alice", "candidate": "candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host", "sdp_m_line_index": 1, "sdp_mid": "1", "request_id": "r1"});
    b.notify(protocol::ICE_CANDIDATE, back.clone()).await;
    assert_eq!(a.recv_notification(protocol::ICE_CANDIDATE).await, back);

    // End of candidates, no request id: forwarded at once (null mid/index kept).
    let end = json!({"from": "alice", "to": "bob", "candidate": ""});
    a.notify(protocol::ICE_CANDIDATE, end).await;
    assert_eq!(
        b.recv_notification(protocol::ICE_CANDIDATE).await,
        json!({"from": "alice", "to": "bob", "candidate": "", "sdp_m_line_index": null, "sdp_mid": null})
    );

    // Unknown request id: dropped silently. The next candidate is the next frame bob sees.
    let unknown = json!({"from": "alice", "to": "bob", "candidate": "candidate:9 1 udp 1 10.9.9.9 9 typ host", "sdp_mid": "0", "sdp_m_line_index": 0, "request_id": "nope"});
    a.notify(protocol::ICE_CANDIDATE, unknown.clone()).await;
    a.notify(protocol::ICE_CANDIDATE, cand.clone()).await;
    assert_eq!(b.recv().await["params"], cand);

    // As requests they get answers.
    assert_eq!(
        a.call_ok(protocol::ICE_CANDIDATE, cand.clone()).await,
        json!({"status": "forwarded"})
    );
    assert_eq!(b.recv_notification(protocol::ICE_CANDIDATE).await, cand);
    assert_eq!(
        a.call_ok(protocol::ICE_CANDIDATE, unknown).await,
        json!({"status": "dropped"})
    );
    let mut multi = cand.clone();
    multi["candidate"] = json!("candidate:1 1 udp 1 10.0.0.1 1 typ host\r\na=evil");
    assert_eq!(
        a.call_err(protocol::ICE_CANDIDATE, multi).await,
        protocol::ICE_CANDIDATE_INVALID
    );
    let mut nobody = cand.clone();
    nobody["to"] = json!("nobody");
    nobody.as_object_mut().unwrap().remove("request_id");
    assert_eq!(
        a.call_err(protocol::ICE_CANDIDATE, nobody).await,
        protocol::PEER_NOT_FOUND
    );
    b.assert_nothing_pending().await;
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn garbage_text_is_a_parse_error() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    for garbage in [
        "hello",
        "{",
        "{\"jsonrpc\":\"2.0\",\"id\":1,",
        "",
        "\u{1F600}",
    ] {
        a.send_text(garbage).await;
        let r = a.recv().await;
        assert_eq!(r["jsonrpc"], "2.0");
        assert_eq!(r["id"], Value::Null, "{garbage:?}");
        assert_eq!(r["error"]["code"], protocol::PARSE_ERROR, "{garbage:?}");
    }
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn non_jsonrpc_values_are_invalid_requests() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let cases = [
        ("[1,2]", Value::Null),
        ("42", Value::Null),
        ("\"str\"", Value::Null),
        ("null", Value::Null),
        ("{}", Value::Null),
        (r#"{"id":5,"method":"peer.announce"}"#, json!(5)),
        (
            r#"{"jsonrpc":"1.0","id":"x","method":"peer.announce"}"#,
            json!("x"),
        ),
        (r#"{"jsonrpc":"2.0","id":6,"method":7}"#, json!(6)),
        (
            r#"{"jsonrpc":"2.0","id":{"k":1},"method":"peer.announce"}"#,
            Value::Null,
        ),
    ];
    for (text, id) in cases {
        a.send_text(text).await;
        let r = a.recv().await;
        assert_eq!(r["error"]["code"], protocol::INVALID_REQUEST, "{text}");
        assert_eq!(r["id"], id, "{text}");
    }
    a.ws.send(Message::binary(b"{\"jsonrpc\":\"2.0\"}".to_vec()))
        .await
        .unwrap();
    let r = a.recv().await;
    assert_eq!(r["error"]["code"], protocol::INVALID_REQUEST);
    // Responses from a client are ignored (the server sends no requests).
    a.send_text(r#"{"jsonrpc":"2.0","id":1,"result":true}"#)
        .await;
    a.assert_nothing_pending().await;
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn unknown_method_is_method_not_found() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let r = a.request("peer.teleport", json!({})).await;
    assert_eq!(r["error"]["code"], protocol::METHOD_NOT_FOUND);
    // Unprefixed seed names are not the contract; server→client methods are not callable.
    for m in ["announce", protocol::ANNOUNCED, protocol::DISCONNECTED] {
        assert_eq!(
            a.call_err(m, json!({})).await,
            protocol::METHOD_NOT_FOUND,
            "{m}"
        );
    }
    a.announce("alice").await;
    assert_eq!(
        a.call_err("peer.teleport", json!({})).await,
        protocol::METHOD_NOT_FOUND
    );
    // A notification with an unknown method gets nothing.
    a.notify("peer.teleport", json!({})).await;
    a.assert_nothing_pending().await;
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn missing_or_ill_typed_params_are_invalid_params() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let bad_announces = [
        Value::Null,
        json!([]),
        json!("alice"),
        json!({}),
        json!({"peer_id": "alice"}),
        json!({"capabilities": ["audio"]}),
        json!({"peer_id": 12, "capabilities": ["audio"]}),
        json!({"peer_id": "alice", "capabilities": "audio"}),
        json!({"peer_id": "alice", "capabilities": []}),
        json!({"peer_id": "alice", "capabilities": ["smell"]}),
    ];
    for params in bad_announces {
        a.send_json(
            json!({"jsonrpc": "2.0", "id": "p", "method": protocol::ANNOUNCE, "params": params}),
        )
        .await;
        let r = a.response_to(json!("p")).await;
        assert_eq!(r["error"]["code"], protocol::INVALID_PARAMS, "{params}");
    }
    // Params omitted entirely.
    a.send_text(r#"{"jsonrpc":"2.0","id":"q","method":"peer.announce"}"#)
        .await;
    assert_eq!(
        a.response_to(json!("q")).await["error"]["code"],
        protocol::INVALID_PARAMS
    );
    assert!(server.peer_ids().is_empty());

    a.announce("alice").await;
    let mut b = Client::connect(&url).await;
    b.announce("bob").await;
    let bad_offers = [
        json!({"from": "alice", "to": "bob", "request_id": "r"}),
        json!({"from": "alice", "to": "bob", "sdp": "v=0"}),
        json!({"from": "alice", "to": "bob", "sdp": 5, "request_id": "r"}),
        json!({"from": "alice", "to": "bob", "sdp": "v=0", "request_id": 9}),
        json!({"from": "alice", "to": "bob", "sdp": "v=0", "request_id": ""}),
        json!({"from": "alice", "to": "bob", "sdp": "v=0", "request_id": "r", "can_trickle_ice_candidates": "yes"}),
        json!({"from": "alice", "sdp": "v=0", "request_id": "r"}),
    ];
    for params in bad_offers {
        assert_eq!(
            a.call_err(protocol::OFFER, params.clone()).await,
            protocol::INVALID_PARAMS,
            "{params}"
        );
    }
    assert_eq!(
        a.call_err(
            protocol::ICE_CANDIDATE,
            json!({"from": "alice", "to": "bob"})
        )
        .await,
        protocol::INVALID_PARAMS
    );
    assert_eq!(
        a.call_err(
            protocol::ICE_CANDIDATE,
            json!({"from": "alice", "to": "bob", "candidate": "", "sdp_m_line_index": "0"})
        )
        .await,
        protocol::INVALID_PARAMS
    );
    assert_eq!(
        a.call_err(
            protocol::DISCONNECT,
            json!({"from": "alice", "to": "bob", "reason": "bored"})
        )
        .await,
        protocol::INVALID_PARAMS
    );
    assert_eq!(
        a.call_err(protocol::STATE_CHANGED, json!({"from": "alice"}))
            .await,
        protocol::INVALID_PARAMS
    );
    b.assert_nothing_pending().await;
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn bad_peer_ids_are_invalid_params() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let too_long = "x".repeat(65);
    for id in ["", "a b", "a.b", "ali/ce", "é", "a\nb", too_long.as_str()] {
        assert_eq!(
            a.call_err(
                protocol::ANNOUNCE,
                json!({"peer_id": id, "capabilities": ["audio"]})
            )
            .await,
            protocol::INVALID_PARAMS,
            "{id:?}"
        );
    }
    assert!(server.peer_ids().is_empty());
    let longest = "y".repeat(64);
    a.announce(&longest).await;
    assert_eq!(server.peer_ids(), std::slice::from_ref(&longest));
    // A bad target id is refused too.
    assert_eq!(
        a.call_err(protocol::OFFER, offer_params(&longest, "no such/peer", "r"))
            .await,
        protocol::INVALID_PARAMS
    );
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn methods_before_announce_are_refused() {
    let server = start().await;
    let url = server.url();
    let mut b = Client::connect(&url).await;
    b.announce("bob").await;
    let mut a = Client::connect(&url).await;
    for (m, p) in [
        (protocol::OFFER, offer_params("alice", "bob", "r")),
        (protocol::ANSWER, answer_params("alice", "bob", "r")),
        (
            protocol::ICE_CANDIDATE,
            json!({"from": "alice", "to": "bob", "candidate": ""}),
        ),
        (
            protocol::STATE_CHANGED,
            json!({"from": "alice", "to": "bob"}),
        ),
        (
            protocol::DISCONNECT,
            json!({"from": "alice", "to": "bob", "reason": "unknown"}),
        ),
    ] {
        let r = a.request(m, p).await;
        assert_eq!(r["error"]["code"], protocol::INVALID_PARAMS, "{m}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not announced"),
            "{r}"
        );
    }
    // As notifications they are dropped.
    a.notify(
        protocol::ICE_CANDIDATE,
        json!({"from": "alice", "to": "bob", "candidate": ""}),
    )
    .await;
    a.notify(
        protocol::DISCONNECT,
        json!({"from": "alice", "to": "bob", "reason": "unknown"}),
    )
    .await;
    a.assert_nothing_pending().await;
    b.assert_nothing_pending().await;
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn spoofed_from_is_refused() {
    let server = start().await;
    let url = server.url();
    let mut m = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    m.announce("mallory").await;
    b.announce("bob").await;
    c.announce("carol").await;
    b.call_ok(protocol::OFFER, offer_params("bob", "carol", "r1"))
        .await;
    c.recv_notification(protocol::OFFER).await;

    // Requests speaking for bob.
    for (method, params) in [
        (protocol::OFFER, offer_params("bob", "carol", "r2")),
        (protocol::ANSWER, answer_params("carol", "bob", "r1")),
        (
            protocol::ICE_CANDIDATE,
            json!({"from": "bob", "to": "carol", "candidate": "", "request_id": "r1"}),
        ),
        (
            protocol::DISCONNECT,
            json!({"from": "bob", "to": "carol", "reason": "user_requested"}),
        ),
        (
            protocol::STATE_CHANGED,
            json!({"from": "bob", "to": "carol"}),
        ),
    ] {
        assert_eq!(
            m.call_err(method, params).await,
            protocol::INVALID_PARAMS,
            "{method}"
        );
    }
    // Notifications speaking for bob are dropped: carol's next frame is bob's real candidate.
    m.notify(protocol::ICE_CANDIDATE, json!({"from": "bob", "to": "carol", "candidate": "candidate:6 1 udp 1 6.6.6.6 6 typ host", "request_id": "r1"}))
        .await;
    m.notify(
        protocol::DISCONNECT,
        json!({"from": "bob", "to": "carol", "reason": "user_requested"}),
    )
    .await;
    m.assert_nothing_pending().await;
    let real = json!({"from": "bob", "to": "carol", "candidate": "candidate:1 1 udp 1 10.0.0.1 1 typ host", "sdp_m_line_index": 0, "sdp_mid": "0", "request_id": "r1"});
    b.notify(protocol::ICE_CANDIDATE, real.clone()).await;
    assert_eq!(c.recv().await["params"], real);
    c.assert_nothing_pending().await;
    // Carol can still answer bob: the spoofed answer did not consume the offer.
    c.call_ok(protocol::ANSWER, answer_params("carol", "bob", "r1"))
        .await;
    assert_eq!(
        b.recv_notification(protocol::ANSWER).await["request_id"],
        "r1"
    );
    assert_service(&url, &mut m).await;
    server.close().await;
}

#[tokio::test]
async fn oversize_sdp_and_user_data_are_invalid_params() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    // user_data: exactly 1024 bytes serialized is fine, 1025 is not.
    let at_limit = json!("u".repeat(protocol::MAX_USER_DATA_BYTES - 2));
    assert_eq!(at_limit.to_string().len(), protocol::MAX_USER_DATA_BYTES);
    let over = json!("u".repeat(protocol::MAX_USER_DATA_BYTES - 1));
    assert_eq!(
        a.call_err(
            protocol::ANNOUNCE,
            json!({"peer_id": "alice", "capabilities": ["data"], "user_data": over})
        )
        .await,
        protocol::INVALID_PARAMS
    );
    assert_eq!(
        a.call_err(protocol::ANNOUNCE, json!({"peer_id": "alice", "capabilities": ["data"], "user_data": {"blob": "x".repeat(2000)}}))
            .await,
        protocol::INVALID_PARAMS
    );
    assert!(server.peer_ids().is_empty());
    a.call_ok(
        protocol::ANNOUNCE,
        json!({"peer_id": "alice", "capabilities": ["data"], "user_data": at_limit}),
    )
    .await;
    a.peer_id = Some("alice".into());

    let mut b = Client::connect(&url).await;
    b.announce("bob").await;
    let mut offer = offer_params("alice", "bob", "big");
    offer["sdp"] = json!(format!("v=0\r\n{}", "a".repeat(protocol::MAX_SDP_BYTES)));
    assert_eq!(
        a.call_err(protocol::OFFER, offer.clone()).await,
        protocol::INVALID_PARAMS
    );
    offer["sdp"] = json!("s".repeat(protocol::MAX_SDP_BYTES));
    a.call_ok(protocol::OFFER, offer).await;
    let got = b.recv_notification(protocol::OFFER).await;
    assert_eq!(got["sdp"].as_str().unwrap().len(), protocol::MAX_SDP_BYTES);
    let mut answer = answer_params("bob", "alice", "big");
    answer["sdp"] = json!("s".repeat(protocol::MAX_SDP_BYTES + 1));
    assert_eq!(
        b.call_err(protocol::ANSWER, answer).await,
        protocol::INVALID_PARAMS
    );
    // The refused answer did not consume the offer.
    b.call_ok(protocol::ANSWER, answer_params("bob", "alice", "big"))
        .await;
    a.recv_notification(protocol::ANSWER).await;
    assert_service(&url, &mut a).await;
    assert_service(&url, &mut b).await;
    server.close().await;
}

#[tokio::test]
async fn oversize_frames_are_refused_and_huge_ones_close_the_socket() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    a.announce("alice").await;

    // Above MAX_FRAME_BYTES: -32602 with the request's id, socket open.
    let pad = "p".repeat(protocol::MAX_FRAME_BYTES + 1);
    a.send_json(json!({"jsonrpc": "2.0", "id": "huge", "method": protocol::ANNOUNCE, "params": {"peer_id": "alice", "capabilities": ["data"], "pad": pad}}))
        .await;
    let r = a.response_to(json!("huge")).await;
    assert_eq!(r["error"]["code"], protocol::INVALID_PARAMS);
    // Not a request: the id is unknown.
    a.send_text(format!("[\"{pad}\"]")).await;
    let r = a.recv().await;
    assert_eq!(r["error"]["code"], protocol::INVALID_PARAMS);
    assert_eq!(r["id"], Value::Null);
    // Just under the limit is processed normally (and fails on its merits).
    let under = "q".repeat(protocol::MAX_FRAME_BYTES - 200);
    a.send_json(json!({"jsonrpc": "2.0", "id": "under", "method": "peer.nothing", "params": {"pad": under}}))
        .await;
    assert_eq!(
        a.response_to(json!("under")).await["error"]["code"],
        protocol::METHOD_NOT_FOUND
    );
    assert_service(&url, &mut a).await;

    // Above MAX_WS_MESSAGE_BYTES: the socket is closed (close code 1009 when the frame arrives
    // before the reset).
    let mut events = server.subscribe();
    let mut big = Client::connect(&url).await;
    big.announce("big").await;
    let _ = big
        .ws
        .send(Message::text(
            "z".repeat(protocol::MAX_WS_MESSAGE_BYTES + 1),
        ))
        .await;
    let end = timeout(WAIT, async {
        loop {
            match big.ws.next().await {
                Some(Ok(Message::Close(frame))) => return Some(frame),
                Some(Ok(Message::Text(t))) => panic!("expected the socket to close, got {t}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("socket was not closed");
    if let Some(Some(frame)) = end {
        assert_eq!(frame.code, CloseCode::Size);
    }
    wait_left(&mut events, "big").await;
    assert!(!server.peer_ids().contains(&"big".to_owned()));
    assert_service(&url, &mut a).await;
    server.close().await;
}

#[tokio::test]
async fn peer_vanishing_mid_offer_is_reported_as_network_error() {
    let server = start().await;
    let mut events = server.subscribe();
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    c.announce("carol").await;
    a.call_ok(protocol::OFFER, offer_params("alice", "bob", "r1"))
        .await;
    b.recv_notification(protocol::OFFER).await;

    drop(a); // no close handshake: the TCP connection just goes
    let gone = b.recv_notification(protocol::DISCONNECTED).await;
    assert_eq!(
        gone,
        json!({"from": "alice", "reason": "network_error", "request_id": "r1"})
    );
    wait_left(&mut events, "alice").await;
    assert_eq!(server.peer_ids(), ["bob", "carol"]);
    // Carol had no pair with alice and hears nothing.
    c.assert_nothing_pending().await;
    // Bob's answer to the vanished offerer: peer not found.
    assert_eq!(
        b.call_err(protocol::ANSWER, answer_params("bob", "alice", "r1"))
            .await,
        protocol::PEER_NOT_FOUND
    );
    assert_service(&url, &mut b).await;
    server.close().await;
}

#[tokio::test]
async fn disconnect_is_relayed_and_ends_the_pair() {
    let server = start().await;
    let mut events = server.subscribe();
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    negotiate(&mut a, &mut b, "r1").await;

    a.notify(protocol::DISCONNECT, json!({"from": "alice", "to": "bob", "reason": "user_requested", "details": "bye", "request_id": "r1"}))
        .await;
    assert_eq!(
        b.recv_notification(protocol::DISCONNECTED).await,
        json!({"from": "alice", "reason": "user_requested", "request_id": "r1"})
    );
    // The pair is over: candidates of its session are dropped, and alice leaving later is not
    // reported to bob again.
    a.notify(
        protocol::ICE_CANDIDATE,
        json!({"from": "alice", "to": "bob", "candidate": "", "request_id": "r1"}),
    )
    .await;
    a.assert_nothing_pending().await;
    drop(a);
    wait_left(&mut events, "alice").await;
    b.assert_nothing_pending().await;
    // As a request to an unknown peer: -32000.
    assert_eq!(
        b.call_err(
            protocol::DISCONNECT,
            json!({"from": "bob", "to": "alice", "reason": "timeout"})
        )
        .await,
        protocol::PEER_NOT_FOUND
    );
    server.close().await;
}

#[tokio::test]
async fn state_changed_is_accepted_not_forwarded() {
    let server = start().await;
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    let state = json!({
        "from": "alice", "to": "bob", "connection_state": "connected", "ice_connection_state": "connected",
        "ice_gathering_state": "complete", "signaling_state": "stable", "request_id": "r1",
        "timestamp": "2024-01-01T00:00:00.000Z",
    });
    a.notify(protocol::STATE_CHANGED, state.clone()).await;
    assert_eq!(
        a.call_ok(protocol::STATE_CHANGED, state).await,
        json!({"status": "accepted"})
    );
    b.assert_nothing_pending().await;
    server.close().await;
}

#[tokio::test]
async fn max_peers_is_enforced() {
    let server = start_with(|c| c.max_peers = 2).await;
    let mut events = server.subscribe();
    let url = server.url();
    let mut a = Client::connect(&url).await;
    let mut b = Client::connect(&url).await;
    let mut c = Client::connect(&url).await;
    a.announce("alice").await;
    b.announce("bob").await;
    assert_eq!(
        c.call_err(
            protocol::ANNOUNCE,
            json!({"peer_id": "carol", "capabilities": ["data"]})
        )
        .await,
        protocol::LIMIT_EXCEEDED
    );
    // Re-announcing an existing registration does not count twice.
    a.announce("alice").await;
    drop(b);
    wait_left(&mut events, "bob").await;
    c.announce("carol").await;
    assert_eq!(server.peer_ids(), ["alice", "carol"]);
    server.close().await;
}

async fn http_get(addr: std::net::SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("http response timed out")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn plain_http_gets_the_page_or_404() {
    let page = "<!doctype html><title>signaling</title><p>hello</p>";
    let server = start_with(|c| c.http_page = Some(page.into())).await;
    let addr = server.local_addr();
    for path in ["/", "/index.html", "/?x=1"] {
        let r = http_get(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/html"), "{r}");
        assert!(
            r.contains(&format!("Content-Length: {}\r\n", page.len())),
            "{r}"
        );
        assert!(r.ends_with(page), "{r}");
    }
    let r = http_get(addr, "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = http_get(addr, "GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = http_get(
        addr,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    let r = http_get(addr, "complete nonsense\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    // The head arriving in pieces is still read whole.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200 OK") && out.ends_with(page),
        "{out}"
    );

    // WebSocket on any path, next to the page.
    let base = server.url();
    for path in ["", "/", "/ws", "/any/path?q=1"] {
        let mut c = Client::connect(&format!("{base}{path}")).await;
        c.announce(&unique("path")).await;
    }

    // Without a page: 404 on /.
    let bare = start().await;
    let r = http_get(
        bare.local_addr(),
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    bare.close().await;
    server.close().await;
}

#[tokio::test]
async fn close_ends_everything_and_refuses_new_connections() {
    let server = start().await;
    let mut events = server.subscribe();
    let url = server.url();
    let mut a = Client::connect(&url).await;
    a.announce("alice").await;
    let mut idle = Client::connect(&url).await; // never announces
    next_event(&mut events).await;

    timeout(Duration::from_secs(5), server.close())
        .await
        .expect("close() hung");
    for c in [&mut a, &mut idle] {
        let end = timeout(WAIT, async {
            loop {
                match c.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(other)) => panic!("unexpected {other:?}"),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("socket stayed open after close()");
        assert_eq!(end, Some(CloseCode::Away));
    }
    assert!(server.peer_ids().is_empty());
    assert_eq!(
        next_event(&mut events).await,
        ServerEvent::PeerLeft {
            peer_id: "alice".into()
        }
    );
    assert!(tokio_tungstenite::connect_async(url.as_str())
        .await
        .is_err());
    assert!(TcpStream::connect(server.local_addr()).await.is_err());
    // Idempotent.
    timeout(WAIT, server.close())
        .await
        .expect("second close() hung");
}

#[tokio::test]
async fn dropping_the_server_stops_accepting() {
    let server = start().await;
    let addr = server.local_addr();
    let mut a = Client::connect(&server.url()).await;
    a.announce("alice").await;
    drop(server);
    let refused = timeout(WAIT, async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after drop");
    let closed = timeout(WAIT, async {
        loop {
            match a.ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "client socket still open after drop");
}

#[tokio::test]
async fn keep_alive_pings_and_drops_silent_clients() {
    let server = start_with(|c| c.ping_interval = Duration::from_millis(200)).await;
    let mut events = server.subscribe();
    let url = server.url();
    let mut live = Client::connect(&url).await;
    live.announce("live").await;
    let mut silent = Client::connect(&url).await;
    silent.announce("silent").await;
    // `silent` stops reading here, so its client library never answers the pings.
    let t0 = tokio::time::Instant::now();
    next_event(&mut events).await;
    next_event(&mut events).await;

    // Meanwhile `live` keeps reading: it sees pings (its library answers them) and survives.
    let mut pings = 0;
    let mut checked_early = false;
    let watch = t0 + Duration::from_millis(1000);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(t0 + Duration::from_millis(250)), if !checked_early => {
                checked_early = true;
                // Not dropped before 2 × ping_interval of silence (skipped if this test was
                // descheduled past the deadline).
                if t0.elapsed() < Duration::from_millis(380) {
                    assert!(server.peer_ids().contains(&"silent".to_owned()), "dropped too early");
                }
            }
            msg = tokio::time::timeout_at(watch, live.ws.next()) => {
                let Ok(msg) = msg else { break };
                match msg.expect("live socket ended").expect("live socket error") {
                    Message::Ping(_) => pings += 1,
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap();
                        assert_eq!(v["method"], protocol::ANNOUNCED);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    }
    assert!(pings >= 3, "only {pings} pings in 1 s at a 200 ms interval");
    assert_eq!(
        next_event(&mut events).await,
        ServerEvent::PeerLeft {
            peer_id: "silent".into()
        }
    );
    assert_eq!(server.peer_ids(), ["live"]);
    assert_service(&url, &mut live).await;
    drop(silent);
    server.close().await;
}

#[tokio::test]
async fn a_client_that_never_reads_its_responses_is_dropped_without_stalling_others() {
    // Budgets out of the way: the client's own queue is what gives out here.
    let server = start_with(|c| {
        c.message_budget = remotemedia_webrtc::signaling::server::Budget::new(1e9, 1e9);
        c.byte_budget = remotemedia_webrtc::signaling::server::Budget::new(1e12, 1e12);
    })
    .await;
    let mut events = server.subscribe();
    let url = server.url();
    let mut partner = Client::connect(&url).await;
    partner.announce("partner").await;
    let mut stuck = Client::connect(&url).await;
    stuck.announce("stuck").await;
    let mut bystander = Client::connect(&url).await;
    bystander.announce("bystander").await;
    negotiate(&mut partner, &mut stuck, "r1").await;
    // `stuck` sends requests and never reads their responses: once its queue (1024 frames) and
    // the socket buffers are full, the server drops it. (Frames other peers relay to a full
    // queue are refused to their sender instead: tests/hostile_signaling.rs.)
    let flood = async {
        for i in 0..2_000_000u64 {
            let frame = protocol::request(i, "test.no_such_method", json!({}));
            if stuck.ws.send(Message::text(frame)).await.is_err() {
                break;
            }
        }
    };
    let gone = async {
        loop {
            if let Ok(ServerEvent::PeerLeft { peer_id }) = events.recv().await {
                if peer_id == "stuck" {
                    break;
                }
            }
        }
    };
    tokio::pin!(gone);
    timeout(Duration::from_secs(60), async {
        tokio::select! {
            _ = flood => (&mut gone).await,
            _ = &mut gone => {}
        }
    })
    .await
    .expect("the stuck client was never dropped");
    assert!(!server.peer_ids().contains(&"stuck".to_owned()));
    // Its partner is told.
    let gone = partner.recv_notification(protocol::DISCONNECTED).await;
    assert_eq!(gone["from"], "stuck");
    assert_eq!(gone["reason"], "network_error");
    // Everybody else is fine.
    assert_service(&url, &mut bystander).await;
    assert_service(&url, &mut partner).await;
    drop(stuck);
    server.close().await;
}
