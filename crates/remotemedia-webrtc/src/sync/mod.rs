//! Per-peer audio/video synchronisation (docs/spec/sync.md): jitter buffers, RTCP sender-report
//! clock mapping, clock drift estimation, lip sync and cross-peer alignment.
//!
//! Pure Rust, no networking: the receive path hands frames in as
//! (sequence number, RTP timestamp, arrival time, payload) and sender reports as
//! (NTP timestamp, RTP timestamp, arrival time), and pops frames out when it is time.
//!
//! **Time is always passed in**, as `u64` microseconds on the receiver's clock expressed since the
//! Unix epoch (monotonic: [`LocalClock`] turns an `Instant` into that). Nothing in this module
//! reads a clock, so every behaviour is reproducible with a mocked clock. The Unix base matters
//! only before the first sender report, when the arrival clock stands in for the sender's wall
//! clock.
//!
//! ```text
//! let mut sync = SyncManager::<AudioPayload, VideoPayload>::new(SyncConfig::default())?;
//! sync.process_audio_frame(RtpFrame::new(seq, ts, clock.micros(Instant::now()), payload));
//! sync.update_rtcp_sender_report(StreamKind::Audio, SenderReport::new(ntp, rtp, now_us))?;
//! while let Some(frame) = sync.pop_next_audio_frame(now_us) { emit(frame) }
//! ```

pub mod clock;
pub mod jitter;
pub mod lipsync;

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use clock::{
    ntp_to_unix_us, unix_us_to_ntp, ClockDriftEstimate, DriftEstimator, DriftSource,
    RtpClockMapper, SenderReport, SenderReportOutcome, SequenceUnwrapper, TimestampUnwrapper,
    NTP_UNIX_OFFSET_SECS, SR_RECENT_INTERVALS,
};
pub use jitter::{
    HeadInfo, InsertOutcome, JitterBuffer, JitterConfig, JitterOutput, JitterStatistics, RtpFrame,
};
pub use lipsync::{LipSync, PeerAlignment, VideoDecision};

use clock::WindowedMin;

/// Turns `Instant`s into the µs values this module takes: receiver time since the Unix epoch,
/// but monotonic (anchored once, then advanced by `Instant` differences).
#[derive(Debug, Clone, Copy)]
pub struct LocalClock {
    anchor: Instant,
    anchor_unix_us: u64,
}

impl LocalClock {
    /// `anchor_unix_us` is the Unix time (µs) at `anchor`, e.g. read once from `SystemTime`.
    pub fn new(anchor: Instant, anchor_unix_us: u64) -> Self {
        Self {
            anchor,
            anchor_unix_us,
        }
    }

    /// `at` as µs since the Unix epoch.
    pub fn micros(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(d) => self.anchor_unix_us + d.as_micros() as u64,
            None => self
                .anchor_unix_us
                .saturating_sub(self.anchor.duration_since(at).as_micros() as u64),
        }
    }
}

/// Lowest accepted jitter target / bound, ms.
pub const JITTER_MIN_MS: u32 = 50;
/// Highest accepted jitter target / bound, ms.
pub const JITTER_MAX_MS: u32 = 200;
/// Lowest accepted floor of the adaptive target (`jitter_min_ms`), ms.
pub const JITTER_FLOOR_MIN_MS: u32 = 10;
/// Highest accepted hard cap, ms.
pub const JITTER_HARD_MAX_MS: u32 = 500;
/// A held video frame is let go this long before the hard cap would discard it.
const HOLD_MARGIN_US: u64 = 20_000;
/// The manager applies its own drift estimate (with `drift_correction`) only once the samples
/// span this long.
pub const DRIFT_AUTO_MIN_SPAN_S: f64 = 10.0;
/// `apply_clock_drift_correction` accepts factors within 1 ± this (10 000 ppm).
pub const MAX_CORRECTION_DEVIATION: f64 = 0.01;
/// Window of the lowest-transit tracker used for cross-peer alignment (one to two of these).
const PATH_WINDOW_US: u64 = 10_000_000;

/// Settings of one peer's sync manager. `validate()` names a bad field and its allowed range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncConfig {
    /// RTP clock of the audio stream, Hz (Opus: 48 000). 8 000..=192 000.
    pub audio_clock_rate: u32,
    /// RTP clock of the video stream, Hz (90 000 for every video codec). 8 000..=1 000 000.
    pub video_clock_rate: u32,
    /// Initial jitter target (fixed one when not adaptive), ms. 50..=200.
    pub jitter_target_ms: u32,
    /// Lower bound of the adaptive target, ms. 10..=`jitter_target_ms`.
    pub jitter_min_ms: u32,
    /// Upper bound of the adaptive target, ms. `jitter_target_ms`..=200.
    pub jitter_max_ms: u32,
    /// Hard cap of a buffer (media span and longest wait), ms; the oldest frames past it are
    /// discarded. `jitter_max_ms`..=500.
    pub jitter_hard_max_ms: u32,
    /// Target follows the RFC 3550 interarrival jitter within the bounds.
    pub adaptive_jitter: bool,
    /// Apply the drift estimate to the RTP → wall-clock mapping when it exceeds the threshold.
    pub drift_correction: bool,
    /// |drift| above this is reported (and corrected), ppm. 1..=10 000.
    pub drift_threshold_ppm: f64,
    /// Expected interval of the sender's RTCP reports, ms; a report is recent for 3 of them.
    /// 100..=60 000.
    pub rtcp_interval_ms: u32,
    /// Hold or release video (and delay audio if need be) to keep lip sync.
    pub lip_sync: bool,
    /// Lip-sync window: |audio_sync_offset| stays within it, ms. 1..=200.
    pub lip_sync_tolerance_ms: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            audio_clock_rate: 48_000,
            video_clock_rate: 90_000,
            jitter_target_ms: 100,
            jitter_min_ms: JITTER_MIN_MS,
            jitter_max_ms: JITTER_MAX_MS,
            jitter_hard_max_ms: JITTER_HARD_MAX_MS,
            adaptive_jitter: true,
            drift_correction: true,
            drift_threshold_ppm: 100.0,
            rtcp_interval_ms: 5000,
            lip_sync: true,
            lip_sync_tolerance_ms: 40,
        }
    }
}

fn check_range(field: &str, value: u32, min: u32, max: u32) -> Result<()> {
    if value < min || value > max {
        return Err(Error::InvalidConfig(format!(
            "sync.{field} must be in {min}..={max}, got {value}"
        )));
    }
    Ok(())
}

impl SyncConfig {
    /// Checks every field; the error names the field (camelCase, as JS spells it) and its range.
    pub fn validate(&self) -> Result<()> {
        check_range("audioClockRate", self.audio_clock_rate, 8_000, 192_000)?;
        check_range("videoClockRate", self.video_clock_rate, 8_000, 1_000_000)?;
        check_range(
            "jitterTargetMs",
            self.jitter_target_ms,
            JITTER_MIN_MS,
            JITTER_MAX_MS,
        )?;
        check_range(
            "jitterMinMs",
            self.jitter_min_ms,
            JITTER_FLOOR_MIN_MS,
            self.jitter_target_ms,
        )?;
        check_range(
            "jitterMaxMs",
            self.jitter_max_ms,
            self.jitter_target_ms,
            JITTER_MAX_MS,
        )?;
        check_range(
            "jitterHardMaxMs",
            self.jitter_hard_max_ms,
            self.jitter_max_ms,
            JITTER_HARD_MAX_MS,
        )?;
        if !(self.drift_threshold_ppm.is_finite()
            && (1.0..=10_000.0).contains(&self.drift_threshold_ppm))
        {
            return Err(Error::InvalidConfig(format!(
                "sync.driftThresholdPpm must be in 1..=10000, got {}",
                self.drift_threshold_ppm
            )));
        }
        check_range("rtcpIntervalMs", self.rtcp_interval_ms, 100, 60_000)?;
        check_range("lipSyncToleranceMs", self.lip_sync_tolerance_ms, 1, 200)?;
        Ok(())
    }

