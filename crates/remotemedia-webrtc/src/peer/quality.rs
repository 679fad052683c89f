//! Connection quality from raw statistics: [`QualityTracker`] keeps a short window of cumulative
//! counter snapshots ([`StatsSample`]) and turns their *differences* into [`QualityMetrics`]
//! (RTT, loss, jitter, bitrates, a 0–100 score), serialized as the JS `getMetrics()` shape.
//! Pure: the caller supplies every sample and its time; nothing here reads a clock.
//!
//! # Where the inputs come from in webrtc-rs 0.21.1
//!
//! `PeerConnection::get_stats(&self, now: Instant, StatsSelector::None).await -> RTCStatsReport`
//! (trait `webrtc::peer_connection::PeerConnection`; `RTCStatsReport`, `RTCStatsReportEntry`,
//! `StatsSelector` re-exported from `webrtc::peer_connection`, defined in `rtc::statistics`;
//! entry structs under `rtc::statistics::stats::…`). Report accessors: `transport()`,
//! `inbound_rtp_streams()`, `outbound_rtp_streams()`, `candidate_pairs()`, `get(id)`, `iter()`.
//!
//! | [`StatsSample`] field | webrtc-rs source |
//! |---|---|
//! | `at_us` | the `now` given to `get_stats`, as µs since a per-peer origin |
//! | `bytes_sent` / `bytes_received` | `report.transport()` → `RTCTransportStats::{bytes_sent, bytes_received}` (every datagram on the transport: SRTP, SCTP, STUN; counted in the demuxer) |
//! | `inbound` (we receive) | `report.inbound_rtp_streams()` → `s.received_rtp_stream_stats.{packets_received, packets_lost}` with ssrc `s.received_rtp_stream_stats.rtp_stream_stats.ssrc` → [`StreamLoss::from_received`]. `packets_received` counts every RTP packet live; `packets_lost` (i64, cumulative) is copied from the RR *we generate*, so it moves once per RR interval (1 s default) |
//! | `outbound` (remote receives ours) | what the transport uses: the reception-report blocks the remote sends about our streams, in receiver *and* sender reports, copied by the interceptor tap (`media::keyframe::ReceptionLog`, wired in `peer::metrics`). webrtc-rs's own stats instead give entries `RTCStatsReportEntry::RemoteInboundRtp(r)`: `r.received_rtp_stream_stats.packets_received` is **the RR's extended highest sequence number, not a count** (rtc `accumulator/rtp_stream/outbound.rs` stores `report.last_sequence_number` there), `r.received_rtp_stream_stats.packets_lost` the RR's cumulative loss → [`StreamLoss::from_extended_highest_seq`]. (`r.fraction_lost` is the RR's own fraction since its previous RR.) Only `ReceiverReport` packets update it — reception blocks carried inside a remote `SenderReport` (browsers that also send) are not read by rtc 0.21.1 |
//! | `jitter` | `s.received_rtp_stream_stats.jitter` of inbound (and remote-inbound) streams. Despite its doc comment ("seconds") it is **RTP timestamp units** (`report.jitter as f64` from the RR). Clock rate: `RTCCodecStats::clock_rate` of the entry `report.get(&s.received_rtp_stream_stats.rtp_stream_stats.codec_id)` (`RTCStatsReportEntry::Codec`) → [`JitterReading`] |
//! | `rtt_ms` | `RTCIceCandidatePairStats::current_round_trip_time` (seconds, f64) of the pair whose `stats.id` equals `RTCTransportStats::selected_candidate_pair_id`; `get_stats` refreshes it from the ICE agent, which updates it on every STUN binding response (connectivity checks, then keepalives every 2 s by default). `RTCRemoteInboundRtpStreamStats::round_trip_time` is **always 0.0** in 0.21.1 (the RR handler passes 0.0). An RR-based RTT needs the RR itself: the chain's terminus swallows inbound RTCP, so read it in a tap interceptor (as `media::keyframe` does) and use [`rtt_from_report_block`] with `rtcp::reception_report::ReceptionReport::{last_sender_report, delay}` and [`ntp_compact`] of the arrival time |
//! | `available_outgoing_bps` | `RTCOutboundRtpStreamStats::target_bitrate` (bit/s), written only when a congestion-control interceptor is in the chain (rtc copies `Attribute::TargetBitrateChanged` into every outbound stream). `RTCIceCandidatePairStats::available_{outgoing,incoming}_bitrate` exist but nothing writes them (always 0). Without CC, use [`LossBasedBitrate::target_bps`](crate::peer::bitrate::LossBasedBitrate::target_bps) |
//!
//! # Interceptors (rtc-interceptor 0.21.1, re-exported as `rtc::interceptor`)
//!
//! - Registration: `webrtc::peer_connection::PeerConnectionBuilder::with_interceptor_registry(
//!   Registry)`; helpers in `rtc::peer_connection::configuration::interceptor_registry` (glob
//!   re-exported from `webrtc::peer_connection`). Chain positions are fixed by `Slot`, not by
//!   call order. `peer::connection` already uses `register_default_interceptors(Registry::new(),
//!   &mut MediaEngine)`, which is: `configure_nack` (`NackResponder` + `NackGenerator`, `nack` and
//!   `nack pli` feedback on video only), simulcast header extensions,
//!   `configure_twcc_receiver_only` (`TwccReceiver`: sends TransportLayerCC feedback for the
//!   *remote's* estimator; transport-cc on audio and video), and `configure_rtcp_reports`
//!   (`ReceiverReport` + `SenderReport`, 1 s interval; `ReceiverReportBuilder::with_interval`,
//!   `SenderReportBuilder::with_interval` to change it).
//! - Bandwidth estimate (GCC): not in the default set. `configure_congestion_control(registry,
//!   rtc::interceptor::Gcc::new(initial_bps, min_bps, max_bps), CongestionFeedback::Twcc, &mut
//!   media)` adds `CongestionControlInterceptor` (`Slot::CongestionControl`, drives the
//!   `BandwidthEstimator` — `Gcc` = delay-based + loss-based halves), `Pacer` (`Slot::Pacer`),
//!   `TwccSender`, and `TwccReceiver`. It also paces (adds queueing). The estimator is boxed inside
//!   the chain, so the only read-out is `get_stats` → `RTCOutboundRtpStreamStats::target_bitrate`
//!   (the encoder target is still ours to set). It may be layered on
//!   `register_default_interceptors`: both register `Slot::TwccReceiver`, and `Registry::with`
//!   replaces the holder of a slot (logging a warning), so the second one simply wins.
//! - Loss-only control works on the default chain: the remote's RRs give the outbound loss
//!   ([`StreamLoss::from_extended_highest_seq`] deltas) that feeds
//!   [`crate::peer::bitrate::LossBasedBitrate`].
//!
//! # Quality score
//!
//! See [`quality_score`]: a simplified ITU-T G.107 E-model R factor, scaled to 0–100.

