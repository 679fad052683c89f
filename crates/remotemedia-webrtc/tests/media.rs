//! Audio between two transports on loopback: PCM → Opus → RTP → Opus → PCM.

mod common;
use common::{server, transport};
use remotemedia_webrtc::event::TransportEvent;
use remotemedia_webrtc::media::{AudioEncoderConfig, Pcm};
use std::time::Duration;

/// Frequency from zero crossings, in Hz.
fn frequency(samples: &[f32], rate: f32) -> f32 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f32 / 2.0 / (samples.len() as f32 / rate)
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_arrives_as_the_same_tone() {
    let s = server().await;
    let (a, _ea) = transport(&s.url(), "tone-a").await;
    let (b, mut eb) = transport(&s.url(), "tone-b").await;
    let peer = a.connect_peer("tone-b").await.unwrap();
    peer.add_audio_track(AudioEncoderConfig::default())
        .await
        .unwrap();
    // The track is negotiated once `add_audio_track` resolves: it sends at once.
    let silence = vec![0.0f32; 960];
    a.send_audio("tone-b", Pcm::F32(&silence)).await.unwrap();

    let sent = 100; // 2 s of 20 ms frames
    let sender = tokio::spawn({
        let a = a.clone();
        async move {
            let mut phase = 0.0f32;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..sent {
                tick.tick().await;
                let frame: Vec<f32> = (0..960)
                    .map(|_| {
                        phase += 2.0 * std::f32::consts::PI * 440.0 / 48_000.0;
                        0.5 * phase.sin()
                    })
                    .collect();
                a.send_audio("tone-b", Pcm::F32(&frame)).await.unwrap();
            }
        }
    });
    let mut received = Vec::new();
    let mut frames = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while frames < sent && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), eb.recv()).await {
            Ok(Some(TransportEvent::AudioFrame { peer_id, frame })) => {
                assert_eq!(peer_id, "tone-a");
                assert_eq!(frame.sample_rate, 48_000);
                assert_eq!(frame.channels, 1);
                frames += 1;
                received.extend(frame.samples);
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                if sender.is_finished() {
                    break;
                }
            }
        }
    }
    sender.await.unwrap();
    assert!(
        frames >= sent * 9 / 10,
        "only {frames} of {sent} frames arrived"
    );
    // Skip the first frames (silence, codec start-up), then measure.
    let tail = &received[received.len() / 4..];
    let f = frequency(tail, 48_000.0);
    assert!((f - 440.0).abs() <= 5.0, "frequency {f} Hz");
    let level_db = 20.0 * (rms(tail) / (0.5 / 2f32.sqrt())).log10();
    assert!(level_db.abs() <= 3.0, "level off by {level_db} dB");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