    /// Sets the jitter target (e.g. from the transport's `jitterBufferMs`).
    pub fn with_jitter_target_ms(mut self, ms: u32) -> Self {
        self.jitter_target_ms = ms;
        self
    }

    pub fn with_adaptive_jitter(mut self, on: bool) -> Self {
        self.adaptive_jitter = on;
        self
    }

    pub fn with_drift_correction(mut self, on: bool) -> Self {
        self.drift_correction = on;
        self
    }

    pub fn with_lip_sync(mut self, on: bool) -> Self {
        self.lip_sync = on;
        self
    }

    /// The jitter buffer settings of one stream.
    pub fn jitter_config(&self, kind: StreamKind) -> JitterConfig {
        JitterConfig {
            clock_rate: self.clock_rate(kind),
            target_ms: self.jitter_target_ms,
            min_target_ms: self.jitter_min_ms,
            max_target_ms: self.jitter_max_ms,
            hard_max_ms: self.jitter_hard_max_ms,
            adaptive: self.adaptive_jitter,
        }
    }

    pub fn clock_rate(&self, kind: StreamKind) -> u32 {
        match kind {
            StreamKind::Audio => self.audio_clock_rate,
            StreamKind::Video => self.video_clock_rate,
        }
    }

    /// Most playout delay lip sync may add to the audio: what the hard cap leaves above the
    /// largest jitter target, less a margin.
    fn max_audio_delay_ms(&self) -> u32 {
        self.jitter_hard_max_ms
            .saturating_sub(self.jitter_max_ms)
            .saturating_sub((HOLD_MARGIN_US / 1000) as u32)
    }
}

/// One of a peer's two synchronised streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Audio,
    Video,
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamKind::Audio => "audio",
            StreamKind::Video => "video",
        })
    }
}

/// An audio frame leaving the sync manager. The payload (samples, sample rate, channels) passes
/// through untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncedAudioFrame<T> {
    pub payload: T,
    pub sequence_number: u16,
    pub rtp_timestamp: u32,
    /// Sender wall clock of the frame, µs since the Unix epoch (receiver arrival clock before the
    /// first sender report).
    pub wall_clock_us: u64,
    pub arrival_us: u64,
    /// Time spent in the jitter buffer, ms.
    pub buffer_delay_ms: f64,
    /// 0.5 on the arrival clock, 1.0 with a recent sender report (0.75 with an old one).
    pub sync_confidence: f64,
    /// Latest drift estimate of the sender's clock, ppm (0 until there is one).
    pub drift_ppm: f64,
    /// Frames given up right before this one: conceal that many.
    pub lost_before: u64,
}

/// A video frame leaving the sync manager. The payload (planes, width × height) passes through
/// untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncedVideoFrame<T> {
    pub payload: T,
    pub sequence_number: u16,
    pub rtp_timestamp: u32,
    pub wall_clock_us: u64,
    pub arrival_us: u64,
    pub buffer_delay_ms: f64,
    pub sync_confidence: f64,
    pub drift_ppm: f64,
    pub lost_before: u64,
    /// Frame rate from the RTP timestamp steps, fps (once two frames were released).
    pub framerate: Option<f64>,
    /// Video wall clock − audio playout position, ms: negative = video behind audio. `None`
    /// while no audio is playing.
    pub audio_sync_offset_ms: Option<f64>,
}

/// Clock state of one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSyncState {
    pub clock_rate: u32,
    pub has_sender_report: bool,
    pub sync_confidence: f64,
    pub sender_reports: u64,
    pub stale_sender_reports: u64,
    pub last_sender_report_age_ms: Option<f64>,
    /// Wall clock of the last released frame, µs.
    pub last_wall_clock_us: Option<u64>,
}

/// What `get_sync_state` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    pub audio: StreamSyncState,
    pub video: StreamSyncState,
    /// Latest drift estimate, ppm (positive = sender clock fast).
    pub drift_ppm: Option<f64>,
    pub drift_exceeds_threshold: bool,
    /// Factor applied to the RTP → wall-clock mapping (1 = none).
    pub correction_factor: f64,
    /// Both streams have sender reports and audio is playing: video is steered.
    pub lip_sync_active: bool,
    /// Offset of the last released video frame, ms.
    pub audio_sync_offset_ms: Option<f64>,
    /// `|audio_sync_offset_ms| ≤ tolerance`, when known.
    pub in_sync: Option<bool>,
    /// Playout delay lip sync added to the audio, ms.
    pub audio_playout_delay_ms: f64,
    /// Video frames released under lip sync, and those within tolerance.
    pub video_frames_synced: u64,
    pub video_frames_in_tolerance: u64,
    /// Receiver time the state refers to (the latest time passed in), µs.
    pub now_us: u64,
}

/// What a peer's sync manager learned that still holds on a new connection to the same peer
/// (new RTP streams, same network path and sender clock): the adaptive jitter targets and the
/// drift correction. Part of a session snapshot; seeds a reconnected peer's manager.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncSeed {
    /// Adaptive audio jitter target, ms (clamped to the receiver's bounds when applied).
    pub audio_target_ms: Option<f64>,
    /// Adaptive video jitter target, ms.
    pub video_target_ms: Option<f64>,
    /// Drift correction factor of the RTP → wall-clock mapping, 0.99..=1.01.
    pub correction_factor: Option<f64>,
}

impl SyncSeed {
    /// Targets must be finite and 0..=hard max, the factor 0.99..=1.01.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("audioTargetMs", self.audio_target_ms),
            ("videoTargetMs", self.video_target_ms),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && (0.0..=JITTER_HARD_MAX_MS as f64).contains(&v)) {
                    return Err(Error::InvalidData(format!(
                        "sync.{name} must be in 0..={JITTER_HARD_MAX_MS}, got {v}"
                    )));
                }
            }
        }
        if let Some(f) = self.correction_factor {
            if !(f.is_finite() && (f - 1.0).abs() <= MAX_CORRECTION_DEVIATION) {
                return Err(Error::InvalidData(format!(
                    "sync.correctionFactor must be in 0.99..=1.01, got {f}"
                )));
            }
        }
        Ok(())
    }
}

/// What `get_buffer_statistics` reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BufferStatistics {
    pub audio: JitterStatistics,
    pub video: JitterStatistics,
}

#[derive(Debug, Clone)]
struct Stream<T> {
    jitter: JitterBuffer<T>,
    clock: RtpClockMapper,
    drift: DriftEstimator,
    /// Lowest (arrival − wall clock) of the frames: the wall clock → receiver time offset.
    path: WindowedMin,
    last_wall_us: Option<u64>,
    last_released_ts: Option<i64>,
    frame_interval: Option<f64>,
    interval_outliers: u32,
}

impl<T> Stream<T> {
    fn new(config: &SyncConfig, kind: StreamKind) -> Self {
        let rate = config.clock_rate(kind);
        Self {
            jitter: JitterBuffer::new(config.jitter_config(kind)),
            clock: RtpClockMapper::new(rate, config.rtcp_interval_ms),
            drift: DriftEstimator::new(rate, config.rtcp_interval_ms),
            path: WindowedMin::new(PATH_WINDOW_US),
            last_wall_us: None,
            last_released_ts: None,
            frame_interval: None,
            interval_outliers: 0,
        }
    }

