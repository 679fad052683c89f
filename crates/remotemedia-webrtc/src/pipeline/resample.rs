//! Sample-rate conversion: a streaming windowed-sinc resampler ([`Resampler`]) and the
//! `Resample` node built on it.
//!
//! Each output sample is the input convolved with a Blackman-windowed sinc whose cutoff sits at
//! 90 % of the lower of the two Nyquist frequencies, so downsampling filters out what would alias.
//! The kernel is tabulated (256 points per zero crossing, linear interpolation). Output positions
//! advance by the exact ratio `in_rate / out_rate` (kept as integers), so there is no drift over
//! long streams. Latency: the kernel's half width, about 16 zero crossings of the lower rate
//! (≈ 1 ms for 48 kHz → 16 kHz).
//!
//! Bounds (checked before anything is allocated): both rates within [`SAMPLE_RATE_RANGE`]
//! (8 kHz..=192 kHz), at most [`MAX_CHANNELS`] channels, and at most [`MAX_OUTPUT_SAMPLES`]
//! output samples from one call (so a long frame upsampled ×24 cannot ask for gigabytes); a
//! frame past them is refused with [`Error::InvalidData`] (a pipeline error output for that
//! frame) and the resampler's state is unchanged.

use serde_json::{Map, Value};

use super::nodes::{AudioFrame, Frame, Node, NodeOutput, SAMPLE_RATE_RANGE};
use crate::error::{Error, Result};

/// Zero crossings of the sinc on each side of the centre.
const ZERO_CROSSINGS: usize = 16;
/// Table points per zero crossing.
const OVERSAMPLE: usize = 256;
/// Cutoff as a fraction of the lower Nyquist frequency.
const CUTOFF: f64 = 0.9;
/// Most output samples (all channels) one [`Resampler::process`] call may produce: one second
/// of 192 kHz audio in 5.1 channels fits.
pub const MAX_OUTPUT_SAMPLES: usize = 192_000 * 6;
/// Most channels a [`Resampler`] takes.
pub const MAX_CHANNELS: u16 = 8;

/// Streaming resampler for interleaved f32 audio with a fixed channel count.
#[derive(Debug, Clone)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    /// Input samples per output sample, as `step_num / step_den` (reduced).
    step_num: u64,
    step_den: u64,
    /// Cutoff in cycles per input sample × 2 (1.0 = input Nyquist).
    cutoff: f64,
    /// Kernel half width in input samples.
    half_width: f64,
    table: Vec<f32>,
    /// Buffered input, one Vec per channel.
    history: Vec<Vec<f32>>,
    /// Position of the next output in `history`: `pos_int + pos_frac / step_den`.
    pos_int: usize,
    pos_frac: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Blackman window over `x` in [0, 1] (0 = centre, 1 = edge).
fn blackman_half(x: f64) -> f64 {
    let t = std::f64::consts::PI * x;
    0.42 + 0.5 * t.cos() + 0.08 * (2.0 * t).cos()
}

impl Resampler {
    /// [`Error::InvalidData`] for rates outside [`SAMPLE_RATE_RANGE`], zero channels or more
    /// than [`MAX_CHANNELS`].
    pub fn new(in_rate: u32, out_rate: u32, channels: u16) -> Result<Self> {
        for rate in [in_rate, out_rate] {
            if !(SAMPLE_RATE_RANGE.0..=SAMPLE_RATE_RANGE.1).contains(&f64::from(rate)) {
                return Err(Error::InvalidData(format!(
                    "sample rate {rate} Hz is out of range [{}, {}]",
                    SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1
                )));
            }
        }
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(Error::InvalidData(format!(
                "audio with {channels} channels (1..={MAX_CHANNELS})"
            )));
        }
        let g = gcd(u64::from(in_rate), u64::from(out_rate));
        let ratio = f64::from(out_rate) / f64::from(in_rate);
        let cutoff = CUTOFF * ratio.min(1.0);
        let half_width = ZERO_CROSSINGS as f64 / cutoff;
        let n = ZERO_CROSSINGS * OVERSAMPLE;
        let table = (0..=n + 1)
            .map(|j| {
                let z = j as f64 / OVERSAMPLE as f64;
                let w = if j >= n {
                    0.0
                } else {
                    blackman_half(z / ZERO_CROSSINGS as f64)
                };
                (sinc(z) * w) as f32
            })
            .collect();
        let lead = half_width.ceil() as usize;
        Ok(Resampler {
            in_rate,
            out_rate,
            channels: usize::from(channels),
            step_num: u64::from(in_rate) / g,
            step_den: u64::from(out_rate) / g,
            cutoff,
            half_width,
            table,
            // Zeros before the first input so output 0 lines up with input 0.
            history: vec![vec![0.0; lead]; usize::from(channels)],
            pos_int: lead,
            pos_frac: 0,
        })
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn channels(&self) -> u16 {
        self.channels as u16
    }

