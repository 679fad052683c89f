//! Adapting the send rate: [`LossBasedBitrate`] (the loss-based half of GCC,
//! draft-ietf-rmcat-gcc-02 §6) moves the encoder target from the loss the remote reports, and
//! [`ResolutionLadder`] steps resolution and framerate down when that target can no longer carry
//! the configured picture. Pure: the caller feeds loss fractions (e.g. the outbound loss of
//! [`QualityMetrics`](crate::peer::quality::QualityMetrics), once per receiver report) and reads
//! the results.

use crate::error::{Error, Result};

/// Loss-based rate control, per RTCP feedback interval:
///
/// - loss < 2 % → target × 1.08;
/// - 2 % ≤ loss ≤ 10 % → hold;
/// - loss > 10 % → target × (1 − 0.5 · loss);
///
/// always clamped to the caller's `[min, max]` (e.g. the preset's bitrate and the codec's floor).
#[derive(Debug, Clone, PartialEq)]
pub struct LossBasedBitrate {
    target: f64,
    min: f64,
    max: f64,
}

impl LossBasedBitrate {
    pub const LOW_LOSS: f64 = 0.02;
    pub const HIGH_LOSS: f64 = 0.10;
    pub const INCREASE: f64 = 1.08;

    /// Starts at `initial_bps` (clamped), bounded by `min_bps..=max_bps`.
    pub fn new(initial_bps: f64, min_bps: f64, max_bps: f64) -> Result<Self> {
        check_bounds(min_bps, max_bps)?;
        let initial = if initial_bps.is_finite() {
            initial_bps
        } else {
            max_bps
        };
        Ok(Self {
            target: initial.clamp(min_bps, max_bps),
            min: min_bps,
            max: max_bps,
        })
    }

    pub fn target_bps(&self) -> f64 {
        self.target
    }

    pub fn bounds(&self) -> (f64, f64) {
        (self.min, self.max)
    }

    /// New bounds (e.g. a preset change); the target is clamped into them.
    pub fn set_bounds(&mut self, min_bps: f64, max_bps: f64) -> Result<()> {
        check_bounds(min_bps, max_bps)?;
        self.min = min_bps;
        self.max = max_bps;
        self.target = self.target.clamp(min_bps, max_bps);
        Ok(())
    }

    /// Folds in the loss fraction (0..1) of one feedback interval; returns the new target.
    /// A non-finite loss is no information and holds the target.
    pub fn update(&mut self, loss: f64) -> f64 {
        if loss.is_finite() {
            let loss = loss.clamp(0.0, 1.0);
            if loss < Self::LOW_LOSS {
                self.target *= Self::INCREASE;
            } else if loss > Self::HIGH_LOSS {
                self.target *= 1.0 - 0.5 * loss;
            }
            self.target = self.target.clamp(self.min, self.max);
        }
        self.target
    }
}

fn check_bounds(min_bps: f64, max_bps: f64) -> Result<()> {
    if !(min_bps.is_finite() && max_bps.is_finite() && min_bps > 0.0 && min_bps <= max_bps) {
        return Err(Error::InvalidConfig(format!(
            "bitrate bounds must satisfy 0 < min <= max, got {min_bps}..{max_bps}"
        )));
    }
    Ok(())
}

/// A resolution and framerate the encoder can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoOperatingPoint {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
}

impl VideoOperatingPoint {
    pub fn new(width: u32, height: u32, framerate: u32) -> Self {
        Self {
            width,
            height,
            framerate,
        }
    }

    /// Pixels per second.
    pub fn pixel_rate(&self) -> f64 {
        self.width as f64 * self.height as f64 * self.framerate as f64
    }
}

