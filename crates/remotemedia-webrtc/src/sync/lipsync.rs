//! Lip sync between one peer's audio and video, and alignment of two peers on one timeline.
//!
//! Audio is the master. Its playout position is the sender wall clock of the last released audio
//! frame, advanced by the receiver time since its release. A video frame's offset is its own wall
//! clock minus that position (`audio_sync_offset_ms`: negative = the video is behind the audio).
//! Once both streams are mapped by sender reports:
//!
//! - a video frame that is ahead (offset > 0) is held until the audio catches up (at most until
//!   the hard cap), and one that is due or behind is released at once, before its own jitter
//!   deadline and giving up a gap before it if need be, since waiting would only put it further
//!   behind;
//! - if video arrives too late for that (its path, encoder or jitter buffer is slower), audio is
//!   delayed: the controller keeps the lowest "slack" of the video frames over a sliding window
//!   (how far ahead of the audio position each one arrived) at a small positive margin by adding
//!   playout delay to the audio, at once when more is needed and slowly when less is.
//!
//! So the released offsets stay in (−pop interval, 0] once the controller has converged, well
//! within the ±40 ms tolerance (broadcast practice tolerates about −125/+45 ms).
//!
//! Time is passed in (µs); nothing here reads a clock.

use super::clock::WindowedMin;

/// After this long without a released audio frame the audio position is unknown (audio stopped)
/// and video runs on its own jitter schedule.
pub const AUDIO_STALE_US: u64 = 2_000_000;
/// Window of the video-slack minimum (one to two of these).
const SLACK_WINDOW_US: u64 = 2_000_000;
/// Offsets beyond this mean the audio and video mappings are not on one clock.
const MAX_PLAUSIBLE_OFFSET_US: i64 = 10_000_000;
/// Per video frame, an audio delay above the needed one moves down by 1/this of the difference.
const AUDIO_DELAY_DECAY: i64 = 50;

/// Whether to let the head video frame go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoDecision {
    /// It is ahead of the audio: keep it.
    Hold,
    /// It is due (or behind, or has waited as long as the cap allows): release it.
    Release,
}

/// The audio/video controller of one peer.
#[derive(Debug, Clone)]
pub struct LipSync {
    tolerance_us: i64,
    margin_us: i64,
    max_audio_delay_us: i64,
    audio_delay_us: i64,
    /// Wall clock of the last released audio frame and when it was released (shifted by the
    /// audio delay changes since, so the position stays continuous).
    audio: Option<(i64, i64)>,
    slack: WindowedMin,
    last_offset_us: Option<i64>,
    released: u64,
    released_in_tolerance: u64,
}

impl LipSync {
    /// `tolerance_ms`: the ±window the offset must stay in; `max_audio_delay_ms`: the most
    /// playout delay the controller may add to the audio.
    pub fn new(tolerance_ms: u32, max_audio_delay_ms: u32) -> Self {
        let tolerance_us = tolerance_ms as i64 * 1000;
        Self {
            tolerance_us,
            margin_us: (tolerance_us / 4).min(10_000),
            max_audio_delay_us: max_audio_delay_ms as i64 * 1000,
            audio_delay_us: 0,
            audio: None,
            slack: WindowedMin::new(SLACK_WINDOW_US),
            last_offset_us: None,
            released: 0,
            released_in_tolerance: 0,
        }
    }

    pub fn reset(&mut self) {
        *self = Self {
            tolerance_us: self.tolerance_us,
            margin_us: self.margin_us,
            max_audio_delay_us: self.max_audio_delay_us,
            ..Self::new(0, 0)
        };
    }

    /// A stream's wall-clock mapping changed (first sender report, or a discontinuity): the
    /// audio position and the slack history no longer compare with what comes next. The audio
    /// delay is kept.
    pub fn on_mapping_changed(&mut self) {
        self.audio = None;
        self.slack.clear();
        self.last_offset_us = None;
    }

    /// Playout delay added to the audio, µs.
    pub fn audio_delay_us(&self) -> u64 {
        self.audio_delay_us as u64
    }

    pub fn tolerance_us(&self) -> u64 {
        self.tolerance_us as u64
    }

    /// An audio frame with wall clock `wall_us` was released at `now_us`.
    pub fn on_audio_released(&mut self, wall_us: u64, now_us: u64) {
        self.audio = Some((wall_us as i64, now_us as i64));
    }

