//! RTP clock arithmetic: wrap-safe extension of 16-bit sequence numbers and 32-bit timestamps,
//! NTP 32.32 ↔ Unix microseconds, the RTP ↔ wall-clock mapping that RTCP sender reports give, and
//! the clock-drift estimator.
//!
//! Every function here is pure: times are passed in as microseconds (`u64`, the receiver's clock
//! expressed since the Unix epoch, see [`super::LocalClock`]), nothing reads a clock.

use std::collections::VecDeque;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

const US_PER_S: i128 = 1_000_000;

/// Extends a counter of `BITS` bits that wraps around into a signed 64-bit value that does not.
///
/// The reference is the last value seen (not the highest): each new value is taken as the one
/// nearest to it (within half the modulus), so reordered values, a wrap in either direction and a
/// single wild value all keep the extended values continuous.
#[derive(Debug, Clone, Default)]
struct Unwrapper<const BITS: u32> {
    last: Option<i64>,
}

impl<const BITS: u32> Unwrapper<BITS> {
    const MODULUS: i64 = 1 << BITS;
    const HALF: i64 = 1 << (BITS - 1);

    fn peek(&self, raw: u64) -> i64 {
        let raw = (raw as i64) & (Self::MODULUS - 1);
        match self.last {
            None => raw,
            Some(last) => {
                let mut delta = (raw - last.rem_euclid(Self::MODULUS)).rem_euclid(Self::MODULUS);
                if delta >= Self::HALF {
                    delta -= Self::MODULUS;
                }
                last + delta
            }
        }
    }

    fn update(&mut self, raw: u64) -> i64 {
        let ext = self.peek(raw);
        self.last = Some(ext);
        ext
    }
}

/// 16-bit RTP sequence numbers → `i64` (the first value seen keeps its own value; 65 535 followed
/// by 0 gives 65 535, 65 536).
#[derive(Debug, Clone, Default)]
pub struct SequenceUnwrapper(Unwrapper<16>);

impl SequenceUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }
    /// Extends `seq` and makes it the reference for the next one.
    pub fn unwrap(&mut self, seq: u16) -> i64 {
        self.0.update(seq as u64)
    }
    /// Extends `seq` without changing the reference.
    pub fn peek(&self, seq: u16) -> i64 {
        self.0.peek(seq as u64)
    }
    /// The last extended value, if any.
    pub fn last(&self) -> Option<i64> {
        self.0.last
    }
    pub fn reset(&mut self) {
        self.0.last = None;
    }
}

/// 32-bit RTP timestamps → `i64` (a wrap at 2^32 continues at 2^32).
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper(Unwrapper<32>);

impl TimestampUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }
    /// Extends `ts` and makes it the reference for the next one.
    pub fn unwrap(&mut self, ts: u32) -> i64 {
        self.0.update(ts as u64)
    }
    /// Extends `ts` without changing the reference.
    pub fn peek(&self, ts: u32) -> i64 {
        self.0.peek(ts as u64)
    }
    /// The last extended value, if any.
    pub fn last(&self) -> Option<i64> {
        self.0.last
    }
    pub fn reset(&mut self) {
        self.0.last = None;
    }
}

/// NTP 64-bit timestamp (32.32 fixed point, seconds since 1900) → microseconds since the Unix
/// epoch, rounded to the nearest microsecond.
///
/// Era-aware as RFC 4330 §3 suggests: a seconds field whose top bit is clear is taken to be in
/// era 1 (from 2036-02-07 on), so timestamps keep increasing across the 2036 wrap. Instants before
/// 1970 saturate to 0.
pub fn ntp_to_unix_us(ntp: u64) -> u64 {
    let secs = ntp >> 32;
    let frac = ntp & 0xFFFF_FFFF;
    let secs_1900 = if secs & 0x8000_0000 == 0 {
        secs + (1 << 32)
    } else {
        secs
    };
    // frac < 2^32 and 1e6 < 2^20: the product fits in u64.
    let frac_us = (frac * 1_000_000 + (1 << 31)) >> 32;
    match secs_1900.checked_sub(NTP_UNIX_OFFSET_SECS) {
        Some(unix_secs) => unix_secs * 1_000_000 + frac_us,
        None => 0,
    }
}

/// Microseconds since the Unix epoch → NTP 64-bit timestamp (the seconds field wraps in 2036 as
/// NTP's does). `ntp_to_unix_us(unix_us_to_ntp(x)) == x` for every instant up to 2104.
pub fn unix_us_to_ntp(unix_us: u64) -> u64 {
    let secs = (unix_us / 1_000_000 + NTP_UNIX_OFFSET_SECS) & 0xFFFF_FFFF;
    let rem = unix_us % 1_000_000;
    let frac = ((rem << 32) + 500_000) / 1_000_000;
    (secs << 32) | frac
}

/// `a * b / c` rounded to nearest (ties away from zero), in 128-bit arithmetic.
pub(crate) fn mul_div_round(a: i128, b: i128, c: i128) -> i128 {
    let n = a * b;
    if (n < 0) != (c < 0) {
        (n - c / 2) / c
    } else {
        (n + c / 2) / c
    }
}