use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// Cumulative packet counters of one RTP stream, normalised to "expected" and "lost".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLoss {
    pub ssrc: u32,
    /// Packets that should have arrived so far (cumulative; only differences are used).
    pub expected: u64,
    /// Packets lost so far (cumulative; may be negative with duplicates, RFC 3550 §6.4.1).
    pub lost: i64,
}

impl StreamLoss {
    /// From a receive count and a cumulative loss (inbound-rtp stats): expected = received + lost.
    pub fn from_received(ssrc: u32, packets_received: u64, packets_lost: i64) -> Self {
        let expected = (packets_received as i64)
            .saturating_add(packets_lost)
            .max(0) as u64;
        Self {
            ssrc,
            expected,
            lost: packets_lost,
        }
    }

    /// From a receiver report block: the extended highest sequence number received advances by
    /// exactly the number of packets expected (RFC 3550 A.3).
    pub fn from_extended_highest_seq(
        ssrc: u32,
        extended_highest_seq: u64,
        total_lost: i64,
    ) -> Self {
        Self {
            ssrc,
            expected: extended_highest_seq,
            lost: total_lost,
        }
    }
}

/// An interarrival jitter value as RTP reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterReading {
    /// RFC 3550 interarrival jitter, in RTP timestamp units.
    pub rtp_units: f64,
    /// The stream's RTP clock rate (48 000 for Opus, 90 000 for video).
    pub clock_rate: u32,
}

