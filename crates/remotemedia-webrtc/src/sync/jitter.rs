//! A jitter (playout) buffer for one RTP stream, generic over the payload.
//!
//! Frames are kept in a `BTreeMap` keyed by their extended (wrap-free, 64-bit) sequence number,
//! so an insert is O(log n) and the next frame to release is the first key. Each frame is due at
//! `min(media_time + lowest_transit, arrival) + target`: the frame that came fastest waits the
//! whole target delay, one that came later waits that much less, so the output is paced by the
//! RTP timestamps and the network jitter is absorbed. Frames leave in strict sequence order: the
//! first frame is released once it is due; if frames before it are missing, they are given up at
//! that moment (counted as lost, reported in the released frame's `lost_before`).
//!
//! Also: duplicates are dropped, frames older than the last released one are late and dropped,
//! the buffered span is capped (oldest discarded), and in adaptive mode the target follows the
//! RFC 3550 §6.4.1 interarrival jitter within its bounds. When transit rises for good (a sender
//! stall with contiguous timestamps, a slow sender clock), every frame would pass through with no
//! delay until the lowest-transit window rolled over; after [`SLOW_RUN_US`] of that the pacing
//! floor is rebuilt from the slow frames, so the target delay is back within a quarter second.
//!
//! Time is passed in (µs); nothing here reads a clock.

use std::collections::BTreeMap;

use super::clock::{mul_div_round, SequenceUnwrapper, TimestampUnwrapper, WindowedMin};

/// One received frame (or packet) as the receive path hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpFrame<T> {
    /// RTP sequence number of the frame's first packet.
    pub sequence_number: u16,
    /// RTP sequence number of its last packet (= `sequence_number` for one-packet frames); the
    /// next frame is expected at `last_sequence_number + 1`.
    pub last_sequence_number: u16,
    pub rtp_timestamp: u32,
    /// Local receive time, µs (receiver's clock, Unix epoch; see `sync::LocalClock`).
    pub arrival_us: u64,
    pub payload: T,
}

impl<T> RtpFrame<T> {
    /// A one-packet frame.
    pub fn new(sequence_number: u16, rtp_timestamp: u32, arrival_us: u64, payload: T) -> Self {
        Self {
            sequence_number,
            last_sequence_number: sequence_number,
            rtp_timestamp,
            arrival_us,
            payload,
        }
    }

    /// A frame made of the packets `sequence_number..=last`.
    pub fn with_last_sequence_number(mut self, last: u16) -> Self {
        self.last_sequence_number = last;
        self
    }
}

/// What became of an inserted frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Buffered, in order of arrival.
    Buffered,
    /// Buffered, but it arrived after a frame that follows it.
    Reordered,
    /// Dropped: already buffered or already released.
    Duplicate,
    /// Dropped: older than the last released frame (or a gap given up on).
    Late,
    /// Buffered, but the hard cap discarded it at once (it was the oldest).
    Discarded,
    /// The sequence restarted far behind (two consecutive frames more than
    /// [`MAX_MISORDER`] behind the last released): the buffer was flushed (counted as
    /// discarded) and the frame buffered as the start of a new sequence.
    Resynchronized,
}

/// A frame leaving the buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct JitterOutput<T> {
    pub payload: T,
    pub sequence_number: u16,
    pub rtp_timestamp: u32,
    pub extended_sequence: i64,
    pub extended_timestamp: i64,
    pub arrival_us: u64,
    /// When it was released (the `now` passed to `pop`).
    pub released_us: u64,
    /// `released_us − arrival_us`.
    pub buffer_delay_us: u64,
    /// Sequence numbers given up right before this frame (0 = none): conceal that much.
    pub lost_before: u64,
}

/// The first buffered frame, for a caller that decides itself when to release it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    pub sequence_number: u16,
    pub rtp_timestamp: u32,
    pub extended_sequence: i64,
    pub extended_timestamp: i64,
    pub arrival_us: u64,
    /// When it is due by the jitter schedule.
    pub due_us: u64,
    /// Frames missing before it (given up if it is released now).
    pub gap_before: u64,
}

/// Buffer settings, in ms. [`JitterBuffer::new`] puts them in a consistent order
/// (`min ≤ target ≤ max ≤ hard max`); `SyncConfig::validate` is where bad values are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream, Hz.
    pub clock_rate: u32,
    /// Initial (and, not adaptive, fixed) target delay.
    pub target_ms: u32,
    /// Bounds of the adaptive target.
    pub min_target_ms: u32,
    pub max_target_ms: u32,
    /// Hard cap: the buffered media span and the oldest frame's wait never exceed it.
    pub hard_max_ms: u32,
    /// Whether the target follows the measured interarrival jitter.
    pub adaptive: bool,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            clock_rate: 48_000,
            target_ms: 100,
            min_target_ms: 50,
            max_target_ms: 200,
            hard_max_ms: 500,
            adaptive: true,
        }
    }
}

