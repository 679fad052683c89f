//! Test signals for the crate's unit tests (compiled only for them): a sine tone, and the measures
//! the audio tests assert with (level in dB, level at one frequency, zero crossings).
use std::f64::consts::PI;

/// `n` samples of a `freq` Hz sine of amplitude `amp` at `rate` Hz, starting at phase 0.
pub(crate) fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// Mean power of `x` in dB (re a full-scale square: a full-scale sine is -3 dB).
pub(crate) fn rms_db(x: &[f32]) -> f64 {
    let ms = x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64;
    10.0 * ms.log10()
}

/// Level of `freq` in `x` (dB re a full-scale sine), by correlation with a sine and a cosine.
pub(crate) fn level_at(x: &[f32], freq: f64, rate: u32) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let ph = 2.0 * PI * freq * i as f64 / f64::from(rate);
        s += f64::from(v) * ph.sin();
        c += f64::from(v) * ph.cos();
    }
    let amp = 2.0 * (s * s + c * c).sqrt() / x.len() as f64;
    20.0 * amp.log10()
}

/// How often `x` changes sign.
pub(crate) fn zero_crossings(x: &[f32]) -> usize {
    x.windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count()
}