    /// Feeds the clock, drift and path trackers; returns the frame's wall clock.
    fn observe(&mut self, frame: &RtpFrame<T>) -> Option<u64> {
        let ext = self
            .clock
            .observe_frame(frame.rtp_timestamp, frame.arrival_us);
        self.drift.add_frame(ext, frame.arrival_us);
        let wall = self.clock.ext_to_wall_us(ext)?;
        self.path
            .push(frame.arrival_us as i64 - wall as i64, frame.arrival_us);
        Some(wall)
    }

    fn on_sender_report(&mut self, sr: &SenderReport) -> SenderReportOutcome {
        let had_report = self.clock.has_sender_report();
        let outcome = self.clock.on_sender_report(sr);
        match outcome {
            SenderReportOutcome::Stale => return outcome,
            SenderReportOutcome::Discontinuity => {
                self.drift.clear();
                self.path.clear();
            }
            // The arrival-clock mapping gives way to the sender's: its offsets do not compare.
            SenderReportOutcome::Applied if !had_report => self.path.clear(),
            SenderReportOutcome::Applied => {}
        }
        // The drift estimate takes every report as it is (the mapping may hold an older anchor).
        self.drift.add_report(
            ntp_to_unix_us(sr.ntp_timestamp),
            self.clock.extend(sr.rtp_timestamp),
            sr.arrival_us,
        );
        outcome
    }

    /// Frame-rate estimate: EMA of the timestamp step between released frames; a step over
    /// three times the estimate (a loss) is ignored unless it persists.
    fn update_framerate(&mut self, ext_ts: i64) {
        if let Some(prev) = self.last_released_ts {
            let step = (ext_ts - prev) as f64;
            if step > 0.0 {
                match self.frame_interval {
                    Some(i) if step < 3.0 * i => {
                        self.frame_interval = Some(i + (step - i) / 8.0);
                        self.interval_outliers = 0;
                    }
                    Some(_) if self.interval_outliers < 2 => self.interval_outliers += 1,
                    _ => {
                        self.frame_interval = Some(step);
                        self.interval_outliers = 0;
                    }
                }
            }
        }
        self.last_released_ts = Some(ext_ts);
    }

    fn framerate(&self) -> Option<f64> {
        self.frame_interval
            .map(|i| self.clock.clock_rate() as f64 / i)
    }

    fn state(&self, now_us: u64) -> StreamSyncState {
        let (sender_reports, stale) = self.clock.sender_report_counts();
        StreamSyncState {
            clock_rate: self.clock.clock_rate(),
            has_sender_report: self.clock.has_sender_report(),
            sync_confidence: self.clock.confidence(now_us),
            sender_reports,
            stale_sender_reports: stale,
            last_sender_report_age_ms: self.clock.sender_report_age_ms(now_us),
            last_wall_clock_us: self.last_wall_us,
        }
    }
}

/// The sync manager of one remote peer: an audio and a video stream, each with its jitter buffer
/// and clock mapping, plus drift estimation, lip sync and cross-peer alignment.
///
/// `A` and `V` are the payload types (decoded audio / video, or encoded bytes) and pass through
/// untouched.
#[derive(Debug, Clone)]
pub struct SyncManager<A = bytes::Bytes, V = bytes::Bytes> {
    config: SyncConfig,
    audio: Stream<A>,
    video: Stream<V>,
    lipsync: LipSync,
    now_us: u64,
    drift: Option<ClockDriftEstimate>,
    correction_factor: f64,
    /// Applied again after every reset.
    seed: Option<SyncSeed>,
}

impl<A, V> SyncManager<A, V> {
    /// A manager for one peer; the config is validated.
    pub fn new(config: SyncConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: SyncConfig) -> Self {
        Self {
            audio: Stream::new(&config, StreamKind::Audio),
            video: Stream::new(&config, StreamKind::Video),
            lipsync: LipSync::new(config.lip_sync_tolerance_ms, config.max_audio_delay_ms()),
            now_us: 0,
            drift: None,
            correction_factor: 1.0,
            seed: None,
            config,
        }
    }

    /// What this manager learned that a new connection to the same peer can start from.
    pub fn seed_state(&self) -> SyncSeed {
        let adaptive = self.config.adaptive_jitter;
        SyncSeed {
            audio_target_ms: adaptive.then(|| self.audio.jitter.target_delay_us() as f64 / 1000.0),
            video_target_ms: adaptive.then(|| self.video.jitter.target_delay_us() as f64 / 1000.0),
            correction_factor: (self.correction_factor != 1.0).then_some(self.correction_factor),
        }
    }

    /// Starts from `seed` (validated: `InvalidData`), now and after every reset: the jitter
    /// targets (clamped to this manager's bounds; adaptive buffers only) and the drift
    /// correction.
    pub fn apply_seed(&mut self, seed: SyncSeed) -> Result<()> {
        seed.validate()?;
        self.seed = Some(seed);
        self.reapply_seed();
        Ok(())
    }

    fn reapply_seed(&mut self) {
        let Some(seed) = self.seed else { return };
        if let Some(ms) = seed.audio_target_ms {
            self.audio.jitter.seed_target_ms(ms);
        }
        if let Some(ms) = seed.video_target_ms {
            self.video.jitter.seed_target_ms(ms);
        }
        if let Some(f) = seed.correction_factor {
            self.set_correction(f);
        }
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Clears buffers (dropping their frames), mappings, drift and lip-sync state and the
    /// counters: after a pause/resume or an SSRC change of both streams.
    pub fn reset(&mut self) {
        let seed = self.seed;
        *self = Self::build(self.config.clone());
        self.seed = seed;
        self.reapply_seed();
    }

    /// Clears one stream (e.g. its SSRC changed); lip-sync state is cleared too.
    pub fn reset_stream(&mut self, kind: StreamKind) {
        match kind {
            StreamKind::Audio => self.audio = Stream::new(&self.config, kind),
            StreamKind::Video => self.video = Stream::new(&self.config, kind),
        }
        if let Some(seed) = self.seed {
            let ms = match kind {
                StreamKind::Audio => seed.audio_target_ms,
                StreamKind::Video => seed.video_target_ms,
            };
            if let Some(ms) = ms {
                match kind {
                    StreamKind::Audio => self.audio.jitter.seed_target_ms(ms),
                    StreamKind::Video => self.video.jitter.seed_target_ms(ms),
                }
            }
        }
        self.audio
            .clock
            .set_correction_factor(self.correction_factor);
        self.video
            .clock
            .set_correction_factor(self.correction_factor);
        self.lipsync.reset();
    }

    fn observe_time(&mut self, now_us: u64) {
        self.now_us = self.now_us.max(now_us);
    }

    /// An audio frame arrived. O(log n).
    pub fn process_audio_frame(&mut self, frame: RtpFrame<A>) -> InsertOutcome {
        self.observe_time(frame.arrival_us);
        self.audio.observe(&frame);
        self.audio.jitter.insert(frame)
    }

    /// A video frame arrived. O(log n).
    pub fn process_video_frame(&mut self, frame: RtpFrame<V>) -> InsertOutcome {
        self.observe_time(frame.arrival_us);
        let arrival = frame.arrival_us;
        let wall = self.video.observe(&frame);
        if let Some(wall) = wall {
            if self.lip_sync_mapped() {
                self.lipsync.on_video_arrival(wall, arrival);
            }
        }
        self.video.jitter.insert(frame)
    }

    /// Both streams are on sender-report mappings (and lip sync is on).
    fn lip_sync_mapped(&self) -> bool {
        self.config.lip_sync
            && self.audio.clock.has_sender_report()
            && self.video.clock.has_sender_report()
    }

    fn lip_sync_active(&self, now_us: u64) -> bool {
        self.lip_sync_mapped() && self.lipsync.audio_position(now_us).is_some()
    }

    fn drift_ppm(&self) -> f64 {
        self.drift.map_or(0.0, |d| d.drift_ppm)
    }

    /// When the next buffered frame falls due by the jitter schedule (audio including any
    /// lip-sync delay), µs; `None` with nothing buffered. Under lip sync a video frame may go
    /// earlier or later than its deadline, so a playout loop also re-checks while video is
    /// buffered (see [`SyncManager::has_video_buffered`]).
    pub fn next_due_us(&self) -> Option<u64> {
        let extra = if self.config.lip_sync {
            self.lipsync.audio_delay_us()
        } else {
            0
        };
        let audio = self.audio.jitter.head().map(|h| h.due_us + extra);
        let video = self.video.jitter.head().map(|h| h.due_us);
        match (audio, video) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        }
    }

