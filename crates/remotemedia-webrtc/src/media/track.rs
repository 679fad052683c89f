//! Media tracks on a peer connection: a local Opus track that encodes PCM and sends it as RTP,
//! and the reader of a remote audio track that decodes what arrives.
//!
//! Only what this build encodes and decodes is negotiated ([`register_codecs`]). A remote video
//! track's packets are decoded by the codec their payload type was negotiated as, resolved per
//! packet (see [`read_remote_track`]); a payload type that names nothing decodable is reported
//! once (`ERR_UNSUPPORTED_CODEC`) and its packets skipped, never ending the track.

use super::assembler::{Assembled, FrameAssembler};
use super::audio::{AudioEncoderConfig, Pcm, OPUS_SAMPLE_RATE};
use super::codec::{OpusEncoder, VideoDecoder, VideoEncoder};
use super::keyframe::asks_for_keyframe;
use super::playout::{DecodedVideo, Playout};
use super::video::{validate_video_bitrate, I420Frame, VideoEncoderConfig};
use crate::config::VideoCodec;
use crate::error::{Error, Result};
use crate::peer::bitrate::{FrameDecimator, ResolutionLadder, VideoOperatingPoint};
use crate::peer::remote_tracks::TrackFormats;
use crate::pipeline::video_scale::scale_i420;
use crate::sync::StreamKind;
use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::codec::vp9::Vp9Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use serde::Serialize;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::PeerConnection as RtcPeerConnection;
use webrtc::rtp_transceiver::RtpSender;

static NEXT_SSRC: AtomicU32 = AtomicU32::new(0x5EED_0000);

fn new_ssrc() -> u32 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    NEXT_SSRC.fetch_add(1, Ordering::Relaxed) ^ t.rotate_left(16)
}

/// The Opus codec as offered in SDP (RFC 7587: always 48 kHz / 2 channels in SDP).
pub fn opus_rtp_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_SAMPLE_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The payload type negotiated for `mime` on `sender` (from the SDP, not hard-coded); asked of
/// webrtc-rs once per track (it locks the connection), then kept in `cache`.
async fn negotiated_pt(
    sender: &Arc<dyn RtpSender>,
    mime: &str,
    cache: &std::sync::OnceLock<u8>,
) -> Result<u8> {
    if let Some(pt) = cache.get() {
        return Ok(*pt);
    }
    let pt = sender
        .get_parameters()
        .await
        .map_err(|e| Error::webrtc("rtp sender", e))?
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| {
            c.rtp_codec.mime_type.eq_ignore_ascii_case(mime)
                // H.264 is sent fragmented (FU-A): only a packetization-mode=1 payload type.
                && (!mime.eq_ignore_ascii_case(MIME_TYPE_H264)
                    || c.rtp_codec.sdp_fmtp_line.contains("packetization-mode=1"))
        })
        .map(|c| c.payload_type)
        .ok_or_else(|| Error::PeerNotConnected("track is not negotiated yet".into()))?;
    Ok(*cache.get_or_init(|| pt))
}

/// A one-encoding track description of `kind` and `codec` with a fresh SSRC.
fn describe_track(kind: RtpCodecKind, codec: RTCRtpCodec) -> (MediaStreamTrack, u32) {
    let ssrc = new_ssrc();
    let label = if kind == RtpCodecKind::Audio {
        "audio"
    } else {
        "video"
    };
    let track = MediaStreamTrack::new(
        "remotemedia".to_owned(),
        format!("{label}-{ssrc:08x}"),
        label.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    (track, ssrc)
}

async fn add_to_pc(
    pc: &Arc<dyn RtcPeerConnection>,
    track: Arc<dyn TrackLocal>,
) -> Result<Arc<dyn RtpSender>> {
    pc.add_track(track)
        .await
        .map_err(|e| Error::webrtc("add track", e))
}

/// Whether a local track is negotiated: the offer/answer exchange that declares its SSRC is
/// complete (our offer answered, or our answer applied). Until then no RTP is sent on it, so
/// that a peer never receives packets for an SSRC no description it applied declares
/// (JSEP, RFC 8829 §5.9-5.10: media flows once the answer is applied).
pub struct NegotiatedGate {
    ssrc: u32,
    tx: tokio::sync::watch::Sender<bool>,
    /// Sends before the gate opens are dropped quietly rather than refused: a track carried
    /// over by a full reconnection, whose application keeps sending through the gap.
    quiet: std::sync::atomic::AtomicBool,
}

impl NegotiatedGate {
    /// Sends before negotiation are dropped rather than refused (a track a full reconnection
    /// carries over, while the application keeps sending).
    pub(crate) fn drop_until_negotiated(&self) {
        self.quiet.store(true, Ordering::Relaxed);
    }

    fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            tx: tokio::sync::watch::channel(false).0,
            quiet: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the exchange that declares the track is complete.
    pub fn is_negotiated(&self) -> bool {
        *self.tx.borrow()
    }

    /// Opens the gate when `sdp`, a local description of a completed exchange, declares the
    /// track's SSRC (`a=ssrc:<ssrc> ...`).
    pub(crate) fn note_local_description(&self, sdp: &str) {
        if !self.is_negotiated() && declares_ssrc(sdp, self.ssrc) {
            self.tx.send_replace(true);
        }
    }

    /// Whether a frame may be sent now: `Ok(true)` once negotiated; before, `Ok(false)` (drop
    /// it) for a track a full reconnection carried over, and `PeerNotConnected` otherwise.
    pub fn may_send(&self) -> Result<bool> {
        if self.is_negotiated() {
            Ok(true)
        } else if self.quiet.load(Ordering::Relaxed) {
            Ok(false)
        } else {
            Err(Error::PeerNotConnected(
                "track is not negotiated yet (its offer has no answer)".into(),
            ))
        }
    }

    /// Waits until the track is negotiated, at most `timeout`.
    pub(crate) async fn wait(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.tx.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|open| *open).await.map(|_| ())
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::ShutDown("track closed".into())),
            Err(_) => Err(Error::Timeout(format!(
                "track not negotiated within {} ms: no answer declared it",
                timeout.as_millis()
            ))),
        }
    }
}

/// Whether an SDP declares `ssrc` in an `a=ssrc:` line (RFC 5576).
pub(crate) fn declares_ssrc(sdp: &str, ssrc: u32) -> bool {
    let want = ssrc.to_string();
    sdp.lines().any(|l| {
        l.trim_end()
            .strip_prefix("a=ssrc:")
            .and_then(|rest| rest.split([' ', '\t']).next())
            == Some(want.as_str())
    })
}

/// The H.264 format offered and sent (with the cargo feature `h264`): constrained baseline
/// (what OpenH264 encodes), level 3.1, FU-A fragmentation (RFC 6184 non-interleaved mode).
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// Registers the codecs a peer connection offers and accepts: only what this build encodes and
/// decodes, so that no remote can pick a codec whose frames would be dropped here. Audio: Opus.
/// Video: `preferred` first, then VP8, VP9 profile 0 and, with the cargo feature `h264`, H.264
/// as [`H264_FMTP`] (constrained baseline, packetization-mode=1: what OpenH264 sends); each
/// with its RTX form. No AV1, HEVC or other VP9 profiles (webrtc-rs's defaults register them,
/// but nothing here decodes them). Payload types are webrtc-rs's; the ones in use come from
/// the SDP.
pub fn register_codecs(media: &mut MediaEngine, preferred: VideoCodec) -> Result<()> {
    let err = |e| Error::webrtc("media engine", e);
    let codec = |mime: &str, clock_rate, channels, fmtp: &str, fb: &[RTCPFeedback], pt| {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: fb.to_vec(),
            },
            payload_type: pt,
        }
    };
    media
        .register_codec(
            codec(
                MIME_TYPE_OPUS,
                48_000,
                2,
                "minptime=10;useinbandfec=1",
                &[],
                111,
            ),
            RtpCodecKind::Audio,
        )
        .map_err(err)?;
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let fb = [
        fb("goog-remb", ""),
        fb("ccm", "fir"),
        fb("nack", ""),
        fb("nack", "pli"),
    ];
    // (codec, mime, fmtp, payload type, its RTX payload type)
    let mut video = vec![
        (VideoCodec::Vp8, MIME_TYPE_VP8, "", 96, 97),
        (VideoCodec::Vp9, MIME_TYPE_VP9, "profile-id=0", 98, 99),
    ];
    if cfg!(feature = "h264") {
        video.push((VideoCodec::H264, MIME_TYPE_H264, H264_FMTP, 102, 103));
    }
    // The transport's codec first: offers list it first, and answers prefer it.
    video.sort_by_key(|v| v.0 != preferred);
    for (_, mime, fmtp, pt, rtx) in video {
        media
            .register_codec(codec(mime, 90_000, 0, fmtp, &fb, pt), RtpCodecKind::Video)
            .map_err(err)?;
        let apt = format!("apt={pt}");
        media
            .register_codec(
                codec(MIME_TYPE_RTX, 90_000, 0, &apt, &[], rtx),
                RtpCodecKind::Video,
            )
            .map_err(err)?;
    }
    Ok(())
}

