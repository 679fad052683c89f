//! A raw JSON-RPC client of the signaling server for the integration tests: what any
//! WebSocket client could send, with helpers to read responses and notifications.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::signaling::protocol;
use remotemedia_webrtc::signaling::server::{ServerConfig, SignalingServer};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Bound on every wait for something that must arrive.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> SignalingServer {
    let mut config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..Default::default()
    };
    f(&mut config);
    SignalingServer::bind(config).await.expect("bind")
}

pub async fn start() -> SignalingServer {
    start_with(|_| {}).await
}

pub struct Client {
    pub ws: Ws,
    pub next_id: u64,
    pub peer_id: Option<String>,
    /// Frames read while looking for something else, in arrival order.
    pub backlog: VecDeque<Value>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect");
        Client {
            ws,
            next_id: 1,
            peer_id: None,
            backlog: VecDeque::new(),
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    /// The next text frame from the wire as JSON (pings and pongs skipped); panics on timeout or
    /// close.
    pub async fn read_frame(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("no frame within 5 s")
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).expect("server sent invalid JSON")
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame, backlog first.
    pub async fn recv(&mut self) -> Value {
        match self.backlog.pop_front() {
            Some(v) => v,
            None => self.read_frame().await,
        }
    }

    /// The next notification of `method` (other `peer.announced` notifications are skipped;
    /// anything else fails the test).
    pub async fn recv_notification(&mut self, method: &str) -> Value {
        loop {
            let v = self.recv().await;
            if v["method"] == method {
                assert_eq!(v["jsonrpc"], "2.0");
                assert!(v.get("id").is_none(), "notification with an id: {v}");
                return v["params"].clone();
            }
            assert_eq!(
                v["method"],
                protocol::ANNOUNCED,
                "expected {method}, got {v}"
            );
        }
    }

    /// Sends a request and returns its response frame; frames that come first are kept.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(protocol::request(id, method, &params)).await;
        self.response_to(json!(id)).await
    }

    pub async fn response_to(&mut self, id: Value) -> Value {
        if let Some(i) = self.backlog.iter().position(|v| v.get("id") == Some(&id)) {
            return self.backlog.remove(i).unwrap();
        }
        loop {
            let v = self.read_frame().await;
            if v.get("id") == Some(&id) && v.get("method").is_none() {
                assert_eq!(v["jsonrpc"], "2.0");
                return v;
            }
            self.backlog.push_back(v);
        }
    }

    pub async fn call_ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.request(method, params).await;
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// The error code of a request that must fail.
    pub async fn call_err(&mut self, method: &str, params: Value) -> i64 {
        let r = self.request(method, params).await;
        assert!(r.get("result").is_none(), "{method} should fail: {r}");
        assert!(r["error"]["message"].is_string(), "{r}");
        r["error"]["code"].as_i64().expect("error code")
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send_text(protocol::notification(method, &params))
            .await;
    }

    pub async fn announce(&mut self, peer_id: &str) -> Value {
        let r = self
            .call_ok(
                protocol::ANNOUNCE,
                json!({"peer_id": peer_id, "capabilities": ["audio", "video", "data"]}),
            )
            .await;
        assert_eq!(r["status"], "registered");
        assert_eq!(r["peer_id"], peer_id);
        self.peer_id = Some(peer_id.to_owned());
        r
    }

    pub fn id(&self) -> &str {
        self.peer_id.as_deref().expect("announced")
    }

    /// Nothing has been queued for this client so far: a request's response is the very next
    /// frame. (The server handles each socket's frames in order and queues notifications before
    /// the events that caused them complete, so this is a synchronization point, not a sleep.)
    /// Announcements already set aside while waiting for responses are allowed.
    pub async fn assert_nothing_pending(&mut self) {
        self.backlog.retain(|v| v["method"] != protocol::ANNOUNCED);
        assert!(self.backlog.is_empty(), "backlog: {:?}", self.backlog);
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(protocol::request(id, "test.no_such_method", json!({})))
            .await;
        let v = self.read_frame().await;
        assert_eq!(v["id"], id, "expected only the response, got {v}");
        assert_eq!(v["error"]["code"], protocol::METHOD_NOT_FOUND);
    }
}

pub fn offer_params(from: &str, to: &str, rid: &str) -> Value {
    json!({
        "from": from, "to": to, "request_id": rid, "can_trickle_ice_candidates": true,
        "sdp": format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=offer {rid}\r\n"),
    })
}

pub fn answer_params(from: &str, to: &str, rid: &str) -> Value {
    json!({
        "from": from, "to": to, "request_id": rid, "can_trickle_ice_candidates": false,
        "sdp": format!("v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=answer {rid}\r\n"),
    })
}

/// A full offer/answer between two announced clients, checked on both ends.
pub async fn negotiate(offerer: &mut Client, answerer: &mut Client, rid: &str) {
    let (a, b) = (offerer.id().to_owned(), answerer.id().to_owned());
    let offer = offer_params(&a, &b, rid);
    let r = offerer.call_ok(protocol::OFFER, offer.clone()).await;
    assert_eq!(r, json!({"status": "forwarded", "request_id": rid}));
    assert_eq!(answerer.recv_notification(protocol::OFFER).await, offer);
    let answer = answer_params(&b, &a, rid);
    let r = answerer.call_ok(protocol::ANSWER, answer.clone()).await;
    assert_eq!(r, json!({"status": "forwarded", "request_id": rid}));
    assert_eq!(offerer.recv_notification(protocol::ANSWER).await, answer);
}
