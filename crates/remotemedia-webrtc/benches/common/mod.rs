//! Helpers shared by the benches (`mod common;`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// A 440 Hz tone at half scale, `per_channel` samples of `channels` interleaved channels,
/// starting at sample `start`.
pub fn tone(per_channel: usize, channels: usize, start: usize) -> Vec<f32> {
    (0..per_channel * channels)
        .map(|i| {
            let n = start + i / channels;
            (0.5 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 48_000.0).sin()) as f32
        })
        .collect()
}

/// p50 and p95 of `n` timed calls.
pub fn percentiles(n: usize, mut f: impl FnMut(usize)) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..n)
        .map(|i| {
            let start = Instant::now();
            f(i);
            start.elapsed()
        })
        .collect();
    t.sort();
    (t[n / 2], t[(n * 95 / 100).min(n - 1)])
}

pub fn report(name: &str, (p50, p95): (Duration, Duration)) {
    println!("{name:<52} p50 {p50:>10.1?}   p95 {p95:>10.1?}");
}

/// The criterion settings of the codec and audio-send benches: 30 samples, 1 s warm-up, 4 s
/// of measurement (enough for per-frame costs of 50 µs to 10 ms).
pub fn criterion_config() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}