/// The video codec of an RTP format negotiated in SDP (`name` as in `a=rtpmap`, any case;
/// `fmtp` its `a=fmtp` parameters), if this build decodes it: VP8, VP9 profile 0 (a VP9 without
/// `profile-id` is profile 0, RFC 9628), and H.264 with packetization-mode=1 when built with
/// the cargo feature `h264`.
pub fn decodable_video_codec(name: &str, fmtp: &str) -> Option<VideoCodec> {
    let param = |key: &str| {
        fmtp.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        })
    };
    let name = name.trim_start_matches("video/");
    if name.eq_ignore_ascii_case("VP8") {
        Some(VideoCodec::Vp8)
    } else if name.eq_ignore_ascii_case("VP9") {
        matches!(param("profile-id"), None | Some("0")).then_some(VideoCodec::Vp9)
    } else if cfg!(feature = "h264") && name.eq_ignore_ascii_case("H264") {
        (param("packetization-mode") == Some("1")).then_some(VideoCodec::H264)
    } else {
        None
    }
}

/// An RTP format that carries no media of its own (retransmission, redundancy, FEC): it
/// accompanies a media format and is never a reason to report or reject anything.
pub fn is_repair_format(name: &str) -> bool {
    let name = name.rsplit('/').next().unwrap_or(name);
    ["rtx", "red", "ulpfec", "flexfec-03", "flexfec"]
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r))
}

/// Whether this build decodes the audio format `name` (`a=rtpmap` name): Opus only.
pub fn decodable_audio_codec(name: &str) -> bool {
    name.trim_start_matches("audio/")
        .eq_ignore_ascii_case("opus")
}

/// The SDP codec for a video codec.
pub fn video_rtp_codec(codec: VideoCodec) -> Result<RTCRtpCodec> {
    let (mime, fmtp) = match codec {
        VideoCodec::Vp8 => (MIME_TYPE_VP8, ""),
        VideoCodec::Vp9 => (MIME_TYPE_VP9, "profile-id=0"),
        #[cfg(feature = "h264")]
        VideoCodec::H264 => (MIME_TYPE_H264, H264_FMTP),
        #[cfg(not(feature = "h264"))]
        VideoCodec::H264 => {
            return Err(Error::InvalidConfig(
                "videoCodec 'h264' is not built in: build with the cargo feature `h264`".into(),
            ))
        }
    };
    Ok(RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    })
}

/// A local video track: I420 frames in, VP8/VP9 (or H.264) over RTP out.
pub struct LocalVideoTrack {
    track: Arc<TrackLocalStaticRTP>,
    payload_type: std::sync::OnceLock<u8>,
    negotiated: NegotiatedGate,
    packetizer: Mutex<VideoPacketizer>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    codec: VideoCodec,
    config: VideoEncoderConfig,
    state: Mutex<AdaptiveVideoSender>,
    max_bitrate: AtomicU32,
    keyframe_requests: Arc<std::sync::atomic::AtomicU64>,
    /// Set when a receiver asked for a keyframe; taken by whichever encoder feeds this track.
    wants_keyframe: Arc<std::sync::atomic::AtomicBool>,
}

/// An encoder and the timing it derives RTP durations from; one per track, or one for a
/// broadcast to many tracks.
pub struct VideoSendState {
    encoder: VideoEncoder,
}

/// What a local video track sends now: the step of its [`ResolutionLadder`] and the encoder's
/// target (`peer.getMetrics().video`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoSendingFormat {
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    pub target_bitrate_bps: u32,
}

/// The encoder of one track that follows its target bitrate down (and back up) the track's
/// [`ResolutionLadder`]: frames come in at the configured size and rate; at a lower step they
/// are downscaled (area filter, same aspect ratio, even sizes) and/or thinned out
/// ([`FrameDecimator`]) before encoding. A step change re-creates the encoder at the new size
/// and rate, so its first frame is a keyframe (VP8/VP9 keyframes carry the size; the receiver's
/// decoder follows).
pub struct AdaptiveVideoSender {
    codec: VideoCodec,
    config: VideoEncoderConfig,
    ladder: ResolutionLadder,
    step: usize,
    target: u32,
    decimator: FrameDecimator,
    /// `None` until the first frame after a step change.
    send: Option<VideoSendState>,
}

impl AdaptiveVideoSender {
    /// At the configured size, rate and bitrate (`config` is validated).
    pub fn new(codec: VideoCodec, config: &VideoEncoderConfig) -> Result<Self> {
        let send = VideoSendState::new(codec, config)?;
        let ladder = ResolutionLadder::for_track(
            VideoOperatingPoint::new(config.width, config.height, config.framerate),
            config.bitrate as f64,
        );
        Ok(Self {
            codec,
            config: *config,
            ladder,
            step: 0,
            target: config.bitrate,
            decimator: FrameDecimator::new(config.framerate, config.framerate),
            send: Some(send),
        })
    }

    /// The encoder config of ladder step `step`.
    fn step_config(&self, step: usize) -> VideoEncoderConfig {
        let p = self.ladder.point(step);
        let interval = self.config.keyframe_interval;
        VideoEncoderConfig {
            width: p.width,
            height: p.height,
            framerate: p.framerate,
            bitrate: self.target,
            // The same keyframe spacing in time at the lower rate.
            keyframe_interval: if interval == 0 {
                0
            } else {
                ((interval as u64 * p.framerate as u64) / self.config.framerate as u64).max(1)
                    as u32
            },
        }
    }

    /// Sets the encoder target (bit/s, validated) and the ladder step that goes with it.
    pub fn set_target(&mut self, bitrate: u32) -> Result<()> {
        validate_video_bitrate(bitrate)?;
        let step = self.ladder.select(bitrate as f64, self.step);
        if step != self.step {
            tracing::debug!(
                from = ?self.ladder.point(self.step),
                to = ?self.ladder.point(step),
                bitrate,
                "video step change"
            );
            self.step = step;
            self.decimator =
                FrameDecimator::new(self.config.framerate, self.ladder.point(step).framerate);
            // Re-created at the new size with the first frame (on the encoding thread).
            self.send = None;
        }
        if let Some(send) = self.send.as_mut() {
            send.encoder.set_bitrate(bitrate)?;
        }
        self.target = bitrate;
        Ok(())
    }

    pub fn sending_format(&self) -> VideoSendingFormat {
        let p = self.ladder.point(self.step);
        VideoSendingFormat {
            width: p.width,
            height: p.height,
            framerate: p.framerate,
            target_bitrate_bps: self.target,
        }
    }

    /// The track follows the size of the frames it is given (a camera switching resolution, a
    /// pipeline's scaled output): the same rate and bitrate, the ladder rebuilt for the new
    /// picture, the encoder re-created (a keyframe first).
    fn resize(&mut self, width: u32, height: u32) -> Result<()> {
        let config = VideoEncoderConfig {
            width,
            height,
            ..self.config
        };
        config.validate()?;
        tracing::debug!(
            from = ?(self.config.width, self.config.height),
            to = ?(width, height),
            "video track follows the frame size"
        );
        self.ladder = ResolutionLadder::for_track(
            VideoOperatingPoint::new(width, height, config.framerate),
            config.bitrate as f64,
        );
        self.config = config;
        self.step = self.ladder.select(self.target as f64, 0);
        self.decimator =
            FrameDecimator::new(config.framerate, self.ladder.point(self.step).framerate);
        self.send = None;
        Ok(())
    }

