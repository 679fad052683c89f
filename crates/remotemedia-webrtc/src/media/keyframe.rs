//! The RTCP the application needs: keyframe requests (PLI, FIR) from the receivers of our video,
//! and sender reports from the senders of what we receive (for A/V sync).
//!
//! webrtc-rs ends inbound RTCP at its interceptor chain; only packets an interceptor marks with
//! `DeliverToApplication` reach a track's event stream. [`KeyframeRequestTap`] marks the RTCP
//! batches that hold a PLI, a FIR or a sender report (and passes every packet on unchanged): a
//! local video track answers keyframe requests, a remote track's reader maps its RTP clock.
//!
//! It also copies the reception-report blocks the remote sends about our streams (in receiver
//! and sender reports) into a [`ReceptionLog`] for the peer's quality measurement: webrtc-rs
//! 0.21.1 keeps only those of standalone receiver reports, and never computes their RTT.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Where the tap sits in webrtc-rs's interceptor chain: after the built-in ones.
pub const TAP_SLOT: usize = 14_000;

/// Whether an RTCP batch holds a sender report.
pub fn has_sender_report(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| p.as_any().is::<SenderReport>())
}

/// Whether an RTCP batch asks for a keyframe.
pub fn asks_for_keyframe(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
    })
}

/// What the remote peer last reported about one of our streams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceptionState {
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Packets lost since the start (cumulative).
    pub total_lost: u32,
    /// Interarrival jitter, RTP units.
    pub jitter: u32,
}

/// The reception reports about our streams, per SSRC, and the latest round trip they give.
#[derive(Debug, Default)]
pub struct ReceptionLog {
    pub streams: std::collections::HashMap<u32, ReceptionState>,
    /// Round trip from the latest report block that carried an LSR, ms.
    pub rtt_ms: Option<f64>,
}

/// A log shared between a peer's tap and its quality task.
pub type SharedReceptionLog = std::sync::Arc<std::sync::Mutex<ReceptionLog>>;

impl ReceptionLog {
    /// Records the blocks of one RTCP batch that arrived at `arrival_ntp` (NTP 32.32).
    pub fn record(&mut self, packets: &[Box<dyn rtc::rtcp::Packet>], arrival_ntp: u64) {
        for p in packets {
            let any = p.as_any();
            let blocks = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                &sr.reports
            } else {
                continue;
            };
            for b in blocks {
                self.streams.insert(
                    b.ssrc,
                    ReceptionState {
                        extended_highest_seq: b.last_sequence_number,
                        total_lost: b.total_lost,
                        jitter: b.jitter,
                    },
                );
                let arrival = crate::peer::quality::ntp_compact(arrival_ntp);
                if let Some(rtt) = crate::peer::quality::rtt_from_report_block(
                    arrival,
                    b.last_sender_report,
                    b.delay,
                ) {
                    self.rtt_ms = Some(rtt);
                }
            }
        }
    }
}

#[derive(Default)]
pub struct KeyframeRequestTap {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
    log: Option<SharedReceptionLog>,
}

impl KeyframeRequestTap {
    /// A tap that also records reception reports into `log`.
    pub fn with_log(log: SharedReceptionLog) -> Self {
        Self {
            log: Some(log),
            ..Self::default()
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        let mut deliver = false;
        if let Packet::Rtcp(packets) = &msg.message.packet {
            deliver = asks_for_keyframe(packets) || has_sender_report(packets);
            let reports = packets.iter().any(|p| {
                let any = p.as_any();
                any.is::<ReceiverReport>() || any.is::<SenderReport>()
            });
            if let (true, Some(log)) = (reports, &self.log) {
                let now = crate::sync::unix_us_to_ntp(crate::media::playout::unix_us_now());
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(packets, now);
            }
        }
        if deliver {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::reception_report::ReceptionReport;

    #[test]
    fn pli_and_fir_ask_for_keyframes_reports_do_not() {
        let pli: Box<dyn rtc::rtcp::Packet> = Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2,
        });
        let fir: Box<dyn rtc::rtcp::Packet> = Box::new(FullIntraRequest::default());
        let rr: Box<dyn rtc::rtcp::Packet> = Box::new(ReceiverReport::default());
        assert!(asks_for_keyframe(&[rr.clone(), pli]));
        assert!(asks_for_keyframe(&[fir]));
        assert!(!asks_for_keyframe(&[rr]));
        assert!(!asks_for_keyframe(&[]));
        let sr: Box<dyn rtc::rtcp::Packet> = Box::new(SenderReport::default());
        assert!(has_sender_report(&[sr]));
        assert!(!has_sender_report(&[
            Box::new(ReceiverReport::default()) as Box<dyn rtc::rtcp::Packet>
        ]));
    }

    #[test]
    fn reception_reports_about_our_streams_are_logged_with_their_round_trip() {
        let mut log = ReceptionLog::default();
        // Our SR left at NTP second 1000 (compact 1000 << 16); the remote held it 0.25 s and its
        // report arrives at 1000.5 s: 250 ms round trip.
        let block = ReceptionReport {
            ssrc: 7,
            fraction_lost: 25,
            total_lost: 12,
            last_sequence_number: 65_536 + 100,
            jitter: 480,
            last_sender_report: 1000 << 16,
            delay: 1 << 14,
        };
        let rr: Box<dyn rtc::rtcp::Packet> = Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![block.clone()],
            ..Default::default()
        });
        log.record(&[rr], (1000u64 << 32) | (1u64 << 31));
        assert_eq!(
            log.streams[&7],
            ReceptionState {
                extended_highest_seq: 65_636,
                total_lost: 12,
                jitter: 480
            }
        );
        assert!((log.rtt_ms.unwrap() - 250.0).abs() < 0.1);
        // Blocks inside a sender report count too; one without an LSR keeps the last RTT.
        let sr: Box<dyn rtc::rtcp::Packet> = Box::new(SenderReport {
            reports: vec![ReceptionReport {
                ssrc: 8,
                last_sender_report: 0,
                ..block
            }],
            ..Default::default()
        });
        log.record(&[sr], 0);
        assert_eq!(log.streams.len(), 2);
        assert!((log.rtt_ms.unwrap() - 250.0).abs() < 0.1);
    }
}