    /// Whether any video frame is waiting in the buffer.
    pub fn has_video_buffered(&self) -> bool {
        !self.video.jitter.is_empty()
    }

    /// The next audio frame, if one is due at `now_us` (call until `None`).
    pub fn pop_next_audio_frame(&mut self, now_us: u64) -> Option<SyncedAudioFrame<A>> {
        self.observe_time(now_us);
        let head = self.audio.jitter.head()?;
        let extra = if self.config.lip_sync {
            self.lipsync.audio_delay_us()
        } else {
            0
        };
        if now_us < head.due_us + extra {
            return None;
        }
        let out = self.audio.jitter.pop_head(now_us)?;
        let wall = self
            .audio
            .clock
            .rtp_to_wall_clock(out.rtp_timestamp)
            .unwrap_or(out.arrival_us);
        self.audio.last_wall_us = Some(wall);
        self.lipsync.on_audio_released(wall, now_us);
        Some(SyncedAudioFrame {
            payload: out.payload,
            sequence_number: out.sequence_number,
            rtp_timestamp: out.rtp_timestamp,
            wall_clock_us: wall,
            arrival_us: out.arrival_us,
            buffer_delay_ms: out.buffer_delay_us as f64 / 1000.0,
            sync_confidence: self.audio.clock.confidence(self.now_us),
            drift_ppm: self.drift_ppm(),
            lost_before: out.lost_before,
        })
    }

    /// The next video frame, if one is due at `now_us` (call until `None`). Under lip sync a
    /// frame ahead of the audio is held and one that is due is released even before its jitter
    /// deadline.
    pub fn pop_next_video_frame(&mut self, now_us: u64) -> Option<SyncedVideoFrame<V>> {
        self.observe_time(now_us);
        let head = self.video.jitter.head()?;
        let wall = self.video.clock.rtp_to_wall_clock(head.rtp_timestamp);
        let active = self.lip_sync_active(now_us);
        let max_wait =
            (self.config.jitter_hard_max_ms as u64 * 1000).saturating_sub(HOLD_MARGIN_US);
        let decision = match (active, wall) {
            (true, Some(w)) => {
                self.lipsync
                    .decide(w, now_us, now_us.saturating_sub(head.arrival_us), max_wait)
            }
            _ => None,
        };
        match decision {
            Some(VideoDecision::Hold) => return None,
            Some(VideoDecision::Release) => {}
            None if now_us < head.due_us => return None,
            None => {}
        }
        let out = self.video.jitter.pop_head(now_us)?;
        let wall = wall.unwrap_or(out.arrival_us);
        let offset = self.lipsync.offset_us(wall, now_us);
        self.lipsync.on_video_released(offset, active);
        self.video.last_wall_us = Some(wall);
        self.video.update_framerate(out.extended_timestamp);
        Some(SyncedVideoFrame {
            payload: out.payload,
            sequence_number: out.sequence_number,
            rtp_timestamp: out.rtp_timestamp,
            wall_clock_us: wall,
            arrival_us: out.arrival_us,
            buffer_delay_ms: out.buffer_delay_us as f64 / 1000.0,
            sync_confidence: self.video.clock.confidence(self.now_us),
            drift_ppm: self.drift_ppm(),
            lost_before: out.lost_before,
            framerate: self.video.framerate(),
            audio_sync_offset_ms: offset.map(|o| o as f64 / 1000.0),
        })
    }

    /// An RTCP sender report of one stream arrived. Stale (not newer) reports are ignored; a
    /// report whose RTP time disagrees with the previous one by over a second re-anchors the
    /// mapping and clears that stream's drift history. With `drift_correction` the new drift
    /// estimate is applied when it exceeds the threshold over at least
    /// [`DRIFT_AUTO_MIN_SPAN_S`] (and the correction is lifted when it no longer does).
    pub fn update_rtcp_sender_report(
        &mut self,
        kind: StreamKind,
        report: SenderReport,
    ) -> Result<SenderReportOutcome> {
        if report.ntp_timestamp == 0 {
            return Err(Error::InvalidData(format!(
                "{kind} sender report has NTP timestamp 0"
            )));
        }
        self.observe_time(report.arrival_us);
        let had_report = self.clock(kind).has_sender_report();
        let outcome = match kind {
            StreamKind::Audio => self.audio.on_sender_report(&report),
            StreamKind::Video => self.video.on_sender_report(&report),
        };
        if outcome == SenderReportOutcome::Discontinuity || !had_report {
            self.lipsync.on_mapping_changed();
        }
        if outcome != SenderReportOutcome::Stale {
            self.drift = self.estimate_clock_drift();
            if self.config.drift_correction {
                if let Some(d) = self.drift.filter(|d| d.span_s >= DRIFT_AUTO_MIN_SPAN_S) {
                    let factor = if d.exceeds_threshold {
                        d.correction_factor
                    } else {
                        1.0
                    };
                    self.set_correction(factor);
                }
            }
        }
        Ok(outcome)
    }

    /// The drift of the sender's clock against the receiver's, from the stream with the better
    /// evidence (media arrivals over reports alone, audio over video); `None` until the samples
    /// span a few seconds.
    pub fn estimate_clock_drift(&self) -> Option<ClockDriftEstimate> {
        let threshold = self.config.drift_threshold_ppm;
        let a = self.audio.drift.estimate(threshold);
        let v = self.video.drift.estimate(threshold);
        let media = |e: &Option<ClockDriftEstimate>| {
            e.is_some_and(|e| e.source == DriftSource::MediaArrivals)
        };
        if media(&a) || !media(&v) {
            a.or(v)
        } else {
            v
        }
    }

    fn set_correction(&mut self, factor: f64) {
        self.correction_factor = factor;
        self.audio.clock.set_correction_factor(factor);
        self.video.clock.set_correction_factor(factor);
    }

    /// Scales the RTP time elapsed since the latest sender report by `factor` in both streams'
    /// wall-clock mappings (`ClockDriftEstimate::correction_factor` turns sender durations into
    /// receiver durations; 1.0 removes the correction). Each report re-anchors the mapping, so it
    /// never strays from the sender's clock by more than interval × drift. Accepts 0.99..=1.01.
    /// With `drift_correction` on, the next report replaces it with the manager's own estimate.
    pub fn apply_clock_drift_correction(&mut self, factor: f64) -> Result<()> {
        if !(factor.is_finite() && (factor - 1.0).abs() <= MAX_CORRECTION_DEVIATION) {
            return Err(Error::InvalidData(format!(
                "drift correction factor must be in 0.99..=1.01, got {factor}"
            )));
        }
        self.set_correction(factor);
        Ok(())
    }