/// Counters and gauges of one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JitterStatistics {
    /// Frames in the buffer now.
    pub buffered: usize,
    /// Media time the buffered frames span, ms.
    pub buffered_ms: f64,
    /// Frames handed to `insert`.
    pub received: u64,
    /// Frames released.
    pub released: u64,
    /// Frames dropped for arriving after their turn.
    pub late: u64,
    /// Sequence numbers given up (never arrived in time).
    pub lost: u64,
    /// Frames that arrived after a frame that follows them (and were still in time).
    pub reordered: u64,
    /// Frames dropped by the hard cap (or a resynchronisation).
    pub discarded: u64,
    /// Frames dropped as duplicates.
    pub duplicates: u64,
    /// Buffer delay of the last released frame, ms.
    pub current_delay_ms: f64,
    /// Target delay now, ms.
    pub target_delay_ms: f64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
}

/// A frame more than this many sequence numbers behind the last released one starts a
/// resynchronisation check (RFC 3550 A.1's MAX_MISORDER).
pub const MAX_MISORDER: i64 = 100;
/// The adaptive target is this many times the interarrival jitter (then bounded).
pub const JITTER_MULTIPLIER: f64 = 4.0;
/// Per frame, a target above the desired one moves down by 1/this of the difference (a rise is
/// taken at once).
const TARGET_DECAY: f64 = 128.0;
/// Window of the lowest-transit tracker (it keeps one to two of these).
const TRANSIT_WINDOW_US: u64 = 2_000_000;
/// A transit this much above the lowest one means the timestamps jumped back: start over.
const TRANSIT_DISCONTINUITY_US: i64 = 2_000_000;
/// Frames whose transit exceeds the lowest one by more than the target leave unbuffered. When
/// every buffered frame does so for this long (and [`SLOW_RUN_FRAMES`] of them), the path or the
/// sender got slower for good (a sender that stalled and went on with contiguous timestamps, a
/// sender clock running slow on a loaded machine): the pacing floor is rebuilt from that run, so
/// the buffer gets its delay back instead of passing frames through for the rest of the window.
const SLOW_RUN_US: u64 = 250_000;
/// The fewest frames in such a run (a single late keyframe is jitter, not a new floor).
const SLOW_RUN_FRAMES: u32 = 5;
/// Interarrival differences beyond this are a discontinuity, not jitter.
const JITTER_OUTLIER_US: i64 = 1_000_000;
/// Released sequence numbers remembered (to tell a duplicate from a late frame).
const RELEASED_HISTORY: i64 = 128;

#[derive(Debug, Clone)]
struct Entry<T> {
    last_seq: i64,
    ext_ts: i64,
    sequence_number: u16,
    rtp_timestamp: u32,
    arrival_us: u64,
    payload: T,
}

/// The jitter buffer. See the module documentation.
#[derive(Debug, Clone)]
pub struct JitterBuffer<T> {
    cfg: JitterConfig,
    frames: BTreeMap<i64, Entry<T>>,
    seq: SequenceUnwrapper,
    ts: TimestampUnwrapper,
    base_ts: Option<i64>,
    /// Next sequence number expected out (everything before it was released or given up).
    next_seq: Option<i64>,
    /// Bit i set: sequence `next_seq − 1 − i` was released (not given up or discarded).
    released_mask: u128,
    highest_seq: Option<i64>,
    transit: WindowedMin,
    /// The current run of frames that came too slow to be buffered at all: (first arrival,
    /// lowest transit in it, frames).
    slow_run: Option<(u64, i64, u32)>,
    last_transit: Option<i64>,
    jitter_us: f64,
    target_us: f64,
    resync_candidate: Option<i64>,
    last_delay_us: u64,
    stats: JitterStatistics,
}