    /// Sender wall clock of the audio playing at `now_us`, if audio is flowing.
    pub fn audio_position(&self, now_us: u64) -> Option<i64> {
        let (wall, released) = self.audio?;
        let since = now_us as i64 - released;
        (since <= AUDIO_STALE_US as i64).then_some(wall + since.max(0))
    }

    /// Offset of a video frame with wall clock `video_wall_us` against the audio at `now_us`, µs
    /// (negative = video behind).
    pub fn offset_us(&self, video_wall_us: u64, now_us: u64) -> Option<i64> {
        self.audio_position(now_us)
            .map(|pos| video_wall_us as i64 - pos)
    }

    /// A video frame arrived (both streams mapped by reports): learn how much audio delay keeps
    /// video frames arriving before they are due.
    pub fn on_video_arrival(&mut self, video_wall_us: u64, arrival_us: u64) {
        let Some((wall, released)) = self.audio else {
            return;
        };
        if arrival_us as i64 - released > AUDIO_STALE_US as i64 {
            return;
        }
        let pos = wall + (arrival_us as i64 - released);
        let slack = video_wall_us as i64 - pos;
        if slack.abs() > MAX_PLAUSIBLE_OFFSET_US {
            // The two mappings do not describe one clock (yet): nothing to learn.
            return;
        }
        // Slack grows one for one with the audio delay; store it without, so the window's
        // samples stay comparable when the delay changes.
        self.slack.push(slack - self.audio_delay_us, arrival_us);
        let Some(lowest) = self.slack.min() else {
            return;
        };
        let needed = (self.margin_us - lowest).clamp(0, self.max_audio_delay_us);
        let step = (needed - self.audio_delay_us) / AUDIO_DELAY_DECAY;
        let new_delay = if needed > self.audio_delay_us || step == 0 {
            needed
        } else {
            self.audio_delay_us + step
        };
        self.set_audio_delay(new_delay);
    }

    fn set_audio_delay(&mut self, delay_us: i64) {
        let change = delay_us - self.audio_delay_us;
        self.audio_delay_us = delay_us;
        // The audio pauses (or skips ahead) by the change: so does its position.
        if let Some((_, released)) = &mut self.audio {
            *released += change;
        }
    }

    /// Whether to release a video frame with wall clock `video_wall_us` that has waited
    /// `waited_us` in its buffer, at `now_us`; `max_wait_us` is how long it may be held at most.
    /// `None` when the audio position is unknown (then the jitter schedule decides).
    pub fn decide(
        &self,
        video_wall_us: u64,
        now_us: u64,
        waited_us: u64,
        max_wait_us: u64,
    ) -> Option<VideoDecision> {
        let offset = self.offset_us(video_wall_us, now_us)?;
        if offset.abs() > MAX_PLAUSIBLE_OFFSET_US {
            // Not one clock: no opinion.
            return None;
        }
        Some(if offset > 0 && waited_us < max_wait_us {
            VideoDecision::Hold
        } else {
            VideoDecision::Release
        })
    }

    /// A video frame was released with this offset (µs); `active`: lip sync was steering it
    /// (only those count towards [`Self::released_counts`]).
    pub fn on_video_released(&mut self, offset_us: Option<i64>, active: bool) {
        self.last_offset_us = offset_us;
        if let (Some(o), true) = (offset_us, active) {
            self.released += 1;
            if o.abs() <= self.tolerance_us {
                self.released_in_tolerance += 1;
            }
        }
    }

    /// Offset of the last released video frame, µs.
    pub fn last_offset_us(&self) -> Option<i64> {
        self.last_offset_us
    }

    /// Video frames released under lip sync, and how many of them were within tolerance.
    pub fn released_counts(&self) -> (u64, u64) {
        (self.released, self.released_in_tolerance)
    }
}

/// Two peers on one timeline: the receiver's clock.
///
/// Each peer's sender wall clock maps to receiver time by its lowest observed transit (receive
/// time − sender wall clock of the media: network delay plus the clock offset between the two
/// hosts). Frames of the two peers that map to the same receiver instant are the ones that would
/// have arrived together over the fastest path, which is as close to "captured together" as a
/// receiver can tell without knowing the one-way delays.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerAlignment {
    /// `self wall clock = other wall clock + other_to_self_us`.
    pub other_to_self_us: i64,
    /// `receiver time = self wall clock + self_to_local_us`.
    pub self_to_local_us: i64,
    /// `receiver time = other wall clock + other_to_local_us`.
    pub other_to_local_us: i64,
    /// The lower of the two peers' mapping confidences.
    pub confidence: f64,
}

