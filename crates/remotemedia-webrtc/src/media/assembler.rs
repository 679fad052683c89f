//! Reassembles encoded video frames from RTP packets (VP8 payload descriptors removed by rtc's
//! depacketizer, VP9's by [`super::vp9_descriptor`]; H.264 single NAL units, STAP-A and FU-A (RFC 6184) turned into an
//! Annex B access unit). After any loss it drops frames until the next keyframe instead of
//! handing corrupt frames to the decoder, and says when to ask the sender for one (PLI).

use super::codec::VideoDecoder;
use crate::config::VideoCodec;
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;

/// What one packet completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A whole frame, decodable.
    Frame {
        data: Vec<u8>,
        rtp_timestamp: u32,
        keyframe: bool,
    },
    /// Something was lost or undecodable: ask the sender for a keyframe.
    NeedKeyframe,
    /// Nothing completed yet.
    Pending,
}

enum Depack {
    Vp8(Vp8Packet),
    /// Stateless: each packet's descriptor parsed on its own (`super::vp9_descriptor`).
    Vp9,
    H264(H264Packet),
}

impl Depack {
    fn depacketize(&mut self, b: &Bytes) -> Option<Bytes> {
        match self {
            Depack::Vp8(d) => d.depacketize(b).ok(),
            Depack::Vp9 => super::vp9_descriptor::parse(b)
                .ok()
                .map(|d| b.slice(d.header_len..)),
            Depack::H264(d) => d.depacketize(b).ok(),
        }
    }

    /// Forgets a partial FU-A NAL unit (its fragments must not run into the next frame's).
    fn reset(&mut self) {
        if let Depack::H264(d) = self {
            *d = H264Packet::default();
        }
    }
}

pub struct FrameAssembler {
    codec: VideoCodec,
    depack: Depack,
    frame: Vec<u8>,
    frame_ts: Option<u32>,
    last_seq: Option<u16>,
    /// True until a keyframe arrives whole (at the start and after a loss).
    waiting_keyframe: bool,
    /// The frame being built lost a packet.
    broken: bool,
}

impl FrameAssembler {
    /// `None` for codecs without a depacketizer here (none today).
    pub fn new(codec: VideoCodec) -> Option<Self> {
        let depack = match codec {
            VideoCodec::Vp8 => Depack::Vp8(Vp8Packet::default()),
            VideoCodec::Vp9 => Depack::Vp9,
            VideoCodec::H264 => Depack::H264(H264Packet::default()),
        };
        Some(Self {
            codec,
            depack,
            frame: Vec::new(),
            frame_ts: None,
            last_seq: None,
            waiting_keyframe: true,
            broken: false,
        })
    }