impl<T> JitterBuffer<T> {
    pub fn new(config: JitterConfig) -> Self {
        let mut cfg = config;
        cfg.clock_rate = cfg.clock_rate.max(1);
        cfg.hard_max_ms = cfg.hard_max_ms.max(1);
        cfg.max_target_ms = cfg.max_target_ms.min(cfg.hard_max_ms);
        cfg.min_target_ms = cfg.min_target_ms.min(cfg.max_target_ms);
        cfg.target_ms = cfg.target_ms.clamp(cfg.min_target_ms, cfg.max_target_ms);
        Self {
            cfg,
            frames: BTreeMap::new(),
            seq: SequenceUnwrapper::new(),
            ts: TimestampUnwrapper::new(),
            base_ts: None,
            next_seq: None,
            released_mask: 0,
            highest_seq: None,
            transit: WindowedMin::new(TRANSIT_WINDOW_US),
            slow_run: None,
            last_transit: None,
            jitter_us: 0.0,
            target_us: cfg.target_ms as f64 * 1000.0,
            resync_candidate: None,
            last_delay_us: 0,
            stats: JitterStatistics::default(),
        }
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Target delay now, µs.
    pub fn target_delay_us(&self) -> u64 {
        self.target_us as u64
    }

    /// Starts an adaptive buffer at `ms` (clamped to its bounds) instead of its configured
    /// target, now and after every reset: a target learned on an earlier connection to the same
    /// peer. A fixed (not adaptive) buffer keeps its target.
    pub fn seed_target_ms(&mut self, ms: f64) {
        if !self.cfg.adaptive || !ms.is_finite() {
            return;
        }
        let ms = (ms.round().max(0.0) as u32).clamp(self.cfg.min_target_ms, self.cfg.max_target_ms);
        self.cfg.target_ms = ms;
        self.target_us = ms as f64 * 1000.0;
    }

    /// RFC 3550 interarrival jitter, µs.
    pub fn jitter_us(&self) -> f64 {
        self.jitter_us
    }

    /// Empties the buffer and forgets the sequence, timing and jitter state (counters too).
    pub fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    /// Media time of an extended timestamp relative to the first one, µs.
    fn media_us(&self, ext_ts: i64) -> i64 {
        let rel = ext_ts - self.base_ts.unwrap_or(ext_ts);
        mul_div_round(rel as i128, 1_000_000, self.cfg.clock_rate as i128) as i64
    }

    fn due_us(&self, e: &Entry<T>) -> u64 {
        let arrival = e.arrival_us as i64;
        let paced = match self.transit.min() {
            Some(m) => (self.media_us(e.ext_ts) + m).min(arrival),
            None => arrival,
        };
        (paced + self.target_us as i64).max(0) as u64
    }

    fn ticks_to_us(&self, ticks: i64) -> u64 {
        mul_div_round(
            ticks.unsigned_abs() as i128,
            1_000_000,
            self.cfg.clock_rate as i128,
        ) as u64
    }

    /// Media time between the first and the last buffered frame, µs.
    fn span_us(&self) -> u64 {
        match (self.frames.first_key_value(), self.frames.last_key_value()) {
            (Some((_, a)), Some((_, b))) => self.ticks_to_us(b.ext_ts - a.ext_ts),
            _ => 0,
        }
    }

    /// Inserts a frame. O(log n) (plus the frames the hard cap discards, if any).
    pub fn insert(&mut self, frame: RtpFrame<T>) -> InsertOutcome {
        let arrival = frame.arrival_us;
        let (outcome, key) = self.insert_frame(frame);
        // Time passed even if the frame was dropped: the cap holds at every arrival.
        if self.enforce_cap(arrival, key) {
            InsertOutcome::Discarded
        } else {
            outcome
        }
    }

    /// The insert proper; returns the outcome and the key the frame went in under, if any.
    fn insert_frame(&mut self, frame: RtpFrame<T>) -> (InsertOutcome, Option<i64>) {
        self.stats.received += 1;
        let first = self.seq.unwrap(frame.sequence_number);
        // Frames of more than half the sequence space make no sense: take them as one packet.
        let extra = frame
            .last_sequence_number
            .wrapping_sub(frame.sequence_number)
            .min(0x7FFF) as i64;
        let last_seq = first + extra;
        let ext_ts = self.ts.unwrap(frame.rtp_timestamp);
        let arrival = frame.arrival_us;

        let mut outcome = InsertOutcome::Buffered;
        if let Some(next) = self.next_seq {
            if first < next {
                let back = next - 1 - first;
                if back < RELEASED_HISTORY && self.released_mask & (1u128 << back) != 0 {
                    self.stats.duplicates += 1;
                    return (InsertOutcome::Duplicate, None);
                }
                if next - first > MAX_MISORDER && self.resync_candidate == Some(first - 1) {
                    self.resynchronize();
                    outcome = InsertOutcome::Resynchronized;
                } else {
                    self.resync_candidate = (next - first > MAX_MISORDER).then_some(first);
                    self.stats.late += 1;
                    self.observe_timing(ext_ts, arrival, false);
                    return (InsertOutcome::Late, None);
                }
            }
        }
        self.resync_candidate = None;
        if self.frames.contains_key(&first) {
            self.stats.duplicates += 1;
            return (InsertOutcome::Duplicate, None);
        }

        self.observe_timing(ext_ts, arrival, true);
        if self.highest_seq.is_some_and(|h| first < h) {
            self.stats.reordered += 1;
            if outcome == InsertOutcome::Buffered {
                outcome = InsertOutcome::Reordered;
            }
        }
        self.highest_seq = Some(self.highest_seq.map_or(first, |h| h.max(first)));
        self.frames.insert(
            first,
            Entry {
                last_seq,
                ext_ts,
                sequence_number: frame.sequence_number,
                rtp_timestamp: frame.rtp_timestamp,
                arrival_us: arrival,
                payload: frame.payload,
            },
        );
        (outcome, Some(first))
    }

    /// Transit (for pacing), RFC 3550 jitter, adaptive target.
    /// `buffered`: the frame goes into the buffer (a late frame still counts towards the jitter
    /// and the target, since its lateness is jitter, but not towards the pacing).
    fn observe_timing(&mut self, ext_ts: i64, arrival_us: u64, buffered: bool) {
        if self.base_ts.is_none() {
            self.base_ts = Some(ext_ts);
        }
        let transit = arrival_us as i64 - self.media_us(ext_ts);
        if let Some(prev) = self.last_transit {
            // RFC 3550 §6.4.1: J += (|D| − J) / 16, D the change of transit between arrivals.
            let d = (transit - prev).abs();
            if d < JITTER_OUTLIER_US {
                self.jitter_us += (d as f64 - self.jitter_us) / 16.0;
            }
        }
        self.last_transit = Some(transit);
        if buffered {
            match self.transit.min() {
                Some(m) if transit > m + TRANSIT_DISCONTINUITY_US => {
                    self.slow_run = None;
                    self.transit.restart(transit, arrival_us)
                }
                Some(m) if transit > m + self.target_us as i64 => {
                    let run = self.slow_run.get_or_insert((arrival_us, transit, 0));
                    run.1 = run.1.min(transit);
                    run.2 += 1;
                    let (since, lowest, frames) = *run;
                    if arrival_us.saturating_sub(since) >= SLOW_RUN_US && frames >= SLOW_RUN_FRAMES
                    {
                        self.slow_run = None;
                        self.transit.restart(lowest, arrival_us);
                    } else {
                        self.transit.push(transit, arrival_us);
                    }
                }
                _ => {
                    self.slow_run = None;
                    self.transit.push(transit, arrival_us)
                }
            }
        }
        if self.cfg.adaptive {
            let min = self.cfg.min_target_ms as f64 * 1000.0;
            let max = self.cfg.max_target_ms as f64 * 1000.0;
            let desired = (JITTER_MULTIPLIER * self.jitter_us).clamp(min, max);
            if desired > self.target_us {
                self.target_us = desired;
            } else {
                self.target_us += (desired - self.target_us) / TARGET_DECAY;
            }
        }
    }

    /// Discards the oldest frames while the buffered span or the oldest frame's wait exceeds the
    /// hard cap. True if `inserted` was among them.
    fn enforce_cap(&mut self, now_us: u64, inserted: Option<i64>) -> bool {
        let hard = self.cfg.hard_max_ms as u64 * 1000;
        let mut hit = false;
        while let Some((_, head)) = self.frames.first_key_value() {
            if self.span_us() <= hard && now_us.saturating_sub(head.arrival_us) <= hard {
                break;
            }
            let (key, _, _) = self.remove_head(false);
            self.stats.discarded += 1;
            hit |= Some(key) == inserted;
        }
        hit
    }

    /// Removes the first frame, gives up the gap before it and advances `next_seq`. Returns its
    /// key and entry, and the gap.
    fn remove_head(&mut self, released: bool) -> (i64, Entry<T>, u64) {
        let (key, entry) = self
            .frames
            .pop_first()
            .expect("remove_head on an empty buffer");
        let gap = match self.next_seq {
            Some(next) if key > next => (key - next) as u64,
            _ => 0,
        };
        self.stats.lost += gap;
        let new_next = entry.last_seq + 1;
        let advance = self.next_seq.map_or(RELEASED_HISTORY, |n| new_next - n);
        self.released_mask = if advance >= RELEASED_HISTORY {
            0
        } else {
            self.released_mask << advance
        };
        if released {
            let pos = new_next - 1 - key;
            if pos < RELEASED_HISTORY {
                self.released_mask |= 1u128 << pos;
            }
        }
        self.next_seq = Some(new_next);
        (key, entry, gap)
    }

    fn resynchronize(&mut self) {
        self.stats.discarded += self.frames.len() as u64;
        self.frames.clear();
        self.next_seq = None;
        self.released_mask = 0;
        self.highest_seq = None;
        self.base_ts = None;
        self.transit.clear();
        self.slow_run = None;
        self.last_transit = None;
        self.resync_candidate = None;
    }

    /// The first buffered frame and when it is due.
    pub fn head(&self) -> Option<HeadInfo> {
        let (&key, e) = self.frames.first_key_value()?;
        Some(HeadInfo {
            sequence_number: e.sequence_number,
            rtp_timestamp: e.rtp_timestamp,
            extended_sequence: key,
            extended_timestamp: e.ext_ts,
            arrival_us: e.arrival_us,
            due_us: self.due_us(e),
            gap_before: match self.next_seq {
                Some(next) if key > next => (key - next) as u64,
                _ => 0,
            },
        })
    }

    /// Releases the first frame if it is due at `now_us`. Call until `None`.
    pub fn pop(&mut self, now_us: u64) -> Option<JitterOutput<T>> {
        let (_, e) = self.frames.first_key_value()?;
        if now_us < self.due_us(e) {
            return None;
        }
        self.pop_head(now_us)
    }

    /// Releases the first frame now, due or not (giving up any gap before it).
    pub fn pop_head(&mut self, now_us: u64) -> Option<JitterOutput<T>> {
        if self.frames.is_empty() {
            return None;
        }
        let (key, e, gap) = self.remove_head(true);
        let delay = now_us.saturating_sub(e.arrival_us);
        self.last_delay_us = delay;
        self.stats.released += 1;
        Some(JitterOutput {
            payload: e.payload,
            sequence_number: e.sequence_number,
            rtp_timestamp: e.rtp_timestamp,
            extended_sequence: key,
            extended_timestamp: e.ext_ts,
            arrival_us: e.arrival_us,
            released_us: now_us,
            buffer_delay_us: delay,
            lost_before: gap,
        })
    }

    /// Counters and gauges now.
    pub fn statistics(&self) -> JitterStatistics {
        JitterStatistics {
            buffered: self.frames.len(),
            buffered_ms: self.span_us() as f64 / 1000.0,
            current_delay_ms: self.last_delay_us as f64 / 1000.0,
            target_delay_ms: self.target_us / 1000.0,
            jitter_ms: self.jitter_us / 1000.0,
            ..self.stats
        }
    }

    /// Buffered media span, µs (what the hard cap bounds).
    pub fn buffered_span_us(&self) -> u64 {
        self.span_us()
    }

    /// Arrival of the oldest buffered frame.
    pub fn oldest_arrival_us(&self) -> Option<u64> {
        self.frames.first_key_value().map(|(_, e)| e.arrival_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::testutil::Rng;

    const T0: u64 = 1_700_000_000_000_000;

    fn fixed(target_ms: u32) -> JitterConfig {
        JitterConfig {
            clock_rate: 48_000,
            target_ms,
            min_target_ms: 50,
            max_target_ms: 200,
            hard_max_ms: 500,
            adaptive: false,
        }
    }

    /// Audio frame `n`: 20 ms (960 ticks) apart, sent at T0 + n·20 ms.
    fn frame(seq0: u16, ts0: u32, n: u64, arrival_us: u64) -> RtpFrame<u64> {
        RtpFrame::new(
            seq0.wrapping_add(n as u16),
            ts0.wrapping_add((n * 960) as u32),
            arrival_us,
            n,
        )
    }

    /// Inserts `(n, arrival)` in arrival order on a 1 ms grid, popping every ms (after that ms's
    /// arrivals) until the buffer is empty. Returns the released frames in order.
    fn run(
        buf: &mut JitterBuffer<u64>,
        seq0: u16,
        ts0: u32,
        mut arrivals: Vec<(u64, u64)>,
    ) -> Vec<JitterOutput<u64>> {
        arrivals.sort_by_key(|&(n, a)| (a, n));
        let mut out = Vec::new();
        let mut next = 0;
        let mut now = arrivals[0].1;
        while next < arrivals.len() || !buf.is_empty() {
            while next < arrivals.len() && arrivals[next].1 <= now {
                let (n, a) = arrivals[next];
                buf.insert(frame(seq0, ts0, n, a));
                next += 1;
            }
            while let Some(o) = buf.pop(now) {
                out.push(o);
            }
            now += 1000;
        }
        out
    }

    #[test]
    fn reorder_within_the_window_restores_order() {
        let mut buf = JitterBuffer::new(fixed(100));
        // 50 frames; every pair (2k, 2k+1) arrives swapped, and some frames 60 ms late.
        let arrivals = (0..50u64)
            .map(|n| {
                let slot = if n % 2 == 0 { n + 1 } else { n - 1 };
                let extra = if n % 7 == 3 { 60_000 } else { 0 };
                (n, T0 + slot * 20_000 + 5_000 + extra)
            })
            .collect();
        let out = run(&mut buf, 1000, 5000, arrivals);
        let order: Vec<u64> = out.iter().map(|o| o.payload).collect();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
        assert!(out.iter().all(|o| o.lost_before == 0));
        let s = buf.statistics();
        assert_eq!((s.lost, s.late, s.duplicates, s.discarded), (0, 0, 0, 0));
        assert!(s.reordered >= 25, "{s:?}");
        assert_eq!(s.released, 50);
        // Paced by the timestamps: releases 20 ms apart (to the pop granularity).
        for w in out.windows(2) {
            let d = w[1].released_us as i64 - w[0].released_us as i64;
            assert!((19_000..=21_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn the_fastest_frame_waits_the_target_and_later_ones_less() {
        let mut buf = JitterBuffer::new(fixed(100));
        buf.insert(frame(0, 0, 0, T0 + 10_000));
        buf.insert(frame(0, 0, 1, T0 + 20_000 + 40_000)); // 40 ms slower
        assert_eq!(buf.head().unwrap().due_us, T0 + 110_000);
        assert!(buf.pop(T0 + 109_999).is_none());
        let a = buf.pop(T0 + 110_000).unwrap();
        assert_eq!((a.payload, a.buffer_delay_us), (0, 100_000));
        // Due at its media time + lowest transit + target = 20 + 10 + 100 ms.
        assert_eq!(buf.head().unwrap().due_us, T0 + 130_000);
        let b = buf.pop(T0 + 130_000).unwrap();
        assert_eq!((b.payload, b.buffer_delay_us), (1, 70_000));
    }

    #[test]
    fn loss_is_counted_and_given_up_after_the_delay() {
        let mut buf = JitterBuffer::new(fixed(100));
        for n in (0..10u64).filter(|&n| n != 5) {
            buf.insert(frame(7, 0, n, T0 + n * 20_000));
        }
        let mut out = Vec::new();
        let mut now = T0;
        while now <= T0 + 400_000 {
            while let Some(o) = buf.pop(now) {
                out.push(o);
            }
            now += 1000;
        }
        let order: Vec<u64> = out.iter().map(|o| o.payload).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
        let six = &out[5];
        // Frame 6 waited its full delay for 5, then 5 was given up.
        assert_eq!(six.released_us, T0 + 6 * 20_000 + 100_000);
        assert_eq!(six.lost_before, 1);
        assert_eq!(buf.statistics().lost, 1);
        // Frame 5 arriving now is late.
        assert_eq!(
            buf.insert(frame(7, 0, 5, T0 + 400_000)),
            InsertOutcome::Late
        );
        let s = buf.statistics();
        assert_eq!((s.late, s.lost, s.released, s.received), (1, 1, 9, 10));
    }

    #[test]
    fn a_gap_filled_in_time_is_no_loss() {
        let mut buf = JitterBuffer::new(fixed(100));
        buf.insert(frame(0, 0, 0, T0));
        buf.insert(frame(0, 0, 2, T0 + 40_000));
        assert_eq!(buf.pop(T0 + 100_000).unwrap().payload, 0);
        assert_eq!(buf.head().unwrap().gap_before, 1);
        assert_eq!(
            buf.insert(frame(0, 0, 1, T0 + 110_000)),
            InsertOutcome::Reordered
        );
        assert_eq!(buf.pop(T0 + 120_000).unwrap().payload, 1);
        assert_eq!(buf.pop(T0 + 140_000).unwrap().payload, 2);
        assert_eq!(buf.statistics().lost, 0);
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut buf = JitterBuffer::new(fixed(100));
        assert_eq!(buf.insert(frame(0, 0, 0, T0)), InsertOutcome::Buffered);
        assert_eq!(buf.insert(frame(0, 0, 0, T0 + 1)), InsertOutcome::Duplicate);
        assert_eq!(
            buf.insert(frame(0, 0, 1, T0 + 20_000)),
            InsertOutcome::Buffered
        );
        assert_eq!(buf.pop(T0 + 100_000).unwrap().payload, 0);
        // A copy of a released frame is a duplicate, not a late frame.
        assert_eq!(
            buf.insert(frame(0, 0, 0, T0 + 100_001)),
            InsertOutcome::Duplicate
        );
        assert_eq!(buf.pop(T0 + 120_000).unwrap().payload, 1);
        assert!(buf.pop(T0 + 1_000_000).is_none());
        let s = buf.statistics();
        assert_eq!((s.duplicates, s.late, s.released), (2, 0, 2));
    }

    #[test]
    fn sequence_wraps_at_65535() {
        let mut buf = JitterBuffer::new(fixed(50));
        // Sequence 65 530 … 9 (through the wrap), pairs swapped.
        let arrivals = (0..16u64)
            .map(|n| (n ^ 1, T0 + n * 20_000))
            .collect::<Vec<_>>();
        let out = run(&mut buf, 65_530, 1_000, arrivals);
        let seqs: Vec<u16> = out.iter().map(|o| o.sequence_number).collect();
        let expect: Vec<u16> = (0..16u16).map(|n| 65_530u16.wrapping_add(n)).collect();
        assert_eq!(seqs, expect);
        assert!(out
            .windows(2)
            .all(|w| w[1].extended_sequence == w[0].extended_sequence + 1));
        assert_eq!(out[6].extended_sequence, 65_536);
        let s = buf.statistics();
        assert_eq!((s.lost, s.late, s.duplicates), (0, 0, 0));
    }

    #[test]
    fn timestamp_wraps_at_2_pow_32() {
        let mut buf = JitterBuffer::new(fixed(100));
        let ts0 = u32::MAX - 960 * 3 + 1; // wraps between frames 2 and 3
        let arrivals = (0..8u64).map(|n| (n, T0 + n * 20_000)).collect();
        let out = run(&mut buf, 0, ts0, arrivals);
        assert_eq!(out.len(), 8);
        assert_eq!(out[3].rtp_timestamp, 0);
        for w in out.windows(2) {
            assert_eq!(w[1].extended_timestamp - w[0].extended_timestamp, 960);
            // Pacing continues across the wrap: 20 ms apart.
            assert_eq!(w[1].released_us - w[0].released_us, 20_000);
        }
        assert_eq!(out[3].extended_timestamp, 1 << 32);
    }

    #[test]
    fn hard_cap_discards_the_oldest() {
        let mut buf = JitterBuffer::new(fixed(100));
        // Nobody pops: 1.2 s of frames pile up.
        for n in 0..60u64 {
            buf.insert(frame(0, 0, n, T0 + n * 20_000));
            assert!(buf.buffered_span_us() <= 500_000);
            assert!(T0 + n * 20_000 - buf.oldest_arrival_us().unwrap() <= 500_000);
        }
        let s = buf.statistics();
        assert_eq!(s.buffered + s.discarded as usize, 60);
        assert_eq!(s.buffered, 26); // 25 × 20 ms = 500 ms span
        assert_eq!(s.lost, 0);
        // What is left comes out in order, starting after the discarded ones.
        let first = buf.pop(T0 + 2_000_000).unwrap();
        assert_eq!(first.payload, 34);
        assert_eq!(first.lost_before, 0);
        // A discarded frame arriving again is late.
        assert_eq!(
            buf.insert(frame(0, 0, 3, T0 + 2_000_000)),
            InsertOutcome::Late
        );
        // A frame so far out of line that it would be the oldest is discarded at once.
        let mut buf = JitterBuffer::new(fixed(100));
        buf.insert(frame(0, 0, 40, T0));
        assert_eq!(buf.insert(frame(0, 0, 0, T0)), InsertOutcome::Discarded);
        assert_eq!(buf.len(), 1);
    }

    #[test]
    fn adaptive_target_follows_the_interarrival_jitter() {
        let cfg = JitterConfig {
            adaptive: true,
            ..fixed(100)
        };
        // Clean network: the target settles at its lower bound.
        let mut buf = JitterBuffer::new(cfg);
        for n in 0..2000u64 {
            buf.insert(frame(0, 0, n, T0 + n * 20_000 + 3_000));
            while buf.pop(T0 + n * 20_000 + 3_000).is_some() {}
        }
        let s = buf.statistics();
        assert!(s.jitter_ms < 0.01, "{s:?}");
        assert!((s.target_delay_ms - 50.0).abs() < 0.5, "{s:?}");
        // Uniform 0–40 ms jitter: J ≈ 13 ms, target ≈ 4 J ≈ 53 ms, within bounds.
        let mut buf = JitterBuffer::new(cfg);
        let mut rng = Rng::new(3);
        for n in 0..2000u64 {
            let a = T0 + n * 20_000 + (rng.unit() * 40_000.0) as u64;
            buf.insert(frame(0, 0, n, a));
            while buf.pop(a).is_some() {}
        }
        let s = buf.statistics();
        assert!((8.0..19.0).contains(&s.jitter_ms), "{s:?}");
        assert!(s.target_delay_ms >= 4.0 * s.jitter_ms * 0.9, "{s:?}");
        assert!(s.target_delay_ms <= 200.0);
        // Heavy jitter (0–150 ms) hits the upper bound.
        let mut buf = JitterBuffer::new(cfg);
        for n in 0..2000u64 {
            let a = T0 + n * 20_000 + (rng.unit() * 150_000.0) as u64;
            buf.insert(frame(0, 0, n, a));
            while buf.pop(a).is_some() {}
        }
        assert!(buf.statistics().target_delay_ms >= 180.0);
        // Not adaptive: fixed.
        let mut buf = JitterBuffer::new(fixed(120));
        for n in 0..200u64 {
            buf.insert(frame(
                0,
                0,
                n,
                T0 + n * 20_000 + (rng.unit() * 80_000.0) as u64,
            ));
        }
        assert_eq!(buf.statistics().target_delay_ms, 120.0);
    }

    #[test]
    fn multi_packet_frames_are_not_losses() {
        let mut buf = JitterBuffer::new(fixed(100));
        // Video frames of 3 packets each: 100..=102, 103..=105, …
        for n in 0..5u64 {
            let first = 100 + 3 * n as u16;
            let f = RtpFrame::new(first, (n * 3000) as u32, T0 + n * 33_333, n)
                .with_last_sequence_number(first + 2);
            buf.insert(f);
        }
        let mut n = 0;
        while let Some(o) = buf.pop(T0 + 1_000_000) {
            assert_eq!((o.payload, o.lost_before), (n, 0));
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(buf.statistics().lost, 0);
        // A frame missing from the middle counts its packets.
        buf.insert(RtpFrame::new(121, 21_000, T0 + 2_000_000, 7).with_last_sequence_number(123));
        let o = buf.pop(T0 + 3_000_000).unwrap();
        assert_eq!(o.lost_before, 6);
    }

    #[test]
    fn a_sequence_restart_far_behind_resynchronises() {
        let mut buf = JitterBuffer::new(fixed(100));
        for n in 0..20u64 {
            buf.insert(frame(30_000, 0, n, T0 + n * 20_000));
            while buf.pop(T0 + n * 20_000).is_some() {}
        }
        // The sender restarts at sequence 5 000 with new timestamps.
        let t = T0 + 400_000;
        assert_eq!(buf.insert(frame(5_000, 77, 0, t)), InsertOutcome::Late);
        assert_eq!(
            buf.insert(frame(5_000, 77, 1, t + 20_000)),
            InsertOutcome::Resynchronized
        );
        for n in 2..10u64 {
            assert_eq!(
                buf.insert(frame(5_000, 77, n, t + n * 20_000)),
                InsertOutcome::Buffered
            );
        }
        let out: Vec<u64> = std::iter::from_fn(|| buf.pop(t + 2_000_000))
            .map(|o| o.payload)
            .collect();
        assert_eq!(out, (1..10).collect::<Vec<_>>());
        // A lone old frame does not.
        assert_eq!(
            buf.insert(RtpFrame::new(4_800, 0, t, 99)),
            InsertOutcome::Late
        );
        assert_eq!(
            buf.insert(frame(5_000, 77, 10, t + 200_000)),
            InsertOutcome::Buffered
        );
    }

    #[test]
    fn reset_forgets_everything() {
        let mut buf = JitterBuffer::new(fixed(100));
        buf.insert(frame(0, 0, 0, T0));
        buf.insert(frame(0, 0, 0, T0));
        buf.reset();
        assert!(buf.is_empty());
        assert_eq!(
            buf.statistics(),
            JitterStatistics {
                target_delay_ms: 100.0,
                ..JitterStatistics::default()
            }
        );
        assert_eq!(buf.insert(frame(9, 9, 0, T0)), InsertOutcome::Buffered);
    }

    #[test]
    fn a_sender_stall_with_contiguous_timestamps_gets_its_delay_back() {
        // 20 ms frames with a steady 5 ms transit for 3 s; then the sender stalls 600 ms and goes
        // on with contiguous timestamps: every later frame's transit is 600 ms higher for good.
        let mut buf = JitterBuffer::new(JitterConfig {
            adaptive: true,
            min_target_ms: 20,
            ..fixed(100)
        });
        let stall_at = 150u64;
        let arrivals = (0..400u64)
            .map(|n| {
                let extra = if n >= stall_at { 600_000 } else { 0 };
                (n, T0 + n * 20_000 + 5_000 + extra)
            })
            .collect();
        let out = run(&mut buf, 0, 0, arrivals);
        assert_eq!(out.len(), 400);
        // Before the stall the fastest frames wait (close to) the whole target.
        let before: Vec<u64> = out[100..150].iter().map(|o| o.buffer_delay_us).collect();
        assert!(before.iter().all(|&d| d >= 15_000), "{before:?}");
        // From half a second after the stall on, frames are buffered again (before the floor was
        // rebuilt, each of them passed through at once, with no delay, for 2 to 4 s).
        let after: Vec<u64> = out[stall_at as usize + 25..stall_at as usize + 150]
            .iter()
            .map(|o| o.buffer_delay_us)
            .collect();
        let mut sorted = after.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        assert!(
            median >= 15_000,
            "median delay after the stall {median} µs: {after:?}"
        );
        // Still in order, nothing lost.
        assert!(out.windows(2).all(|w| w[0].payload + 1 == w[1].payload));
        assert_eq!(buf.statistics().lost, 0);
    }

    #[test]
    fn single_slow_frames_do_not_move_the_pacing_floor() {
        // Every 10th frame 110 ms late (over the 100 ms target): jitter, not a new floor; the
        // frames in between still wait the whole target.
        let mut buf = JitterBuffer::new(fixed(100));
        let arrivals = (0..200u64)
            .map(|n| {
                let extra = if n % 10 == 5 { 110_000 } else { 0 };
                (n, T0 + n * 20_000 + 5_000 + extra)
            })
            .collect();
        let out = run(&mut buf, 0, 0, arrivals);
        for o in out.iter().filter(|o| o.payload % 10 == 0 && o.payload > 20) {
            assert_eq!(o.buffer_delay_us, 100_000, "frame {}", o.payload);
        }
    }
}
