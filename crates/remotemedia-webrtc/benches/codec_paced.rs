//! The floor of the 720p30 CPU goal: what VP8/VP9 encode + decode alone cost per frame, in
//! CPU time of the thread doing them, when frames come back to back and when they come at 30
//! frames per second as in a real stream.
//!
//! `cargo bench -p remotemedia-webrtc --bench codec_paced`
//!
//! Each case runs a fresh default encoder (1280x720, 30 fps, 2 Mb/s, the media path's tuning)
//! and decoder on one thread, through 30 warm-up frames and then `PACED_FRAMES` (default 200)
//! measured ones, three ways:
//! - `back to back`: the next frame at once;
//! - `paced, sleeping`: the next frame at the next 1/30 s tick, the thread asleep in between;
//! - `paced, spinning`: the same ticks, the thread spinning in between (never idle), which
//!   tells the cost of waking from idle apart from the cost of time passing.
//!
//! The encoded stream is the same in the three (same frames, same rate control), so every
//! difference in CPU is the same work costing more. `% of a core` = (encode + decode) x 30.
//! Patterns: `bench` is the media bench's (benches/media.mjs: a scrolling diagonal luma ramp
//! and a moving box), `noisy` is `I420Buffer::test_pattern` (texture noise, a moving
//! checkerboard). `PACED_CODECS=vp8,vp9` and `PACED_PATTERNS=bench,noisy` pick the cases.

use remotemedia_webrtc::media::{
    psnr_y, I420Buffer, VideoCodec, VideoDecoder, VideoEncoder, VideoEncoderConfig,
};
use std::time::{Duration, Instant};

const W: usize = 1280;
const H: usize = 720;
const WARMUP: usize = 30;
const TICK: Duration = Duration::from_nanos(1_000_000_000 / 30);

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Frame `i` of the media bench's pattern (benches/media.mjs `patternFrames`, without the
/// frame-number stamp): repeats every 32 frames.
fn bench_pattern(i: usize) -> I420Buffer {
    let i = i % 32;
    let mut buf = I420Buffer::black(W as u32, H as u32).unwrap();
    let (y, u, v) = buf.planes_mut();
    let (bx, by) = (i * 34, 300);
    for r in 0..H {
        for c in 0..W {
            let in_box = (bx..bx + 192).contains(&c) && (by..by + 192).contains(&r);
            let inner = (bx + 48..bx + 144).contains(&c) && (by + 48..by + 144).contains(&r);
            y[r * W + c] = match (r < 48, in_box, inner) {
                (true, _, _) => 128,
                (false, true, true) => 16,
                (false, true, false) => 235,
                _ => ((c + 2 * r + 8 * i) & 255) as u8,
            };
        }
    }
    let (cw, ch) = (W / 2, H / 2);
    for r in 0..ch {
        for c in 0..cw {
            let band = r < 24;
            u[r * cw + c] = if band { 128 } else { ((c + 4 * i) & 255) as u8 };
            v[r * cw + c] = if band {
                128
            } else {
                (64 + ((r * 2) & 127)) as u8
            };
        }
    }
    buf
}

#[derive(Clone, Copy, PartialEq)]
enum Pace {
    BackToBack,
    Sleeping,
    Spinning,
}

struct Run {
    encode_ms: f64,
    decode_ms: f64,
    kbps: f64,
    psnr: f64,
}

fn run(codec: VideoCodec, frames: &[I420Buffer], measured: usize, pace: Pace) -> Run {
    let config = VideoEncoderConfig {
        width: W as u32,
        height: H as u32,
        framerate: 30,
        bitrate: 2_000_000,
        keyframe_interval: 0,
    };
    let mut enc = VideoEncoder::new(codec, &config).unwrap();
    let mut dec = VideoDecoder::new(codec).unwrap();
    let (mut encode, mut decode, mut bytes, mut psnr) = (Duration::ZERO, Duration::ZERO, 0, 0.0);
    let mut next = Instant::now();
    for i in 0..WARMUP + measured {
        if pace != Pace::BackToBack {
            next += TICK;
            match pace {
                Pace::Sleeping => {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()))
                }
                _ => {
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        let frame = &frames[i % frames.len()];
        let t0 = thread_cpu();
        let out = enc.encode(&frame.as_frame(), i as i64 * 33_333).unwrap();
        let t1 = thread_cpu();
        let mut picture = None;
        for f in &out {
            picture = dec.decode(&f.data).unwrap().or(picture);
        }
        let t2 = thread_cpu();
        if i >= WARMUP {
            encode += t1 - t0;
            decode += t2 - t1;
            bytes += out.iter().map(|f| f.data.len()).sum::<usize>();
            let picture = picture.expect("every frame decodes to a picture");
            psnr += psnr_y(&frame.as_frame(), &picture.as_frame()).unwrap();
        }
    }
    let n = measured as f64;
    Run {
        encode_ms: encode.as_secs_f64() * 1e3 / n,
        decode_ms: decode.as_secs_f64() * 1e3 / n,
        kbps: bytes as f64 * 8.0 * 30.0 / n / 1e3,
        psnr: psnr / n,
    }
}

fn main() {
    // `cargo bench -p remotemedia-webrtc -- <filter>` passes the filter to every bench: run
    // only when it matches this bench's name (flags such as `--bench` are ignored).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "codec_paced".contains(f.as_str())) {
        return;
    }
    let measured: usize = std::env::var("PACED_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let list = |key: &str, default: &str| -> Vec<String> {
        std::env::var(key)
            .unwrap_or_else(|_| default.into())
            .split(',')
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    println!(
        "| codec | pattern | frames | encode ms | decode ms | % of a core | kb/s | luma PSNR dB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for codec_name in list("PACED_CODECS", "vp8,vp9") {
        let codec = match codec_name.as_str() {
            "vp8" => VideoCodec::Vp8,
            "vp9" => VideoCodec::Vp9,
            other => panic!("PACED_CODECS: unknown codec {other} (vp8, vp9)"),
        };
        for pattern in list("PACED_PATTERNS", "bench,noisy") {
            let frames: Vec<I420Buffer> = match pattern.as_str() {
                "bench" => (0..32).map(bench_pattern).collect(),
                "noisy" => (0..64)
                    .map(|i| I420Buffer::test_pattern(W as u32, H as u32, i).unwrap())
                    .collect(),
                other => panic!("PACED_PATTERNS: unknown pattern {other} (bench, noisy)"),
            };
            for (pace, label) in [
                (Pace::BackToBack, "back to back"),
                (Pace::Sleeping, "paced, sleeping"),
                (Pace::Spinning, "paced, spinning"),
            ] {
                let r = run(codec, &frames, measured, pace);
                println!(
                    "| {codec_name} | {pattern} | {label} | {:.2} | {:.2} | {:.1} | {:.0} | {:.2} |",
                    r.encode_ms,
                    r.decode_ms,
                    (r.encode_ms + r.decode_ms) * 3.0,
                    r.kbps,
                    r.psnr
                );
            }
        }
    }
}
