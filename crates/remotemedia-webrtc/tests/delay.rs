//! Round-trip time over a link with 200 ms of added RTT.
//!
//! This kernel has no netem, so the delay comes from a userspace UDP relay. A signaling proxy
//! between the transports and the server rewrites every ICE candidate (trickled, or in an SDP)
//! to a relay socket that stands for it. Each relay socket passes what it receives on to the
//! port it stands for 100 ms later, sent from the relay socket that stands for the sender, so
//! each peer only ever sees the other's relayed address, and every packet is delayed 100 ms
//! each way.

mod common;
use common::server;
use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::media::{AudioEncoderConfig, Pcm};
use remotemedia_webrtc::{WebRtcTransport, WebRtcTransportConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

const ONE_WAY: Duration = Duration::from_millis(100);

/// Relay sockets by the real loopback port they stand for.
#[derive(Clone, Default)]
struct Relay {
    by_port: Arc<Mutex<HashMap<u16, Arc<UdpSocket>>>>,
}

impl Relay {
    /// The relay port standing for `real` (made on first use).
    fn stand_in(&self, real: u16) -> u16 {
        self.socket_for(real).local_addr().unwrap().port()
    }

    fn socket_for(&self, real: u16) -> Arc<UdpSocket> {
        let mut map = self.by_port.lock().unwrap();
        if let Some(s) = map.get(&real) {
            return s.clone();
        }
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        std.set_nonblocking(true).unwrap();
        let sock = Arc::new(UdpSocket::from_std(std).unwrap());
        map.insert(real, sock.clone());
        let relay = self.clone();
        let rx = sock.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = rx.recv_from(&mut buf).await else {
                    return;
                };
                let data = buf[..n].to_vec();
                // Sent on from the socket that stands for the sender, so replies come back here.
                let out = relay.socket_for(from.port());
                let to = SocketAddr::from(([127, 0, 0, 1], real));
                tokio::spawn(async move {
                    tokio::time::sleep(ONE_WAY).await;
                    let _ = out.send_to(&data, to).await;
                });
            }
        });
        sock
    }

    /// `candidate:… 1 udp PRIO 127.0.0.1 PORT typ host …` with PORT replaced by its stand-in;
    /// anything that is not a 127.0.0.1 UDP candidate is left out (None).
    fn rewrite_candidate(&self, cand: &str) -> Option<String> {
        let mut f: Vec<String> = cand.split(' ').map(str::to_string).collect();
        if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[4] != "127.0.0.1" {
            return None;
        }
        let port: u16 = f[5].parse().ok()?;
        f[5] = self.stand_in(port).to_string();
        Some(f.join(" "))
    }

    fn rewrite_sdp(&self, sdp: &str) -> String {
        let mut out = String::new();
        for line in sdp.split("\r\n") {
            if let Some(c) = line.strip_prefix("a=") {
                if c.starts_with("candidate:") {
                    if let Some(r) = self.rewrite_candidate(c) {
                        out.push_str("a=");
                        out.push_str(&r);
                        out.push_str("\r\n");
                    }
                    continue;
                }
            }
            if !line.is_empty() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out
    }

    /// A JSON-RPC frame from a transport, with its addresses replaced by stand-ins.
    fn rewrite_message(&self, text: &str) -> String {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text) else {
            return text.to_string();
        };
        let Some(params) = v.get_mut("params").and_then(|p| p.as_object_mut()) else {
            return text.to_string();
        };
        if let Some(c) = params
            .get("candidate")
            .and_then(|c| c.as_str())
            .map(str::to_string)
        {
            let body = c
                .strip_prefix("candidate:")
                .map(|_| c.as_str())
                .unwrap_or(&c);
            if !body.is_empty() {
                match self.rewrite_candidate(body) {
                    Some(r) => params.insert("candidate".into(), r.into()),
                    // Not a loopback candidate: dropped, so no path bypasses the relay.
                    None => return String::new(),
                };
            }
        }
        if let Some(sdp) = params
            .get("sdp")
            .and_then(|s| s.as_str())
            .map(str::to_string)
        {
            params.insert("sdp".into(), self.rewrite_sdp(&sdp).into());
        }
        v.to_string()
    }
}

/// A WebSocket proxy in front of the signaling server that rewrites what transports send.
async fn signaling_proxy(upstream: String, relay: Relay) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let relay = relay.clone();
            tokio::spawn(async move {
                let Ok(client) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let Ok((server, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await
                else {
                    return;
                };
                let (mut c_tx, mut c_rx) = client.split();
                let (mut s_tx, mut s_rx) = server.split();
                let up = async {
                    while let Some(Ok(m)) = c_rx.next().await {
                        let m = match m {
                            Message::Text(t) => {
                                let r = relay.rewrite_message(t.as_str());
                                if r.is_empty() {
                                    continue;
                                }
                                Message::text(r)
                            }
                            other => other,
                        };
                        if s_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    while let Some(Ok(m)) = s_rx.next().await {
                        if c_tx.send(m).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    url
}

async fn transport(url: &str, id: &str) -> WebRtcTransport {
    let mut cfg = WebRtcTransportConfig::new(url)
        .with_peer_id(id)
        .with_bind_address("127.0.0.1");
    // Sender and receiver reports every 500 ms: RTT comes from them.
    cfg.rtcp_interval_ms = 500;
    cfg.quality_interval_ms = 500;
    cfg.connect_timeout_ms = 20_000;
    let t = WebRtcTransport::new(cfg).unwrap();
    t.start().await.unwrap();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_ms_of_added_rtt_is_reported_within_twenty_percent() {
    let s = server().await;
    let relay = Relay::default();
    let url = signaling_proxy(s.url(), relay.clone()).await;
    let a = transport(&url, "rtt-a").await;
    let b = transport(&url, "rtt-b").await;
    let peer = a.connect_peer("rtt-b").await.unwrap();
    assert!(
        !relay.by_port.lock().unwrap().is_empty(),
        "no candidate went through the relay"
    );
    peer.add_audio_track(AudioEncoderConfig::default())
        .await
        .unwrap();
    let sender = tokio::spawn({
        let a = a.clone();
        async move {
            let frame = vec![0.1f32; 960];
            for _ in 0..400 {
                let _ = a.send_audio("rtt-b", Pcm::F32(&frame)).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    // Wait for RTT samples from the receiver reports; then the window is all relayed traffic.
    let mut rtts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < deadline && rtts.len() < 3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = peer.metrics();
        if m.rtt_ms > 0.0 {
            rtts.push(m.rtt_ms);
        }
    }
    sender.abort();
    eprintln!("RTT samples over the relay: {rtts:?}");
    assert!(rtts.len() >= 3, "RTT never measured: {rtts:?}");
    let last = *rtts.last().unwrap();
    assert!(
        (160.0..=240.0).contains(&last),
        "RTT {last} ms over a 200 ms link (samples {rtts:?})"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}