    /// Encodes one packed I420 frame (of the configured size, or a new size the track then
    /// follows); nothing (an empty vector) when
    /// the current step drops it. A keyframe asked for on a dropped frame is `Ok(None)`:
    /// the caller keeps the request for the next frame.
    pub fn encode(
        &mut self,
        data: &[u8],
        width: u32,
        height: u32,
        timestamp_us: i64,
        keyframe: bool,
    ) -> Result<Option<Vec<EncodedFrame>>> {
        I420Frame::from_packed(width, height, data)?;
        if (width, height) != (self.config.width, self.config.height) {
            self.resize(width, height)?;
        }
        if !self.decimator.keep(timestamp_us) {
            return Ok(None);
        }
        let cfg = self.step_config(self.step);
        if self.send.is_none() {
            self.send = Some(VideoSendState::new(self.codec, &cfg)?);
        }
        let send = self.send.as_mut().expect("set above");
        if (cfg.width, cfg.height) == (width, height) {
            send.encode(data, width, height, timestamp_us, keyframe)
                .map(Some)
        } else {
            let scaled = scale_i420(data, width, height, cfg.width, cfg.height)?;
            send.encode(&scaled, cfg.width, cfg.height, timestamp_us, keyframe)
                .map(Some)
        }
    }
}

/// An encoded video frame ready to packetize.
#[derive(Clone)]
pub struct EncodedFrame {
    pub data: Bytes,
    /// Capture time the caller gave (µs); RTP time follows it.
    pub timestamp_us: i64,
}

/// Cuts encoded frames into RTP packets of one track: its own sequence numbers, and RTP time
/// = a random base + the frame's timestamp at 90 kHz.
struct VideoPacketizer {
    payloader: Box<dyn Payloader>,
    sequence: u16,
    base: Option<(i64, u32)>,
}

impl VideoPacketizer {
    fn new(codec: VideoCodec) -> Self {
        let payloader: Box<dyn Payloader> = match codec {
            VideoCodec::Vp9 => Box::new(Vp9Payloader::default()),
            // Keeps each IDR's SPS and PPS and sends them before it in one STAP-A.
            VideoCodec::H264 => Box::new(H264Payloader::default()),
            VideoCodec::Vp8 => Box::new(Vp8Payloader::default()),
        };
        let seed = new_ssrc();
        Self {
            payloader,
            sequence: seed as u16,
            base: None,
        }
    }

    fn packets(
        &mut self,
        frame: &EncodedFrame,
        pt: u8,
        ssrc: u32,
    ) -> Result<Vec<rtc::rtp::Packet>> {
        let (first_us, base) = *self
            .base
            .get_or_insert((frame.timestamp_us, new_ssrc().rotate_left(7)));
        let ticks = ((frame.timestamp_us - first_us) as i128 * 90_000 / 1_000_000) as i64;
        let timestamp = base.wrapping_add(ticks as u32);
        let payloads = self
            .payloader
            .payload(RTP_MTU, &frame.data)
            .map_err(|e| Error::Encoding(format!("packetizing video: {e}")))?;
        let n = payloads.len();
        Ok(payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                self.sequence = self.sequence.wrapping_add(1);
                rtp_packet(pt, self.sequence, timestamp, ssrc, i + 1 == n, payload)
            })
            .collect())
    }
}

/// An RTP packet with a plain version-2 header (no CSRCs, no extensions).
fn rtp_packet(
    payload_type: u8,
    sequence_number: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
    payload: Bytes,
) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type,
            sequence_number,
            timestamp,
            ssrc,
            ..Default::default()
        },
        payload,
    }
}

/// RTP payload size for video (leaves room for SRTP and header extensions).
const RTP_MTU: usize = 1200;

impl VideoSendState {
    pub fn new(codec: VideoCodec, config: &VideoEncoderConfig) -> Result<Self> {
        Ok(Self {
            encoder: VideoEncoder::new(codec, config)?,
        })
    }

    /// Encodes one packed I420 frame; returns the encoded frames with their timestamps (µs).
    pub fn encode(
        &mut self,
        data: &[u8],
        width: u32,
        height: u32,
        timestamp_us: i64,
        keyframe: bool,
    ) -> Result<Vec<EncodedFrame>> {
        let frame = I420Frame::from_packed(width, height, data)?;
        if keyframe {
            self.encoder.force_keyframe();
        }
        let out = self.encoder.encode(&frame, timestamp_us)?;
        Ok(out
            .into_iter()
            .map(|f| EncodedFrame {
                data: Bytes::from(f.data),
                timestamp_us: f.timestamp_us,
            })
            .collect())
    }
}

