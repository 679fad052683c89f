//! Resource cleanup. Its own test binary: the counters it reads are process-wide.

use remotemedia_webrtc::signaling::server::{ServerConfig, SignalingServer};
use remotemedia_webrtc::{WebRtcTransport, WebRtcTransportConfig};
use std::time::Duration;

async fn server() -> SignalingServer {
    SignalingServer::bind(ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn transport(url: &str, id: &str) -> (WebRtcTransport, ()) {
    let t = WebRtcTransport::new(
        WebRtcTransportConfig::new(url)
            .with_peer_id(id)
            .with_bind_address("127.0.0.1"),
    )
    .unwrap();
    t.start().await.unwrap();
    (t, ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_ends_every_channel_task() {
    use remotemedia_webrtc::channel::live_channel_tasks;
    use remotemedia_webrtc::config::DataChannelMode;
    let s = server().await;
    let (a, _ea) = transport(&s.url(), "leak-a").await;
    let (b, _eb) = transport(&s.url(), "leak-b").await;
    for _ in 0..5 {
        let p = a.connect_peer("leak-b").await.unwrap();
        p.create_data_channel("extra", DataChannelMode::Unreliable)
            .await
            .unwrap();
        assert!(live_channel_tasks() >= 4);
        a.disconnect_peer("leak-b").await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !b.list_all_peers().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while live_channel_tasks() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        live_channel_tasks(),
        0,
        "channel tasks outlived their connections"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untaken_events_never_stall_a_transport() {
    use remotemedia_webrtc::channel::ChannelMessage;
    let s = server().await;
    // Neither transport's events are taken: 6 MB in 3000 messages, far past the 1024-event
    // queue and the SCTP windows, must not block.
    let (a, _) = transport(&s.url(), "quiet-a").await;
    let (b, _) = transport(&s.url(), "quiet-b").await;
    let p = a.connect_peer("quiet-b").await.unwrap();
    let ch = p.default_channel().unwrap();
    let sends = async {
        for i in 0..3000u32 {
            let mut m = vec![0u8; 2048];
            m[..4].copy_from_slice(&i.to_le_bytes());
            ch.send(ChannelMessage::binary(m)).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), sends)
        .await
        .expect("sends stalled");
    // b is still responsive: a second channel opens.
    let extra = p
        .create_data_channel(
            "after",
            remotemedia_webrtc::config::DataChannelMode::Reliable,
        )
        .await;
    assert!(extra.is_ok());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}