    /// Kernel value at `u` input samples from the centre.
    fn kernel(&self, u: f64) -> f32 {
        let z = u.abs() * self.cutoff * OVERSAMPLE as f64;
        let i = z as usize;
        if i >= ZERO_CROSSINGS * OVERSAMPLE {
            return 0.0;
        }
        let f = (z - i as f64) as f32;
        self.table[i] + (self.table[i + 1] - self.table[i]) * f
    }

    /// Feeds interleaved samples; returns the interleaved output that is ready (the tail waits
    /// for enough following input). [`Error::InvalidData`] if `input` is not whole frames or
    /// would give more than [`MAX_OUTPUT_SAMPLES`] (checked first; nothing is buffered then).
    pub fn process(&mut self, input: &[f32]) -> Result<Vec<f32>> {
        let ch = self.channels;
        if !input.len().is_multiple_of(ch) {
            return Err(Error::InvalidData(format!(
                "{} samples is not a whole number of {ch}-channel frames",
                input.len()
            )));
        }
        // Output frames ready after this input: at most (buffered + new) / step + 1.
        let buffered = (self.history[0].len() - self.pos_int.min(self.history[0].len())) as u64;
        let frames_in = buffered + (input.len() / ch) as u64;
        let bound = (frames_in * self.step_den / self.step_num.max(1) + 2) * ch as u64;
        if bound > MAX_OUTPUT_SAMPLES as u64 {
            return Err(Error::InvalidData(format!(
                "resampling {} samples from {} Hz to {} Hz would give up to {bound} samples, more than the limit of {MAX_OUTPUT_SAMPLES} per frame",
                input.len(),
                self.in_rate,
                self.out_rate
            )));
        }
        for (c, hist) in self.history.iter_mut().enumerate() {
            hist.extend(input.iter().skip(c).step_by(ch));
        }
        let len = self.history[0].len();
        let gain = self.cutoff as f32;
        let mut out = Vec::with_capacity(bound as usize);
        loop {
            let pos = self.pos_int as f64 + self.pos_frac as f64 / self.step_den as f64;
            let last = (pos + self.half_width).floor() as usize;
            if last >= len {
                break;
            }
            let first = (pos - self.half_width).ceil().max(0.0) as usize;
            for hist in &self.history {
                let mut acc = 0.0f32;
                for (i, &x) in hist.iter().enumerate().take(last + 1).skip(first) {
                    acc += x * self.kernel(i as f64 - pos);
                }
                out.push(acc * gain);
            }
            self.pos_frac += self.step_num;
            self.pos_int += (self.pos_frac / self.step_den) as usize;
            self.pos_frac %= self.step_den;
        }
        // Drop input no future output can reach.
        let keep_from = (self.pos_int as f64 - self.half_width).floor() - 1.0;
        let drop = (keep_from.max(0.0) as usize).min(len);
        if drop > 0 {
            for hist in &mut self.history {
                hist.drain(..drop);
            }
            self.pos_int -= drop;
        }
        Ok(out)
    }
}

/// The `Resample` node: converts audio to `target_rate`, keeping the channel count. Audio already
/// at the target rate, video and event frames pass unchanged. A change of input rate or channel
/// count restarts the filter.
#[derive(Debug, Clone)]
pub struct Resample {
    target_rate: u32,
    state: Option<Resampler>,
}

impl Resample {
    /// [`Error::InvalidData`] for a target outside [`SAMPLE_RATE_RANGE`].
    pub fn new(target_rate: u32) -> Result<Self> {
        if !(SAMPLE_RATE_RANGE.0..=SAMPLE_RATE_RANGE.1).contains(&f64::from(target_rate)) {
            return Err(Error::InvalidData(format!(
                "target sample rate {target_rate} Hz is out of range [{}, {}]",
                SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1
            )));
        }
        Ok(Resample {
            target_rate,
            state: None,
        })
    }

    pub fn from_params(params: &Map<String, Value>) -> Result<Self> {
        let rate = params
            .get("target_rate")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::InvalidData("Resample needs param 'target_rate'".into()))?;
        Resample::new(u32::try_from(rate).unwrap_or(u32::MAX))
    }
}