/// One RTCP sender report as the receive path hands it over: the sender's NTP time, the RTP
/// timestamp that corresponds to the same instant, and when the report arrived here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// NTP 64-bit timestamp (32.32, seconds since 1900).
    pub ntp_timestamp: u64,
    /// The RTP timestamp of the same instant, in the stream's clock.
    pub rtp_timestamp: u32,
    /// Local receive time, µs (receiver's clock, Unix epoch).
    pub arrival_us: u64,
}

impl SenderReport {
    pub fn new(ntp_timestamp: u64, rtp_timestamp: u32, arrival_us: u64) -> Self {
        Self {
            ntp_timestamp,
            rtp_timestamp,
            arrival_us,
        }
    }
}

/// What a sender report did to the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderReportOutcome {
    /// The mapping now uses this report.
    Applied,
    /// Its NTP time is not newer than the report in use (a duplicate or reordered report): ignored.
    Stale,
    /// Its RTP timestamp disagrees with the previous report's by more than a second of media
    /// (sender restarted its clock or jumped): the mapping was re-anchored and the drift history
    /// cleared.
    Discontinuity,
}

/// A sender report as used by the mapping: NTP converted, RTP timestamp extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SrAnchor {
    pub ntp_unix_us: u64,
    pub ext_rtp: i64,
    pub arrival_us: u64,
}

/// RTP timestamp ↔ sender wall clock for one stream.
///
/// With a sender report: `wall = sr.ntp + (ts − sr.rtp) / clock_rate × factor` (the factor is the
/// drift correction, 1 by default). Before the first one the local arrival clock stands in:
/// `wall = ts / clock_rate + min(arrival − ts / clock_rate)`, i.e. the frame that came fastest
/// defines "now", and the confidence is 0.5.
#[derive(Debug, Clone)]
pub struct RtpClockMapper {
    clock_rate: u32,
    rtcp_interval_us: u64,
    ts: TimestampUnwrapper,
    sr: Option<SrAnchor>,
    sender_reports: u64,
    stale_reports: u64,
    fallback_offset_us: Option<i64>,
    factor: f64,
}

/// A sender report within this much of the current mapping keeps the mapping's anchor, µs.
pub const ANCHOR_HOLD_US: i64 = 5_000;
/// A report is "recent" for this many expected RTCP intervals.
pub const SR_RECENT_INTERVALS: u64 = 3;
/// Confidence of the local-arrival mapping used before the first sender report.
pub const CONFIDENCE_LOCAL: f64 = 0.5;
/// Confidence with a sender report no older than [`SR_RECENT_INTERVALS`] intervals.
pub const CONFIDENCE_SR: f64 = 1.0;
/// Confidence with only an old sender report (the sender stopped reporting).
pub const CONFIDENCE_STALE_SR: f64 = 0.75;

