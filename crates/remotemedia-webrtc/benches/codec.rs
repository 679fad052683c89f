//! Codec costs of the media path: Opus 20 ms encode/decode, VP8 and VP9 1280x720 encode/decode.
//!
//! `cargo bench -p remotemedia-webrtc --bench codec` (add `--features h264` for H.264).
//!
//! Before criterion's own statistics, each video case prints per-frame p50/p95 over a run of
//! moving test-pattern frames (criterion reports averages over batches, which hide the cost of
//! an occasional keyframe); the goals are VP8 < 10 ms and VP9 < 15 ms at 720p, audio < 100 µs.
//! Set `CODEC_BENCH_SPEEDS=1` to also print p50/p95 for every VP8/VP9 speed.

use criterion::{criterion_group, criterion_main, Criterion};
use remotemedia_webrtc::media::{
    AudioEncoderConfig, I420Buffer, OpusDecoder, OpusEncoder, VideoCodec, VideoDecoder,
    VideoEncoder, VideoEncoderConfig, VideoEncoderTuning,
};
mod common;
use common::{percentiles, report, tone};
use std::hint::black_box;

const PATTERN_FRAMES: u32 = 60;

fn audio(c: &mut Criterion) {
    if std::env::var_os("CODEC_BENCH_SPEEDS").is_some() {
        let frames: Vec<Vec<f32>> = (0..50).map(|i| tone(960, 1, i * 960)).collect();
        for complexity in [0u8, 3, 5, 7, 8, 9, 10] {
            let config = AudioEncoderConfig {
                complexity,
                ..Default::default()
            };
            let mut enc = OpusEncoder::new(&config).unwrap();
            let mut out = vec![0u8; 4000];
            for f in &frames {
                enc.encode_f32_into(f, &mut out).unwrap();
            }
            report(
                &format!("opus encode 20 ms, 1 ch, 64 kb/s, cx {complexity}"),
                percentiles(2_000, |i| {
                    black_box(enc.encode_f32_into(&frames[i % 50], &mut out).unwrap());
                }),
            );
        }
    }
    for (channels, fec) in [(1u16, false), (2, false), (1, true)] {
        let config = AudioEncoderConfig {
            channels,
            fec,
            ..Default::default()
        };
        let tag = if fec { ", FEC" } else { "" };
        let id = if fec { "_fec" } else { "" };
        let frames: Vec<Vec<f32>> = (0..50)
            .map(|i| tone(960, channels as usize, i * 960))
            .collect();
        let mut enc = OpusEncoder::new(&config).unwrap();
        let mut out = vec![0u8; 4000];
        for f in &frames {
            enc.encode_f32_into(f, &mut out).unwrap();
        }
        report(
            &format!("opus encode 20 ms, {channels} ch, 64 kb/s, cx 10{tag}"),
            percentiles(2_000, |i| {
                black_box(enc.encode_f32_into(&frames[i % 50], &mut out).unwrap());
            }),
        );
        c.bench_function(&format!("opus_encode_20ms_{channels}ch{id}"), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                black_box(enc.encode_f32_into(&frames[i % 50], &mut out).unwrap())
            })
        });

        let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode_f32(f).unwrap()).collect();
        let mut dec = OpusDecoder::new(48_000, channels).unwrap();
        let mut pcm = vec![0f32; 5760 * channels as usize];
        report(
            &format!("opus decode 20 ms, {channels} ch{tag}"),
            percentiles(2_000, |i| {
                black_box(dec.decode_f32_into(&packets[i % 50], &mut pcm).unwrap());
            }),
        );
        c.bench_function(&format!("opus_decode_20ms_{channels}ch{id}"), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                black_box(dec.decode_f32_into(&packets[i % 50], &mut pcm).unwrap())
            })
        });
    }
}

fn config_720p() -> VideoEncoderConfig {
    VideoEncoderConfig {
        width: 1280,
        height: 720,
        framerate: 30,
        bitrate: 2_000_000,
        keyframe_interval: 0,
    }
}

fn video_codecs() -> Vec<VideoCodec> {
    let mut v = vec![VideoCodec::Vp8, VideoCodec::Vp9];
    if cfg!(feature = "h264") {
        v.push(VideoCodec::H264);
    }
    v
}

fn video(c: &mut Criterion) {
    let cfg = config_720p();
    let frames: Vec<I420Buffer> = (0..PATTERN_FRAMES)
        .map(|i| I420Buffer::test_pattern(cfg.width, cfg.height, i).unwrap())
        .collect();
    let n = frames.len();

    if std::env::var_os("CODEC_BENCH_SPEEDS").is_some() {
        for (codec, speeds) in [
            (VideoCodec::Vp8, &[6, 8, 10, 12][..]),
            (VideoCodec::Vp9, &[7, 8, 9][..]),
        ] {
            for (speed, threads) in speeds.iter().flat_map(|s| [(*s, Some(1)), (*s, None)]) {
                let tuning = VideoEncoderTuning {
                    speed: Some(speed),
                    threads,
                    ..Default::default()
                };
                let mut enc = VideoEncoder::with_tuning(codec, &cfg, &tuning).unwrap();
                let mut ts = 0i64;
                let mut bytes = 0usize;
                let p = percentiles(150, |i| {
                    ts += 33_333;
                    let out = enc.encode(&frames[i % n].as_frame(), ts).unwrap();
                    bytes += out.iter().map(|f| f.data.len()).sum::<usize>();
                });
                let t = threads.map_or("default".to_string(), |t| t.to_string());
                report(
                    &format!("{codec:?} 720p encode, speed {speed}, threads {t}"),
                    p,
                );
                println!("{:<44} {} kb/s", "", bytes * 8 * 30 / 150 / 1000);
            }
        }
    }

    for codec in video_codecs() {
        let mut enc = VideoEncoder::new(codec, &cfg).unwrap();
        let mut ts = 0i64;
        let mut encoded = Vec::new();
        // Warm-up: the keyframe and the rate control's first second.
        for i in 0..30 {
            ts += 33_333;
            encoded.extend(enc.encode(&frames[i % n].as_frame(), ts).unwrap());
        }
        report(
            &format!("{codec:?} 720p encode (2 Mb/s, default tuning)"),
            percentiles(150, |i| {
                ts += 33_333;
                encoded.extend(enc.encode(&frames[i % n].as_frame(), ts).unwrap());
            }),
        );
        c.bench_function(&format!("{codec:?}_encode_720p").to_lowercase(), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                ts += 33_333;
                black_box(enc.encode(&frames[i % n].as_frame(), ts).unwrap())
            })
        });

        // Decode the stream encoded above, in order (a decoder needs every frame since the
        // keyframe), looping back to the start only through a fresh decoder.
        let stream: Vec<Vec<u8>> = encoded.iter().map(|f| f.data.clone()).collect();
        let mut dec = VideoDecoder::new(codec).unwrap();
        report(
            &format!("{codec:?} 720p decode"),
            percentiles(stream.len(), |i| {
                black_box(dec.decode(&stream[i]).unwrap());
            }),
        );
        c.bench_function(&format!("{codec:?}_decode_720p").to_lowercase(), |b| {
            let mut dec = VideoDecoder::new(codec).unwrap();
            let mut i = 0;
            b.iter(|| {
                if i == stream.len() {
                    dec = VideoDecoder::new(codec).unwrap();
                    i = 0;
                }
                let r = dec.decode(&stream[i]).unwrap();
                i += 1;
                black_box(r)
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = audio, video
}
criterion_main!(benches);