impl PeerAlignment {
    pub fn new(self_to_local_us: i64, other_to_local_us: i64, confidence: f64) -> Self {
        Self {
            other_to_self_us: other_to_local_us - self_to_local_us,
            self_to_local_us,
            other_to_local_us,
            confidence,
        }
    }

    /// The other peer's wall clock µs, expressed on this peer's wall clock.
    pub fn other_to_self(&self, other_wall_us: u64) -> u64 {
        (other_wall_us as i64 + self.other_to_self_us).max(0) as u64
    }

    /// This peer's wall clock µs, on the receiver's clock.
    pub fn self_to_local(&self, self_wall_us: u64) -> u64 {
        (self_wall_us as i64 + self.self_to_local_us).max(0) as u64
    }

    /// The other peer's wall clock µs, on the receiver's clock.
    pub fn other_to_local(&self, other_wall_us: u64) -> u64 {
        (other_wall_us as i64 + self.other_to_local_us).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ahead_is_held_behind_is_released() {
        let mut l = LipSync::new(40, 280);
        assert_eq!(l.decide(1_000_000, 0, 0, 480_000), None);
        l.on_audio_released(1_000_000, 5_000_000);
        // 10 ms later the audio plays wall 1.010 s.
        assert_eq!(l.offset_us(1_030_000, 5_010_000), Some(20_000));
        assert_eq!(
            l.decide(1_030_000, 5_010_000, 0, 480_000),
            Some(VideoDecision::Hold)
        );
        // Held as long as the cap allows, then released anyway.
        assert_eq!(
            l.decide(1_030_000, 5_010_000, 480_000, 480_000),
            Some(VideoDecision::Release)
        );
        assert_eq!(
            l.decide(1_010_000, 5_010_000, 0, 480_000),
            Some(VideoDecision::Release)
        );
        assert_eq!(
            l.decide(900_000, 5_010_000, 0, 480_000),
            Some(VideoDecision::Release)
        );
        // Audio stopped, or the two mappings are not one clock: no opinion.
        assert_eq!(l.decide(1_030_000, 7_000_001, 0, 480_000), None);
        assert_eq!(l.decide(60_000_000, 5_010_000, 0, 480_000), None);
    }

    #[test]
    fn late_video_delays_the_audio_and_the_delay_comes_back_down() {
        let mut l = LipSync::new(40, 280);
        l.on_audio_released(1_000_000, 5_000_000);
        // Video arrives 80 ms after the audio position passed it.
        l.on_video_arrival(1_000_000, 5_080_000);
        assert_eq!(l.audio_delay_us(), 90_000);
        // The audio pauses for the delay: its position stays until 5.090 s, then moves on.
        assert_eq!(l.audio_position(5_080_000), Some(1_000_000));
        assert_eq!(l.audio_position(5_100_000), Some(1_010_000));
        // Video arriving early from now on: the delay decays, slowly.
        let mut t = 5_100_000u64;
        let mut last = l.audio_delay_us();
        for _ in 0..600 {
            t += 33_333;
            l.on_audio_released(t - 5_000_000 + 1_000_000 - l.audio_delay_us(), t);
            l.on_video_arrival(t - 5_000_000 + 1_000_000 + 200_000, t);
            assert!(l.audio_delay_us() <= last);
            last = l.audio_delay_us();
        }
        assert_eq!(l.audio_delay_us(), 0);
    }

    #[test]
    fn released_offsets_are_counted() {
        let mut l = LipSync::new(40, 280);
        l.on_video_released(Some(-10_000), true);
        l.on_video_released(Some(-50_000), true);
        l.on_video_released(Some(-50_000), false);
        l.on_video_released(None, true);
        assert_eq!(l.released_counts(), (2, 1));
        assert_eq!(l.last_offset_us(), None);
        l.reset();
        assert_eq!(l.released_counts(), (0, 0));
        assert_eq!(l.tolerance_us(), 40_000);
    }

    #[test]
    fn peer_alignment_maps_both_ways() {
        let a = PeerAlignment::new(-2_000_000, 3_000_000, 1.0);
        assert_eq!(a.other_to_self_us, 5_000_000);
        assert_eq!(a.other_to_self(10_000_000), 15_000_000);
        assert_eq!(a.self_to_local(15_000_000), 13_000_000);
        assert_eq!(a.other_to_local(10_000_000), 13_000_000);
    }
}
