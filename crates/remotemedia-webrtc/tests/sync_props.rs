//! Property tests of the sync module: the jitter buffer's ordering, uniqueness and cap
//! guarantees under arbitrary input, and the clock arithmetic.
//!
//! `cargo test -p remotemedia-webrtc --test sync_props`

use std::collections::HashSet;

use proptest::prelude::*;
use remotemedia_webrtc::sync::{
    ntp_to_unix_us, unix_us_to_ntp, InsertOutcome, JitterBuffer, JitterConfig, RtpFrame,
    SequenceUnwrapper, SyncConfig, SyncManager, TimestampUnwrapper,
};

const T0: u64 = 1_700_000_000_000_000;

fn jitter_config(target_ms: u32, min_ms: u32, hard_ms: u32, adaptive: bool) -> JitterConfig {
    JitterConfig {
        clock_rate: 48_000,
        target_ms,
        min_target_ms: min_ms,
        max_target_ms: 200,
        hard_max_ms: hard_ms,
        adaptive,
    }
}

/// Frames spaced `interval_ms` apart, each delayed by less than the (lowest) target: an arbitrary
/// reordering within the target delay.
fn within_target() -> impl Strategy<Value = (u16, u32, u32, u32, bool, Vec<u64>)> {
    (
        any::<u16>(),
        any::<u32>(),
        prop::sample::select(vec![10u32, 20, 33]),
        50u32..=200,
        any::<bool>(),
    )
        .prop_flat_map(|(seq0, ts0, interval_ms, target_ms, adaptive)| {
            let min_ms = if adaptive { 50 } else { target_ms };
            // Delays in [0, min target − 1 ms], µs.
            let delays = prop::collection::vec(0u64..(min_ms as u64 - 1) * 1000, 1..300);
            (
                Just(seq0),
                Just(ts0),
                Just(interval_ms),
                Just(target_ms),
                Just(adaptive),
                delays,
            )
        })
}