impl JitterReading {
    /// Milliseconds, or `None` without a clock rate.
    pub fn ms(&self) -> Option<f64> {
        (self.clock_rate > 0 && self.rtp_units.is_finite() && self.rtp_units >= 0.0)
            .then(|| self.rtp_units * 1000.0 / self.clock_rate as f64)
    }
}

/// One statistics snapshot: cumulative counters plus the latest instantaneous readings.
///
/// Every sample must list every live stream (a stream missing from the window's first sample is
/// taken to have started inside the window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSample {
    /// Monotonic time of the snapshot, µs.
    pub at_us: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Streams we receive (our own loss view).
    pub inbound: Vec<StreamLoss>,
    /// Streams we send, as the remote reports them in RRs.
    pub outbound: Vec<StreamLoss>,
    pub jitter: Vec<JitterReading>,
    /// Latest round-trip time, ms (ICE candidate pair or RR).
    pub rtt_ms: Option<f64>,
    /// Congestion controller's estimate, bit/s.
    pub available_outgoing_bps: Option<f64>,
}

/// `bitrateKbps: { in, out }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BitrateKbps {
    #[serde(rename = "in")]
    pub inbound: f64,
    #[serde(rename = "out")]
    pub outbound: f64,
}

/// What `peer.getMetrics()` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityMetrics {
    /// Mean RTT over the window; 0 until a sample arrived.
    pub rtt_ms: f64,
    /// Worse of the two directions' loss over the window, 0..1; 0 until measured.
    pub packet_loss_rate: f64,
    /// Largest stream jitter in the latest sample, ms.
    pub jitter_ms: f64,
    pub bitrate_kbps: BitrateKbps,
    /// 0..100, [`quality_score`] of the three above.
    pub quality_score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bandwidth_kbps: Option<f64>,
    /// What the local video track sends now (its step of the resolution ladder and the
    /// encoder's target), when there is one. Filled by the peer, not by [`QualityTracker`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<crate::media::track::VideoSendingFormat>,
    /// Loss of what we receive, if measured in the window.
    #[serde(skip)]
    pub inbound_loss_rate: Option<f64>,
    /// Loss of what we send (from the remote's RRs), if measured in the window.
    #[serde(skip)]
    pub outbound_loss_rate: Option<f64>,
    /// Time the window spans, µs (0 with fewer than two samples).
    #[serde(skip)]
    pub window_us: u64,
}

/// A window of statistics snapshots and the metrics over it.
#[derive(Debug, Clone)]
pub struct QualityTracker {
    window_us: u64,
    samples: VecDeque<StatsSample>,
}

impl Default for QualityTracker {
    fn default() -> Self {
        Self::new(Self::DEFAULT_WINDOW)
    }
}

