//! A peer's quality, measured: webrtc-rs statistics turned into [`StatsSample`]s for the
//! [`QualityTracker`], and the loss-based control of the encoders' bitrate.
//!
//! Each connected peer samples `get_stats` once per interval (see `Peer`'s quality task). The
//! resulting metrics are kept for `getMetrics()` and sent as a `quality` event. The loss the
//! remote peer reports for what we send (RTCP receiver reports) steers the targets of our
//! encoders between the bounds of the track's configuration (see [`BitrateControl`]).

use super::bitrate::LossBasedBitrate;
use super::quality::{JitterReading, StatsSample, StreamLoss};
use crate::media::keyframe::ReceptionLog;
use webrtc::peer_connection::{RTCStatsReport, RTCStatsReportEntry};

/// The statistics a report holds, plus the remote's reception reports about our streams (what
/// they lost of ours, and the round trip), as one sample taken at `at_us`.
pub fn sample(report: &RTCStatsReport, reception: &ReceptionLog, at_us: u64) -> StatsSample {
    let mut s = StatsSample {
        at_us,
        ..StatsSample::default()
    };
    let mut selected_pair = None;
    if let Some(t) = report.transport() {
        s.bytes_sent = t.bytes_sent;
        s.bytes_received = t.bytes_received;
        selected_pair = Some(t.selected_candidate_pair_id.clone());
    }
    let clock_rate = |codec_id: &str| match report.get(codec_id) {
        Some(RTCStatsReportEntry::Codec(c)) => c.clock_rate,
        _ => 0,
    };
    for e in report.iter() {
        match e {
            RTCStatsReportEntry::InboundRtp(i) => {
                let r = &i.received_rtp_stream_stats;
                s.inbound.push(StreamLoss::from_received(
                    r.rtp_stream_stats.ssrc,
                    r.packets_received,
                    r.packets_lost,
                ));
                s.jitter.push(JitterReading {
                    rtp_units: r.jitter,
                    clock_rate: clock_rate(&r.rtp_stream_stats.codec_id),
                });
            }
            RTCStatsReportEntry::IceCandidatePair(p)
                if selected_pair.as_deref() == Some(p.stats.id.as_str())
                    && p.current_round_trip_time > 0.0 =>
            {
                s.rtt_ms = Some(p.current_round_trip_time * 1000.0);
            }
            RTCStatsReportEntry::OutboundRtp(o) if o.target_bitrate > 0.0 => {
                let best = s
                    .available_outgoing_bps
                    .unwrap_or(0.0)
                    .max(o.target_bitrate);
                s.available_outgoing_bps = Some(best);
            }
            _ => {}
        }
    }
    for (&ssrc, r) in &reception.streams {
        s.outbound.push(StreamLoss::from_extended_highest_seq(
            ssrc,
            r.extended_highest_seq as u64,
            r.total_lost as i64,
        ));
    }
    // The reception reports' round trip follows every report (about 1 s); the ICE pair's only
    // every consent check (2 s).
    if let Some(rtt) = reception.rtt_ms {
        s.rtt_ms = Some(rtt);
    }
    s
}

/// Loss-based control of one encoder's target: starts at the configured bitrate, may fall to a
/// tenth of it (never below `floor`) under loss and climbs back, never above the configured
/// bitrate. `update` returns a new target only when it moved by 5 % or more since the last one
/// applied, so the encoder is not reconfigured for noise.
#[derive(Debug, Clone)]
pub struct BitrateControl {
    control: LossBasedBitrate,
    applied: f64,
}

impl BitrateControl {
    pub fn new(configured_bps: u32, floor_bps: u32) -> Option<Self> {
        let max = configured_bps as f64;
        let min = (max / 10.0).max(floor_bps as f64).min(max);
        Some(Self {
            control: LossBasedBitrate::new(max, min, max).ok()?,
            applied: max,
        })
    }

    /// Feeds one loss measurement (0..1); `Some(target)` when the encoder should change.
    pub fn update(&mut self, loss: f64) -> Option<u32> {
        let t = self.control.update(loss);
        if (t - self.applied).abs() >= self.applied * 0.05 {
            self.applied = t;
            Some(t.round() as u32)
        } else {
            None
        }
    }

    pub fn target_bps(&self) -> f64 {
        self.control.target_bps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_loss_the_target_falls_within_bounds_and_recovers_without_loss() {
        let mut c = BitrateControl::new(2_000_000, 100_000).unwrap();
        let mut applied = Vec::new();
        for _ in 0..30 {
            if let Some(t) = c.update(0.2) {
                applied.push(t);
            }
        }
        assert!(!applied.is_empty());
        assert!(applied.windows(2).all(|w| w[1] < w[0]), "{applied:?}");
        // Bounded below by a tenth of the configured rate.
        assert_eq!(*applied.last().unwrap(), 200_000);
        for _ in 0..100 {
            c.update(0.0);
        }
        assert_eq!(c.target_bps(), 2_000_000.0);
        // Small loss holds the target: nothing to apply.
        assert_eq!(c.update(0.05), None);
    }

    #[test]
    fn the_floor_and_the_configured_rate_bound_the_range() {
        let mut c = BitrateControl::new(32_000, 16_000).unwrap();
        for _ in 0..50 {
            c.update(0.5);
        }
        assert_eq!(c.target_bps(), 16_000.0);
        // A configured rate below the floor pins the target.
        let mut c = BitrateControl::new(8_000, 16_000).unwrap();
        c.update(0.5);
        assert_eq!(c.target_bps(), 8_000.0);
    }
}
