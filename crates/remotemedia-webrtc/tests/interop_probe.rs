//! The private SCTP RTT probe (stream 1023) goes only to peers that announced they know it
//! (`can_full_reconnect`, which only this library sends): other stacks refuse data on a stream
//! they never negotiated (issue 13).

mod common;

use common::{eventually, server, transport};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(15);

/// A signaling relay on 127.0.0.1 in front of `upstream` that removes `can_full_reconnect` from
/// what its clients send: they look like a peer of another library. Returns its URL.
async fn stripping_relay(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let upstream = upstream.clone();
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
                    while let Some(Ok(msg)) = c_rx.next().await {
                        let msg = match msg {
                            Message::Text(t) => {
                                let mut v: Value = serde_json::from_str(t.as_str()).unwrap();
                                if let Some(p) = v.get_mut("params").and_then(Value::as_object_mut)
                                {
                                    p.remove("can_full_reconnect");
                                }
                                Message::text(v.to_string())
                            }
                            other => other,
                        };
                        if s_tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async {
                    while let Some(Ok(msg)) = s_rx.next().await {
                        if c_tx.send(msg).await.is_err() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_announce_the_probe_gets_none_and_ours_still_do() {
    let server = server().await;
    let (a, _ea) = transport(&server.url(), "a").await;
    let (ours, _eo) = transport(&server.url(), "ours").await;
    let relay = stripping_relay(server.url()).await;
    let (foreign, _ef) = transport(&relay, "foreign").await;

    let to_foreign = a.connect_peer("foreign").await.unwrap();
    let to_ours = a.connect_peer("ours").await.unwrap();
    let decided = |p: &std::sync::Arc<remotemedia_webrtc::peer::connection::Peer>| {
        p.has_rtt_probe().is_some()
    };
    assert!(eventually(WAIT, || decided(&to_foreign) && decided(&to_ours)).await);
    // No channel on stream 1023 towards the peer that did not announce it: nothing is ever
    // sent there.
    assert_eq!(to_foreign.has_rtt_probe(), Some(false));
    // Two of ours probe each other, both ways; the "foreign" one (ours underneath) heard `a`
    // announce it, so it probes `a`.
    assert_eq!(to_ours.has_rtt_probe(), Some(true));
    let back = ours.get_peer("a").unwrap();
    assert!(eventually(WAIT, || decided(&back)).await);
    assert_eq!(back.has_rtt_probe(), Some(true));
    let foreign_to_a = foreign.get_peer("a").unwrap();
    assert!(eventually(WAIT, || decided(&foreign_to_a)).await);
    assert_eq!(foreign_to_a.has_rtt_probe(), Some(true));
    for t in [a, ours, foreign] {
        t.shutdown().await.unwrap();
    }
}