impl QualityTracker {
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3);

    /// Metrics are computed over (at least) the last `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window_us: (window.as_micros() as u64).max(1),
            samples: VecDeque::new(),
        }
    }

    /// Forgets every sample (e.g. a new peer connection after a full renegotiation).
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds a snapshot. One not newer than the last is ignored; transport byte counters that
    /// went backwards (a new connection) restart the window.
    pub fn push(&mut self, sample: StatsSample) {
        if let Some(last) = self.samples.back() {
            if sample.at_us <= last.at_us {
                return;
            }
            if sample.bytes_sent < last.bytes_sent || sample.bytes_received < last.bytes_received {
                self.samples.clear();
            }
        }
        self.samples.push_back(sample);
        let newest = self.samples.back().map(|s| s.at_us).unwrap_or(0);
        // Keep the newest sample at or before `newest - window` as the base.
        while self.samples.len() >= 2 && self.samples[1].at_us + self.window_us <= newest {
            self.samples.pop_front();
        }
    }

    /// Metrics over the current window.
    pub fn metrics(&self) -> QualityMetrics {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return QualityMetrics {
                quality_score: quality_score(0.0, 0.0, 0.0),
                ..Default::default()
            };
        };
        let span_us = last.at_us - first.at_us;
        let bitrate_kbps = if span_us > 0 {
            let secs = span_us as f64 / 1e6;
            BitrateKbps {
                inbound: (last.bytes_received - first.bytes_received) as f64 * 8.0 / secs / 1000.0,
                outbound: (last.bytes_sent - first.bytes_sent) as f64 * 8.0 / secs / 1000.0,
            }
        } else {
            BitrateKbps::default()
        };
        let inbound_loss_rate = loss_between(&first.inbound, &last.inbound);
        let outbound_loss_rate = loss_between(&first.outbound, &last.outbound);
        let packet_loss_rate = inbound_loss_rate
            .into_iter()
            .chain(outbound_loss_rate)
            .fold(0.0_f64, f64::max);
        let rtts: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.rtt_ms)
            .filter(|r| r.is_finite() && *r >= 0.0)
            .collect();
        let rtt_ms = if rtts.is_empty() {
            0.0
        } else {
            rtts.iter().sum::<f64>() / rtts.len() as f64
        };
        let jitter_ms = last
            .jitter
            .iter()
            .filter_map(JitterReading::ms)
            .fold(0.0_f64, f64::max);
        QualityMetrics {
            rtt_ms,
            packet_loss_rate,
            jitter_ms,
            bitrate_kbps,
            quality_score: (quality_score(packet_loss_rate, rtt_ms, jitter_ms) * 10.0).round()
                / 10.0,
            available_bandwidth_kbps: last
                .available_outgoing_bps
                .filter(|b| b.is_finite() && *b > 0.0)
                .map(|b| b / 1000.0),
            inbound_loss_rate,
            outbound_loss_rate,
            window_us: span_us,
            video: None,
        }
    }
}

/// Loss fraction between two snapshots of the same direction: Σ Δlost / Σ Δexpected over the
/// streams of `last` (matched by ssrc; a stream absent from `first` starts at zero; a stream
/// whose counters went backwards is skipped). `None` when nothing was expected.
pub fn loss_between(first: &[StreamLoss], last: &[StreamLoss]) -> Option<f64> {
    let mut expected = 0u64;
    let mut lost = 0i64;
    for s in last {
        let base = first
            .iter()
            .find(|b| b.ssrc == s.ssrc)
            .copied()
            .unwrap_or(StreamLoss {
                ssrc: s.ssrc,
                expected: 0,
                lost: 0,
            });
        if s.expected < base.expected {
            continue;
        }
        expected += s.expected - base.expected;
        lost += s.lost - base.lost;
    }
    (expected > 0).then(|| (lost as f64 / expected as f64).clamp(0.0, 1.0))
}

/// The middle 32 bits of a 64-bit NTP timestamp (the form RTCP's LSR and DLSR use:
/// 16.16 fixed-point seconds).
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round trip from an RTCP reception report block (RFC 3550 §6.4.1): `arrival − LSR − DLSR`,
/// all in 1/65536 s, where `arrival` is [`ntp_compact`] of the NTP time the report arrived.
/// `None` when no SR has been reported yet (`lsr == 0`) or the result is negative (clock
/// mismatch / bogus report).
pub fn rtt_from_report_block(arrival_compact: u32, lsr: u32, dlsr: u32) -> Option<f64> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival_compact.wrapping_sub(lsr).wrapping_sub(dlsr) as i32;
    (rtt >= 0).then(|| rtt as f64 * 1000.0 / 65536.0)
}

/// Base R factor with no impairment (G.107 default, simplified).
const R0: f64 = 93.2;
/// Packet-loss robustness of the codec (`Bpl`); 20 ≈ a codec with loss concealment (Opus).
const BPL: f64 = 20.0;
/// Delay beyond which the delay impairment steepens (ms).
const DELAY_KNEE_MS: f64 = 177.3;

