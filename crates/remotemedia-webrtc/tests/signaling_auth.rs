//! The signaling server with authentication: raw clients and transports on loopback.

mod common;

use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::signaling::auth::{
    issue_token, AuthDecision, AuthFuture, AuthHook, AuthRequest, Authenticator, HmacTokenAuth,
};
use remotemedia_webrtc::signaling::protocol;
use remotemedia_webrtc::signaling::server::{ServerConfig, SignalingServer};
use remotemedia_webrtc::{WebRtcTransport, WebRtcTransportConfig};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &[u8] = b"test-secret-test-secret-test-sec";

async fn server(auth: AuthHook) -> SignalingServer {
    common::init_log();
    SignalingServer::bind(ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        auth: Some(auth),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Announces over a raw socket at `url`; returns the response frame.
async fn announce(url: &str, params: Value) -> Value {
    announce_kept(url, params).await.0
}

/// Announces and keeps the socket (the registration lasts as long as it is open).
async fn announce_kept(
    url: &str,
    params: Value,
) -> (
    Value,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": protocol::ANNOUNCE, "params": params});
    ws.send(Message::text(req.to_string())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no response")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == 1 {
                return (v, ws);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_tokens_bind_peer_ids_to_credentials() {
    let s = server(AuthHook::new(HmacTokenAuth::new(SECRET).unwrap())).await;
    let url = s.url();
    let alice = issue_token(SECRET, "alice", Duration::from_secs(60)).unwrap();
    // No token, a token for someone else, a forged one: -32001 with the reason.
    let r = announce(&url, json!({"peer_id": "alice", "capabilities": ["data"]})).await;
    assert_eq!(r["error"]["code"], protocol::UNAUTHORIZED, "{r}");
    let r = announce(
        &url,
        json!({"peer_id": "bob", "capabilities": ["data"], "token": alice}),
    )
    .await;
    assert_eq!(r["error"]["code"], protocol::UNAUTHORIZED, "{r}");
    let forged = issue_token(
        b"not-the-secret-not-the-secret-!!",
        "alice",
        Duration::from_secs(60),
    )
    .unwrap();
    let r = announce(
        &url,
        json!({"peer_id": "alice", "capabilities": ["data"], "token": forged}),
    )
    .await;
    assert_eq!(r["error"]["code"], protocol::UNAUTHORIZED, "{r}");
    assert!(s.peer_ids().is_empty());
    // The right token in the announce registers alice.
    let r = announce(
        &url,
        json!({"peer_id": "alice", "capabilities": ["data"], "token": alice}),
    )
    .await;
    assert_eq!(r["result"]["status"], "registered", "{r}");
    // A browser's token in the URL's query works the same way.
    let carol = issue_token(SECRET, "carol", Duration::from_secs(60)).unwrap();
    let r = announce(
        &format!("{url}/ws?token={carol}"),
        json!({"peer_id": "carol", "capabilities": ["data"]}),
    )
    .await;
    assert_eq!(r["result"]["status"], "registered", "{r}");
    s.close().await;
}

/// Allows ids starting with `ok-`, renames `guest` to `guest-1`, refuses the rest.
struct Rule;

impl Authenticator for Rule {
    fn authenticate<'a>(&'a self, r: &'a AuthRequest) -> AuthFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(20)).await; // asynchronous, like a JS hook
            if r.peer_id == "guest" {
                AuthDecision::AllowAs("guest-1".into())
            } else if r.peer_id.starts_with("ok-") {
                AuthDecision::Allow
            } else {
                AuthDecision::Refuse(format!("no entry for {}", r.peer_id))
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_hook_allows_renames_and_refuses_with_its_reason() {
    let s = server(AuthHook::new(Rule)).await;
    let url = s.url();
    let r = announce(&url, json!({"peer_id": "ok-1", "capabilities": ["data"]})).await;
    assert_eq!(r["result"]["status"], "registered", "{r}");
    let r = announce(
        &url,
        json!({"peer_id": "mallory", "capabilities": ["data"]}),
    )
    .await;
    assert_eq!(r["error"]["code"], protocol::UNAUTHORIZED, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no entry for mallory"),
        "{r}"
    );
    // Registered under the hook's name for as long as its socket is open (a dropped socket
    // unregisters it, so it is kept here).
    let (r, _guest) =
        announce_kept(&url, json!({"peer_id": "guest", "capabilities": ["data"]})).await;
    assert_eq!(r["result"]["peer_id"], "guest-1", "{r}");
    assert!(s.peer_ids().contains(&"guest-1".to_string()));
    assert!(!s.peer_ids().contains(&"guest".to_string()));
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transports_with_tokens_connect_through_an_authenticating_server() {
    let s = server(AuthHook::new(HmacTokenAuth::new(SECRET).unwrap())).await;
    let mk = |id: &str| {
        WebRtcTransport::new(
            WebRtcTransportConfig::new(s.url())
                .with_peer_id(id)
                .with_bind_address("127.0.0.1")
                .with_signaling_token(issue_token(SECRET, id, Duration::from_secs(60)).unwrap()),
        )
        .unwrap()
    };
    let (a, b) = (mk("tok-a"), mk("tok-b"));
    a.start().await.unwrap();
    b.start().await.unwrap();
    let peer = a.connect_peer("tok-b").await.unwrap();
    assert!(peer.is_ready());
    // Without a token, start() fails with the server's reason.
    let c = WebRtcTransport::new(
        WebRtcTransportConfig::new(s.url())
            .with_peer_id("tok-c")
            .with_bind_address("127.0.0.1"),
    )
    .unwrap();
    let e = c.start().await.unwrap_err();
    assert!(e.to_string().contains("unauthorized"), "{e}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}