/// The steps a video sender may fall back through, best first, and the rule for choosing one.
///
/// Steps from the configured `W×H @ F`: `(W, H, F)`, `(¾W, ¾H, F)`, `(½W, ½H, F)`,
/// `(½W, ½H, F/2)`, `(¼W, ¼H, F/2)`, `(¼W, ¼H, F/4)` — dimensions rounded down to even and
/// at least 16, framerate at least 1, repeated points dropped. Resolution goes first (motion
/// stays smooth), then framerate.
///
/// A step *holds* while `target ≥ pixel_rate × min_bits_per_pixel` (0.04 bit per pixel by
/// default, a VP8/H.264 floor for acceptable real-time quality: 720p30 needs ≈ 1.1 Mbit/s,
/// 360p30 ≈ 280 kbit/s). [`select`](Self::select) steps down to the best step that holds, and
/// back up only to a step that holds with `up_margin` (1.25×) to spare, so a target hovering at
/// a threshold does not flip the resolution on every report.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionLadder {
    points: Vec<VideoOperatingPoint>,
    min_bits_per_pixel: f64,
    up_margin: f64,
}

impl ResolutionLadder {
    pub const DEFAULT_MIN_BITS_PER_PIXEL: f64 = 0.04;
    pub const DEFAULT_UP_MARGIN: f64 = 1.25;

    pub fn new(configured: VideoOperatingPoint) -> Self {
        Self::with_thresholds(
            configured,
            Self::DEFAULT_MIN_BITS_PER_PIXEL,
            Self::DEFAULT_UP_MARGIN,
        )
    }

    pub fn with_thresholds(
        configured: VideoOperatingPoint,
        min_bits_per_pixel: f64,
        up_margin: f64,
    ) -> Self {
        let dim = |v: u32, num: u32, den: u32| {
            ((v as u64 * num as u64 / den as u64) as u32 & !1)
                .max(16)
                .min(v.max(16))
        };
        let fps = |den: u32| (configured.framerate / den).max(1);
        let (w, h) = (configured.width, configured.height);
        let candidates = [
            (dim(w, 1, 1), dim(h, 1, 1), fps(1)),
            (dim(w, 3, 4), dim(h, 3, 4), fps(1)),
            (dim(w, 1, 2), dim(h, 1, 2), fps(1)),
            (dim(w, 1, 2), dim(h, 1, 2), fps(2)),
            (dim(w, 1, 4), dim(h, 1, 4), fps(2)),
            (dim(w, 1, 4), dim(h, 1, 4), fps(4)),
        ];
        let mut points: Vec<VideoOperatingPoint> = Vec::with_capacity(candidates.len());
        for (w, h, f) in candidates {
            let p = VideoOperatingPoint::new(w, h, f);
            if points.last() != Some(&p) {
                points.push(p);
            }
        }
        Self {
            points,
            min_bits_per_pixel: if min_bits_per_pixel.is_finite() && min_bits_per_pixel > 0.0 {
                min_bits_per_pixel
            } else {
                Self::DEFAULT_MIN_BITS_PER_PIXEL
            },
            up_margin: if up_margin.is_finite() {
                up_margin.max(1.0)
            } else {
                Self::DEFAULT_UP_MARGIN
            },
        }
    }

    /// The ladder of a track configured as `configured` at `configured_bps`: the default
    /// thresholds, except that the configured bitrate always holds the configured picture with
    /// the up-margin to spare (bits per pixel lowered to `configured_bps / (pixel rate × 1.25)`
    /// when that is below 0.04). So a track runs at its configured size until its target drops,
    /// and setting the target back to the configured bitrate always returns to the top step.
    pub fn for_track(configured: VideoOperatingPoint, configured_bps: f64) -> Self {
        let rate = configured.pixel_rate().max(1.0);
        // A hair under, so rounding cannot put the top step just out of reach.
        let fitted = configured_bps / (rate * Self::DEFAULT_UP_MARGIN) * (1.0 - 1e-9);
        let bpp = if fitted.is_finite() && fitted > 0.0 {
            fitted.min(Self::DEFAULT_MIN_BITS_PER_PIXEL)
        } else {
            Self::DEFAULT_MIN_BITS_PER_PIXEL
        };
        Self::with_thresholds(configured, bpp, Self::DEFAULT_UP_MARGIN)
    }

    pub fn points(&self) -> &[VideoOperatingPoint] {
        &self.points
    }

    pub fn point(&self, index: usize) -> VideoOperatingPoint {
        self.points[index.min(self.points.len() - 1)]
    }

    /// Bitrate step `index` needs to hold, bit/s.
    pub fn required_bps(&self, index: usize) -> f64 {
        self.point(index).pixel_rate() * self.min_bits_per_pixel
    }

