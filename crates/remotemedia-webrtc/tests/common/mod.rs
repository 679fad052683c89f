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

/// A TCP proxy in front of a signaling server that delays every WebSocket message the server
/// sends to the client by `delay`, and trickled ICE candidates (`peer.ice_candidate`) by
/// `candidate_delay` instead: a slow signaling path, on loopback.
pub struct SlowDownlink {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl SlowDownlink {
    pub async fn start(upstream: std::net::SocketAddr, delay: Duration) -> SlowDownlink {
        Self::start_with(upstream, delay, delay).await
    }

    pub async fn start_with(
        upstream: std::net::SocketAddr,
        delay: Duration,
        candidate_delay: Duration,
    ) -> SlowDownlink {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    let upward = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut uw).await;
                    });
                    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                    let writer = tokio::spawn(async move {
                        while let Some(bytes) = rx.recv().await {
                            if cw.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    });
                    // The HTTP upgrade response first (up to its blank line), then frames.
                    let mut pending: Vec<u8> = Vec::new();
                    let mut upgraded = false;
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = ur.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        if !upgraded {
                            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n")
                            else {
                                continue;
                            };
                            let head: Vec<u8> = pending.drain(..end + 4).collect();
                            let _ = tx.send(head);
                            upgraded = true;
                        }
                        while let Some(len) = frame_len(&pending) {
                            let frame: Vec<u8> = pending.drain(..len).collect();
                            let is_candidate =
                                frame.windows(18).any(|w| w == b"peer.ice_candidate");
                            let wait = if is_candidate { candidate_delay } else { delay };
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(wait).await;
                                let _ = tx.send(frame);
                            });
                        }
                    }
                    drop(tx);
                    tokio::time::sleep(delay.max(candidate_delay)).await;
                    let _ = writer.await;
                    upward.abort();
                });
            }
        });
        SlowDownlink { url, task }
    }
}

/// The length of the (unmasked, server-to-client) WebSocket frame at the start of `b`, once
/// it is all there.
fn frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 2 {
        return None;
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (
            u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (b.len() >= head + len).then_some(head + len)
}

impl Drop for SlowDownlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
