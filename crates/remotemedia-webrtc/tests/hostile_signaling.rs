//! Hostile clients at the message/protocol level (issue 12): floods that tried to evict a peer,
//! peer-id hijack, announce poisoning, offer squatting, relays outside a pair.
//!
//! Every attack runs next to a *canary*: two raw clients with a live pair, one relaying an ICE
//! candidate to the other every 20 ms through the same server. The canary must not miss one,
//! its sockets must stay open, and a fresh peer must still be able to announce afterwards.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::signaling::protocol;
use remotemedia_webrtc::signaling::server::Budget;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::raw::*;

impl Client {
    /// Announces with extra fields (`user_data`, `session_key`); returns the whole response.
    async fn announce_with(&mut self, peer_id: &str, extra: Value) -> Value {
        let mut params = json!({"peer_id": peer_id, "capabilities": ["data"]});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        self.request(protocol::ANNOUNCE, params).await
    }

    /// Only announcements are queued for this client: it reads up to the response of a
    /// probe request and returns the `peer.announced` params it skipped.
    async fn drain_announcements(&mut self) -> Vec<Value> {
        let mut seen: Vec<Value> = std::mem::take(&mut self.backlog).into();
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(protocol::request(id, "test.no_such_method", json!({})))
            .await;
        loop {
            let v = self.read_frame().await;
            if v["id"] == id {
                assert_eq!(v["error"]["code"], protocol::METHOD_NOT_FOUND);
                break;
            }
            seen.push(v);
        }
        for v in &seen {
            assert_eq!(v["method"], protocol::ANNOUNCED, "unexpected frame {v}");
        }
        seen.into_iter().map(|v| v["params"].clone()).collect()
    }

    /// Reads until the server closes the socket; the close code, if a close frame came.
    async fn closed_with(&mut self) -> Option<CloseCode> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("socket not closed within 10 s")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }
}

fn candidate(from: &str, to: &str, n: u64) -> Value {
    json!({
        "from": from, "to": to, "sdp_mid": "0", "sdp_m_line_index": 0,
        "candidate": format!("candidate:{n} 1 udp 2122260223 127.0.0.1 {} typ host", 1024 + n % 60000),
    })
}

/// A healthy pair relaying a candidate every 20 ms while an attack runs.
struct Canary {
    a: String,
    b: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl Canary {
    async fn start(url: &str) -> Canary {
        let mut a = Client::connect(url).await;
        let mut b = Client::connect(url).await;
        let (ia, ib) = (unique("canary-a"), unique("canary-b"));
        a.announce(&ia).await;
        b.announce(&ib).await;
        negotiate(&mut a, &mut b, "canary").await;
        let (stop, mut stopped) = oneshot::channel();
        let (fa, fb) = (ia.clone(), ib.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                a.notify(protocol::ICE_CANDIDATE, candidate(&fa, &fb, n))
                    .await;
                // b may be a target of the attack: frames from anyone else are skipped.
                loop {
                    let v = b.recv().await;
                    let p = &v["params"];
                    if v["method"] == protocol::DISCONNECTED {
                        assert_ne!(p["from"], fa.as_str(), "canary pair torn down: {v}");
                    }
                    if v["method"] == protocol::ICE_CANDIDATE && p["from"] == fa.as_str() {
                        assert_eq!(*p, candidate(&fa, &fb, n), "canary missed a candidate");
                        break;
                    }
                }
                // Keep a's socket drained (announcements of the attackers).
                while let Ok(Some(Ok(_))) =
                    tokio::time::timeout(Duration::from_millis(0), a.ws.next()).await
                {
                }
                n += 1;
            }
            // Both sockets are still open and served.
            for c in [&mut a, &mut b] {
                c.backlog.clear();
                let r = c.request("test.no_such_method", json!({})).await;
                assert_eq!(r["error"]["code"], protocol::METHOD_NOT_FOUND, "{r}");
            }
            n
        });
        Canary {
            a: ia,
            b: ib,
            stop,
            task,
        }
    }

    /// Stops the canary; fails the test if it missed anything. Returns how many it relayed.
    async fn finish(self) -> u64 {
        let _ = self.stop.send(());
        let n = self.task.await.expect("canary failed");
        assert!(n > 0, "the canary never ran");
        n
    }
}

