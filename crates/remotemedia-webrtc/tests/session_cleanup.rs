//! A removed session, or a member that leaves, frees its pipeline and routing tasks within 1 s.
//! Its own test binary: the task counter it reads is process-wide.

mod common;
use common::{eventually, quiet_transport, server};
use remotemedia_webrtc::media::{AudioEncoderConfig, Pcm};
use remotemedia_webrtc::session::SessionOptions;
use remotemedia_webrtc::transport::live_session_tasks;
use remotemedia_webrtc::WebRtcTransport;
use std::time::Duration;

const LOOPBACK: &str = "nodes:\n  - { id: in, node_type: Input }\n  - { id: out, node_type: Output }\nconnections:\n  - { from: in, to: out }\n";

/// Sends 20 ms frames from `from` to `to` until `cond` holds (at most 5 s).
async fn send_until(from: &WebRtcTransport, to: &str, mut cond: impl FnMut() -> bool) -> bool {
    let tone: Vec<f32> = (0..960).map(|i| 0.3 * (i as f32 * 0.06).sin()).collect();
    for _ in 0..250 {
        if cond() {
            return true;
        }
        let _ = from.send_audio(to, Pcm::F32(&tone)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

async fn loop_session(
    hub: &WebRtcTransport,
    id: &str,
    member: &str,
) -> std::sync::Weak<impl Sized> {
    let opts = SessionOptions {
        manifest: Some(LOOPBACK.into()),
        ..Default::default()
    };
    hub.create_session(id, opts).unwrap();
    hub.add_peer_to_session(id, member).unwrap();
    hub.sessions().pipeline_handle(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_session_or_a_member_frees_its_pipeline_and_tasks_within_1s() {
    let s = server().await;
    let hub = quiet_transport(&s.url(), "sc-hub").await;
    let member = quiet_transport(&s.url(), "sc-mem").await;
    let peer = member.connect_peer("sc-hub").await.unwrap();
    peer.add_audio_track(AudioEncoderConfig::default())
        .await
        .unwrap();
    assert_eq!(live_session_tasks(), 0);

    // A session routing the member's audio: a task runs for it.
    let weak = loop_session(&hub, "room", "sc-mem").await;
    assert!(
        send_until(&member, "sc-hub", || live_session_tasks() == 1).await,
        "no routing task started ({} running)",
        live_session_tasks()
    );
    // Removed: the pipeline and the task are gone within 1 s, although audio keeps coming.
    let stop_sending = tokio::spawn({
        let member = member.clone();
        async move { send_until(&member, "sc-hub", || false).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    hub.sessions().remove("room").unwrap();
    assert!(
        eventually(Duration::from_secs(1), || weak.upgrade().is_none()
            && live_session_tasks() == 0)
        .await,
        "after removeSession: pipeline alive {}, {} tasks",
        weak.upgrade().is_some(),
        live_session_tasks()
    );
    stop_sending.abort();

    // Again, and this time the member disconnects: it leaves the session and its task ends.
    let weak = loop_session(&hub, "room2", "sc-mem").await;
    assert!(send_until(&member, "sc-hub", || live_session_tasks() == 1).await);
    member.disconnect_peer("sc-hub").await.unwrap();
    assert!(
        eventually(Duration::from_secs(1), || hub
            .sessions()
            .get("room2")
            .unwrap()
            .peers
            .is_empty()
            && live_session_tasks() == 0)
        .await,
        "after the member left: {:?}, {} tasks",
        hub.sessions().get("room2").unwrap().peers,
        live_session_tasks()
    );
    // The session itself stays (and keeps its pipeline) until it is removed.
    assert!(weak.upgrade().is_some());
    hub.sessions().remove("room2").unwrap();
    assert!(weak.upgrade().is_none());

    hub.shutdown().await.unwrap();
    member.shutdown().await.unwrap();
    s.close().await;
}