    /// The step to run at for `target_bps`, currently at step `current`.
    pub fn select(&self, target_bps: f64, current: usize) -> usize {
        let last = self.points.len() - 1;
        let current = current.min(last);
        let target = if target_bps.is_finite() {
            target_bps
        } else {
            0.0
        };
        let fits = (0..=last)
            .find(|&i| self.required_bps(i) <= target)
            .unwrap_or(last);
        if fits > current {
            return fits;
        }
        let comfortable = (0..=last)
            .find(|&i| self.required_bps(i) * self.up_margin <= target)
            .unwrap_or(last);
        comfortable.min(current)
    }
}

/// Drops frames to run a source at a lower framerate, by the frames' own timestamps: a frame is
/// kept when it is (within half a source frame interval) at or after the next due time, and
/// each kept frame moves the due time on by one output interval, so the kept rate averages the
/// output rate (30 → 15 keeps every other frame). After a gap longer than an output interval,
/// or on a timestamp that does not increase, the schedule restarts at that frame, which is kept
/// (an application that sends no real timestamps loses no frames).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameDecimator {
    /// Output interval, µs; 0 keeps every frame.
    interval_us: f64,
    tolerance_us: f64,
    next_due_us: Option<f64>,
    last_us: Option<i64>,
}

impl FrameDecimator {
    /// From `source_fps` (what the frames come at) to `output_fps`; keeps everything when
    /// `output_fps >= source_fps` or either is 0.
    pub fn new(source_fps: u32, output_fps: u32) -> Self {
        let keep_all = source_fps == 0 || output_fps == 0 || output_fps >= source_fps;
        Self {
            interval_us: if keep_all {
                0.0
            } else {
                1e6 / output_fps as f64
            },
            tolerance_us: if source_fps == 0 {
                0.0
            } else {
                0.5e6 / source_fps as f64
            },
            next_due_us: None,
            last_us: None,
        }
    }