impl LocalVideoTrack {
    pub async fn add_to(
        pc: &Arc<dyn RtcPeerConnection>,
        codec: VideoCodec,
        config: VideoEncoderConfig,
    ) -> Result<Self> {
        config.validate()?;
        let rtp_codec = video_rtp_codec(codec)?;
        let adaptive = AdaptiveVideoSender::new(codec, &config)?;
        // Packetized here rather than by webrtc-rs's sample track, which stamps each frame
        // with the previous frame's duration: RTP time must follow the frame's own timestamp.
        let (desc, ssrc) = describe_track(RtpCodecKind::Video, rtp_codec);
        let track = Arc::new(TrackLocalStaticRTP::new(desc));
        let sender = add_to_pc(pc, track.clone()).await?;
        let packetizer = Mutex::new(VideoPacketizer::new(codec));
        let keyframe_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let wants_keyframe = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Answer the receivers' PLI/FIR (marked for us by `keyframe::KeyframeRequestTap`): the
        // next frame encoded for this track is a keyframe. Ends with the track.
        tokio::spawn({
            let track = track.clone();
            let count = keyframe_requests.clone();
            let wants = wants_keyframe.clone();
            async move {
                while let Some(ev) = track.poll().await {
                    let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
                        continue;
                    };
                    if asks_for_keyframe(&packets) {
                        wants.store(true, Ordering::SeqCst);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Self {
            track,
            payload_type: std::sync::OnceLock::new(),
            negotiated: NegotiatedGate::new(ssrc),
            packetizer,
            sender,
            ssrc,
            codec,
            max_bitrate: AtomicU32::new(config.bitrate),
            config,
            state: Mutex::new(adaptive),
            keyframe_requests,
            wants_keyframe,
        })
    }

    /// The RTP sender carrying this track.
    pub fn sender(&self) -> &Arc<dyn RtpSender> {
        &self.sender
    }

    /// Whether the track is negotiated yet ([`NegotiatedGate`]): nothing is sent before.
    pub fn negotiation(&self) -> &NegotiatedGate {
        &self.negotiated
    }

    /// Changes the bitrate (bit/s) the application wants, from the next frame on; adaptive
    /// control stays at or below it.
    /// A target below what the configured size and rate need steps the track down its
    /// [`ResolutionLadder`] (see [`AdaptiveVideoSender`]).
    pub fn set_bitrate(&self, bitrate: u32) -> Result<()> {
        self.state.lock().unwrap().set_target(bitrate)?;
        self.max_bitrate.store(bitrate, Ordering::Relaxed);
        Ok(())
    }

    /// The bitrate the application configured (or last set), bit/s.
    pub fn max_bitrate(&self) -> u32 {
        self.max_bitrate.load(Ordering::Relaxed)
    }

    /// Sets the encoder's target from congestion control: at most [`Self::max_bitrate`]; the
    /// resolution and framerate follow it down the ladder and back up.
    pub fn apply_target_bitrate(&self, bitrate: u32) -> Result<()> {
        let b = bitrate
            .min(self.max_bitrate())
            .max(super::video::MIN_VIDEO_BITRATE);
        self.state.lock().unwrap().set_target(b)
    }

    /// The encoder's target bitrate now, bit/s.
    pub fn bitrate(&self) -> u32 {
        self.state.lock().unwrap().target
    }

    /// The size, rate and target bitrate this track sends at now.
    pub fn sending_format(&self) -> VideoSendingFormat {
        self.state.lock().unwrap().sending_format()
    }

    /// Takes a pending keyframe request (for an encoder that feeds this track).
    pub fn take_keyframe_request(&self) -> bool {
        self.wants_keyframe.swap(false, Ordering::SeqCst)
    }

    /// Keyframe requests (PLI/FIR) received from the other side so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests.load(Ordering::Relaxed)
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    pub fn config(&self) -> &VideoEncoderConfig {
        &self.config
    }

    /// The next frame encoded for this track will be a keyframe.
    pub fn request_keyframe(&self) {
        self.wants_keyframe.store(true, Ordering::SeqCst);
    }

    /// Encodes one packed I420 frame with this track's encoder (CPU-bound: call from a
    /// blocking-capable thread).
    pub fn encode(
        &self,
        data: &[u8],
        width: u32,
        height: u32,
        timestamp_us: i64,
        keyframe: bool,
    ) -> Result<Vec<EncodedFrame>> {
        let keyframe = keyframe | self.take_keyframe_request();
        let out = self
            .state
            .lock()
            .unwrap()
            .encode(data, width, height, timestamp_us, keyframe)?;
        match out {
            Some(frames) => Ok(frames),
            None => {
                // Dropped at a lower framerate: a wanted keyframe comes with the next frame sent.
                if keyframe {
                    self.wants_keyframe.store(true, Ordering::SeqCst);
                }
                Ok(Vec::new())
            }
        }
    }

    pub async fn send_encoded(&self, frames: Vec<EncodedFrame>) -> Result<()> {
        let mime = match self.codec {
            VideoCodec::Vp8 => MIME_TYPE_VP8,
            VideoCodec::Vp9 => MIME_TYPE_VP9,
            VideoCodec::H264 => MIME_TYPE_H264,
        };
        if !self.negotiated.may_send()? {
            return Ok(());
        }
        let pt = negotiated_pt(&self.sender, mime, &self.payload_type).await?;
        for frame in &frames {
            let packets = self
                .packetizer
                .lock()
                .unwrap()
                .packets(frame, pt, self.ssrc)?;
            for p in packets {
                self.track
                    .write_rtp(p)
                    .await
                    .map_err(|e| Error::Encoding(format!("sending video: {e}")))?;
            }
        }
        Ok(())
    }
}

/// The rest of a send that had to wait for room in the connection's queue
/// ([`LocalAudioTrack::send_now`]).
pub type PendingSend = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// A local audio track: PCM in, Opus over RTP out.
pub struct LocalAudioTrack {
    track: Arc<TrackLocalStaticRTP>,
    payload_type: std::sync::OnceLock<u8>,
    negotiated: NegotiatedGate,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
    config: AudioEncoderConfig,
    encoder: Mutex<OpusEncoder>,
    rtp: Mutex<AudioPacketizer>,
    max_bitrate: AtomicU32,
}

/// One RTP packet per Opus packet (RFC 7587), numbered from a random sequence number and RTP
/// time, the RTP time advancing by each packet's duration at 48 kHz.
///
/// What webrtc-rs's sample track did, without its per-packet work this path does not need
/// (a copy of the codec description, two more locks, the header-extension map).
struct AudioPacketizer {
    sequence: u16,
    timestamp: u32,
}

impl AudioPacketizer {
    fn new() -> Self {
        let seed = new_ssrc();
        Self {
            sequence: seed as u16,
            timestamp: new_ssrc().rotate_left(11),
        }
    }

    fn packet(
        &mut self,
        payload: Bytes,
        duration: Duration,
        pt: u8,
        ssrc: u32,
    ) -> rtc::rtp::Packet {
        self.sequence = self.sequence.wrapping_add(1);
        let timestamp = self.timestamp;
        let ticks = duration.as_micros() as u64 * OPUS_SAMPLE_RATE as u64 / 1_000_000;
        self.timestamp = self.timestamp.wrapping_add(ticks as u32);
        // Marked, as webrtc-rs's packetizer marks the last packet of every sample.
        rtp_packet(pt, self.sequence, timestamp, ssrc, true, payload)
    }
}

impl LocalAudioTrack {
    /// Adds the track to `pc` (the caller renegotiates).
    pub async fn add_to(
        pc: &Arc<dyn RtcPeerConnection>,
        config: AudioEncoderConfig,
    ) -> Result<Self> {
        config.validate()?;
        let encoder = OpusEncoder::new(&config)?;
        let (desc, ssrc) = describe_track(RtpCodecKind::Audio, opus_rtp_codec());
        let track = Arc::new(TrackLocalStaticRTP::new(desc));
        let sender = add_to_pc(pc, track.clone()).await?;
        Ok(Self {
            track,
            payload_type: std::sync::OnceLock::new(),
            negotiated: NegotiatedGate::new(ssrc),
            sender,
            ssrc,
            max_bitrate: AtomicU32::new(config.bitrate),
            config,
            encoder: Mutex::new(encoder),
            rtp: Mutex::new(AudioPacketizer::new()),
        })
    }

    /// The RTP sender carrying this track.
    pub fn sender(&self) -> &Arc<dyn RtpSender> {
        &self.sender
    }

    /// Whether the track is negotiated yet ([`NegotiatedGate`]): nothing is sent before.
    pub fn negotiation(&self) -> &NegotiatedGate {
        &self.negotiated
    }

    /// Changes the Opus bitrate (bit/s) the application wants, from the next packet on;
    /// adaptive control stays at or below it.
    pub fn set_bitrate(&self, bitrate: u32) -> Result<()> {
        self.encoder.lock().unwrap().set_bitrate(bitrate)?;
        self.max_bitrate.store(bitrate, Ordering::Relaxed);
        Ok(())
    }

    /// The bitrate the application configured (or last set), bit/s.
    pub fn max_bitrate(&self) -> u32 {
        self.max_bitrate.load(Ordering::Relaxed)
    }

    /// Sets the Opus target from congestion control (at most [`Self::max_bitrate`]) and the
    /// loss it plans its FEC for.
    pub fn apply_target_bitrate(&self, bitrate: u32, loss: f64) -> Result<()> {
        let b = bitrate
            .min(self.max_bitrate())
            .max(super::audio::MIN_AUDIO_BITRATE);
        let mut enc = self.encoder.lock().unwrap();
        enc.set_bitrate(b)?;
        enc.set_packet_loss_percent((loss * 100.0).round().clamp(0.0, 100.0) as u8)
    }

    /// The encoder's target bitrate now, bit/s.
    pub fn bitrate(&self) -> u32 {
        self.encoder.lock().unwrap().config().bitrate
    }

    pub fn config(&self) -> &AudioEncoderConfig {
        &self.config
    }

    /// Encodes one frame (10/20/40/60 ms at 48 kHz) to an Opus packet.
    pub fn encode(&self, pcm: Pcm<'_>) -> Result<(Bytes, Duration)> {
        let len = match pcm {
            Pcm::F32(s) => s.len(),
            Pcm::I16(s) => s.len(),
        };
        let duration = self.config.frame_duration(len)?;
        let packet = self.encoder.lock().unwrap().encode(pcm)?;
        Ok((
            Bytes::from(packet),
            Duration::from_millis(duration.millis() as u64),
        ))
    }

    /// Sends an already encoded Opus packet of `duration` (used to encode once for many peers).
    pub async fn send_packet(&self, packet: Bytes, duration: Duration) -> Result<()> {
        if !self.negotiated.may_send()? {
            return Ok(());
        }
        let pt = negotiated_pt(&self.sender, MIME_TYPE_OPUS, &self.payload_type).await?;
        let packet = self
            .rtp
            .lock()
            .unwrap()
            .packet(packet, duration, pt, self.ssrc);
        self.track
            .write_rtp(packet)
            .await
            .map_err(|e| Error::Encoding(format!("sending audio: {e}")))
    }

    /// Encodes one frame and hands its packet to the connection within the call when the
    /// connection's queue has room (the usual case): `Ok(None)`. When it has to wait, the rest of
    /// the send comes back as a future (`Ok(Some(rest))`) for the caller to await or spawn.
    /// Call it inside the runtime's context (a waiting send is woken by the connection's task).
    pub fn send_now(self: &Arc<Self>, pcm: Pcm<'_>) -> Result<Option<PendingSend>> {
        // Not encoded at all before negotiation (the encoder's state would move on for nothing).
        if !self.negotiated.may_send()? {
            return Ok(None);
        }
        let (packet, duration) = self.encode(pcm)?;
        let track = self.clone();
        let mut send: PendingSend =
            Box::pin(async move { track.send_packet(packet, duration).await });
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(send.as_mut(), &mut cx) {
            std::task::Poll::Ready(r) => r.map(|()| None),
            std::task::Poll::Pending => Ok(Some(send)),
        }
    }

    /// Encodes and sends one frame.
    pub async fn send(&self, pcm: Pcm<'_>) -> Result<()> {
        if !self.negotiated.may_send()? {
            return Ok(());
        }
        let (packet, duration) = self.encode(pcm)?;
        self.send_packet(packet, duration).await
    }
}

/// A decoded audio frame as delivered to the application.
#[derive(Debug, Clone)]
pub struct AudioFrame {
    /// Interleaved samples.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub channels: u16,
    pub rtp_timestamp: u32,
    /// Capture time on the sender's clock (µs since the Unix epoch) from RTCP sender reports;
    /// the local arrival clock until the first one.
    pub wall_clock_us: u64,
    /// 1.0 with a recent sender report, 0.5 on the local arrival clock.
    pub sync_confidence: f64,
    /// The sender's clock drift against ours, ppm (0 until estimated).
    pub drift_ppm: f64,
    /// Time the packet spent in the jitter buffer, ms.
    pub buffer_delay_ms: f64,
    /// Synthesized for a lost packet (Opus FEC from the next packet, or PLC).
    pub concealed: bool,
}

/// A decoded video frame as delivered to the application.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Packed I420 (Y, then U, then V).
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub rtp_timestamp: u32,
    /// Capture time on the sender's clock (µs since the Unix epoch) from RTCP sender reports;
    /// the local arrival clock until the first one.
    pub wall_clock_us: u64,
    pub sync_confidence: f64,
    pub drift_ppm: f64,
    /// Time the frame spent in the jitter buffer, ms.
    pub buffer_delay_ms: f64,
    /// Video wall clock minus the audio playout position, ms (negative: video behind audio);
    /// `None` while no audio from the peer is playing.
    pub audio_sync_offset_ms: Option<f64>,
    pub keyframe: bool,
    /// Frames per second estimated from RTP timestamps.
    pub framerate: Option<f64>,
}

/// Reads a remote track's RTP packets and hands the sender reports that arrive in between to
/// the playout.
struct TrackReader {
    track: Arc<dyn TrackRemote>,
    playout: Arc<Playout>,
    kind: StreamKind,
    ssrc: Option<u32>,
}

impl TrackReader {
    /// The next RTP packet; `None` once the track has ended. A new SSRC restarts the stream's
    /// buffer and clock mapping.
    async fn next_rtp(&mut self) -> Option<rtc::rtp::Packet> {
        while let Some(ev) = self.track.poll().await {
            match ev {
                TrackRemoteEvent::OnRtpPacket(pkt) => {
                    if self.ssrc.is_some_and(|s| s != pkt.header.ssrc) {
                        self.playout.reset_stream(self.kind);
                    }
                    self.ssrc = Some(pkt.header.ssrc);
                    return Some(pkt);
                }
                TrackRemoteEvent::OnRtcpPacket(packets) => {
                    let Some(ssrc) = self.ssrc else { continue };
                    for p in &packets {
                        if let Some(sr) = p
                            .as_any()
                            .downcast_ref::<rtc::rtcp::sender_report::SenderReport>()
                        {
                            if sr.ssrc == ssrc {
                                self.playout.sender_report(
                                    self.kind,
                                    sr.ntp_time,
                                    sr.rtp_time,
                                    self.playout.now_us(),
                                );
                            }
                        }
                    }
                }
                TrackRemoteEvent::OnEnded => return None,
                _ => {}
            }
        }
        None
    }
}

impl Drop for TrackReader {
    fn drop(&mut self) {
        self.playout.release(self.kind);
    }
}

/// Asks the sender of a remote track for a keyframe (RTCP PLI on each of its SSRCs).
pub async fn request_keyframe(track: &Arc<dyn TrackRemote>) -> Result<()> {
    for ssrc in track.ssrcs().await {
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc: ssrc,
        };
        track
            .write_rtcp(vec![Box::new(pli)])
            .await
            .map_err(|e| Error::webrtc("keyframe request", e))?;
    }
    Ok(())
}

/// Keyframe requests (PLI) to one sender at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// Told about what a remote track's reader cannot use (an `ERR_UNSUPPORTED_CODEC` error).
pub type TrackReport = Arc<dyn Fn(Error) + Send + Sync>;

/// Reads a remote track until it ends: audio packets and decoded video frames go to the peer's
/// playout (`media::playout`), which emits them as events when they are due. Video packets are
/// decoded by the codec their payload type names in `formats`; `report` hears once of each
/// payload type that names nothing decodable here (its packets are skipped, the track goes on).
pub async fn read_remote_track(
    track: Arc<dyn TrackRemote>,
    playout: Arc<Playout>,
    formats: Arc<TrackFormats>,
    report: TrackReport,
) {
    match track.kind().await {
        RtpCodecKind::Audio => {
            let playout = playout.claim(StreamKind::Audio);
            read_audio(TrackReader {
                track,
                playout,
                kind: StreamKind::Audio,
                ssrc: None,
            })
            .await
        }
        RtpCodecKind::Video => {
            let playout = playout.claim(StreamKind::Video);
            read_video(
                TrackReader {
                    track,
                    playout,
                    kind: StreamKind::Video,
                    ssrc: None,
                },
                VideoReceiver::new(formats),
                report,
            )
            .await
        }
        _ => {}
    }
}

/// What a payload type stands for on one video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PayloadKind {
    Media(VideoCodec),
    /// RTX, RED, FEC: not media of its own, skipped without a word.
    Repair,
    /// Negotiated as something not decoded here, or not negotiated at all.
    Unusable,
}