    /// Takes packets in arrival order.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &Bytes) -> Assembled {
        let mut lost = false;
        if let Some(last) = self.last_seq {
            let delta = seq.wrapping_sub(last);
            if delta == 0 || delta > 0x8000 {
                return Assembled::Pending; // duplicate or older than what we have
            }
            lost = delta != 1;
        }
        self.last_seq = Some(seq);
        if self.frame_ts != Some(timestamp) {
            // A new frame starts; an unfinished previous one lost its tail.
            if !self.frame.is_empty() || self.broken {
                lost = true;
            }
            self.frame.clear();
            self.broken = false;
            self.frame_ts = Some(timestamp);
            self.depack.reset();
        }
        if lost {
            self.broken = true;
            self.waiting_keyframe = true;
            self.depack.reset();
        }
        match self.depack.depacketize(payload) {
            Some(part) => self.frame.extend_from_slice(&part),
            None => {
                self.broken = true;
                self.waiting_keyframe = true;
            }
        }
        if !marker {
            return if lost {
                Assembled::NeedKeyframe
            } else {
                Assembled::Pending
            };
        }
        let data = std::mem::take(&mut self.frame);
        let broken = std::mem::replace(&mut self.broken, false);
        self.frame_ts = None;
        if broken || data.is_empty() {
            return Assembled::NeedKeyframe;
        }
        let keyframe = VideoDecoder::is_keyframe(self.codec, &data);
        if self.waiting_keyframe && !keyframe {
            return Assembled::NeedKeyframe;
        }
        self.waiting_keyframe = false;
        Assembled::Frame {
            data,
            rtp_timestamp: timestamp,
            keyframe,
        }
    }

    /// After the decoder refused a frame: wait for a keyframe.
    pub fn resync(&mut self) {
        self.waiting_keyframe = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{I420Buffer, VideoEncoder, VideoEncoderConfig};
    use rtc::rtp::codec::vp8::Vp8Payloader;
    use rtc::rtp::packetizer::Payloader;

    /// Encodes `n` frames of a moving pattern and cuts each into RTP payloads of ≤ 300 bytes.
    fn packets(n: usize) -> Vec<(u32, Vec<Bytes>, bool)> {
        let cfg = VideoEncoderConfig {
            width: 320,
            height: 240,
            framerate: 30,
            bitrate: 500_000,
            keyframe_interval: 10,
        };
        let mut enc = VideoEncoder::new(VideoCodec::Vp8, &cfg).unwrap();
        let mut pay = Vp8Payloader::default();
        let mut out = Vec::new();
        for i in 0..n {
            let frame = I420Buffer::test_pattern(320, 240, i as u32).unwrap();
            for ef in enc.encode(&frame.as_frame(), i as i64 * 33_333).unwrap() {
                let payloads = pay.payload(300, &Bytes::from(ef.data)).unwrap();
                out.push((i as u32 * 3000, payloads, ef.keyframe));
            }
        }
        out
    }

    fn feed(
        a: &mut FrameAssembler,
        frames: &[(u32, Vec<Bytes>, bool)],
        skip: Option<(usize, usize)>,
    ) -> Vec<Assembled> {
        let mut seq = 1000u16;
        let mut results = Vec::new();
        for (fi, (ts, payloads, _)) in frames.iter().enumerate() {
            for (pi, p) in payloads.iter().enumerate() {
                seq = seq.wrapping_add(1);
                if skip == Some((fi, pi)) {
                    continue;
                }
                let r = a.push(seq, *ts, pi + 1 == payloads.len(), p);
                if r != Assembled::Pending {
                    results.push(r);
                }
            }
        }
        results
    }

    #[test]
    fn whole_frames_come_out_decodable_in_order() {
        let frames = packets(12);
        assert!(
            frames.iter().any(|f| f.1.len() > 1),
            "test needs multi-packet frames"
        );
        let mut a = FrameAssembler::new(VideoCodec::Vp8).unwrap();
        let out = feed(&mut a, &frames, None);
        assert_eq!(out.len(), 12);
        let mut dec = VideoDecoder::new(VideoCodec::Vp8).unwrap();
        for (i, r) in out.into_iter().enumerate() {
            let Assembled::Frame {
                data,
                rtp_timestamp,
                keyframe,
            } = r
            else {
                panic!("frame {i}: {r:?}")
            };
            assert_eq!(rtp_timestamp, i as u32 * 3000);
            assert_eq!(keyframe, frames[i].2);
            assert!(dec.decode(&data).unwrap().is_some());
        }
    }

    #[test]
    fn a_lost_packet_drops_frames_until_the_next_keyframe_and_asks_for_one() {
        let frames = packets(14);
        // Lose a packet of frame 3 (keyframes at 0 and 10).
        let lose = (3, 0);
        let mut a = FrameAssembler::new(VideoCodec::Vp8).unwrap();
        let out = feed(&mut a, &frames, Some(lose));
        let delivered: Vec<u32> = out
            .iter()
            .filter_map(|r| match r {
                Assembled::Frame { rtp_timestamp, .. } => Some(rtp_timestamp / 3000),
                _ => None,
            })
            .collect();
        assert_eq!(delivered, vec![0, 1, 2, 10, 11, 12, 13]);
        assert!(out.contains(&Assembled::NeedKeyframe));
    }

    #[test]
    fn starts_at_a_keyframe_and_ignores_duplicates() {
        let frames = packets(12);
        let mut a = FrameAssembler::new(VideoCodec::Vp8).unwrap();
        // Join mid-stream at frame 5: nothing until the keyframe at 10.
        let out = feed(&mut a, &frames[5..], None);
        let first = out.iter().find_map(|r| match r {
            Assembled::Frame {
                rtp_timestamp,
                keyframe,
                ..
            } => Some((*rtp_timestamp, *keyframe)),
            _ => None,
        });
        assert_eq!(first, Some((30_000, true)));
        // A duplicate of the last packet changes nothing.
        assert_eq!(
            a.push(a.last_seq.unwrap(), 0, true, &frames[0].1[0]),
            Assembled::Pending
        );
    }

    #[test]
    fn garbage_payloads_do_not_panic() {
        let mut a = FrameAssembler::new(VideoCodec::Vp9).unwrap();
        for (i, junk) in [vec![], vec![0xff; 3], vec![0x80], vec![0u8; 50]]
            .iter()
            .enumerate()
        {
            let r = a.push(i as u16, 1, true, &Bytes::from(junk.clone()));
            assert_ne!(
                std::mem::discriminant(&r),
                std::mem::discriminant(&Assembled::Frame {
                    data: vec![],
                    rtp_timestamp: 0,
                    keyframe: false
                })
            );
        }
    }
    /// VP9 as Chromium sends it: flexible mode, a 15-bit picture id, and one reference index
    /// (`P_DIFF`) on every packet of an inter frame; keyframes with a scalability structure.
    fn chromium_vp9_packets(n: usize) -> Vec<(u32, Vec<Bytes>, bool)> {
        let cfg = VideoEncoderConfig {
            width: 320,
            height: 240,
            framerate: 30,
            bitrate: 500_000,
            keyframe_interval: 0,
        };
        let mut enc = VideoEncoder::new(VideoCodec::Vp9, &cfg).unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            let frame = I420Buffer::test_pattern(320, 240, i as u32).unwrap();
            for ef in enc.encode(&frame.as_frame(), i as i64 * 33_333).unwrap() {
                let chunks: Vec<&[u8]> = ef.data.chunks(300).collect();
                let pid = 0x8000 | (i as u16 & 0x7fff);
                let payloads = chunks
                    .iter()
                    .enumerate()
                    .map(|(ci, c)| {
                        let (b, e) = (ci == 0, ci + 1 == chunks.len());
                        let v = ef.keyframe && b;
                        // I P L F B E V Z
                        let first = 0x80
                            | (u8::from(!ef.keyframe) << 6)
                            | 0x10
                            | (u8::from(b) << 3)
                            | (u8::from(e) << 2)
                            | (u8::from(v) << 1);
                        let mut p = vec![first, (pid >> 8) as u8, pid as u8];
                        if !ef.keyframe {
                            p.push(1 << 1); // P_DIFF 1, N=0
                        }
                        if v {
                            p.extend_from_slice(&[0x18, 0x01, 0x40, 0x00, 0xF0, 0x01, 0x00]);
                        }
                        p.extend_from_slice(c);
                        Bytes::from(p)
                    })
                    .collect();
                out.push((i as u32 * 3000, payloads, ef.keyframe));
            }
        }
        out
    }

    #[test]
    fn every_vp9_frame_in_chromiums_flexible_mode_comes_out_and_decodes() {
        let frames = chromium_vp9_packets(40);
        assert!(
            frames.iter().filter(|f| f.1.len() > 1).count() > 5,
            "frames of several packets"
        );
        let mut a = FrameAssembler::new(VideoCodec::Vp9).unwrap();
        let out = feed(&mut a, &frames, None);
        let mut dec = VideoDecoder::new(VideoCodec::Vp9).unwrap();
        let mut decoded = 0;
        for r in &out {
            let Assembled::Frame { data, .. } = r else {
                panic!("not a whole frame: {r:?}");
            };
            if dec.decode(data).unwrap().is_some() {
                decoded += 1;
            }
        }
        assert_eq!(decoded, frames.len());
    }
}
