//! Codec negotiation with peers that are not this library (issue 13): what our offers and
//! answers contain, seen by a bare signaling client standing in for a browser.

mod common;

use common::{server, transport};
use futures_util::{SinkExt, StreamExt};
use remotemedia_webrtc::event::TransportEvent;
use remotemedia_webrtc::signaling::protocol;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A signaling client that announces `id` and then reads what it is sent.
async fn fake_peer(url: &str, id: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let announce = json!({"jsonrpc": "2.0", "id": 1, "method": protocol::ANNOUNCE,
        "params": {"peer_id": id, "capabilities": ["audio", "video", "data"]}});
    ws.send(Message::text(announce.to_string())).await.unwrap();
    ws
}

/// The params of the next notification (or request) of `method`.
async fn next_of(ws: &mut Ws, method: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {method} within {WAIT:?}"))
            .expect("socket ended")
            .expect("socket error");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["method"] == method {
                return v["params"].clone();
            }
        }
    }
}

/// The `a=rtpmap` encoding names of each m-section: (m= line, names).
fn sections(sdp: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            out.push((line.to_string(), Vec::new()));
        } else if let Some(m) = line.strip_prefix("a=rtpmap:") {
            let name = m.split(' ').nth(1).unwrap_or("").split('/').next().unwrap();
            if let Some(s) = out.last_mut() {
                s.1.push(name.to_ascii_uppercase());
            }
        }
    }
    out
}

pub fn assert_only_decodable(names: &[String]) {
    for bad in ["AV1", "H265", "HEVC", "G722", "PCMU", "PCMA"] {
        assert!(!names.iter().any(|n| n == bad), "{bad} in {names:?}");
    }
}

/// A browser offer: video preferring AV1 (setCodecPreferences), then a second video section
/// offering only AV1 and VP9 profile 2.
const BROWSER_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS s\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 45 46 98 99 96 97\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Hs3a\r\n\
a=ice-pwd:k1ZRYnKgxOmB0qbYpOHf0Z9X\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8C:9B:2D:5C:1A:7E:3F:60:D4:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=msid:s cam\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=rtcp-fb:45 nack pli\r\n\
a=fmtp:45 level-idx=5;profile=0;tier=0\r\n\
a=rtpmap:46 rtx/90000\r\n\
a=fmtp:46 apt=45\r\n\
a=rtpmap:98 VP9/90000\r\n\
a=rtcp-fb:98 nack pli\r\n\
a=fmtp:98 profile-id=0\r\n\
a=rtpmap:99 rtx/90000\r\n\
a=fmtp:99 apt=98\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=ssrc:1111 cname:x\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 45 100\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Hs3a\r\n\
a=ice-pwd:k1ZRYnKgxOmB0qbYpOHf0Z9X\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8C:9B:2D:5C:1A:7E:3F:60:D4:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=msid:s screen\r\n\
a=rtcp-mux\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=fmtp:45 level-idx=5;profile=0;tier=0\r\n\
a=rtpmap:100 VP9/90000\r\n\
a=fmtp:100 profile-id=2\r\n\
a=ssrc:2222 cname:x\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_preferring_av1_is_answered_with_vp9_or_vp8_and_an_undecodable_section_refused() {
    let server = server().await;
    let (a, mut events) = transport(&server.url(), "a").await;
    let mut fake = fake_peer(&server.url(), "browser").await;
    let offer = json!({"jsonrpc": "2.0", "id": 2, "method": protocol::OFFER, "params": {
        "from": "browser", "to": "a", "sdp": BROWSER_OFFER, "request_id": "r1",
        "can_trickle_ice_candidates": true}});
    fake.send(Message::text(offer.to_string())).await.unwrap();
    let answer = next_of(&mut fake, protocol::ANSWER).await;
    let sdp = answer["sdp"].as_str().unwrap();
    let s = sections(sdp);
    assert_eq!(s.len(), 2, "{sdp}");
    let (m0, names) = &s[0];
    assert!(m0.starts_with("m=video 9 "), "{m0}");
    assert!(
        names.first().is_some_and(|n| n == "VP9" || n == "VP8"),
        "{names:?}"
    );
    assert_only_decodable(names);
    // Section 1 is refused: rejected (port 0) or, as webrtc-rs answers a stopped
    // transceiver, inactive.
    let second = &sdp[sdp.find("a=mid:1").expect("mid 1 answered")..];
    assert!(
        s[1].0.starts_with("m=video 0 ") || second.contains("a=inactive"),
        "refused: {sdp}"
    );
    // Reported with the formats offered.
    let error = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await.expect("events") {
                TransportEvent::Error { peer_id, error }
                    if error.code() == "ERR_UNSUPPORTED_CODEC" =>
                {
                    break (peer_id, error)
                }
                _ => {}
            }
        }
    })
    .await
    .expect("an ERR_UNSUPPORTED_CODEC error");
    assert_eq!(error.0.as_deref(), Some("browser"));
    let msg = error.1.to_string();
    assert!(
        msg.contains("AV1") && msg.contains("VP9 (profile-id=2)") && msg.contains("mid 1"),
        "{msg}"
    );
    a.shutdown().await.unwrap();
}