/// 0..100 from loss (0..1), RTT (ms) and jitter (ms) — a simplified E-model
/// (ITU-T G.107 as reduced by Cole & Rosenbluth, 2001):
///
/// - one-way delay `d = rtt/2 + 2·jitter` ms (the jitter buffer holds about two jitters);
/// - delay impairment `Id = 0.024·d + 0.11·(d − 177.3)·[d > 177.3]`;
/// - loss impairment `Ie = 95·P / (P + 20)` with `P` the loss in percent (codec impairment 0,
///   robustness `Bpl = 20`);
/// - `R = 93.2 − Id − Ie`, and `score = 100 · clamp(R, 0, 93.2) / 93.2`.
///
/// Each impairment only grows with its input, so the score never rises when loss, RTT or jitter
/// do. Non-finite or negative inputs count as 0; loss is capped at 1.
/// Reference points: perfect = 100; 5 % loss ≈ 80; 20 % ≈ 49; 200 ms RTT ≈ 97; 1 s RTT ≈ 49.
pub fn quality_score(loss: f64, rtt_ms: f64, jitter_ms: f64) -> f64 {
    let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let loss_pct = clean(loss).min(1.0) * 100.0;
    let d = clean(rtt_ms) / 2.0 + 2.0 * clean(jitter_ms);
    let id = 0.024 * d
        + if d > DELAY_KNEE_MS {
            0.11 * (d - DELAY_KNEE_MS)
        } else {
            0.0
        };
    let ie = 95.0 * loss_pct / (loss_pct + BPL);
    let r = (R0 - id - ie).clamp(0.0, R0);
    100.0 * r / R0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, sent: u64, recv: u64) -> StatsSample {
        StatsSample {
            at_us: at_ms * 1000,
            bytes_sent: sent,
            bytes_received: recv,
            ..Default::default()
        }
    }

    #[test]
    fn score_is_monotone_in_loss_rtt_and_jitter() {
        let losses: Vec<f64> = (0..=50).map(|i| i as f64 / 50.0).collect();
        let rtts: Vec<f64> = (0..=60).map(|i| i as f64 * 25.0).collect();
        let jitters: Vec<f64> = (0..=20).map(|i| i as f64 * 10.0).collect();
        for &r in &rtts {
            for &j in &jitters {
                for w in losses.windows(2) {
                    let (a, b) = (quality_score(w[0], r, j), quality_score(w[1], r, j));
                    assert!(
                        b <= a,
                        "loss {}→{} at rtt {r} jitter {j}: {a}→{b}",
                        w[0],
                        w[1]
                    );
                }
            }
        }
        for &l in &losses {
            for &j in &jitters {
                for w in rtts.windows(2) {
                    let (a, b) = (quality_score(l, w[0], j), quality_score(l, w[1], j));
                    assert!(b <= a, "rtt {}→{} at loss {l}: {a}→{b}", w[0], w[1]);
                }
            }
            for &r in &rtts {
                for w in jitters.windows(2) {
                    assert!(quality_score(l, r, w[1]) <= quality_score(l, r, w[0]));
                }
            }
        }
        // Strictly worse somewhere, in range everywhere.
        assert!(quality_score(0.2, 0.0, 0.0) < quality_score(0.05, 0.0, 0.0));
        assert!(quality_score(0.0, 800.0, 0.0) < quality_score(0.0, 100.0, 0.0));
        assert!(quality_score(0.0, 0.0, 100.0) < quality_score(0.0, 0.0, 10.0));
        for &l in &losses {
            for &r in &rtts {
                let s = quality_score(l, r, 500.0);
                assert!((0.0..=100.0).contains(&s));
            }
        }
    }

    #[test]
    fn score_reference_points() {
        assert_eq!(quality_score(0.0, 0.0, 0.0), 100.0);
        let s5 = quality_score(0.05, 0.0, 0.0);
        assert!((s5 - 79.6).abs() < 0.5, "{s5}");
        let s20 = quality_score(0.20, 0.0, 0.0);
        assert!((s20 - 49.0).abs() < 0.5, "{s20}");
        assert!(quality_score(1.0, 5000.0, 1000.0) == 0.0);
        // Garbage in counts as no impairment rather than poisoning the score.
        assert_eq!(quality_score(f64::NAN, -3.0, f64::INFINITY), 100.0);
    }

    #[test]
    fn loss_rate_comes_from_deltas_not_totals() {
        let mut t = QualityTracker::new(Duration::from_secs(10));
        // 1 000 packets with 500 lost before the window we look at…
        let mut a = sample(0, 0, 0);
        a.inbound = vec![StreamLoss::from_received(7, 500, 500)];
        t.push(a);
        // …then 950 received, 50 lost: 5 % in this interval (cumulative would say 27.5 %).
        let mut b = sample(1000, 0, 0);
        b.inbound = vec![StreamLoss::from_received(7, 1450, 550)];
        t.push(b);
        let m = t.metrics();
        assert!(
            (m.packet_loss_rate - 0.05).abs() < 1e-9,
            "{}",
            m.packet_loss_rate
        );
        assert_eq!(m.inbound_loss_rate, Some(m.packet_loss_rate));
        assert_eq!(m.outbound_loss_rate, None);
    }

    #[test]
    fn loss_from_receiver_reports_and_worst_direction() {
        let mut t = QualityTracker::new(Duration::from_secs(10));
        let mut a = sample(0, 0, 0);
        a.inbound = vec![StreamLoss::from_received(1, 100, 0)];
        a.outbound = vec![StreamLoss::from_extended_highest_seq(2, 65_530, 10)];
        t.push(a);
        let mut b = sample(2000, 0, 0);
        b.inbound = vec![StreamLoss::from_received(1, 199, 1)];
        // Sequence wrapped into the next cycle: 65 530 → 65 536 + 194 = 200 expected, 40 lost.
        b.outbound = vec![StreamLoss::from_extended_highest_seq(2, 65_536 + 194, 50)];
        t.push(b);
        let m = t.metrics();
        assert!((m.inbound_loss_rate.unwrap() - 0.01).abs() < 1e-9);
        assert!((m.outbound_loss_rate.unwrap() - 0.2).abs() < 1e-9);
        assert!((m.packet_loss_rate - 0.2).abs() < 1e-9);
    }

    #[test]
    fn loss_between_edge_cases() {
        // Nothing expected → unknown.
        let s = [StreamLoss::from_received(1, 10, 0)];
        assert_eq!(loss_between(&s, &s), None);
        // Duplicates make Δlost negative → clamped to 0.
        let a = [StreamLoss::from_received(1, 100, 5)];
        let b = [StreamLoss::from_received(1, 200, 3)];
        assert_eq!(loss_between(&a, &b), Some(0.0));
        // A stream that started in the window counts from zero; one that reset is skipped.
        let a = [StreamLoss::from_received(1, 1000, 0)];
        let b = [
            StreamLoss::from_received(1, 10, 0),
            StreamLoss::from_received(9, 90, 10),
        ];
        assert_eq!(loss_between(&a, &b), Some(0.1));
    }

    #[test]
    fn bitrate_from_byte_deltas_over_elapsed_time() {
        let mut t = QualityTracker::new(Duration::from_secs(10));
        t.push(sample(1000, 1_000_000, 5_000_000));
        t.push(sample(3000, 1_000_000 + 250_000, 5_000_000 + 50_000));
        let m = t.metrics();
        // 250 kB in 2 s = 1 000 kbit/s out; 50 kB in 2 s = 200 kbit/s in.
        assert!((m.bitrate_kbps.outbound - 1000.0).abs() < 1e-9, "{m:?}");
        assert!((m.bitrate_kbps.inbound - 200.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.window_us, 2_000_000);
    }

    #[test]
    fn window_slides_and_keeps_a_base_at_its_start() {
        let mut t = QualityTracker::new(Duration::from_secs(2));
        // 100 kbit/s for 5 s, then 400 kbit/s.
        let mut bytes = 0u64;
        for s in 0..=10u64 {
            t.push(sample(s * 1000, bytes, 0));
            bytes += if s < 5 { 12_500 } else { 50_000 };
        }
        let m = t.metrics();
        assert_eq!(m.window_us, 2_000_000);
        assert!((m.bitrate_kbps.outbound - 400.0).abs() < 1e-9, "{m:?}");
        assert_eq!(t.len(), 3);
        // Old or duplicate timestamps are ignored.
        t.push(sample(5000, 0, 0));
        assert_eq!(t.metrics().window_us, 2_000_000);
        // Counters going backwards (new connection) restart the window.
        t.push(sample(11_000, 10, 10));
        assert_eq!(t.len(), 1);
        assert_eq!(t.metrics().bitrate_kbps, BitrateKbps::default());
    }

    #[test]
    fn rtt_is_mean_of_window_and_jitter_is_converted() {
        let mut t = QualityTracker::new(Duration::from_secs(3));
        for (i, rtt) in [Some(500.0), Some(180.0), None, Some(220.0), Some(200.0)]
            .into_iter()
            .enumerate()
        {
            let mut s = sample(i as u64 * 1000, 0, 0);
            s.rtt_ms = rtt;
            s.jitter = vec![
                JitterReading {
                    rtp_units: 480.0 * (i + 1) as f64,
                    clock_rate: 48_000,
                },
                JitterReading {
                    rtp_units: 900.0,
                    clock_rate: 90_000,
                },
                JitterReading {
                    rtp_units: 1e9,
                    clock_rate: 0,
                },
            ];
            t.push(s);
        }
        let m = t.metrics();
        // Window is samples at 1, 2, 3, 4 s: (180 + 220 + 200) / 3.
        assert!((m.rtt_ms - 200.0).abs() < 1e-9, "{}", m.rtt_ms);
        // Latest: 2 400 units at 48 kHz = 50 ms, larger than 10 ms of video jitter.
        assert!((m.jitter_ms - 50.0).abs() < 1e-9, "{}", m.jitter_ms);
        let expect = (quality_score(0.0, 200.0, 50.0) * 10.0).round() / 10.0;
        assert_eq!(m.quality_score, expect);
        assert!(m.quality_score < 100.0);
    }

    #[test]
    fn rtt_from_rr_block() {
        // SR sent at compact 0x0001_0000 (1 s); receiver held it 0.25 s; RR arrives at 1.5 s.
        let lsr = 0x0001_0000;
        let dlsr = 0x0000_4000;
        let arrival = 0x0001_8000;
        assert_eq!(rtt_from_report_block(arrival, lsr, dlsr), Some(250.0));
        assert_eq!(rtt_from_report_block(arrival, 0, dlsr), None);
        assert_eq!(rtt_from_report_block(lsr, lsr, dlsr), None);
        // Across the 16-bit seconds wrap.
        assert_eq!(
            rtt_from_report_block(0x0000_2000, 0xFFFF_F000, 0x0000_1000),
            Some(125.0)
        );
        assert_eq!(ntp_compact(0x1234_5678_9ABC_DEF0), 0x5678_9ABC);
    }

    #[test]
    fn serializes_as_the_js_shape() {
        let mut t = QualityTracker::new(Duration::from_secs(5));
        let mut a = sample(0, 0, 0);
        a.available_outgoing_bps = Some(1_500_000.0);
        t.push(a);
        let v = serde_json::to_value(t.metrics()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "rttMs",
            "packetLossRate",
            "jitterMs",
            "bitrateKbps",
            "qualityScore",
            "availableBandwidthKbps",
        ] {
            assert!(keys.contains(&k), "{k} missing from {v}");
        }
        assert_eq!(keys.len(), 6, "{v}");
        assert!(v["bitrateKbps"]["in"].is_number() && v["bitrateKbps"]["out"].is_number());
        assert_eq!(v["availableBandwidthKbps"], 1500.0);
        let none = serde_json::to_value(QualityTracker::default().metrics()).unwrap();
        assert!(none.get("availableBandwidthKbps").is_none());
        assert_eq!(none["qualityScore"], 100.0);
    }
}
