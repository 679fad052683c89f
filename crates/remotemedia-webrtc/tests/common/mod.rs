//! Helpers shared by the integration tests.
#![allow(dead_code)]

use remotemedia_webrtc::event::TransportEvent;
use remotemedia_webrtc::signaling::server::{ServerConfig, SignalingServer};
use remotemedia_webrtc::{WebRtcTransport, WebRtcTransportConfig};
use std::time::Duration;
use tokio::sync::mpsc;

/// Logs to stderr when `RUST_LOG` is set (shown for failing tests).
pub fn init_log() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub async fn server() -> SignalingServer {
    init_log();
    SignalingServer::bind(ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A started transport on loopback, with its event stream.
pub async fn transport(url: &str, id: &str) -> (WebRtcTransport, mpsc::Receiver<TransportEvent>) {
    let t = WebRtcTransport::new(
        WebRtcTransportConfig::new(url)
            .with_peer_id(id)
            .with_bind_address("127.0.0.1"),
    )
    .unwrap();
    let rx = t.take_events().unwrap();
    t.start().await.unwrap();
    (t, rx)
}

/// A started transport whose events nobody takes.
pub async fn quiet_transport(url: &str, id: &str) -> WebRtcTransport {
    let t = WebRtcTransport::new(
        WebRtcTransportConfig::new(url)
            .with_peer_id(id)
            .with_bind_address("127.0.0.1"),
    )
    .unwrap();
    t.start().await.unwrap();
    t
}

/// Waits (up to `limit`) until `cond` holds.
pub mod raw;

pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}
