//! Resource cleanup. Its own test binary: the counters it reads are process-wide.

mod common;
use common::{eventually, quiet_transport, server};

// Only one test here: the counter is process-wide and tests in one binary run in parallel.
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_ends_every_channel_task() {
    use remotemedia_webrtc::channel::live_channel_tasks;
    use remotemedia_webrtc::config::DataChannelMode;
    let s = server().await;
    let a = quiet_transport(&s.url(), "leak-a").await;
    let b = quiet_transport(&s.url(), "leak-b").await;
    for _ in 0..5 {
        let p = a.connect_peer("leak-b").await.unwrap();
        p.create_data_channel("extra", DataChannelMode::Unreliable)
            .await
            .unwrap();
        assert!(live_channel_tasks() >= 4);
        a.disconnect_peer("leak-b").await.unwrap();
        eventually(Duration::from_secs(2), || b.list_all_peers().is_empty()).await;
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