/// Resolves each packet's codec from its payload type against the negotiated formats: cached
/// per payload type (the cache is dropped when the formats change), asked again for a payload
/// type not known yet.
struct PayloadResolver {
    formats: Arc<TrackFormats>,
    cache: std::collections::HashMap<u8, PayloadKind>,
    generation: u64,
    /// Payload types already reported (each at most once: at most 128 reports per track).
    reported: std::collections::HashSet<u8>,
}

impl PayloadResolver {
    fn new(formats: Arc<TrackFormats>) -> Self {
        Self {
            generation: formats.generation(),
            formats,
            cache: Default::default(),
            reported: Default::default(),
        }
    }

    /// What `pt` is, and the report to make about it (the first time only).
    fn resolve(&mut self, pt: u8) -> (PayloadKind, Option<Error>) {
        let generation = self.formats.generation();
        if generation != self.generation {
            self.generation = generation;
            self.cache.clear();
        }
        if let Some(kind) = self.cache.get(&pt) {
            return (*kind, None);
        }
        let format = self.formats.get(pt);
        let kind = match &format {
            Some(f) if f.is_repair() => PayloadKind::Repair,
            Some(f) => f
                .video_codec()
                .map_or(PayloadKind::Unusable, PayloadKind::Media),
            None => PayloadKind::Unusable,
        };
        if format.is_some() {
            // A payload type not negotiated (yet) is asked again with its next packet.
            self.cache.insert(pt, kind);
        }
        let report = (kind == PayloadKind::Unusable && self.reported.insert(pt)).then(|| {
            Error::UnsupportedCodec(match format {
                Some(f) => format!(
                    "video payload type {pt} is {}, which is not decoded here: its packets are skipped",
                    f.describe()
                ),
                None => format!(
                    "video payload type {pt} is not negotiated: its packets are skipped"
                ),
            })
        });
        (kind, report)
    }
}