impl Node for Resample {
    fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
        let a = match input {
            Frame::Audio(a) if a.sample_rate != self.target_rate => a,
            other => return Ok(vec![NodeOutput::Frame(other)]),
        };
        let fresh = match &self.state {
            Some(r) => r.in_rate() != a.sample_rate || r.channels() != a.channels,
            None => true,
        };
        if fresh {
            self.state = Some(Resampler::new(a.sample_rate, self.target_rate, a.channels)?);
        }
        let samples = self
            .state
            .as_mut()
            .expect("resampler set above")
            .process(&a.samples)?;
        if samples.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![NodeOutput::Frame(Frame::Audio(AudioFrame {
            samples,
            sample_rate: self.target_rate,
            ..a
        }))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::{level_at, tone, zero_crossings};

    /// Runs `x` through a `Resample` node in 20 ms frames, concatenating the output.
    fn run(x: &[f32], in_rate: u32, out_rate: u32) -> Vec<f32> {
        let mut node = Resample::new(out_rate).unwrap();
        let chunk = in_rate as usize / 50;
        let mut out = Vec::new();
        for (k, c) in x.chunks(chunk).enumerate() {
            for o in node
                .process(Frame::Audio(AudioFrame {
                    samples: c.to_vec(),
                    sample_rate: in_rate,
                    channels: 1,
                    peer_id: None,
                    timestamp_us: k as i64 * 20_000,
                }))
                .unwrap()
            {
                match o {
                    NodeOutput::Frame(Frame::Audio(a)) => {
                        assert_eq!(a.sample_rate, out_rate);
                        assert_eq!(a.timestamp_us, k as i64 * 20_000);
                        out.extend(a.samples);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        out
    }

    #[test]
    fn a_1khz_tone_at_48k_to_16k_keeps_its_frequency_and_level() {
        let input = tone(1000.0, 48_000, 48_000, 0.5);
        let out = run(&input, 48_000, 16_000);
        // One second in, one second (minus the filter's latency) out.
        assert!((15_900..=16_000).contains(&out.len()), "{}", out.len());
        let steady = &out[400..out.len() - 400];
        let in_level = level_at(&input, 1000.0, 48_000);
        let out_level = level_at(steady, 1000.0, 16_000);
        assert!(
            (out_level - in_level).abs() < 1.0,
            "{in_level} → {out_level} dB"
        );
        // ≈ 2 zero crossings per cycle: 1 kHz stays 1 kHz.
        let zc = zero_crossings(steady) as f64 / (steady.len() as f64 / 16_000.0);
        assert!((zc / 2.0 - 1000.0).abs() < 5.0, "{} Hz", zc / 2.0);
        // The energy is at 1 kHz, not spread around.
        assert!(level_at(steady, 1500.0, 16_000) < out_level - 40.0);
    }

    #[test]
    fn downsampling_filters_what_would_alias() {
        // 10 kHz does not exist at 16 kHz; unfiltered it would fold to 6 kHz.
        let out = run(&tone(10_000.0, 48_000, 48_000, 0.5), 48_000, 16_000);
        let steady = &out[400..out.len() - 400];
        let alias = level_at(steady, 6_000.0, 16_000);
        let reference = level_at(&tone(1000.0, 16_000, 16_000, 0.5), 1000.0, 16_000);
        assert!(alias < reference - 50.0, "alias at {alias} dB");
    }

    #[test]
    fn upsampling_keeps_a_tone() {
        let input = tone(440.0, 16_000, 16_000, 0.3);
        let out = run(&input, 16_000, 48_000);
        let steady = &out[1000..out.len() - 1000];
        let diff = level_at(steady, 440.0, 48_000) - level_at(&input, 440.0, 16_000);
        assert!(diff.abs() < 0.5, "{diff} dB");
    }

    #[test]
    fn non_integer_ratio_streams_without_drift() {
        // 44.1 kHz → 48 kHz over 10 s: the output count tracks the exact ratio.
        let mut r = Resampler::new(44_100, 48_000, 1).unwrap();
        let mut n = 0usize;
        for _ in 0..1000 {
            n += r.process(&[0.1; 441]).unwrap().len();
        }
        let expected = 441_000 * 48_000 / 44_100;
        assert!(expected - n < 64, "{n} vs {expected}");
    }

    #[test]
    fn stereo_channels_stay_separate() {
        let mut r = Resampler::new(48_000, 24_000, 2).unwrap();
        let input: Vec<f32> = (0..4800).flat_map(|_| [0.5f32, -0.25]).collect();
        let out = r.process(&input).unwrap();
        let late: Vec<_> = out[200..].chunks(2).collect();
        assert!(late
            .iter()
            .all(|p| (p[0] - 0.5).abs() < 1e-3 && (p[1] + 0.25).abs() < 1e-3));
        assert!(matches!(r.process(&[0.0; 3]), Err(Error::InvalidData(_))));
    }

    #[test]
    fn bad_rates_are_invalid_data() {
        assert!(matches!(Resample::new(100), Err(Error::InvalidData(_))));
        assert!(matches!(
            Resampler::new(48_000, 16_000, 0),
            Err(Error::InvalidData(_))
        ));
    }
}
