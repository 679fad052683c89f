//! The audio send path without JavaScript: 20 ms Opus encode + RTP packetize + handover to a
//! connected peer's connection, beside the raw libopus encode of the same frames.
//!
//! `cargo bench -p remotemedia-webrtc --bench audio_send`
//!
//! Two transports on loopback in this process (a → b, `bindAddress` 127.0.0.1, the default
//! Opus track: 48 kHz mono, 64 kb/s, complexity 10). Each send runs on the bench thread, as a
//! JS `sendAudio` runs on the JS thread: [`LocalAudioTrack::send_now`] encodes, packetizes and
//! hands the packet to the connection's queue inside the runtime's context, and only when the
//! queue is full is the rest awaited. Before criterion's statistics, each case prints p50/p95
//! of single calls (the goal compares p50s: the send path ≤ 20 % over the codec).
//! `AUDIO_SEND_FRAMES=n` sets the calls per p50/p95 run (default 2000); with a filter that
//! matches no criterion case (`-- none`) only those runs are made, e.g. under callgrind:
//! `valgrind --tool=callgrind --toggle-collect='*LocalAudioTrack*send_now*' <bench binary>
//! --bench none`.

use criterion::{criterion_group, criterion_main, Criterion};
use remotemedia_webrtc::media::{AudioEncoderConfig, OpusEncoder, Pcm};
use remotemedia_webrtc::signaling::server::{ServerConfig, SignalingServer};
use remotemedia_webrtc::{WebRtcTransport, WebRtcTransportConfig};
mod common;
use common::{percentiles, report, tone};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn transport(url: &str, id: &str) -> WebRtcTransport {
    WebRtcTransport::new(
        WebRtcTransportConfig::new(url)
            .with_peer_id(id)
            .with_bind_address("127.0.0.1"),
    )
    .unwrap()
}

fn audio_send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let frames: Vec<Vec<f32>> = (0..50).map(|i| tone(960, 1, i * 960)).collect();
    let n: usize = std::env::var("AUDIO_SEND_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let config = AudioEncoderConfig::default();

    // a → b, connected, the track negotiated (the first sends fail until it is).
    let (server, a, b, track) = rt.block_on(async {
        let server = SignalingServer::bind(ServerConfig {
            host: "127.0.0.1".into(),
            port: 0,
            ..Default::default()
        })
        .await
        .unwrap();
        let a = transport(&server.url(), "bench-a");
        let b = transport(&server.url(), "bench-b");
        a.start().await.unwrap();
        // b's events (decoded frames) are drained as they come.
        let mut events = b.take_events().unwrap();
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        b.start().await.unwrap();
        let peer = a.connect_peer("bench-b").await.unwrap();
        let track = peer.add_audio_track(config).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while a.send_audio("bench-b", Pcm::F32(&frames[0])).await.is_err() {
            assert!(Instant::now() < deadline, "audio track never negotiated");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (server, a, b, track)
    });

    let mut raw = OpusEncoder::new(&config).unwrap();
    let mut out = vec![0u8; 4000];
    for f in &frames {
        raw.encode_f32_into(f, &mut out).unwrap();
    }
    let send = |i: usize| {
        let _guard = rt.enter();
        if let Some(rest) = track.send_now(Pcm::F32(&frames[i % 50])).unwrap() {
            rt.block_on(rest).unwrap();
        }
    };
    // Warm-up of both paths, then alternating runs so both see the same machine.
    for i in 0..n.min(500) {
        send(i);
    }
    for round in 1..=2 {
        report(
            &format!("opus encode 20 ms, 1 ch, 64 kb/s, cx 10 (run {round})"),
            percentiles(n, |i| {
                black_box(raw.encode_f32_into(&frames[i % 50], &mut out).unwrap());
            }),
        );
        report(
            &format!("send: encode + packetize + handover (run {round})"),
            percentiles(n, &send),
        );
        // The same two steps timed apart: how much is the handover itself, and how much the
        // encode runs slower while the connection's threads work on the other cores.
        let (mut enc_t, mut hand_t) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let _guard = rt.enter();
            let t0 = Instant::now();
            let (packet, duration) = track.encode(Pcm::F32(&frames[i % 50])).unwrap();
            let t1 = Instant::now();
            let mut rest = Box::pin(track.send_packet(packet, duration));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if std::future::Future::poll(rest.as_mut(), &mut cx).is_pending() {
                rt.block_on(rest).unwrap();
            }
            hand_t.push(t1.elapsed());
            enc_t.push(t1 - t0);
        }
        for (name, t) in [
            ("encode part", &mut enc_t),
            ("packetize + handover part", &mut hand_t),
        ] {
            t.sort();
            report(
                &format!("  of which {name} (run {round})"),
                (t[n / 2], t[(n * 95 / 100).min(n - 1)]),
            );
        }
    }
    c.bench_function("audio_raw_opus_encode_20ms", |bch| {
        let mut i = 0;
        bch.iter(|| {
            i += 1;
            black_box(raw.encode_f32_into(&frames[i % 50], &mut out).unwrap())
        })
    });
    c.bench_function("audio_send_20ms", |bch| {
        let mut i = 0;
        bch.iter(|| {
            i += 1;
            send(i)
        })
    });
    rt.block_on(async {
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
        server.close().await;
    });
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = audio_send
}
criterion_main!(benches);