/// What one video packet gave.
#[derive(Default)]
struct VideoPush {
    frame: Option<(u32, DecodedVideo)>,
    need_keyframe: bool,
    report: Option<Error>,
}

/// The receiving end of one video track without the network: packets in, decoded frames out.
/// Each packet is decoded by the codec of its payload type; a new codec (the remote switched,
/// or a renegotiation changed it) gets a new assembler and decoder.
struct VideoReceiver {
    resolver: PayloadResolver,
    pipeline: Option<(VideoCodec, FrameAssembler, VideoDecoder)>,
}

impl VideoReceiver {
    fn new(formats: Arc<TrackFormats>) -> Self {
        Self {
            resolver: PayloadResolver::new(formats),
            pipeline: None,
        }
    }

    /// Resolves a payload type the formats do not name through what webrtc-rs says the
    /// track carries (`fallback`), while no description gave this track any format.
    fn push(&mut self, pkt: &rtc::rtp::Packet, fallback: Option<VideoCodec>) -> VideoPush {
        let mut out = VideoPush::default();
        let codec = if let Some(c) = fallback.filter(|_| self.resolver.formats.is_empty()) {
            c
        } else {
            match self.resolver.resolve(pkt.header.payload_type) {
                (PayloadKind::Media(c), _) => c,
                (_, report) => {
                    out.report = report;
                    return out;
                }
            }
        };
        if self.pipeline.as_ref().is_none_or(|p| p.0 != codec) {
            let (Some(asm), Ok(dec)) = (FrameAssembler::new(codec), VideoDecoder::new(codec))
            else {
                out.report = Some(Error::UnsupportedCodec(format!(
                    "no {codec:?} decoder in this build: video packets are skipped"
                )));
                return out;
            };
            self.pipeline = Some((codec, asm, dec));
        }
        let (_, asm, dec) = self.pipeline.as_mut().expect("set above");
        match asm.push(
            pkt.header.sequence_number,
            pkt.header.timestamp,
            pkt.header.marker,
            &pkt.payload,
        ) {
            Assembled::Pending => {}
            Assembled::NeedKeyframe => out.need_keyframe = true,
            Assembled::Frame {
                data,
                rtp_timestamp,
                keyframe,
            } => match dec.decode(&data) {
                Ok(Some(img)) => {
                    let (width, height) = (img.width(), img.height());
                    out.frame = Some((
                        rtp_timestamp,
                        DecodedVideo {
                            data: img.into_data(),
                            width,
                            height,
                            keyframe,
                        },
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("undecodable video frame: {e}");
                    asm.resync();
                    out.need_keyframe = true;
                }
            },
        }
        out
    }
}

/// The codec webrtc-rs says a remote track carries, if decoded here.
async fn track_codec(track: &Arc<dyn TrackRemote>, ssrc: u32) -> Option<VideoCodec> {
    let c = track.codec(ssrc).await?;
    decodable_video_codec(&c.mime_type, &c.sdp_fmtp_line)
}

async fn read_video(mut reader: TrackReader, mut receiver: VideoReceiver, report: TrackReport) {
    let mut last_pli: Option<Instant> = None;
    let mut index: u16 = 0;
    while let Some(pkt) = reader.next_rtp().await {
        let arrival = reader.playout.now_us();
        let fallback = if receiver.resolver.formats.is_empty() {
            track_codec(&reader.track, pkt.header.ssrc).await
        } else {
            None
        };
        let out = receiver.push(&pkt, fallback);
        if let Some(e) = out.report {
            tracing::warn!("{e}");
            report(e);
        }
        if let Some((rtp_timestamp, frame)) = out.frame {
            reader
                .playout
                .push_video(index, rtp_timestamp, arrival, frame);
            index = index.wrapping_add(1);
        }
        if out.need_keyframe && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL) {
            last_pli = Some(Instant::now());
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: pkt.header.ssrc,
            };
            let _ = reader.track.write_rtcp(vec![Box::new(pli)]).await;
        }
    }
}

