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
}