    fn clock(&self, kind: StreamKind) -> &RtpClockMapper {
        match kind {
            StreamKind::Audio => &self.audio.clock,
            StreamKind::Video => &self.video.clock,
        }
    }

    /// Sender wall clock (µs since the Unix epoch) of an RTP timestamp of `kind`; the arrival
    /// clock stands in before the first sender report. Errors with `NotStarted` while the stream
    /// has neither a frame nor a report.
    pub fn rtp_to_wall_clock(&self, kind: StreamKind, rtp_timestamp: u32) -> Result<u64> {
        self.clock(kind)
            .rtp_to_wall_clock(rtp_timestamp)
            .ok_or_else(|| not_mapped(kind))
    }

    /// The RTP timestamp of `kind` at a sender wall-clock instant (inverse of
    /// [`Self::rtp_to_wall_clock`]).
    pub fn wall_clock_to_rtp(&self, kind: StreamKind, wall_clock_us: u64) -> Result<u32> {
        self.clock(kind)
            .wall_clock_to_rtp(wall_clock_us)
            .ok_or_else(|| not_mapped(kind))
    }

    /// Confidence of a stream's mapping now (0, 0.5, 0.75 or 1.0).
    pub fn sync_confidence(&self, kind: StreamKind) -> f64 {
        self.clock(kind).confidence(self.now_us)
    }

    /// Clock, drift and lip-sync state.
    pub fn get_sync_state(&self) -> SyncState {
        let offset = self.lipsync.last_offset_us();
        let (synced, in_tolerance) = self.lipsync.released_counts();
        SyncState {
            audio: self.audio.state(self.now_us),
            video: self.video.state(self.now_us),
            drift_ppm: self.drift.map(|d| d.drift_ppm),
            drift_exceeds_threshold: self.drift.is_some_and(|d| d.exceeds_threshold),
            correction_factor: self.correction_factor,
            lip_sync_active: self.lip_sync_active(self.now_us),
            audio_sync_offset_ms: offset.map(|o| o as f64 / 1000.0),
            in_sync: offset.map(|o| o.unsigned_abs() <= self.lipsync.tolerance_us()),
            audio_playout_delay_ms: self.lipsync.audio_delay_us() as f64 / 1000.0,
            video_frames_synced: synced,
            video_frames_in_tolerance: in_tolerance,
            now_us: self.now_us,
        }
    }

    /// Both jitter buffers' counters and gauges.
    pub fn get_buffer_statistics(&self) -> BufferStatistics {
        BufferStatistics {
            audio: self.audio.jitter.statistics(),
            video: self.video.jitter.statistics(),
        }
    }

    /// Sender wall clock → receiver time offset (lowest transit) and its confidence, from the
    /// audio if it has one, else the video.
    fn local_offset(&self) -> Option<(i64, f64)> {
        [&self.audio.clock, &self.video.clock]
            .into_iter()
            .zip([self.audio.path.min(), self.video.path.min()])
            .find_map(|(clock, offset)| Some((offset?, clock.confidence(self.now_us))))
    }

    /// Puts this peer and `other` on one timeline, the receiver's clock (see [`PeerAlignment`]).
    /// Errors with `NotStarted` while either has received no frame.
    pub fn align_with_peer<A2, V2>(&self, other: &SyncManager<A2, V2>) -> Result<PeerAlignment> {
        let (mine, my_conf) = self
            .local_offset()
            .ok_or_else(|| Error::NotStarted("this peer has received no media yet".into()))?;
        let (theirs, their_conf) = other
            .local_offset()
            .ok_or_else(|| Error::NotStarted("the other peer has received no media yet".into()))?;
        Ok(PeerAlignment::new(mine, theirs, my_conf.min(their_conf)))
    }
}

fn not_mapped(kind: StreamKind) -> Error {
    Error::NotStarted(format!(
        "no {kind} timestamp mapping yet: no frame or sender report received"
    ))
}