proptest! {
    // No regression files: a failure prints its minimal input, which goes into a unit test.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    /// Any permutation that keeps each frame within the target delay comes out complete and in
    /// order, across sequence and timestamp wraps.
    #[test]
    fn any_permutation_within_the_target_delay_comes_out_in_order(
        (seq0, ts0, interval_ms, target_ms, adaptive, delays) in within_target()
    ) {
        let min_ms = if adaptive { 50 } else { target_ms };
        let mut buf = JitterBuffer::new(jitter_config(target_ms, min_ms, 500, adaptive));
        let ticks = interval_ms as u64 * 48;
        let mut arrivals: Vec<(u64, u64)> = delays
            .iter()
            .enumerate()
            .map(|(k, d)| (T0 + k as u64 * interval_ms as u64 * 1000 + d, k as u64))
            .collect();
        arrivals.sort();
        let n = arrivals.len();
        let mut out = Vec::new();
        let mut next = 0;
        let mut now = arrivals[0].0;
        while next < n || !buf.is_empty() {
            while next < n && arrivals[next].0 <= now {
                let (a, k) = arrivals[next];
                let f = RtpFrame::new(
                    seq0.wrapping_add(k as u16),
                    ts0.wrapping_add((k * ticks) as u32),
                    a,
                    k,
                );
                let outcome = buf.insert(f);
                prop_assert!(
                    matches!(outcome, InsertOutcome::Buffered | InsertOutcome::Reordered),
                    "{:?}", outcome
                );
                next += 1;
            }
            while let Some(o) = buf.pop(now) {
                prop_assert_eq!(o.lost_before, 0);
                out.push(o.payload);
            }
            now += 1000;
        }
        prop_assert_eq!(out, (0..n as u64).collect::<Vec<_>>());
        let s = buf.statistics();
        prop_assert_eq!((s.lost, s.late, s.duplicates, s.discarded), (0, 0, 0, 0));
        prop_assert_eq!(s.released, n as u64);
    }

    /// Under arbitrary input (loss, duplicates, reordering, bursts, stalls of the reader, gaps in
    /// time) no frame is emitted twice, the output is in strictly increasing sequence order, the
    /// buffer never exceeds its cap, and every received frame is accounted for.
    #[test]
    fn no_frame_twice_and_the_cap_always_holds(
        seq0 in any::<u16>(),
        ts0 in any::<u32>(),
        hard_ms in 50u32..=500,
        adaptive in any::<bool>(),
        steps in prop::collection::vec(
            (-30i64..30, 0u64..60_000, 0u8..4, 0u64..200_000),
            1..400,
        ),
    ) {
        let target = hard_ms.min(100);
        let mut buf = JitterBuffer::new(JitterConfig {
            clock_rate: 48_000,
            target_ms: target,
            min_target_ms: target.min(50),
            max_target_ms: hard_ms.min(200),
            hard_max_ms: hard_ms,
            adaptive,
        });
        let hard_us = hard_ms as u64 * 1000;
        let mut emitted = HashSet::new();
        let mut last_ext = None;
        let mut now = T0;
        let mut base = 0i64;
        for (i, (offset, advance, pops, pop_advance)) in steps.into_iter().enumerate() {
            base += 1;
            now += advance;
            let k = (base + offset).max(0);
            let f = RtpFrame::new(
                seq0.wrapping_add(k as u16),
                ts0.wrapping_add((k * 960) as u32),
                now,
                i,
            );
            buf.insert(f);
            prop_assert!(buf.buffered_span_us() <= hard_us);
            if let Some(oldest) = buf.oldest_arrival_us() {
                prop_assert!(now - oldest <= hard_us);
            }
            // The reader pops 0–3 times, sometimes late.
            for _ in 0..pops {
                let at = now + pop_advance;
                while let Some(o) = buf.pop(at) {
                    prop_assert!(emitted.insert(o.payload), "payload {} twice", o.payload);
                    if let Some(l) = last_ext {
                        prop_assert!(o.extended_sequence > l);
                    }
                    last_ext = Some(o.extended_sequence);
                }
            }
            let s = buf.statistics();
            prop_assert_eq!(
                s.received,
                s.released + s.buffered as u64 + s.late + s.duplicates + s.discarded
            );
            prop_assert!(s.target_delay_ms >= 0.0 && s.target_delay_ms <= hard_ms as f64);
        }
    }

    /// Whatever the input, the manager emits each audio and video frame at most once.
    #[test]
    fn the_manager_emits_no_frame_twice(
        steps in prop::collection::vec(
            (any::<bool>(), -20i64..20, 0u64..40_000, any::<bool>()),
            1..300,
        ),
    ) {
        let mut sync = SyncManager::<usize, usize>::new(SyncConfig::default()).unwrap();
        let mut now = T0;
        let mut seen = HashSet::new();
        for (i, (audio, offset, advance, pop)) in steps.into_iter().enumerate() {
            now += advance;
            let k = (i as i64 + offset).max(0) as u64;
            if audio {
                sync.process_audio_frame(RtpFrame::new(k as u16, (k * 960) as u32, now, i));
            } else {
                sync.process_video_frame(RtpFrame::new(k as u16, (k * 3000) as u32, now, i));
            }
            if pop {
                while let Some(f) = sync.pop_next_audio_frame(now) {
                    prop_assert!(seen.insert(f.payload));
                }
                while let Some(f) = sync.pop_next_video_frame(now) {
                    prop_assert!(seen.insert(f.payload));
                }
            }
        }
    }

    /// Extending wrapped values recovers the running total of any steps smaller than half the
    /// counter's range.
    #[test]
    fn unwrapping_recovers_the_running_total(
        seq0 in any::<u16>(),
        ts0 in any::<u32>(),
        steps in prop::collection::vec((-32_767i64..32_767, -2_000_000_000i64..2_000_000_000), 1..500),
    ) {
        let mut seq = SequenceUnwrapper::new();
        let mut ts = TimestampUnwrapper::new();
        let (mut s, mut t) = (seq0 as i64, ts0 as i64);
        prop_assert_eq!(seq.unwrap(seq0), s);
        prop_assert_eq!(ts.unwrap(ts0), t);
        for (ds, dt) in steps {
            s += ds;
            t += dt;
            prop_assert_eq!(seq.unwrap(s.rem_euclid(1 << 16) as u16), s);
            prop_assert_eq!(ts.unwrap(t.rem_euclid(1 << 32) as u32), t);
        }
    }

    /// NTP ↔ Unix µs is exact to the microsecond from 1970 to 2104 (across the 2036 era wrap).
    #[test]
    fn ntp_round_trip(unix_us in 0u64..4_233_462_144_000_000) {
        prop_assert_eq!(ntp_to_unix_us(unix_us_to_ntp(unix_us)), unix_us);
    }
}