    /// Whether the frame at `timestamp_us` is sent.
    pub fn keep(&mut self, timestamp_us: i64) -> bool {
        if self.interval_us == 0.0 {
            return true;
        }
        let increasing = self.last_us.is_none_or(|l| timestamp_us > l);
        self.last_us = Some(timestamp_us);
        let t = timestamp_us as f64;
        match self.next_due_us {
            Some(due) if increasing => {
                if t < due - self.tolerance_us {
                    return false;
                }
                let next = due + self.interval_us;
                self.next_due_us = Some(if t >= next {
                    t + self.interval_us
                } else {
                    next
                });
                true
            }
            _ => {
                self.next_due_us = Some(t + self.interval_us);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_bounds() {
        for (lo, hi) in [
            (0.0, 1.0),
            (10.0, 5.0),
            (f64::NAN, 5.0),
            (1.0, f64::INFINITY),
        ] {
            let e = LossBasedBitrate::new(1.0, lo, hi).unwrap_err();
            assert_eq!(e.code(), "ERR_INVALID_CONFIG");
        }
        let mut c = LossBasedBitrate::new(500.0, 100.0, 1000.0).unwrap();
        assert!(c.set_bounds(50.0, 40.0).is_err());
        assert_eq!(c.bounds(), (100.0, 1000.0));
        c.set_bounds(100.0, 300.0).unwrap();
        assert_eq!(c.target_bps(), 300.0);
    }

    #[test]
    fn the_three_bands() {
        let mut c = LossBasedBitrate::new(1000.0, 1.0, 1e9).unwrap();
        assert!((c.update(0.0) - 1080.0).abs() < 1e-9);
        assert!((c.update(0.0199) - 1166.4).abs() < 1e-9);
        let held = c.target_bps();
        for loss in [0.02, 0.05, 0.10] {
            assert_eq!(c.update(loss), held, "loss {loss} should hold");
        }
        assert!((c.update(0.2) - held * 0.9).abs() < 1e-9);
        let t = c.target_bps();
        assert!((c.update(0.5) - t * 0.75).abs() < 1e-9);
        let t = c.target_bps();
        assert_eq!(c.update(f64::NAN), t);
    }

    #[test]
    fn converges_down_under_20_percent_loss_and_recovers_at_zero() {
        let (min, max) = (50_000.0, 2_000_000.0);
        let mut c = LossBasedBitrate::new(max, min, max).unwrap();
        let mut prev = c.target_bps();
        for _ in 0..100 {
            let t = c.update(0.2);
            assert!(t <= prev && t >= min);
            prev = t;
        }
        assert_eq!(c.target_bps(), min);
        let mut steps = 0;
        while c.target_bps() < max {
            let before = c.target_bps();
            let t = c.update(0.0);
            assert!(t > before && t <= max);
            steps += 1;
            assert!(steps < 100, "did not recover");
        }
        // 50 k → 2 M at 8 %/step is ln(40)/ln(1.08) ≈ 48 steps.
        assert!((45..=50).contains(&steps), "{steps}");
    }

    #[test]
    fn stays_within_bounds_for_any_loss_sequence() {
        let mut c = LossBasedBitrate::new(300_000.0, 30_000.0, 500_000.0).unwrap();
        let mut x = 0.123_f64;
        for _ in 0..5000 {
            x = (x * 3.7 * (1.0 - x)).clamp(0.0, 1.0); // chaotic but deterministic losses
            let t = c.update(x * 0.4);
            assert!((30_000.0..=500_000.0).contains(&t), "{t}");
        }
    }

    fn p720() -> VideoOperatingPoint {
        VideoOperatingPoint::new(1280, 720, 30)
    }

    #[test]
    fn ladder_shape() {
        let l = ResolutionLadder::new(p720());
        let pts: Vec<(u32, u32, u32)> = l
            .points()
            .iter()
            .map(|p| (p.width, p.height, p.framerate))
            .collect();
        assert_eq!(
            pts,
            vec![
                (1280, 720, 30),
                (960, 540, 30),
                (640, 360, 30),
                (640, 360, 15),
                (320, 180, 15),
                (320, 180, 7)
            ]
        );
        for w in (0..pts.len()).collect::<Vec<_>>().windows(2) {
            assert!(l.required_bps(w[1]) < l.required_bps(w[0]));
        }
        // Odd and tiny sizes: even, ≥ 16, no repeats.
        let t = ResolutionLadder::new(VideoOperatingPoint::new(33, 17, 1));
        for p in t.points() {
            assert!(p.width % 2 == 0 || p.width == 33, "{p:?}");
            assert!(p.width >= 16 && p.height >= 16 && p.framerate >= 1);
        }
        for w in t.points().windows(2) {
            assert_ne!(w[0], w[1]);
        }
    }

    #[test]
    fn steps_down_when_target_cannot_hold_and_up_with_margin() {
        let l = ResolutionLadder::new(p720());
        let need0 = l.required_bps(0); // 1 105 920
        assert_eq!(l.select(2_000_000.0, 0), 0);
        assert_eq!(l.select(need0, 0), 0);
        // Just below 720p30's need → 540p30.
        assert_eq!(l.select(need0 - 1.0, 0), 1);
        // Far below everything → the last step.
        assert_eq!(l.select(10_000.0, 0), l.points().len() - 1);
        // Hysteresis: at 540p, a target above 720p's need but within the margin stays at 540p…
        assert_eq!(l.select(need0 * 1.1, 1), 1);
        // …and with the margin it goes back up.
        assert_eq!(l.select(need0 * 1.25, 1), 0);
        // Recovering from the bottom may jump several steps at once.
        assert_eq!(l.select(need0 * 2.0, 5), 0);
        assert_eq!(l.select(f64::NAN, 0), l.points().len() - 1);
    }

    #[test]
    fn selection_is_monotone_in_target() {
        let l = ResolutionLadder::new(VideoOperatingPoint::new(1920, 1080, 30));
        for current in 0..l.points().len() {
            let mut prev = usize::MAX;
            for k in 0..400 {
                let target = k as f64 * 10_000.0;
                let s = l.select(target, current);
                assert!(s <= prev, "higher target chose a worse step");
                prev = s;
                // Whatever is chosen holds at the target (unless nothing does).
                if s < l.points().len() - 1 {
                    assert!(l.required_bps(s) <= target);
                }
            }
        }
    }

    #[test]
    fn ladder_for_a_track_keeps_its_configured_picture_at_its_configured_bitrate() {
        // 720p30 at 2 Mbit/s: the default threshold (0.04 bit/pixel) already leaves room.
        let l = ResolutionLadder::for_track(p720(), 2_000_000.0);
        assert_eq!(l, ResolutionLadder::new(p720()));
        // 640x480@30 at 300 kbit/s is below 0.04 bit/pixel (368 640): still the top step there,
        // and back up to it from any step at exactly the configured bitrate.
        let vga = VideoOperatingPoint::new(640, 480, 30);
        let l = ResolutionLadder::for_track(vga, 300_000.0);
        assert_eq!(l.point(0), vga);
        for from in 0..l.points().len() {
            assert_eq!(l.select(300_000.0, from), 0, "from step {from}");
        }
        assert!(l.select(200_000.0, 0) > 0, "a real drop still steps down");
        // Nonsense bitrates fall back to the default thresholds.
        assert_eq!(
            ResolutionLadder::for_track(vga, f64::NAN),
            ResolutionLadder::new(vga)
        );
        assert_eq!(
            ResolutionLadder::for_track(vga, 0.0),
            ResolutionLadder::new(vga)
        );
    }

    #[test]
    fn which_step_for_a_bitrate_640x480_at_800k() {
        // The setup of the end-to-end test in __test__/media.test.mjs.
        let l = ResolutionLadder::for_track(VideoOperatingPoint::new(640, 480, 30), 800_000.0);
        let at = |bps: f64| l.point(l.select(bps, 0));
        assert_eq!(at(800_000.0), VideoOperatingPoint::new(640, 480, 30));
        assert_eq!(at(300_000.0), VideoOperatingPoint::new(480, 360, 30));
        assert_eq!(at(150_000.0), VideoOperatingPoint::new(320, 240, 30));
        assert_eq!(at(60_000.0), VideoOperatingPoint::new(320, 240, 15));
        assert_eq!(at(10_000.0), VideoOperatingPoint::new(160, 120, 7));
    }

    fn kept(d: &mut FrameDecimator, timestamps: impl IntoIterator<Item = i64>) -> Vec<i64> {
        timestamps.into_iter().filter(|&t| d.keep(t)).collect()
    }

    #[test]
    fn decimator_halves_30_to_15() {
        let mut d = FrameDecimator::new(30, 15);
        let ts: Vec<i64> = (0..60).map(|i| i * 33_333).collect();
        let k = kept(&mut d, ts.clone());
        let every_other: Vec<i64> = ts.iter().copied().step_by(2).collect();
        assert_eq!(k, every_other);
    }

    #[test]
    fn decimator_averages_the_output_rate() {
        for (src, out) in [(30, 7), (30, 10), (60, 15), (25, 12)] {
            let mut d = FrameDecimator::new(src, out);
            let n = src as i64 * 20; // 20 s
            let k = kept(&mut d, (0..n).map(|i| i * 1_000_000 / src as i64)).len() as f64;
            let want = out as f64 * 20.0;
            assert!(
                (k - want).abs() <= 2.0,
                "{src}→{out}: kept {k}, want ≈{want}"
            );
        }
    }

    #[test]
    fn decimator_keeps_all_when_not_lowering_or_without_timestamps() {
        for (src, out) in [(30, 30), (15, 30), (0, 15), (30, 0)] {
            let mut d = FrameDecimator::new(src, out);
            assert_eq!(kept(&mut d, (0..30).map(|i| i * 33_333)).len(), 30);
        }
        // Constant (or backwards) timestamps: nothing to schedule by, nothing dropped.
        let mut d = FrameDecimator::new(30, 15);
        assert_eq!(kept(&mut d, std::iter::repeat_n(0, 30)).len(), 30);
        assert!(d.keep(-5));
    }

    #[test]
    fn decimator_restarts_after_a_gap() {
        let mut d = FrameDecimator::new(30, 15);
        assert!(d.keep(0));
        assert!(!d.keep(33_333));
        // A 5 s pause: the next frame is kept and the schedule continues from it.
        assert!(d.keep(5_000_000));
        assert!(!d.keep(5_033_333));
        assert!(d.keep(5_066_666));
    }
}