async fn read_audio(mut reader: TrackReader) {
    while let Some(pkt) = reader.next_rtp().await {
        let arrival = reader.playout.now_us();
        if pkt.payload.is_empty() {
            continue;
        }
        reader.playout.push_audio(
            pkt.header.sequence_number,
            pkt.header.timestamp,
            arrival,
            pkt.payload,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::I420Buffer;

    #[test]
    fn audio_packets_are_numbered_in_order_and_timed_by_their_duration() {
        let mut p = AudioPacketizer::new();
        let payload = Bytes::from_static(&[0x78, 1, 2, 3]);
        let ms = Duration::from_millis;
        let packets: Vec<_> = [ms(20), ms(20), ms(10), ms(60), ms(40)]
            .into_iter()
            .map(|d| p.packet(payload.clone(), d, 111, 0xabcd))
            .collect();
        for w in packets.windows(2) {
            assert_eq!(
                w[1].header.sequence_number,
                w[0].header.sequence_number.wrapping_add(1)
            );
        }
        let steps: Vec<u32> = packets
            .windows(2)
            .map(|w| w[1].header.timestamp.wrapping_sub(w[0].header.timestamp))
            .collect();
        assert_eq!(steps, [960, 960, 480, 2880]);
        for pkt in &packets {
            assert_eq!(pkt.header.version, 2);
            assert_eq!(pkt.header.payload_type, 111);
            assert_eq!(pkt.header.ssrc, 0xabcd);
            assert!(pkt.header.marker);
            assert_eq!(pkt.payload, payload);
        }
    }

    fn vga() -> VideoEncoderConfig {
        VideoEncoderConfig {
            width: 640,
            height: 480,
            framerate: 30,
            bitrate: 800_000,
            keyframe_interval: 0,
        }
    }

    /// Sends `n` frames at 30 fps from frame index `from`; returns the decoded sizes of what
    /// was encoded (in order) and whether the first encoded frame was a keyframe.
    fn run(
        s: &mut AdaptiveVideoSender,
        dec: &mut VideoDecoder,
        codec: VideoCodec,
        from: i64,
        n: i64,
    ) -> (Vec<(u32, u32)>, bool) {
        let mut sizes = Vec::new();
        let mut first_key = None;
        for i in from..from + n {
            let pic = I420Buffer::test_pattern(640, 480, i as u32).unwrap();
            let out = s.encode(pic.data(), 640, 480, i * 33_333, false).unwrap();
            for f in out.into_iter().flatten() {
                first_key.get_or_insert(VideoDecoder::is_keyframe(codec, &f.data));
                if let Some(img) = dec.decode(&f.data).unwrap() {
                    sizes.push((img.width(), img.height()));
                }
            }
        }
        (sizes, first_key.unwrap_or(false))
    }

    #[test]
    fn adaptive_sender_steps_down_and_back_up() {
        for codec in [VideoCodec::Vp8, VideoCodec::Vp9] {
            let mut s = AdaptiveVideoSender::new(codec, &vga()).unwrap();
            let mut dec = VideoDecoder::new(codec).unwrap();
            let fmt = |w, h, framerate, target_bitrate_bps| VideoSendingFormat {
                width: w,
                height: h,
                framerate,
                target_bitrate_bps,
            };
            assert_eq!(s.sending_format(), fmt(640, 480, 30, 800_000));
            // At the configured bitrate nothing changes: every frame, full size.
            let (sizes, _) = run(&mut s, &mut dec, codec, 0, 20);
            assert_eq!(sizes, vec![(640, 480); 20], "{codec:?}");

            // 150 kbit/s: 320x240, still 30 fps; the new size starts with a keyframe.
            s.set_target(150_000).unwrap();
            assert_eq!(s.sending_format(), fmt(320, 240, 30, 150_000));
            let (sizes, key) = run(&mut s, &mut dec, codec, 20, 20);
            assert!(key, "{codec:?}: step change without a keyframe");
            assert_eq!(sizes, vec![(320, 240); 20], "{codec:?}");

            // 60 kbit/s: 320x240 at 15 fps, every other frame.
            s.set_target(60_000).unwrap();
            assert_eq!(s.sending_format(), fmt(320, 240, 15, 60_000));
            let (sizes, _) = run(&mut s, &mut dec, codec, 40, 20);
            assert_eq!(sizes, vec![(320, 240); 10], "{codec:?}");

            // Hysteresis: just above 320x240@30's need but within the margin, it stays.
            s.set_target(100_000).unwrap();
            assert_eq!(s.sending_format().framerate, 15);

            // Back at the configured bitrate: full size and rate again, from a keyframe.
            s.set_target(800_000).unwrap();
            assert_eq!(s.sending_format(), fmt(640, 480, 30, 800_000));
            let (sizes, key) = run(&mut s, &mut dec, codec, 60, 20);
            assert!(key, "{codec:?}");
            assert_eq!(sizes, vec![(640, 480); 20], "{codec:?}");
        }
    }

    #[test]
    fn the_sender_follows_the_size_of_the_frames_it_is_given() {
        let mut s = AdaptiveVideoSender::new(VideoCodec::Vp8, &vga()).unwrap();
        let mut dec = VideoDecoder::new(VideoCodec::Vp8).unwrap();
        let small = I420Buffer::test_pattern(320, 240, 0).unwrap();
        let out = s.encode(small.data(), 320, 240, 0, false).unwrap().unwrap();
        let f = dec.decode(&out[0].data).unwrap().expect("a keyframe first");
        assert_eq!((f.width(), f.height()), (320, 240));
        assert_eq!(
            (s.sending_format().width, s.sending_format().height),
            (320, 240)
        );
        // And back; odd sizes are still refused.
        let big = I420Buffer::test_pattern(640, 480, 1).unwrap();
        let out = s
            .encode(big.data(), 640, 480, 33_333, false)
            .unwrap()
            .unwrap();
        let f = dec.decode(&out[0].data).unwrap().expect("a keyframe first");
        assert_eq!((f.width(), f.height()), (640, 480));
        assert!(s
            .encode(&[0; 15 * 15 + 2 * 8 * 8], 15, 15, 66_666, false)
            .is_err());
    }

    /// H.264 over RTP end to end: OpenH264 → RFC 6184 packetizer (STAP-A, FU-A, single NAL
    /// units) → a lossy, reordering network → assembler (depacketizer) → OpenH264. Losses and
    /// reorders make the receiver ask for a keyframe (as its PLI would); the sender answers with
    /// an IDR that carries SPS and PPS, and decoding resumes from it.
    #[cfg(feature = "h264")]
    #[test]
    fn h264_over_rtp_round_trip_with_reorder_and_loss() {
        use crate::media::video::psnr_y;
        use std::collections::HashMap;
        let (w, h) = (640u32, 480u32);
        let cfg = VideoEncoderConfig {
            width: w,
            height: h,
            framerate: 30,
            bitrate: 1_500_000,
            keyframe_interval: 0,
        };
        let mut send = VideoSendState::new(VideoCodec::H264, &cfg).unwrap();
        let mut pack = VideoPacketizer::new(VideoCodec::H264);
        let mut asm = FrameAssembler::new(VideoCodec::H264).unwrap();
        let mut dec = VideoDecoder::new(VideoCodec::H264).unwrap();
        let nal = |p: &Bytes| p[0] & 0x1f;
        let (mut stap, mut fua, mut single) = (0, 0, 0);
        let mut sources = HashMap::new();
        let mut ts0 = None;
        let mut want_key = false;
        let mut keyframes_sent = Vec::new();
        let mut decoded = Vec::new();
        let mut min_psnr = f64::INFINITY;
        for i in 0..60u32 {
            // From frame 52 the picture stands still: small P-frames, one NAL unit a packet.
            let src = I420Buffer::test_pattern(w, h, i.min(52)).unwrap();
            let key = std::mem::take(&mut want_key);
            let frames = send
                .encode(src.data(), w, h, i as i64 * 1_000_000 / 30, key)
                .unwrap();
            assert_eq!(frames.len(), 1);
            let mut pkts = pack.packets(&frames[0], 102, 0x1234).unwrap();
            let ts = pkts[0].header.timestamp;
            // 90 kHz from the µs timestamps (truncated to whole ticks).
            let rel = ts.wrapping_sub(*ts0.get_or_insert(ts));
            assert!((i * 3000).abs_diff(rel) <= 1, "frame {i}: RTP time +{rel}");
            assert!(pkts
                .iter()
                .all(|p| p.header.timestamp == ts && p.header.payload_type == 102));
            assert!(pkts.last().unwrap().header.marker);
            for p in &pkts {
                match nal(&p.payload) {
                    24 => stap += 1,
                    28 => fua += 1,
                    1..=23 => single += 1,
                    t => panic!("NAL type {t} sent"),
                }
            }
            let idr = VideoDecoder::is_keyframe(VideoCodec::H264, &frames[0].data);
            if idr {
                keyframes_sent.push(i);
                // SPS and PPS go with every IDR, first, in one STAP-A.
                let p = &pkts[0].payload;
                assert_eq!(nal(p), 24, "frame {i}: IDR without a leading STAP-A");
                let sps_len = u16::from_be_bytes([p[1], p[2]]) as usize;
                assert_eq!(p[3] & 0x1f, 7, "SPS");
                assert_eq!(p[3 + sps_len + 2] & 0x1f, 8, "PPS");
            } else {
                assert!(pkts.iter().all(|p| nal(&p.payload) != 24), "frame {i}");
            }
            if key {
                assert!(idr, "frame {i}: a keyframe was asked for");
            }
            // The network: frame 15 arrives with two packets swapped, frame 30 loses an FU-A
            // fragment from its middle, frame 45 loses its last packet (an FU-A end, so a
            // partial NAL unit is left behind).
            match i {
                15 => {
                    assert!(pkts.len() >= 2);
                    pkts.swap(0, 1);
                }
                30 | 45 => {
                    assert!(pkts.len() >= 3, "frame {i} has {} packets", pkts.len());
                    let at = if i == 30 {
                        pkts.len() / 2
                    } else {
                        pkts.len() - 1
                    };
                    assert_eq!(nal(&pkts[at].payload), 28);
                    pkts.remove(at);
                }
                _ => {}
            }
            sources.insert(ts, (i, src));
            for p in pkts {
                match asm.push(p.header.sequence_number, ts, p.header.marker, &p.payload) {
                    Assembled::Pending => {}
                    Assembled::NeedKeyframe => want_key = true,
                    Assembled::Frame {
                        data,
                        rtp_timestamp,
                        keyframe,
                    } => {
                        let (index, src) = &sources[&rtp_timestamp];
                        let pic = dec
                            .decode(&data)
                            .unwrap_or_else(|e| panic!("frame {index}: {e}"))
                            .expect("a picture per frame");
                        assert_eq!((pic.width(), pic.height()), (w, h));
                        let psnr = psnr_y(&src.as_frame(), &pic.as_frame()).unwrap();
                        min_psnr = min_psnr.min(psnr);
                        decoded.push((*index, keyframe));
                    }
                }
            }
        }
        let indices: Vec<u32> = decoded.iter().map(|d| d.0).collect();
        eprintln!(
            "H.264 over RTP: {} of 60 frames decoded, min Y PSNR {min_psnr:.2} dB, \
             keyframes sent at {keyframes_sent:?}; packets: {stap} STAP-A, {fua} FU-A, \
             {single} single NAL",
            decoded.len()
        );
        assert!(min_psnr > 30.0, "Y PSNR {min_psnr:.2} dB");
        assert!(stap >= 4 && fua > 0 && single > 0);
        // Every frame up to the damaged one, nothing from it until the IDR it asked for, then
        // every frame again: a keyframe requested at the damage (frame 15, 30) or, when the
        // tail was lost, when the next frame showed it (46 → IDR at 47).
        assert_eq!(keyframes_sent, vec![0, 16, 31, 47]);
        let expected: Vec<u32> = (0..60)
            .filter(|i| !matches!(i, 15 | 30 | 45 | 46))
            .collect();
        assert_eq!(indices, expected);
        for (i, key) in decoded {
            assert_eq!(key, keyframes_sent.contains(&i), "frame {i}");
        }
    }

    #[test]
    fn adaptive_sender_refuses_bad_frames_and_bitrates() {
        let mut s = AdaptiveVideoSender::new(VideoCodec::Vp8, &vga()).unwrap();
        s.set_target(150_000).unwrap();
        assert!(matches!(
            s.encode(&[0; 10], 640, 480, 0, false),
            Err(Error::InvalidData(_))
        ));
        assert!(matches!(s.set_target(10), Err(Error::InvalidConfig(_))));
        assert_eq!(s.sending_format().target_bitrate_bps, 150_000);
    }

    /// VP8 packets of `n` test-pattern frames (QVGA), the first a keyframe, sent as `pt`.
    fn vp8_packets(n: u32, pt: u8) -> Vec<rtc::rtp::Packet> {
        let cfg = VideoEncoderConfig {
            width: 320,
            height: 240,
            ..vga()
        };
        let mut send = VideoSendState::new(VideoCodec::Vp8, &cfg).unwrap();
        let mut pack = VideoPacketizer::new(VideoCodec::Vp8);
        let mut out = Vec::new();
        for i in 0..n {
            let src = I420Buffer::test_pattern(320, 240, i).unwrap();
            for f in send
                .encode(src.data(), 320, 240, i as i64 * 33_333, i == 0)
                .unwrap()
            {
                out.extend(pack.packets(&f, pt, 0x1234).unwrap());
            }
        }
        out
    }

    fn format_map(
        list: &[(u8, &str, &str)],
    ) -> std::collections::HashMap<u8, crate::peer::remote_tracks::RtpFormat> {
        list.iter()
            .map(|(pt, name, fmtp)| {
                (
                    *pt,
                    crate::peer::remote_tracks::RtpFormat {
                        name: name.to_string(),
                        fmtp: fmtp.to_string(),
                    },
                )
            })
            .collect()
    }

    fn formats(list: &[(u8, &str, &str)]) -> Arc<TrackFormats> {
        let f = Arc::new(TrackFormats::default());
        f.merge(&format_map(list));
        f
    }

    /// Feeds `packets`; returns the frames decoded and the reports made.
    fn feed(rx: &mut VideoReceiver, packets: &[rtc::rtp::Packet]) -> (usize, Vec<Error>) {
        let (mut frames, mut reports) = (0, Vec::new());
        for p in packets {
            let out = rx.push(p, None);
            frames += out.frame.is_some() as usize;
            reports.extend(out.report);
        }
        (frames, reports)
    }

    #[test]
    fn an_unknown_payload_type_is_reported_once_and_skipped_and_decoding_goes_on() {
        let mut rx = VideoReceiver::new(formats(&[
            (96, "VP8", ""),
            (97, "rtx", "apt=96"),
            (45, "AV1", ""),
        ]));
        // Not negotiated at all, then negotiated as a codec not decoded here, then repair.
        let (frames, reports) = feed(&mut rx, &vp8_packets(3, 77));
        assert_eq!(frames, 0);
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].code(), "ERR_UNSUPPORTED_CODEC");
        assert!(reports[0].to_string().contains("77"), "{}", reports[0]);
        let (frames, reports) = feed(&mut rx, &vp8_packets(3, 45));
        assert_eq!(frames, 0);
        assert_eq!(reports.len(), 1);
        assert!(reports[0].to_string().contains("AV1"), "{}", reports[0]);
        let (frames, reports) = feed(&mut rx, &vp8_packets(3, 97));
        assert_eq!((frames, reports.len()), (0, 0));
        // The track is still read: VP8 on its payload type decodes.
        let (frames, reports) = feed(&mut rx, &vp8_packets(10, 96));
        assert_eq!(frames, 10);
        assert!(reports.is_empty());
        // Each payload type is reported once only.
        let (_, reports) = feed(&mut rx, &vp8_packets(2, 77));
        assert!(reports.is_empty());
    }

    /// A renegotiation that webrtc-rs leaves without a codec for the track: the formats come
    /// from the descriptions, and a payload type not known yet is resolved again later.
    #[test]
    fn a_payload_type_negotiated_after_its_first_packets_is_decoded_from_then_on() {
        let f = formats(&[(98, "VP9", "profile-id=0")]);
        let mut rx = VideoReceiver::new(f.clone());
        let (frames, reports) = feed(&mut rx, &vp8_packets(3, 96));
        assert_eq!((frames, reports.len()), (0, 1));
        f.merge(&format_map(&[(96, "VP8", "")]));
        let (frames, _) = feed(&mut rx, &vp8_packets(5, 96));
        assert_eq!(frames, 5);
    }

    #[test]
    fn only_formats_decoded_here_are_decodable() {
        assert_eq!(decodable_video_codec("VP8", ""), Some(VideoCodec::Vp8));
        assert_eq!(
            decodable_video_codec("video/vp9", ""),
            Some(VideoCodec::Vp9)
        );
        assert_eq!(
            decodable_video_codec("VP9", "profile-id=0"),
            Some(VideoCodec::Vp9)
        );
        assert_eq!(decodable_video_codec("VP9", "profile-id=2"), None);
        assert_eq!(decodable_video_codec("AV1", "profile=0"), None);
        assert_eq!(decodable_video_codec("H265", ""), None);
        assert_eq!(
            decodable_video_codec("H264", "packetization-mode=1;profile-level-id=42e01f").is_some(),
            cfg!(feature = "h264")
        );
        assert_eq!(
            decodable_video_codec("H264", "profile-level-id=42e01f"),
            None
        );
        assert!(decodable_audio_codec("opus") && !decodable_audio_codec("PCMU"));
        assert!(is_repair_format("rtx") && is_repair_format("ulpfec") && !is_repair_format("VP8"));
    }

    /// The `a=rtpmap` names of an SDP, upper case.
    fn rtpmap_names(sdp: &str) -> Vec<String> {
        sdp.lines()
            .filter_map(|l| l.strip_prefix("a=rtpmap:"))
            .map(|m| {
                let name = m.split(' ').nth(1).unwrap_or("");
                name.split('/').next().unwrap().to_ascii_uppercase()
            })
            .collect()
    }

    /// An offer of a peer connection with our codecs, audio and video.
    async fn offer_with(preferred: VideoCodec) -> String {
        use webrtc::peer_connection::PeerConnection as _;
        struct NoEvents;
        #[async_trait::async_trait]
        impl webrtc::peer_connection::PeerConnectionEventHandler for NoEvents {}
        let mut media = MediaEngine::default();
        register_codecs(&mut media, preferred).unwrap();
        let pc = webrtc::peer_connection::PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_handler(Arc::new(NoEvents))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .unwrap();
        pc.add_transceiver_from_kind(RtpCodecKind::Audio, None)
            .await
            .unwrap();
        pc.add_transceiver_from_kind(RtpCodecKind::Video, None)
            .await
            .unwrap();
        let offer = pc.create_offer(None).await.unwrap();
        let _ = pc.close().await;
        offer.sdp
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_offer_lists_only_codecs_decoded_here_the_transports_first() {
        let sdp = offer_with(VideoCodec::Vp8).await;
        let names = rtpmap_names(&sdp);
        for bad in ["AV1", "H265", "HEVC", "G722", "PCMU", "PCMA"] {
            assert!(!names.iter().any(|n| n == bad), "{bad} offered: {sdp}");
        }
        assert!(
            !sdp.contains("profile-id=1") && !sdp.contains("profile-id=2"),
            "{sdp}"
        );
        let media: Vec<&String> = names.iter().filter(|n| *n != "RTX").collect();
        let mut expected = vec!["OPUS", "VP8", "VP9"];
        if cfg!(feature = "h264") {
            expected.push("H264");
        }
        assert_eq!(media, expected, "{sdp}");
        let names = rtpmap_names(&offer_with(VideoCodec::Vp9).await);
        let video: Vec<&String> = names
            .iter()
            .filter(|n| *n != "RTX" && *n != "OPUS")
            .collect();
        assert_eq!(video[0], "VP9", "the transport's codec first: {video:?}");
    }
}
