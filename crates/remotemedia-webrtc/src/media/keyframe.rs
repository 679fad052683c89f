//! The RTCP the application needs: keyframe requests (PLI, FIR) from the receivers of our video,
//! and sender reports from the senders of what we receive (for A/V sync).
//!
//! webrtc-rs ends inbound RTCP at its interceptor chain; only packets an interceptor marks with
//! `DeliverToApplication` reach a track's event stream. [`KeyframeRequestTap`] marks the RTCP
//! batches that hold a PLI, a FIR or a sender report (and passes every packet on unchanged): a
//! local video track answers keyframe requests, a remote track's reader maps its RTP clock.

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
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

#[derive(Default)]
pub struct KeyframeRequestTap {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if asks_for_keyframe(packets) || has_sender_report(packets) {
                msg.message.add(Attribute::DeliverToApplication);
            }
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
    use rtc::rtcp::receiver_report::ReceiverReport;

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
}