/// A fresh peer can still announce and sees `present` in its peer list.
async fn fresh_peer_announces(url: &str, present: &str) {
    let mut fresh = Client::connect(url).await;
    let r = fresh.announce(&unique("fresh")).await;
    let ids: Vec<&str> = r["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&present), "{ids:?}");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidate_flood_cannot_evict_a_peer_and_persistent_flooders_are_closed_1008() {
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let bob = canary.b.clone();
    // Four sockets without a pair with bob flood candidates at him as fast as they can.
    let mut floods = Vec::new();
    for i in 0..4 {
        let url = url.clone();
        let bob = bob.clone();
        floods.push(tokio::spawn(async move {
            let mut m = Client::connect(&url).await;
            let me = unique(&format!("flood{i}"));
            m.announce(&me).await;
            let big = "x".repeat(1000);
            for n in 0..5_000u64 {
                let mut c = candidate(&me, &bob, n);
                c["candidate"] = json!(format!("candidate:{n} 1 udp 1 127.0.0.1 9 typ host {big}"));
                let text = protocol::notification(protocol::ICE_CANDIDATE, &c);
                if m.ws.send(Message::text(text)).await.is_err() {
                    break;
                }
                // Share the test's threads with the server and the canary.
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            m.closed_with().await
        }));
    }
    for f in floods {
        // The close frame (1008) is sent, but a client still flooding may see a reset first
        // (it closes a socket with unread data): `persistent_excess_is_closed_with_1008` checks
        // the code itself.
        let code = f.await.unwrap();
        assert!(matches!(code, None | Some(CloseCode::Policy)), "{code:?}");
    }
    assert!(server.peer_ids().contains(&bob));
    // A peer that has no exchange with bob gets a coded refusal, not a relay.
    let mut m = Client::connect(&url).await;
    m.announce(&unique("lone")).await;
    let id = m.id().to_owned();
    assert_eq!(
        m.call_err(protocol::ICE_CANDIDATE, candidate(&id, &bob, 1))
            .await,
        protocol::ICE_CANDIDATE_INVALID
    );
    fresh_peer_announces(&url, &bob).await;
    canary.finish().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_the_sender_and_never_drops_the_receiver() {
    // Budgets out of the way: only the receiver's queue limits the sender here.
    let server = start_with(|c| {
        c.message_budget = Budget::new(1e9, 1e9);
        c.byte_budget = Budget::new(1e12, 1e12);
    })
    .await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut sender = Client::connect(&url).await;
    sender.announce("sender").await;
    let mut stuck = Client::connect(&url).await;
    stuck.announce("stuck").await;
    negotiate(&mut sender, &mut stuck, "r1").await;
    // `stuck` never reads again. Its queue and socket buffers fill with relayed candidates.
    let big = "y".repeat(3500);
    let flood = async {
        for n in 0u64.. {
            let mut c = candidate("sender", "stuck", n);
            c["candidate"] = json!(format!("candidate:{n} 1 udp 1 127.0.0.1 9 typ host {big}"));
            if n % 32 == 0 {
                let r = sender.request(protocol::ICE_CANDIDATE, c).await;
                if let Some(e) = r.get("error") {
                    assert_eq!(e["code"], protocol::RATE_LIMITED, "{r}");
                    return n;
                }
            } else {
                sender.notify(protocol::ICE_CANDIDATE, c).await;
            }
        }
        unreachable!()
    };
    let sent = timeout(Duration::from_secs(60), flood)
        .await
        .expect("the sender was never refused");
    assert!(sent >= 512, "refused after only {sent} candidates");
    // The receiver is still registered, its pair intact; the sender was not dropped either.
    assert!(server.peer_ids().contains(&"stuck".to_owned()));
    let r = sender.request("test.no_such_method", json!({})).await;
    assert_eq!(r["error"]["code"], protocol::METHOD_NOT_FOUND);
    fresh_peer_announces(&url, "stuck").await;
    canary.finish().await;
    drop(stuck);
    server.close().await;
}

#[tokio::test]
async fn reannounce_flood_is_rate_limited() {
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut watcher = Client::connect(&url).await;
    watcher.announce("watcher").await;
    let mut m = Client::connect(&url).await;
    let ud = json!({"pad": "z".repeat(1000)});
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..50 {
        let r = m.announce_with("loud", json!({"user_data": ud})).await;
        match r.get("error") {
            None => ok += 1,
            Some(e) => {
                assert_eq!(e["code"], protocol::RATE_LIMITED, "{r}");
                limited += 1;
            }
        }
    }
    assert!(ok <= 6, "{ok} re-announces fanned out");
    assert!(limited >= 44, "only {limited} re-announces refused");
    // The watcher saw only the accepted ones.
    let seen = watcher.drain_announcements().await;
    assert_eq!(seen.iter().filter(|p| p["peer_id"] == "loud").count(), ok);
    fresh_peer_announces(&url, "loud").await;
    canary.finish().await;
    server.close().await;
}

#[tokio::test]
async fn session_key_reclaims_a_peer_id_and_nothing_else_does() {
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut old = Client::connect(&url).await;
    let key = old.announce("alice").await["session_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob = Client::connect(&url).await;
    bob.announce("bob").await;
    negotiate(&mut old, &mut bob, "r1").await;

    let mut new = Client::connect(&url).await;
    let r = new.announce_with("alice", json!({})).await;
    assert_eq!(r["error"]["code"], protocol::PEER_NOT_FOUND, "{r}");
    let r = new
        .announce_with(
            "alice",
            json!({"session_key": "0123456789abcdef0123456789abcdef"}),
        )
        .await;
    assert_eq!(r["error"]["code"], protocol::PEER_NOT_FOUND, "{r}");
    let r = new
        .announce_with("alice", json!({"session_key": key}))
        .await;
    assert_eq!(r["result"]["status"], "registered", "{r}");
    assert_eq!(r["result"]["session_key"], key.as_str());
    new.peer_id = Some("alice".into());
    // The stale socket is closed; the pair carries over to the new one.
    old.closed_with().await;
    assert_eq!(
        server.peer_ids().iter().filter(|p| *p == "alice").count(),
        1
    );
    new.notify(protocol::ICE_CANDIDATE, candidate("alice", "bob", 7))
        .await;
    assert_eq!(
        bob.recv_notification(protocol::ICE_CANDIDATE).await,
        candidate("alice", "bob", 7)
    );
    bob.drain_announcements().await;
    fresh_peer_announces(&url, "alice").await;
    canary.finish().await;
    server.close().await;
}

#[tokio::test]
async fn reserved_peer_ids_need_their_key() {
    let server = start_with(|c| {
        c.reserved_peer_ids
            .insert("server".into(), "owner-key".into());
    })
    .await;
    let url = server.url();
    let mut m = Client::connect(&url).await;
    for extra in [json!({}), json!({"session_key": "guess"})] {
        let r = m.announce_with("server", extra).await;
        assert_eq!(r["error"]["code"], protocol::PEER_NOT_FOUND, "{r}");
    }
    let mut owner = Client::connect(&url).await;
    let r = owner
        .announce_with("server", json!({"session_key": "owner-key"}))
        .await;
    assert_eq!(r["result"]["status"], "registered", "{r}");
    assert_eq!(r["result"]["session_key"], "owner-key");
    fresh_peer_announces(&url, "server").await;
    server.close().await;
}

#[tokio::test]
async fn deeply_nested_user_data_is_refused_and_peer_lists_stay_parseable() {
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let nest = |depth: usize| -> Value {
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        serde_json::from_str(&text).unwrap()
    };
    let mut m = Client::connect(&url).await;
    let r = m
        .announce_with("deep", json!({"user_data": nest(125)}))
        .await;
    assert_eq!(r["error"]["code"], protocol::INVALID_PARAMS, "{r}");
    let r = m
        .announce_with(
            "deep",
            json!({"user_data": nest(protocol::MAX_USER_DATA_DEPTH + 1)}),
        )
        .await;
    assert_eq!(r["error"]["code"], protocol::INVALID_PARAMS, "{r}");
    let r = m
        .announce_with(
            "deep",
            json!({"user_data": nest(protocol::MAX_USER_DATA_DEPTH)}),
        )
        .await;
    assert_eq!(r["result"]["status"], "registered", "{r}");
    // A later announce gets a response that parses (read_frame uses serde_json's limits) and
    // the core client's parser keeps every entry.
    let mut later = Client::connect(&url).await;
    let r = later.announce(&unique("later")).await;
    let parsed: protocol::AnnounceResult = serde_json::from_value(r).unwrap();
    assert!(parsed.peers.iter().any(|p| p.peer_id == "deep"));
    canary.finish().await;
    server.close().await;
}

#[tokio::test]
async fn unanswered_offers_are_capped_per_sender_and_per_target() {
    let server = start_with(|c| {
        c.max_pending_offers_per_sender = 3;
        c.max_pending_offers_per_target = 5;
        c.offer_timeout = Duration::from_millis(500);
    })
    .await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut bob = Client::connect(&url).await;
    bob.announce("bob").await;
    let mut s1 = Client::connect(&url).await;
    s1.announce("squat1").await;
    let mut s2 = Client::connect(&url).await;
    s2.announce("squat2").await;
    for i in 0..3 {
        s1.call_ok(
            protocol::OFFER,
            offer_params("squat1", "bob", &format!("a{i}")),
        )
        .await;
    }
    let r = s1
        .request(protocol::OFFER, offer_params("squat1", "bob", "a3"))
        .await;
    assert_eq!(r["error"]["code"], protocol::LIMIT_EXCEEDED, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("squat1"),
        "{r}"
    );
    // Re-offering under a pending request id replaces it: not refused.
    s1.call_ok(protocol::OFFER, offer_params("squat1", "bob", "a0"))
        .await;
    for i in 0..2 {
        s2.call_ok(
            protocol::OFFER,
            offer_params("squat2", "bob", &format!("b{i}")),
        )
        .await;
    }
    let r = s2
        .request(protocol::OFFER, offer_params("squat2", "bob", "b2"))
        .await;
    assert_eq!(r["error"]["code"], protocol::LIMIT_EXCEEDED, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("bob"),
        "{r}"
    );
    // Answering frees a slot at once; expiry frees the rest.
    bob.call_ok(protocol::ANSWER, answer_params("bob", "squat2", "b0"))
        .await;
    s2.call_ok(protocol::OFFER, offer_params("squat2", "bob", "b2"))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    s1.call_ok(protocol::OFFER, offer_params("squat1", "bob", "a9"))
        .await;
    fresh_peer_announces(&url, "bob").await;
    canary.finish().await;
    server.close().await;
}

#[tokio::test]
async fn answers_and_candidates_outside_a_pair_are_refused() {
    let server = start_with(|_| {}).await;
    let url = server.url();
    let canary = Canary::start(&url).await;
    let mut bob = Client::connect(&url).await;
    bob.announce("bob").await;
    let mut mallory = Client::connect(&url).await;
    mallory.announce("mallory").await;
    assert_eq!(
        mallory
            .call_err(protocol::ANSWER, answer_params("mallory", "bob", "x"))
            .await,
        protocol::ANSWER_INVALID
    );
    assert_eq!(
        mallory
            .call_err(protocol::ICE_CANDIDATE, candidate("mallory", "bob", 1))
            .await,
        protocol::ICE_CANDIDATE_INVALID
    );
    mallory
        .notify(protocol::ICE_CANDIDATE, candidate("mallory", "bob", 2))
        .await;
    // Into the canary's pair, under its own name or a spoofed one.
    assert_eq!(
        mallory
            .call_err(protocol::ICE_CANDIDATE, candidate("mallory", &canary.b, 3))
            .await,
        protocol::ICE_CANDIDATE_INVALID
    );
    assert_eq!(
        mallory
            .call_err(protocol::ICE_CANDIDATE, candidate(&canary.a, &canary.b, 4))
            .await,
        protocol::INVALID_PARAMS
    );
    assert_eq!(
        mallory
            .call_err(
                protocol::ANSWER,
                answer_params(&canary.b, &canary.a, "canary")
            )
            .await,
        protocol::INVALID_PARAMS
    );
    // Bob got nothing but announcements.
    bob.drain_announcements().await;
    fresh_peer_announces(&url, "bob").await;
    canary.finish().await;
    server.close().await;
}

#[tokio::test]
async fn persistent_excess_is_closed_with_1008_after_coded_refusals() {
    let server = start_with(|c| {
        c.message_budget = Budget::new(0.01, 10.0);
        c.strikes_before_close = 10;
    })
    .await;
    let url = server.url();
    let mut m = Client::connect(&url).await;
    for i in 0..20 {
        let r = m.request("test.no_such_method", json!({})).await;
        let want = if i < 10 {
            protocol::METHOD_NOT_FOUND
        } else {
            protocol::RATE_LIMITED
        };
        assert_eq!(r["error"]["code"], want, "frame {i}: {r}");
    }
    m.send_text(protocol::request(99, "test.no_such_method", json!({})))
        .await;
    assert_eq!(m.closed_with().await, Some(CloseCode::Policy));
    server.close().await;
}