async fn video_round_trip(codec: remotemedia_webrtc::config::VideoCodec, tag: &str) {
    use remotemedia_webrtc::media::{psnr_y, I420Buffer, I420Frame, VideoEncoderConfig};
    use remotemedia_webrtc::transport::VideoInput;
    use remotemedia_webrtc::WebRtcTransportConfig;
    let s = server().await;
    let mk = |id: &str| {
        remotemedia_webrtc::WebRtcTransport::new(
            WebRtcTransportConfig::new(s.url())
                .with_peer_id(id)
                .with_bind_address("127.0.0.1")
                .with_video_codec(codec),
        )
        .unwrap()
    };
    let a = mk(&format!("{tag}-a"));
    let b = mk(&format!("{tag}-b"));
    let mut eb = b.take_events().unwrap();
    a.start().await.unwrap();
    b.start().await.unwrap();
    let peer = a.connect_peer(&format!("{tag}-b")).await.unwrap();
    let (w, h) = (320, 240);
    peer.add_video_track(VideoEncoderConfig {
        width: w,
        height: h,
        framerate: 30,
        bitrate: 800_000,
        keyframe_interval: 30,
    })
    .await
    .unwrap();
    let frames: Vec<I420Buffer> = (0..60)
        .map(|i| I420Buffer::test_pattern(w, h, i).unwrap())
        .collect();
    let to = format!("{tag}-b");
    // Negotiated once `add_video_track` resolved: the first frame is sent at once.
    a.send_video(
        &to,
        VideoInput {
            data: frames[0].data().to_vec(),
            width: w,
            height: h,
            timestamp_us: 0,
            keyframe: true,
        },
    )
    .await
    .unwrap();
    let sender = tokio::spawn({
        let a = a.clone();
        let frames = frames.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            for (i, f) in frames.iter().enumerate().skip(1) {
                tick.tick().await;
                a.send_video(
                    &to,
                    VideoInput {
                        data: f.data().to_vec(),
                        width: w,
                        height: h,
                        timestamp_us: i as i64 * 33_333,
                        keyframe: false,
                    },
                )
                .await
                .unwrap();
            }
        }
    });
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while got.len() < 60 && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), eb.recv()).await {
            Ok(Some(TransportEvent::VideoFrame { frame, .. })) => got.push(frame),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) if sender.is_finished() => break,
            Err(_) => {}
        }
    }
    sender.await.unwrap();
    assert!(
        got.len() >= 54,
        "{tag}: only {} of 60 frames arrived",
        got.len()
    );
    assert!(got[0].keyframe);
    for f in &got {
        assert_eq!((f.width, f.height), (w, h));
        assert_eq!(f.data.len(), (w * h * 3 / 2) as usize);
    }
    // The last frame decodes to (nearly) what was sent last.
    let last = got.last().unwrap();
    let shown = I420Frame::from_packed(w, h, &last.data).unwrap();
    let best = frames
        .iter()
        .map(|f| psnr_y(&f.as_frame(), &shown).unwrap())
        .fold(0.0f64, f64::max);
    assert!(best > 30.0, "{tag}: PSNR {best}");
    assert!(last
        .framerate
        .is_some_and(|fps| (20.0..40.0).contains(&fps)));
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_frames_arrive_decoded() {
    video_round_trip(remotemedia_webrtc::config::VideoCodec::Vp8, "vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp9_frames_arrive_decoded() {
    video_round_trip(remotemedia_webrtc::config::VideoCodec::Vp9, "vp9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_is_answered_with_a_keyframe() {
    use remotemedia_webrtc::media::{I420Buffer, VideoEncoderConfig};
    use remotemedia_webrtc::transport::VideoInput;
    let s = server().await;
    let (a, _ea) = transport(&s.url(), "kf-a").await;
    let (b, mut eb) = transport(&s.url(), "kf-b").await;
    let peer = a.connect_peer("kf-b").await.unwrap();
    let (w, h) = (160, 120);
    // Keyframes only on request.
    let track = peer
        .add_video_track(VideoEncoderConfig {
            width: w,
            height: h,
            framerate: 30,
            bitrate: 300_000,
            keyframe_interval: 0,
        })
        .await
        .unwrap();
    let frame = |i: u32| VideoInput {
        data: I420Buffer::test_pattern(w, h, i).unwrap().data().to_vec(),
        width: w,
        height: h,
        timestamp_us: i as i64 * 33_333,
        keyframe: false,
    };
    let i = 0;
    a.send_video("kf-b", frame(i)).await.unwrap();
    // Collect frames; after 10 of them ask for a keyframe.
    let mut keyframes_after_request = 0;
    let mut requested = false;
    let mut received = 0;
    for n in 1..=60u32 {
        a.send_video("kf-b", frame(i + n)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(ev) = eb.try_recv() {
            if let TransportEvent::VideoFrame { frame, .. } = ev {
                received += 1;
                if requested && frame.keyframe {
                    keyframes_after_request += 1;
                }
            }
        }
        if received >= 10 && !requested {
            b.get_peer("kf-a")
                .unwrap()
                .request_keyframe()
                .await
                .unwrap();
            requested = true;
        }
        if keyframes_after_request > 0 {
            break;
        }
    }
    assert!(requested, "no frames arrived");
    assert!(
        track.keyframe_requests() >= 1,
        "the sender never saw the PLI"
    );
    assert!(
        keyframes_after_request >= 1,
        "no keyframe followed the request"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sender_report_frames_carry_the_senders_clock() {
    let s = server().await;
    let (a, _ea) = transport(&s.url(), "sr-a").await;
    let (b, mut eb) = transport(&s.url(), "sr-b").await;
    let peer = a.connect_peer("sr-b").await.unwrap();
    peer.add_audio_track(AudioEncoderConfig::default())
        .await
        .unwrap();
    let frame = vec![0.1f32; 960];
    a.send_audio("sr-b", Pcm::F32(&frame)).await.unwrap();
    let sender = tokio::spawn({
        let a = a.clone();
        async move {
            let frame = vec![0.1f32; 960];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..400 {
                tick.tick().await;
                if a.send_audio("sr-b", Pcm::F32(&frame)).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut before = 0;
    let mut synced: Vec<(u32, u64)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    while synced.len() < 50 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(TransportEvent::AudioFrame { frame, .. })) =
            tokio::time::timeout(Duration::from_millis(200), eb.recv()).await
        {
            if frame.sync_confidence >= 1.0 {
                synced.push((frame.rtp_timestamp, frame.wall_clock_us));
            } else {
                assert_eq!(
                    frame.sync_confidence, 0.5,
                    "before any report: the arrival clock"
                );
                before += 1;
            }
        }
    }
    sender.abort();
    assert!(before > 0, "the first frames precede any sender report");
    assert!(
        synced.len() >= 50,
        "no sender report mapped the clock ({} frames)",
        synced.len()
    );
    // The sender's clock: wall-clock time advances exactly with the RTP clock (48 kHz).
    for w in synced.windows(2) {
        let d_rtp = w[1].0.wrapping_sub(w[0].0) as i64;
        let d_wall = w[1].1 as i64 - w[0].1 as i64;
        assert!(
            (d_wall - d_rtp * 1_000_000 / 48_000).abs() <= 1,
            "{d_wall} us vs {d_rtp} ticks"
        );
        assert!(d_wall > 0);
    }
    // And it is near now (same machine, loopback).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!((now - synced.last().unwrap().1 as i64).abs() < 2_000_000);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_rtp_time_follows_each_frames_own_timestamp_across_gaps() {
    use remotemedia_webrtc::media::{I420Buffer, VideoEncoderConfig};
    use remotemedia_webrtc::transport::VideoInput;
    let s = server().await;
    let (a, _ea) = transport(&s.url(), "ts-a").await;
    let (b, mut eb) = transport(&s.url(), "ts-b").await;
    let peer = a.connect_peer("ts-b").await.unwrap();
    let (w, h) = (160, 120);
    peer.add_video_track(VideoEncoderConfig {
        width: w,
        height: h,
        framerate: 30,
        bitrate: 300_000,
        keyframe_interval: 30,
    })
    .await
    .unwrap();
    let frame = |i: u32, ts: i64| VideoInput {
        data: I420Buffer::test_pattern(w, h, i).unwrap().data().to_vec(),
        width: w,
        height: h,
        timestamp_us: ts,
        keyframe: i == 0,
    };
    // Negotiated once `add_video_track` resolved: no frame is refused or lost at the start.
    a.send_video("ts-b", frame(0, 0)).await.unwrap();
    // Capture times with a 300 ms pause in the middle.
    let times: [i64; 6] = [40_000, 80_000, 120_000, 420_000, 460_000, 500_000];
    for (i, t) in times.iter().enumerate() {
        a.send_video("ts-b", frame(i as u32 + 1, *t)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut rtp = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while rtp.len() < 7 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(TransportEvent::VideoFrame { frame, .. })) =
            tokio::time::timeout(Duration::from_millis(200), eb.recv()).await
        {
            rtp.push(frame.rtp_timestamp);
        }
    }
    assert_eq!(rtp.len(), 7, "frames missing");
    let deltas: Vec<u32> = rtp.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
    // 90 kHz ticks between the capture times (40 ms = 3600, the 300 ms pause = 27 000).
    assert_eq!(deltas, vec![3600, 3600, 3600, 27_000, 3600, 3600]);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

/// With `answer_media`, the answer to an offer that sends audio carries an audio track of the
/// answerer's own: it can send audio back at once, with no renegotiation of its own. Without it,
/// the answerer has no track.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_answer_media_carries_a_track_of_the_offered_kind() {
    let s = server().await;
    let (a, mut ea) = transport(&s.url(), "answer-media-a").await;
    let b = remotemedia_webrtc::WebRtcTransport::new(
        remotemedia_webrtc::WebRtcTransportConfig::new(s.url())
            .with_peer_id("answer-media-b")
            .with_bind_address("127.0.0.1")
            .with_answer_media(true),
    )
    .unwrap();
    let _eb = b.take_events().unwrap();
    b.start().await.unwrap();
    let (c, _ec) = transport(&s.url(), "answer-media-c").await;

    // a → b (answer_media) and a → c (default), then a offers audio to both.
    for to in ["answer-media-b", "answer-media-c"] {
        let peer = a.connect_peer(to).await.unwrap();
        assert!(b.audio_track("answer-media-a").is_err() || to == "answer-media-c");
        peer.add_audio_track(AudioEncoderConfig::default())
            .await
            .unwrap();
    }
    let got_track = common::eventually(Duration::from_secs(5), || {
        b.audio_track("answer-media-a").is_ok()
    })
    .await;
    assert!(got_track, "b's answer added no audio track");
    // c answered the same offer without a track of its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.audio_track("answer-media-a").is_err());
    assert!(c
        .send_audio("answer-media-a", Pcm::F32(&[0.0; 960]))
        .await
        .is_err());

    // b's track works straight away: its tone reaches a.
    let mut frames_from_b = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut phase = 0.0f32;
    while frames_from_b < 10 && tokio::time::Instant::now() < deadline {
        let frame: Vec<f32> = (0..960)
            .map(|_| {
                phase += 2.0 * std::f32::consts::PI * 440.0 / 48_000.0;
                0.5 * phase.sin()
            })
            .collect();
        let _ = b.send_audio("answer-media-a", Pcm::F32(&frame)).await;
        while let Ok(ev) = ea.try_recv() {
            if let TransportEvent::AudioFrame { peer_id, .. } = ev {
                if peer_id == "answer-media-b" {
                    frames_from_b += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(frames_from_b >= 10, "a got {frames_from_b} frames from b");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
    s.close().await;
}

/// Both sides add a track at the same moment: their offers cross (glare). One side (the polite
/// one, which answered the first offer) gives its offer up, answers, and offers again; audio
/// then flows both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracks_added_on_both_sides_at_once_both_carry_audio() {
    let s = server().await;
    let (a, mut ea) = transport(&s.url(), "glare-a").await;
    let (b, mut eb) = transport(&s.url(), "glare-b").await;
    let pa = a.connect_peer("glare-b").await.unwrap();
    let pb = {
        let mut found = None;
        for _ in 0..200 {
            if let Ok(p) = b.get_peer("glare-a") {
                if p.is_ready() {
                    found = Some(p);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        found.expect("b never saw a")
    };
    let (ra, rb) = tokio::join!(
        pa.add_audio_track(AudioEncoderConfig::default()),
        pb.add_audio_track(AudioEncoderConfig::default())
    );
    ra.unwrap();
    rb.unwrap();
    let mut from_a = 0; // frames b got from a
    let mut from_b = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let frame = vec![0.2f32; 960];
    while (from_a < 20 || from_b < 20) && tokio::time::Instant::now() < deadline {
        let _ = a.send_audio("glare-b", Pcm::F32(&frame)).await;
        let _ = b.send_audio("glare-a", Pcm::F32(&frame)).await;
        while let Ok(ev) = ea.try_recv() {
            if matches!(ev, TransportEvent::AudioFrame { .. }) {
                from_b += 1;
            }
        }
        while let Ok(ev) = eb.try_recv() {
            if matches!(ev, TransportEvent::AudioFrame { .. }) {
                from_a += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        from_a >= 20 && from_b >= 20,
        "b got {from_a} frames from a, a got {from_b} from b"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}

/// `add_audio_track` resolves only once the answer to its offer is applied: before, the
/// track sends nothing (`PeerNotConnected`, "not negotiated"), so that the remote never gets
/// RTP for an SSRC no description it applied declares. Signaling to the offerer is slowed by
/// 150 ms, so the answer comes well after the offer is out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_sends_nothing_until_the_answer_to_its_offer_is_applied() {
    use remotemedia_webrtc::Error;
    let s = server().await;
    let slow = common::SlowDownlink::start(s.local_addr(), Duration::from_millis(150)).await;
    let (a, _ea) = transport(&slow.url, "gate-a").await;
    let (b, mut eb) = transport(&s.url(), "gate-b").await;
    let peer = a.connect_peer("gate-b").await.unwrap();
    let adding = tokio::spawn({
        let peer = peer.clone();
        async move { peer.add_audio_track(AudioEncoderConfig::default()).await }
    });
    // The offer is out, its answer at least 150 ms away.
    let track = loop {
        if let Some(t) = peer.audio_track() {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !adding.is_finished(),
        "add_audio_track resolved before its answer"
    );
    assert!(!track.negotiation().is_negotiated());
    let silence = vec![0.0f32; 960];
    let early = a.send_audio("gate-b", Pcm::F32(&silence)).await;
    assert!(
        matches!(early, Err(Error::PeerNotConnected(ref m)) if m.contains("not negotiated")),
        "a send before the answer: {early:?}"
    );
    // A broadcast skips the peer instead.
    let r = a.broadcast_audio(Pcm::F32(&silence)).await.unwrap();
    assert_eq!((r.sent, r.failed.len()), (0, 0));
    adding.await.unwrap().unwrap();
    assert!(track.negotiation().is_negotiated());
    // From the first packet on, the remote decodes what is sent.
    for _ in 0..10 {
        a.send_audio("gate-b", Pcm::F32(&silence)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut frames = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while frames < 10 && tokio::time::Instant::now() < deadline {
        if let Ok(Some(TransportEvent::AudioFrame { .. })) =
            tokio::time::timeout(Duration::from_millis(200), eb.recv()).await
        {
            frames += 1;
        }
    }
    assert_eq!(
        frames, 10,
        "frames sent right after add_audio_track were lost"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    s.close().await;
}