impl RtpClockMapper {
    pub fn new(clock_rate: u32, rtcp_interval_ms: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            rtcp_interval_us: rtcp_interval_ms as u64 * 1000,
            ts: TimestampUnwrapper::new(),
            sr: None,
            sender_reports: 0,
            stale_reports: 0,
            fallback_offset_us: None,
            factor: 1.0,
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// `ext_ts` in µs of media time (exact, rounded).
    fn ts_to_us(&self, ext_ts: i64) -> i64 {
        mul_div_round(ext_ts as i128, US_PER_S, self.clock_rate as i128) as i64
    }

    /// A received frame: extends its timestamp (returned) and feeds the pre-SR mapping.
    pub fn observe_frame(&mut self, rtp_timestamp: u32, arrival_us: u64) -> i64 {
        let ext = self.ts.unwrap(rtp_timestamp);
        let offset = arrival_us as i64 - self.ts_to_us(ext);
        self.fallback_offset_us = Some(match self.fallback_offset_us {
            // A jump of the timestamps by more than 10 s against arrival: start over.
            Some(o) if (offset - o).abs() > 10_000_000 => offset,
            Some(o) => o.min(offset),
            None => offset,
        });
        ext
    }

    /// Extends a timestamp against the last one seen, without changing the reference.
    pub fn extend(&self, rtp_timestamp: u32) -> i64 {
        self.ts.peek(rtp_timestamp)
    }

    /// Takes a sender report.
    pub fn on_sender_report(&mut self, sr: &SenderReport) -> SenderReportOutcome {
        let ntp_unix_us = ntp_to_unix_us(sr.ntp_timestamp);
        let ext_rtp = self.ts.peek(sr.rtp_timestamp);
        let anchor = SrAnchor {
            ntp_unix_us,
            ext_rtp,
            arrival_us: sr.arrival_us,
        };
        let outcome = match self.sr {
            Some(prev) if ntp_unix_us <= prev.ntp_unix_us => {
                self.stale_reports += 1;
                return SenderReportOutcome::Stale;
            }
            Some(prev) => {
                let expected = prev.ext_rtp
                    + mul_div_round(
                        (ntp_unix_us - prev.ntp_unix_us) as i128,
                        self.clock_rate as i128,
                        US_PER_S,
                    ) as i64;
                if (ext_rtp - expected).abs() > self.clock_rate as i64 {
                    SenderReportOutcome::Discontinuity
                } else {
                    SenderReportOutcome::Applied
                }
            }
            None => SenderReportOutcome::Applied,
        };
        self.ts.unwrap(sr.rtp_timestamp);
        // A report that agrees with the current mapping to within ANCHOR_HOLD_US keeps it (only
        // its arrival, for recency, is taken): a sender's reports carry its own scheduling jitter
        // (webrtc-rs derives the RTP time from when the last packet left), and re-anchoring on
        // each would step the timeline by that much. The wall clock of consecutive frames then
        // advances exactly with the RTP clock; drift beyond the tolerance re-anchors.
        let held = match (self.sr, outcome) {
            (Some(prev), SenderReportOutcome::Applied) => {
                let mapped = self.ext_to_wall_us(ext_rtp).map(|w| w as i64);
                match mapped {
                    Some(w) if (w - ntp_unix_us as i64).abs() <= ANCHOR_HOLD_US => Some(SrAnchor {
                        arrival_us: sr.arrival_us,
                        ..prev
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        self.sr = Some(held.unwrap_or(anchor));
        self.sender_reports += 1;
        outcome
    }

    pub fn has_sender_report(&self) -> bool {
        self.sr.is_some()
    }

    /// Reports taken (applied or discontinuity), and reports ignored as stale.
    pub fn sender_report_counts(&self) -> (u64, u64) {
        (self.sender_reports, self.stale_reports)
    }

    /// Sets the drift correction factor (1.0 = none).
    pub fn set_correction_factor(&mut self, factor: f64) {
        self.factor = factor;
    }

    pub fn correction_factor(&self) -> f64 {
        self.factor
    }

    /// Whether there is any mapping (a sender report or at least one frame).
    pub fn is_mapped(&self) -> bool {
        self.sr.is_some() || self.fallback_offset_us.is_some()
    }

    /// Wall clock (µs since the Unix epoch, the sender's clock once a report came) of an
    /// extended RTP timestamp.
    pub fn ext_to_wall_us(&self, ext_ts: i64) -> Option<u64> {
        let us = if let Some(sr) = self.sr {
            let elapsed_ticks = (ext_ts - sr.ext_rtp) as i128;
            let elapsed_us = if self.factor == 1.0 {
                mul_div_round(elapsed_ticks, US_PER_S, self.clock_rate as i128)
            } else {
                (elapsed_ticks as f64 * 1e6 / self.clock_rate as f64 * self.factor).round() as i128
            };
            sr.ntp_unix_us as i128 + elapsed_us
        } else {
            self.ts_to_us(ext_ts) as i128 + self.fallback_offset_us? as i128
        };
        Some(us.clamp(0, u64::MAX as i128) as u64)
    }

    /// Wall clock of an RTP timestamp (extended against the latest one seen).
    pub fn rtp_to_wall_clock(&self, rtp_timestamp: u32) -> Option<u64> {
        self.ext_to_wall_us(self.extend(rtp_timestamp))
    }

    /// Inverse of [`Self::ext_to_wall_us`], extended.
    pub fn wall_to_ext(&self, wall_us: u64) -> Option<i64> {
        if let Some(sr) = self.sr {
            let elapsed_us = wall_us as i128 - sr.ntp_unix_us as i128;
            let ticks = if self.factor == 1.0 {
                mul_div_round(elapsed_us, self.clock_rate as i128, US_PER_S)
            } else {
                (elapsed_us as f64 * self.clock_rate as f64 / 1e6 / self.factor).round() as i128
            };
            Some((sr.ext_rtp as i128 + ticks) as i64)
        } else {
            let media_us = wall_us as i128 - self.fallback_offset_us? as i128;
            Some(mul_div_round(media_us, self.clock_rate as i128, US_PER_S) as i64)
        }
    }

    /// The RTP timestamp (wrapped to 32 bits) of a wall-clock instant.
    pub fn wall_clock_to_rtp(&self, wall_us: u64) -> Option<u32> {
        self.wall_to_ext(wall_us)
            .map(|e| e.rem_euclid(1 << 32) as u32)
    }

    /// 0 with no mapping, 0.5 on the local arrival clock, 1.0 with a report received within
    /// [`SR_RECENT_INTERVALS`] expected RTCP intervals of `now_us`, 0.75 with an older one.
    pub fn confidence(&self, now_us: u64) -> f64 {
        match self.sr {
            Some(sr) => {
                if now_us.saturating_sub(sr.arrival_us)
                    <= SR_RECENT_INTERVALS * self.rtcp_interval_us
                {
                    CONFIDENCE_SR
                } else {
                    CONFIDENCE_STALE_SR
                }
            }
            None if self.fallback_offset_us.is_some() => CONFIDENCE_LOCAL,
            None => 0.0,
        }
    }

    /// Age of the report in use at `now_us`, in ms.
    pub fn sender_report_age_ms(&self, now_us: u64) -> Option<f64> {
        self.sr
            .map(|sr| now_us.saturating_sub(sr.arrival_us) as f64 / 1000.0)
    }

    /// Forgets everything but the clock rate and the RTCP interval.
    pub fn reset(&mut self) {
        let (clock_rate, rtcp_interval_us) = (self.clock_rate, self.rtcp_interval_us);
        *self = Self::new(clock_rate, 0);
        self.rtcp_interval_us = rtcp_interval_us;
    }
}

/// Minimum of a signal over a sliding window of about one to two `window_us`: two buckets, the
/// current and the previous one. O(1) per sample.
#[derive(Debug, Clone)]
pub(crate) struct WindowedMin {
    window_us: u64,
    start_us: Option<u64>,
    cur: Option<i64>,
    prev: Option<i64>,
}

impl WindowedMin {
    pub fn new(window_us: u64) -> Self {
        Self {
            window_us: window_us.max(1),
            start_us: None,
            cur: None,
            prev: None,
        }
    }

    fn rotate(&mut self, now_us: u64) {
        match self.start_us {
            None => self.start_us = Some(now_us),
            Some(start) if now_us >= start + self.window_us => {
                self.prev = if now_us >= start + 2 * self.window_us {
                    None
                } else {
                    self.cur
                };
                self.cur = None;
                self.start_us = Some(now_us);
            }
            Some(_) => {}
        }
    }

    pub fn push(&mut self, value: i64, now_us: u64) {
        self.rotate(now_us);
        self.cur = Some(self.cur.map_or(value, |c| c.min(value)));
    }

    pub fn min(&self) -> Option<i64> {
        match (self.cur, self.prev) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts over with `value` as the only sample.
    pub fn restart(&mut self, value: i64, now_us: u64) {
        self.start_us = Some(now_us);
        self.cur = Some(value);
        self.prev = None;
    }

    pub fn clear(&mut self) {
        self.start_us = None;
        self.cur = None;
        self.prev = None;
    }
}

/// Where a drift estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DriftSource {
    /// Lower envelope of the media frames' (RTP time, arrival time), scaled by the sender's
    /// RTP-vs-NTP rate from the reports.
    MediaArrivals,
    /// Least squares over the reports' (NTP time, arrival time) alone.
    SenderReports,
}

/// A clock drift estimate: how fast the sender's clock runs against the receiver's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClockDriftEstimate {
    /// (sender rate / receiver rate − 1) × 10^6: positive = the sender's clock runs fast.
    pub drift_ppm: f64,
    /// Factor that turns sender durations into receiver durations: 1 / (1 + drift).
    pub correction_factor: f64,
    /// |drift| exceeds the configured threshold.
    pub exceeds_threshold: bool,
    /// Samples the estimate rests on (frames in the window, or reports).
    pub samples: usize,
    /// Receiver time the samples span, s.
    pub span_s: f64,
    pub source: DriftSource,
}

#[derive(Debug, Clone, Copy)]
struct Pt {
    x: f64,
    y: f64,
}

/// One stretch of receiver time: the lower convex hull of its frames' points (a point above it
/// can never be on the hull of a larger set, so the rest is dropped), and what the mean x needs.
#[derive(Debug, Clone)]
struct Bucket {
    key: u64,
    hull: Vec<Pt>,
    sum_x: f64,
    count: u64,
}

impl Bucket {
    fn add(&mut self, p: Pt) {
        self.sum_x += p.x;
        self.count += 1;
        let pos = self
            .hull
            .partition_point(|q| q.x.total_cmp(&p.x).then(q.y.total_cmp(&p.y)).is_lt());
        self.hull.insert(pos, p);
        lower_hull_in_place(&mut self.hull);
    }
}

#[derive(Debug, Clone, Copy)]
struct SrSample {
    ntp_us: u64,
    ext_rtp: i64,
    arrival_us: u64,
}

/// Minimum receiver-time span of the samples before an estimate is given.
pub const DRIFT_MIN_SPAN_US: u64 = 4_000_000;
/// Width of one envelope bucket (the lower hull of each bucket's frames is kept).
pub const DRIFT_BUCKET_US: u64 = 1_000_000;
/// Sender reports kept in the sliding window.
pub const DRIFT_MAX_REPORTS: usize = 12;

/// Estimates the sender's clock drift against the receiver's.
///
/// Network delay only ever adds to a frame's arrival time, so the lowest arrivals lie on a line
/// whose slope is the rate ratio. The estimator keeps, per 1 s bucket of a sliding window
/// (12 expected RTCP intervals, 30 s to 5 min), the lower convex hull of the frames' (media
/// time, arrival time) points (a handful per bucket), and fits the line under all of them that
/// lies closest to them (the lower convex-hull edge under the mean,
/// the linear-programming fit of Moon, Skelly & Towsley, 1999). That slope (receiver time per
/// media time) is combined with the sender's media-vs-NTP rate, a least-squares line through
/// the reports' (NTP, RTP) pairs (exact values, so a handful of reports pin it). Without enough
/// frames it falls back to least squares through the reports' (NTP, arrival) pairs, which is
/// only as good as (arrival jitter / span): 1 ms over 25 s is 40 ppm.
#[derive(Debug, Clone)]
pub struct DriftEstimator {
    clock_rate: u32,
    window_us: u64,
    base: Option<(i64, u64)>,
    buckets: VecDeque<Bucket>,
    reports: VecDeque<SrSample>,
}

impl DriftEstimator {
    pub fn new(clock_rate: u32, rtcp_interval_ms: u32) -> Self {
        let window_us = (DRIFT_MAX_REPORTS as u64 * rtcp_interval_ms as u64 * 1000)
            .clamp(30_000_000, 300_000_000);
        Self {
            clock_rate: clock_rate.max(1),
            window_us,
            base: None,
            buckets: VecDeque::new(),
            reports: VecDeque::new(),
        }
    }

    /// A received frame (extended RTP timestamp, arrival µs). O(points on its bucket's hull).
    pub fn add_frame(&mut self, ext_ts: i64, arrival_us: u64) {
        let (base_ts, base_arrival) = *self.base.get_or_insert((ext_ts, arrival_us));
        let x = (ext_ts - base_ts) as f64 * 1e6 / self.clock_rate as f64;
        let y = arrival_us as f64 - base_arrival as f64;
        let pt = Pt { x, y };
        let key = arrival_us / DRIFT_BUCKET_US;
        match self.buckets.back_mut() {
            // Same bucket, or time went backwards: add to the last one.
            Some(last) if key <= last.key => last.add(pt),
            _ => self.buckets.push_back(Bucket {
                key,
                hull: vec![pt],
                sum_x: x,
                count: 1,
            }),
        }
        let oldest_key = key.saturating_sub(self.window_us / DRIFT_BUCKET_US);
        while self.buckets.front().is_some_and(|b| b.key < oldest_key) {
            self.buckets.pop_front();
        }
    }

    /// A sender report (NTP as Unix µs, extended RTP timestamp, arrival µs).
    pub fn add_report(&mut self, ntp_us: u64, ext_rtp: i64, arrival_us: u64) {
        self.reports.push_back(SrSample {
            ntp_us,
            ext_rtp,
            arrival_us,
        });
        while self.reports.len() > DRIFT_MAX_REPORTS
            || self
                .reports
                .front()
                .is_some_and(|r| r.arrival_us + self.window_us < arrival_us)
        {
            self.reports.pop_front();
        }
    }

    pub fn report_count(&self) -> usize {
        self.reports.len()
    }

    pub fn clear(&mut self) {
        self.base = None;
        self.buckets.clear();
        self.reports.clear();
    }

    /// Sender media time per sender NTP time, from the reports (1 when they cannot tell).
    fn media_per_ntp(&self) -> f64 {
        let (Some(first), Some(last)) = (self.reports.front(), self.reports.back()) else {
            return 1.0;
        };
        if self.reports.len() < 2 || last.ntp_us < first.ntp_us + 1_000_000 {
            return 1.0;
        }
        let pts: Vec<Pt> = self
            .reports
            .iter()
            .map(|r| Pt {
                x: (r.ntp_us - first.ntp_us) as f64,
                y: (r.ext_rtp - first.ext_rtp) as f64 * 1e6 / self.clock_rate as f64,
            })
            .collect();
        least_squares_slope(&pts).unwrap_or(1.0)
    }

    /// The estimate, if the samples span at least [`DRIFT_MIN_SPAN_US`].
    pub fn estimate(&self, threshold_ppm: f64) -> Option<ClockDriftEstimate> {
        let make = |drift_ppm: f64, samples: usize, span_s: f64, source| ClockDriftEstimate {
            drift_ppm,
            correction_factor: 1.0 / (1.0 + drift_ppm * 1e-6),
            exceeds_threshold: drift_ppm.abs() > threshold_ppm,
            samples,
            span_s,
            source,
        };
        let frames: u64 = self.buckets.iter().map(|b| b.count).sum();
        if frames >= 3 {
            let mut pts: Vec<Pt> = self
                .buckets
                .iter()
                .flat_map(|b| b.hull.iter().copied())
                .collect();
            pts.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
            let span = pts[pts.len() - 1].x - pts[0].x;
            let mean_x = self.buckets.iter().map(|b| b.sum_x).sum::<f64>() / frames as f64;
            if span >= DRIFT_MIN_SPAN_US as f64 {
                lower_hull_in_place(&mut pts);
                if let Some(local_per_media) = hull_slope_at(&pts, mean_x) {
                    let local_per_ntp = local_per_media * self.media_per_ntp();
                    if local_per_ntp > 0.0 {
                        let drift = (1.0 / local_per_ntp - 1.0) * 1e6;
                        return Some(make(
                            drift,
                            frames as usize,
                            span / 1e6,
                            DriftSource::MediaArrivals,
                        ));
                    }
                }
            }
        }
        let first = self.reports.front()?;
        let last = self.reports.back()?;
        if self.reports.len() < 2 || last.ntp_us < first.ntp_us + DRIFT_MIN_SPAN_US {
            return None;
        }
        let pts: Vec<Pt> = self
            .reports
            .iter()
            .map(|r| Pt {
                x: (r.ntp_us - first.ntp_us) as f64,
                y: r.arrival_us as f64 - first.arrival_us as f64,
            })
            .collect();
        let local_per_ntp = least_squares_slope(&pts)?;
        if local_per_ntp <= 0.0 {
            return None;
        }
        let span_s = (last.arrival_us.saturating_sub(first.arrival_us)) as f64 / 1e6;
        Some(make(
            (1.0 / local_per_ntp - 1.0) * 1e6,
            pts.len(),
            span_s,
            DriftSource::SenderReports,
        ))
    }
}

/// Ordinary least-squares slope of y on x.
fn least_squares_slope(pts: &[Pt]) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.x).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.y).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.x - mx) * (p.x - mx)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.x - mx) * (p.y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn cross(o: Pt, a: Pt, b: Pt) -> f64 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

/// Reduces `pts` (sorted by x, then y) to their lower convex hull, in place (Andrew's monotone
/// chain: the hull is a subsequence, so it can overwrite the input).
fn lower_hull_in_place(pts: &mut Vec<Pt>) {
    let mut n = 0;
    for i in 0..pts.len() {
        let p = pts[i];
        if n > 0 && pts[n - 1].x == p.x {
            // Same x as the previous point and not lower: never on the lower hull.
            continue;
        }
        while n >= 2 && cross(pts[n - 2], pts[n - 1], p) <= 0.0 {
            n -= 1;
        }
        pts[n] = p;
        n += 1;
    }
    pts.truncate(n);
}

/// Slope of the line that lies under every point and maximises the sum of its heights above
/// them (the linear-programming clock-skew fit): the edge of the lower hull `hull` above the
/// points' mean x.
fn hull_slope_at(hull: &[Pt], mean_x: f64) -> Option<f64> {
    if hull.len() < 2 {
        return None;
    }
    let slope = |a: Pt, b: Pt| (b.y - a.y) / (b.x - a.x);
    for i in 0..hull.len() - 1 {
        let (a, b) = (hull[i], hull[i + 1]);
        if mean_x == b.x && i + 2 < hull.len() {
            // The mean sits on a vertex: every slope between the two edges is optimal.
            return Some((slope(a, b) + slope(b, hull[i + 2])) / 2.0);
        }
        if mean_x <= b.x {
            return Some(slope(a, b));
        }
    }
    Some(slope(hull[hull.len() - 2], hull[hull.len() - 1]))
}

/// [`hull_slope_at`] of arbitrary points (sorted by x, then y) at their mean x.
#[cfg(test)]
fn lower_envelope_slope(pts: &[Pt]) -> Option<f64> {
    let mean_x = pts.iter().map(|p| p.x).sum::<f64>() / pts.len() as f64;
    let mut hull = pts.to_vec();
    lower_hull_in_place(&mut hull);
    hull_slope_at(&hull, mean_x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testutil::Rng;

    #[test]
    fn sequence_wraps_at_65535() {
        let mut u = SequenceUnwrapper::new();
        assert_eq!(u.unwrap(65_534), 65_534);
        assert_eq!(u.unwrap(65_535), 65_535);
        assert_eq!(u.unwrap(0), 65_536);
        assert_eq!(u.unwrap(1), 65_537);
        // Reordered across the wrap.
        assert_eq!(u.unwrap(65_535), 65_535);
        assert_eq!(u.unwrap(2), 65_538);
        assert_eq!(u.peek(65_530), 65_530);
        // Several full cycles.
        let mut u = SequenceUnwrapper::new();
        let mut expect = 0i64;
        u.unwrap(0);
        for _ in 0..300_000 {
            expect += 1;
            assert_eq!(u.unwrap(expect as u16), expect);
        }
    }

    #[test]
    fn sequence_before_the_first_goes_negative() {
        let mut u = SequenceUnwrapper::new();
        assert_eq!(u.unwrap(2), 2);
        assert_eq!(u.unwrap(65_534), -2);
        assert_eq!(u.unwrap(3), 3);
    }

    #[test]
    fn timestamp_wraps_at_2_pow_32() {
        let mut u = TimestampUnwrapper::new();
        let near = u32::MAX - 959;
        assert_eq!(u.unwrap(near), near as i64);
        assert_eq!(u.unwrap(near.wrapping_add(960)), 1 << 32);
        assert_eq!(u.unwrap(near.wrapping_add(1920)), (1i64 << 32) + 960);
        // Reordered frame from before the wrap.
        assert_eq!(u.unwrap(near), near as i64);
        // Backward wrap.
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(100), 100);
        assert_eq!(u.unwrap(u32::MAX - 99), -100);
    }

    #[test]
    fn ntp_conversion() {
        // The Unix epoch.
        assert_eq!(ntp_to_unix_us(NTP_UNIX_OFFSET_SECS << 32), 0);
        // Half a second.
        assert_eq!(
            ntp_to_unix_us((NTP_UNIX_OFFSET_SECS << 32) | 0x8000_0000),
            500_000
        );
        // 2024-01-01T00:00:00Z = 1 704 067 200 s.
        let ntp = (1_704_067_200u64 + NTP_UNIX_OFFSET_SECS) << 32;
        assert_eq!(ntp_to_unix_us(ntp), 1_704_067_200_000_000);
        // Round trip to the microsecond, across the 2036 era wrap too.
        for us in [
            0u64,
            1,
            999_999,
            1_704_067_200_123_457,
            2_085_978_495_999_999, // 2036-02-07T06:28:15.999999Z, last instant of era 0
            2_085_978_496_000_000, // first instant of era 1
            2_100_000_000_654_321,
        ] {
            assert_eq!(ntp_to_unix_us(unix_us_to_ntp(us)), us, "{us}");
        }
        assert!(ntp_to_unix_us(unix_us_to_ntp(2_085_978_496_000_000)) > 2_085_978_495_999_999);
        // Before 1970 saturates.
        assert_eq!(ntp_to_unix_us(0x8000_0000_0000_0000), 0);
    }

    #[test]
    fn rtp_to_wall_clock_exact_on_synthetic_reports() {
        for (clock, rtp0) in [(48_000u32, 3_000_000_000u32), (90_000, 4_294_000_000)] {
            let mut m = RtpClockMapper::new(clock, 5000);
            let ntp_us = 1_704_067_200_000_000u64 + 123_456;
            assert_eq!(
                m.on_sender_report(&SenderReport::new(unix_us_to_ntp(ntp_us), rtp0, 1)),
                SenderReportOutcome::Applied
            );
            // Every tick offset whose duration is a whole number of µs maps exactly; others
            // round to the nearest µs.
            for k in [
                0i64, 1, 3, 960, 48_000, 90_000, 1_234_567, -960, -90_000, 5_000_000,
            ] {
                let ts = (rtp0 as i64 + k).rem_euclid(1 << 32) as u32;
                let wall = m.rtp_to_wall_clock(ts).unwrap();
                let exact = ntp_us as f64 + k as f64 * 1e6 / clock as f64;
                assert!(
                    (wall as f64 - exact).abs() <= 0.5,
                    "clock {clock} k {k}: {wall} vs {exact}"
                );
                // And back.
                if (k * 1_000_000) % clock as i64 == 0 {
                    assert_eq!(m.wall_clock_to_rtp(wall), Some(ts), "clock {clock} k {k}");
                }
            }
            // A second report 5 s later is used, still exact.
            let ntp2 = ntp_us + 5_000_000;
            let rtp2 = rtp0.wrapping_add(5 * clock);
            assert_eq!(
                m.on_sender_report(&SenderReport::new(unix_us_to_ntp(ntp2), rtp2, 5_000_001)),
                SenderReportOutcome::Applied
            );
            assert_eq!(
                m.rtp_to_wall_clock(rtp2.wrapping_add(clock / 50)),
                Some(ntp2 + 20_000)
            );
        }
    }

    #[test]
    fn confidence_levels() {
        let mut m = RtpClockMapper::new(48_000, 5000);
        assert_eq!(m.confidence(0), 0.0);
        assert!(m.rtp_to_wall_clock(0).is_none());
        m.observe_frame(960, 10_000_000);
        assert_eq!(m.confidence(10_000_000), CONFIDENCE_LOCAL);
        // Local mapping: the frame arrived at 10 s, media time 20 ms.
        assert_eq!(m.rtp_to_wall_clock(960), Some(10_000_000));
        assert_eq!(m.rtp_to_wall_clock(1920), Some(10_020_000));
        m.on_sender_report(&SenderReport::new(
            unix_us_to_ntp(1_000_000_000),
            960,
            10_001_000,
        ));
        assert_eq!(m.confidence(10_001_000), CONFIDENCE_SR);
        assert_eq!(m.confidence(10_001_000 + 15_000_000), CONFIDENCE_SR);
        assert_eq!(m.confidence(10_001_000 + 15_000_001), CONFIDENCE_STALE_SR);
        m.reset();
        assert_eq!(m.confidence(10_001_000), 0.0);
        assert_eq!(m.clock_rate(), 48_000);
    }

    #[test]
    fn stale_and_discontinuous_reports() {
        let mut m = RtpClockMapper::new(90_000, 5000);
        let t0 = 1_700_000_000_000_000u64;
        m.on_sender_report(&SenderReport::new(unix_us_to_ntp(t0), 1000, 0));
        assert_eq!(
            m.on_sender_report(&SenderReport::new(unix_us_to_ntp(t0), 1000, 1)),
            SenderReportOutcome::Stale
        );
        assert_eq!(
            m.on_sender_report(&SenderReport::new(
                unix_us_to_ntp(t0 + 1_000_000),
                1000 + 90_000,
                2
            )),
            SenderReportOutcome::Applied
        );
        assert_eq!(
            m.on_sender_report(&SenderReport::new(
                unix_us_to_ntp(t0 + 2_000_000),
                5_000_000,
                3
            )),
            SenderReportOutcome::Discontinuity
        );
        assert_eq!(m.rtp_to_wall_clock(5_000_000), Some(t0 + 2_000_000));
        assert_eq!(m.sender_report_counts(), (3, 1));
    }

    #[test]
    fn drift_correction_scales_elapsed_time() {
        let mut m = RtpClockMapper::new(48_000, 5000);
        m.on_sender_report(&SenderReport::new(unix_us_to_ntp(1_000_000_000), 0, 0));
        m.set_correction_factor(1.0 - 100e-6);
        // 10 s of media = 9.999 s of receiver time.
        assert_eq!(m.rtp_to_wall_clock(480_000), Some(1_009_999_000));
        assert_eq!(m.wall_clock_to_rtp(1_009_999_000), Some(480_000));
    }

    /// A sender whose clock runs `ppm` fast: audio frames every 20 ms of its time, a report every
    /// 5 s, arrival = true time + 30 ms + jitter.
    fn simulate_drift(ppm: f64, jitter_ms: f64, seed: u64, reports: usize) -> ClockDriftEstimate {
        let mut rng = Rng::new(seed);
        let mut est = DriftEstimator::new(48_000, 5000);
        let rate = 1.0 + ppm * 1e-6;
        let sender_epoch_us = 1_600_000_000_000_000f64; // sender's clock reads this at true 0
        let local_epoch_us = 1_700_000_000_000_000f64;
        let rtp0 = 123_456_789i64;
        let mut seen = 0;
        let mut k = 0u64;
        let mut result = None;
        while seen < reports {
            let sender_t = k as f64 * 20_000.0; // µs of sender time
            let true_t = sender_t / rate;
            let arrival = local_epoch_us + true_t + 30_000.0 + rng.unit() * jitter_ms * 1000.0;
            est.add_frame(rtp0 + k as i64 * 960, arrival as u64);
            if k.is_multiple_of(250) {
                // Report sent with this frame's instant.
                let arrival = local_epoch_us + true_t + 30_000.0 + rng.unit() * jitter_ms * 1000.0;
                est.add_report(
                    (sender_epoch_us + sender_t) as u64,
                    rtp0 + k as i64 * 960,
                    arrival as u64,
                );
                seen += 1;
                result = est.estimate(100.0);
            }
            k += 1;
        }
        result.expect("an estimate after the reports")
    }

    #[test]
    fn drift_plus_minus_150_ppm_within_5_ppm_after_6_reports() {
        for ppm in [150.0, -150.0, 0.0, 40.0] {
            for seed in 1..=8u64 {
                for jitter_ms in [2.0, 5.0] {
                    let e = simulate_drift(ppm, jitter_ms, seed, 6);
                    assert!(
                        (e.drift_ppm - ppm).abs() <= 5.0,
                        "ppm {ppm} seed {seed} jitter {jitter_ms}: {e:?}"
                    );
                    assert_eq!(e.source, DriftSource::MediaArrivals);
                    assert_eq!(e.exceeds_threshold, ppm.abs() > 100.0);
                    assert!((e.correction_factor * (1.0 + e.drift_ppm * 1e-6) - 1.0).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn drift_from_reports_alone() {
        // No frames: least squares over (NTP, arrival) of the reports, exact without jitter.
        let mut est = DriftEstimator::new(90_000, 5000);
        let rate = 1.0 + 150e-6;
        for i in 0..6u64 {
            let sender_t = i as f64 * 5e6;
            est.add_report(
                1_600_000_000_000_000 + sender_t as u64,
                i as i64 * 450_000,
                (1_700_000_000_000_000f64 + sender_t / rate) as u64,
            );
        }
        let e = est.estimate(100.0).unwrap();
        assert_eq!(e.source, DriftSource::SenderReports);
        assert!((e.drift_ppm - 150.0).abs() < 0.5, "{e:?}");
        // Not enough span: none.
        let mut est = DriftEstimator::new(90_000, 5000);
        est.add_report(1, 0, 1);
        assert!(est.estimate(100.0).is_none());
    }

    #[test]
    fn drift_includes_the_senders_media_clock_rate() {
        // The sender's RTP clock runs 200 ppm fast against its own NTP clock, which is exact:
        // the media arrives 200 ppm fast, but its wall clock does not drift.
        let mut est = DriftEstimator::new(48_000, 5000);
        let media_rate = 1.0 + 200e-6;
        for k in 0..2000u64 {
            let true_t = k as f64 * 20_000.0;
            let ext = (true_t * media_rate * 0.048).round() as i64;
            est.add_frame(ext, 1_000_000_000 + true_t as u64 + 20_000);
            if k.is_multiple_of(250) {
                est.add_report(
                    2_000_000_000 + true_t as u64,
                    ext,
                    1_000_000_000 + true_t as u64,
                );
            }
        }
        let e = est.estimate(100.0).unwrap();
        assert!(e.drift_ppm.abs() < 1.0, "{e:?}");
    }

    #[test]
    fn lower_envelope_ignores_points_above_the_line() {
        let mut pts: Vec<Pt> = (0..100)
            .map(|i| Pt {
                x: i as f64,
                y: 2.0 * i as f64
                    + if i % 7 == 0 {
                        0.0
                    } else {
                        5.0 + (i % 3) as f64
                    },
            })
            .collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
        assert!((lower_envelope_slope(&pts).unwrap() - 2.0).abs() < 1e-12);
        assert!((least_squares_slope(&pts).unwrap() - 2.0).abs() < 0.05);
    }

    #[test]
    fn windowed_min_forgets_old_values() {
        let mut w = WindowedMin::new(1000);
        w.push(5, 0);
        w.push(7, 500);
        assert_eq!(w.min(), Some(5));
        w.push(9, 1000); // rotates: prev = 5
        assert_eq!(w.min(), Some(5));
        w.push(8, 2000); // rotates: prev = 9
        assert_eq!(w.min(), Some(8));
        w.push(20, 5000); // long gap: prev dropped
        assert_eq!(w.min(), Some(20));
        w.restart(1, 5001);
        assert_eq!(w.min(), Some(1));
    }

    #[test]
    fn reports_within_the_hold_tolerance_keep_the_timeline_smooth_larger_ones_re_anchor() {
        let t = 1_700_000_000_000_000u64;
        let mut m = RtpClockMapper::new(48_000, 1000);
        m.on_sender_report(&SenderReport::new(unix_us_to_ntp(t), 0, t));
        // One second later, the report's RTP time is 1 ms late (sender scheduling jitter).
        let r2 = m.on_sender_report(&SenderReport::new(
            unix_us_to_ntp(t + 1_000_000),
            48_000 + 48,
            t + 1_000_000,
        ));
        assert_eq!(r2, SenderReportOutcome::Applied);
        // The timeline still follows the first report exactly, and the report counts as recent.
        assert_eq!(m.rtp_to_wall_clock(96_000), Some(t + 2_000_000));
        assert_eq!(m.confidence(t + 1_000_000), CONFIDENCE_SR);
        // 10 ms off: beyond the tolerance, the mapping takes the new report.
        m.on_sender_report(&SenderReport::new(
            unix_us_to_ntp(t + 3_000_000),
            3 * 48_000 + 480,
            t + 3_000_000,
        ));
        assert_eq!(m.rtp_to_wall_clock(3 * 48_000 + 480), Some(t + 3_000_000));
    }
}