/// Helpers shared by the unit tests of the sync modules.
#[cfg(test)]
pub(crate) mod testutil {
    /// Deterministic xorshift64* (no external randomness).
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).max(1))
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [0, 1).
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::Rng;
    use super::*;

    /// Receiver clock (Unix µs) at true time 0.
    const T0: u64 = 1_700_000_000_000_000;
    /// A sender's wall clock at true time 0: about four months behind the receiver's.
    const S0: u64 = 1_690_000_000_000_000;
    const AUDIO_RTP0: u32 = 4_000_000_000;
    const VIDEO_RTP0: u32 = 1_234_567;

    #[derive(Clone, Copy)]
    struct Sim {
        ppm: f64,
        sender_epoch_us: u64,
        audio_delay_ms: f64,
        audio_jitter_ms: f64,
        video_delay_ms: f64,
        video_jitter_ms: f64,
        duration_s: f64,
        sr_interval_s: f64,
        first_sr_s: f64,
        seed: u64,
        video: bool,
    }

    impl Default for Sim {
        fn default() -> Self {
            Self {
                ppm: 0.0,
                sender_epoch_us: S0,
                audio_delay_ms: 30.0,
                audio_jitter_ms: 5.0,
                video_delay_ms: 30.0,
                video_jitter_ms: 5.0,
                duration_s: 12.0,
                sr_interval_s: 5.0,
                first_sr_s: 1.0,
                seed: 1,
                video: true,
            }
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Audio(u64),
        Video(u64),
        Sr(StreamKind, f64),
    }

    struct Run {
        sync: SyncManager<u64, u64>,
        audio: Vec<SyncedAudioFrame<u64>>,
        video: Vec<SyncedVideoFrame<u64>>,
        /// Receiver time each stream's first report arrived.
        first_sr_at: [Option<u64>; 2],
    }

    /// The sender's clock runs `ppm` fast; audio frames every 20 ms and video every 1/30 s of its
    /// time, reports for both streams every `sr_interval_s`; the receiver pops both streams every
    /// 5 ms.
    fn simulate(sim: Sim, config: SyncConfig) -> Run {
        let mut rng = Rng::new(sim.seed);
        let rate = 1.0 + sim.ppm * 1e-6;
        let end_true_us = sim.duration_s * 1e6;
        let mut events: Vec<(u64, Ev)> = Vec::new();
        let arrival = |true_us: f64, delay_ms: f64, jitter_ms: f64, rng: &mut Rng| {
            (T0 as f64 + true_us + (delay_ms + rng.unit() * jitter_ms) * 1000.0) as u64
        };
        let mut k = 0;
        while k as f64 * 20_000.0 / rate < end_true_us {
            let a = arrival(
                k as f64 * 20_000.0 / rate,
                sim.audio_delay_ms,
                sim.audio_jitter_ms,
                &mut rng,
            );
            events.push((a, Ev::Audio(k)));
            k += 1;
        }
        if sim.video {
            let mut k = 0;
            while k as f64 * 1e6 / 30.0 / rate < end_true_us {
                let t = k as f64 * 1e6 / 30.0 / rate;
                events.push((
                    arrival(t, sim.video_delay_ms, sim.video_jitter_ms, &mut rng),
                    Ev::Video(k),
                ));
                k += 1;
            }
        }
        let mut s = sim.first_sr_s * 1e6;
        while s / rate < end_true_us {
            let t = s / rate;
            events.push((
                arrival(t, sim.audio_delay_ms, sim.audio_jitter_ms, &mut rng),
                Ev::Sr(StreamKind::Audio, s),
            ));
            if sim.video {
                events.push((
                    arrival(t, sim.video_delay_ms, sim.video_jitter_ms, &mut rng),
                    Ev::Sr(StreamKind::Video, s),
                ));
            }
            s += sim.sr_interval_s * 1e6;
        }
        events.sort_by_key(|&(a, _)| a);

        let mut run = Run {
            sync: SyncManager::new(config).unwrap(),
            audio: Vec::new(),
            video: Vec::new(),
            first_sr_at: [None, None],
        };
        let mut next = 0;
        let mut now = T0;
        let end = T0 + end_true_us as u64 + 1_000_000;
        while now <= end {
            while next < events.len() && events[next].0 <= now {
                let (a, ev) = events[next];
                next += 1;
                match ev {
                    Ev::Audio(k) => {
                        run.sync.process_audio_frame(RtpFrame::new(
                            k as u16,
                            AUDIO_RTP0.wrapping_add((k * 960) as u32),
                            a,
                            k,
                        ));
                    }
                    Ev::Video(k) => {
                        run.sync.process_video_frame(RtpFrame::new(
                            (k + 40_000) as u16,
                            VIDEO_RTP0.wrapping_add((k * 3000) as u32),
                            a,
                            k,
                        ));
                    }
                    Ev::Sr(kind, s) => {
                        let (rtp0, clock) = match kind {
                            StreamKind::Audio => (AUDIO_RTP0, 48_000.0),
                            StreamKind::Video => (VIDEO_RTP0, 90_000.0),
                        };
                        let rtp = rtp0.wrapping_add((s * clock / 1e6).round() as u64 as u32);
                        let ntp = unix_us_to_ntp(sim.sender_epoch_us + s as u64);
                        run.sync
                            .update_rtcp_sender_report(kind, SenderReport::new(ntp, rtp, a))
                            .unwrap();
                        run.first_sr_at[kind as usize].get_or_insert(a);
                    }
                }
            }
            while let Some(f) = run.sync.pop_next_audio_frame(now) {
                run.audio.push(f);
            }
            while let Some(f) = run.sync.pop_next_video_frame(now) {
                run.video.push(f);
            }
            now += 5_000;
        }
        run
    }

    #[test]
    fn config_validation_table() {
        type Edit = fn(&mut SyncConfig);
        let bad: &[(Edit, &str)] = &[
            (
                |c| c.audio_clock_rate = 7_999,
                "sync.audioClockRate must be in 8000..=192000, got 7999",
            ),
            (
                |c| c.audio_clock_rate = 192_001,
                "sync.audioClockRate must be in 8000..=192000, got 192001",
            ),
            (
                |c| c.video_clock_rate = 0,
                "sync.videoClockRate must be in 8000..=1000000, got 0",
            ),
            (
                |c| c.jitter_target_ms = 49,
                "sync.jitterTargetMs must be in 50..=200, got 49",
            ),
            (
                |c| c.jitter_target_ms = 201,
                "sync.jitterTargetMs must be in 50..=200, got 201",
            ),
            (
                |c| c.jitter_min_ms = 9,
                "sync.jitterMinMs must be in 10..=100, got 9",
            ),
            (
                |c| c.jitter_min_ms = 120,
                "sync.jitterMinMs must be in 10..=100, got 120",
            ),
            (
                |c| c.jitter_max_ms = 90,
                "sync.jitterMaxMs must be in 100..=200, got 90",
            ),
            (
                |c| c.jitter_max_ms = 250,
                "sync.jitterMaxMs must be in 100..=200, got 250",
            ),
            (
                |c| c.jitter_hard_max_ms = 150,
                "sync.jitterHardMaxMs must be in 200..=500, got 150",
            ),
            (
                |c| c.jitter_hard_max_ms = 501,
                "sync.jitterHardMaxMs must be in 200..=500, got 501",
            ),
            (
                |c| c.drift_threshold_ppm = 0.5,
                "sync.driftThresholdPpm must be in 1..=10000, got 0.5",
            ),
            (
                |c| c.drift_threshold_ppm = f64::NAN,
                "sync.driftThresholdPpm must be in 1..=10000, got NaN",
            ),
            (
                |c| c.drift_threshold_ppm = 20_000.0,
                "sync.driftThresholdPpm must be in 1..=10000, got 20000",
            ),
            (
                |c| c.rtcp_interval_ms = 99,
                "sync.rtcpIntervalMs must be in 100..=60000, got 99",
            ),
            (
                |c| c.rtcp_interval_ms = 60_001,
                "sync.rtcpIntervalMs must be in 100..=60000, got 60001",
            ),
            (
                |c| c.lip_sync_tolerance_ms = 0,
                "sync.lipSyncToleranceMs must be in 1..=200, got 0",
            ),
            (
                |c| c.lip_sync_tolerance_ms = 201,
                "sync.lipSyncToleranceMs must be in 1..=200, got 201",
            ),
        ];
        for (edit, message) in bad {
            let mut c = SyncConfig::default();
            edit(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err, Error::InvalidConfig(message.to_string()));
            assert_eq!(err.code(), "ERR_INVALID_CONFIG");
            assert_eq!(SyncManager::<u64, u64>::new(c).unwrap_err(), err);
        }
        let good: &[Edit] = &[
            |_| {},
            |c| {
                c.jitter_target_ms = 50;
                c.jitter_max_ms = 50;
                c.jitter_hard_max_ms = 50;
            },
            |c| {
                c.jitter_target_ms = 200;
                c.jitter_min_ms = 200;
            },
            |c| {
                c.audio_clock_rate = 8_000;
                c.video_clock_rate = 1_000_000;
                c.drift_threshold_ppm = 1.0;
                c.rtcp_interval_ms = 100;
                c.lip_sync_tolerance_ms = 200;
            },
        ];
        for edit in good {
            let mut c = SyncConfig::default();
            edit(&mut c);
            c.validate().unwrap();
        }
        let c = SyncConfig::default().with_jitter_target_ms(150);
        assert_eq!(c.jitter_target_ms, 150);
        c.validate().unwrap();
    }

    #[test]
    fn config_from_json_fills_defaults() {
        let c: SyncConfig =
            serde_json::from_str(r#"{"jitterTargetMs": 150, "lipSync": false}"#).unwrap();
        assert_eq!(
            c,
            SyncConfig {
                jitter_target_ms: 150,
                lip_sync: false,
                ..SyncConfig::default()
            }
        );
    }

    #[test]
    fn local_clock_turns_instants_into_unix_micros() {
        let anchor = Instant::now();
        let clock = LocalClock::new(anchor, T0);
        assert_eq!(clock.micros(anchor), T0);
        assert_eq!(
            clock.micros(anchor + std::time::Duration::from_millis(1500)),
            T0 + 1_500_000
        );
        if let Some(before) = anchor.checked_sub(std::time::Duration::from_micros(7)) {
            assert_eq!(clock.micros(before), T0 - 7);
        }
    }

    #[test]
    fn confidence_half_before_the_first_report_then_one_with_consistent_wall_clock() {
        let run = simulate(Sim::default(), SyncConfig::default());
        let first_sr = run.first_sr_at[0].unwrap();
        // Before the first report: the arrival clock, confidence 0.5.
        let mut before = 0;
        for f in run
            .audio
            .iter()
            .take_while(|f| f.wall_clock_us > T0 - 1_000_000)
        {
            assert_eq!(f.sync_confidence, 0.5);
            assert!(f.wall_clock_us.abs_diff(f.arrival_us) < 20_000);
            assert!(f.arrival_us < first_sr + 200_000);
            before += 1;
        }
        assert!(before > 40, "{before}");
        // After: confidence 1.0, wall clock increasing and exactly the sender's capture time.
        let mut last = 0;
        let mut checked = 0;
        for f in run
            .audio
            .iter()
            .filter(|f| f.wall_clock_us < T0 - 1_000_000)
        {
            assert_eq!(f.sync_confidence, 1.0);
            assert!(f.wall_clock_us > last);
            last = f.wall_clock_us;
            assert_eq!(
                f.wall_clock_us,
                S0 + f.payload * 20_000,
                "audio frame {}",
                f.payload
            );
            checked += 1;
        }
        assert!(checked > 400);
        let mut last = 0;
        for f in run
            .video
            .iter()
            .filter(|f| f.wall_clock_us < T0 - 1_000_000)
        {
            assert_eq!(f.sync_confidence, 1.0);
            assert!(f.wall_clock_us > last);
            last = f.wall_clock_us;
            // 1/30 s steps of a 90 kHz clock: exact to the µs rounding.
            let exact = S0 as f64 + f.payload as f64 * 1e6 / 30.0;
            assert!((f.wall_clock_us as f64 - exact).abs() <= 0.5);
        }
        let state = run.sync.get_sync_state();
        assert_eq!(state.audio.sync_confidence, 1.0);
        assert!(state.audio.has_sender_report && state.video.has_sender_report);
        assert_eq!(state.audio.sender_reports, 3);
        let stats = run.sync.get_buffer_statistics();
        assert_eq!(
            stats.audio.lost + stats.audio.late + stats.audio.discarded,
            0
        );
        assert_eq!(stats.audio.released as usize, run.audio.len());
        assert!(stats.audio.jitter_ms > 0.5 && stats.audio.jitter_ms < 3.0);
        assert_eq!(stats.video.released as usize, run.video.len());
        // Video frame rate from the timestamps.
        let fps = run.video.last().unwrap().framerate.unwrap();
        assert!((fps - 30.0).abs() < 0.01, "{fps}");
    }

    #[test]
    fn a_sender_150_ppm_fast_or_slow_is_estimated_within_5_ppm_after_6_reports() {
        for ppm in [150.0, -150.0] {
            for seed in 1..=3 {
                let sim = Sim {
                    ppm,
                    seed,
                    // Reports at 1, 6, … 26 s: six of them.
                    duration_s: 26.5,
                    video: false,
                    audio_jitter_ms: 4.0,
                    ..Sim::default()
                };
                let run = simulate(sim, SyncConfig::default());
                assert_eq!(run.sync.get_sync_state().audio.sender_reports, 6);
                let d = run.sync.estimate_clock_drift().unwrap();
                assert!((d.drift_ppm - ppm).abs() <= 5.0, "{ppm} {seed}: {d:?}");
                assert!(d.exceeds_threshold);
                // Applied automatically: sender durations are scaled to receiver time.
                let state = run.sync.get_sync_state();
                assert_eq!(state.correction_factor, d.correction_factor);
                assert!((state.drift_ppm.unwrap() - ppm).abs() <= 5.0);
                assert!((run.audio.last().unwrap().drift_ppm - ppm).abs() <= 5.0);
            }
        }
        // Below the threshold: estimated, not corrected.
        let run = simulate(
            Sim {
                ppm: 30.0,
                duration_s: 26.5,
                video: false,
                ..Sim::default()
            },
            SyncConfig::default(),
        );
        let d = run.sync.estimate_clock_drift().unwrap();
        assert!(
            (d.drift_ppm - 30.0).abs() <= 5.0 && !d.exceeds_threshold,
            "{d:?}"
        );
        assert_eq!(run.sync.get_sync_state().correction_factor, 1.0);
        // Correction off: estimated, not applied.
        let run = simulate(
            Sim {
                ppm: 150.0,
                duration_s: 26.5,
                video: false,
                ..Sim::default()
            },
            SyncConfig::default().with_drift_correction(false),
        );
        assert!(run.sync.estimate_clock_drift().unwrap().exceeds_threshold);
        assert_eq!(run.sync.get_sync_state().correction_factor, 1.0);
    }

    fn offsets_after(run: &Run, after_s: f64) -> Vec<f64> {
        run.video
            .iter()
            .filter(|f| f.arrival_us > T0 + (after_s * 1e6) as u64)
            .map(|f| f.audio_sync_offset_ms.unwrap())
            .collect()
    }

    #[test]
    fn lip_sync_converges_within_40_ms_when_video_lags() {
        // Video arrives 80 ms later than the audio captured with it, with more jitter.
        for seed in 1..=3 {
            let sim = Sim {
                video_delay_ms: 110.0,
                video_jitter_ms: 15.0,
                seed,
                ..Sim::default()
            };
            let run = simulate(sim, SyncConfig::default());
            let offsets = offsets_after(&run, 3.0);
            assert!(offsets.len() > 200);
            assert!(offsets.iter().all(|o| o.abs() <= 40.0), "{offsets:?}");
            let state = run.sync.get_sync_state();
            assert!(state.lip_sync_active);
            assert_eq!(state.in_sync, Some(true));
            // The audio was delayed to wait for the video.
            assert!(state.audio_playout_delay_ms > 20.0, "{state:?}");
            let stats = run.sync.get_buffer_statistics();
            assert_eq!(
                stats.audio.discarded + stats.video.discarded,
                0,
                "{stats:?}"
            );
            // Without lip sync the offsets stay where the network put them.
            let run = simulate(sim, SyncConfig::default().with_lip_sync(false));
            let offsets = offsets_after(&run, 3.0);
            let mean = offsets.iter().sum::<f64>() / offsets.len() as f64;
            assert!(mean < -40.0, "{mean}");
        }
    }

    #[test]
    fn lip_sync_holds_video_that_is_ahead() {
        let sim = Sim {
            audio_delay_ms: 120.0,
            audio_jitter_ms: 10.0,
            video_delay_ms: 10.0,
            video_jitter_ms: 5.0,
            ..Sim::default()
        };
        let run = simulate(sim, SyncConfig::default());
        let offsets = offsets_after(&run, 3.0);
        assert!(offsets.len() > 200);
        // Held until the audio catches up: released at offset ≤ 0, within a pop interval.
        assert!(
            offsets.iter().all(|&o| (-10.0..=0.0).contains(&o)),
            "{offsets:?}"
        );
        let state = run.sync.get_sync_state();
        assert_eq!(state.audio_playout_delay_ms, 0.0);
        assert!(state.video_frames_synced > 200);
        assert_eq!(state.video_frames_in_tolerance, state.video_frames_synced);
        // Without lip sync the video runs ahead.
        let run = simulate(sim, SyncConfig::default().with_lip_sync(false));
        let offsets = offsets_after(&run, 3.0);
        assert!(offsets.iter().sum::<f64>() / offsets.len() as f64 > 40.0);
    }

    #[test]
    fn align_two_peers_on_the_receiver_clock() {
        let a = simulate(
            Sim {
                sender_epoch_us: T0 + 2_000_000,
                seed: 4,
                ..Sim::default()
            },
            SyncConfig::default(),
        );
        let b = simulate(
            Sim {
                sender_epoch_us: T0 - 3_000_000,
                seed: 5,
                ..Sim::default()
            },
            SyncConfig::default(),
        );
        let al = a.sync.align_with_peer(&b.sync).unwrap();
        // b's clock reads 5 s less than a's for the same instant.
        assert!((al.other_to_self_us - 5_000_000).abs() < 2_000, "{al:?}");
        assert!(
            (al.self_to_local_us - (-2_000_000 + 30_000)).abs() < 2_000,
            "{al:?}"
        );
        assert_eq!(al.confidence, 1.0);
        // Frames captured together land together.
        let fa = &a.audio[500];
        let fb = b.audio.iter().find(|f| f.payload == fa.payload).unwrap();
        assert!(
            al.other_to_self(fb.wall_clock_us)
                .abs_diff(fa.wall_clock_us)
                < 2_000
        );
        let back = b.sync.align_with_peer(&a.sync).unwrap();
        assert_eq!(back.other_to_self_us, -al.other_to_self_us);
        // A peer that received nothing cannot be aligned.
        let empty = SyncManager::<u64, u64>::new(SyncConfig::default()).unwrap();
        assert_eq!(
            a.sync.align_with_peer(&empty).unwrap_err().code(),
            "ERR_NOT_STARTED"
        );
    }

    #[test]
    fn timestamp_conversion_and_errors() {
        let mut sync = SyncManager::<(), ()>::new(SyncConfig::default()).unwrap();
        assert_eq!(
            sync.rtp_to_wall_clock(StreamKind::Audio, 0)
                .unwrap_err()
                .code(),
            "ERR_NOT_STARTED"
        );
        assert!(sync.wall_clock_to_rtp(StreamKind::Video, T0).is_err());
        assert_eq!(sync.sync_confidence(StreamKind::Audio), 0.0);
        assert_eq!(
            sync.update_rtcp_sender_report(StreamKind::Audio, SenderReport::new(0, 0, T0))
                .unwrap_err()
                .code(),
            "ERR_INVALID_DATA"
        );
        let sr = SenderReport::new(unix_us_to_ntp(S0), 90_000, T0);
        assert_eq!(
            sync.update_rtcp_sender_report(StreamKind::Video, sr)
                .unwrap(),
            SenderReportOutcome::Applied
        );
        assert_eq!(
            sync.update_rtcp_sender_report(StreamKind::Video, sr)
                .unwrap(),
            SenderReportOutcome::Stale
        );
        assert_eq!(
            sync.rtp_to_wall_clock(StreamKind::Video, 180_000).unwrap(),
            S0 + 1_000_000
        );
        assert_eq!(
            sync.rtp_to_wall_clock(StreamKind::Video, 0).unwrap(),
            S0 - 1_000_000
        );
        assert_eq!(
            sync.wall_clock_to_rtp(StreamKind::Video, S0 + 500_000)
                .unwrap(),
            135_000
        );
        assert_eq!(sync.sync_confidence(StreamKind::Video), 1.0);
        // Correction factor: validated, then scales the mapping.
        for bad in [0.98, 1.02, f64::NAN, f64::INFINITY] {
            assert_eq!(
                sync.apply_clock_drift_correction(bad).unwrap_err().code(),
                "ERR_INVALID_DATA"
            );
        }
        sync.apply_clock_drift_correction(1.0 - 1e-4).unwrap();
        assert_eq!(
            sync.rtp_to_wall_clock(StreamKind::Video, 90_000 + 900_000)
                .unwrap(),
            S0 + 9_999_000
        );
        assert_eq!(sync.get_sync_state().correction_factor, 1.0 - 1e-4);
        // Reset clears it all.
        sync.reset();
        assert!(sync.rtp_to_wall_clock(StreamKind::Video, 0).is_err());
        assert_eq!(sync.get_sync_state().correction_factor, 1.0);
    }

    #[test]
    fn reset_clears_buffers_mappings_and_drift() {
        let mut run = simulate(
            Sim {
                ppm: 150.0,
                duration_s: 26.5,
                ..Sim::default()
            },
            SyncConfig::default(),
        );
        assert!(run.sync.estimate_clock_drift().is_some());
        let last = run.audio.last().unwrap();
        let (seq, ts) = (last.sequence_number, last.rtp_timestamp);
        run.sync.process_audio_frame(RtpFrame::new(
            seq.wrapping_add(100),
            ts.wrapping_add(96_000),
            T0 + 30_000_000,
            1,
        ));
        assert_eq!(run.sync.get_buffer_statistics().audio.buffered, 1);
        run.sync.reset();
        assert!(run.sync.estimate_clock_drift().is_none());
        let state = run.sync.get_sync_state();
        assert!(!state.audio.has_sender_report && !state.video.has_sender_report);
        assert_eq!(state.correction_factor, 1.0);
        assert_eq!(state.audio_sync_offset_ms, None);
        let stats = run.sync.get_buffer_statistics();
        assert_eq!(stats.audio.buffered + stats.video.buffered, 0);
        assert_eq!(stats.audio.received, 0);
        assert!(run.sync.pop_next_audio_frame(u64::MAX).is_none());
        // One stream only.
        run.sync.process_audio_frame(RtpFrame::new(1, 1, T0, 1));
        run.sync.process_video_frame(RtpFrame::new(1, 1, T0, 1));
        run.sync.reset_stream(StreamKind::Video);
        let stats = run.sync.get_buffer_statistics();
        assert_eq!((stats.audio.buffered, stats.video.buffered), (1, 0));
    }

    #[test]
    fn a_seed_starts_the_targets_and_correction_and_survives_resets() {
        let cfg = SyncConfig {
            jitter_min_ms: 20,
            jitter_target_ms: 100,
            ..SyncConfig::default()
        };
        let mut sync = SyncManager::<u64, u64>::new(cfg.clone()).unwrap();
        let fresh = sync.seed_state();
        assert_eq!(fresh.audio_target_ms, Some(100.0));
        assert_eq!(fresh.correction_factor, None);
        let seed = SyncSeed {
            audio_target_ms: Some(32.4),
            video_target_ms: Some(500.0),
            correction_factor: Some(1.0002),
        };
        sync.apply_seed(seed).unwrap();
        let targets = |s: &SyncManager<u64, u64>| {
            let b = s.get_buffer_statistics();
            (b.audio.target_delay_ms, b.video.target_delay_ms)
        };
        // Clamped into this manager's bounds (20..=200).
        assert_eq!(targets(&sync), (32.0, 200.0));
        assert_eq!(sync.get_sync_state().correction_factor, 1.0002);
        sync.reset_stream(StreamKind::Audio);
        sync.reset_stream(StreamKind::Video);
        assert_eq!(targets(&sync), (32.0, 200.0));
        sync.reset();
        assert_eq!(targets(&sync), (32.0, 200.0));
        assert_eq!(sync.get_sync_state().correction_factor, 1.0002);
        assert_eq!(sync.seed_state().correction_factor, Some(1.0002));
        // Out of range: refused, nothing changed.
        for bad in [
            SyncSeed {
                audio_target_ms: Some(f64::NAN),
                ..SyncSeed::default()
            },
            SyncSeed {
                video_target_ms: Some(501.0),
                ..SyncSeed::default()
            },
            SyncSeed {
                correction_factor: Some(0.9),
                ..SyncSeed::default()
            },
        ] {
            assert!(matches!(sync.apply_seed(bad), Err(Error::InvalidData(_))));
        }
        assert_eq!(targets(&sync), (32.0, 200.0));
        // A fixed buffer keeps its target.
        let mut fixed = SyncManager::<u64, u64>::new(cfg.with_adaptive_jitter(false)).unwrap();
        fixed.apply_seed(seed).unwrap();
        assert_eq!(targets(&fixed), (100.0, 100.0));
        assert_eq!(fixed.seed_state().audio_target_ms, None);
    }

    #[test]
    fn statistics_serialize_in_camel_case() {
        let sync = SyncManager::<u64, u64>::new(SyncConfig::default()).unwrap();
        let json = serde_json::to_value(sync.get_buffer_statistics()).unwrap();
        assert_eq!(json["audio"]["targetDelayMs"], 100.0);
        let json = serde_json::to_value(sync.get_sync_state()).unwrap();
        assert_eq!(json["correctionFactor"], 1.0);
        assert_eq!(json["audio"]["clockRate"], 48_000);
    }
}
